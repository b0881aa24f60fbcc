//! Zipkin v1 spans and their conversion to the v2 model, following Zipkin's own v1-to-v2
//! conversion (`V1SpanConverter`):
//!
//! - core annotations decide the kind: `cs`/`cr` client, `sr`/`ss` server, `ms` producer, `mr`
//!   consumer; their endpoint is the local endpoint, their timestamps give the start and duration;
//! - a v1 span holding both client and server annotations (one span ID shared by both sides)
//!   becomes two spans: the client span, and a server span marked `shared` (so it gets its own ID,
//!   child of the client span, see [`super::to_otlp`]); a server-only span without a v1
//!   `timestamp` did not own the span ID and is marked shared too;
//! - the v1 `timestamp`/`duration` win when both are set; otherwise core annotations give them;
//! - other annotations stay annotations, and binary annotations become tags (values as strings),
//!   of the span whose service recorded them, except the address annotations `ca`, `sa`, `ma` (with
//!   an endpoint), which become remote endpoints (`ca` of the server, `sa` of the client, `ma` of
//!   producer or consumer; without core annotations `ca` makes a server span, `sa` only sets the
//!   remote endpoint);
//! - a span without core annotations takes its local endpoint from the first endpoint it has.

use super::{Annotation, Endpoint, Kind, ZipkinSpan};

/// A binary annotation value.
#[derive(Debug, Clone, PartialEq)]
pub enum BinaryValue {
    Bool(bool),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct V1Annotation {
    pub timestamp_us: u64,
    pub value: String,
    pub endpoint: Option<Endpoint>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct V1BinaryAnnotation {
    pub key: String,
    pub value: BinaryValue,
    pub endpoint: Option<Endpoint>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct V1Span {
    /// 16 bytes.
    pub trace_id: Vec<u8>,
    pub id: Vec<u8>,
    pub parent_id: Vec<u8>,
    pub name: String,
    pub timestamp_us: Option<u64>,
    pub duration_us: Option<u64>,
    pub annotations: Vec<V1Annotation>,
    pub binary_annotations: Vec<V1BinaryAnnotation>,
    pub debug: bool,
}

fn find<'a>(s: &'a V1Span, v: &str) -> Option<&'a V1Annotation> {
    s.annotations.iter().find(|a| a.value == v)
}

fn is_core(v: &str) -> bool {
    matches!(v, "cs" | "cr" | "sr" | "ss" | "ms" | "mr" | "ws" | "wr")
}

fn dur(start: Option<&V1Annotation>, end: Option<&V1Annotation>) -> u64 {
    match (start, end) {
        (Some(s), Some(e)) if e.timestamp_us > s.timestamp_us => e.timestamp_us - s.timestamp_us,
        _ => 0,
    }
}

/// Converts v1 spans to v2 spans. Every v1 span converts (the conversion cannot fail).
pub fn convert(spans: Vec<V1Span>) -> Vec<ZipkinSpan> {
    let mut out = Vec::with_capacity(spans.len());
    for s in spans {
        let base = ZipkinSpan {
            trace_id: s.trace_id.clone(),
            id: s.id.clone(),
            parent_id: s.parent_id.clone(),
            name: s.name.clone(),
            debug: s.debug,
            ..Default::default()
        };
        let (cs, cr, sr, ss) = (find(&s, "cs"), find(&s, "cr"), find(&s, "sr"), find(&s, "ss"));
        let (ms, mr, ws, wr) = (find(&s, "ms"), find(&s, "mr"), find(&s, "ws"), find(&s, "wr"));
        let ep = |a: Option<&V1Annotation>, b: Option<&V1Annotation>| {
            a.and_then(|a| a.endpoint.clone())
                .or_else(|| b.and_then(|b| b.endpoint.clone()))
        };
        // The v1 span's own timestamp and duration win when both are set; otherwise the core
        // annotations give them (Zipkin's `maybeTimestampDuration`).
        let ts_dur = |begin: Option<&V1Annotation>, end: Option<&V1Annotation>| match (s.timestamp_us, s.duration_us) {
            (Some(t), Some(d)) if t != 0 && d != 0 => (t, d),
            _ => (
                begin.map(|a| a.timestamp_us).or(s.timestamp_us).unwrap_or(0),
                if begin.is_some() {
                    dur(begin, end)
                } else {
                    s.duration_us.unwrap_or(0)
                },
            ),
        };
        let has_client = cs.is_some() || cr.is_some();
        let has_server = sr.is_some() || ss.is_some();
        let mut spans: Vec<ZipkinSpan> = Vec::new();
        if has_client {
            let mut c = base.clone();
            c.kind = Some(Kind::Client);
            c.local = ep(cs, cr);
            (c.timestamp_us, c.duration_us) = ts_dur(cs, cr);
            spans.push(c);
        }
        if has_server {
            let mut v = base.clone();
            v.kind = Some(Kind::Server);
            v.local = ep(sr, ss);
            if has_client {
                // Both sides in one v1 span: the client owns the span's timing.
                v.shared = true;
                v.timestamp_us = sr.map(|a| a.timestamp_us).unwrap_or(0);
                v.duration_us = dur(sr, ss);
            } else {
                // By v1 convention an absent span timestamp means the client owned the span ID.
                v.shared = s.timestamp_us.unwrap_or(0) == 0 || (ss.is_some() && s.duration_us.unwrap_or(0) == 0);
                (v.timestamp_us, v.duration_us) = ts_dur(sr, ss);
            }
            spans.push(v);
        }
        if !has_client && !has_server {
            if let Some(m) = ms {
                let mut p = base.clone();
                p.kind = Some(Kind::Producer);
                p.local = m.endpoint.clone();
                (p.timestamp_us, p.duration_us) = ts_dur(Some(m), ws);
                spans.push(p);
            } else if let Some(m) = mr {
                let mut c = base.clone();
                c.kind = Some(Kind::Consumer);
                c.local = m.endpoint.clone();
                (c.timestamp_us, c.duration_us) = if wr.is_some() {
                    ts_dur(wr, Some(m))
                } else {
                    ts_dur(Some(m), None)
                };
                spans.push(c);
            }
        }
        if spans.is_empty() {
            let mut l = base.clone();
            l.timestamp_us = s.timestamp_us.unwrap_or(0);
            l.duration_us = s.duration_us.unwrap_or(0);
            spans.push(l);
        }
        // The span of an endpoint: the first one without a local endpoint takes it, else the one
        // with the same service name, else the first (Zipkin's `forEndpoint`).
        let span_for = |spans: &mut Vec<ZipkinSpan>, e: &Option<Endpoint>| -> usize {
            let Some(e) = e else { return 0 };
            if spans[0].local.is_none() {
                spans[0].local = Some(e.clone());
                return 0;
            }
            spans
                .iter()
                .position(|x| {
                    x.local
                        .as_ref()
                        .map(|l| l.service_name == e.service_name)
                        .unwrap_or(false)
                })
                .unwrap_or(0)
        };
        // Non-core annotations.
        for a in s.annotations.iter().filter(|a| !is_core(&a.value)) {
            let i = span_for(&mut spans, &a.endpoint);
            spans[i].annotations.push(Annotation {
                timestamp_us: a.timestamp_us,
                value: a.value.clone(),
            });
        }
        // Binary annotations: address annotations (`ca`, `sa`, `ma`; leniently any value) give
        // remote endpoints, the rest are tags.
        let (mut ca, mut sa, mut ma) = (None, None, None);
        for b in &s.binary_annotations {
            match b.key.as_str() {
                "ca" if b.endpoint.is_some() => ca = b.endpoint.clone(),
                "sa" if b.endpoint.is_some() => sa = b.endpoint.clone(),
                "ma" if b.endpoint.is_some() => ma = b.endpoint.clone(),
                _ => {
                    let value = match &b.value {
                        BinaryValue::Bool(v) => v.to_string(),
                        BinaryValue::Str(s) => s.clone(),
                    };
                    let i = span_for(&mut spans, &b.endpoint);
                    // "lc" with an empty value only marks the local endpoint.
                    if b.key == "lc" && value.is_empty() {
                        continue;
                    }
                    spans[i].tags.push((b.key.clone(), value));
                }
            }
        }
        let no_core = !has_client && !has_server;
        if no_core && (ca.is_some() || sa.is_some()) {
            match (ca, sa) {
                (Some(ca), Some(sa)) => {
                    let i = span_for(&mut spans, &Some(ca));
                    spans[i].remote = Some(sa);
                }
                (None, Some(sa)) => spans[0].remote = Some(sa),
                (Some(ca), None) => {
                    spans[0].kind = Some(Kind::Server);
                    spans[0].remote = Some(ca);
                }
                (None, None) => {}
            }
        } else {
            if let (Some(mut ca), Some(server)) = (ca, spans.iter_mut().find(|x| x.kind == Some(Kind::Server))) {
                if server.local.as_ref() != Some(&ca) {
                    // Finagle puts the client's socket with the server's service name in "ca".
                    if server
                        .local
                        .as_ref()
                        .map(|l| l.service_name == ca.service_name)
                        .unwrap_or(false)
                    {
                        ca.service_name.clear();
                    }
                    server.remote = Some(ca);
                }
            }
            if let (Some(sa), Some(client)) = (sa, spans.iter_mut().find(|x| x.kind == Some(Kind::Client))) {
                client.remote = Some(sa);
            }
            if let Some(ma) = ma {
                for x in spans
                    .iter_mut()
                    .filter(|x| matches!(x.kind, Some(Kind::Producer) | Some(Kind::Consumer)))
                {
                    x.remote = Some(ma.clone());
                }
            }
        }
        out.extend(spans);
    }
    out
}

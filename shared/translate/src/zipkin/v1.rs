//! Zipkin v1 spans and their conversion to the v2 model, following Zipkin's own v1-to-v2
//! conversion (`V1SpanConverter`):
//!
//! - core annotations decide the kind: `cs`/`cr` client, `sr`/`ss` server, `ms` producer, `mr`
//!   consumer; their endpoint is the local endpoint, their timestamps give the start and duration;
//! - a v1 span holding both client and server annotations (one span ID shared by both sides)
//!   becomes two spans: the client span, and a server span marked `shared` (so it gets its own ID,
//!   child of the client span, see [`super::to_otlp`]); a server-only span without a v1
//!   `timestamp` did not own the span ID and is marked shared too;
//! - other annotations stay annotations; binary annotations become tags (values as strings),
//!   except the address annotations `ca`, `sa`, `ma` (boolean true with an endpoint), which become
//!   the remote endpoint (`ca` of the server, `sa` of the client, `ma` of producer or consumer);
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

/// Converts v1 spans to v2 spans.
pub fn convert(spans: Vec<V1Span>) -> Result<Vec<ZipkinSpan>, String> {
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
        let (cs, cr, sr, ss, ms, mr) = (find(&s, "cs"), find(&s, "cr"), find(&s, "sr"), find(&s, "ss"), find(&s, "ms"), find(&s, "mr"));
        let ep = |a: Option<&V1Annotation>, b: Option<&V1Annotation>| a.and_then(|a| a.endpoint.clone()).or_else(|| b.and_then(|b| b.endpoint.clone()));
        let has_client = cs.is_some() || cr.is_some();
        let has_server = sr.is_some() || ss.is_some();
        let mut client = None;
        let mut server = None;
        let mut messaging = None;
        if has_client {
            let mut c = base.clone();
            c.kind = Some(Kind::Client);
            c.local = ep(cs, cr);
            c.timestamp_us = cs.map(|a| a.timestamp_us).or(s.timestamp_us).unwrap_or(0);
            c.duration_us = if has_server { dur(cs, cr) } else { s.duration_us.unwrap_or_else(|| dur(cs, cr)) };
            client = Some(c);
        }
        if has_server {
            let mut v = base.clone();
            v.kind = Some(Kind::Server);
            v.local = ep(sr, ss);
            v.shared = has_client || s.timestamp_us.is_none();
            v.timestamp_us = sr.map(|a| a.timestamp_us).or(s.timestamp_us).unwrap_or(0);
            v.duration_us = if has_client { dur(sr, ss) } else { s.duration_us.unwrap_or_else(|| dur(sr, ss)) };
            server = Some(v);
        }
        if !has_client && !has_server && (ms.is_some() || mr.is_some()) {
            let mut m = base.clone();
            let a = ms.or(mr);
            m.kind = Some(if ms.is_some() { Kind::Producer } else { Kind::Consumer });
            m.local = a.and_then(|a| a.endpoint.clone());
            m.timestamp_us = s.timestamp_us.or(a.map(|a| a.timestamp_us)).unwrap_or(0);
            m.duration_us = s.duration_us.unwrap_or(0);
            messaging = Some(m);
        }
        let mut spans: Vec<ZipkinSpan> = [client, server, messaging].into_iter().flatten().collect();
        if spans.is_empty() {
            let mut l = base.clone();
            l.timestamp_us = s.timestamp_us.unwrap_or(0);
            l.duration_us = s.duration_us.unwrap_or(0);
            l.local = s
                .annotations
                .iter()
                .find_map(|a| a.endpoint.clone())
                .or_else(|| s.binary_annotations.iter().filter(|b| !matches!(b.key.as_str(), "ca" | "sa" | "ma")).find_map(|b| b.endpoint.clone()));
            spans.push(l);
        }
        // Non-core annotations go on the first span.
        for a in s.annotations.iter().filter(|a| !is_core(&a.value)) {
            spans[0].annotations.push(Annotation { timestamp_us: a.timestamp_us, value: a.value.clone() });
            if spans[0].local.is_none() {
                spans[0].local = a.endpoint.clone();
            }
        }
        for b in &s.binary_annotations {
            let address = matches!(b.value, BinaryValue::Bool(true)) && b.endpoint.is_some();
            match (b.key.as_str(), address) {
                ("ca", true) => {
                    let target = spans.iter_mut().find(|x| x.kind == Some(Kind::Server));
                    if let Some(t) = target {
                        t.remote = b.endpoint.clone();
                    } else if spans[0].kind.is_none() {
                        spans[0].kind = Some(Kind::Server);
                        spans[0].remote = b.endpoint.clone();
                    }
                }
                ("sa", true) => {
                    if let Some(t) = spans.iter_mut().find(|x| x.kind == Some(Kind::Client)) {
                        t.remote = b.endpoint.clone();
                    } else if spans[0].kind.is_none() {
                        spans[0].kind = Some(Kind::Client);
                        spans[0].remote = b.endpoint.clone();
                    }
                }
                ("ma", true) => {
                    if let Some(t) = spans.iter_mut().find(|x| matches!(x.kind, Some(Kind::Producer) | Some(Kind::Consumer))) {
                        t.remote = b.endpoint.clone();
                    }
                }
                _ => {
                    let value = match &b.value {
                        BinaryValue::Bool(v) => v.to_string(),
                        BinaryValue::Str(s) => s.clone(),
                    };
                    // A tag recorded by the server's endpoint belongs to the server span.
                    let idx = match (&b.endpoint, spans.iter().position(|x| x.kind == Some(Kind::Server))) {
                        (Some(e), Some(i)) if spans[i].local.as_ref() == Some(e) => i,
                        _ => 0,
                    };
                    if spans[idx].local.is_none() {
                        spans[idx].local = b.endpoint.clone();
                    }
                    spans[idx].tags.push((b.key.clone(), value));
                }
            }
        }
        out.extend(spans);
    }
    Ok(out)
}

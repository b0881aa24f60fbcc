//! Zipkin to OTLP, as the OpenTelemetry Collector's `pkg/translator/zipkin` (`zipkinv2`) maps it.
//!
//! Every Zipkin format is first decoded to the v2 model ([`ZipkinSpan`]; v1 spans go through
//! [`v1::convert`], Zipkin's own v1-to-v2 conversion), then [`to_otlp`] maps it:
//!
//! - `localEndpoint.serviceName` -> resource `service.name`; tags named like OpenTelemetry
//!   resource attributes (`telemetry.sdk.*`, `host.*`, `process.*`, `k8s.*`, `service.version`, ...)
//!   -> resource attributes; `otel.scope.name`/`otel.library.name` (+ version) -> scope;
//! - trace IDs of 64 bits widened to 16 bytes (high 8 bytes zero); `parentId` (ignored when equal
//!   to `id`); `name`; `kind` (CLIENT, SERVER, PRODUCER, CONSUMER; absent: the `span.kind` tag);
//! - `timestamp`/`duration` (microseconds) -> start/end (nanoseconds); an absent timestamp gives
//!   start 0 and attribute `otel.zipkin.absentField.startTime: true`;
//! - tags -> string attributes; `w3c.tracestate` -> trace state; `otlp.link.N` -> links;
//!   `otel.status_code` (+ `otel.status_description`) -> status; an `error` tag -> status ERROR
//!   (a value other than `true` stays an attribute and becomes the status message);
//! - local endpoint `ipv4`/`ipv6` -> `net.host.ip`, `port` -> `net.host.port`; remote endpoint
//!   `serviceName` -> `peer.service`, `ipv4`/`ipv6` -> `net.peer.ip`, `port` -> `net.peer.port`;
//! - annotations -> events (timestamp, name; the Collector's `name|{json attributes}|dropped`
//!   encoding and the OpenTelemetry SDK exporters' `{"name": {attributes}}` are unpacked);
//! - shared spans (`shared: true` on a SERVER span, which reuses its client's span ID): Tailsift
//!   gives the server span its own ID (a hash of the shared one) and makes it a child of the client
//!   span, as Jaeger's span-ID deduplication does, so both sides survive a sampler that keeps each
//!   span ID once.

pub mod proto;
pub mod v1;
pub mod v1_json;
pub mod v1_thrift;
pub mod v2_json;

use std::net::{Ipv4Addr, Ipv6Addr};

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{Span, Status};

use crate::otlp::{self, Attrs, Grouper, SpanKind, StatusCode};
use crate::ExportTraceServiceRequest;

pub use proto::decode_v2_proto;
pub use v1_json::decode_v1_json;
pub use v1_thrift::decode_v1_thrift;
pub use v2_json::decode_v2_json;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Client,
    Server,
    Producer,
    Consumer,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoint {
    pub service_name: String,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    pub timestamp_us: u64,
    pub value: String,
}

/// A Zipkin v2 span.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ZipkinSpan {
    /// 16 bytes, big-endian (64-bit IDs widened).
    pub trace_id: Vec<u8>,
    /// 8 bytes.
    pub id: Vec<u8>,
    /// Empty, or 8 bytes.
    pub parent_id: Vec<u8>,
    pub kind: Option<Kind>,
    pub name: String,
    /// Microseconds since the epoch; 0: absent.
    pub timestamp_us: u64,
    pub duration_us: u64,
    pub local: Option<Endpoint>,
    pub remote: Option<Endpoint>,
    pub annotations: Vec<Annotation>,
    /// In order; a key given twice keeps the last value.
    pub tags: Vec<(String, String)>,
    pub debug: bool,
    pub shared: bool,
}

/// Parses a hex ID of 1 to `max` characters (left-padded with zeros) into `max / 2` bytes.
pub(crate) fn parse_hex_id(s: &str, max: usize) -> Option<Vec<u8>> {
    if s.is_empty() || s.len() > max || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let padded = format!("{s:0>max$}");
    hex::decode(padded).ok()
}

/// A Zipkin trace ID string (16 or 32 hex characters, shorter ones left-padded) as 16 bytes.
pub(crate) fn parse_trace_id(s: &str) -> Option<Vec<u8>> {
    if s.len() <= 16 {
        let low = parse_hex_id(s, 16)?;
        let mut v = vec![0u8; 8];
        v.extend_from_slice(&low);
        Some(v)
    } else {
        parse_hex_id(s, 32)
    }
}

/// The ID of a shared server span: FNV-1a 64 of the shared ID (never zero, never the same).
pub fn shared_server_span_id(shared: &[u8]) -> Vec<u8> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"tailsift.zipkin.shared:".iter().chain(shared) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut id = h.to_be_bytes().to_vec();
    if id.iter().all(|b| *b == 0) || id == shared {
        id[7] ^= 1;
    }
    id
}

fn kind_from_tag(v: &str) -> SpanKind {
    match v {
        "client" => SpanKind::Client,
        "server" => SpanKind::Server,
        "producer" => SpanKind::Producer,
        "consumer" => SpanKind::Consumer,
        "internal" => SpanKind::Internal,
        _ => SpanKind::Unspecified,
    }
}

fn status_code_from_str(v: &str) -> Option<StatusCode> {
    let u = v.to_ascii_uppercase();
    match u.strip_prefix("STATUS_CODE_").unwrap_or(&u) {
        "UNSET" => Some(StatusCode::Unset),
        "OK" => Some(StatusCode::Ok),
        "ERROR" => Some(StatusCode::Error),
        _ => None,
    }
}

/// Attributes from a JSON object, as the Collector converts them (whole numbers become ints).
fn json_attrs(json: &str) -> Option<Attrs> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let obj = v.as_object()?;
    let mut a = Attrs::new();
    for (k, v) in obj {
        match v {
            serde_json::Value::String(s) => a.put(k, otlp::str_value(s.clone())),
            serde_json::Value::Bool(b) => a.put(k, otlp::bool_value(*b)),
            serde_json::Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    a.put(k, otlp::int_value(i))
                } else if let Some(f) = n.as_f64() {
                    if f.fract() == 0.0 && f.abs() < 9.2e18 {
                        a.put(k, otlp::int_value(f as i64))
                    } else {
                        a.put(k, otlp::double_value(f))
                    }
                }
            }
            _ => {}
        }
    }
    Some(a)
}

fn event(a: &Annotation) -> Event {
    let mut e = Event {
        time_unix_nano: a.timestamp_us.saturating_mul(1000),
        ..Default::default()
    };
    // The OpenTelemetry SDKs' Zipkin exporters (Python, Java, JS) write an event as
    // `{"<name>": {<attributes>}}`.
    if a.value.starts_with('{') {
        if let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(&a.value) {
            if m.len() == 1 {
                let (name, inner) = m.iter().next().expect("one entry");
                if inner.is_object() {
                    if let Some(attrs) = json_attrs(&inner.to_string()) {
                        e.name = name.clone();
                        e.attributes = attrs.into_vec();
                        return e;
                    }
                }
            }
        }
    }
    let parts: Vec<&str> = a.value.split('|').collect();
    if parts.len() >= 3 {
        let json = parts[1..parts.len() - 1].join("|");
        if let (Some(attrs), Ok(dropped)) = (json_attrs(&json), parts[parts.len() - 1].parse::<u32>()) {
            e.name = parts[0].to_string();
            e.attributes = attrs.into_vec();
            e.dropped_attributes_count = dropped;
            return e;
        }
        // Not OpenTelemetry's encoding: the whole value is the name.
        e.name = a.value.clone();
        return e;
    }
    e.name = parts[0].to_string();
    e
}

/// `otlp.link.N` tags: `traceid|spanid|tracestate|{json attributes}|dropped`.
fn take_links(tags: &mut Attrs) -> Vec<Link> {
    let mut out = Vec::new();
    for i in 0..128 {
        let key = format!("otlp.link.{i}");
        let Some(v) = tags.remove(&key) else { break };
        let v = otlp::value_as_string(&v);
        let parts: Vec<&str> = v.split('|').collect();
        if parts.len() < 5 {
            continue;
        }
        let (Some(t), Some(s)) = (
            parse_hex_id(parts[0], 32).filter(|_| parts[0].len() == 32),
            parse_hex_id(parts[1], 16).filter(|_| parts[1].len() == 16),
        ) else {
            continue;
        };
        let json = parts[3..parts.len() - 1].join("|");
        let attrs = json_attrs(&json).map(Attrs::into_vec).unwrap_or_default();
        out.push(Link {
            trace_id: t,
            span_id: s,
            trace_state: parts[2].to_string(),
            attributes: attrs,
            dropped_attributes_count: parts[parts.len() - 1].parse().unwrap_or(0),
            ..Default::default()
        });
    }
    out
}

fn ip_string(e: &Endpoint) -> Option<String> {
    // As upstream: IPv6 wins when both are set (it is written last).
    e.ipv6
        .map(|ip| ip.to_string())
        .or_else(|| e.ipv4.map(|ip| ip.to_string()))
}

/// Translates Zipkin v2 spans to one OTLP request.
pub fn to_otlp(spans: Vec<ZipkinSpan>) -> ExportTraceServiceRequest {
    let mut g = Grouper::default();
    for z in spans {
        let mut tags = Attrs::new();
        for (k, v) in &z.tags {
            tags.put(k, otlp::str_value(v.clone()));
        }

        // Resource: service name and resource-like tags.
        let mut resource = Attrs::new();
        if let Some(svc) = z
            .local
            .as_ref()
            .map(|e| e.service_name.as_str())
            .filter(|s| !s.is_empty())
        {
            resource.put("service.name", otlp::str_value(svc));
        }
        let resource_keys: Vec<String> = z
            .tags
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| otlp::is_resource_attribute(k))
            .collect();
        for k in resource_keys {
            if let Some(v) = tags.remove(&k) {
                resource.put(&k, otlp::any(v));
            }
        }

        // Scope.
        let mut scope = InstrumentationScope::default();
        for (n, ver) in [
            ("otel.scope.name", "otel.scope.version"),
            ("otel.library.name", "otel.library.version"),
        ] {
            if let Some(name) = tags.remove(n) {
                if scope.name.is_empty() {
                    scope.name = otlp::value_as_string(&name);
                    scope.version = tags.get_str(ver).unwrap_or_default().to_string();
                }
                tags.remove(ver);
            }
        }

        let trace_state = tags
            .remove("w3c.tracestate")
            .map(|v| otlp::value_as_string(&v))
            .unwrap_or_default();
        let mut span_id = z.id.clone();
        let mut parent = if !z.parent_id.is_empty() && z.parent_id != z.id {
            z.parent_id.clone()
        } else {
            Vec::new()
        };
        if z.shared && z.kind == Some(Kind::Server) {
            span_id = shared_server_span_id(&z.id);
            parent = z.id.clone();
        }

        let kind = match z.kind {
            Some(Kind::Client) => SpanKind::Client,
            Some(Kind::Server) => SpanKind::Server,
            Some(Kind::Producer) => SpanKind::Producer,
            Some(Kind::Consumer) => SpanKind::Consumer,
            None => match tags.remove("span.kind") {
                Some(v) => kind_from_tag(&otlp::value_as_string(&v)),
                None => SpanKind::Unspecified,
            },
        };

        // Status.
        let mut status: Option<Status> = None;
        if let Some(code) = tags.remove("otel.status_code") {
            let code = status_code_from_str(&otlp::value_as_string(&code)).unwrap_or(StatusCode::Unset);
            let message = tags
                .remove("otel.status_description")
                .map(|v| otlp::value_as_string(&v))
                .unwrap_or_default();
            status = Some(Status {
                code: code as i32,
                message,
            });
        }
        if let Some(err) = tags.get_str("error").map(str::to_string) {
            let st = status.get_or_insert_with(Status::default);
            st.code = StatusCode::Error as i32;
            if err == "true" {
                tags.remove("error");
            } else if st.message.is_empty() {
                st.message = err;
            }
        }

        let links = take_links(&mut tags);

        // Attributes: the remaining tags, then the endpoints.
        let mut attrs = tags;
        if let Some(l) = &z.local {
            if let Some(ip) = ip_string(l) {
                attrs.insert("net.host.ip", otlp::str_value(ip));
            }
            if l.port > 0 {
                attrs.put("net.host.port", otlp::int_value(l.port as i64));
            }
        }
        if let Some(r) = &z.remote {
            if !r.service_name.is_empty() {
                attrs.insert("peer.service", otlp::str_value(r.service_name.clone()));
            }
            if let Some(ip) = ip_string(r) {
                attrs.insert("net.peer.ip", otlp::str_value(ip));
            }
            if r.port > 0 {
                attrs.put("net.peer.port", otlp::int_value(r.port as i64));
            }
        }
        let (start, end) = if z.timestamp_us == 0 {
            attrs.insert("otel.zipkin.absentField.startTime", otlp::bool_value(true));
            (0, z.duration_us.saturating_mul(1000))
        } else {
            let s = z.timestamp_us.saturating_mul(1000);
            (s, s.saturating_add(z.duration_us.saturating_mul(1000)))
        };

        let span = Span {
            trace_id: z.trace_id.clone(),
            span_id,
            trace_state,
            parent_span_id: parent,
            name: z.name.clone(),
            kind: kind as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes: attrs.into_vec(),
            events: z.annotations.iter().map(event).collect(),
            links,
            status,
            ..Default::default()
        };
        g.push(resource.into_vec(), scope, span);
    }
    g.finish()
}

#[cfg(test)]
mod tests;

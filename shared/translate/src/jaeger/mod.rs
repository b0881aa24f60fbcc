//! Jaeger to OTLP, as the OpenTelemetry Collector's `pkg/translator/jaeger` maps it.
//!
//! Both wire formats (thrift `Batch` and api_v2 protobuf `PostSpansRequest`) are decoded into the
//! small model below, which one function translates:
//!
//! - process `serviceName` -> resource `service.name`; process tags -> resource attributes
//!   (`hostname` -> `host.name`, `jaeger.version` -> `opencensus.exporterversion: Jaeger-<v>`
//!   unless those keys are already set); a span's own process (api_v2) wins over the batch's;
//! - trace IDs (high, low) -> 16 bytes, 64-bit IDs widened with a zero high half; span IDs;
//! - parent: thrift `parentSpanId`, else the first same-trace CHILD_OF reference, else the first
//!   same-trace FOLLOWS_FROM reference; every other reference becomes a link with attribute
//!   `opentracing.ref_type` (`child_of` / `follows_from`);
//! - tags -> attributes (string, bool, int64, double, binary), map semantics;
//!   `span.kind` -> kind; `otel.scope.name`/`otel.library.name` (+ version) -> scope;
//!   `w3c.tracestate` -> trace state; status from `error` (bool true) > `otel.status_code`
//!   (`OK`/`ERROR`) with `otel.status_description` > `http.status_code` (4xx errors for clients,
//!   5xx for everyone), and the tags consumed this way are removed;
//! - logs -> events (timestamp; fields -> attributes; the `event` field -> the event name);
//! - start time and duration (microseconds in thrift) -> start and end in nanoseconds.

pub mod proto;
pub mod thrift;

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue};
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{Span, Status};

use crate::otlp::{self, Attrs, Grouper, SpanKind, StatusCode};
use crate::ExportTraceServiceRequest;

pub use proto::decode_post_spans;
pub use thrift::{decode_agent_binary, decode_agent_compact, decode_thrift_binary_batch, decode_thrift_compact_batch};

/// A Jaeger tag value.
#[derive(Debug, Clone, PartialEq)]
pub enum TagValue {
    Str(String),
    Bool(bool),
    Long(i64),
    Double(f64),
    Binary(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    pub key: String,
    pub value: TagValue,
}

impl Tag {
    pub fn new(key: &str, value: TagValue) -> Self {
        Tag { key: key.into(), value }
    }
    fn any_value(&self) -> AnyValue {
        match &self.value {
            TagValue::Str(s) => otlp::str_value(s.clone()),
            TagValue::Bool(b) => otlp::bool_value(*b),
            TagValue::Long(i) => otlp::int_value(*i),
            TagValue::Double(d) => otlp::double_value(*d),
            TagValue::Binary(b) => otlp::bytes_value(b.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefType {
    ChildOf,
    FollowsFrom,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpanRef {
    pub ref_type: RefType,
    /// 16 bytes (high, low), big-endian.
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    pub timestamp_nanos: u64,
    pub fields: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Process {
    pub service_name: String,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct JaegerSpan {
    /// 16 bytes (high, low), big-endian; other lengths are passed through (and rejected later by
    /// validation).
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    /// Thrift's `parentSpanId` (empty or zero: none).
    pub parent_span_id: Vec<u8>,
    pub operation_name: String,
    pub references: Vec<SpanRef>,
    pub flags: u32,
    pub start_nanos: u64,
    pub duration_nanos: u64,
    pub tags: Vec<Tag>,
    pub logs: Vec<Log>,
    /// api_v2 only: a span-level process overriding the batch's.
    pub process: Option<Process>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Batch {
    pub process: Option<Process>,
    pub spans: Vec<JaegerSpan>,
}

fn is_zero(id: &[u8]) -> bool {
    id.iter().all(|b| *b == 0)
}

/// The parent span ID (empty: none), as the Collector infers it.
fn parent_of(span: &JaegerSpan) -> Vec<u8> {
    if !span.parent_span_id.is_empty() && !is_zero(&span.parent_span_id) {
        return span.parent_span_id.clone();
    }
    let same_trace = |r: &&SpanRef| r.trace_id == span.trace_id;
    if let Some(r) = span
        .references
        .iter()
        .filter(same_trace)
        .find(|r| r.ref_type == RefType::ChildOf)
    {
        return r.span_id.clone();
    }
    if let Some(r) = span
        .references
        .iter()
        .filter(same_trace)
        .find(|r| r.ref_type == RefType::FollowsFrom)
    {
        return r.span_id.clone();
    }
    Vec::new()
}

fn resource_attrs(p: Option<&Process>) -> Vec<opentelemetry_proto::tonic::common::v1::KeyValue> {
    let Some(p) = p else { return Vec::new() };
    let mut a = Attrs::new();
    if !p.service_name.is_empty() {
        a.put("service.name", otlp::str_value(p.service_name.clone()));
    }
    for t in &p.tags {
        a.put(&t.key, t.any_value());
    }
    if a.contains("hostname") && !a.contains("host.name") {
        if let Some(v) = a.remove("hostname") {
            a.put("host.name", AnyValue { value: Some(v) });
        }
    }
    if a.contains("jaeger.version") && !a.contains("opencensus.exporterversion") {
        if let Some(v) = a.remove("jaeger.version") {
            a.put(
                "opencensus.exporterversion",
                otlp::str_value(format!("Jaeger-{}", otlp::value_as_string(&v))),
            );
        }
    }
    a.into_vec()
}

fn kind_from_str(s: &str) -> SpanKind {
    match s {
        "client" => SpanKind::Client,
        "server" => SpanKind::Server,
        "producer" => SpanKind::Producer,
        "consumer" => SpanKind::Consumer,
        "internal" => SpanKind::Internal,
        _ => SpanKind::Unspecified,
    }
}

/// Status from tags, removing the tags it consumes (the Collector's `setInternalSpanStatus`).
fn take_status(attrs: &mut Attrs, kind: SpanKind) -> Option<Status> {
    let mut code = StatusCode::Unset;
    let mut message = String::new();
    let mut exists = false;
    let take_desc = |attrs: &mut Attrs| {
        attrs
            .remove("otel.status_description")
            .map(|v| otlp::value_as_string(&v))
    };
    if let Some(Value::BoolValue(true)) = attrs.get("error") {
        code = StatusCode::Error;
        attrs.remove("error");
        exists = true;
        if let Some(d) = take_desc(attrs) {
            message = d;
        } else if let Some(Value::StringValue(m)) = attrs.get("http.status_message") {
            message = m.clone();
        }
    }
    if let Some(v) = attrs.get("otel.status_code").cloned() {
        if !exists {
            exists = true;
            match otlp::value_as_string(&v).to_ascii_uppercase().as_str() {
                "OK" => code = StatusCode::Ok,
                "ERROR" => code = StatusCode::Error,
                _ => {}
            }
            if let Some(d) = take_desc(attrs) {
                message = d;
            }
        }
        attrs.remove("otel.status_code");
    } else if !exists {
        let http = match attrs.get("http.status_code") {
            Some(Value::IntValue(i)) => Some(*i),
            Some(Value::StringValue(s)) => s.parse::<i64>().ok(),
            _ => None,
        };
        if let Some(http) = http {
            let c = otlp::status_from_http(http, kind);
            if c != StatusCode::Unset {
                exists = true;
                code = c;
            }
            if let Some(Value::StringValue(m)) = attrs.get("http.status_message") {
                message = m.clone();
            }
        }
    }
    exists.then_some(Status {
        code: code as i32,
        message,
    })
}

fn take_scope(tags: &[Tag]) -> (InstrumentationScope, [&'static str; 2]) {
    let get = |k: &str| {
        tags.iter()
            .rev()
            .find(|t| t.key == k)
            .and_then(|t| t.any_value().value)
            .map(|v| otlp::value_as_string(&v))
    };
    for (n, v) in [
        ("otel.scope.name", "otel.scope.version"),
        ("otel.library.name", "otel.library.version"),
    ] {
        if let Some(name) = get(n) {
            let version = get(v).unwrap_or_default();
            return (
                InstrumentationScope {
                    name,
                    version,
                    ..Default::default()
                },
                [n, v],
            );
        }
    }
    (InstrumentationScope::default(), ["", ""])
}

fn translate_span(s: &JaegerSpan) -> (InstrumentationScope, Span) {
    let (scope, scope_keys) = take_scope(&s.tags);
    let mut attrs = Attrs::new();
    for t in &s.tags {
        if !scope_keys[0].is_empty() && (t.key == scope_keys[0] || t.key == scope_keys[1]) {
            continue;
        }
        attrs.put(&t.key, t.any_value());
    }
    let mut kind = SpanKind::Unspecified;
    if let Some(v) = attrs.remove("span.kind") {
        kind = kind_from_str(&otlp::value_as_string(&v));
    }
    let status = take_status(&mut attrs, kind);
    let trace_state = match attrs.remove("w3c.tracestate") {
        Some(v) => otlp::value_as_string(&v),
        None => String::new(),
    };
    let parent = parent_of(s);
    let events = s
        .logs
        .iter()
        .map(|l| {
            let mut a = Attrs::new();
            for f in &l.fields {
                a.put(&f.key, f.any_value());
            }
            let name = match a.remove("event") {
                Some(v) => otlp::value_as_string(&v),
                None => String::new(),
            };
            Event {
                time_unix_nano: l.timestamp_nanos,
                name,
                attributes: a.into_vec(),
                dropped_attributes_count: 0,
            }
        })
        .collect();
    let links = s
        .references
        .iter()
        .filter(|r| !(r.ref_type == RefType::ChildOf && r.span_id == parent))
        .map(|r| Link {
            trace_id: r.trace_id.clone(),
            span_id: r.span_id.clone(),
            attributes: vec![otlp::kv(
                "opentracing.ref_type",
                otlp::str_value(match r.ref_type {
                    RefType::ChildOf => "child_of",
                    RefType::FollowsFrom => "follows_from",
                }),
            )],
            ..Default::default()
        })
        .collect();
    let span = Span {
        trace_id: s.trace_id.clone(),
        span_id: s.span_id.clone(),
        trace_state,
        parent_span_id: parent,
        name: s.operation_name.clone(),
        kind: kind as i32,
        start_time_unix_nano: s.start_nanos,
        end_time_unix_nano: s.start_nanos.saturating_add(s.duration_nanos),
        attributes: attrs.into_vec(),
        events,
        links,
        status,
        ..Default::default()
    };
    (scope, span)
}

/// Translates Jaeger batches to one OTLP request.
pub fn to_otlp(batches: &[Batch]) -> ExportTraceServiceRequest {
    let mut g = Grouper::default();
    for b in batches {
        if b.spans.is_empty() {
            continue;
        }
        let batch_resource = resource_attrs(b.process.as_ref());
        for s in &b.spans {
            if *s == JaegerSpan::default() {
                continue;
            }
            let resource = match &s.process {
                Some(p) => resource_attrs(Some(p)),
                None => batch_resource.clone(),
            };
            let (scope, span) = translate_span(s);
            g.push(resource, scope, span);
        }
    }
    g.finish()
}

#[cfg(test)]
mod tests;

//! Jaeger `api_v2` protobuf: `jaeger.api_v2.CollectorService/PostSpans` requests.
//!
//! Hand-written prost messages with the upstream field numbers (`model.proto`, `collector.proto`):
//! `PostSpansRequest { Batch batch = 1 }`, `Batch { repeated Span spans = 1; Process process = 2 }`,
//! `Span { bytes trace_id = 1; bytes span_id = 2; string operation_name = 3; repeated SpanRef
//! references = 4; uint32 flags = 5; Timestamp start_time = 6; Duration duration = 7; repeated
//! KeyValue tags = 8; repeated Log logs = 9; Process process = 10; string process_id = 11;
//! repeated string warnings = 12 }`, `KeyValue { string key = 1; ValueType v_type = 2; string v_str
//! = 3; bool v_bool = 4; int64 v_int64 = 5; double v_float64 = 6; bytes v_binary = 7 }` (STRING 0,
//! BOOL 1, INT64 2, FLOAT64 3, BINARY 4), `Log { Timestamp timestamp = 1; repeated KeyValue fields
//! = 2 }`, `SpanRef { bytes trace_id = 1; bytes span_id = 2; SpanRefType ref_type = 3 }`,
//! `Process { string service_name = 1; repeated KeyValue tags = 2 }`.

use prost::Message;

use super::{Batch, JaegerSpan, Log, Process, RefType, SpanRef, Tag, TagValue};
use crate::{ExportTraceServiceRequest, TranslateError};

const FORMAT: &str = "Jaeger api_v2 PostSpansRequest";

#[derive(Clone, PartialEq, Message)]
pub struct PostSpansRequest {
    #[prost(message, optional, tag = "1")]
    pub batch: Option<PbBatch>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PostSpansResponse {}

#[derive(Clone, PartialEq, Message)]
pub struct PbBatch {
    #[prost(message, repeated, tag = "1")]
    pub spans: Vec<PbSpan>,
    #[prost(message, optional, tag = "2")]
    pub process: Option<PbProcess>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PbProcess {
    #[prost(string, tag = "1")]
    pub service_name: String,
    #[prost(message, repeated, tag = "2")]
    pub tags: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(int32, tag = "2")]
    pub v_type: i32,
    #[prost(string, tag = "3")]
    pub v_str: String,
    #[prost(bool, tag = "4")]
    pub v_bool: bool,
    #[prost(int64, tag = "5")]
    pub v_int64: i64,
    #[prost(double, tag = "6")]
    pub v_float64: f64,
    #[prost(bytes = "vec", tag = "7")]
    pub v_binary: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct PbLog {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(message, repeated, tag = "2")]
    pub fields: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PbSpanRef {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    #[prost(int32, tag = "3")]
    pub ref_type: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct PbSpan {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    #[prost(string, tag = "3")]
    pub operation_name: String,
    #[prost(message, repeated, tag = "4")]
    pub references: Vec<PbSpanRef>,
    #[prost(uint32, tag = "5")]
    pub flags: u32,
    #[prost(message, optional, tag = "6")]
    pub start_time: Option<Timestamp>,
    /// `google.protobuf.Duration` has the same shape as `Timestamp`.
    #[prost(message, optional, tag = "7")]
    pub duration: Option<Timestamp>,
    #[prost(message, repeated, tag = "8")]
    pub tags: Vec<KeyValue>,
    #[prost(message, repeated, tag = "9")]
    pub logs: Vec<PbLog>,
    #[prost(message, optional, tag = "10")]
    pub process: Option<PbProcess>,
    #[prost(string, tag = "11")]
    pub process_id: String,
    #[prost(string, repeated, tag = "12")]
    pub warnings: Vec<String>,
}

fn nanos(t: &Option<Timestamp>) -> u64 {
    match t {
        Some(t) if t.seconds >= 0 => (t.seconds as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(t.nanos.max(0) as u64),
        _ => 0,
    }
}

/// Jaeger's 16-byte trace ID; an 8-byte one is widened (high half zero).
fn trace_id(b: &[u8]) -> Vec<u8> {
    if b.len() == 8 {
        let mut v = vec![0u8; 8];
        v.extend_from_slice(b);
        v
    } else {
        b.to_vec()
    }
}

fn tags(kvs: &[KeyValue]) -> Vec<Tag> {
    kvs.iter()
        .map(|kv| Tag {
            key: kv.key.clone(),
            value: match kv.v_type {
                0 => TagValue::Str(kv.v_str.clone()),
                1 => TagValue::Bool(kv.v_bool),
                2 => TagValue::Long(kv.v_int64),
                3 => TagValue::Double(kv.v_float64),
                4 => TagValue::Binary(kv.v_binary.clone()),
                other => TagValue::Str(format!("<Unknown Jaeger TagType {other}>")),
            },
        })
        .collect()
}

fn process(p: &PbProcess) -> Process {
    Process {
        service_name: p.service_name.clone(),
        tags: tags(&p.tags),
    }
}

/// Converts a decoded request to the common Jaeger model.
pub fn to_model(req: &PostSpansRequest) -> Batch {
    let Some(b) = &req.batch else { return Batch::default() };
    Batch {
        process: b.process.as_ref().map(process),
        spans: b
            .spans
            .iter()
            .map(|s| JaegerSpan {
                trace_id: trace_id(&s.trace_id),
                span_id: s.span_id.clone(),
                parent_span_id: Vec::new(),
                operation_name: s.operation_name.clone(),
                references: s
                    .references
                    .iter()
                    .map(|r| SpanRef {
                        ref_type: if r.ref_type == 1 {
                            RefType::FollowsFrom
                        } else {
                            RefType::ChildOf
                        },
                        trace_id: trace_id(&r.trace_id),
                        span_id: r.span_id.clone(),
                    })
                    .collect(),
                flags: s.flags,
                start_nanos: nanos(&s.start_time),
                duration_nanos: nanos(&s.duration),
                tags: tags(&s.tags),
                logs: s
                    .logs
                    .iter()
                    .map(|l| Log {
                        timestamp_nanos: nanos(&l.timestamp),
                        fields: tags(&l.fields),
                    })
                    .collect(),
                process: s.process.as_ref().map(process),
            })
            .collect(),
    }
}

/// Decodes a `PostSpansRequest` (the gRPC message, without the gRPC frame).
pub fn decode_post_spans(data: &[u8]) -> Result<ExportTraceServiceRequest, TranslateError> {
    let req = PostSpansRequest::decode(data).map_err(|e| TranslateError::new(FORMAT, e.to_string()))?;
    Ok(super::to_otlp(&[to_model(&req)]))
}

fn pb_kvs(t: &[Tag]) -> Vec<KeyValue> {
    t.iter()
        .map(|t| {
            let mut kv = KeyValue {
                key: t.key.clone(),
                ..Default::default()
            };
            match &t.value {
                TagValue::Str(s) => kv.v_str = s.clone(),
                TagValue::Bool(b) => (kv.v_type, kv.v_bool) = (1, *b),
                TagValue::Long(l) => (kv.v_type, kv.v_int64) = (2, *l),
                TagValue::Double(d) => (kv.v_type, kv.v_float64) = (3, *d),
                TagValue::Binary(b) => (kv.v_type, kv.v_binary) = (4, b.clone()),
            }
            kv
        })
        .collect()
}

fn ts(n: u64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: (n / 1_000_000_000) as i64,
        nanos: (n % 1_000_000_000) as i32,
    })
}

fn pb_process(p: &Process) -> PbProcess {
    PbProcess {
        service_name: p.service_name.clone(),
        tags: pb_kvs(&p.tags),
    }
}

/// Encodes the model as a `PostSpansRequest` (tests, fuzz seeds, tools).
pub fn encode_post_spans(b: &Batch) -> Vec<u8> {
    PostSpansRequest {
        batch: Some(PbBatch {
            process: b.process.as_ref().map(pb_process),
            spans: b
                .spans
                .iter()
                .map(|s| {
                    let mut refs: Vec<PbSpanRef> = s
                        .references
                        .iter()
                        .map(|r| PbSpanRef {
                            trace_id: r.trace_id.clone(),
                            span_id: r.span_id.clone(),
                            ref_type: (r.ref_type == RefType::FollowsFrom) as i32,
                        })
                        .collect();
                    // api_v2 has no parent field: the parent is a CHILD_OF reference.
                    if !s.parent_span_id.is_empty() && s.parent_span_id.iter().any(|b| *b != 0) {
                        refs.insert(
                            0,
                            PbSpanRef {
                                trace_id: s.trace_id.clone(),
                                span_id: s.parent_span_id.clone(),
                                ref_type: 0,
                            },
                        );
                    }
                    PbSpan {
                        trace_id: s.trace_id.clone(),
                        span_id: s.span_id.clone(),
                        operation_name: s.operation_name.clone(),
                        references: refs,
                        flags: s.flags,
                        start_time: ts(s.start_nanos),
                        duration: ts(s.duration_nanos),
                        tags: pb_kvs(&s.tags),
                        logs: s
                            .logs
                            .iter()
                            .map(|l| PbLog {
                                timestamp: ts(l.timestamp_nanos),
                                fields: pb_kvs(&l.fields),
                            })
                            .collect(),
                        process: s.process.as_ref().map(pb_process),
                        ..Default::default()
                    }
                })
                .collect(),
        }),
    }
    .encode_to_vec()
}

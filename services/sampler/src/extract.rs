//! Reading spans out of buffered records at the protobuf wire level.
//!
//! Two passes with different costs:
//! - [`scan_record`] runs on arrival: span IDs and whether a root span is present (cheap, no
//!   strings);
//! - [`trace_data`] runs once per trace at decision time: everything policies read, borrowing
//!   strings from the record bytes, with only the attributes the policy set names.

use tailsift_otlp::wire::{Field, Fields, FIXED64, LEN, VARINT};
use tailsift_policy::{AttrValue, Requirements, SpanData, StatusCode, TraceData};

/// What arrival needs to know about one record.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecordScan {
    pub trace_id: Option<[u8; 16]>,
    pub span_ids: Vec<[u8; 8]>,
    pub has_root: bool,
    /// Spans whose trace ID differs from the first one (a record not written by Tailsift or an
    /// OTel collector with `partition_traces_by_id`).
    pub foreign_spans: usize,
}

fn spans_of(record: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
    // (resource payload holder, span payload): resource returned as the ResourceSpans payload.
    Fields::new(record)
        .filter_map(Result::ok)
        .filter(|f| f.number == 1 && f.wire_type == LEN)
        .flat_map(|rs| {
            let rs_payload = rs.payload;
            Fields::new(rs.payload)
                .filter_map(Result::ok)
                .filter(|f| f.number == 2 && f.wire_type == LEN)
                .flat_map(|ss| {
                    Fields::new(ss.payload)
                        .filter_map(Result::ok)
                        .filter(|f| f.number == 2 && f.wire_type == LEN)
                })
                .map(move |span| (rs_payload, span.payload))
        })
}

/// Scans one record's spans.
pub fn scan_record(record: &[u8]) -> RecordScan {
    let mut out = RecordScan::default();
    for (_, span) in spans_of(record) {
        let (mut tid, mut sid, mut parent) = (None, None, None);
        for f in Fields::new(span).filter_map(Result::ok) {
            match (f.number, f.wire_type) {
                (1, LEN) => tid = <[u8; 16]>::try_from(f.payload).ok(),
                (2, LEN) => sid = <[u8; 8]>::try_from(f.payload).ok(),
                (4, LEN) => parent = Some(f.payload),
                _ => {}
            }
        }
        let Some(tid) = tid else { continue };
        match out.trace_id {
            None => out.trace_id = Some(tid),
            Some(t) if t != tid => {
                out.foreign_spans += 1;
                continue;
            }
            _ => {}
        }
        if let Some(s) = sid {
            out.span_ids.push(s);
        }
        if parent.is_none_or(|p| p.is_empty() || p == [0u8; 8]) {
            out.has_root = true;
        }
    }
    out
}

/// Decodes an `AnyValue` (a oneof: the last field present wins, as in protobuf).
fn any_value(payload: &[u8]) -> AttrValue<'_> {
    let Some(f) = Fields::new(payload).filter_map(Result::ok).last() else {
        return AttrValue::Other;
    };
    match (f.number, f.wire_type) {
        (1, LEN) => std::str::from_utf8(f.payload)
            .map(AttrValue::Str)
            .unwrap_or(AttrValue::Other),
        (2, VARINT) => AttrValue::Bool(varint(&f) != 0),
        (3, VARINT) => AttrValue::Int(varint(&f) as i64),
        (4, FIXED64) => AttrValue::Double(f64::from_le_bytes(f.payload.try_into().unwrap_or([0; 8]))),
        _ => AttrValue::Other,
    }
}

fn varint(f: &Field<'_>) -> u64 {
    let mut pos = 0;
    tailsift_otlp::wire::read_varint(f.payload, &mut pos, 0).unwrap_or(0)
}

fn fixed64(f: &Field<'_>) -> u64 {
    u64::from_le_bytes(f.payload.try_into().unwrap_or([0; 8]))
}

/// Decodes a `KeyValue` if `want(key)`.
fn key_value<'a>(payload: &'a [u8], want: &dyn Fn(&str) -> bool) -> Option<(&'a str, AttrValue<'a>)> {
    let mut key = None;
    let mut value = AttrValue::Other;
    for f in Fields::new(payload).filter_map(Result::ok) {
        match (f.number, f.wire_type) {
            (1, LEN) => key = std::str::from_utf8(f.payload).ok(),
            (2, LEN) => value = any_value(f.payload),
            _ => {}
        }
    }
    let key = key?;
    want(key).then_some((key, value))
}

/// Resource attributes of one `ResourceSpans` payload: `service.name` plus the required keys.
fn resource_attrs<'a>(rs: &'a [u8], req: &Requirements) -> Vec<(&'a str, AttrValue<'a>)> {
    let mut out = Vec::new();
    for f in Fields::new(rs).filter_map(Result::ok) {
        if f.number == 1 && f.wire_type == LEN {
            for a in Fields::new(f.payload)
                .filter_map(Result::ok)
                .filter(|a| a.number == 1 && a.wire_type == LEN)
            {
                if let Some(kv) = key_value(a.payload, &|k| {
                    k == tailsift_policy::SERVICE_NAME_KEY || req.wants_resource_attribute(k)
                }) {
                    out.push(kv);
                }
            }
        }
    }
    out
}

/// Decoded resources, kept alive while the [`TraceData`] borrowing them is used.
pub struct Resources<'a> {
    list: Vec<(*const u8, Vec<(&'a str, AttrValue<'a>)>)>,
}

/// Builds the policy view of a trace from its records. Duplicate spans (same span ID, e.g. from
/// a client retry) appear once.
pub fn trace_data<'a>(
    trace_id: [u8; 16],
    records: &'a [bytes::Bytes],
    req: &Requirements,
    resources: &'a mut Resources<'a>,
) -> TraceData<'a> {
    // Pass 1: decode each distinct resource once.
    for rec in records {
        for f in Fields::new(rec)
            .filter_map(Result::ok)
            .filter(|f| f.number == 1 && f.wire_type == LEN)
        {
            let attrs = resource_attrs(f.payload, req);
            resources.list.push((f.payload.as_ptr(), attrs));
        }
    }
    let resources: &'a Resources<'a> = resources;
    let mut spans = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for rec in records {
        for (rs, span) in spans_of(rec) {
            let attrs: &'a [(&'a str, AttrValue<'a>)] = resources
                .list
                .iter()
                .find(|(p, _)| *p == rs.as_ptr())
                .map(|(_, a)| a.as_slice())
                .unwrap_or(&[]);
            let service = attrs.iter().find_map(|(k, v)| match (k, v) {
                (&tailsift_policy::SERVICE_NAME_KEY, AttrValue::Str(s)) => Some(*s),
                _ => None,
            });
            if let Some(sd) = span_data(span, req, attrs, service.unwrap_or(""), &trace_id) {
                if seen.insert(sd.span_id) {
                    spans.push(sd);
                }
            }
        }
    }
    TraceData { trace_id, spans }
}

impl<'a> Resources<'a> {
    pub fn new() -> Self {
        Resources { list: Vec::new() }
    }
}

impl Default for Resources<'_> {
    fn default() -> Self {
        Self::new()
    }
}

fn span_data<'a>(
    span: &'a [u8],
    req: &Requirements,
    resource_attributes: &'a [(&'a str, AttrValue<'a>)],
    service: &'a str,
    trace_id: &[u8; 16],
) -> Option<SpanData<'a>> {
    let mut sd = SpanData {
        resource_attributes,
        service,
        ..Default::default()
    };
    let mut tid_ok = false;
    for f in Fields::new(span).filter_map(Result::ok) {
        match (f.number, f.wire_type) {
            (1, LEN) => tid_ok = f.payload == trace_id,
            (2, LEN) => sd.span_id = f.payload.try_into().ok()?,
            (3, LEN) => sd.trace_state = std::str::from_utf8(f.payload).unwrap_or(""),
            (4, LEN) => sd.parent_span_id = <[u8; 8]>::try_from(f.payload).ok().filter(|p| *p != [0; 8]),
            (5, LEN) => sd.name = std::str::from_utf8(f.payload).unwrap_or(""),
            (6, VARINT) => sd.kind = varint(&f) as i32,
            (7, FIXED64) => sd.start_unix_nano = fixed64(&f),
            (8, FIXED64) => sd.end_unix_nano = fixed64(&f),
            (9, LEN) if req.all_attributes || !req.span_attributes.is_empty() => {
                if let Some(kv) = key_value(f.payload, &|k| req.wants_span_attribute(k)) {
                    sd.attributes.push(kv);
                }
            }
            (15, LEN) => {
                for s in Fields::new(f.payload).filter_map(Result::ok) {
                    if s.number == 3 && s.wire_type == VARINT {
                        sd.status = StatusCode::from_otlp(varint(&s) as i32);
                    }
                }
            }
            _ => {}
        }
    }
    tid_ok.then_some(sd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
    use prost::Message;

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn record(spans: Vec<Span>, service: &str) -> bytes::Bytes {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", any_value::Value::StringValue(service.into())),
                        kv("deployment.environment", any_value::Value::StringValue("prod".into())),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
        .into()
    }

    #[test]
    fn scan_finds_ids_and_root() {
        let t = vec![7u8; 16];
        let root = Span {
            trace_id: t.clone(),
            span_id: vec![1; 8],
            ..Default::default()
        };
        let child = Span {
            trace_id: t.clone(),
            span_id: vec![2; 8],
            parent_span_id: vec![1; 8],
            ..Default::default()
        };
        let s = scan_record(&record(vec![child.clone()], "a"));
        assert_eq!(s.trace_id, Some([7; 16]));
        assert!(!s.has_root);
        assert_eq!(s.span_ids, vec![[2; 8]]);
        let s = scan_record(&record(vec![child, root], "a"));
        assert!(s.has_root);
        assert_eq!(s.span_ids.len(), 2);
    }

    #[test]
    fn trace_data_reads_what_policies_need() {
        let t = vec![9u8; 16];
        let span = Span {
            trace_id: t.clone(),
            span_id: vec![1; 8],
            parent_span_id: vec![2; 8],
            trace_state: "vendor=x".into(),
            name: "GET /cart".into(),
            kind: 2,
            start_time_unix_nano: 100,
            end_time_unix_nano: 300,
            attributes: vec![
                kv("http.status_code", any_value::Value::IntValue(503)),
                kv("cache.hit", any_value::Value::BoolValue(true)),
                kv("ratio", any_value::Value::DoubleValue(0.5)),
                kv("ignored", any_value::Value::StringValue("x".into())),
            ],
            status: Some(Status {
                code: status::StatusCode::Error as i32,
                message: "boom".into(),
            }),
            ..Default::default()
        };
        let dup = span.clone();
        let recs = vec![record(vec![span], "checkout"), record(vec![dup], "checkout")];
        let mut req = Requirements::default();
        req.span_attributes.insert("http.status_code".into());
        req.span_attributes.insert("cache.hit".into());
        req.span_attributes.insert("ratio".into());
        req.resource_attributes.insert("deployment.environment".into());
        let mut res = Resources::new();
        let td = trace_data([9; 16], &recs, &req, &mut res);
        assert_eq!(td.spans.len(), 1, "duplicate span IDs collapse");
        let s = &td.spans[0];
        assert_eq!(s.name, "GET /cart");
        assert_eq!(s.service, "checkout");
        assert_eq!(s.kind, 2);
        assert_eq!((s.start_unix_nano, s.end_unix_nano), (100, 300));
        assert_eq!(s.status, StatusCode::Error);
        assert_eq!(s.trace_state, "vendor=x");
        assert_eq!(s.parent_span_id, Some([2; 8]));
        assert_eq!(s.attribute("http.status_code"), Some(AttrValue::Int(503)));
        assert_eq!(s.attribute("cache.hit"), Some(AttrValue::Bool(true)));
        assert_eq!(s.attribute("ratio"), Some(AttrValue::Double(0.5)));
        assert_eq!(s.attribute("ignored"), None, "only required attributes are decoded");
        assert_eq!(
            s.resource_attribute("deployment.environment"),
            Some(AttrValue::Str("prod"))
        );
    }
}

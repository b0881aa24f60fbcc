//! Reading spans out of buffered records at the protobuf wire level.
//!
//! Two passes with different costs:
//! - [`scan_record`] runs on arrival: span IDs and whether a root span is present (cheap, no
//!   strings);
//! - [`trace_data`] runs once per trace at decision time: everything policies read, borrowing
//!   strings from the record bytes, with only the attributes the policy set names.

use tailsift_otlp::wire::{Field, Fields, FIXED32, FIXED64, LEN, VARINT};
use tailsift_policy::{AttrValue, Requirements, SpanData, SpanEventData, StatusCode, TraceData};

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

fn spans_of(record: &[u8]) -> impl Iterator<Item = (&[u8], &[u8], &[u8])> + '_ {
    // (ResourceSpans payload, ScopeSpans payload, span payload).
    Fields::new(record)
        .filter_map(Result::ok)
        .filter(|f| f.number == 1 && f.wire_type == LEN)
        .flat_map(|rs| {
            let rs_payload = rs.payload;
            Fields::new(rs.payload)
                .filter_map(Result::ok)
                .filter(|f| f.number == 2 && f.wire_type == LEN)
                .flat_map(move |ss| {
                    let ss_payload = ss.payload;
                    Fields::new(ss.payload)
                        .filter_map(Result::ok)
                        .filter(|f| f.number == 2 && f.wire_type == LEN)
                        .map(move |span| (rs_payload, ss_payload, span.payload))
                })
        })
}

/// Scans one record's spans.
pub fn scan_record(record: &[u8]) -> RecordScan {
    let mut out = RecordScan::default();
    for (_, _, span) in spans_of(record) {
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

/// The instrumentation scope of one `ScopeSpans` payload (only decoded when a policy reads it).
#[derive(Default)]
struct Scope<'a> {
    name: &'a str,
    version: &'a str,
    attributes: Vec<(&'a str, AttrValue<'a>)>,
}

fn scope_of<'a>(ss: &'a [u8], req: &Requirements) -> Scope<'a> {
    let mut out = Scope::default();
    for f in Fields::new(ss).filter_map(Result::ok) {
        if f.number == 1 && f.wire_type == LEN {
            for g in Fields::new(f.payload).filter_map(Result::ok) {
                match (g.number, g.wire_type) {
                    (1, LEN) => out.name = std::str::from_utf8(g.payload).unwrap_or(""),
                    (2, LEN) => out.version = std::str::from_utf8(g.payload).unwrap_or(""),
                    (3, LEN) => {
                        if let Some(kv) = key_value(g.payload, &|k| req.wants_scope_attribute(k)) {
                            out.attributes.push(kv);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

/// Decoded resources (and scopes), kept alive while the [`TraceData`] borrowing them is used.
pub struct Resources<'a> {
    list: Vec<(*const u8, Vec<(&'a str, AttrValue<'a>)>)>,
    scopes: Vec<(*const u8, Scope<'a>)>,
}

/// Builds the policy view of a trace from its records. Duplicate spans (same span ID, e.g. from
/// a client retry) appear once.
///
/// `records` are the encoded `ExportTraceServiceRequest`s (usually [`bytes::Bytes`]; any byte
/// container works, e.g. `&[u8]` for one record at a time).
pub fn trace_data<'a, R: AsRef<[u8]>>(
    trace_id: [u8; 16],
    records: &'a [R],
    req: &Requirements,
    resources: &'a mut Resources<'a>,
) -> TraceData<'a> {
    // Pass 1: decode each distinct resource once.
    for rec in records {
        for f in Fields::new(rec.as_ref())
            .filter_map(Result::ok)
            .filter(|f| f.number == 1 && f.wire_type == LEN)
        {
            let attrs = resource_attrs(f.payload, req);
            resources.list.push((f.payload.as_ptr(), attrs));
            if req.scope {
                for ss in Fields::new(f.payload)
                    .filter_map(Result::ok)
                    .filter(|g| g.number == 2 && g.wire_type == LEN)
                {
                    resources.scopes.push((ss.payload.as_ptr(), scope_of(ss.payload, req)));
                }
            }
        }
    }
    let resources: &'a Resources<'a> = resources;
    let mut spans = Vec::new();
    let mut seen = std::collections::HashSet::new();
    // Pass 2 meets resources and scopes in the order pass 1 listed them: a cursor finds each in
    // amortised constant time (a search from the start made a trace of many records quadratic).
    let (mut at_resource, mut at_scope) = (0usize, 0usize);
    for rec in records {
        for (rs, ss, span) in spans_of(rec.as_ref()) {
            let attrs: &'a [(&'a str, AttrValue<'a>)] = seek(&resources.list, &mut at_resource, rs.as_ptr())
                .map(|a| a.as_slice())
                .unwrap_or(&[]);
            let service = attrs.iter().find_map(|(k, v)| match (k, v) {
                (&tailsift_policy::SERVICE_NAME_KEY, AttrValue::Str(s)) => Some(*s),
                _ => None,
            });
            if let Some(mut sd) = span_data(span, req, attrs, service.unwrap_or(""), &trace_id) {
                if req.scope {
                    if let Some(scope) = seek(&resources.scopes, &mut at_scope, ss.as_ptr()) {
                        sd.scope_name = scope.name;
                        sd.scope_version = scope.version;
                        sd.scope_attributes = scope.attributes.as_slice();
                    }
                }
                if seen.insert(sd.span_id) {
                    spans.push(sd);
                }
            }
        }
    }
    // The records are encoded `ExportTraceServiceRequest`s of this trace's spans: their total
    // size is the trace's OTLP-encoded size (what the collector's `bytes_limiting` charges).
    let size_bytes = records.iter().map(|r| r.as_ref().len() as u64).sum();
    TraceData {
        trace_id,
        spans,
        size_bytes,
    }
}

/// The entry for `ptr` in `list`, searching forward from `*cursor` (left at the entry found), and
/// from the start when it is not ahead.
fn seek<'l, T>(list: &'l [(*const u8, T)], cursor: &mut usize, ptr: *const u8) -> Option<&'l T> {
    let ahead = list[(*cursor).min(list.len())..].iter().position(|(p, _)| *p == ptr);
    let i = match ahead {
        Some(k) => *cursor + k,
        None => list.iter().position(|(p, _)| *p == ptr)?,
    };
    *cursor = i;
    Some(&list[i].1)
}

impl<'a> Resources<'a> {
    pub fn new() -> Self {
        Resources {
            list: Vec::new(),
            scopes: Vec::new(),
        }
    }
}

impl Default for Resources<'_> {
    fn default() -> Self {
        Self::new()
    }
}

/// One `Span.Event`: name, time, dropped count and the required attributes.
fn event_data<'a>(payload: &'a [u8], req: &Requirements) -> SpanEventData<'a> {
    let mut ev = SpanEventData::default();
    for f in Fields::new(payload).filter_map(Result::ok) {
        match (f.number, f.wire_type) {
            (1, FIXED64) => ev.time_unix_nano = fixed64(&f),
            (2, LEN) => ev.name = std::str::from_utf8(f.payload).unwrap_or(""),
            (3, LEN) if req.all_attributes || !req.event_attributes.is_empty() => {
                if let Some(kv) = key_value(f.payload, &|k| req.wants_event_attribute(k)) {
                    ev.attributes.push(kv);
                }
            }
            (4, VARINT) => ev.dropped_attributes_count = varint(&f) as u32,
            _ => {}
        }
    }
    ev
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
            (10, VARINT) => sd.dropped_attributes_count = varint(&f) as u32,
            (11, LEN) if req.span_events => sd.events.push(event_data(f.payload, req)),
            (12, VARINT) => sd.dropped_events_count = varint(&f) as u32,
            (14, VARINT) => sd.dropped_links_count = varint(&f) as u32,
            (15, LEN) => {
                for s in Fields::new(f.payload).filter_map(Result::ok) {
                    match (s.number, s.wire_type) {
                        (2, LEN) => sd.status_message = std::str::from_utf8(s.payload).unwrap_or(""),
                        (3, VARINT) => sd.status = StatusCode::from_otlp(varint(&s) as i32),
                        _ => {}
                    }
                }
            }
            (16, FIXED32) => sd.flags = u32::from_le_bytes(f.payload.try_into().unwrap_or([0; 4])),
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

    #[test]
    fn trace_data_reads_events_scope_flags_only_when_required() {
        use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
        use opentelemetry_proto::tonic::trace::v1::span::Event;
        let span = Span {
            trace_id: vec![9; 16],
            span_id: vec![1; 8],
            name: "q".into(),
            flags: 0x301,
            dropped_attributes_count: 4,
            dropped_events_count: 5,
            dropped_links_count: 6,
            status: Some(Status {
                code: status::StatusCode::Error as i32,
                message: "deadline exceeded".into(),
            }),
            events: vec![Event {
                time_unix_nano: 77,
                name: "exception".into(),
                attributes: vec![
                    kv("exception.type", any_value::Value::StringValue("Timeout".into())),
                    kv("other", any_value::Value::StringValue("x".into())),
                ],
                dropped_attributes_count: 2,
            }],
            ..Default::default()
        };
        let rec: bytes::Bytes = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource::default()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "io.opentelemetry.jdbc".into(),
                        version: "2.1".into(),
                        attributes: vec![kv("lib", any_value::Value::BoolValue(true))],
                        ..Default::default()
                    }),
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
        .into();
        let recs = vec![rec.clone()];
        // Nothing required: flags, status message and counts are still read (cheap), events and
        // scope are not.
        let req = Requirements::default();
        let mut res = Resources::new();
        let td = trace_data([9; 16], &recs, &req, &mut res);
        let s = &td.spans[0];
        assert_eq!(td.size_bytes, rec.len() as u64);
        assert_eq!(s.flags, 0x301);
        assert!(s.is_sampled_flag());
        assert_eq!(s.status_message, "deadline exceeded");
        assert_eq!(
            (
                s.dropped_attributes_count,
                s.dropped_events_count,
                s.dropped_links_count
            ),
            (4, 5, 6)
        );
        assert!(s.events.is_empty());
        assert_eq!(s.scope_name, "");
        // Events and scope required.
        let mut req = Requirements {
            span_events: true,
            scope: true,
            ..Default::default()
        };
        req.event_attributes.insert("exception.type".into());
        req.scope_attributes.insert("lib".into());
        let mut res = Resources::new();
        let td = trace_data([9; 16], &recs, &req, &mut res);
        let s = &td.spans[0];
        assert_eq!(s.events.len(), 1);
        let ev = &s.events[0];
        assert_eq!(
            (ev.name, ev.time_unix_nano, ev.dropped_attributes_count),
            ("exception", 77, 2)
        );
        assert_eq!(ev.attributes, vec![("exception.type", AttrValue::Str("Timeout"))]);
        assert_eq!((s.scope_name, s.scope_version), ("io.opentelemetry.jdbc", "2.1"));
        assert_eq!(s.scope_attribute("lib"), Some(AttrValue::Bool(true)));
    }
}

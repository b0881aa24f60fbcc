//! Golden tests of the Jaeger mapping, field by field, through every wire format.

use super::thrift::{encode_agent_binary, encode_agent_compact, encode_binary_batch};
use super::*;
use crate::otlp::{bool_value, bytes_value, double_value, int_value, kv, str_value};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

const T0: u64 = 1_700_000_000_000_000_000;

fn tag(k: &str, v: TagValue) -> Tag {
    Tag::new(k, v)
}
fn s(v: &str) -> TagValue {
    TagValue::Str(v.into())
}

fn id8(n: u64) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

/// A batch exercising every mapped field. The trace ID is 64-bit (high half zero).
fn golden_batch() -> Batch {
    let trace = crate::otlp::trace_id(0, 0x00ab_cdef_0123_4567);
    let other_trace = crate::otlp::trace_id(0x1111, 0x2222);
    Batch {
        process: Some(Process {
            service_name: "checkout".into(),
            tags: vec![
                tag("hostname", s("host-1")),
                tag("jaeger.version", s("Python-4.8.0")),
                tag("ip", s("10.0.0.7")),
                tag("client-uuid", s("abc")),
            ],
        }),
        spans: vec![
            JaegerSpan {
                trace_id: trace.clone(),
                span_id: id8(1),
                parent_span_id: id8(0),
                operation_name: "GET /cart".into(),
                references: vec![],
                flags: 1,
                start_nanos: T0,
                duration_nanos: 250_000_000,
                tags: vec![
                    tag("span.kind", s("server")),
                    tag("error", TagValue::Bool(true)),
                    tag("otel.status_description", s("boom")),
                    tag("otel.scope.name", s("my.lib")),
                    tag("otel.scope.version", s("1.2.3")),
                    tag("http.status_code", TagValue::Long(500)),
                    tag("ratio", TagValue::Double(0.5)),
                    tag("blob", TagValue::Binary(vec![1, 2, 3])),
                    tag("cached", TagValue::Bool(false)),
                    tag("w3c.tracestate", s("ot=th:0")),
                ],
                logs: vec![Log {
                    timestamp_nanos: T0 + 1_000_000,
                    fields: vec![tag("event", s("exception")), tag("exception.message", s("boom"))],
                }],
                process: None,
            },
            JaegerSpan {
                trace_id: trace.clone(),
                span_id: id8(2),
                parent_span_id: id8(1),
                operation_name: "SELECT".into(),
                references: vec![
                    SpanRef {
                        ref_type: RefType::ChildOf,
                        trace_id: trace.clone(),
                        span_id: id8(1),
                    },
                    SpanRef {
                        ref_type: RefType::FollowsFrom,
                        trace_id: other_trace.clone(),
                        span_id: id8(9),
                    },
                ],
                flags: 1,
                start_nanos: T0 + 10_000_000,
                duration_nanos: 5_000_000,
                tags: vec![
                    tag("span.kind", s("client")),
                    tag("otel.status_code", s("OK")),
                    tag("db.system", s("postgresql")),
                ],
                logs: vec![],
                process: None,
            },
        ],
    }
}

fn want_resource() -> Vec<KeyValue> {
    vec![
        kv("service.name", str_value("checkout")),
        kv("ip", str_value("10.0.0.7")),
        kv("client-uuid", str_value("abc")),
        kv("host.name", str_value("host-1")),
        kv("opencensus.exporterversion", str_value("Jaeger-Python-4.8.0")),
    ]
}

fn check_golden(rs: &[ResourceSpans], parent_via_refs_only: bool) {
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].resource.as_ref().unwrap().attributes, want_resource());
    let scopes = &rs[0].scope_spans;
    assert_eq!(scopes.len(), 2, "one scope per otel.scope.name");
    let scope = scopes[0].scope.as_ref().expect("named scope");
    assert_eq!((scope.name.as_str(), scope.version.as_str()), ("my.lib", "1.2.3"));
    assert!(scopes[1].scope.is_none(), "spans without scope tags get no scope");

    let root = &scopes[0].spans[0];
    let trace = [vec![0u8; 8], 0x00ab_cdef_0123_4567u64.to_be_bytes().to_vec()].concat();
    assert_eq!(root.trace_id, trace, "64-bit trace ID widened, high half zero");
    assert_eq!(root.span_id, id8(1));
    assert!(root.parent_span_id.is_empty(), "parentSpanId 0 is no parent");
    assert_eq!(root.name, "GET /cart");
    assert_eq!(root.kind, SpanKind::Server as i32);
    assert_eq!(root.start_time_unix_nano, T0);
    assert_eq!(root.end_time_unix_nano, T0 + 250_000_000);
    assert_eq!(root.trace_state, "ot=th:0");
    let st = root.status.as_ref().unwrap();
    assert_eq!(
        (st.code, st.message.as_str()),
        (StatusCode::Error as i32, "boom"),
        "error tag wins; description is the message"
    );
    assert_eq!(
        root.attributes,
        vec![
            kv("http.status_code", int_value(500)),
            kv("ratio", double_value(0.5)),
            kv("blob", bytes_value(vec![1, 2, 3])),
            kv("cached", bool_value(false)),
        ],
        "span.kind, error, otel.*, scope and tracestate tags consumed"
    );
    assert_eq!(root.events.len(), 1);
    assert_eq!(root.events[0].name, "exception");
    assert_eq!(root.events[0].time_unix_nano, T0 + 1_000_000);
    assert_eq!(
        root.events[0].attributes,
        vec![kv("exception.message", str_value("boom"))]
    );
    assert!(root.links.is_empty());

    let child = &scopes[1].spans[0];
    assert_eq!(child.trace_id, trace);
    assert_eq!(
        child.parent_span_id,
        id8(1),
        "parent from parentSpanId or the CHILD_OF reference"
    );
    assert_eq!(child.kind, SpanKind::Client as i32);
    assert_eq!(child.status.as_ref().unwrap().code, StatusCode::Ok as i32);
    assert_eq!(child.attributes, vec![kv("db.system", str_value("postgresql"))]);
    assert_eq!(
        child.links.len(),
        1,
        "the CHILD_OF parent is not a link, FOLLOWS_FROM to another trace is"
    );
    assert_eq!(child.links[0].trace_id, crate::otlp::trace_id(0x1111, 0x2222));
    assert_eq!(child.links[0].span_id, id8(9));
    assert_eq!(
        child.links[0].attributes,
        vec![kv("opentracing.ref_type", str_value("follows_from"))]
    );
    let _ = parent_via_refs_only;
}

#[test]
fn thrift_binary_batch_golden() {
    let req = decode_thrift_binary_batch(&encode_binary_batch(&golden_batch())).unwrap();
    check_golden(&req.resource_spans, false);
}

#[test]
fn agent_compact_and_binary_datagrams_give_the_same_result() {
    let want = decode_thrift_binary_batch(&encode_binary_batch(&golden_batch())).unwrap();
    assert_eq!(
        decode_agent_compact(&encode_agent_compact(&golden_batch())).unwrap(),
        want
    );
    assert_eq!(
        decode_agent_binary(&encode_agent_binary(&golden_batch())).unwrap(),
        want
    );
}

#[test]
fn api_v2_protobuf_gives_the_same_result() {
    let want = decode_thrift_binary_batch(&encode_binary_batch(&golden_batch())).unwrap();
    let got = decode_post_spans(&proto::encode_post_spans(&golden_batch())).unwrap();
    assert_eq!(got, want);
}

#[test]
fn span_process_overrides_batch_process_and_groups_resources() {
    let mut b = golden_batch();
    b.spans[1].process = Some(Process {
        service_name: "db-proxy".into(),
        tags: vec![],
    });
    let req = decode_post_spans(&proto::encode_post_spans(&b)).unwrap();
    assert_eq!(req.resource_spans.len(), 2);
    assert_eq!(
        req.resource_spans[1].resource.as_ref().unwrap().attributes,
        vec![kv("service.name", str_value("db-proxy"))]
    );
    assert_eq!(req.resource_spans[1].scope_spans[0].spans[0].name, "SELECT");
}

fn one(tags: Vec<Tag>) -> Span {
    let b = Batch {
        process: Some(Process {
            service_name: "svc".into(),
            tags: vec![],
        }),
        spans: vec![JaegerSpan {
            trace_id: crate::otlp::trace_id(1, 2),
            span_id: id8(3),
            operation_name: "op".into(),
            tags,
            ..Default::default()
        }],
    };
    let req = decode_thrift_binary_batch(&encode_binary_batch(&b)).unwrap();
    req.resource_spans[0].scope_spans[0].spans[0].clone()
}

#[test]
fn status_precedence() {
    // otel.status_code with its description.
    let sp = one(vec![
        tag("otel.status_code", s("ERROR")),
        tag("otel.status_description", s("bad")),
    ]);
    assert_eq!(
        sp.status.as_ref().map(|s| (s.code, s.message.as_str())),
        Some((2, "bad"))
    );
    assert!(sp.attributes.is_empty());
    // error=true beats otel.status_code OK, and otel.status_code is still removed.
    let sp = one(vec![
        tag("error", TagValue::Bool(true)),
        tag("otel.status_code", s("OK")),
    ]);
    assert_eq!(sp.status.as_ref().unwrap().code, 2);
    assert!(sp.attributes.is_empty());
    // error=false is only an attribute.
    let sp = one(vec![tag("error", TagValue::Bool(false))]);
    assert!(sp.status.is_none());
    assert_eq!(sp.attributes, vec![kv("error", bool_value(false))]);
    // A string error tag is not a status (the Collector only reads booleans).
    let sp = one(vec![tag("error", s("true"))]);
    assert!(sp.status.is_none());
    // http.status_code: 404 is an error for clients only, 503 for everyone.
    let sp = one(vec![
        tag("span.kind", s("client")),
        tag("http.status_code", TagValue::Long(404)),
    ]);
    assert_eq!(sp.status.as_ref().unwrap().code, 2);
    let sp = one(vec![tag("span.kind", s("server")), tag("http.status_code", s("404"))]);
    assert!(sp.status.is_none());
    let sp = one(vec![
        tag("span.kind", s("server")),
        tag("http.status_code", TagValue::Long(503)),
        tag("http.status_message", s("Service Unavailable")),
    ]);
    assert_eq!(
        sp.status.as_ref().map(|s| (s.code, s.message.as_str())),
        Some((2, "Service Unavailable"))
    );
    assert_eq!(sp.attributes.len(), 2, "http tags stay attributes");
}

#[test]
fn kinds_and_128_bit_ids() {
    for (k, want) in [
        ("client", 3),
        ("server", 2),
        ("producer", 4),
        ("consumer", 5),
        ("internal", 1),
        ("weird", 0),
    ] {
        assert_eq!(one(vec![tag("span.kind", s(k))]).kind, want, "{k}");
    }
    let sp = one(vec![]);
    assert_eq!(
        sp.trace_id,
        [1u64.to_be_bytes(), 2u64.to_be_bytes()].concat(),
        "128-bit ID: high then low"
    );
    assert!(sp.status.is_none());
}

#[test]
fn follows_from_is_the_parent_when_there_is_no_child_of_and_stays_a_link() {
    let trace = crate::otlp::trace_id(0, 5);
    let b = Batch {
        process: None,
        spans: vec![JaegerSpan {
            trace_id: trace.clone(),
            span_id: id8(2),
            operation_name: "consume".into(),
            references: vec![SpanRef {
                ref_type: RefType::FollowsFrom,
                trace_id: trace.clone(),
                span_id: id8(1),
            }],
            ..Default::default()
        }],
    };
    let req = decode_agent_compact(&encode_agent_compact(&b)).unwrap();
    let sp = &req.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(sp.parent_span_id, id8(1));
    assert_eq!(sp.links.len(), 1);
    assert!(req.resource_spans[0].resource.as_ref().unwrap().attributes.is_empty());
}

#[test]
fn errors_name_the_problem() {
    let e = decode_agent_compact(b"\x82\x81\x01\x08emitSpan").unwrap_err();
    assert!(e.to_string().contains("unknown method `emitSpan`"), "{e}");
    let e = decode_agent_compact(b"hello").unwrap_err();
    assert!(e.to_string().contains("not a compact-protocol message"), "{e}");
    let good = encode_agent_binary(&golden_batch());
    let e = decode_agent_binary(&good[..good.len() - 3]).unwrap_err();
    assert!(e.to_string().contains("unexpected end of input"), "{e}");
    assert!(
        e.to_string()
            .starts_with("invalid Jaeger agent emitBatch (binary thrift)"),
        "{e}"
    );
    let e = decode_post_spans(&[0x0a, 0xff]).unwrap_err();
    assert!(e.to_string().contains("Jaeger api_v2 PostSpansRequest"), "{e}");
}

#[test]
fn truncations_and_bit_flips_never_panic() {
    let b = golden_batch();
    let inputs: Vec<(
        Vec<u8>,
        fn(&[u8]) -> Result<ExportTraceServiceRequest, crate::TranslateError>,
    )> = vec![
        (encode_binary_batch(&b), decode_thrift_binary_batch),
        (encode_agent_compact(&b), decode_agent_compact),
        (encode_agent_binary(&b), decode_agent_binary),
        (proto::encode_post_spans(&b), decode_post_spans),
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for (data, f) in inputs {
        for cut in 0..data.len() {
            let _ = f(&data[..cut]);
        }
        for _ in 0..3000 {
            let mut d = data.clone();
            for _ in 0..3 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % d.len();
                d[i] = (x >> 32) as u8;
            }
            let _ = f(&d);
        }
    }
}

use super::*;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use crate::ExportTraceServiceRequest;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn span(trace: u8, span: u8, name: &str) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![span; 8],
        name: name.into(),
        start_time_unix_nano: 1,
        end_time_unix_nano: 2,
        ..Default::default()
    }
}

fn resource_spans(service: &str, scopes: Vec<(&str, Vec<Span>)>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", service)],
            ..Default::default()
        }),
        scope_spans: scopes
            .into_iter()
            .map(|(scope, spans)| ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: scope.into(),
                    version: "1.0".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
            })
            .collect(),
        schema_url: "https://opentelemetry.io/schemas/1.20.0".into(),
    }
}

fn decode(rec: &TraceRecord) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(rec.payload.as_slice()).expect("records decode")
}

fn all_spans(req: &ExportTraceServiceRequest) -> Vec<(String, String, String, Span)> {
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        let service = match &rs.resource.as_ref().unwrap().attributes[0]
            .value
            .as_ref()
            .unwrap()
            .value
        {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            _ => panic!(),
        };
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                out.push((
                    service.clone(),
                    ss.scope.as_ref().unwrap().name.clone(),
                    ss.schema_url.clone(),
                    s.clone(),
                ));
            }
        }
    }
    out
}

#[test]
fn splits_one_record_per_trace_preserving_resource_and_scope() {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![
            resource_spans(
                "frontend",
                vec![("lib-a", vec![span(1, 1, "a"), span(2, 2, "b"), span(1, 3, "c")])],
            ),
            resource_spans(
                "backend",
                vec![("lib-b", vec![span(2, 4, "d")]), ("lib-c", vec![span(1, 5, "e")])],
            ),
        ],
    };
    let bytes = req.encode_to_vec();
    let out = split_by_trace(&bytes, SplitOptions::default()).unwrap();
    assert_eq!(out.accepted_spans, 5);
    assert_eq!(out.rejected_spans(), 0);
    assert_eq!(out.records.len(), 2);
    assert_eq!(out.records[0].trace_id, [1; 16]);
    assert_eq!(out.records[1].trace_id, [2; 16]);

    let t1 = decode(&out.records[0]);
    let got: Vec<_> = all_spans(&t1)
        .into_iter()
        .map(|(svc, scope, _, s)| (svc, scope, s.name))
        .collect();
    assert_eq!(
        got,
        vec![
            ("frontend".into(), "lib-a".into(), "a".into()),
            ("frontend".into(), "lib-a".into(), "c".into()),
            ("backend".into(), "lib-c".into(), "e".into()),
        ]
    );
    assert_eq!(t1.resource_spans.len(), 2, "one ResourceSpans per original resource");
    assert_eq!(
        t1.resource_spans[0].schema_url,
        "https://opentelemetry.io/schemas/1.20.0"
    );
    assert_eq!(
        t1.resource_spans[0].scope_spans[0].schema_url,
        "https://opentelemetry.io/schemas/1.21.0"
    );
    assert_eq!(
        t1.resource_spans[0].scope_spans[0].scope.as_ref().unwrap().version,
        "1.0"
    );
    assert_eq!(out.records[0].spans, 3);

    let t2 = decode(&out.records[1]);
    let got: Vec<_> = all_spans(&t2).into_iter().map(|(svc, _, _, s)| (svc, s.name)).collect();
    assert_eq!(
        got,
        vec![("frontend".into(), "b".into()), ("backend".into(), "d".into())]
    );
    // Spans come out byte-identical.
    assert_eq!(all_spans(&t2)[0].3, span(2, 2, "b"));
}

#[test]
fn every_span_exactly_once_on_random_requests() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..200 {
        let mut req = ExportTraceServiceRequest::default();
        let mut n = 0u32;
        for r in 0..rng.random_range(1..4) {
            let mut scopes = Vec::new();
            for s in 0..rng.random_range(1..4) {
                let spans = (0..rng.random_range(0..20))
                    .map(|_| {
                        n += 1;
                        let mut sp = span(rng.random_range(1..6), 1, &format!("s{n}"));
                        sp.span_id = n.to_be_bytes().repeat(2);
                        sp
                    })
                    .collect();
                scopes.push((["x", "y", "z"][s], spans));
            }
            req.resource_spans.push(resource_spans(["r0", "r1", "r2"][r], scopes));
        }
        let bytes = req.encode_to_vec();
        let out = split_by_trace(&bytes, SplitOptions::default()).unwrap();
        let mut seen = Vec::new();
        for rec in &out.records {
            let spans = all_spans(&decode(rec));
            assert_eq!(spans.len(), rec.spans);
            for (_, _, _, s) in spans {
                assert_eq!(s.trace_id, rec.trace_id.to_vec(), "record holds one trace only");
                seen.push(s.name);
            }
        }
        seen.sort();
        let mut want: Vec<String> = all_spans(&req).into_iter().map(|x| x.3.name).collect();
        want.sort();
        assert_eq!(seen, want);
        assert_eq!(out.accepted_spans, want.len());
    }
}

#[test]
fn invalid_ids_are_rejected_individually() {
    let mut bad_trace_len = span(1, 1, "bad1");
    bad_trace_len.trace_id = vec![1; 15];
    let mut zero_trace = span(1, 1, "bad2");
    zero_trace.trace_id = vec![0; 16];
    let mut bad_span_len = span(1, 1, "bad3");
    bad_span_len.span_id = vec![1; 9];
    let mut zero_span = span(1, 1, "bad4");
    zero_span.span_id = vec![0; 8];
    let mut bad_parent = span(1, 1, "bad5");
    bad_parent.parent_span_id = vec![1; 3];
    let mut missing_trace = span(1, 1, "bad6");
    missing_trace.trace_id = vec![];
    let mut good_parent = span(3, 3, "good2");
    good_parent.parent_span_id = vec![9; 8];
    let req = ExportTraceServiceRequest {
        resource_spans: vec![resource_spans(
            "svc",
            vec![(
                "lib",
                vec![
                    bad_trace_len,
                    zero_trace,
                    span(2, 2, "good"),
                    bad_span_len,
                    zero_span,
                    bad_parent,
                    missing_trace,
                    good_parent,
                ],
            )],
        )],
    };
    let out = split_by_trace(&req.encode_to_vec(), SplitOptions::default()).unwrap();
    assert_eq!(out.accepted_spans, 2);
    assert_eq!(out.rejected_spans(), 6);
    let reasons: Vec<_> = out.rejected.iter().map(|(r, n)| (*r, *n)).collect();
    assert_eq!(
        reasons,
        vec![
            (RejectReason::TraceIdLength, 2),
            (RejectReason::TraceIdZero, 1),
            (RejectReason::SpanIdLength, 1),
            (RejectReason::SpanIdZero, 1),
            (RejectReason::ParentSpanIdLength, 1),
        ]
    );
    let msg = out.error_message();
    assert!(msg.contains("trace_id must be exactly 16 bytes"), "{msg}");
    assert!(msg.contains("first: span at byte"), "{msg}");
    assert_eq!(out.records.len(), 2);
}

#[test]
fn malformed_envelopes_fail_whole_request() {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![resource_spans("svc", vec![("lib", vec![span(1, 1, "a")])])],
    };
    let bytes = req.encode_to_vec();
    for cut in 1..bytes.len() {
        // Every truncation is either an error or (when cut at a field boundary inside nothing) ok;
        // it must never panic.
        let _ = split_by_trace(&bytes[..cut], SplitOptions::default());
    }
    assert!(split_by_trace(&bytes[..bytes.len() - 1], SplitOptions::default()).is_err());
    assert!(split_by_trace(b"\xff\xff\xff", SplitOptions::default()).is_err());
    // resource_spans with a varint wire type
    assert!(matches!(
        split_by_trace(&[0x08, 0x01], SplitOptions::default()),
        Err(SplitError::NotLengthDelimited { .. })
    ));
    // empty request: nothing to do
    let out = split_by_trace(&[], SplitOptions::default()).unwrap();
    assert!(out.records.is_empty());
}

#[test]
fn span_with_garbage_inside_is_rejected_not_fatal() {
    // A ScopeSpans whose span payload is not valid protobuf.
    let mut scope = Vec::new();
    put_len_header(&mut scope, SPANS, 2);
    scope.extend_from_slice(&[0xff, 0xff]);
    let good = span(4, 4, "ok").encode_to_vec();
    put_len_header(&mut scope, SPANS, good.len());
    scope.extend_from_slice(&good);
    let mut rs = Vec::new();
    put_len_header(&mut rs, SCOPE_SPANS, scope.len());
    rs.extend_from_slice(&scope);
    let mut req = Vec::new();
    put_len_header(&mut req, RESOURCE_SPANS, rs.len());
    req.extend_from_slice(&rs);
    let out = split_by_trace(&req, SplitOptions::default()).unwrap();
    assert_eq!(out.accepted_spans, 1);
    assert_eq!(out.rejected, vec![(RejectReason::MalformedSpan, 1)]);
}

#[test]
fn large_traces_are_cut_into_records_under_the_limit() {
    let spans: Vec<Span> = (0..100)
        .map(|i| {
            let mut s = span(1, 1, &"x".repeat(100));
            s.span_id = (i as u64 + 1).to_be_bytes().to_vec();
            s
        })
        .collect();
    let req = ExportTraceServiceRequest {
        resource_spans: vec![resource_spans("svc", vec![("lib", spans)])],
    };
    let opts = SplitOptions { max_record_bytes: 1500 };
    let out = split_by_trace(&req.encode_to_vec(), opts).unwrap();
    assert!(out.records.len() > 5);
    let mut total = 0;
    for rec in &out.records {
        assert!(rec.payload.len() <= 1500, "{}", rec.payload.len());
        let d = decode(rec);
        assert_eq!(
            d.resource_spans[0].resource.as_ref().unwrap().attributes[0].key,
            "service.name"
        );
        total += all_spans(&d).len();
    }
    assert_eq!(total, 100);
    assert_eq!(out.accepted_spans, 100);

    // A span larger than the limit on its own is rejected.
    let huge = ExportTraceServiceRequest {
        resource_spans: vec![resource_spans(
            "svc",
            vec![("lib", vec![span(1, 1, &"y".repeat(5000)), span(2, 2, "small")])],
        )],
    };
    let out = split_by_trace(&huge.encode_to_vec(), opts).unwrap();
    assert_eq!(out.accepted_spans, 1);
    assert_eq!(out.rejected, vec![(RejectReason::SpanTooLarge, 1)]);
    assert_eq!(out.records.len(), 1);
}

#[test]
fn json_requests_decode_with_hex_ids_and_integer_enums() {
    let body =
        br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},
      "scopeSpans":[{"scope":{"name":"manual"},"spans":[
        {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b173",
         "name":"GET /cart","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
         "attributes":[{"key":"http.status","value":{"intValue":"500"}},{"key":"ok","value":{"boolValue":false}}],
         "status":{"code":2,"message":"boom"}}]}]}]}"#;
    let req = crate::json::decode_json(body).unwrap();
    let s = &req.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(hex::encode(&s.trace_id), "5b8efff798038103d269b633813fc60c");
    assert_eq!(hex::encode(&s.parent_span_id), "eee19b7ec3c1b173");
    assert_eq!(s.kind, 2);
    assert_eq!(s.start_time_unix_nano, 1544712660000000000);
    assert_eq!(s.status.as_ref().unwrap().code, 2);
    match &s.attributes[0].value.as_ref().unwrap().value {
        Some(any_value::Value::IntValue(v)) => assert_eq!(*v, 500),
        other => panic!("{other:?}"),
    }
    let pb = crate::json::json_to_protobuf(body).unwrap();
    let out = split_by_trace(&pb, SplitOptions::default()).unwrap();
    assert_eq!(out.records.len(), 1);
    assert!(crate::json::decode_json(b"{not json").is_err());
    assert!(crate::json::decode_json(br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#).is_err());
}

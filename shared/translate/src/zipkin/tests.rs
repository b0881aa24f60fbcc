//! Golden tests of the Zipkin mapping, field by field, through every wire format.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::v1::{BinaryValue, V1Annotation, V1BinaryAnnotation, V1Span};
use super::*;
use crate::otlp::{bool_value, int_value, kv, str_value};

const TS: u64 = 1_700_000_000_000_000; // microseconds

fn ep(svc: &str, ip: [u8; 4], port: u16) -> Endpoint {
    Endpoint {
        service_name: svc.into(),
        ipv4: Some(Ipv4Addr::from(ip)),
        ipv6: None,
        port,
    }
}

/// What Envoy sends with `shared_span_context` (its default): a client span from the caller's
/// sidecar and a shared server span from the callee's, plus an app span with every field.
fn golden_spans() -> Vec<ZipkinSpan> {
    let trace = [vec![0u8; 8], hex::decode("463ac35c9f6413ad").unwrap()].concat();
    vec![
        ZipkinSpan {
            trace_id: trace.clone(),
            id: hex::decode("a2fb4a1d1a96d312").unwrap(),
            parent_id: hex::decode("0020000000000001").unwrap(),
            kind: Some(Kind::Client),
            name: "get /api".into(),
            timestamp_us: TS,
            duration_us: 1500,
            local: Some(ep("frontend", [10, 0, 0, 1], 0)),
            remote: Some(Endpoint {
                service_name: "backend".into(),
                ipv4: None,
                ipv6: Some(Ipv6Addr::LOCALHOST),
                port: 8080,
            }),
            annotations: vec![
                Annotation {
                    timestamp_us: TS + 10,
                    value: "wire send".into(),
                },
                Annotation {
                    timestamp_us: TS + 30,
                    value: r#"{"retry": {"attempt": 2}}"#.into(),
                },
                Annotation {
                    timestamp_us: TS + 20,
                    value: r#"exception|{"exception.type":"IOError","retries":2,"ratio":0.5,"ok":false}|1"#.into(),
                },
            ],
            tags: vec![
                ("http.method".into(), "GET".into()),
                ("http.status_code".into(), "503".into()),
                ("error".into(), "true".into()),
                ("telemetry.sdk.language".into(), "python".into()),
                ("otel.library.name".into(), "envoy".into()),
                ("otel.library.version".into(), "1.30".into()),
                ("w3c.tracestate".into(), "rojo=00f067aa0ba902b7".into()),
            ],
            debug: false,
            shared: false,
        },
        ZipkinSpan {
            trace_id: trace.clone(),
            id: hex::decode("a2fb4a1d1a96d312").unwrap(),
            parent_id: hex::decode("0020000000000001").unwrap(),
            kind: Some(Kind::Server),
            name: "get /api".into(),
            timestamp_us: TS + 100,
            duration_us: 1200,
            local: Some(ep("backend", [10, 0, 0, 2], 8080)),
            remote: Some(ep("", [10, 0, 0, 1], 41234)),
            tags: vec![
                ("error".into(), "upstream reset".into()),
                ("span.kind".into(), "ignored".into()),
            ],
            shared: true,
            ..Default::default()
        },
        ZipkinSpan {
            trace_id: trace,
            id: hex::decode("00000000000000ff").unwrap(),
            parent_id: hex::decode("00000000000000ff").unwrap(),
            kind: None,
            name: "compute".into(),
            timestamp_us: 0,
            duration_us: 7,
            local: None,
            tags: vec![
                ("span.kind".into(), "internal".into()),
                ("otel.status_code".into(), "ERROR".into()),
                ("otel.status_description".into(), "bad input".into()),
                (
                    "otlp.link.0".into(),
                    "0af7651916cd43dd8448eb211c80319c|b7ad6b7169203331|k=v|{\"a\":1}|0".into(),
                ),
            ],
            ..Default::default()
        },
    ]
}

fn check_golden(req: &ExportTraceServiceRequest) {
    let rs = &req.resource_spans;
    assert_eq!(rs.len(), 3, "one resource per service name (and none)");
    assert_eq!(
        rs[0].resource.as_ref().unwrap().attributes,
        vec![
            kv("service.name", str_value("frontend")),
            kv("telemetry.sdk.language", str_value("python"))
        ],
        "service name and resource-like tags"
    );
    let scope = rs[0].scope_spans[0].scope.as_ref().unwrap();
    assert_eq!((scope.name.as_str(), scope.version.as_str()), ("envoy", "1.30"));

    let client = &rs[0].scope_spans[0].spans[0];
    let trace = hex::decode("0000000000000000463ac35c9f6413ad").unwrap();
    assert_eq!(client.trace_id, trace, "64-bit trace ID widened, high 8 bytes zero");
    assert_eq!(client.span_id, hex::decode("a2fb4a1d1a96d312").unwrap());
    assert_eq!(client.parent_span_id, hex::decode("0020000000000001").unwrap());
    assert_eq!(client.name, "get /api");
    assert_eq!(client.kind, SpanKind::Client as i32);
    assert_eq!(client.start_time_unix_nano, TS * 1000);
    assert_eq!(client.end_time_unix_nano, (TS + 1500) * 1000);
    assert_eq!(client.trace_state, "rojo=00f067aa0ba902b7");
    assert_eq!(
        client.status.as_ref().map(|s| (s.code, s.message.as_str())),
        Some((StatusCode::Error as i32, ""))
    );
    assert_eq!(
        client.attributes,
        vec![
            kv("http.method", str_value("GET")),
            kv("http.status_code", str_value("503")),
            kv("net.host.ip", str_value("10.0.0.1")),
            kv("peer.service", str_value("backend")),
            kv("net.peer.ip", str_value("::1")),
            kv("net.peer.port", int_value(8080)),
        ],
        "tags as strings, error=true consumed, endpoints as net.*/peer.service"
    );
    assert_eq!(client.events.len(), 3);
    assert_eq!(
        (client.events[0].name.as_str(), client.events[0].time_unix_nano),
        ("wire send", (TS + 10) * 1000)
    );
    assert_eq!(client.events[1].name, "retry", "OTel SDK exporters' event encoding");
    assert_eq!(client.events[1].attributes, vec![kv("attempt", int_value(2))]);
    let client = &{
        let mut c = client.clone();
        c.events.remove(1);
        c
    };
    assert_eq!(client.events[1].name, "exception");
    assert_eq!(client.events[1].dropped_attributes_count, 1);
    let ev_attrs: Vec<(String, String)> = client.events[1]
        .attributes
        .iter()
        .map(|k| (k.key.clone(), format!("{:?}", k.value.as_ref().unwrap().value)))
        .collect();
    assert_eq!(ev_attrs.len(), 4, "{ev_attrs:?}");
    assert!(client.events[1].attributes.contains(&kv("retries", int_value(2))));
    assert!(client.events[1].attributes.contains(&kv("ok", bool_value(false))));

    assert_eq!(
        rs[1].resource.as_ref().unwrap().attributes,
        vec![kv("service.name", str_value("backend"))]
    );
    assert!(rs[1].scope_spans[0].scope.is_none());
    let server = &rs[1].scope_spans[0].spans[0];
    assert_eq!(server.trace_id, trace);
    assert_eq!(
        server.span_id,
        shared_server_span_id(&client.span_id),
        "shared server span gets its own ID"
    );
    assert_ne!(server.span_id, client.span_id);
    assert_eq!(
        server.parent_span_id, client.span_id,
        "and becomes the client span's child"
    );
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(
        server.status.as_ref().map(|s| (s.code, s.message.as_str())),
        Some((StatusCode::Error as i32, "upstream reset"))
    );
    assert_eq!(
        server.attributes,
        vec![
            kv("error", str_value("upstream reset")),
            kv("span.kind", str_value("ignored")),
            kv("net.host.ip", str_value("10.0.0.2")),
            kv("net.host.port", int_value(8080)),
            kv("net.peer.ip", str_value("10.0.0.1")),
            kv("net.peer.port", int_value(41234)),
        ]
    );

    assert!(
        rs[2].resource.as_ref().unwrap().attributes.is_empty(),
        "no local endpoint: no service.name"
    );
    let local = &rs[2].scope_spans[0].spans[0];
    assert!(local.parent_span_id.is_empty(), "parentId equal to id is ignored");
    assert_eq!(local.kind, SpanKind::Internal as i32);
    assert_eq!(
        local.status.as_ref().map(|s| (s.code, s.message.as_str())),
        Some((StatusCode::Error as i32, "bad input"))
    );
    assert_eq!((local.start_time_unix_nano, local.end_time_unix_nano), (0, 7000));
    assert_eq!(
        local.attributes,
        vec![kv("otel.zipkin.absentField.startTime", bool_value(true))]
    );
    assert_eq!(local.links.len(), 1);
    assert_eq!(
        local.links[0].trace_id,
        hex::decode("0af7651916cd43dd8448eb211c80319c").unwrap()
    );
    assert_eq!(local.links[0].span_id, hex::decode("b7ad6b7169203331").unwrap());
    assert_eq!(local.links[0].trace_state, "k=v");
    assert_eq!(local.links[0].attributes, vec![kv("a", int_value(1))]);
}

#[test]
fn v2_json_golden() {
    let body = v2_json::encode_v2_json(&golden_spans());
    check_golden(&decode_v2_json(&body).unwrap());
}

#[test]
fn v2_proto_golden() {
    let body = proto::encode_v2_proto(&golden_spans());
    let got = decode_v2_proto(&body).unwrap();
    // proto3 tags are a map: sorted by key. Compare everything else through the JSON path, which
    // receives the same tags.
    check_golden(&got);
}

#[test]
fn v2_json_as_envoy_writes_it() {
    let body =
        br#"[{"traceId":"463ac35c9f6413ad48485a3953bb6124","id":"a2fb4a1d1a96d312","parentId":"0020000000000001",
      "name":"egress","kind":"CLIENT","timestamp":1700000000000000,"duration":1234,
      "localEndpoint":{"serviceName":"front-proxy","ipv4":"10.1.2.3","port":80},
      "tags":{"http.url":"http://x/y","response_size":"42","upstream_cluster":"svc"},"annotations":[]},
      {"traceId":"48485a3953bb6124","id":"1","name":"short-ids","timestamp":1.7e15,"duration":1}]"#;
    let req = decode_v2_json(body).unwrap();
    let sp = &req.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(
        sp.trace_id,
        hex::decode("463ac35c9f6413ad48485a3953bb6124").unwrap(),
        "128-bit kept"
    );
    assert_eq!(sp.attributes[0], kv("http.url", str_value("http://x/y")));
    assert_eq!(
        sp.attributes.iter().find(|k| k.key == "net.host.port").unwrap(),
        &kv("net.host.port", int_value(80))
    );
    let sp2 = &req.resource_spans[1].scope_spans[0].spans[0];
    assert_eq!(sp2.trace_id, hex::decode("000000000000000048485a3953bb6124").unwrap());
    assert_eq!(
        sp2.span_id,
        hex::decode("0000000000000001").unwrap(),
        "short IDs left-padded"
    );
    assert_eq!(sp2.start_time_unix_nano, 1_700_000_000_000_000_000);
}

#[test]
fn v2_json_errors_name_span_and_field() {
    let e = decode_v2_json(br#"[{"traceId":"xyz","id":"1"}]"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Zipkin v2 JSON") && e.contains("span 0") && e.contains("traceId `xyz`"),
        "{e}"
    );
    let e = decode_v2_json(br#"[{"traceId":"1","id":"1"},{"traceId":"1"}]"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("span 1: id is required"), "{e}");
    let e = decode_v2_json(br#"{"traceId":"1"}"#).unwrap_err().to_string();
    assert!(e.contains("expected a JSON array of spans"), "{e}");
    let e = decode_v2_json(br#"[{"traceId":"1","id":"1","kind":"SIDEWAYS"}]"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown kind `SIDEWAYS`"), "{e}");
    let e = decode_v2_json(br#"[{"traceId":"1","id":"1","localEndpoint":{"ipv4":"999.1.1.1"}}]"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("localEndpoint.ipv4"), "{e}");
    let e = decode_v2_proto(
        &proto::ListOfSpans {
            spans: vec![proto::PbSpan {
                trace_id: vec![1; 3],
                ..Default::default()
            }],
        }
        .encode_to_vec(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("trace_id must be 8 or 16 bytes, got 3"), "{e}");
    assert_eq!(crate::span_count(&decode_v2_json(b"[]").unwrap()), 0);
}

use prost::Message;

fn v1_rpc_span() -> V1Span {
    let fe = ep("frontend", [192, 168, 0, 1], 0);
    let be = ep("backend", [192, 168, 0, 2], 9000);
    let ann = |t: u64, v: &str, e: &Endpoint| V1Annotation {
        timestamp_us: t,
        value: v.into(),
        endpoint: Some(e.clone()),
    };
    V1Span {
        trace_id: [vec![0u8; 8], vec![0, 0, 0, 0, 0, 0, 0x12, 0x34]].concat(),
        id: vec![0, 0, 0, 0, 0, 0, 0, 2],
        parent_id: vec![0, 0, 0, 0, 0, 0, 0, 1],
        name: "get".into(),
        timestamp_us: Some(TS),
        duration_us: Some(1000),
        annotations: vec![
            ann(TS, "cs", &fe),
            ann(TS + 100, "sr", &be),
            ann(TS + 500, "cache miss", &be),
            ann(TS + 900, "ss", &be),
            ann(TS + 1000, "cr", &fe),
        ],
        binary_annotations: vec![
            V1BinaryAnnotation {
                key: "http.path".into(),
                value: BinaryValue::Str("/api".into()),
                endpoint: Some(fe.clone()),
            },
            V1BinaryAnnotation {
                key: "db.rows".into(),
                value: BinaryValue::Str("3".into()),
                endpoint: Some(be.clone()),
            },
            V1BinaryAnnotation {
                key: "sa".into(),
                value: BinaryValue::Bool(true),
                endpoint: Some(ep("db", [192, 168, 0, 2], 9000)),
            },
            V1BinaryAnnotation {
                key: "ca".into(),
                value: BinaryValue::Bool(true),
                endpoint: Some(ep("", [192, 168, 0, 1], 50000)),
            },
            V1BinaryAnnotation {
                key: "error".into(),
                value: BinaryValue::Str("timeout".into()),
                endpoint: Some(fe),
            },
        ],
        debug: false,
    }
}

fn check_v1(req: &ExportTraceServiceRequest) {
    let rs = &req.resource_spans;
    assert_eq!(rs.len(), 2, "client and server sides of one v1 span");
    assert_eq!(
        rs[0].resource.as_ref().unwrap().attributes,
        vec![kv("service.name", str_value("frontend"))]
    );
    let c = &rs[0].scope_spans[0].spans[0];
    assert_eq!(c.kind, SpanKind::Client as i32);
    assert_eq!(c.trace_id, hex::decode("00000000000000000000000000001234").unwrap());
    assert_eq!(c.span_id, vec![0, 0, 0, 0, 0, 0, 0, 2]);
    assert_eq!(c.parent_span_id, vec![0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(
        (c.start_time_unix_nano, c.end_time_unix_nano),
        (TS * 1000, (TS + 1000) * 1000)
    );
    assert_eq!(
        c.status.as_ref().map(|s| (s.code, s.message.as_str())),
        Some((2, "timeout"))
    );
    assert_eq!(
        c.attributes,
        vec![
            kv("http.path", str_value("/api")),
            kv("error", str_value("timeout")),
            kv("net.host.ip", str_value("192.168.0.1")),
            kv("peer.service", str_value("db")),
            kv("net.peer.ip", str_value("192.168.0.2")),
            kv("net.peer.port", int_value(9000)),
        ]
    );
    assert!(c.events.is_empty(), "core annotations consumed: {:?}", c.events);
    assert_eq!(
        rs[1].resource.as_ref().unwrap().attributes,
        vec![kv("service.name", str_value("backend"))]
    );
    let s = &rs[1].scope_spans[0].spans[0];
    assert_eq!(s.kind, SpanKind::Server as i32);
    assert_eq!(
        s.parent_span_id, c.span_id,
        "shared server side becomes the client's child"
    );
    assert_eq!(s.span_id, shared_server_span_id(&c.span_id));
    assert_eq!(
        (s.start_time_unix_nano, s.end_time_unix_nano),
        ((TS + 100) * 1000, (TS + 900) * 1000)
    );
    assert_eq!(
        s.events.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["cache miss"],
        "annotation of the server's endpoint"
    );
    assert_eq!(
        s.attributes,
        vec![
            kv("db.rows", str_value("3")),
            kv("net.host.ip", str_value("192.168.0.2")),
            kv("net.host.port", int_value(9000)),
            kv("net.peer.ip", str_value("192.168.0.1")),
            kv("net.peer.port", int_value(50000)),
        ]
    );
}

fn v1_json_of(s: &V1Span) -> Vec<u8> {
    let ep = |e: &Endpoint| serde_json::json!({"serviceName": e.service_name, "ipv4": e.ipv4.unwrap().to_string(), "port": e.port});
    let v = serde_json::json!([{
        "traceId": hex::encode(&s.trace_id[8..]),
        "id": hex::encode(&s.id),
        "parentId": hex::encode(&s.parent_id),
        "name": s.name,
        "timestamp": s.timestamp_us,
        "duration": s.duration_us,
        "annotations": s.annotations.iter().map(|a| serde_json::json!({"timestamp": a.timestamp_us, "value": a.value, "endpoint": ep(a.endpoint.as_ref().unwrap())})).collect::<Vec<_>>(),
        "binaryAnnotations": s.binary_annotations.iter().map(|b| serde_json::json!({"key": b.key, "value": match &b.value { BinaryValue::Bool(v) => serde_json::json!(v), BinaryValue::Str(v) => serde_json::json!(v) }, "endpoint": ep(b.endpoint.as_ref().unwrap())})).collect::<Vec<_>>(),
    }]);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn v1_json_golden() {
    check_v1(&decode_v1_json(&v1_json_of(&v1_rpc_span())).unwrap());
}

#[test]
fn v1_thrift_golden() {
    check_v1(&decode_v1_thrift(&v1_thrift::encode_v1_thrift(&[v1_rpc_span()])).unwrap());
}

#[test]
fn v1_single_sided_and_local_spans() {
    // Server only, with its own timestamp: not shared, keeps its ID.
    let mut s = v1_rpc_span();
    s.annotations.retain(|a| a.value == "sr" || a.value == "ss");
    s.binary_annotations.clear();
    let req = decode_v1_thrift(&v1_thrift::encode_v1_thrift(&[s.clone()])).unwrap();
    let sp = &req.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!((sp.kind, sp.span_id.clone()), (SpanKind::Server as i32, s.id.clone()));
    assert_eq!(
        sp.end_time_unix_nano - sp.start_time_unix_nano,
        1000 * 1000,
        "v1 duration wins for a single side"
    );
    // No core annotation: local endpoint from the binary annotation ("lc").
    let local = V1Span {
        annotations: vec![],
        binary_annotations: vec![V1BinaryAnnotation {
            key: "lc".into(),
            value: BinaryValue::Str("cache".into()),
            endpoint: Some(ep("worker", [1, 2, 3, 4], 0)),
        }],
        ..s
    };
    let req = decode_v1_thrift(&v1_thrift::encode_v1_thrift(&[local])).unwrap();
    assert_eq!(
        req.resource_spans[0].resource.as_ref().unwrap().attributes,
        vec![kv("service.name", str_value("worker"))]
    );
    let sp = &req.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(sp.kind, 0);
    assert_eq!(sp.attributes[0], kv("lc", str_value("cache")));
}

#[test]
fn v1_thrift_typed_binary_annotations() {
    assert_eq!(v1_thrift::base64(b"hello"), "aGVsbG8=");
    assert_eq!(v1_thrift::base64(b""), "");
    assert_eq!(v1_thrift::base64(&[0xff, 0xfe]), "//4=");
}

#[test]
fn truncations_and_bit_flips_never_panic() {
    let v2 = golden_spans();
    let inputs: Vec<(
        Vec<u8>,
        fn(&[u8]) -> Result<ExportTraceServiceRequest, crate::TranslateError>,
    )> = vec![
        (v2_json::encode_v2_json(&v2), decode_v2_json),
        (proto::encode_v2_proto(&v2), decode_v2_proto),
        (v1_json_of(&v1_rpc_span()), decode_v1_json),
        (
            v1_thrift::encode_v1_thrift(&[v1_rpc_span(), v1_rpc_span()]),
            decode_v1_thrift,
        ),
    ];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for (data, f) in inputs {
        for cut in 0..data.len() {
            let _ = f(&data[..cut]);
        }
        for _ in 0..2000 {
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

#[test]
fn huge_tag_lists_and_many_services_stay_linear() {
    // 200k resource-like tags on one span, and 20k spans of distinct services: quadratic code
    // would take minutes here.
    let t0 = std::time::Instant::now();
    let mut s = golden_spans().remove(0);
    s.tags = (0..200_000).map(|i| (format!("host.k{i}"), "v".to_string())).collect();
    let req = to_otlp(vec![s]);
    assert_eq!(
        req.resource_spans[0].resource.as_ref().unwrap().attributes.len(),
        200_001
    );
    let spans: Vec<ZipkinSpan> = (0..20_000u64)
        .map(|i| {
            let mut s = golden_spans().remove(2);
            s.local = Some(Endpoint {
                service_name: format!("svc-{i}"),
                ..Default::default()
            });
            s
        })
        .collect();
    assert_eq!(to_otlp(spans).resource_spans.len(), 20_000);
    assert!(t0.elapsed() < std::time::Duration::from_secs(30), "{:?}", t0.elapsed());
}

#[test]
fn v1_address_annotations_and_messaging_follow_zipkin() {
    let e = |svc: &str, port: u16| Some(ep(svc, [10, 0, 0, 5], port));
    let base = V1Span {
        trace_id: [vec![0u8; 8], vec![1; 8]].concat(),
        id: vec![0, 0, 0, 0, 0, 0, 0, 9],
        name: "x".into(),
        timestamp_us: Some(TS),
        duration_us: Some(10),
        ..Default::default()
    };
    let one = |s: V1Span| {
        let req = decode_v1_thrift(&v1_thrift::encode_v1_thrift(&[s])).unwrap();
        assert_eq!(crate::span_count(&req), 1);
        req.resource_spans[0].scope_spans[0].spans[0].clone()
    };
    let addr = |k: &str, svc: &str| V1BinaryAnnotation {
        key: k.into(),
        value: BinaryValue::Bool(true),
        endpoint: e(svc, 1),
    };
    // No core annotations, "sa" only: a remote endpoint, not a client span.
    let sp = one(V1Span {
        binary_annotations: vec![addr("sa", "db")],
        ..base.clone()
    });
    assert_eq!(sp.kind, 0);
    assert!(sp.attributes.contains(&kv("peer.service", str_value("db"))));
    // "ca" only: a server span with the client as remote.
    let sp = one(V1Span {
        binary_annotations: vec![addr("ca", "web")],
        ..base.clone()
    });
    assert_eq!(sp.kind, SpanKind::Server as i32);
    assert!(sp.attributes.contains(&kv("peer.service", str_value("web"))));
    // Finagle: "ca" with the server's own service name loses the name (no loopback link).
    let ann = |t: u64, v: &str| V1Annotation {
        timestamp_us: t,
        value: v.into(),
        endpoint: e("api", 80),
    };
    let sp = one(V1Span {
        annotations: vec![ann(TS, "sr"), ann(TS + 10, "ss")],
        binary_annotations: vec![addr("ca", "api")],
        ..base.clone()
    });
    assert_eq!(sp.kind, SpanKind::Server as i32);
    assert!(
        !sp.attributes.iter().any(|k| k.key == "peer.service"),
        "{:?}",
        sp.attributes
    );
    assert!(sp.attributes.contains(&kv("net.peer.port", int_value(1))));
    // Messaging: ms + ws gives a producer span timed by the annotations (no v1 duration).
    let sp = one(V1Span {
        duration_us: None,
        annotations: vec![ann(TS + 1, "ms"), ann(TS + 4, "ws")],
        binary_annotations: vec![addr("ma", "kafka")],
        ..base.clone()
    });
    assert_eq!(sp.kind, SpanKind::Producer as i32);
    assert_eq!(
        (sp.start_time_unix_nano, sp.end_time_unix_nano),
        ((TS + 1) * 1000, (TS + 4) * 1000)
    );
    assert!(sp.attributes.contains(&kv("peer.service", str_value("kafka"))));
    // A server-only span without a v1 timestamp is the shared half of an RPC.
    let sp = one(V1Span {
        timestamp_us: None,
        annotations: vec![ann(TS, "sr"), ann(TS + 10, "ss")],
        ..base.clone()
    });
    assert_eq!(sp.parent_span_id, base.id, "shared: child of the client span");
    assert_eq!(sp.span_id, shared_server_span_id(&base.id));
}

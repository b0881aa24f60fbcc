//! Zipkin and Jaeger receivers against a real Kafka-protocol broker: every protocol in, one record
//! per trace out, IDs widened, parentage, service names and attributes intact; bad input and
//! backpressure; and real OpenTelemetry Python exporters (Zipkin JSON v1/v2 and proto3, Jaeger
//! thrift agent and collector) sending through their own code.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tailsift_otlp::ExportTraceServiceRequest;
use tailsift_tests::{metric_value, read_topic, Broker, IngestNode, Record, Storage};
use tailsift_translate::jaeger::{self, Batch, JaegerSpan, Process, Tag, TagValue};
use tailsift_translate::zipkin::v1::{BinaryValue, V1Annotation, V1BinaryAnnotation, V1Span};
use tailsift_translate::zipkin::{self, Endpoint, Kind, ZipkinSpan};

/// A random 64-bit trace ID, widened (high 8 bytes zero).
fn trace64() -> Vec<u8> {
    let low: u64 = rand::random::<u64>() | 1;
    [[0u8; 8], low.to_be_bytes()].concat()
}

fn id(n: u64) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

fn ep(svc: &str) -> Option<Endpoint> {
    Some(Endpoint {
        service_name: svc.into(),
        ipv4: Some([10, 0, 0, 9].into()),
        ipv6: None,
        port: 8080,
    })
}

/// Root server span of `svc` and a client child calling "payments".
fn zipkin_trace(trace: &[u8], svc: &str) -> Vec<ZipkinSpan> {
    vec![
        ZipkinSpan {
            trace_id: trace.to_vec(),
            id: id(0x10),
            kind: Some(Kind::Server),
            name: "get /cart".into(),
            timestamp_us: 1_700_000_000_000_000,
            duration_us: 2000,
            local: ep(svc),
            tags: vec![("http.method".into(), "GET".into())],
            ..Default::default()
        },
        ZipkinSpan {
            trace_id: trace.to_vec(),
            id: id(0x11),
            parent_id: id(0x10),
            kind: Some(Kind::Client),
            name: "charge".into(),
            timestamp_us: 1_700_000_000_000_500,
            duration_us: 1000,
            local: ep(svc),
            remote: Some(Endpoint {
                service_name: "payments".into(),
                ..Default::default()
            }),
            tags: vec![("error".into(), "true".into())],
            ..Default::default()
        },
    ]
}

fn v1_trace(trace: &[u8], svc: &str) -> Vec<V1Span> {
    let e = ep(svc);
    let ann = |t: u64, v: &str| V1Annotation {
        timestamp_us: t,
        value: v.into(),
        endpoint: e.clone(),
    };
    vec![
        V1Span {
            trace_id: trace.to_vec(),
            id: id(0x10),
            name: "get /cart".into(),
            timestamp_us: Some(1_700_000_000_000_000),
            duration_us: Some(2000),
            annotations: vec![ann(1_700_000_000_000_000, "sr"), ann(1_700_000_000_002_000, "ss")],
            binary_annotations: vec![V1BinaryAnnotation {
                key: "http.method".into(),
                value: BinaryValue::Str("GET".into()),
                endpoint: e.clone(),
            }],
            ..Default::default()
        },
        V1Span {
            trace_id: trace.to_vec(),
            id: id(0x11),
            parent_id: id(0x10),
            name: "charge".into(),
            timestamp_us: Some(1_700_000_000_000_500),
            duration_us: Some(1000),
            annotations: vec![ann(1_700_000_000_000_500, "cs"), ann(1_700_000_000_001_500, "cr")],
            binary_annotations: vec![
                V1BinaryAnnotation {
                    key: "error".into(),
                    value: BinaryValue::Str("true".into()),
                    endpoint: e.clone(),
                },
                V1BinaryAnnotation {
                    key: "sa".into(),
                    value: BinaryValue::Bool(true),
                    endpoint: Some(Endpoint {
                        service_name: "payments".into(),
                        ..Default::default()
                    }),
                },
            ],
            ..Default::default()
        },
    ]
}

fn jaeger_batch(trace: &[u8], svc: &str) -> Batch {
    let s = |k: &str, v: &str| Tag::new(k, TagValue::Str(v.into()));
    Batch {
        process: Some(Process {
            service_name: svc.into(),
            tags: vec![s("hostname", "node-1")],
        }),
        spans: vec![
            JaegerSpan {
                trace_id: trace.to_vec(),
                span_id: id(0x10),
                operation_name: "get /cart".into(),
                start_nanos: 1_700_000_000_000_000_000,
                duration_nanos: 2_000_000,
                tags: vec![s("span.kind", "server"), s("http.method", "GET")],
                ..Default::default()
            },
            JaegerSpan {
                trace_id: trace.to_vec(),
                span_id: id(0x11),
                parent_span_id: id(0x10),
                operation_name: "charge".into(),
                start_nanos: 1_700_000_000_000_500_000,
                duration_nanos: 1_000_000,
                tags: vec![
                    s("span.kind", "client"),
                    Tag::new("error", TagValue::Bool(true)),
                    s("peer.service", "payments"),
                ],
                ..Default::default()
            },
        ],
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|k| k.key == key)
        .and_then(|k| k.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn str_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    match attr(attrs, key) {
        Some(any_value::Value::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

/// (trace ID hex, service.name, span) of every span in the records, checking one trace per
/// record keyed by its trace ID.
fn spans_with_service(records: &[Record]) -> Vec<(String, String, Span)> {
    let mut out = Vec::new();
    for r in records {
        let req = ExportTraceServiceRequest::decode(r.payload.as_slice()).expect("record decodes");
        let mut ids = HashSet::new();
        for rs in &req.resource_spans {
            let svc = rs
                .resource
                .as_ref()
                .and_then(|r| str_attr(&r.attributes, "service.name"))
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    ids.insert(hex::encode(&s.trace_id));
                    out.push((hex::encode(&s.trace_id), svc.clone(), s.clone()));
                }
            }
        }
        assert_eq!(ids.len(), 1, "one trace per record");
        assert_eq!(
            r.key,
            ids.into_iter().next().unwrap().into_bytes(),
            "key is the hex trace ID"
        );
    }
    out
}

/// Checks the two-span trace sent by the helpers above arrived intact.
fn check_trace(all: &[(String, String, Span)], trace: &[u8], svc: &str) {
    let t = hex::encode(trace);
    assert!(t.starts_with("0000000000000000"), "64-bit trace ID widened: {t}");
    let spans: Vec<&(String, String, Span)> = all.iter().filter(|(id, _, _)| *id == t).collect();
    assert_eq!(spans.len(), 2, "trace {t} ({svc}): {spans:?}");
    let root = spans.iter().find(|(_, _, s)| s.name == "get /cart").expect("root span");
    let child = spans.iter().find(|(_, _, s)| s.name == "charge").expect("child span");
    assert_eq!(root.1, svc, "service.name");
    assert_eq!(child.1, svc);
    assert_eq!(root.2.span_id, id(0x10));
    assert!(root.2.parent_span_id.is_empty());
    assert_eq!(child.2.parent_span_id, id(0x10), "parentage kept");
    assert_eq!(root.2.kind, 2, "server");
    assert_eq!(child.2.kind, 3, "client");
    assert_eq!(str_attr(&root.2.attributes, "http.method").as_deref(), Some("GET"));
    assert_eq!(
        str_attr(&child.2.attributes, "peer.service").as_deref(),
        Some("payments")
    );
    assert_eq!(
        child.2.status.as_ref().map(|s| s.code),
        Some(2),
        "error tag -> status ERROR"
    );
    assert_eq!(root.2.start_time_unix_nano, 1_700_000_000_000_000_000);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn post(url: String, ct: &str, gz: bool, body: Vec<u8>) -> reqwest::Response {
    let mut r = reqwest::Client::new().post(url).header("content-type", ct);
    if gz {
        r = r.header("content-encoding", "gzip");
    }
    r.body(body).send().await.expect("http request")
}

async fn post_spans(
    addr: std::net::SocketAddr,
    req: jaeger::proto::PostSpansRequest,
) -> Result<jaeger::proto::PostSpansResponse, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<jaeger::proto::PostSpansRequest, jaeger::proto::PostSpansResponse>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/jaeger.api_v2.CollectorService/PostSpans");
    grpc.unary(tonic::Request::new(req), path, codec)
        .await
        .map(|r| r.into_inner())
}

fn send_udp(to: std::net::SocketAddr, data: &[u8]) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(data, to).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zipkin_every_encoding_writes_one_record_per_trace() {
    let broker = Broker::start(Storage::Memory);
    let topic = "spans-zipkin";
    let node = IngestNode::start(&broker.brokers(), topic, &[]).await;
    let z = node.receivers.zipkin.expect("zipkin enabled");
    let v2 = format!("http://{z}/api/v2/spans");
    let v1 = format!("http://{z}/api/v1/spans");

    let (a, b, c, d, e, f) = (trace64(), trace64(), trace64(), trace64(), trace64(), trace64());
    // v2 JSON with two traces in one request: two records.
    let two = [zipkin_trace(&a, "json-a"), zipkin_trace(&b, "json-b")].concat();
    let r = post(
        v2.clone(),
        "application/json",
        false,
        zipkin::v2_json::encode_v2_json(&two),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let r = post(
        v2.clone(),
        "application/json",
        true,
        gzip(&zipkin::v2_json::encode_v2_json(&zipkin_trace(&c, "json-gz"))),
    )
    .await;
    assert_eq!(r.status(), 202);
    let r = post(
        v2.clone(),
        "application/x-protobuf",
        false,
        zipkin::proto::encode_v2_proto(&zipkin_trace(&d, "proto")),
    )
    .await;
    assert_eq!(r.status(), 202);
    let r = post(
        v1.clone(),
        "application/x-thrift",
        false,
        zipkin::v1_thrift::encode_v1_thrift(&v1_trace(&e, "v1-thrift")),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    // v1 JSON as a v1 client writes it.
    let v1_json = serde_json::json!([
        {"traceId": hex::encode(&f[8..]), "id": "0000000000000010", "name": "get /cart", "timestamp": 1_700_000_000_000_000u64, "duration": 2000,
         "annotations": [
            {"timestamp": 1_700_000_000_000_000u64, "value": "sr", "endpoint": {"serviceName": "v1-json", "ipv4": "10.0.0.9", "port": 8080}},
            {"timestamp": 1_700_000_000_002_000u64, "value": "ss", "endpoint": {"serviceName": "v1-json", "ipv4": "10.0.0.9", "port": 8080}}],
         "binaryAnnotations": [{"key": "http.method", "value": "GET", "endpoint": {"serviceName": "v1-json", "ipv4": "10.0.0.9", "port": 8080}}]},
        {"traceId": hex::encode(&f[8..]), "id": "0000000000000011", "parentId": "0000000000000010", "name": "charge", "timestamp": 1_700_000_000_000_500u64, "duration": 1000,
         "annotations": [
            {"timestamp": 1_700_000_000_000_500u64, "value": "cs", "endpoint": {"serviceName": "v1-json", "ipv4": "10.0.0.9", "port": 8080}},
            {"timestamp": 1_700_000_000_001_500u64, "value": "cr", "endpoint": {"serviceName": "v1-json", "ipv4": "10.0.0.9", "port": 8080}}],
         "binaryAnnotations": [{"key": "error", "value": "true"}, {"key": "sa", "value": true, "endpoint": {"serviceName": "payments"}}]}
    ]);
    let r = post(
        v1.clone(),
        "application/json",
        false,
        serde_json::to_vec(&v1_json).unwrap(),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());

    let records = read_topic(&broker.brokers(), topic, 6, Duration::from_secs(30));
    assert_eq!(records.len(), 6, "one record per trace per request");
    let all = spans_with_service(&records);
    for (t, svc) in [
        (&a, "json-a"),
        (&b, "json-b"),
        (&c, "json-gz"),
        (&d, "proto"),
        (&e, "v1-thrift"),
        (&f, "v1-json"),
    ] {
        check_trace(&all, t, svc);
    }
    let m = node.metrics().await;
    for p in [
        "zipkin_v2_json",
        "zipkin_v2_proto",
        "zipkin_v1_json",
        "zipkin_v1_thrift",
    ] {
        let label = format!("protocol=\"{p}\"");
        assert!(
            metric_value(&m, "tailsift_ingest_requests_total", &[&label, "outcome=\"accepted\""]) >= 1.0,
            "{p}"
        );
        assert!(
            metric_value(&m, "tailsift_ingest_spans_received_total", &[&label]) >= 2.0,
            "{p}"
        );
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jaeger_every_protocol_writes_one_record_per_trace() {
    let broker = Broker::start(Storage::Memory);
    let topic = "spans-jaeger";
    let node = IngestNode::start(&broker.brokers(), topic, &[]).await;
    let rc = node.receivers;

    let (a, b, c, d) = (trace64(), trace64(), trace64(), trace64());
    let r = post(
        format!("http://{}/api/traces", rc.jaeger_http.unwrap()),
        "application/x-thrift",
        false,
        jaeger::thrift::encode_binary_batch(&jaeger_batch(&a, "thrift-http")),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let pb = jaeger::proto::encode_post_spans(&jaeger_batch(&b, "grpc"));
    post_spans(
        rc.jaeger_grpc.unwrap(),
        jaeger::proto::PostSpansRequest::decode(pb.as_slice()).unwrap(),
    )
    .await
    .expect("PostSpans");
    send_udp(
        rc.jaeger_compact_udp.unwrap(),
        &jaeger::thrift::encode_agent_compact(&jaeger_batch(&c, "udp-compact")),
    );
    send_udp(
        rc.jaeger_binary_udp.unwrap(),
        &jaeger::thrift::encode_agent_binary(&jaeger_batch(&d, "udp-binary")),
    );

    let records = read_topic(&broker.brokers(), topic, 4, Duration::from_secs(30));
    assert_eq!(records.len(), 4);
    let all = spans_with_service(&records);
    for (t, svc) in [
        (&a, "thrift-http"),
        (&b, "grpc"),
        (&c, "udp-compact"),
        (&d, "udp-binary"),
    ] {
        check_trace(&all, t, svc);
    }
    // Process tags are resource attributes (hostname -> host.name).
    let req = ExportTraceServiceRequest::decode(records[0].payload.as_slice()).unwrap();
    assert_eq!(
        str_attr(
            &req.resource_spans[0].resource.as_ref().unwrap().attributes,
            "host.name"
        )
        .as_deref(),
        Some("node-1")
    );
    let m = node.metrics().await;
    for p in [
        "jaeger_thrift_http",
        "jaeger_grpc",
        "jaeger_thrift_compact_udp",
        "jaeger_thrift_binary_udp",
    ] {
        let label = format!("protocol=\"{p}\"");
        assert!(
            metric_value(&m, "tailsift_ingest_requests_total", &[&label, "outcome=\"accepted\""]) >= 1.0,
            "{p}: {m}"
        );
    }
    node.stop().await;
}

async fn wait_metric(node: &IngestNode, name: &str, labels: &[&str], at_least: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = metric_value(&node.metrics().await, name, labels);
        if v >= at_least || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_kafka_outages_are_retryable() {
    let mut broker = Broker::start(Storage::Memory);
    let topic = "spans-zj-bad";
    let node = IngestNode::start(
        &broker.brokers(),
        topic,
        &[
            ("limits.max_request_bytes", "65536"),
            ("jaeger.udp_max_datagram_bytes", "4096"),
        ],
    )
    .await;
    let rc = node.receivers;
    let z = rc.zipkin.unwrap();
    let jh = format!("http://{}/api/traces", rc.jaeger_http.unwrap());

    // Zipkin: malformed JSON, bad IDs, wrong media type, bad gzip, too large.
    let r = post(
        format!("http://{z}/api/v2/spans"),
        "application/json",
        false,
        b"[{".to_vec(),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("invalid Zipkin v2 JSON"));
    let r = post(
        format!("http://{z}/api/v2/spans"),
        "application/json",
        false,
        br#"[{"traceId":"zz","id":"1"}]"#.to_vec(),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("traceId `zz`"));
    assert_eq!(
        post(format!("http://{z}/api/v2/spans"), "text/plain", false, b"x".to_vec())
            .await
            .status(),
        415
    );
    assert_eq!(
        post(
            format!("http://{z}/api/v1/spans"),
            "application/x-thrift",
            true,
            b"not gzip".to_vec()
        )
        .await
        .status(),
        400
    );
    let r = post(
        format!("http://{z}/api/v1/spans"),
        "application/x-thrift",
        false,
        vec![12, 0, 0, 0, 9, 1],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("invalid Zipkin v1 thrift"));
    assert_eq!(
        post(
            format!("http://{z}/api/v2/spans"),
            "application/json",
            false,
            vec![b' '; 70_000]
        )
        .await
        .status(),
        413
    );
    // Zipkin: only invalid spans (zero trace ID).
    let mut zero = zipkin_trace(&trace64(), "x");
    zero.iter_mut().for_each(|s| s.trace_id = vec![0; 16]);
    let r = post(
        format!("http://{z}/api/v2/spans"),
        "application/json",
        false,
        zipkin::v2_json::encode_v2_json(&zero),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("trace_id must not be all zero"));

    // Jaeger HTTP and gRPC.
    let r = post(
        jh.clone(),
        "application/x-thrift",
        false,
        b"\x0c\x00\x01garbage".to_vec(),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("invalid Jaeger thrift Batch"));
    assert_eq!(
        post(jh.clone(), "application/json", false, b"{}".to_vec())
            .await
            .status(),
        415
    );
    let mut zb = jaeger_batch(&trace64(), "x");
    zb.spans.iter_mut().for_each(|s| s.trace_id = vec![0; 16]);
    let pb = jaeger::proto::PostSpansRequest::decode(jaeger::proto::encode_post_spans(&zb).as_slice()).unwrap();
    let err = post_spans(rc.jaeger_grpc.unwrap(), pb).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    // UDP: a malformed datagram is counted and dropped; the socket keeps working.
    send_udp(rc.jaeger_compact_udp.unwrap(), b"\x82\x81\x01\x09emitBatch\xff\xff");
    send_udp(rc.jaeger_binary_udp.unwrap(), b"garbage");
    let proto_c = "protocol=\"jaeger_thrift_compact_udp\"";
    let proto_b = "protocol=\"jaeger_thrift_binary_udp\"";
    assert!(
        wait_metric(
            &node,
            "tailsift_ingest_udp_datagrams_dropped_total",
            &[proto_c, "reason=\"malformed\""],
            1.0
        )
        .await
            >= 1.0
    );
    assert!(
        wait_metric(
            &node,
            "tailsift_ingest_udp_datagrams_dropped_total",
            &[proto_b, "reason=\"malformed\""],
            1.0
        )
        .await
            >= 1.0
    );
    // Longer than jaeger.udp_max_datagram_bytes: dropped as too large.
    let mut big = jaeger_batch(&trace64(), "big");
    big.spans[0]
        .tags
        .push(Tag::new("blob", TagValue::Str("x".repeat(5000))));
    send_udp(
        rc.jaeger_compact_udp.unwrap(),
        &jaeger::thrift::encode_agent_compact(&big),
    );
    assert!(
        wait_metric(
            &node,
            "tailsift_ingest_udp_datagrams_dropped_total",
            &[proto_c, "reason=\"too_large\""],
            1.0
        )
        .await
            >= 1.0
    );
    let good = trace64();
    send_udp(
        rc.jaeger_compact_udp.unwrap(),
        &jaeger::thrift::encode_agent_compact(&jaeger_batch(&good, "after-garbage")),
    );
    let records = read_topic(&broker.brokers(), topic, 1, Duration::from_secs(20));
    assert_eq!(records.len(), 1, "only the good datagram reached Kafka");
    check_trace(&spans_with_service(&records), &good, "after-garbage");
    let m = node.metrics().await;
    assert!(
        metric_value(
            &m,
            "tailsift_ingest_requests_total",
            &["protocol=\"zipkin_v2_json\"", "outcome=\"invalid\""]
        ) >= 3.0
    );
    assert!(
        metric_value(
            &m,
            "tailsift_ingest_requests_total",
            &["protocol=\"zipkin_v2_json\"", "outcome=\"too_large\""]
        ) >= 1.0
    );

    // Kafka down: retryable answers everywhere, UDP drops counted.
    broker.stop();
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("http://{}/readyz", node.admin))
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "node never noticed the broker going away");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = post(
        format!("http://{z}/api/v2/spans"),
        "application/json",
        false,
        zipkin::v2_json::encode_v2_json(&zipkin_trace(&trace64(), "down")),
    )
    .await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let r = post(
        jh,
        "application/x-thrift",
        false,
        jaeger::thrift::encode_binary_batch(&jaeger_batch(&trace64(), "down")),
    )
    .await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let pb = jaeger::proto::PostSpansRequest::decode(
        jaeger::proto::encode_post_spans(&jaeger_batch(&trace64(), "down")).as_slice(),
    )
    .unwrap();
    assert_eq!(
        post_spans(rc.jaeger_grpc.unwrap(), pb).await.unwrap_err().code(),
        tonic::Code::Unavailable
    );
    send_udp(
        rc.jaeger_binary_udp.unwrap(),
        &jaeger::thrift::encode_agent_binary(&jaeger_batch(&trace64(), "down")),
    );
    assert!(
        wait_metric(
            &node,
            "tailsift_ingest_udp_datagrams_dropped_total",
            &[proto_b, "reason=\"unavailable\""],
            1.0
        )
        .await
            >= 1.0
    );
    node.stop().await;
}

// ---- real clients ----

fn venv_python(name: &str) -> PathBuf {
    let root = std::env::var_os("TAILSIFT_VENVS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/tailsift/venvs"));
    let py = root.join(name).join("bin/python");
    assert!(
        py.exists(),
        "Python venv `{name}` missing at {}: run `bash tests/run.sh` (or `bash tests/clients/setup.sh`) to create the real-client venvs",
        py.display()
    );
    py
}

/// Runs tests/clients/send_spans.py in a venv; returns what it reports it sent.
async fn run_client(venv: &str, mode: &str, endpoint: String, service: &str, id_bits: u32) -> serde_json::Value {
    let py = venv_python(venv);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/send_spans.py");
    let (mode, service) = (mode.to_string(), service.to_string());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(py)
            .arg(script)
            .args([
                "--mode",
                &mode,
                "--endpoint",
                &endpoint,
                "--service",
                &service,
                "--id-bits",
                &id_bits.to_string(),
            ])
            .output()
            .expect("running the Python client")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "client failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("client output {e}: {stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_opentelemetry_python_exporters_arrive_intact() {
    let broker = Broker::start(Storage::Memory);
    let topic = "spans-real-clients";
    let node = IngestNode::start(&broker.brokers(), topic, &[]).await;
    let rc = node.receivers;
    let z = rc.zipkin.unwrap();
    let runs = [
        ("zipkin", "zipkin-v2-json", format!("http://{z}/api/v2/spans"), 128),
        ("zipkin", "zipkin-v1-json", format!("http://{z}/api/v1/spans"), 64),
        ("zipkin", "zipkin-v2-proto", format!("http://{z}/api/v2/spans"), 128),
        ("jaeger", "jaeger-agent", rc.jaeger_compact_udp.unwrap().to_string(), 64),
        (
            "jaeger",
            "jaeger-collector",
            format!("http://{}/api/traces", rc.jaeger_http.unwrap()),
            128,
        ),
    ];
    let mut sent = Vec::new();
    for (venv, mode, endpoint, bits) in runs {
        let service = format!("py-{mode}");
        let out = run_client(venv, mode, endpoint, &service, bits).await;
        sent.push((mode, service, bits, out));
    }
    // Every exporter sends each span when it ends (SimpleSpanProcessor): 3 records per trace.
    let records = read_topic(&broker.brokers(), topic, 15, Duration::from_secs(30));
    let all = spans_with_service(&records);
    let mut by_trace: HashMap<String, Vec<(String, Span)>> = HashMap::new();
    for (t, svc, s) in all {
        by_trace.entry(t).or_default().push((svc, s));
    }
    for (mode, service, bits, out) in sent {
        let trace = out["trace_id"].as_str().unwrap().to_string();
        if bits == 64 {
            assert!(trace.starts_with("0000000000000000"), "{mode}: {trace}");
        }
        let got = by_trace
            .get(&trace)
            .unwrap_or_else(|| panic!("{mode}: trace {trace} not in Kafka ({} records)", records.len()));
        assert_eq!(got.len(), 3, "{mode}: {got:?}");
        for (name, want) in out["spans"].as_object().unwrap() {
            let (svc, span) = got
                .iter()
                .find(|(_, s)| s.name == *name)
                .unwrap_or_else(|| panic!("{mode}: span {name} missing"));
            assert_eq!(svc, &service, "{mode}: service.name");
            assert_eq!(
                hex::encode(&span.span_id),
                want["span_id"].as_str().unwrap(),
                "{mode}: {name} span ID"
            );
            let parent = if span.parent_span_id.is_empty() {
                None
            } else {
                Some(hex::encode(&span.parent_span_id))
            };
            assert_eq!(parent.as_deref(), want["parent_id"].as_str(), "{mode}: {name} parent");
            // The Python v1 encoder writes no core annotations (cs/sr...), so v1 spans carry no kind.
            let kinds = mode != "zipkin-v1-json";
            match name.as_str() {
                "checkout" => {
                    assert!(!kinds || span.kind == 2, "{mode}: server kind");
                    assert_eq!(
                        str_attr(&span.attributes, "http.route").as_deref(),
                        Some("/checkout"),
                        "{mode}"
                    );
                }
                "charge-card" => {
                    assert!(!kinds || span.kind == 3, "{mode}: client kind");
                    let st = span.status.as_ref().unwrap_or_else(|| panic!("{mode}: no status"));
                    assert_eq!(st.code, 2, "{mode}: ERROR status");
                    assert!(st.message.contains("card declined"), "{mode}: {st:?}");
                    assert_eq!(
                        str_attr(&span.attributes, "payment.provider").as_deref(),
                        Some("acme"),
                        "{mode}"
                    );
                    let ev = span.events.first().unwrap_or_else(|| panic!("{mode}: no event"));
                    if mode.starts_with("jaeger") {
                        // The Jaeger exporter writes the event name as a `message` log field; like
                        // the Collector, only an `event` field names an OTLP event.
                        assert_eq!(
                            str_attr(&ev.attributes, "message").as_deref(),
                            Some("retry"),
                            "{mode}: {ev:?}"
                        );
                    } else {
                        assert_eq!(ev.name, "retry", "{mode}: {ev:?}");
                    }
                    assert_eq!(
                        attr(&ev.attributes, "attempt"),
                        Some(&any_value::Value::IntValue(2)),
                        "{mode}: {ev:?}"
                    );
                }
                _ => {}
            }
        }
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_py_zipkin_client_every_encoding_arrives_intact() {
    let broker = Broker::start(Storage::Memory);
    let topic = "spans-py-zipkin";
    let node = IngestNode::start(&broker.brokers(), topic, &[]).await;
    let base = format!("http://{}", node.receivers.zipkin.unwrap());
    let py = venv_python("pyzipkin");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/py_zipkin_send.py");
    let mut sent = Vec::new();
    for enc in ["V1_THRIFT", "V1_JSON", "V2_JSON", "V2_PROTO3"] {
        let (py, script, base) = (py.clone(), script.clone(), base.clone());
        let service = format!("pyz-{}", enc.to_ascii_lowercase());
        let svc = service.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(py)
                .arg(script)
                .args(["--encoding", enc, "--base", &base, "--service", &svc])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{enc}: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        sent.push((enc, service, v));
    }
    // py_zipkin reports a whole trace in one request: one record per trace.
    let records = read_topic(&broker.brokers(), topic, 4, Duration::from_secs(30));
    assert_eq!(records.len(), 4);
    let all = spans_with_service(&records);
    for (enc, service, out) in sent {
        let trace = out["trace_id"].as_str().unwrap();
        assert!(
            trace.starts_with("0000000000000000"),
            "{enc}: 64-bit trace ID widened: {trace}"
        );
        let spans: Vec<&(String, String, Span)> = all.iter().filter(|(t, _, _)| t == trace).collect();
        assert_eq!(spans.len(), 2, "{enc}: {spans:?}");
        for (name, want) in out["spans"].as_object().unwrap() {
            let (_, svc, span) = spans
                .iter()
                .find(|(_, _, s)| s.name == *name)
                .unwrap_or_else(|| panic!("{enc}: {name} missing"));
            assert_eq!(svc, &service, "{enc}");
            assert_eq!(
                hex::encode(&span.span_id),
                want["span_id"].as_str().unwrap(),
                "{enc}: {name} span ID"
            );
            let parent = if span.parent_span_id.is_empty() {
                None
            } else {
                Some(hex::encode(&span.parent_span_id))
            };
            assert_eq!(parent.as_deref(), want["parent_id"].as_str(), "{enc}: {name} parent");
            if name == "checkout" {
                assert_eq!(span.kind, 2, "{enc}: server");
                assert_eq!(
                    str_attr(&span.attributes, "http.route").as_deref(),
                    Some("/checkout"),
                    "{enc}"
                );
            } else {
                assert_eq!(span.kind, 3, "{enc}: client");
                assert_eq!(
                    str_attr(&span.attributes, "peer.service").as_deref(),
                    Some("payments"),
                    "{enc}: {:?}",
                    span.attributes
                );
                assert_eq!(
                    str_attr(&span.attributes, "net.peer.ip").as_deref(),
                    Some("10.1.2.3"),
                    "{enc}"
                );
                let st = span.status.as_ref().unwrap_or_else(|| panic!("{enc}: no status"));
                assert_eq!((st.code, st.message.as_str()), (2, "card declined"), "{enc}");
            }
        }
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_takes_zipkin_listen_and_jaeger_switches() {
    let broker = Broker::start(Storage::Memory);
    let (zport, admin) = (tailsift_tests::free_port(), tailsift_tests::free_port());
    let child = std::process::Command::new(tailsift_tests::workspace_bin("tailsift"))
        .args([
            "ingest",
            "--kafka-brokers",
            &broker.brokers(),
            "--topic",
            "spans-bin-zipkin",
        ])
        .args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .args([
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
            "--zipkin-listen",
            &format!("127.0.0.1:{zport}"),
        ])
        .args(["--set", "jaeger.enabled=false"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _guard = tailsift_tests::ChildGuard(Some(child));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(format!("http://127.0.0.1:{admin}/readyz"))
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "binary never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = trace64();
    let r = post(
        format!("http://127.0.0.1:{zport}/api/v2/spans"),
        "application/json",
        false,
        zipkin::v2_json::encode_v2_json(&zipkin_trace(&t, "bin")),
    )
    .await;
    assert_eq!(r.status(), 202);
    let records = read_topic(&broker.brokers(), "spans-bin-zipkin", 1, Duration::from_secs(20));
    check_trace(&spans_with_service(&records), &t, "bin");
}

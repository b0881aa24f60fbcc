//! Ingest node against a real Kafka-protocol broker: every receiver in, one record per trace out.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tailsift_tests::{metric_value, read_topic, spans_by_trace, Broker, IngestNode, Storage};

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn trace_id() -> Vec<u8> {
    let mut id: [u8; 16] = rand::random();
    id[0] |= 1;
    id.to_vec()
}

fn span(trace: &[u8], n: u64, name: &str) -> Span {
    Span {
        trace_id: trace.to_vec(),
        span_id: (n + 1).to_be_bytes().to_vec(),
        name: name.into(),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_100_000_000,
        attributes: vec![kv("http.route", "/cart")],
        ..Default::default()
    }
}

/// A request with `traces` traces spread over two services with two scopes.
fn request(traces: &[Vec<u8>], tag: &str) -> ExportTraceServiceRequest {
    let mut n = 0;
    let mut mk = |svc: &str, scope: &str| {
        let spans = traces
            .iter()
            .map(|t| {
                n += 1;
                span(t, n, &format!("{tag}-{svc}-{scope}-{n}"))
            })
            .collect();
        ScopeSpans {
            scope: Some(InstrumentationScope {
                name: scope.into(),
                version: "2.1".into(),
                ..Default::default()
            }),
            spans,
            schema_url: "https://opentelemetry.io/schemas/1.24.0".into(),
        }
    };
    let a = mk("frontend", "http");
    let b = mk("frontend", "db");
    let c = mk("cart", "grpc");
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "frontend"), kv("host.name", "h1")],
                    ..Default::default()
                }),
                scope_spans: vec![a, b],
                schema_url: "https://opentelemetry.io/schemas/1.24.0".into(),
            },
            ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "cart")],
                    ..Default::default()
                }),
                scope_spans: vec![c],
                schema_url: String::new(),
            },
        ],
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn post(node: &IngestNode, ct: &str, ce: Option<&str>, body: Vec<u8>) -> reqwest::Response {
    let mut r = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", node.http))
        .header("content-type", ct)
        .body(body);
    if let Some(ce) = ce {
        r = r.header("content-encoding", ce);
    }
    r.send().await.expect("http request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_receiver_writes_one_record_per_trace_keyed_by_trace_id() {
    let broker = Broker::start(Storage::Memory);
    let topic = "spans-roundtrip";
    let node = IngestNode::start(&broker.brokers(), topic, &[]).await;

    let mut sent: HashMap<String, Vec<Span>> = HashMap::new();
    let mut remember = |req: &ExportTraceServiceRequest| {
        for rs in &req.resource_spans {
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    sent.entry(hex::encode(&s.trace_id)).or_default().push(s.clone());
                }
            }
        }
    };

    // OTLP/gRPC, plain and gzip.
    let mut client = TraceServiceClient::connect(format!("http://{}", node.grpc))
        .await
        .unwrap();
    let r1 = request(&[trace_id(), trace_id(), trace_id()], "grpc");
    remember(&r1);
    let resp = client.export(r1).await.unwrap().into_inner();
    assert_eq!(resp.partial_success, None);
    let mut gz_client = TraceServiceClient::connect(format!("http://{}", node.grpc))
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    let r2 = request(&[trace_id(), trace_id()], "grpcgz");
    remember(&r2);
    let answer = gz_client.export(r2).await.unwrap();
    // The client accepts gzip, but an (empty) answer is not worth a gzip encoder: sent plain.
    assert_eq!(answer.metadata().get("grpc-encoding"), None);

    // OTLP/HTTP protobuf, plain and gzip.
    let r3 = request(&[trace_id(), trace_id()], "httppb");
    remember(&r3);
    let resp = post(&node, "application/x-protobuf", None, r3.encode_to_vec()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    let body = resp.bytes().await.unwrap();
    assert_eq!(ExportTraceServiceResponse::decode(body).unwrap().partial_success, None);
    let r4 = request(&[trace_id()], "httppbgz");
    remember(&r4);
    assert_eq!(
        post(&node, "application/x-protobuf", Some("gzip"), gzip(&r4.encode_to_vec()))
            .await
            .status(),
        200
    );

    // OTLP/HTTP JSON, plain and gzip.
    let r5 = request(&[trace_id(), trace_id()], "json");
    remember(&r5);
    let resp = post(
        &node,
        "application/json; charset=utf-8",
        None,
        serde_json::to_vec(&r5).unwrap(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let r6 = request(&[trace_id()], "jsongz");
    remember(&r6);
    assert_eq!(
        post(
            &node,
            "application/json",
            Some("gzip"),
            gzip(&serde_json::to_vec(&r6).unwrap())
        )
        .await
        .status(),
        200
    );

    // 6 requests: traces 3+2+2+1+2+1 = 11, each request's trace = one record.
    let records = read_topic(&broker.brokers(), topic, 11, Duration::from_secs(30));
    assert_eq!(records.len(), 11, "one record per trace per request");
    let partitions = tailsift_tests::partition_count(&broker.brokers(), topic) as i32;
    assert_eq!(partitions, 4, "topic created with the configured partition count");
    for rec in &records {
        let req = ExportTraceServiceRequest::decode(rec.payload.as_slice()).unwrap();
        let ids: HashSet<Vec<u8>> = req
            .resource_spans
            .iter()
            .flat_map(|rs| {
                rs.scope_spans
                    .iter()
                    .flat_map(|ss| ss.spans.iter().map(|s| s.trace_id.clone()))
            })
            .collect();
        assert_eq!(ids.len(), 1, "a record holds exactly one trace");
        let id = ids.into_iter().next().unwrap();
        assert_eq!(
            rec.key,
            hex::encode(&id).into_bytes(),
            "key is the lowercase hex trace ID"
        );
        assert_eq!(
            rec.partition,
            tailsift_otlp::fnv1a_partition(&rec.key, partitions),
            "Sarama-compatible partitioning"
        );
        // Resource and scope preserved.
        assert_eq!(req.resource_spans.len(), 2);
        let fe = &req.resource_spans[0];
        assert_eq!(
            fe.resource.as_ref().unwrap().attributes,
            vec![kv("service.name", "frontend"), kv("host.name", "h1")]
        );
        assert_eq!(fe.schema_url, "https://opentelemetry.io/schemas/1.24.0");
        assert_eq!(
            fe.scope_spans
                .iter()
                .map(|s| s.scope.as_ref().unwrap().name.as_str())
                .collect::<Vec<_>>(),
            ["http", "db"]
        );
        assert_eq!(fe.scope_spans[0].scope.as_ref().unwrap().version, "2.1");
        assert_eq!(
            req.resource_spans[1].resource.as_ref().unwrap().attributes,
            vec![kv("service.name", "cart")]
        );
    }
    // Every span present exactly once, byte-identical.
    let got = spans_by_trace(&records);
    assert_eq!(got.len(), sent.len());
    for (id, mut want) in sent {
        let mut have = got[&id].clone();
        want.sort_by(|a, b| a.name.cmp(&b.name));
        have.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(have, want, "trace {id}");
    }

    let m = node.metrics().await;
    // Metrics are process-wide and tests share the process: lower bounds only.
    assert!(metric_value(&m, "tailsift_ingest_records_produced_total", &[]) >= 11.0);
    assert!(
        metric_value(
            &m,
            "tailsift_ingest_requests_total",
            &["protocol=\"otlp_grpc\"", "outcome=\"accepted\""]
        ) >= 2.0
    );
    assert!(metric_value(&m, "tailsift_ingest_requests_total", &["protocol=\"otlp_http_json\""]) >= 2.0);
    assert!(m.contains("# HELP tailsift_ingest_produce_duration_seconds"));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_never_disturbs_good_requests() {
    let broker = Broker::start(Storage::Memory);
    let topic = "spans-bad-input";
    let node = IngestNode::start(&broker.brokers(), topic, &[("limits.max_request_bytes", "65536")]).await;
    let mut client = TraceServiceClient::connect(format!("http://{}", node.grpc))
        .await
        .unwrap();

    // Malformed protobuf.
    let resp = post(&node, "application/x-protobuf", None, vec![0x0a, 0xff, 0xff, 0x01]).await;
    assert_eq!(resp.status(), 400);
    let status = resp.bytes().await.unwrap();
    let msg = String::from_utf8_lossy(&status);
    assert!(msg.contains("malformed ExportTraceServiceRequest"), "{msg}");
    // Malformed JSON, and JSON with a bad hex trace ID.
    let resp = post(&node, "application/json", None, b"{\"resourceSpans\": [".to_vec()).await;
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], 3);
    assert!(
        body["message"].as_str().unwrap().contains("invalid OTLP/JSON"),
        "{body}"
    );
    let resp = post(
        &node,
        "application/json",
        None,
        br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz","spanId":"0102030405060708"}]}]}]}"#.to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 400);
    // Wrong content type and encoding.
    assert_eq!(post(&node, "text/plain", None, b"hello".to_vec()).await.status(), 415);
    assert_eq!(
        post(&node, "application/x-protobuf", Some("br"), b"hello".to_vec())
            .await
            .status(),
        415
    );
    // Gzip header on a body that is not gzip.
    assert_eq!(
        post(&node, "application/x-protobuf", Some("gzip"), b"hello".to_vec())
            .await
            .status(),
        400
    );
    // Too large, raw and after decompression (a small gzip bomb).
    let big = request(&[trace_id()], &"x".repeat(70_000));
    assert_eq!(
        post(&node, "application/x-protobuf", None, big.encode_to_vec())
            .await
            .status(),
        413
    );
    let bomb = gzip(&vec![0u8; 1 << 20]);
    assert!(bomb.len() < 65536);
    assert_eq!(
        post(&node, "application/x-protobuf", Some("gzip"), bomb).await.status(),
        413
    );
    let err = client.export(big.clone()).await.unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);
    assert_ne!(err.code(), tonic::Code::Unavailable, "too large is not retryable");

    // Only bad spans: 400 / INVALID_ARGUMENT naming the problem.
    let t = trace_id();
    let mut bad = request(&[t.clone()], "bad");
    for rs in &mut bad.resource_spans {
        for ss in &mut rs.scope_spans {
            for s in &mut ss.spans {
                s.trace_id = vec![0; 16];
            }
        }
    }
    let err = client.export(bad.clone()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("trace_id must not be all zero"),
        "{}",
        err.message()
    );
    assert_eq!(
        post(&node, "application/x-protobuf", None, bad.encode_to_vec())
            .await
            .status(),
        400
    );

    // Some bad spans: the rest is accepted and the bad ones reported.
    let good_trace = trace_id();
    let mut mixed = request(&[good_trace.clone()], "mixed");
    mixed.resource_spans[0].scope_spans[0].spans[0].span_id = vec![1, 2, 3]; // not 8 bytes
    mixed.resource_spans[1].scope_spans[0].spans[0].trace_id = vec![7; 15]; // not 16 bytes
    let resp = client.export(mixed.clone()).await.unwrap().into_inner();
    let ps = resp.partial_success.expect("partial success");
    assert_eq!(ps.rejected_spans, 2);
    assert!(
        ps.error_message.contains("span_id must be exactly 8 bytes"),
        "{}",
        ps.error_message
    );
    assert!(
        ps.error_message.contains("trace_id must be exactly 16 bytes"),
        "{}",
        ps.error_message
    );
    let resp = post(&node, "application/json", None, serde_json::to_vec(&mixed).unwrap()).await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["partialSuccess"]["rejectedSpans"], 2, "{body}");

    // A good request after all that still works, and only good spans reached Kafka.
    let fine = request(&[trace_id()], "fine");
    assert!(client
        .export(fine)
        .await
        .unwrap()
        .into_inner()
        .partial_success
        .is_none());
    let records = read_topic(&broker.brokers(), topic, 3, Duration::from_secs(20));
    assert_eq!(records.len(), 3, "mixed (gRPC) + mixed (JSON) + fine");
    let spans = spans_by_trace(&records);
    assert_eq!(
        spans[&hex::encode(&good_trace)].len(),
        2 * 1,
        "the one good span of `mixed`, sent twice"
    );

    let m = node.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "tailsift_ingest_spans_rejected_total",
            &["reason=\"trace_id_zero\""]
        ),
        6.0
    );
    assert!(metric_value(&m, "tailsift_ingest_requests_total", &["outcome=\"too_large\""]) >= 2.0);
    assert!(metric_value(&m, "tailsift_ingest_requests_total", &["outcome=\"unsupported\""]) >= 2.0);
    node.stop().await;
}

/// Sends one single-trace request over gRPC; returns the trace ID (hex) if acknowledged.
async fn send_one(client: &mut TraceServiceClient<tonic::transport::Channel>) -> Result<String, tonic::Status> {
    let t = trace_id();
    client.export(request(&[t.clone()], "outage")).await?;
    Ok(hex::encode(t))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_gives_retryable_errors_and_loses_nothing_acknowledged() {
    let mut broker = Broker::start(Storage::Durable);
    let topic = "spans-outage";
    // tansu 0.6's sqlite engine panics in its idempotent-producer check when a producer whose
    // records timed out reconnects after a broker restart (its storage task dies). Real Kafka
    // handles that; here the outage test runs the producer non-idempotent. Idempotence itself is
    // exercised by the other tests (it is the default).
    let node = IngestNode::start(
        &broker.brokers(),
        topic,
        &[("kafka.delivery_timeout", "3s"), ("kafka.idempotence", "false")],
    )
    .await;
    let mut client = TraceServiceClient::connect(format!("http://{}", node.grpc))
        .await
        .unwrap();
    let mut acked = Vec::new();
    for _ in 0..5 {
        acked.push(send_one(&mut client).await.expect("broker up: accepted"));
    }

    broker.stop();
    // While the broker is down every request ends in a retryable error, never an ack.
    let mut unavailable_grpc = 0;
    let mut http_503 = 0;
    for i in 0..40 {
        match send_one(&mut client).await {
            Ok(id) => acked.push(id), // accepted before the probe noticed: must be in Kafka
            Err(s) => {
                assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}");
                unavailable_grpc += 1;
            }
        }
        let resp = post(
            &node,
            "application/x-protobuf",
            None,
            request(&[trace_id()], "h").encode_to_vec(),
        )
        .await;
        if resp.status() == 503 {
            assert!(resp.headers().contains_key("retry-after"));
            http_503 += 1;
        } else {
            assert_eq!(resp.status(), 200, "only 200 or 503 while the broker is down");
        }
        if unavailable_grpc >= 3 && http_503 >= 3 && i > 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        unavailable_grpc >= 3 && http_503 >= 3,
        "grpc {unavailable_grpc}, http {http_503}"
    );
    let ready = reqwest::get(format!("http://{}/readyz", node.admin)).await.unwrap();
    assert_eq!(ready.status(), 503, "not ready while Kafka is down");

    broker.restart();
    node.wait_ready(Duration::from_secs(60)).await;
    // Recovery: requests are accepted again.
    let mut recovered = false;
    for _ in 0..100 {
        match send_one(&mut client).await {
            Ok(id) => {
                acked.push(id);
                recovered = true;
                break;
            }
            Err(e) => eprintln!("after restart: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "ingest recovers when the broker returns");

    // Everything acknowledged is in Kafka.
    let records = read_topic(&broker.brokers(), topic, usize::MAX, Duration::from_secs(10));
    let stored = spans_by_trace(&records);
    for id in &acked {
        assert!(stored.contains_key(id), "acknowledged trace {id} missing from Kafka");
    }
    let m = node.metrics().await;
    assert!(metric_value(&m, "tailsift_ingest_produce_errors_total", &[]) >= 3.0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_producer_queue_answers_retryable_errors() {
    let broker = Broker::start(Storage::Memory);
    let topic = "spans-queue-full";
    // A one-message queue that lingers: the second record of a request cannot be queued.
    let node = IngestNode::start(
        &broker.brokers(),
        topic,
        &[("kafka.queue_max_messages", "1"), ("kafka.linger", "2s")],
    )
    .await;
    let mut client = TraceServiceClient::connect(format!("http://{}", node.grpc))
        .await
        .unwrap();
    let err = client
        .export(request(&[trace_id(), trace_id(), trace_id()], "full"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(err.message().contains("queue is full"), "{}", err.message());
    let resp = post(
        &node,
        "application/x-protobuf",
        None,
        request(&[trace_id(), trace_id()], "full").encode_to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let m = node.metrics().await;
    assert!(metric_value(&m, "tailsift_ingest_produce_errors_total", &["kind=\"queue_full\""]) >= 2.0);
    // A single-trace request fits and is acknowledged once Kafka has it.
    client.export(request(&[trace_id()], "fits")).await.unwrap();
    node.stop().await;
}

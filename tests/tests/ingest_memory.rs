//! Ingest memory stays bounded under a flood of maximum-size requests: 64 concurrent 16 MiB
//! OTLP/HTTP requests and 4 over gRPC against one node with a 64 MiB in-flight budget. The node
//! runs in this process (alone in this test binary), so its memory is this process's RSS.

use std::collections::HashSet;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tailsift_tests::{read_topic, Broker, IngestNode, Storage};

const MIB: usize = 1 << 20;

/// `VmRSS` or `VmHWM` of this process, in bytes.
fn proc_status(field: &str) -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 1024
}

/// A request just under 16 MiB: 8 traces of 30 spans with a 64 KiB attribute each.
fn max_size_request(traces: &[[u8; 16]]) -> ExportTraceServiceRequest {
    let mut spans = Vec::new();
    let mut n = 0u64;
    for t in traces {
        for _ in 0..30 {
            n += 1;
            spans.push(Span {
                trace_id: t.to_vec(),
                span_id: n.to_be_bytes().to_vec(),
                name: "flood".into(),
                start_time_unix_nano: 1,
                end_time_unix_nano: 2,
                attributes: vec![KeyValue {
                    key: "blob".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("b".repeat(64 * 1024))),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource::default()),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_maximum_size_requests_keeps_memory_within_the_budget() {
    let broker = Broker::start(Storage::Memory);
    let topic = "memory-flood";
    let budget = 64 * MIB;
    let node = IngestNode::start(
        &broker.brokers(),
        topic,
        &[
            ("limits.max_in_flight_bytes", "67108864"),
            ("limits.read_timeout", "60s"),
        ],
    )
    .await;
    let traces: Vec<[u8; 16]> = (0..8u8)
        .map(|i| {
            let mut t: [u8; 16] = rand::random();
            t[0] = i | 0x10;
            t
        })
        .collect();
    let req = max_size_request(&traces);
    let body = bytes::Bytes::from(req.encode_to_vec());
    assert!(body.len() > 15 * MIB && body.len() < 16 * MIB, "{}", body.len());
    const HTTP: usize = 64;
    const GRPC: usize = 4;

    let rss_before = proc_status("VmRSS:");
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..HTTP {
        let (client, body, url) = (client.clone(), body.clone(), format!("http://{}/v1/traces", node.http));
        tasks.spawn(async move {
            let r = client
                .post(url)
                .header("content-type", "application/x-protobuf")
                .body(body)
                .send()
                .await;
            match r {
                Ok(r) => {
                    let retry_after = r.headers().get("retry-after").is_some();
                    (format!("http {}", r.status().as_u16()), retry_after)
                }
                Err(e) => (format!("http error {e}"), false),
            }
        });
    }
    for _ in 0..GRPC {
        let (req, addr) = (req.clone(), node.grpc);
        tasks.spawn(async move {
            let mut c = TraceServiceClient::connect(format!("http://{addr}"))
                .await
                .unwrap()
                .max_encoding_message_size(32 * MIB);
            match c.export(req).await {
                Ok(_) => ("grpc OK".to_string(), false),
                Err(s) => (format!("grpc {:?}", s.code()), false),
            }
        });
    }
    drop(req);
    let mut outcomes: std::collections::BTreeMap<String, usize> = Default::default();
    let mut rejected_without_retry_after = 0;
    while let Some(r) = tasks.join_next().await {
        let (what, retry_after) = r.unwrap();
        if what == "http 503" && !retry_after {
            rejected_without_retry_after += 1;
        }
        *outcomes.entry(what).or_default() += 1;
    }
    let peak = proc_status("VmHWM:");
    let growth = peak.saturating_sub(rss_before);
    eprintln!(
        "outcomes {outcomes:?}; RSS before {} MiB, peak {} MiB, growth {} MiB",
        rss_before / MIB,
        peak / MIB,
        growth / MIB
    );

    // Everything was answered, retryably when refused.
    let get = |k: &str| outcomes.get(k).copied().unwrap_or(0);
    let (ok_http, busy_http) = (get("http 200"), get("http 503"));
    let (ok_grpc, busy_grpc) = (get("grpc OK"), get("grpc Unavailable"));
    assert_eq!(ok_http + busy_http, HTTP, "{outcomes:?}");
    assert_eq!(ok_grpc + busy_grpc, GRPC, "{outcomes:?}");
    assert!(ok_http + ok_grpc >= 1, "nothing admitted: {outcomes:?}");
    assert!(busy_http >= 1, "nothing refused: {outcomes:?}");
    assert_eq!(rejected_without_retry_after, 0, "503 without Retry-After");

    // The bound: the budget (bodies and records), librdkafka's copies of the records (at most the
    // budget), the test's own buffers (one shared HTTP body, a clone and an encoding per gRPC
    // call) and a fixed allowance. Unbounded, the HTTP bodies alone would take 64 x 16 MiB.
    let bound = 2 * budget + 16 * MIB + GRPC * 32 * MIB + 128 * MIB;
    assert!(
        growth < bound,
        "RSS grew {} MiB, over the bound of {} MiB",
        growth / MIB,
        bound / MIB
    );
    assert!(bound < HTTP * 16 * MIB / 2);

    // The admitted requests were written: every trace of the request is in the topic.
    let records = read_topic(
        &broker.brokers(),
        topic,
        24 * (ok_http + ok_grpc),
        Duration::from_secs(30),
    );
    let keys: HashSet<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.key).into_owned())
        .collect();
    for t in &traces {
        assert!(keys.contains(&hex::encode(t)), "trace {} not written", hex::encode(t));
    }
    node.stop().await;
}

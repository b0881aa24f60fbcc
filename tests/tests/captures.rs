//! Retroactive capture on the real broker: loadgen -> ingest -> Kafka; a sampler under an
//! errors-only policy keeps the error traces; then a capture of every trace of service
//! `checkout` from the last minutes recovers the checkout traces the policy dropped, complete,
//! without exporting the kept ones twice; it survives the worker being replaced before it ran;
//! a second identical capture exports nothing (the decisions topic says all were kept).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::{json, Value};
use tailsift_loadtest::{RunOptions, TraceRecord};
use tailsift_tests::{
    partition_count, sampler_sets, workspace_bin, Broker, CoordinatorCluster, IngestNode, SamplerNode, Sink, Storage,
    ADMIN_TOKEN, READ_TOKEN,
};

const ERRORS_ONLY: &str = "policies:\n  - name: errors\n    status_code: { codes: [ERROR] }\n";
const CHECKOUT: &str = r#"resource.attributes["service.name"] == "checkout""#;

fn sampler(brokers: &str, topic: &str, sink: &str, endpoint: &str, id: &str, state: &Path) -> Vec<(String, String)> {
    let mut sets = sampler_sets(brokers, topic, "cap", sink);
    sets.push(("coordinator.worker_id".into(), id.into()));
    sets.push(("coordinator.endpoints".into(), format!("[{endpoint}]")));
    sets.push(("coordinator.state_file".into(), state.display().to_string()));
    sets.push(("coordinator.retry_interval".into(), "200ms".into()));
    sets.push(("coordinator.connect_timeout".into(), "500ms".into()));
    sets.push(("coordinator.token".into(), READ_TOKEN.into()));
    sets
}

/// The traces in the spans topic with a span of service `checkout`.
fn checkout_traces(brokers: &str, topic: &str) -> HashSet<[u8; 16]> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let records: i64 = (0..partition_count(brokers, topic) as i32)
        .map(|p| {
            let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap();
            high - low
        })
        .sum();
    let mut out = HashSet::new();
    // On until quiet: tansu 0.6 can report a high watermark below its last record (a capture once
    // matched a checkout trace this count had missed).
    let read = tailsift_tests::read_topic_until_quiet(
        brokers,
        topic,
        records as usize,
        Duration::from_secs(2),
        Duration::from_secs(30),
    );
    assert!(read.len() as i64 >= records, "the whole spans topic read");
    for r in read {
        let req = ExportTraceServiceRequest::decode(r.payload.as_slice()).expect("spans topic record");
        for rs in &req.resource_spans {
            let checkout = rs.resource.iter().flat_map(|r| r.attributes.iter()).any(|kv| {
                kv.key == "service.name"
                    && matches!(kv.value.as_ref().and_then(|v| v.value.as_ref()), Some(AnyValue::StringValue(s)) if s == "checkout")
            });
            if checkout {
                for span in rs.scope_spans.iter().flat_map(|s| s.spans.iter()) {
                    out.insert(<[u8; 16]>::try_from(span.trace_id.as_slice()).unwrap());
                }
            }
        }
    }
    out
}

/// The `tailsift.sampling.policy` stamp of a trace in the sink.
fn stamp(spans: &HashMap<Vec<u8>, opentelemetry_proto::tonic::trace::v1::Span>) -> String {
    spans
        .values()
        .flat_map(|s| s.attributes.iter())
        .find(|kv| kv.key == "tailsift.sampling.policy")
        .and_then(|kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(AnyValue::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
        .expect("kept spans are stamped")
}

async fn wait_capture(cluster: &CoordinatorCluster, id: u64, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (st, c) = cluster
            .request(0, "GET", &format!("/v1/captures/{id}"), Some(READ_TOKEN), None)
            .await;
        assert_eq!(st, 200, "{c}");
        if c["state"] != "running" {
            return c;
        }
        assert!(Instant::now() < deadline, "capture {id} still running: {c}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_recovers_dropped_traces_complete_once_and_survives_a_worker_restart() {
    let broker = Broker::start(Storage::Memory);
    let brokers = broker.brokers();
    let topic = "cap-spans";
    let ingest = IngestNode::start(&brokers, topic, &[]).await;
    let cluster = CoordinatorCluster::start(1).await;
    cluster.wait_for_leader(&[0]).await;
    cluster.put_policy(0, ERRORS_ONLY).await;
    // Workers read a capture's window once the decision wait after it has passed.
    let (st, b) = cluster
        .request(
            0,
            "PUT",
            "/v1/settings",
            Some(ADMIN_TOKEN),
            Some(json!({"settings": {"history_limit": 20, "sampler": {"decision_wait_ms": 4000}}})),
        )
        .await;
    assert_eq!(st, 200, "{b}");

    let mut opts = RunOptions {
        endpoint: Some(format!("http://{}", ingest.grpc)),
        rate: 3000.0,
        duration: None,
        total_spans: Some(2500),
        concurrency: 4,
        seed: 11,
        progress: false,
        record_traces: true,
        ..Default::default()
    };
    opts.shape.error_rate = 0.15;
    opts.shape.max_spans = 20;
    let summary = tailsift_loadtest::run(opts).await.expect("load generator");
    assert_eq!(summary.spans_failed, 0, "{summary}");
    let traces: HashMap<[u8; 16], TraceRecord> = summary.trace_records.into_iter().map(|t| (t.trace_id, t)).collect();
    let errors: HashSet<[u8; 16]> = traces.values().filter(|t| t.is_error).map(|t| t.trace_id).collect();
    let checkout = checkout_traces(&brokers, topic);
    let dropped_checkout: HashSet<_> = checkout.difference(&errors).copied().collect();
    assert!(
        dropped_checkout.len() >= 10 && checkout.intersection(&errors).count() >= 2,
        "the load has checkout traces with and without errors: {} / {}",
        dropped_checkout.len(),
        checkout.len()
    );

    // The live sampler keeps the error traces.
    let dir = tempfile::tempdir().unwrap();
    let (sink, endpoint) = Sink::start().await;
    let grpc = cluster.grpc_url(0);
    let a = SamplerNode::start(sampler(
        &brokers,
        topic,
        &endpoint,
        &grpc,
        "w-a",
        &dir.path().join("a.json"),
    ))
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.traces().len() < errors.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sink.wait_quiet(Duration::from_secs(1), Duration::from_secs(20)).await;
    let live: HashSet<[u8; 16]> = sink.traces().keys().copied().collect();
    assert_eq!(live, errors, "the live policy kept exactly the error traces");

    // Invalid requests are refused with the reason; a read-only token cannot start one.
    for (body, want) in [
        (json!({"match": "resource.attributes[", "since": "10m"}), "match"),
        (json!({"match": CHECKOUT}), "since"),
        (json!({"match": CHECKOUT, "since": "10 parsecs"}), "since"),
        (json!({"since": "10m"}), "match"),
        (json!({"match": CHECKOUT, "since": "10m", "colour": 1}), "colour"),
    ] {
        let (st, e) = cluster
            .request(0, "POST", "/v1/captures", Some(ADMIN_TOKEN), Some(body.clone()))
            .await;
        assert_eq!(st, 400, "{body} -> {e}");
        assert!(e.to_string().contains(want), "{body} -> {e}");
    }
    let body = json!({"match": CHECKOUT, "since": "10m", "description": "incident 42"});
    let (st, _) = cluster
        .request(0, "POST", "/v1/captures", Some(READ_TOKEN), Some(body.clone()))
        .await;
    assert_eq!(st, 403);

    // The capture starts; the worker is replaced before it ran (it waits for the decision wait).
    let (st, started) = cluster
        .request(0, "POST", "/v1/captures", Some(ADMIN_TOKEN), Some(body))
        .await;
    assert_eq!(st, 200, "{started}");
    let id = started["id"].as_u64().unwrap();
    a.stop().await;
    let b = SamplerNode::start(sampler(
        &brokers,
        topic,
        &endpoint,
        &grpc,
        "w-b",
        &dir.path().join("b.json"),
    ))
    .await;
    let done = wait_capture(&cluster, id, Duration::from_secs(120)).await;
    eprintln!("{done}");
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["description"], "incident 42");
    let total = &done["total"];
    assert_eq!(total["partitions_failed"], 0, "{done}");
    assert_eq!(total["traces_matched"].as_u64(), Some(checkout.len() as u64), "{done}");
    assert_eq!(
        total["traces_already_kept"].as_u64(),
        Some((checkout.len() - dropped_checkout.len()) as u64),
        "{done}"
    );
    assert_eq!(
        total["traces_exported"].as_u64(),
        Some(dropped_checkout.len() as u64),
        "{done}"
    );
    assert!(
        done["done"]
            .as_object()
            .unwrap()
            .values()
            .all(|p| p["worker_id"] == "w-b"),
        "{done}"
    );

    // The sink now has every dropped checkout trace, complete, stamped by the capture; nothing twice.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.traces().len() < errors.len() + dropped_checkout.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sink.wait_quiet(Duration::from_secs(1), Duration::from_secs(20)).await;
    let got = sink.traces();
    for t in &dropped_checkout {
        let spans = got
            .get(t)
            .unwrap_or_else(|| panic!("captured trace {} missing", hex::encode(t)));
        assert_eq!(spans.len(), traces[t].spans, "trace {} complete", hex::encode(t));
        assert_eq!(stamp(spans), format!("capture:{id}"));
    }
    for t in &errors {
        assert_eq!(stamp(&got[t]), "errors", "kept traces are not exported again");
    }
    assert_eq!(got.len(), errors.len() + dropped_checkout.len());
    assert_eq!(sink.duplicates(), 0, "{:?}", sink.duplicate_ids());

    // A capture cancelled before it ran exports nothing and stays cancelled.
    let (st, c) = cluster
        .request(
            0,
            "POST",
            "/v1/captures",
            Some(ADMIN_TOKEN),
            Some(json!({"match": "true", "since": "10m"})),
        )
        .await;
    assert_eq!(st, 200, "{c}");
    let cancelled = c["id"].as_u64().unwrap();
    let (st, c) = cluster
        .request(
            0,
            "DELETE",
            &format!("/v1/captures/{cancelled}"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!((st, c["state"].as_str()), (200, Some("cancelled")), "{c}");

    // The same capture again: everything it matches is already kept (the decisions topic).
    let (st, again) = cluster
        .request(
            0,
            "POST",
            "/v1/captures",
            Some(ADMIN_TOKEN),
            Some(json!({"match": CHECKOUT, "since": "10m"})),
        )
        .await;
    assert_eq!(st, 200, "{again}");
    let again = wait_capture(&cluster, again["id"].as_u64().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(again["state"], "completed", "{again}");
    assert_eq!(again["total"]["traces_exported"], 0, "{again}");
    assert_eq!(
        again["total"]["traces_already_kept"].as_u64(),
        Some(checkout.len() as u64),
        "{again}"
    );
    sink.wait_quiet(Duration::from_secs(1), Duration::from_secs(20)).await;
    assert_eq!(sink.duplicates(), 0);
    assert_eq!(
        sink.traces().len(),
        errors.len() + dropped_checkout.len(),
        "the cancelled capture exported nothing"
    );
    let (_, c) = cluster
        .request(0, "GET", &format!("/v1/captures/{cancelled}"), Some(READ_TOKEN), None)
        .await;
    assert_eq!(
        (c["state"].as_str(), c["done"].as_object().map(|d| d.len())),
        (Some("cancelled"), Some(0)),
        "{c}"
    );

    // The command line: list, status, and an unknown id.
    let cli = |args: &[&str]| {
        std::process::Command::new(workspace_bin("tailsift"))
            .args(["capture", "--admin", &cluster.admin_url(0), "--token", READ_TOKEN])
            .args(args)
            .output()
            .expect("tailsift capture")
    };
    let out = cli(&["status", &id.to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (status["id"].as_u64(), status["state"].as_str()),
        (Some(id), Some("completed"))
    );
    let out = cli(&["list"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["captures"].as_array().map(Vec::len), Some(3), "{list}");
    let out = cli(&["status", "999"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("capture 999"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // What-if on the workers (POST /v1/policy/whatif): the candidate beside the live policy over
    // the same window, summed over the partitions; the same counts as a replay from here.
    let candidate = format!(
        "policies:\n  - name: errors\n    status_code: {{ codes: [ERROR] }}\n  - name: checkout\n    ottl_condition: {{ span: ['{CHECKOUT}'] }}\n"
    );
    let (st, w) = cluster
        .request(
            0,
            "POST",
            "/v1/policy/whatif",
            Some(ADMIN_TOKEN),
            Some(json!({"document": candidate, "since": "10m"})),
        )
        .await;
    assert_eq!(st, 200, "{w}");
    let wid = w["id"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let report = loop {
        let (st, r) = cluster
            .request(0, "GET", &format!("/v1/policy/whatif/{wid}"), Some(READ_TOKEN), None)
            .await;
        assert_eq!(st, 200, "{r}");
        if r["state"] != "running" {
            break r;
        }
        assert!(Instant::now() < deadline, "what-if still running: {r}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    eprintln!("{report}");
    assert_eq!(report["state"], "completed", "{report}");
    let r = &report["report"];
    assert_eq!(r["complete"], true, "{report}");
    assert_eq!(r["total"]["traces"].as_u64(), Some(traces.len() as u64), "{report}");
    assert_eq!(r["live"]["kept"]["traces"].as_u64(), Some(errors.len() as u64));
    assert_eq!(
        r["candidate"]["kept"]["traces"].as_u64(),
        Some(errors.union(&checkout).count() as u64)
    );
    assert_eq!(
        r["candidate_only"]["traces"].as_u64(),
        Some(dropped_checkout.len() as u64)
    );
    let local = {
        use tailsift_sampler::whatif::{self, KafkaWindow, Limits, Replay};
        let compile = |y: &str| {
            tailsift_policy::PolicyEngine::compile(&tailsift_policy::PolicyDocument::from_yaml(y).unwrap()).unwrap()
        };
        let mut window = KafkaWindow::new(
            whatif::Connection {
                brokers: brokers.clone(),
                client_id: "cap-test".into(),
                properties: Default::default(),
            },
            topic,
            report["since_unix_ms"].as_i64().unwrap(),
        );
        window.until_unix_ms = report["until_unix_ms"].as_i64();
        window.lookback_records = 10_000;
        window.quiet = Duration::from_secs(1);
        let replay = Replay::new(
            compile(&candidate),
            compile(ERRORS_ONLY),
            report["seed"].as_u64().unwrap(),
            Limits::default(),
        );
        tokio::task::spawn_blocking(move || whatif::replay_kafka(&window, replay))
            .await
            .unwrap()
            .unwrap()
    };
    let local = serde_json::to_value(&local).unwrap();
    for key in [
        "total",
        "candidate",
        "live",
        "both_kept",
        "candidate_only",
        "live_only",
        "difference",
        "difference_by_rule",
    ] {
        assert_eq!(r[key], local[key], "{key}: workers vs a replay from here");
    }
    // The command line, on the workers.
    let file = dir.path().join("candidate.yaml");
    std::fs::write(&file, &candidate).unwrap();
    let out = std::process::Command::new(workspace_bin("tailsift"))
        .args([
            "policy",
            "--admin",
            &cluster.admin_url(0),
            "--token",
            ADMIN_TOKEN,
            "whatif",
        ])
        .arg(&file)
        .args(["--since", "10m", "--on-workers"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["report"]["candidate"]["kept"], r["candidate"]["kept"], "{cli}");

    b.stop().await;
    ingest.stop().await;
}

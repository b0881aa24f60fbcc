//! What-if replay on the real broker: loadgen -> ingest -> Kafka; a sampler with the live policy
//! exports to a sink; `whatif` over the same window must predict exactly what the sampler kept,
//! per rule, and what a fresh sampler running the candidate policy (same seed) keeps.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tailsift_loadtest::{RunOptions, TraceRecord};
use tailsift_sampler::whatif::{self, Counts, KafkaWindow, Limits, Replay, Report};
use tailsift_tests::{
    sampler_sets, workspace_bin, Broker, CoordinatorCluster, IngestNode, SamplerNode, Sink, Storage, READ_TOKEN,
};

const SEED: u64 = 4242;

const LIVE: &str = r#"
policies:
  - name: errors
    status_code: { codes: [ERROR] }
  - name: slow
    latency: { threshold_ms: 1000 }
  - name: baseline
    probabilistic: { percentage: 10 }
"#;

const CANDIDATE: &str = r#"
policies:
  - name: errors
    status_code: { codes: [ERROR] }
  - name: half
    probabilistic: { percentage: 50 }
"#;

fn engine(yaml: &str) -> tailsift_policy::PolicyEngine {
    tailsift_policy::PolicyEngine::compile(&tailsift_policy::PolicyDocument::from_yaml(yaml).unwrap()).unwrap()
}

async fn load(grpc: std::net::SocketAddr) -> Vec<TraceRecord> {
    let mut opts = RunOptions {
        endpoint: Some(format!("http://{grpc}")),
        rate: 3000.0,
        duration: None,
        total_spans: Some(3000),
        concurrency: 4,
        seed: 5,
        progress: false,
        record_traces: true,
        ..Default::default()
    };
    opts.shape.error_rate = 0.10;
    opts.shape.slow_rate = 0.08;
    opts.shape.max_spans = 20;
    let summary = tailsift_loadtest::run(opts).await.expect("load generator");
    assert_eq!(summary.spans_failed, 0, "{summary}");
    summary.trace_records
}

async fn run_whatif(brokers: &str, topic: &str, candidate: &str, since_ms: i64) -> Report {
    run_whatif_with(brokers, topic, candidate, (since_ms, None), Limits::default()).await
}

async fn run_whatif_with(
    brokers: &str,
    topic: &str,
    candidate: &str,
    (since_ms, until_ms): (i64, Option<i64>),
    limits: Limits,
) -> Report {
    let window = KafkaWindow {
        connection: whatif::Connection {
            brokers: brokers.to_string(),
            client_id: "whatif-test".into(),
            properties: Default::default(),
        },
        topic: topic.to_string(),
        since_unix_ms: since_ms,
        until_unix_ms: until_ms,
        lookback_records: 10_000,
        quiet: Duration::from_secs(1),
        timeout: Duration::from_secs(30),
        partitions: None,
        stop: None,
    };
    let replay = Replay::new(engine(candidate), engine(LIVE), SEED, limits);
    tokio::task::spawn_blocking(move || whatif::replay_kafka(&window, replay))
        .await
        .unwrap()
        .expect("whatif")
}

/// What the sink received, per rule that kept (the `tailsift.sampling.policy` stamp): traces and
/// spans.
fn kept_by_rule(sink: &Sink) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for spans in sink.traces().values() {
        let rule = spans
            .values()
            .flat_map(|s| s.attributes.iter())
            .find(|kv| kv.key == "tailsift.sampling.policy")
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| match &v.value {
                Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .expect("kept spans are stamped");
        let e = out.entry(rule).or_default();
        e.0 += 1;
        e.1 += spans.len() as u64;
    }
    out
}

fn predicted(by_rule: &BTreeMap<String, Counts>) -> BTreeMap<String, (u64, u64)> {
    by_rule.iter().map(|(k, c)| (k.clone(), (c.traces, c.spans))).collect()
}

/// Waits until the sink holds what `want` predicts (bounded), then until it is quiet.
async fn wait_for(sink: &Sink, want: &BTreeMap<String, (u64, u64)>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let (traces, spans) = want.values().fold((0, 0), |a, v| (a.0 + v.0, a.1 + v.1));
    while Instant::now() < deadline {
        if sink.traces().len() as u64 >= traces && sink.span_count() as u64 >= spans {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sink.wait_quiet(Duration::from_millis(1500), Duration::from_secs(20))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatif_predicts_what_samplers_keep() {
    let started = Instant::now();
    let broker = Broker::start(Storage::Memory);
    let brokers = broker.brokers();
    let topic = "w-spans";
    let since_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 60_000;
    let ingest = IngestNode::start(&brokers, topic, &[]).await;
    let records = load(ingest.grpc).await;
    let total_spans: u64 = records.iter().map(|t| t.spans as u64).sum();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, doc: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, doc).unwrap();
        p.display().to_string()
    };
    let (live_file, candidate_file) = (write("live.yaml", LIVE), write("candidate.yaml", CANDIDATE));

    // The live sampler, on data already in the topic.
    let (sink, endpoint) = Sink::start().await;
    let mut sets = sampler_sets(&brokers, topic, "w-live", &endpoint);
    sets.push(("policy.file".into(), live_file.clone()));
    sets.push(("policy.hash_seed".into(), SEED.to_string()));
    let live_sampler = SamplerNode::start(sets).await;

    // Candidate == live: the prediction is what the live sampler exports, rule by rule.
    let same = run_whatif(&brokers, topic, LIVE, since_ms).await;
    eprintln!("{}", serde_json::to_string(&same).unwrap());
    assert!(same.complete);
    assert_eq!(same.malformed_records, 0);
    assert_eq!(same.decided_early, 0);
    assert_eq!(
        same.total.traces,
        records.len() as u64,
        "every trace of the window read"
    );
    assert_eq!(same.total.spans, total_spans);
    assert_eq!(same.candidate, same.live);
    assert_eq!(same.candidate_only, Counts::default());
    assert_eq!(same.live_only, Counts::default());
    assert_eq!(
        same.partitions.iter().map(|p| p.records).sum::<u64>(),
        same.records_read
    );
    for p in &same.partitions {
        assert!(p.end_offset > 0 && p.read_through >= p.end_offset, "{p:?}");
    }
    let want_live = predicted(&same.live.kept_by_rule);
    for rule in ["errors", "slow", "baseline"] {
        assert!(
            want_live.get(rule).is_some_and(|c| c.0 > 0),
            "the load exercises {rule}: {want_live:?}"
        );
    }
    wait_for(&sink, &want_live, Duration::from_secs(30)).await;
    assert_eq!(
        kept_by_rule(&sink),
        want_live,
        "live sampler exported exactly the prediction"
    );
    live_sampler.stop().await;

    // A window that ends before the load: nothing in it.
    let before = run_whatif_with(
        &brokers,
        topic,
        LIVE,
        (since_ms - 60_000, Some(since_ms)),
        Limits::default(),
    )
    .await;
    assert_eq!(
        (before.records_read, before.total),
        (0, Counts::default()),
        "{before:?}"
    );
    // Bounded memory: traces decided early, none lost or counted twice.
    let limits = Limits {
        max_traces: 10,
        ..Limits::default()
    };
    let bounded = run_whatif_with(&brokers, topic, LIVE, (since_ms, None), limits).await;
    assert!(bounded.decided_early > 0);
    assert_eq!(bounded.total.traces, same.total.traces);
    assert_eq!(bounded.total.spans, same.total.spans);

    // A different candidate: prediction = what a fresh sampler with it keeps on the same data.
    let diff = run_whatif(&brokers, topic, CANDIDATE, since_ms).await;
    eprintln!("{}", serde_json::to_string(&diff).unwrap());
    assert_eq!(diff.live, same.live, "the live side does not depend on the candidate");
    assert_eq!(diff.total, same.total);
    let want_candidate = predicted(&diff.candidate.kept_by_rule);
    assert!(want_candidate.get("half").is_some_and(|c| c.0 > 0));
    assert_eq!(
        diff.candidate.kept.traces,
        diff.both_kept.traces + diff.candidate_only.traces
    );
    assert_eq!(diff.live.kept.traces, diff.both_kept.traces + diff.live_only.traces);
    assert_eq!(
        diff.difference.traces,
        diff.candidate.kept.traces as i64 - diff.live.kept.traces as i64
    );
    assert_eq!(
        diff.difference_by_rule["slow"].traces,
        -(same.live.kept_by_rule["slow"].traces as i64)
    );
    let (sink2, endpoint2) = Sink::start().await;
    let mut sets = sampler_sets(&brokers, topic, "w-candidate", &endpoint2);
    for (k, v) in sets.iter_mut() {
        if k == "kafka.decisions_topic" {
            *v = format!("{topic}-decisions-candidate");
        }
    }
    sets.push(("policy.file".into(), candidate_file.clone()));
    sets.push(("policy.hash_seed".into(), SEED.to_string()));
    let candidate_sampler = SamplerNode::start(sets).await;
    wait_for(&sink2, &want_candidate, Duration::from_secs(30)).await;
    assert_eq!(
        kept_by_rule(&sink2),
        want_candidate,
        "candidate sampler kept exactly the prediction"
    );
    candidate_sampler.stop().await;

    // The command line prints the same report: with --live and --seed ...
    let cli = |extra: Vec<String>| {
        let mut args: Vec<String> = [
            "policy",
            "whatif",
            &candidate_file,
            "--kafka-brokers",
            &brokers,
            "--topic",
            topic,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(["--since".into(), format!("@{since_ms}")]);
        args.extend(["--resume-lookback-records", "10000", "--quiet", "1s"].map(String::from));
        args.extend(extra);
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(workspace_bin("tailsift"))
                .args(&args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON report")
        })
    };
    let v = cli(vec![
        "--live".into(),
        live_file.clone(),
        "--seed".into(),
        SEED.to_string(),
    ])
    .await
    .unwrap();
    assert_eq!(v["candidate"], serde_json::to_value(&diff.candidate).unwrap());
    assert_eq!(v["live"], serde_json::to_value(&diff.live).unwrap());
    assert_eq!(v["difference"], serde_json::to_value(diff.difference).unwrap());
    // ... and with the live policy and seed from a coordinator's admin API.
    let coordinators = CoordinatorCluster::start(1).await;
    coordinators.wait_for_leader(&[0]).await;
    coordinators.put_policy(0, LIVE).await;
    let (_, current) = coordinators
        .request(0, "GET", "/v1/policy", Some(READ_TOKEN), None)
        .await;
    let seed = current["seeds"]["current"]["seed"].as_u64().expect("seed");
    let v = cli(vec![
        "--admin".into(),
        coordinators.admin_url(0),
        "--token".into(),
        READ_TOKEN.into(),
    ])
    .await
    .unwrap();
    assert_eq!(v["seed"].as_u64(), Some(seed));
    for rule in ["errors", "slow"] {
        // Not probabilistic: the same whatever the seed.
        assert_eq!(
            v["live"]["kept_by_rule"][rule],
            serde_json::to_value(diff.live.kept_by_rule[rule]).unwrap()
        );
    }
    assert!(v["live"]["kept_by_rule"]["baseline"]["traces"].as_u64() > Some(0));
    assert_eq!(v["total"], serde_json::to_value(diff.total).unwrap());
    ingest.stop().await;
    eprintln!("took {:?}", started.elapsed());
}

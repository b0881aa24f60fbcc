//! Sampling workers end to end: loadgen -> ingest -> Kafka (real broker) -> samplers -> OTLP sink.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tailsift_loadtest::{RunOptions, TraceRecord};
use tailsift_tests::{
    free_port, metric_value, sampler_sets, workspace_bin, Broker, ChildGuard, IngestNode, SamplerNode, Sink, Storage,
};

const SEED: u64 = 0;
const BASELINE: f64 = 0.10;

async fn load(grpc: std::net::SocketAddr, total_spans: u64, rate: f64, seed: u64) -> Vec<TraceRecord> {
    let mut opts = RunOptions {
        endpoint: Some(format!("http://{grpc}")),
        rate,
        duration: None,
        total_spans: Some(total_spans),
        concurrency: 4,
        seed,
        progress: false,
        record_traces: true,
        ..Default::default()
    };
    opts.shape.error_rate = 0.10;
    opts.shape.slow_rate = 0.05;
    opts.shape.max_spans = 40;
    let summary = tailsift_loadtest::run(opts).await.expect("load generator");
    assert_eq!(summary.spans_failed, 0, "{summary}");
    summary.trace_records
}

/// Traces the default policy must keep: errors, slow (>= 1 s), and the consistent 10%.
fn expected(records: &[TraceRecord]) -> HashMap<[u8; 16], &TraceRecord> {
    records
        .iter()
        .filter(|t| {
            t.is_error || t.duration_ns >= 1_000_000_000 || tailsift_policy::consistent_keep(t.trace_id, SEED, BASELINE)
        })
        .map(|t| (t.trace_id, t))
        .collect()
}

/// Waits (bounded) until every expected trace is in the sink and complete, then verifies.
async fn wait_and_verify(sink: &Sink, records: &[TraceRecord], timeout: Duration) -> (usize, usize) {
    let want = expected(records);
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        let got = sink.traces();
        if want
            .iter()
            .all(|(id, t)| got.get(id).is_some_and(|s| s.len() >= t.spans))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Let stragglers (anything that should not be there) show up before judging.
    sink.wait_quiet(Duration::from_secs(2), Duration::from_secs(30)).await;
    verify(sink, records)
}

/// Every expected trace kept and complete, nothing else kept: no loss, no split.
/// One span of trace `[trace; 16]` with span ID `[span; 8]`.
fn one_span(trace: u8, span: u8, parent: Option<u8>, error: bool) -> ExportTraceServiceRequest {
    tailsift_tests::single_span_request([trace; 16], [span; 8], parent.map(|p| [p; 8]), error)
}

fn verify(sink: &Sink, records: &[TraceRecord]) -> (usize, usize) {
    let want = expected(records);
    let got = sink.traces();
    let mut missing = Vec::new();
    let mut incomplete = Vec::new();
    for (id, t) in &want {
        match got.get(id) {
            None => missing.push((hex::encode(id), t.is_error, t.is_slow)),
            Some(spans) if spans.len() != t.spans => incomplete.push((hex::encode(id), spans.len(), t.spans)),
            _ => {}
        }
    }
    for (id, _, _) in &incomplete {
        let spans = &got[&<[u8; 16]>::try_from(hex::decode(id).unwrap().as_slice()).unwrap()];
        let mut names: Vec<String> = spans
            .values()
            .map(|s| format!("{}:{}", hex::encode(&s.span_id), s.name))
            .collect();
        names.sort();
        eprintln!("incomplete {id}: {names:?}");
    }
    let unexpected: Vec<String> = got
        .keys()
        .filter(|id| !want.contains_key(*id))
        .map(hex::encode)
        .collect();
    assert!(
        missing.is_empty(),
        "{} kept traces lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        incomplete.is_empty(),
        "{} kept traces split: {:?}",
        incomplete.len(),
        &incomplete[..incomplete.len().min(5)]
    );
    assert!(
        unexpected.is_empty(),
        "{} traces kept that the policy drops: {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(5)]
    );
    let errors = records.iter().filter(|t| t.is_error).count();
    assert!(errors > 5, "the load has error traces");
    (want.len(), records.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_traces_kept_by_policy_and_stamped() {
    let broker = Broker::start(Storage::Memory);
    let topic = "s-policy";
    let ingest = IngestNode::start(&broker.brokers(), topic, &[]).await;
    let (sink, endpoint) = Sink::start().await;
    let sampler = SamplerNode::start(sampler_sets(&broker.brokers(), topic, "g-policy", &endpoint)).await;

    let records = load(ingest.grpc, 4000, 4000.0, 11).await;
    let (kept, total) = wait_and_verify(&sink, &records, Duration::from_secs(60)).await;
    eprintln!("kept {kept} of {total} traces");
    let normal = records
        .iter()
        .filter(|t| !t.is_error && t.duration_ns < 1_000_000_000)
        .count();
    let normal_kept = records
        .iter()
        .filter(|t| {
            !t.is_error && t.duration_ns < 1_000_000_000 && tailsift_policy::consistent_keep(t.trace_id, SEED, BASELINE)
        })
        .count();
    assert!(
        normal_kept > 0 && (normal_kept as f64) < normal as f64 * 0.3,
        "{normal_kept} of {normal}"
    );

    // Every kept span says why, under which version, and carries the OTel threshold.
    for spans in sink.traces().values() {
        for s in spans.values() {
            let policy = s
                .attributes
                .iter()
                .find(|a| a.key == "tailsift.sampling.policy")
                .expect("policy attribute");
            let adjusted = s
                .attributes
                .iter()
                .find(|a| a.key == "sampling.adjusted_count")
                .expect("adjusted count");
            assert!(s.trace_state.starts_with("ot=th:"), "{}", s.trace_state);
            let name = format!("{:?}", policy.value);
            if name.contains("baseline") {
                assert!(
                    s.trace_state.starts_with("ot=th:e"),
                    "10% threshold is 0xe666..: {}",
                    s.trace_state
                );
                assert!(format!("{:?}", adjusted.value).contains("10.0"));
            }
        }
    }
    let m = sampler.metrics().await;
    assert!(
        metric_value(
            &m,
            "tailsift_sampler_decisions_total",
            &["outcome=\"kept\"", "policy=\"errors\""]
        ) > 0.0
    );
    assert!(metric_value(&m, "tailsift_sampler_decisions_total", &["outcome=\"dropped\""]) > 0.0);
    assert!(metric_value(&m, "tailsift_sampler_spans_consumed_total", &[]) >= 4000.0);
    assert!(m.contains("tailsift_sampler_decision_latency_seconds_bucket"));
    sampler.stop().await;
    ingest.stop().await;
}

/// A broker, an ingest node, an OTLP sink and one sampler running `policy` (YAML), with an
/// OTLP/gRPC client of the ingest node; the tempdir holds the policy file.
struct Pipeline {
    _broker: Broker,
    _dir: tempfile::TempDir,
    ingest: IngestNode,
    sink: Sink,
    sampler: SamplerNode,
    client: TraceServiceClient<tonic::transport::Channel>,
}

async fn pipeline(topic: &str, group: &str, policy_yaml: &str) -> Pipeline {
    let broker = Broker::start(Storage::Memory);
    let ingest = IngestNode::start(&broker.brokers(), topic, &[]).await;
    let (sink, endpoint) = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, policy_yaml).unwrap();
    let mut sets = sampler_sets(&broker.brokers(), topic, group, &endpoint);
    sets.push(("policy.file".into(), policy.display().to_string()));
    let sampler = SamplerNode::start(sets).await;
    let client = TraceServiceClient::connect(format!("http://{}", ingest.grpc))
        .await
        .unwrap();
    Pipeline {
        _broker: broker,
        _dir: dir,
        ingest,
        sink,
        sampler,
        client,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_spans_follow_the_decision() {
    // `_broker` and `_dir` are bound (not `..`): they must live until the end of the test.
    let Pipeline {
        ingest,
        sink,
        sampler,
        mut client,
        _broker,
        _dir,
    } = pipeline(
        "s-late",
        "g-late",
        "policies:\n  - name: errors\n    status_code: { codes: [ERROR] }\n",
    )
    .await;

    client.export(one_span(0xa1, 1, None, true)).await.unwrap(); // kept (error)
    client.export(one_span(0xb2, 1, None, false)).await.unwrap(); // dropped
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sink.traces().get(&[0xa1; 16]).is_none() {
        assert!(std::time::Instant::now() < deadline, "kept trace never exported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Both decided (send_delay 500ms after the root). Now the late spans.
    tokio::time::sleep(Duration::from_secs(1)).await;
    client.export(one_span(0xa1, 2, Some(1), false)).await.unwrap();
    client.export(one_span(0xb2, 2, Some(1), false)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sink.traces()[&[0xa1; 16]].len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "late span of the kept trace never exported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        sink.traces().get(&[0xb2; 16]).is_none(),
        "late span of a dropped trace must not be exported"
    );
    let m = sampler.metrics().await;
    assert!(metric_value(&m, "tailsift_sampler_late_spans_total", &["outcome=\"kept\""]) >= 1.0);
    assert!(metric_value(&m, "tailsift_sampler_late_spans_total", &["outcome=\"dropped\""]) >= 1.0);
    sampler.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_outage_loses_nothing_and_shows_backpressure() {
    let broker = Broker::start(Storage::Memory);
    let topic = "s-sink-down";
    let ingest = IngestNode::start(&broker.brokers(), topic, &[]).await;
    let (sink, endpoint) = Sink::start().await;
    sink.set_down(true);
    let sampler = SamplerNode::start(sampler_sets(&broker.brokers(), topic, "g-sink-down", &endpoint)).await;
    let records = load(ingest.grpc, 3000, 3000.0, 12).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let m = sampler.metrics().await;
    assert!(
        metric_value(&m, "tailsift_sampler_export_requests_total", &["outcome=\"retry\""]) > 0.0,
        "retries visible"
    );
    assert_eq!(sink.span_count(), 0);
    sink.set_down(false);
    wait_and_verify(&sink, &records, Duration::from_secs(60)).await;
    sampler.stop().await;
    ingest.stop().await;
}

fn spawn_sampler(config: &std::path::Path, admin: u16) -> ChildGuard {
    let log = std::fs::File::create(config.with_extension(format!("{admin}.log"))).unwrap();
    let child = Command::new(workspace_bin("tailsift"))
        .arg("sampler")
        .arg("--config")
        .arg(config)
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    ChildGuard(Some(child))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_partitions_and_sigkill_loses_nothing() {
    sigkill("s-kill", "memory").await;
}

/// The same with traces buffered as an index: what the killed worker had decided but not read
/// back and exported is replayed by the next owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_mode_sigkill_loses_nothing() {
    sigkill("s-kill-index", "index").await;
}

async fn sigkill(topic: &str, mode: &str) {
    let broker = Broker::start(Storage::Memory);
    let ingest = IngestNode::start(&broker.brokers(), topic, &[]).await;
    let (sink, endpoint) = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sampler.yaml");
    let mut yaml = String::new();
    yaml.push_str(&format!("memory:\n  mode: {mode}\n"));
    yaml.push_str(&format!("kafka:\n  brokers: {}\n  topic: {topic}\n  group_id: g-{topic}\n  decisions_topic: {topic}-decisions\n  commit_interval: 200ms\n  resume_lookback_records: 10000\n", broker.brokers()));
    // A short session timeout so the dead worker is noticed quickly, and a bounded rebalance
    // timeout (max.poll.interval.ms) so a rebalance never waits minutes for a member that died.
    yaml.push_str(
        "  properties: {session.timeout.ms: '6000', heartbeat.interval.ms: '500', max.poll.interval.ms: '20000'}\n",
    );
    yaml.push_str(&format!("export:\n  endpoint: {endpoint}\n  timeout: 3s\n  batch_timeout: 50ms\n  initial_backoff: 50ms\n  max_backoff: 500ms\n"));
    yaml.push_str("decision:\n  send_delay: 500ms\n  decision_wait: 4s\n");
    std::fs::write(&cfg, yaml).unwrap();
    let (a1, a2) = (free_port(), free_port());
    let mut s1 = spawn_sampler(&cfg, a1);
    let _s2 = spawn_sampler(&cfg, a2);

    let load = tokio::spawn(load(ingest.grpc, 12_000, 1500.0, 13));
    // Both workers own partitions.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m1 = reqwest::get(format!("http://127.0.0.1:{a1}/metrics")).await.map(|r| r);
        let m2 = reqwest::get(format!("http://127.0.0.1:{a2}/metrics")).await;
        if let (Ok(m1), Ok(m2)) = (m1, m2) {
            let (t1, t2) = (m1.text().await.unwrap_or_default(), m2.text().await.unwrap_or_default());
            let (p1, p2) = (
                metric_value(&t1, "tailsift_sampler_partitions_owned", &[]),
                metric_value(&t2, "tailsift_sampler_partitions_owned", &[]),
            );
            if p1 > 0.0 && p2 > 0.0 && p1 + p2 == 4.0 {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the two workers never shared the 4 partitions"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // kill -9 mid-stream.
    let pid = s1.0.as_ref().unwrap().id();
    assert!(Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let _ = s1.0.take().unwrap().wait();

    // The killed worker is replaced, as an orchestrator would restart it.
    let a3 = free_port();
    let _s3 = spawn_sampler(&cfg, a3);
    let records = load.await.unwrap();
    // The survivor and the replacement own every partition between them.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let mut owned = 0.0;
        for a in [a2, a3] {
            if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{a}/metrics")).await {
                owned += metric_value(
                    &r.text().await.unwrap_or_default(),
                    "tailsift_sampler_partitions_owned",
                    &[],
                );
            }
        }
        if owned == 4.0 {
            break;
        }
        if std::time::Instant::now() >= deadline {
            let mut msg = String::new();
            for a in [a2, a3] {
                let log = std::fs::read_to_string(cfg.with_extension(format!("{a}.log"))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().filter(|l| !l.contains("CONFWARN")).rev().take(15).collect();
                msg.push_str(&format!(
                    "\n-- worker :{a}\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
            panic!("the workers never owned every partition again (owned {owned}):{msg}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (kept, total) = wait_and_verify(&sink, &records, Duration::from_secs(120)).await;
    let m2 = reqwest::get(format!("http://127.0.0.1:{a2}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    eprintln!(
        "kept {kept} of {total} traces; sink duplicates {}; survivor skipped {} replayed spans",
        sink.duplicates(),
        metric_value(&m2, "tailsift_sampler_replay_skipped_spans_total", &[])
    );
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_scale_up_and_shutdown_give_no_duplicates_and_no_split_traces() {
    graceful_scale("s-graceful", "memory", 1).await;
}

/// The same with traces buffered as an index (kept ones read back from the topic), scaling
/// 1 -> 3 -> 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_mode_scale_1_3_1_gives_no_duplicates_and_no_split_traces() {
    graceful_scale("s-graceful-index", "index", 2).await;
}

async fn graceful_scale(topic: &str, mode: &str, added: usize) {
    if let Ok(level) = std::env::var("TAILSIFT_TEST_LOG") {
        tailsift_telemetry::init_logging(&level, tailsift_telemetry::LogFormat::Text).unwrap();
    }
    let broker = Broker::start(Storage::Memory);
    let group = format!("g-{topic}");
    let ingest = IngestNode::start(&broker.brokers(), topic, &[]).await;
    let (sink, endpoint) = Sink::start().await;
    let sets = || {
        let mut s = sampler_sets(&broker.brokers(), topic, &group, &endpoint);
        s.push(("memory.mode".into(), mode.into()));
        s
    };
    let s1 = SamplerNode::start(sets()).await;
    let load = tokio::spawn(load(ingest.grpc, 9_000, 1500.0, 14));
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Scale up: partitions move from s1 to the new workers while spans flow.
    let mut others = Vec::new();
    for _ in 0..added {
        others.push(SamplerNode::start(sets()).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Scale down gracefully: s1 hands everything to the others, then all but one leave.
    let read_backs = |m: &str| metric_value(m, "tailsift_sampler_read_backs_total", &[]);
    let before = read_backs(&s1.metrics().await);
    s1.stop().await;
    let last = others.pop().unwrap();
    for s in others {
        s.stop().await;
    }
    let records = load.await.unwrap();
    wait_and_verify(&sink, &records, Duration::from_secs(60)).await;
    assert_eq!(
        sink.duplicates(),
        0,
        "a graceful rebalance exports nothing twice: {:?}",
        sink.duplicate_ids()
    );
    if mode != "memory" {
        // (One process: the metrics recorder is shared by the workers.)
        assert!(before > 0.0, "kept traces were read back from the topic");
        assert_eq!(
            metric_value(
                &last.metrics().await,
                "tailsift_sampler_read_back_records_total",
                &["outcome=\"missing\""]
            ),
            0.0
        );
    }
    last.stop().await;
    ingest.stop().await;
}

/// Traces buffered as an index, and the broker killed and started again while kept traces are
/// being read back and others are buffered: nothing lost or split (the reader waits for the
/// broker instead of declaring records missing; commits stay behind what is not exported).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_mode_broker_restart_loses_nothing() {
    let mut broker = Broker::start(Storage::Durable);
    let topic = "s-restart-index";
    let ingest = IngestNode::start(&broker.brokers(), topic, &[]).await;
    let (sink, endpoint) = Sink::start().await;
    let mut sets = sampler_sets(&broker.brokers(), topic, "g-restart-index", &endpoint);
    sets.push(("memory.mode".into(), "index".into()));
    let sampler = SamplerNode::start(sets).await;
    let mut records = load(ingest.grpc, 3_000, 3000.0, 17).await;
    // Traces of the load are still buffered (send_delay 500 ms) and being read back.
    broker.restart();
    ingest.wait_ready(Duration::from_secs(60)).await;
    records.extend(load(ingest.grpc, 3_000, 3000.0, 18).await);
    wait_and_verify(&sink, &records, Duration::from_secs(120)).await;
    let m = sampler.metrics().await;
    assert!(metric_value(&m, "tailsift_sampler_read_backs_total", &[]) > 0.0);
    eprintln!(
        "read-back stalls {}, missing records {}, sink duplicates {}",
        metric_value(&m, "tailsift_sampler_read_back_stalls_total", &[]),
        metric_value(&m, "tailsift_sampler_read_back_records_total", &["outcome=\"missing\""]),
        sink.duplicates()
    );
    sampler.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_exporter_writes_kept_traces_in_the_spans_record_format() {
    let broker = Broker::start(Storage::Memory);
    let topic = "s-kafka-export";
    let ingest = IngestNode::start(&broker.brokers(), topic, &[]).await;
    let mut sets = sampler_sets(&broker.brokers(), topic, "g-kafka-export", "http://unused:1");
    sets.push(("export.kind".into(), "kafka".into()));
    sets.push(("export.kafka_topic".into(), format!("{topic}-sampled")));
    let sampler = SamplerNode::start(sets).await;
    let records = load(ingest.grpc, 2000, 2000.0, 15).await;
    let want = expected(&records);
    let want_spans: usize = want.values().map(|t| t.spans).sum();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    while std::time::Instant::now() < deadline {
        got = tailsift_tests::read_topic(
            &broker.brokers(),
            &format!("{topic}-sampled"),
            usize::MAX,
            Duration::from_secs(2),
        );
        let spans: usize = tailsift_tests::spans_by_trace(&got).values().map(|s| s.len()).sum();
        if spans >= want_spans {
            break;
        }
    }
    let by_trace = tailsift_tests::spans_by_trace(&got);
    assert_eq!(by_trace.len(), want.len(), "one kept trace per expected trace");
    for (id, t) in &want {
        let spans = &by_trace[&hex::encode(id)];
        assert_eq!(spans.len(), t.spans, "trace {} complete", hex::encode(id));
        assert!(spans.iter().all(|s| s.trace_state.starts_with("ot=th:")));
    }
    for r in &got {
        let ids: std::collections::HashSet<String> = tailsift_tests::spans_by_trace(std::slice::from_ref(r))
            .into_keys()
            .collect();
        assert_eq!(ids.len(), 1, "one trace per record");
        assert_eq!(
            r.key,
            ids.into_iter().next().unwrap().into_bytes(),
            "keyed by hex trace ID"
        );
    }
    sampler.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_exporter_delivers_kept_traces() {
    let broker = Broker::start(Storage::Memory);
    let topic = "s-http-export";
    let ingest = IngestNode::start(&broker.brokers(), topic, &[]).await;
    let (sink, _) = Sink::start().await;
    let endpoint = sink.start_http().await;
    sink.set_down(true); // 503 first: the HTTP exporter must retry
    let mut sets = sampler_sets(&broker.brokers(), topic, "g-http-export", &endpoint);
    sets.push(("export.kind".into(), "otlp_http".into()));
    let sampler = SamplerNode::start(sets).await;
    let records = load(ingest.grpc, 2000, 2000.0, 16).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    sink.set_down(false);
    wait_and_verify(&sink, &records, Duration::from_secs(60)).await;
    sampler.stop().await;
    ingest.stop().await;
}

/// Rate limits are for the whole cluster: two workers sharing the topic's partitions keep the
/// configured budget together, not twice it (each enforces its share of the partitions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_cluster_wide_across_workers() {
    let broker = Broker::start(Storage::Memory);
    let topic = "s-budget";
    let ingest = IngestNode::start(&broker.brokers(), topic, &[]).await;
    let (sink, endpoint) = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    // 0.01 traces/s with 1000 s of burst: 10 traces for the whole cluster, nearly no refill.
    let policy = dir.path().join("budget.yaml");
    std::fs::write(
        &policy,
        "policies:\n  - name: budget\n    rate_limiting: { traces_per_second: 0.01, burst_seconds: 1000 }\n",
    )
    .unwrap();
    let sets = || {
        let mut s = sampler_sets(&broker.brokers(), topic, "g-budget", &endpoint);
        s.push(("policy.file".into(), policy.display().to_string()));
        s
    };
    let s1 = SamplerNode::start(sets()).await;
    let s2 = SamplerNode::start(sets()).await;
    // Let the group settle so that both workers own partitions before traces arrive.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut client = TraceServiceClient::connect(format!("http://{}", ingest.grpc))
        .await
        .unwrap();
    for i in 0..120u32 {
        let mut id = [0x5au8; 16];
        id[..4].copy_from_slice(&i.to_be_bytes());
        client
            .export(tailsift_tests::single_span_request(id, [7; 8], None, false))
            .await
            .expect("ingest accepts");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sink.traces().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sink.wait_quiet(Duration::from_secs(3), Duration::from_secs(60)).await;
    let kept = sink.traces().len();
    // Per-worker budgets (`budget_scope: worker`) keep 20 here (10 on each worker); shares of
    // the partitions round down.
    assert!((5..=10).contains(&kept), "kept {kept} traces; the cluster budget is 10");
    s1.stop().await;
    s2.stop().await;
    ingest.stop().await;
}

/// Another producer of the spans topic, its clock an hour ahead, writes one record per partition
/// (and one more dated in the year 2100) while 100 error traces are in flight (their erroring roots
/// arrive 2 s later): every one of them is kept complete, and traces sent afterwards are decided as
/// usual. Span times of 0, u64::MAX and the year 2100 go through the whole path too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_an_hour_ahead_rushes_and_stalls_no_decision() {
    use prost::Message as _;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let topic = "s-skew";
    let p = pipeline(
        topic,
        "g-skew",
        "policies:\n  - name: errors\n    status_code: { codes: [ERROR] }\n  - name: slow\n    latency: { threshold_ms: 1000 }\n",
    )
    .await;
    let brokers = p._broker.brokers();
    let Pipeline {
        ingest,
        sink,
        sampler,
        mut client,
        _broker,
        _dir,
    } = p;
    // Let the sampler join and the partitions' clocks start on honest traffic.
    for t in 0xc0..0xd0u8 {
        client.export(one_span(t, 1, None, false)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    // 100 traces in flight: a child span first (no error).
    for t in 1..=100u8 {
        client.export(one_span(t, 2, Some(1), false)).await.unwrap();
    }
    // The skewed producer: one record per partition, timestamp an hour ahead.
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let ahead = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 3_600_000;
    const YEAR_2100_MS: i64 = 4_102_444_800_000;
    for (trace, p, ts) in [
        (0xf0, 0, ahead),
        (0xf1, 1, ahead),
        (0xf2, 2, ahead),
        (0xf3, 3, ahead),
        (0xf4, 0, YEAR_2100_MS),
    ] {
        let value = one_span(trace, 1, None, true).encode_to_vec();
        let key = hex::encode([trace; 16]);
        producer
            .send(
                FutureRecord::to(topic)
                    .partition(p)
                    .key(&key)
                    .payload(&value)
                    .timestamp(ts),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    // Their erroring roots 2 s later (decision_wait is 4 s, send_delay 500 ms in tests).
    tokio::time::sleep(Duration::from_secs(2)).await;
    for t in 1..=100u8 {
        client.export(one_span(t, 1, None, true)).await.unwrap();
    }
    // And 20 new error traces after the skew.
    for t in 0x70..0x84u8 {
        client.export(one_span(t, 1, None, true)).await.unwrap();
    }
    // Extreme span times: (trace, start, end, error, kept)
    const YEAR_2100_NS: u64 = 4_102_444_800_000_000_000;
    let extremes = [
        (0x90u8, 0, u64::MAX, false, true), // "slow": the longest duration there is
        (0x91, u64::MAX, 0, false, false),  // ends before it starts: duration 0
        (0x92, YEAR_2100_NS, YEAR_2100_NS + 2_000_000_000, false, true), // 2 s long, in 2100
        (0x93, u64::MAX, u64::MAX, true, true), // an error at the end of time
    ];
    for (t, start, end, error, _) in extremes {
        let mut req = one_span(t, 1, None, error);
        let span = &mut req.resource_spans[0].scope_spans[0].spans[0];
        span.start_time_unix_nano = start;
        span.end_time_unix_nano = end;
        client.export(req).await.unwrap();
    }
    let want: Vec<u8> = (1..=100)
        .chain(0x70..0x84)
        .chain(0xf0..0xf5)
        .chain(extremes.iter().filter(|e| e.4).map(|e| e.0))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = sink.traces();
        let missing: Vec<u8> = want.iter().copied().filter(|t| !got.contains_key(&[*t; 16])).collect();
        if missing.is_empty() {
            break;
        }
        if std::time::Instant::now() >= deadline {
            let m = sampler.metrics().await;
            let m: Vec<&str> = m
                .lines()
                .filter(|l| l.starts_with("tailsift_sampler") && !l.contains("_bucket"))
                .collect();
            panic!("error traces never delivered: {missing:x?}\n{}", m.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sink.wait_quiet(Duration::from_secs(2), Duration::from_secs(20)).await;
    let got = sink.traces();
    let split: Vec<u8> = (1..=100u8).filter(|t| got[&[*t; 16]].len() != 2).collect();
    assert!(split.is_empty(), "kept without their root or child: {split:x?}");
    assert!(
        !got.contains_key(&[0x91; 16]),
        "a span ending before it starts is not slow"
    );
    let t90 = &got[&[0x90; 16]][&vec![1u8; 8]];
    assert_eq!(
        (t90.start_time_unix_nano, t90.end_time_unix_nano),
        (0, u64::MAX),
        "times exported unchanged"
    );
    assert_eq!(sink.duplicates(), 0);
    let m = sampler.metrics().await;
    assert!(
        metric_value(&m, "tailsift_sampler_clock_skewed_records_total", &[]) >= 5.0,
        "skewed records counted"
    );
    sampler.stop().await;
    ingest.stop().await;
}

/// Topic-level configs of `topic`, as the broker describes them.
async fn topic_configs(brokers: &str, topic: &str) -> HashMap<String, String> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let res = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &opts)
        .await
        .expect("describe configs");
    let r = res.into_iter().next().expect("one resource").expect("topic described");
    r.entries.into_iter().filter_map(|e| Some((e.name, e.value?))).collect()
}

/// The topics a sampler creates (decisions, kafka export) take `kafka.topic_spec` (its topic
/// configs) and the spans topic's partition count; a replication factor above the brokers (one
/// tansu broker, which would accept it) stops the sampler at once with an error naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_the_sampler_creates_take_the_configured_topic_spec() {
    let broker = Broker::start(Storage::Memory);
    let topic = "s-topic-spec";
    let ingest = IngestNode::start(&broker.brokers(), topic, &[("kafka.topic_spec.partitions", "3")]).await;
    let mut sets = sampler_sets(&broker.brokers(), topic, "g-topic-spec", "http://unused:1");
    sets.push(("export.kind".into(), "kafka".into()));
    sets.push(("export.kafka_topic".into(), format!("{topic}-sampled")));
    sets.push(("kafka.topic_spec.replication_factor".into(), "1".into()));
    sets.push(("kafka.topic_spec.configs[retention.ms]".into(), "3600000".into()));
    sets.push(("kafka.topic_spec.configs[min.insync.replicas]".into(), "1".into()));
    let sampler = SamplerNode::start(sets).await;
    for created in [format!("{topic}-decisions"), format!("{topic}-sampled")] {
        assert_eq!(
            tailsift_tests::partition_count(&broker.brokers(), &created),
            3,
            "{created}"
        );
        let configs = topic_configs(&broker.brokers(), &created).await;
        assert_eq!(
            configs.get("retention.ms").map(String::as_str),
            Some("3600000"),
            "{created}: {configs:?}"
        );
        assert_eq!(
            configs.get("min.insync.replicas").map(String::as_str),
            Some("1"),
            "{created}: {configs:?}"
        );
    }
    sampler.stop().await;

    let mut sets = sampler_sets(&broker.brokers(), topic, "g-topic-spec-rf", "http://unused:1");
    sets.push(("kafka.decisions_topic".into(), format!("{topic}-rf3-decisions")));
    sets.push(("kafka.topic_spec.replication_factor".into(), "3".into()));
    sets.push(("admin.listen".into(), "127.0.0.1:0".into()));
    let cfg: tailsift_sampler::SamplerConfig = tailsift_config::Sources {
        sets,
        ..Default::default()
    }
    .load()
    .unwrap();
    let listeners = tailsift_sampler::Listeners::bind(&cfg).await.unwrap();
    let run = tailsift_sampler::run(cfg, listeners, tokio_util::sync::CancellationToken::new());
    let e = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the sampler stops instead of hanging")
        .expect_err("replication factor 3 on one broker")
        .to_string();
    assert!(
        e.contains("kafka.topic_spec.replication_factor 3") && e.contains(&format!("{topic}-rf3-decisions")),
        "{e}"
    );
    assert_eq!(
        tailsift_tests::partition_count(&broker.brokers(), &format!("{topic}-rf3-decisions")),
        0
    );
    ingest.stop().await;
}

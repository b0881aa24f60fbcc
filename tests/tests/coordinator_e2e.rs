//! Coordinators -> samplers, end to end: 3 in-process coordinators, a real broker, an ingest node,
//! two samplers watching the coordinators. A policy PUT through the admin API changes the
//! decisions of every running worker, including one whose coordinator was stopped (failover);
//! workers keep sampling with every coordinator stopped; a worker restarted with no coordinator
//! reachable applies the version it persisted. Also: `tailsift coordinator` and the admin CLI.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::any_value;
use serde_json::json;
use tailsift_tests::{
    free_port, sampler_sets, workspace_bin, Broker, ChildGuard, CoordinatorCluster, IngestNode, SamplerNode, Sink,
    Storage, ADMIN_TOKEN, READ_TOKEN,
};
use tonic::transport::Channel;

const ERRORS_ONLY: &str = "policies:\n  - name: errors\n    status_code: { codes: [ERROR] }\n";
const ALWAYS: &str = "policies:\n  - name: everything\n    always: {}\n";

fn trace_id(tag: u8, i: u8) -> [u8; 16] {
    let mut id = [0x11u8; 16];
    id[0] = tag;
    id[1] = i;
    id
}

/// The policy version stamped on the exported span of trace `id`, once it has been exported.
fn stamped_version(sink: &Sink, id: &[u8; 16]) -> Option<i64> {
    let traces = sink.traces();
    let spans = traces.get(id)?;
    let span = spans.values().next()?;
    let attr = span
        .attributes
        .iter()
        .find(|a| a.key == "tailsift.sampling.policy_version")
        .expect("version attribute");
    match attr.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::IntValue(v)) => Some(*v),
        other => panic!("policy_version is not an int: {other:?}"),
    }
}

/// Waits (bounded) until every trace in `ids` has been exported; returns their stamped versions.
async fn wait_exported(sink: &Sink, ids: &[[u8; 16]], what: &str) -> Vec<i64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: Vec<Option<i64>> = ids.iter().map(|id| stamped_version(sink, id)).collect();
        if got.iter().all(Option::is_some) {
            return got.into_iter().flatten().collect();
        }
        let missing = got.iter().filter(|g| g.is_none()).count();
        assert!(
            Instant::now() < deadline,
            "{what}: {missing} of {} traces never exported",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (bounded) until the worker's state file holds `version`.
async fn wait_persisted(path: &Path, version: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let have = tailsift_sampler::coordination::load_state(path)
            .ok()
            .flatten()
            .map(|s| s.version);
        if have == Some(version) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} holds {have:?}, never version {version}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sampler(
    id: &str,
    brokers: &str,
    topic: &str,
    sink: &str,
    endpoints: &[String],
    state: &Path,
) -> Vec<(String, String)> {
    let mut sets = sampler_sets(brokers, topic, "g-coord", sink);
    sets.push(("coordinator.worker_id".into(), id.into()));
    sets.push(("coordinator.endpoints".into(), format!("[{}]", endpoints.join(", "))));
    sets.push(("coordinator.state_file".into(), state.display().to_string()));
    sets.push(("coordinator.retry_interval".into(), "200ms".into()));
    sets.push(("coordinator.connect_timeout".into(), "500ms".into()));
    sets.push(("coordinator.token".into(), READ_TOKEN.into()));
    sets
}

async fn send(client: &mut TraceServiceClient<Channel>, ids: &[[u8; 16]], error: bool) {
    for id in ids {
        client
            .export(tailsift_tests::single_span_request(*id, [7; 8], None, error))
            .await
            .expect("ingest accepts");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_versions_reach_every_worker_and_survive_coordinator_loss() {
    let broker = Broker::start(Storage::Memory);
    let topic = "c-e2e";
    let ingest = IngestNode::start(&broker.brokers(), topic, &[]).await;
    let (sink, sink_endpoint) = Sink::start().await;
    let mut cluster = CoordinatorCluster::start(3).await;
    cluster.wait_for_leader(&[0, 1, 2]).await;
    let mut endpoints = raft_endpoints(&cluster).await;
    assert_eq!(endpoints.len(), 3);

    let v1 = cluster.put_policy(1, ERRORS_ONLY).await;
    for i in 0..3 {
        cluster.wait_for_version(i, v1).await;
    }

    let dir = tempfile::tempdir().unwrap();
    let states: Vec<PathBuf> = (0..2).map(|i| dir.path().join(format!("worker-{i}.json"))).collect();
    let a = SamplerNode::start(sampler(
        "w-a",
        &broker.brokers(),
        topic,
        &sink_endpoint,
        &endpoints,
        &states[0],
    ))
    .await;
    endpoints.rotate_left(1); // the second worker starts with another coordinator
    let b = SamplerNode::start(sampler(
        "w-b",
        &broker.brokers(),
        topic,
        &sink_endpoint,
        &endpoints,
        &states[1],
    ))
    .await;
    wait_persisted(&states[0], v1).await;
    wait_persisted(&states[1], v1).await;

    // Version 1 (errors only): error traces kept and stamped v1, normal traces dropped.
    let mut client = TraceServiceClient::connect(format!("http://{}", ingest.grpc))
        .await
        .unwrap();
    let errors: Vec<[u8; 16]> = (0..24).map(|i| trace_id(0xe1, i)).collect();
    let normal: Vec<[u8; 16]> = (0..24).map(|i| trace_id(0xa1, i)).collect();
    send(&mut client, &normal, false).await;
    send(&mut client, &errors, true).await;
    let versions = wait_exported(&sink, &errors, "errors under v1").await;
    assert!(
        versions.iter().all(|v| *v == v1 as i64),
        "stamped {versions:?}, expected {v1}"
    );
    sink.wait_quiet(Duration::from_secs(2), Duration::from_secs(30)).await;
    let kept_normal = normal.iter().filter(|id| sink.traces().contains_key(*id)).count();
    assert_eq!(kept_normal, 0, "errors-only policy kept normal traces");

    // The first worker watches coordinator 0 (its first endpoint): stopping it makes the worker
    // fail over. Version 2 (always) is written through another node: every worker switches.
    cluster.stop(0).await;
    cluster.wait_for_leader(&[1, 2]).await;
    let v2 = cluster.put_policy(2, ALWAYS).await;
    assert!(v2 > v1);
    wait_persisted(&states[0], v2).await;
    wait_persisted(&states[1], v2).await;
    // Both workers report version 2 to every running coordinator.
    let ids = ["w-a", "w-b"];
    for node in 1..3 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (st, body) = cluster
                .request(node, "GET", "/v1/workers", Some(READ_TOKEN), None)
                .await;
            assert_eq!(st, 200, "{body}");
            let at_v2: Vec<&str> = body["workers"]
                .as_array()
                .expect("workers")
                .iter()
                .filter(|w| w["version"] == v2)
                .filter_map(|w| w["worker_id"].as_str())
                .collect();
            if ids.iter().all(|id| at_v2.contains(id)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {node} never saw both workers at {v2}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (st, _) = cluster.request(1, "GET", "/v1/workers", None, None).await;
    assert_eq!(st, 401);
    // 48 traces over the topic's partitions: both workers own some of them.
    let normal2: Vec<[u8; 16]> = (0..48).map(|i| trace_id(0xa2, i)).collect();
    send(&mut client, &normal2, false).await;
    let versions = wait_exported(&sink, &normal2, "normal traces under v2").await;
    assert!(
        versions.iter().all(|v| *v == v2 as i64),
        "stamped {versions:?}, expected {v2}"
    );

    // Every coordinator stopped: the workers keep sampling with version 2.
    cluster.stop_all().await;
    let normal3: Vec<[u8; 16]> = (0..24).map(|i| trace_id(0xa3, i)).collect();
    send(&mut client, &normal3, false).await;
    let versions = wait_exported(&sink, &normal3, "normal traces with no coordinator").await;
    assert!(
        versions.iter().all(|v| *v == v2 as i64),
        "stamped {versions:?}, expected {v2}"
    );

    // A worker restarted with no coordinator reachable applies the persisted version 2 (its
    // config has no policy file: the built-in default would keep only ~10% of normal traces,
    // stamped with another version).
    a.stop().await;
    b.stop().await;
    let a = SamplerNode::start(sampler(
        "w-a",
        &broker.brokers(),
        topic,
        &sink_endpoint,
        &endpoints,
        &states[0],
    ))
    .await;
    let normal4: Vec<[u8; 16]> = (0..24).map(|i| trace_id(0xa4, i)).collect();
    send(&mut client, &normal4, false).await;
    let versions = wait_exported(&sink, &normal4, "normal traces after a restart without coordinators").await;
    assert!(
        versions.iter().all(|v| *v == v2 as i64),
        "stamped {versions:?}, expected {v2}"
    );
    assert_eq!(sink.duplicates(), 0, "{:?}", sink.duplicate_ids());

    a.stop().await;
    ingest.stop().await;
}

/// Runs `tailsift ARGS` against `admin`; returns (success, stdout JSON or text, stderr).
fn cli(admin: &str, token: Option<&str>, args: &[&str]) -> (bool, serde_json::Value, String) {
    let mut cmd = std::process::Command::new(workspace_bin("tailsift"));
    cmd.args(args)
        .env("TAILSIFT_ADMIN_URL", admin)
        .env_remove("TAILSIFT_TOKEN");
    if let Some(t) = token {
        cmd.env("TAILSIFT_TOKEN", t);
    }
    let out = cmd.output().expect("run tailsift");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::String(stdout));
    (
        out.status.success(),
        json,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn coordinator_subcommand_and_admin_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (raft, admin) = (free_port(), free_port());
    let config = dir.path().join("coordinator.yaml");
    std::fs::write(
        &config,
        format!(
            "admin:\n  tokens:\n    - {{name: ops, token: {ADMIN_TOKEN}, role: admin}}\n    - {{name: viewer, token: {READ_TOKEN}, role: read_only}}\nraft:\n  heartbeat_interval: 100ms\n  election_timeout_min: 500ms\n  election_timeout_max: 1s\n"
        ),
    )
    .unwrap();
    let child = std::process::Command::new(workspace_bin("tailsift"))
        .arg("coordinator")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args([
            "--node-id",
            "1",
            "--raft-listen",
            &format!("127.0.0.1:{raft}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .args(["--member", &format!("1=127.0.0.1:{raft},127.0.0.1:{admin}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start tailsift coordinator");
    let _guard = ChildGuard(Some(child));
    let url = format!("http://127.0.0.1:{admin}");

    // Ready once it leads its single-node cluster.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, status, err) = cli(&url, Some(READ_TOKEN), &["cluster", "status"]);
        if ok && status["leader"].as_u64() == Some(1) {
            assert_eq!(status["members"][0]["raft_addr"], format!("127.0.0.1:{raft}"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "single-node coordinator never led: {status} {err}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let errors = dir.path().join("errors.yaml");
    std::fs::write(&errors, ERRORS_ONLY).unwrap();
    let always = dir.path().join("always.json");
    std::fs::write(&always, r#"{"policies": [{"name": "everything", "always": {}}]}"#).unwrap();
    let invalid = dir.path().join("invalid.yaml");
    std::fs::write(
        &invalid,
        "policies:\n  - name: x\n    probabilistic: { percentage: 200 }\n",
    )
    .unwrap();

    // Errors: no token, read-only token on a write, invalid document; each names the problem.
    let (ok, _, err) = cli(&url, None, &["policy", "get"]);
    assert!(!ok && err.contains("401"), "{err}");
    let (ok, _, err) = cli(&url, Some(READ_TOKEN), &["policy", "apply", errors.to_str().unwrap()]);
    assert!(!ok && err.contains("403"), "{err}");
    let (ok, _, err) = cli(
        &url,
        Some(ADMIN_TOKEN),
        &["policy", "validate", invalid.to_str().unwrap()],
    );
    assert!(
        !ok && err.contains("400") && err.contains("policies[0].probabilistic"),
        "{err}"
    );
    let (ok, _, err) = cli(&url, Some(ADMIN_TOKEN), &["policy", "apply", invalid.to_str().unwrap()]);
    assert!(!ok && err.contains("400"), "{err}");

    let (ok, out, err) = cli(
        &url,
        Some(ADMIN_TOKEN),
        &["policy", "validate", errors.to_str().unwrap()],
    );
    assert!(ok, "{out} {err}");
    let (ok, out, err) = cli(&url, Some(ADMIN_TOKEN), &["policy", "apply", errors.to_str().unwrap()]);
    assert!(ok && out["version"] == 1, "{out} {err}");
    let (ok, out, err) = cli(&url, Some(ADMIN_TOKEN), &["seed", "rotate"]);
    assert!(ok && out["seeds"]["next"]["effective_version"] == 2, "{out} {err}");
    let (ok, out, err) = cli(&url, Some(ADMIN_TOKEN), &["policy", "apply", always.to_str().unwrap()]);
    assert!(ok && out["version"] == 2, "{out} {err}");
    let (ok, out, err) = cli(&url, Some(READ_TOKEN), &["policy", "get"]);
    assert!(
        ok && out["version"] == 2 && out["policy"]["format"] == "json",
        "{out} {err}"
    );
    let (ok, out, err) = cli(&url, Some(READ_TOKEN), &["policy", "history"]);
    assert!(ok, "{out} {err}");
    assert!(
        out.to_string().contains("errors") && out.to_string().contains("everything"),
        "{out}"
    );
    let (ok, _, err) = cli(&url, Some(ADMIN_TOKEN), &["policy", "rollback", "99"]);
    assert!(!ok && err.contains("404") && err.contains("99"), "{err}");
    let (ok, out, err) = cli(&url, Some(ADMIN_TOKEN), &["policy", "rollback", "1"]);
    assert!(ok && out["version"] == 3, "{out} {err}");
    let (ok, out, _) = cli(&url, Some(READ_TOKEN), &["policy", "get"]);
    assert!(
        ok && out["policy"]["document"] == ERRORS_ONLY && out["policy"]["rollback_of"] == 1,
        "{out}"
    );

    // Membership: a second node (empty data directory, no members) is added, then removed
    // through the follower (the CLI follows the 421 to the leader).
    let (raft2, admin2) = (free_port(), free_port());
    let child2 = std::process::Command::new(workspace_bin("tailsift"))
        .arg("coordinator")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data2"))
        .args([
            "--node-id",
            "2",
            "--raft-listen",
            &format!("127.0.0.1:{raft2}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin2}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the second coordinator");
    let _guard2 = ChildGuard(Some(child2));
    let url2 = format!("http://127.0.0.1:{admin2}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, out, err) = cli(
            &url,
            Some(ADMIN_TOKEN),
            &[
                "cluster",
                "add",
                "--id",
                "2",
                "--raft-addr",
                &format!("127.0.0.1:{raft2}"),
                "--admin-addr",
                &format!("127.0.0.1:{admin2}"),
            ],
        );
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "node 2 never added: {out} {err}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, out, _) = cli(&url2, Some(READ_TOKEN), &["cluster", "status"]);
        if ok
            && out["leader"] == 1
            && out["members"].as_array().is_some_and(|m| m.len() == 2)
            && out["policy_version"] == 3
        {
            break;
        }
        assert!(Instant::now() < deadline, "node 2 never joined: {out}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, out, err) = cli(&url2, Some(ADMIN_TOKEN), &["cluster", "remove", "2"]);
    assert!(ok, "{out} {err}");
    let (ok, out, err) = cli(&url, Some(READ_TOKEN), &["cluster", "status"]);
    assert!(ok && out["members"].as_array().map(Vec::len) == Some(1), "{out} {err}");
}

/// Polls `GET path` on coordinator `node` until `ok(body)`; returns the body.
async fn wait_admin(
    cluster: &CoordinatorCluster,
    node: usize,
    path: &str,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (st, body) = cluster.request(node, "GET", path, Some(READ_TOKEN), None).await;
        if st == 200 && ok(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}: GET {path} answered {st} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn raft_endpoints(cluster: &CoordinatorCluster) -> Vec<String> {
    let (st, status) = cluster
        .request(0, "GET", "/v1/cluster/status", Some(READ_TOKEN), None)
        .await;
    assert_eq!(st, 200, "{status}");
    status["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| format!("http://{}", m["raft_addr"].as_str().expect("raft_addr")))
        .collect()
}

/// A shadow policy set through the CLI is evaluated by every worker without changing what is
/// exported, and its per-rule counts come back through the admin API; live settings reach every
/// worker; both are validated and need the admin role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_policy_and_live_settings_reach_every_worker() {
    let broker = Broker::start(Storage::Memory);
    let topic = "c-shadow";
    let ingest = IngestNode::start(&broker.brokers(), topic, &[]).await;
    let (sink, sink_endpoint) = Sink::start().await;
    let cluster = CoordinatorCluster::start(3).await;
    cluster.wait_for_leader(&[0, 1, 2]).await;
    let endpoints = raft_endpoints(&cluster).await;
    let v1 = cluster.put_policy(0, ERRORS_ONLY).await;
    let dir = tempfile::tempdir().unwrap();
    let states: Vec<PathBuf> = (0..2).map(|i| dir.path().join(format!("worker-{i}.json"))).collect();
    let a = SamplerNode::start(sampler(
        "s-a",
        &broker.brokers(),
        topic,
        &sink_endpoint,
        &endpoints,
        &states[0],
    ))
    .await;
    let b = SamplerNode::start(sampler(
        "s-b",
        &broker.brokers(),
        topic,
        &sink_endpoint,
        &endpoints,
        &states[1],
    ))
    .await;
    wait_persisted(&states[0], v1).await;
    wait_persisted(&states[1], v1).await;

    // The shadow keeps everything; the live policy keeps errors only.
    let admin = format!("http://{}", cluster.admin_addr(1));
    let shadow_file = dir.path().join("shadow.yaml");
    std::fs::write(&shadow_file, ALWAYS).unwrap();
    let invalid = dir.path().join("invalid.yaml");
    std::fs::write(
        &invalid,
        "policies:\n  - name: x\n    probabilistic: { percentage: 200 }\n",
    )
    .unwrap();
    let (ok, _, err) = cli(
        &admin,
        Some(READ_TOKEN),
        &["policy", "shadow", shadow_file.to_str().unwrap()],
    );
    assert!(!ok && err.contains("403"), "{err}");
    let (ok, _, err) = cli(
        &admin,
        Some(ADMIN_TOKEN),
        &["policy", "shadow", invalid.to_str().unwrap()],
    );
    assert!(
        !ok && err.contains("400") && err.contains("policies[0].probabilistic"),
        "{err}"
    );
    let (ok, out, err) = cli(
        &admin,
        Some(ADMIN_TOKEN),
        &["policy", "shadow", shadow_file.to_str().unwrap()],
    );
    assert!(ok && out["version"] == v1, "a shadow is not a new version: {out} {err}");
    let revision = out["shadow_revision"].as_u64().expect("shadow_revision");
    for node in 0..3 {
        wait_admin(&cluster, node, "/v1/workers", "both workers apply the shadow", |b| {
            let ws = b["workers"].as_array().cloned().unwrap_or_default();
            ["s-a", "s-b"].iter().all(|id| {
                ws.iter()
                    .any(|w| w["worker_id"] == *id && w["shadow"]["revision"] == revision)
            })
        })
        .await;
    }

    let mut client = TraceServiceClient::connect(format!("http://{}", ingest.grpc))
        .await
        .unwrap();
    let errors: Vec<[u8; 16]> = (0..24).map(|i| trace_id(0xe5, i)).collect();
    let normal: Vec<[u8; 16]> = (0..24).map(|i| trace_id(0xa5, i)).collect();
    send(&mut client, &normal, false).await;
    send(&mut client, &errors, true).await;
    wait_exported(&sink, &errors, "errors with a shadow set").await;
    sink.wait_quiet(Duration::from_secs(2), Duration::from_secs(30)).await;
    let kept_normal = normal.iter().filter(|id| sink.traces().contains_key(*id)).count();
    assert_eq!(kept_normal, 0, "the shadow changed live decisions");

    // Every worker's counts (re-reported every 3 s) add up to what the shadow would keep.
    let body = wait_admin(&cluster, 2, "/v1/policy/shadow", "shadow counts", |b| {
        b["total"]["traces"].as_u64() == Some(48)
    })
    .await;
    let t = &body["total"];
    assert_eq!(
        (
            &t["shadow_kept"],
            &t["live_kept"],
            &t["both_kept"],
            &t["only_shadow_kept"]
        ),
        (&json!(48), &json!(24), &json!(24), &json!(24)),
        "{body}"
    );
    assert_eq!(t["by_policy"]["everything"], 48, "{body}");
    assert_eq!(body["shadow"]["document"], ALWAYS);
    assert_eq!(body["workers"].as_array().map(Vec::len), Some(2), "{body}");
    let metrics = reqwest::get(format!("http://{}/metrics", a.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        tailsift_tests::metric_value(
            &metrics,
            "tailsift_sampler_shadow_decisions_total",
            &["policy=\"everything\"", "outcome=\"kept\""]
        ) >= 48.0,
        "per-rule shadow counts are exported as metrics"
    );
    let (ok, out, err) = cli(&admin, Some(READ_TOKEN), &["policy", "shadow"]);
    assert!(ok && out["total"]["shadow_kept"] == 48, "{out} {err}");
    let (ok, _, err) = cli(&admin, Some(ADMIN_TOKEN), &["policy", "shadow", "--clear"]);
    assert!(ok, "{err}");
    wait_admin(&cluster, 0, "/v1/workers", "both workers drop the shadow", |b| {
        let ws = b["workers"].as_array().cloned().unwrap_or_default();
        ws.len() == 2 && ws.iter().all(|w| w["shadow"].is_null())
    })
    .await;

    // Live settings: validated by key, admin only, applied and reported by every worker.
    let settings =
        json!({ "settings": { "history_limit": 10, "sampler": { "send_delay_ms": 200, "decision_wait_ms": 2000 } } });
    let (st, body) = cluster
        .request(1, "PUT", "/v1/settings", Some(READ_TOKEN), Some(settings.clone()))
        .await;
    assert_eq!(st, 403, "{body}");
    let (st, body) = cluster
        .request(
            1,
            "PUT",
            "/v1/settings",
            Some(ADMIN_TOKEN),
            Some(json!({ "settings": { "history_limit": 10, "sampler": { "send_delay_ms": 9000, "decision_wait_ms": 2000 } } })),
        )
        .await;
    assert_eq!(st, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("settings.sampler.send_delay_ms"),
        "{body}"
    );
    let settings_file = dir.path().join("settings.yaml");
    std::fs::write(
        &settings_file,
        "history_limit: 10\nsampler: {send_delay_ms: 200, decision_wait_ms: 2000}\n",
    )
    .unwrap();
    let (ok, out, err) = cli(
        &admin,
        Some(ADMIN_TOKEN),
        &["cluster", "settings", settings_file.to_str().unwrap()],
    );
    assert!(ok && out["revision"] == 1, "{out} {err}");
    wait_admin(&cluster, 1, "/v1/workers", "both workers apply the settings", |b| {
        let ws = b["workers"].as_array().cloned().unwrap_or_default();
        ws.len() == 2 && ws.iter().all(|w| w["settings_revision"] == 1)
    })
    .await;
    // Reads reflect this node's applied state: wait until it has the write (made through it).
    wait_admin(&cluster, 1, "/v1/settings", "node 1 applies the settings", |b| {
        b["revision"] == 1
    })
    .await;
    let (ok, out, err) = cli(&admin, Some(READ_TOKEN), &["cluster", "settings"]);
    assert!(ok && out["settings"]["sampler"]["send_delay_ms"] == 200, "{out} {err}");
    // A restarted worker (no coordinator needed) has them from its state file.
    let stored = tailsift_sampler::coordination::load_state(&states[0]).unwrap().unwrap();
    assert_eq!(
        stored.settings.map(|s| (s.revision, s.sampler.send_delay_ms)),
        Some((1, Some(200)))
    );

    a.stop().await;
    b.stop().await;
    ingest.stop().await;
}

/// Two workers that each see every trace (separate consumer groups) keep exactly the same
/// traces under consistent probabilistic sampling, before a seed rotation, between the
/// rotation and the version it takes effect at, and after it, where the kept set is the one the
/// new seed gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_rotation_switches_every_worker_at_the_same_version() {
    const HALF: &str = "policies:\n  - name: half\n    probabilistic: { percentage: 50 }\n";
    let broker = Broker::start(Storage::Memory);
    let topic = "c-seed";
    let ingest = IngestNode::start(&broker.brokers(), topic, &[]).await;
    let cluster = CoordinatorCluster::start(3).await;
    cluster.wait_for_leader(&[0, 1, 2]).await;
    let endpoints = raft_endpoints(&cluster).await;
    let v1 = cluster.put_policy(0, HALF).await;
    let seed_of = |body: &serde_json::Value| body["seeds"]["current"]["seed"].as_u64().expect("seed");
    let seed1 = seed_of(&cluster.wait_for_version(0, v1).await);

    let dir = tempfile::tempdir().unwrap();
    let mut sinks = Vec::new();
    let mut workers = Vec::new();
    for (i, group) in ["g-seed-1", "g-seed-2"].iter().enumerate() {
        let (sink, endpoint) = Sink::start().await;
        let state = dir.path().join(format!("w{i}.json"));
        let mut sets = sampler(
            &format!("seed-{i}"),
            &broker.brokers(),
            topic,
            &endpoint,
            &endpoints,
            &state,
        );
        sets.retain(|(k, _)| k != "kafka.group_id" && k != "kafka.decisions_topic");
        sets.push(("kafka.group_id".into(), (*group).into()));
        sets.push(("kafka.decisions_topic".into(), format!("{topic}-{group}-decisions")));
        workers.push(SamplerNode::start(sets).await);
        wait_persisted(&state, v1).await;
        sinks.push(sink);
    }
    let mut client = TraceServiceClient::connect(format!("http://{}", ingest.grpc))
        .await
        .unwrap();

    // Sends 120 traces tagged `tag`; checks both workers kept the same ones, exactly those the
    // seed predicts, stamped with `version`.
    async fn round(
        client: &mut TraceServiceClient<Channel>,
        sinks: &[Sink],
        tag: u8,
        seed: u64,
        version: u64,
    ) -> Vec<[u8; 16]> {
        let ids: Vec<[u8; 16]> = (0..120).map(|i| trace_id(tag, i)).collect();
        send(client, &ids, false).await;
        let predicted: Vec<[u8; 16]> = ids
            .iter()
            .copied()
            .filter(|id| tailsift_policy::consistent_keep(*id, seed, 0.5))
            .collect();
        assert!(!predicted.is_empty() && predicted.len() < ids.len());
        for sink in sinks {
            let versions = wait_exported(sink, &predicted, "predicted keeps").await;
            assert!(
                versions.iter().all(|v| *v == version as i64),
                "{versions:?} != {version}"
            );
        }
        for sink in sinks {
            sink.wait_quiet(Duration::from_secs(2), Duration::from_secs(30)).await;
        }
        for (i, sink) in sinks.iter().enumerate() {
            let kept: Vec<[u8; 16]> = ids
                .iter()
                .copied()
                .filter(|id| sink.traces().contains_key(id))
                .collect();
            assert_eq!(
                kept, predicted,
                "worker {i}, traces {tag:#x}: kept set differs from the seed's"
            );
        }
        predicted
    }

    round(&mut client, &sinks, 0xb1, seed1, v1).await;
    // Rotation: scheduled for the next version; until then every worker keeps the old seed.
    let (st, body) = cluster
        .request(2, "POST", "/v1/seed/rotate", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(st, 200, "{body}");
    let seed2 = body["seeds"]["next"]["seed"].as_u64().expect("next seed");
    assert_eq!(body["seeds"]["next"]["effective_version"], v1 + 1);
    let before = round(&mut client, &sinks, 0xb2, seed1, v1).await;
    let v2 = cluster.put_policy(1, HALF).await;
    assert_eq!(v2, v1 + 1);
    for i in 0..2 {
        wait_persisted(&dir.path().join(format!("w{i}.json")), v2).await;
    }
    let after = round(&mut client, &sinks, 0xb3, seed2, v2).await;
    let old_seed_would_keep: Vec<[u8; 16]> = (0..120)
        .map(|i| trace_id(0xb3, i))
        .filter(|id| tailsift_policy::consistent_keep(*id, seed1, 0.5))
        .collect();
    assert_ne!(after, old_seed_would_keep, "the new seed is in force from {v2}");
    assert!(!before.is_empty());
    for w in workers {
        w.stop().await;
    }
    ingest.stop().await;
}

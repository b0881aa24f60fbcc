//! The admin console (`/ui/` on every coordinator's admin port) in a real headless Chromium,
//! against a real cluster: 3 in-process coordinators, a broker, an ingest node, two samplers
//! watching the coordinators, and steady traffic. The browser part is
//! `tests/clients/console.js` (puppeteer-core, installed by `tests/clients/puppeteer.sh`; the
//! browser is Debian's `chromium`, installed by `tests/run.sh`): sign-in (a wrong token, a
//! read-only token that sees everything and can write nothing, a token no longer accepted), the
//! overview's live rates with every worker, an invalid policy shown at its line, an edited policy
//! applied and every worker seen moving to it, a rollback, shadow counts per rule, the cluster
//! page, and promoting the shadow. This test then checks through the API that those changes were
//! made. The page's screenshots go to `docs/console/` when `TAILSIFT_WRITE_SCREENSHOTS=1`
//! (otherwise to a temporary directory).
//!
//! Nothing is skipped: without Chromium or puppeteer-core the test fails and says how to install
//! them.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tailsift_tests::{
    sampler_sets, Broker, CoordinatorCluster, IngestNode, SamplerNode, Sink, Storage, ADMIN_TOKEN, READ_TOKEN,
};
use tokio_util::sync::CancellationToken;

const POLICY: &str = "policies:\n  - name: errors\n    status_code: { codes: [ERROR] }\n  - name: sample\n    probabilistic: { percentage: 10 }\n";

/// The Chromium binary: `CHROMIUM`, or Debian's.
fn chromium() -> PathBuf {
    let candidates = [
        std::env::var("CHROMIUM").unwrap_or_default(),
        "/usr/bin/chromium".into(),
        "/usr/bin/chromium-browser".into(),
    ];
    candidates
        .iter()
        .filter(|c| !c.is_empty())
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("no Chromium: install Debian's `chromium` package (tests/run.sh does: apt-get install chromium) or set CHROMIUM to a Chromium binary")
        })
}

/// puppeteer-core's node_modules: `TAILSIFT_PUPPETEER`, or what `tests/clients/puppeteer.sh` installs.
fn puppeteer() -> PathBuf {
    if let Some(p) = std::env::var_os("TAILSIFT_PUPPETEER") {
        return PathBuf::from(p);
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/puppeteer.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run tests/clients/puppeteer.sh");
    assert!(
        out.status.success(),
        "tests/clients/puppeteer.sh failed (it installs puppeteer-core with npm): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Sends traces until `stop`: one in five with an error, each one span.
async fn traffic(ingest: std::net::SocketAddr, stop: CancellationToken) {
    let mut client = TraceServiceClient::connect(format!("http://{ingest}")).await.unwrap();
    let mut n: u64 = 0;
    while !stop.is_cancelled() {
        for _ in 0..10 {
            n += 1;
            let mut id = [0x5au8; 16];
            id[..8].copy_from_slice(&n.to_be_bytes());
            let req = tailsift_tests::single_span_request(id, [3; 8], None, n % 5 == 0);
            let _ = client.export(req).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_chromium_against_a_cluster_with_traffic() {
    let chromium = chromium();
    let puppeteer = puppeteer();
    let started = Instant::now();

    let broker = Broker::start(Storage::Memory);
    let topic = "console";
    let ingest = IngestNode::start(&broker.brokers(), topic, &[]).await;
    let (sink, sink_endpoint) = Sink::start().await;
    let cluster = CoordinatorCluster::start(3).await;
    cluster.wait_for_leader(&[0, 1, 2]).await;
    let v1 = cluster.put_policy(0, POLICY).await;
    let (_, status) = cluster
        .request(0, "GET", "/v1/cluster/status", Some(READ_TOKEN), None)
        .await;
    let endpoints: Vec<String> = status["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| format!("http://{}", m["raft_addr"].as_str().unwrap()))
        .collect();
    let mut workers = Vec::new();
    for id in ["worker-a", "worker-b"] {
        let mut sets = sampler_sets(&broker.brokers(), topic, "g-console", &sink_endpoint);
        sets.push(("coordinator.worker_id".into(), id.into()));
        sets.push(("coordinator.endpoints".into(), format!("[{}]", endpoints.join(", "))));
        sets.push(("coordinator.retry_interval".into(), "200ms".into()));
        sets.push(("coordinator.token".into(), READ_TOKEN.into()));
        workers.push(SamplerNode::start(sets).await);
    }
    let stop = CancellationToken::new();
    let sender = tokio::spawn(traffic(ingest.grpc, stop.clone()));

    let shots = match std::env::var("TAILSIFT_WRITE_SCREENSHOTS").as_deref() {
        Ok("1") => (PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/console"), None),
        _ => {
            let d = tempfile::tempdir().unwrap();
            (d.path().to_path_buf(), Some(d))
        }
    };
    std::fs::create_dir_all(&shots.0).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/console.js");
    // The page talks to node 2 (a follower or the leader: writes are forwarded either way).
    let url = format!("{}/ui/", cluster.admin_url(1));
    let shot_dir = shots.0.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .env("TAILSIFT_PUPPETEER", puppeteer)
            .env("CHROMIUM", chromium)
            .env("CONSOLE_URL", url)
            .env("ADMIN_TOKEN", ADMIN_TOKEN)
            .env("READ_TOKEN", READ_TOKEN)
            .env("WORKERS", "2")
            .env("SCREENSHOTS", shot_dir)
            .output()
            .expect("run node tests/clients/console.js")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "console.js failed (screenshot: {}/failure.png):\n{stdout}\n{stderr}",
        shots.0.display()
    );

    // What the page did, as the API sees it: v2 applied with its note, v3 a rollback to v1,
    // v4 the promoted shadow; no shadow left.
    let (_, history) = cluster
        .request(2, "GET", "/v1/policy/history", Some(READ_TOKEN), None)
        .await;
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(history["version"], v1 + 3, "{history}");
    let by_version = |v: u64| versions.iter().find(|p| p["version"] == v).unwrap().clone();
    assert_eq!(by_version(v1 + 1)["note"], "add a latency rule, sample 25%");
    assert_eq!(by_version(v1 + 2)["rollback_of"], v1);
    assert!(by_version(v1 + 3)["document"].as_str().unwrap().contains("always"));
    let (_, shadow) = cluster
        .request(0, "GET", "/v1/policy/shadow", Some(READ_TOKEN), None)
        .await;
    assert!(shadow["shadow"].is_null(), "{shadow}");
    let (_, settings) = cluster.request(0, "GET", "/v1/settings", Some(READ_TOKEN), None).await;
    assert_eq!(settings["settings"]["sampler"]["send_delay_ms"], 300, "{settings}");
    let (_, policy) = cluster.request(0, "GET", "/v1/policy", Some(READ_TOKEN), None).await;
    assert_eq!(
        policy["seeds"]["current"]["epoch"], 1,
        "the rotated seed is in force from v4: {policy}"
    );
    // The capture started and cancelled from the page, as the API has it.
    let (_, captures) = cluster.request(0, "GET", "/v1/captures", Some(READ_TOKEN), None).await;
    let listed = captures["captures"].as_array().expect("captures");
    assert!(
        listed
            .iter()
            .any(|c| c["description"] == "checkout incident" && c["state"] == "cancelled"),
        "{captures}"
    );
    for name in [
        "signin",
        "overview",
        "policy",
        "policy-invalid",
        "shadow",
        "cluster",
        "captures",
    ] {
        assert!(shots.0.join(format!("{name}.png")).is_file(), "screenshot {name}.png");
    }
    println!("console test: {:?}", started.elapsed());

    stop.cancel();
    sender.await.unwrap();
    for w in workers {
        w.stop().await;
    }
    drop(sink);
    ingest.stop().await;
}

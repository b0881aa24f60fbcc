//! The control plane at scale, in one process: a 3-node coordinator cluster and 1,000 sampling
//! workers' real watch loops (`tailsift_sampler::coordination::run`, each with its own engine and
//! connection). Every worker applies every policy version; they spread over the coordinators; when
//! the leader is lost, the workers it served reconnect elsewhere (jittered) and a policy write on
//! the new leader succeeds at once while they do. Propagation p50/p99 and the time the reconnect
//! storm takes are printed (figures belong in docs, not in assertions: this machine is shared).
//! `TAILSIFT_SIM_WORKERS` changes the number of workers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tailsift_sampler::config::{CoordinatorConfig, DecisionConfig, MemoryConfig, PolicyConfig};
use tailsift_sampler::engine::{ActivePolicy, Engine, EngineConfig};
use tailsift_tests::{metric_value, CoordinatorCluster, READ_TOKEN};
use tokio_util::sync::CancellationToken;

fn policy(k: usize) -> String {
    format!("policies:\n  - name: errors\n    status_code: {{codes: [ERROR]}}\n  - name: rest-{k}\n    probabilistic: {{percentage: 10}}\n")
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// Waits until every worker runs `version`; returns each worker's delay from `t0`.
async fn propagation(workers: &[Arc<Mutex<Engine>>], version: u64, t0: Instant, limit: Duration) -> Vec<Duration> {
    let mut seen: Vec<Option<Duration>> = vec![None; workers.len()];
    loop {
        let now = t0.elapsed();
        for (i, w) in workers.iter().enumerate() {
            if seen[i].is_none() && w.lock().unwrap().policy_version() >= version {
                seen[i] = Some(now);
            }
        }
        let missing = seen.iter().filter(|s| s.is_none()).count();
        if missing == 0 {
            let mut d: Vec<Duration> = seen.into_iter().map(Option::unwrap).collect();
            d.sort();
            return d;
        }
        assert!(
            now < limit,
            "{missing} of {} workers never applied version {version}",
            workers.len()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_workers_follow_policy_changes_and_a_leader_loss() {
    let n: usize = std::env::var("TAILSIFT_SIM_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut cluster = CoordinatorCluster::start(3).await;
    let leader = cluster.wait_for_leader(&[0, 1, 2]).await;
    let (st, status) = cluster
        .request(0, "GET", "/v1/cluster/status", Some(READ_TOKEN), None)
        .await;
    assert_eq!(st, 200, "{status}");
    let endpoints: Vec<String> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("http://{}", m["raft_addr"].as_str().unwrap()))
        .collect();
    let v1 = cluster.put_policy(leader, &policy(1)).await;

    let shutdown = CancellationToken::new();
    let mut workers = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let (_, compiled) = tailsift_sampler::load_policy(&PolicyConfig::default()).unwrap();
        let engine = Engine::new(
            EngineConfig::from_config(&DecisionConfig::default(), &MemoryConfig::default()),
            ActivePolicy {
                version: 0,
                seed: 0,
                engine: compiled,
            },
            Instant::now(),
        );
        let engine = Arc::new(Mutex::new(engine));
        workers.push(engine.clone());
        let cfg = CoordinatorConfig {
            endpoints: endpoints.clone(),
            token: Some(READ_TOKEN.into()),
            retry_interval: Duration::from_secs(1),
            ..Default::default()
        };
        let with_engine = move |f: &mut dyn FnMut(&mut Engine)| f(&mut engine.lock().unwrap());
        tokio::spawn(tailsift_sampler::coordination::run(
            cfg,
            format!("sim-{i}"),
            0,
            with_engine,
            Default::default(),
            shutdown.clone(),
        ));
    }
    let d = propagation(&workers, v1, started, Duration::from_secs(120)).await;
    eprintln!("{n} workers connected and on v{v1} after {:?}", d[d.len() - 1]);

    // They spread over the coordinators (each starts at an endpoint of its own).
    let m = reqwest::get(format!("http://{}/metrics", cluster.admin_addr(0)))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for node in 1..=3 {
        let streams = metric_value(
            &m,
            "tailsift_coordinator_watchers_connected",
            &[&format!("node=\"{node}\"")],
        );
        assert!(
            streams >= (n / 6) as f64,
            "coordinator {node} serves {streams} of {n} watch streams"
        );
    }

    // Policy versions reach every worker.
    let mut all = Vec::new();
    for k in 2..6 {
        let t0 = Instant::now();
        let v = cluster.put_policy(leader, &policy(k)).await;
        let d = propagation(&workers, v, t0, Duration::from_secs(60)).await;
        eprintln!(
            "v{v} to {n} workers: p50 {:?}, p99 {:?}, last {:?}",
            quantile(&d, 0.5),
            quantile(&d, 0.99),
            d[d.len() - 1]
        );
        all.extend(d);
    }
    all.sort();
    eprintln!(
        "policy propagation to {n} workers over {} samples: p50 {:?}, p99 {:?}",
        all.len(),
        quantile(&all, 0.5),
        quantile(&all, 0.99)
    );

    // The leader is lost: its workers reconnect elsewhere; a write on the new leader succeeds
    // while they do, and every worker gets it.
    let t0 = Instant::now();
    cluster.stop(leader).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let new_leader = cluster.wait_for_leader(&others).await;
    let elected = t0.elapsed();
    let v = cluster.put_policy(new_leader, &policy(99)).await;
    let d = propagation(&workers, v, t0, Duration::from_secs(60)).await;
    eprintln!(
        "leader {} lost: new leader after {elected:?}; v{v} on all {n} workers {:?} after the loss (p50 {:?})",
        leader + 1,
        d[d.len() - 1],
        quantile(&d, 0.5)
    );
    let m = reqwest::get(format!("http://{}/metrics", cluster.admin_addr(new_leader)))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let streams: f64 = others
        .iter()
        .map(|i| {
            metric_value(
                &m,
                "tailsift_coordinator_watchers_connected",
                &[&format!("node=\"{}\"", i + 1)],
            )
        })
        .sum();
    assert!(
        streams >= n as f64,
        "every worker watches a live coordinator again: {streams} of {n}"
    );

    shutdown.cancel();
    cluster.stop_all().await;
}

//! The control plane at scale, in one process: a 3-node coordinator cluster and 1,000 sampling
//! workers' real watch loops (`tailsift_sampler::coordination::run`, each with its own engine and
//! connection). Every worker applies every policy version; they spread over the coordinators; when
//! the leader is lost, the workers it served reconnect elsewhere (jittered) and a policy write on
//! the new leader succeeds at once while they do. Propagation p50/p99, the CPU each version costs
//! and the time the reconnect storm takes are printed (figures belong in docs, not in assertions:
//! this machine is shared).
//!
//! The coordinators run on a tokio runtime of their own (2 threads, like a process of their own),
//! the workers on the test's (2 threads); both share the machine's cores. Environment:
//!
//! * `TAILSIFT_SIM_WORKERS`: the number of workers (1,000).
//! * `TAILSIFT_SIM_PAUSE_MS`: the pause before each policy write (1,500 ms; 0: back to back).
//! * `TAILSIFT_SIM_ONE_RUNTIME=1`: the coordinators on the test's runtime, with the workers.
//! * `TAILSIFT_SIM_DEFAULT_RAFT=1`: the default Raft timings (heartbeat 250 ms, election timeout
//!   1-2 s) instead of the harness's fast ones (100 ms, 0.5-1 s).
//! * `TAILSIFT_SIM_PROCESSES=1`: the coordinators as `tailsift coordinator` processes (the
//!   workspace's build: a release test needs a release build of `tailsift`); their CPU and
//!   resident memory are then read per process, before the workers connect, at rest with every
//!   worker connected and reporting, and after the reconnect storm.
//! * `TAILSIFT_SIM_REST_SECS`: how long the cluster is watched at rest (5 s).

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

/// The name of the coordinators' runtime threads.
const COORDINATOR_THREADS: &str = "tailsift-coord";

/// utime + stime of a `/proc/.../stat` line, in milliseconds (USER_HZ is 100 on Linux).
fn stat_cpu_ms(stat: &str) -> Option<f64> {
    let rest = stat.rsplit_once(") ")?.1;
    let f: Vec<&str> = rest.split(' ').collect();
    Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) * 10.0)
}

/// CPU time used so far, in milliseconds: by the coordinators (their processes when `pids` are
/// given, else this process's coordinator runtime threads) and by all the rest of this process
/// (the workers, the test). `None` where `/proc` cannot tell.
fn cpu_ms(pids: &[u32]) -> Option<(f64, f64)> {
    if !pids.is_empty() {
        let coord = pids
            .iter()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
            .filter_map(|s| stat_cpu_ms(&s))
            .sum();
        let other = stat_cpu_ms(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        return Some((coord, other));
    }
    let tick = 10.0; // USER_HZ is 100 on Linux
    let (mut coord, mut other) = (0.0, 0.0);
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let Ok(stat) = std::fs::read_to_string(task.ok()?.path().join("stat")) else {
            continue; // the thread ended
        };
        let (name, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
        let f: Vec<&str> = rest.split(' ').collect();
        let ms = (f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) * tick;
        if name.starts_with(COORDINATOR_THREADS) {
            coord += ms;
        } else {
            other += ms;
        }
    }
    Some((coord, other))
}

/// Resident memory of each coordinator process, MiB (0 for one that has stopped).
fn rss_mib(pids: &[u32]) -> Vec<f64> {
    pids.iter()
        .map(|p| {
            std::fs::read_to_string(format!("/proc/{p}/status"))
                .ok()
                .and_then(|s| {
                    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_string();
                    line.split_whitespace().nth(1)?.parse::<f64>().ok()
                })
                .map_or(0.0, |kb| kb / 1024.0)
        })
        .collect()
}

fn fmt_mib(v: &[f64]) -> String {
    v.iter().map(|m| format!("{m:.1}")).collect::<Vec<_>>().join(" / ")
}

/// CPU used since `before`, as printed.
fn cpu_since(before: Option<(f64, f64)>, pids: &[u32]) -> String {
    match (before, cpu_ms(pids)) {
        (Some(b), Some(a)) => format!("CPU {:.0} ms coordinators, {:.0} ms workers", a.0 - b.0, a.1 - b.1),
        _ => "CPU not measured".into(),
    }
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

/// A runtime for the coordinators; shut down in the background when dropped (a runtime cannot be
/// dropped inside another, even when the test fails).
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Open Watch streams of the coordinators `nodes` (0-based), from the process's metrics.
async fn watch_streams(cluster: &CoordinatorCluster, nodes: &[usize]) -> f64 {
    let mut sum = 0.0;
    // Each node's own /metrics (in one process they all share one recorder; the label tells).
    for i in nodes {
        let Ok(r) = reqwest::get(format!("http://{}/metrics", cluster.admin_addr(*i))).await else {
            continue;
        };
        let m = r.text().await.unwrap_or_default();
        sum += metric_value(
            &m,
            "tailsift_coordinator_watchers_connected",
            &[&format!("node=\"{}\"", i + 1)],
        );
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_workers_follow_policy_changes_and_a_leader_loss() {
    let n: usize = std::env::var("TAILSIFT_SIM_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let one_runtime = std::env::var_os("TAILSIFT_SIM_ONE_RUNTIME").is_some();
    let default_raft = std::env::var_os("TAILSIFT_SIM_DEFAULT_RAFT").is_some();
    let processes = std::env::var_os("TAILSIFT_SIM_PROCESSES").is_some();
    let rest = Duration::from_secs(
        std::env::var("TAILSIFT_SIM_REST_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5),
    );
    let start = async move {
        if processes {
            CoordinatorCluster::start_processes(3, !default_raft).await
        } else if default_raft {
            CoordinatorCluster::start_default_timings(3).await
        } else {
            CoordinatorCluster::start(3).await
        }
    };
    let rt = OwnRuntime((!one_runtime && !processes).then(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(COORDINATOR_THREADS)
            .enable_all()
            .build()
            .expect("coordinator runtime")
    }));
    let mut cluster = match &rt.0 {
        Some(rt) => rt.spawn(start).await.expect("cluster started"),
        None => start.await,
    };
    eprintln!(
        "coordinators on {}, Raft timings {}",
        if processes {
            "processes of their own"
        } else if one_runtime {
            "the workers' runtime"
        } else {
            "a runtime of their own"
        },
        if default_raft { "default" } else { "fast" }
    );
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
    let pids: Vec<u32> = (0..3).filter_map(|i| cluster.pid(i)).collect();
    if processes {
        let before = cpu_ms(&pids);
        tokio::time::sleep(rest).await;
        eprintln!(
            "at rest with no worker, over {rest:?}: {}; resident memory {} MiB",
            cpu_since(before, &pids),
            fmt_mib(&rss_mib(&pids))
        );
    }

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
    for node in 0..3 {
        let streams = watch_streams(&cluster, &[node]).await;
        assert!(
            streams >= (n / 6) as f64,
            "coordinator {} serves {streams} of {n} watch streams",
            node + 1
        );
    }

    // Policy versions reach every worker. Each write starts `TAILSIFT_SIM_PAUSE_MS` (1,500) after
    // the previous version was applied on every worker: the workers report an applied version
    // within a second (so the reports of the previous one are over), as after a write of an
    // operator. 0: back to back, the reports of the previous version still arriving.
    let pause = Duration::from_millis(
        std::env::var("TAILSIFT_SIM_PAUSE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1500),
    );
    let mut all = Vec::new();
    for k in 2..6 {
        tokio::time::sleep(pause).await;
        let cpu = cpu_ms(&pids);
        let t0 = Instant::now();
        let v = cluster.put_policy(leader, &policy(k)).await;
        let d = propagation(&workers, v, t0, Duration::from_secs(60)).await;
        eprintln!(
            "v{v} to {n} workers: p50 {:?}, p99 {:?}, last {:?}; {}",
            quantile(&d, 0.5),
            quantile(&d, 0.99),
            d[d.len() - 1],
            cpu_since(cpu, &pids)
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

    // At rest: every worker watching and reporting its applied version periodically
    // (every 3 s, `REPORT_EVERY` of coordination.rs, to every coordinator, at a per-worker phase).
    tokio::time::sleep(pause).await;
    let before = cpu_ms(&pids);
    tokio::time::sleep(rest).await;
    if let (Some(b), Some(a)) = (before, cpu_ms(&pids)) {
        let secs = rest.as_secs_f64();
        eprintln!(
            "at rest with {n} workers, over {rest:?}: coordinators {:.1} % of a core ({:.0} ms/s), workers {:.1} % of a core{}",
            (a.0 - b.0) / secs / 10.0,
            (a.0 - b.0) / secs,
            (a.1 - b.1) / secs / 10.0,
            if processes {
                format!("; resident memory {} MiB", fmt_mib(&rss_mib(&pids)))
            } else {
                String::new()
            }
        );
    }

    // The leader is lost: its workers reconnect elsewhere (followers serve watches too), while
    // the others elect a new leader; a write on the new leader succeeds and every worker gets it.
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let mut before = Vec::new();
    for i in 0..3 {
        before.push(watch_streams(&cluster, &[i]).await);
    }
    let t0 = Instant::now();
    cluster.stop(leader).await;
    let stopped = t0.elapsed();
    let mut reconnected = None;
    let mut elected = None;
    let deadline = t0 + Duration::from_secs(60);
    while reconnected.is_none() || elected.is_none() {
        if reconnected.is_none() && watch_streams(&cluster, &others).await >= n as f64 {
            reconnected = Some(t0.elapsed());
        }
        if elected.is_none() {
            elected = cluster.leader_of(&others).await.map(|l| (l, t0.elapsed()));
        }
        assert!(
            Instant::now() < deadline,
            "60 s after the leader was lost: every worker watching again after {reconnected:?}, a new leader after {elected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (reconnected, (new_leader, elected)) = (reconnected.unwrap(), elected.unwrap());
    // The lost leader's workers spread over both survivors (each picks one of the others at
    // random: ~half each), not all onto the next one in their lists.
    let lost = before[leader];
    let mut gained = Vec::new();
    for i in &others {
        gained.push(watch_streams(&cluster, &[*i]).await - before[*i]);
    }
    let floor = lost / 2.0 - 2.5 * lost.sqrt(); // 5 standard deviations of Binomial(lost, 1/2)
    assert!(
        gained.iter().all(|g| *g >= floor),
        "the lost leader's {lost} watchers moved {gained:?} to the survivors {others:?} (each should gain at least {floor:.0})"
    );
    let v = cluster.put_policy(new_leader, &policy(99)).await;
    let written = t0.elapsed();
    let d = propagation(&workers, v, t0, Duration::from_secs(60)).await;
    eprintln!(
        "leader {} lost (stopped in {stopped:?}): all {n} workers watching the others again after {reconnected:?} ({lost} of them moved: {gained:?}); new leader after {elected:?}; v{v} written after {written:?}, on all {n} workers after {:?} (p50 {:?})",
        leader + 1,
        d[d.len() - 1],
        quantile(&d, 0.5)
    );
    if processes {
        eprintln!(
            "after the storm: resident memory {} MiB (the stopped leader 0)",
            fmt_mib(&rss_mib(&pids))
        );
    }

    shutdown.cancel();
    cluster.stop_all().await;
}

//! `tailsift-propagation`: policy propagation latency, coordinator write -> every sampler applied.
//!
//! For each of `--writes` policy writes: `PUT /v1/policy` on a coordinator (the documents differ
//! in a probabilistic percentage, so every write is a new version), then poll every sampler's
//! `/metrics` every `--poll` (default 5 ms) until its `tailsift_sampler_policy_version` gauge
//! reaches the version the PUT answered. The propagation time of a write is from just before the
//! PUT is sent to the first poll that saw the version on the **last** sampler (so it includes the
//! Raft commit, the watch stream and the swap in the engine, and up to one poll interval).
//! Writes go round robin over the `--admin` URLs (followers forward writes to the leader).
//!
//! Finally every coordinator's `GET /v1/workers` is checked to list every worker at the last
//! version (reports are best effort, so this is reported, not required).
//!
//! Prints one JSON line with the commit latency (PUT answered) and the propagation latency
//! (`count`, `p50_ms`, `p90_ms`, `p99_ms`, `max_ms`, `min_ms`), per-sampler figures, and the
//! number of writes not applied everywhere within `--timeout`.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tailsift_admin_client::{AdminClient, ClientOptions, PolicyDocument};
use tailsift_bench_tools::{ms, summary_json};
use tailsift_loadtest::parse_duration;
use tokio::time::Instant;

/// Policy propagation latency: PUT /v1/policy -> every sampler's policy_version gauge.
#[derive(Debug, Parser)]
#[command(name = "tailsift-propagation")]
struct Cli {
    /// Coordinator admin base URL, e.g. http://127.0.0.1:9710 (repeatable; writes go round robin).
    #[arg(long, required = true)]
    admin: Vec<String>,
    /// Admin bearer token.
    #[arg(long)]
    token: String,
    /// Sampler admin base URL, e.g. http://127.0.0.1:9465 (repeatable).
    #[arg(long, required = true)]
    sampler: Vec<String>,
    /// Policy writes.
    #[arg(long, default_value_t = 50)]
    writes: usize,
    /// Poll interval of the samplers' /metrics.
    #[arg(long, default_value = "5ms", value_parser = parse_duration)]
    poll: Duration,
    /// Pause after a write was applied everywhere, before the next write.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pause: Duration,
    /// Give up on one write after this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
}

fn policy_document(i: usize) -> String {
    format!(
        "policies:\n  - name: errors\n    status_code: {{ codes: [ERROR] }}\n  - name: slow\n    latency: {{ threshold_ms: 1000 }}\n  - name: rest\n    probabilistic: {{ percentage: {} }}\n",
        1 + (i % 50)
    )
}

async fn sampler_version(client: &reqwest::Client, base: &str) -> Option<u64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == "tailsift_sampler_policy_version")
            .then(|| it.next()?.parse::<f64>().ok())
            .flatten()
            .map(|v| v as u64)
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .tcp_nodelay(true)
        .build()?;
    let mut commit = Vec::new();
    let mut propagation = Vec::new();
    let mut per_sampler: Vec<Vec<Duration>> = vec![Vec::new(); cli.sampler.len()];
    let mut timeouts = 0usize;
    let mut last_version = 0u64;
    let admins = cli
        .admin
        .iter()
        .map(|a| {
            let mut o = ClientOptions::new(a.clone()).token(cli.token.clone());
            o.timeout = Duration::from_secs(10);
            AdminClient::new(&o)
        })
        .collect::<Result<Vec<_>, _>>()?;
    for i in 0..cli.writes {
        let admin = &admins[i % admins.len()];
        let t0 = Instant::now();
        let answer = admin.put_policy(&PolicyDocument::yaml(policy_document(i))).await?;
        let t_ack = t0.elapsed();
        let version = answer["version"]
            .as_u64()
            .with_context(|| format!("no version in {answer}"))?;
        last_version = version;
        commit.push(t_ack);
        let mut seen: Vec<Option<Duration>> = vec![None; cli.sampler.len()];
        let deadline = t0 + cli.timeout;
        loop {
            let pending: Vec<usize> = (0..seen.len()).filter(|&k| seen[k].is_none()).collect();
            if pending.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                timeouts += 1;
                eprintln!(
                    "write {i} (version {version}): not applied by {} samplers within {:?}",
                    pending.len(),
                    cli.timeout
                );
                break;
            }
            let polls = pending.iter().map(|&k| {
                let client = &client;
                let base = &cli.sampler[k];
                async move { (k, sampler_version(client, base).await) }
            });
            for (k, v) in futures::future::join_all(polls).await {
                if v.is_some_and(|v| v >= version) {
                    seen[k] = Some(t0.elapsed());
                }
            }
            tokio::time::sleep(cli.poll).await;
        }
        if seen.iter().all(Option::is_some) {
            let all: Vec<Duration> = seen.iter().flatten().copied().collect();
            for (k, d) in all.iter().enumerate() {
                per_sampler[k].push(*d);
            }
            propagation.push(all.iter().copied().max().unwrap_or_default());
        }
        tokio::time::sleep(cli.pause).await;
    }
    // Convergence as the coordinators see it (GET /v1/workers).
    let mut workers = Vec::new();
    for (admin, c) in cli.admin.iter().zip(&admins) {
        let answer: serde_json::Value = match c.workers().await {
            Ok(a) => a,
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        let list = answer
            .get("workers")
            .and_then(|w| w.as_array())
            .cloned()
            .unwrap_or_default();
        let at_last = list
            .iter()
            .filter(|w| w["version"].as_u64() == Some(last_version))
            .count();
        workers.push(serde_json::json!({ "admin": admin, "workers": list.len(), "at_last_version": at_last }));
    }
    let out = serde_json::json!({
        "writes": cli.writes,
        "samplers": cli.sampler.len(),
        "poll_ms": ms(cli.poll),
        "last_version": last_version,
        "timeouts": timeouts,
        "commit": summary_json(commit),
        "propagation": summary_json(propagation),
        "per_sampler": per_sampler.into_iter().map(summary_json).collect::<Vec<_>>(),
        "coordinators_view": workers,
    });
    println!("{out}");
    Ok(())
}

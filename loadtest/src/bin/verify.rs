//! `tailsift-verify`: an OTLP backend that records what the samplers export, and checks it against
//! the manifests `tailsift-loadgen --manifest` wrote. See `tailsift_loadtest::verify`.
//!
//! ```sh
//! tailsift-verify serve --grpc-listen 127.0.0.1:4327 --http-listen 127.0.0.1:4328
//! tailsift-loadgen --endpoint http://127.0.0.1:4317 --duration 60s --manifest /tmp/sent.jsonl
//! tailsift-verify check --url http://127.0.0.1:4328 --manifest /tmp/sent.jsonl --probability 0.1 --wait 120s
//! tailsift-verify down --url http://127.0.0.1:4328     # play a backend outage (UNAVAILABLE / 503)
//! ```
//!
//! Exit status of `check`: 0 when the report passes, 1 when it does not, 2 on errors.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tailsift_loadtest::parse_duration;
use tailsift_loadtest::verify::{CheckRequest, Expectations, Recorder, Report, Stats};

/// Records what samplers export (OTLP/gRPC and OTLP/HTTP) and checks it against what the load
/// generator sent: every error and slow trace kept whole, the probabilistic fraction within
/// binomial tolerance, no split traces, duplicates counted.
#[derive(Debug, Parser)]
#[command(name = "tailsift-verify", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the recording backend until SIGTERM/SIGINT.
    Serve {
        /// OTLP/gRPC listen address.
        #[arg(long, default_value = "127.0.0.1:4327")]
        grpc_listen: String,
        /// OTLP/HTTP (`POST /v1/traces`) and control API listen address.
        #[arg(long, default_value = "127.0.0.1:4328")]
        http_listen: String,
    },
    /// Check what a running verifier received against manifests (read from this machine's disk
    /// by the verifier).
    Check {
        #[command(flatten)]
        target: Target,
        /// A manifest written by `tailsift-loadgen --manifest`; repeatable.
        #[arg(long, required = true)]
        manifest: Vec<PathBuf>,
        /// Probability at which traces that are neither errors nor slow are kept.
        #[arg(long, default_value_t = 0.10)]
        probability: f64,
        /// Allowed deviation of the kept fraction, in binomial standard deviations.
        #[arg(long, default_value_t = 5.0)]
        sigma: f64,
        /// Root duration from which a trace must be kept as slow.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        slow_threshold: Duration,
        /// Do not judge the probabilistic fraction.
        #[arg(long)]
        no_fraction: bool,
        /// Re-check until no trace is lost or split (or this long passed), then once more after
        /// the verifier has received nothing new for 3 s.
        #[arg(long, value_parser = parse_duration)]
        wait: Option<Duration>,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Answer every export with UNAVAILABLE / 503 (a backend outage) until `up`.
    Down(Target),
    /// End the outage.
    Up(Target),
    /// Forget everything received.
    Reset(Target),
    /// Print the counters as JSON.
    Stats(Target),
}

#[derive(Debug, clap::Args)]
struct Target {
    /// The verifier's HTTP address.
    #[arg(long, env = "TAILSIFT_VERIFY_URL", default_value = "http://127.0.0.1:4328")]
    url: String,
}

async fn post_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: String,
    body: Option<&CheckRequest>,
) -> anyhow::Result<T> {
    let mut req = client.post(&url).timeout(Duration::from_secs(120));
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        anyhow::bail!("POST {url}: {status}: {text}");
    }
    Ok(serde_json::from_str(&text)?)
}

async fn stats(client: &reqwest::Client, base: &str) -> anyhow::Result<Stats> {
    Ok(client
        .get(format!("{base}/control/stats"))
        .timeout(Duration::from_secs(30))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

async fn serve(grpc_listen: String, http_listen: String) -> anyhow::Result<()> {
    let grpc = tokio::net::TcpListener::bind(&grpc_listen)
        .await
        .map_err(|e| anyhow::anyhow!("{grpc_listen}: {e}"))?;
    let http = tokio::net::TcpListener::bind(&http_listen)
        .await
        .map_err(|e| anyhow::anyhow!("{http_listen}: {e}"))?;
    eprintln!(
        "tailsift-verify: OTLP/gRPC on {}, OTLP/HTTP and control on {}",
        grpc.local_addr()?,
        http.local_addr()?
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
            shutdown.cancel();
        });
    }
    Recorder::new().serve(grpc, http, shutdown).await
}

async fn check(
    client: &reqwest::Client,
    base: &str,
    body: &CheckRequest,
    wait: Option<Duration>,
) -> anyhow::Result<Report> {
    let url = format!("{base}/control/check");
    let mut report: Report = post_json(client, url.clone(), Some(body)).await?;
    let Some(wait) = wait else {
        return Ok(report);
    };
    let deadline = Instant::now() + wait;
    while (report.lost > 0 || report.split > 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        report = post_json(client, url.clone(), Some(body)).await?;
    }
    // Quiet: nothing new for 3 s (bounded by the deadline), so stragglers are judged too.
    let mut last = stats(client, base).await?.spans;
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(3) && Instant::now() < deadline + Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = stats(client, base).await?.spans;
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
    }
    post_json(client, url, Some(body)).await
}

async fn main_inner(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::new();
    match cli.command {
        Command::Serve {
            grpc_listen,
            http_listen,
        } => {
            serve(grpc_listen, http_listen).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            target,
            manifest,
            probability,
            sigma,
            slow_threshold,
            no_fraction,
            wait,
            json,
        } => {
            let body = CheckRequest {
                manifests: manifest
                    .iter()
                    .map(|p| {
                        std::path::absolute(p)
                            .unwrap_or_else(|_| p.clone())
                            .display()
                            .to_string()
                    })
                    .collect(),
                expect: Expectations {
                    probability,
                    sigma,
                    slow_threshold_ns: slow_threshold.as_nanos() as u64,
                    check_fraction: !no_fraction,
                },
            };
            let report = check(&client, target.url.trim_end_matches('/'), &body, wait).await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("{}", report.line());
            }
            for e in &report.examples {
                eprintln!("  {e}");
            }
            Ok(if report.pass {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Down(t) => control(&client, "down", &t).await,
        Command::Up(t) => control(&client, "up", &t).await,
        Command::Reset(t) => control(&client, "reset", &t).await,
        Command::Stats(t) => control(&client, "stats", &t).await,
    }
}

async fn control(client: &reqwest::Client, path: &str, t: &Target) -> anyhow::Result<ExitCode> {
    let base = t.url.trim_end_matches('/');
    let s = if path == "stats" {
        stats(client, base).await?
    } else {
        post_json::<Stats>(client, format!("{base}/control/{path}"), None).await?
    };
    println!("{}", serde_json::to_string(&s)?);
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match main_inner(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tailsift-verify: {e:#}");
            ExitCode::from(2)
        }
    }
}

//! `tailsift-loadgen`: sends realistic traces to an OTLP endpoint at a controlled rate.
//!
//! Exit status: 0 when every span sent was accepted or rejected by the server as invalid, 1 when
//! requests ultimately failed, 2 on a usage or setup error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::Parser;
use tailsift_loadtest::{parse_duration, run, BatchOptions, Protocol, RetryPolicy, RunOptions, Summary, TraceShape};
use tokio_util::sync::CancellationToken;

/// Load generator for Tailsift: realistic multi-service traces over OTLP/gRPC or OTLP/HTTP.
///
/// Generates traces (several services, span counts from 1 to --max-spans with a long tail,
/// a fraction of error traces and of slow traces), spreads the spans of each trace over several
/// export requests, sends them at a steady rate with retries, and prints a summary.
#[derive(Debug, Parser)]
#[command(name = "tailsift-loadgen", version, about, long_about)]
struct Cli {
    /// OTLP endpoint (default: http://127.0.0.1:4317 for grpc, http://127.0.0.1:4318 for
    /// http-*). For HTTP, /v1/traces is appended.
    #[arg(long, env = "TAILSIFT_LOADGEN_ENDPOINT")]
    endpoint: Option<String>,

    /// Transport and encoding.
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    protocol: Protocol,

    /// Target rate in spans per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,

    /// How long to generate traces (e.g. 30s, 2m, 1m30s); traces started are then finished
    /// [default: 30s, or no limit when --total-spans is given].
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,

    /// Stop after this many spans (exact), or at --duration if also given, whichever comes
    /// first.
    #[arg(long)]
    total_spans: Option<u64>,

    /// Export requests in flight at most.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,

    /// Fraction of traces with at least one span with status ERROR.
    #[arg(long, default_value_t = 0.05)]
    error_rate: f64,

    /// Fraction of traces whose root span lasts at least --slow-threshold.
    #[arg(long, default_value_t = 0.02)]
    slow_rate: f64,

    /// Root duration at or above which a trace is slow.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    slow_threshold: Duration,

    /// Median root duration of the other traces.
    #[arg(long, default_value = "40ms", value_parser = parse_duration)]
    median_duration: Duration,

    /// Fewest spans per trace.
    #[arg(long, default_value_t = 1)]
    min_spans: usize,

    /// Most spans per trace.
    #[arg(long, default_value_t = 300)]
    max_spans: usize,

    /// Median spans per ordinary trace.
    #[arg(long, default_value_t = 8)]
    median_spans: usize,

    /// Fraction of large traces (log-uniform between 4x the median and --max-spans spans).
    #[arg(long, default_value_t = 0.05)]
    large_trace_rate: f64,

    /// Spans per export request to aim for.
    #[arg(long, default_value_t = 100)]
    batch_spans: usize,

    /// Spread the spans of each trace over several requests (true/false, on/off, yes/no).
    #[arg(long, default_value_t = true, value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    spread: bool,

    /// Compress request bodies with gzip.
    #[arg(long)]
    gzip: bool,

    /// Generator seed (default: derived from the clock; printed in the summary).
    #[arg(long)]
    seed: Option<u64>,

    /// Attempts per request, the first included (retryable failures only).
    #[arg(long, default_value_t = 5)]
    max_attempts: u32,

    /// Delay before the first retry; doubles with each retry.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    retry_initial_backoff: Duration,

    /// Longest delay between retries (a server's Retry-After is honoured up to 60s).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    retry_max_backoff: Duration,

    /// Time limit of one request attempt.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,

    /// Write one JSON line per generated trace (trace_id, spans, is_error, is_slow,
    /// duration_ns) to this file at the end, for later verification.
    #[arg(long, value_name = "PATH")]
    trace_log: Option<PathBuf>,

    /// Write the manifest of what was sent to this file at the end, one JSON line per trace:
    /// trace_id, spans, is_error, is_slow, duration_ns and acked (false when a request carrying
    /// spans of the trace was not accepted in the end). `tailsift-verify check` reads it.
    #[arg(long, value_name = "PATH")]
    manifest: Option<PathBuf>,

    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,

    /// Print the summary as one JSON line on stdout (the readable summary goes to stderr).
    #[arg(long)]
    json_summary: bool,
}

impl Cli {
    fn options(&self, cancel: CancellationToken) -> RunOptions {
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
        RunOptions {
            endpoint: self.endpoint.clone(),
            protocol: self.protocol,
            gzip: self.gzip,
            rate: self.rate,
            duration: match (self.duration, self.total_spans) {
                (Some(d), _) => Some(d),
                (None, Some(_)) => None,
                (None, None) => Some(Duration::from_secs(30)),
            },
            total_spans: self.total_spans,
            concurrency: self.concurrency,
            seed,
            shape: TraceShape {
                min_spans: self.min_spans,
                max_spans: self.max_spans,
                median_spans: self.median_spans,
                large_trace_fraction: self.large_trace_rate,
                error_rate: self.error_rate,
                slow_rate: self.slow_rate,
                slow_threshold: self.slow_threshold,
                median_duration: self.median_duration,
                ..TraceShape::default()
            },
            batch: BatchOptions {
                target_spans: self.batch_spans,
                spread: self.spread,
            },
            retry: RetryPolicy {
                max_attempts: self.max_attempts,
                initial_backoff: self.retry_initial_backoff,
                max_backoff: self.retry_max_backoff,
            },
            timeout: self.timeout,
            progress: !self.quiet,
            record_traces: self.trace_log.is_some() || self.manifest.is_some(),
            cancel: Some(cancel),
        }
    }
}

fn write_trace_log(path: &PathBuf, summary: &Summary) -> anyhow::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut out = std::io::BufWriter::new(file);
    for record in &summary.trace_records {
        serde_json::to_writer(&mut out, record)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

fn write_manifest(path: &PathBuf, summary: &Summary) -> anyhow::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut out = std::io::BufWriter::new(file);
    for record in &summary.trace_records {
        let acked = !summary.unacked_traces.contains(&record.trace_id);
        serde_json::to_writer(&mut out, &tailsift_loadtest::verify::ManifestEntry::new(record, acked))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();

    // First Ctrl-C: stop generating, finish started traces and in-flight requests.
    let cancel = CancellationToken::new();
    {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: finishing started traces (Ctrl-C again to abort)");
                cancel.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
    }

    let options = cli.options(cancel);
    let summary = match run(options).await {
        Ok(summary) => summary,
        Err(e) => {
            eprintln!("tailsift-loadgen: {e:#}");
            return ExitCode::from(2);
        }
    };
    if cli.json_summary {
        if !cli.quiet {
            eprintln!("{summary}");
        }
        println!("{}", summary.to_json_line());
    } else {
        println!("{summary}");
    }
    if let Some(path) = &cli.trace_log {
        if let Err(e) = write_trace_log(path, &summary) {
            eprintln!("tailsift-loadgen: cannot write {}: {e:#}", path.display());
            return ExitCode::from(2);
        }
    }
    if let Some(path) = &cli.manifest {
        if let Err(e) = write_manifest(path, &summary) {
            eprintln!("tailsift-loadgen: cannot write {}: {e:#}", path.display());
            return ExitCode::from(2);
        }
    }
    if summary.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

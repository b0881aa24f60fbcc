//! The load run: generate, batch, pace, send concurrently, count.
//!
//! [`run`] generates traces with a [`Generator`], packs them with a
//! [`Batcher`], paces requests so that spans go out at
//! [`RunOptions::rate`] per second (evenly spaced requests, not one burst per second), keeps up
//! to [`RunOptions::concurrency`] requests in flight and returns a [`Summary`]. It stops
//! generating when the duration has elapsed, the total span count is reached or the
//! cancellation token fires; traces already started are then finished (their remaining spans
//! sent) and in-flight requests awaited, so every generated trace is sent whole.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::batch::{BatchOptions, Batcher};
use crate::generator::{now_unix_nanos, Generator, TraceRecord, TraceShape};
use crate::sender::{Delivery, Protocol, RetryPolicy, SendReport, Sender, SenderConfig};

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Where to send; `None` means the protocol's [default](Protocol::default_endpoint).
    pub endpoint: Option<String>,
    /// Transport and encoding.
    pub protocol: Protocol,
    /// Gzip request bodies.
    pub gzip: bool,
    /// Target rate in spans per second; 0 sends as fast as possible.
    pub rate: f64,
    /// Stop generating after this long.
    pub duration: Option<Duration>,
    /// Stop after generating this many spans (exactly; the last trace is cut to fit).
    pub total_spans: Option<u64>,
    /// Requests in flight at most (at least 1).
    pub concurrency: usize,
    /// Generator seed.
    pub seed: u64,
    /// What the traces look like.
    pub shape: TraceShape,
    /// How traces are packed into requests.
    pub batch: BatchOptions,
    /// Retries of retryable failures.
    pub retry: RetryPolicy,
    /// Time limit of one attempt.
    pub timeout: Duration,
    /// Print a progress line to stderr every second.
    pub progress: bool,
    /// Keep a [`TraceRecord`] of every generated trace in [`Summary::trace_records`].
    pub record_traces: bool,
    /// Stops the run early (like the duration running out) when cancelled.
    pub cancel: Option<CancellationToken>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            endpoint: None,
            protocol: Protocol::Grpc,
            gzip: false,
            rate: 1000.0,
            duration: Some(Duration::from_secs(30)),
            total_spans: None,
            concurrency: 8,
            seed: 1,
            shape: TraceShape::default(),
            batch: BatchOptions::default(),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(10),
            progress: false,
            record_traces: false,
            cancel: None,
        }
    }
}

impl RunOptions {
    /// The endpoint to use: the configured one or the protocol's default.
    pub fn effective_endpoint(&self) -> String {
        self.endpoint
            .clone()
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| self.protocol.default_endpoint().to_string())
    }

    /// Checks the options.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.duration.is_none() && self.total_spans.is_none() && self.cancel.is_none() {
            anyhow::bail!("a run needs a duration, a total span count or a cancellation token");
        }
        if !self.rate.is_finite() || self.rate < 0.0 {
            anyhow::bail!("rate must be a non-negative number of spans per second");
        }
        if self.concurrency == 0 {
            anyhow::bail!("concurrency must be at least 1");
        }
        if self.batch.target_spans == 0 {
            anyhow::bail!("batch size must be at least 1 span");
        }
        if self.retry.max_attempts == 0 {
            anyhow::bail!("max attempts must be at least 1");
        }
        self.shape.validate()?;
        Ok(())
    }
}

/// What a run did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Transport used.
    pub protocol: Protocol,
    /// Endpoint used.
    pub endpoint: String,
    /// Generator seed (to reproduce the run).
    pub seed: u64,
    /// Spans in the requests sent (each span counted once, however often retried).
    pub spans_sent: u64,
    /// Spans the server accepted.
    pub spans_accepted: u64,
    /// Spans the server rejected as invalid (whole requests or `partial_success`).
    pub spans_rejected: u64,
    /// Spans in requests that ultimately failed.
    pub spans_failed: u64,
    /// Export requests sent (each counted once, however often retried).
    pub requests: u64,
    /// Requests that needed at least one retry.
    pub requests_retried: u64,
    /// Retry attempts in total.
    pub retry_attempts: u64,
    /// Requests rejected as a whole.
    pub requests_rejected: u64,
    /// Requests that ultimately failed (non-retryable error or attempts exhausted).
    pub requests_failed: u64,
    /// Traces generated (all of them sent whole).
    pub traces: u64,
    /// Traces with at least one error span.
    pub error_traces: u64,
    /// Traces at or above the slow threshold.
    pub slow_traces: u64,
    /// Wall time of the run.
    #[serde(rename = "elapsed_secs", serialize_with = "secs_f64")]
    pub elapsed: Duration,
    /// `spans_sent / elapsed`.
    pub achieved_spans_per_sec: f64,
    /// Acknowledgement latency of accepted requests, from the first attempt to the answer
    /// (retries included): median and 99th percentile, milliseconds (within 5%; 0 when none).
    pub ack_latency_p50_ms: f64,
    pub ack_latency_p99_ms: f64,
    /// Last failure message, if any request failed.
    pub last_error: Option<String>,
    /// One record per generated trace, in generation order, when
    /// [`RunOptions::record_traces`] is set (not part of the JSON form).
    #[serde(skip)]
    pub trace_records: Vec<TraceRecord>,
    /// Trace IDs with spans in a request that was not fully accepted (failed or rejected), when
    /// [`RunOptions::record_traces`] is set (not part of the JSON form).
    #[serde(skip)]
    pub unacked_traces: std::collections::HashSet<[u8; 16]>,
}

fn secs_f64<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Summary {
    /// True when nothing failed: every span was accepted or rejected as invalid.
    pub fn success(&self) -> bool {
        self.requests_failed == 0 && self.spans_failed == 0
    }

    /// The summary as one line of JSON (without the trace records).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |n: u64, of: u64| {
            if of == 0 {
                0.0
            } else {
                100.0 * n as f64 / of as f64
            }
        };
        writeln!(f, "tailsift-loadgen summary")?;
        writeln!(
            f,
            "  target      {} {} (seed {})",
            self.protocol, self.endpoint, self.seed
        )?;
        writeln!(f, "  elapsed     {:.2}s", self.elapsed.as_secs_f64())?;
        writeln!(
            f,
            "  traces      {} ({} with errors, {:.1}%; {} slow, {:.1}%)",
            self.traces,
            self.error_traces,
            pct(self.error_traces, self.traces),
            self.slow_traces,
            pct(self.slow_traces, self.traces)
        )?;
        writeln!(
            f,
            "  spans       {} sent, {} accepted, {} rejected, {} failed",
            self.spans_sent, self.spans_accepted, self.spans_rejected, self.spans_failed
        )?;
        writeln!(
            f,
            "  requests    {} sent, {} retried ({} retry attempts), {} rejected, {} failed",
            self.requests, self.requests_retried, self.retry_attempts, self.requests_rejected, self.requests_failed
        )?;
        writeln!(
            f,
            "  ack latency p50 {:.2} ms, p99 {:.2} ms",
            self.ack_latency_p50_ms, self.ack_latency_p99_ms
        )?;
        write!(f, "  rate        {:.1} spans/s", self.achieved_spans_per_sec)?;
        if let Some(e) = &self.last_error {
            write!(f, "\n  last error  {e}")?;
        }
        Ok(())
    }
}

/// Counters shared by the request tasks.
#[derive(Debug, Default)]
struct Stats {
    spans_sent: AtomicU64,
    spans_accepted: AtomicU64,
    spans_rejected: AtomicU64,
    spans_failed: AtomicU64,
    requests: AtomicU64,
    requests_retried: AtomicU64,
    retry_attempts: AtomicU64,
    requests_rejected: AtomicU64,
    requests_failed: AtomicU64,
    in_flight: AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
    /// Acknowledgement latency of accepted requests (first attempt to answer, retries included).
    ack_latency: LatencyHistogram,
}

/// A bounded histogram of durations: buckets growing by 5% from 10 µs to ~10 min, so a
/// percentile is within 5% of the truth whatever the run's length.
#[derive(Debug)]
struct LatencyHistogram {
    buckets: Vec<AtomicU64>,
}

const LATENCY_BASE_NS: f64 = 10_000.0;
const LATENCY_GROWTH: f64 = 1.05;
const LATENCY_BUCKETS: usize = 370;

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: (0..LATENCY_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl LatencyHistogram {
    fn bucket(d: Duration) -> usize {
        let ns = d.as_nanos() as f64;
        if ns <= LATENCY_BASE_NS {
            return 0;
        }
        (((ns / LATENCY_BASE_NS).ln() / LATENCY_GROWTH.ln()).ceil() as usize).min(LATENCY_BUCKETS - 1)
    }

    fn record(&self, d: Duration) {
        self.buckets[Self::bucket(d)].fetch_add(1, Ordering::Relaxed);
    }

    /// The `q` quantile (upper bound of its bucket), `None` when nothing was recorded.
    fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64 * q).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_nanos((LATENCY_BASE_NS * LATENCY_GROWTH.powi(i as i32)) as u64));
            }
        }
        None
    }
}

impl Stats {
    fn record(&self, report: &SendReport) {
        self.spans_accepted.fetch_add(report.accepted_spans, Ordering::Relaxed);
        self.spans_rejected.fetch_add(report.rejected_spans, Ordering::Relaxed);
        self.spans_failed.fetch_add(report.failed_spans, Ordering::Relaxed);
        if report.retried() {
            self.requests_retried.fetch_add(1, Ordering::Relaxed);
            self.retry_attempts
                .fetch_add(u64::from(report.attempts - 1), Ordering::Relaxed);
        }
        match report.delivery {
            Delivery::Accepted => {}
            Delivery::Rejected => {
                self.requests_rejected.fetch_add(1, Ordering::Relaxed);
            }
            Delivery::Failed => {
                if self.requests_failed.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(
                        reason = report.message.as_deref().unwrap_or("unknown"),
                        "export requests are failing"
                    );
                }
                if let Ok(mut last) = self.last_error.lock() {
                    *last = report.message.clone();
                }
            }
        }
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Spaces requests so that spans leave at `rate` per second.
#[derive(Debug)]
struct Pacer {
    rate: f64,
    next: Instant,
    /// How far behind schedule the pacer may be and still catch up (bounds bursts after a stall).
    slack: Duration,
}

impl Pacer {
    fn new(rate: f64) -> Self {
        Pacer {
            rate,
            next: Instant::now(),
            slack: Duration::from_millis(50),
        }
    }

    /// Waits for the slot of a request carrying `spans` spans.
    async fn wait(&mut self, spans: usize) {
        if self.rate <= 0.0 {
            return;
        }
        let now = Instant::now();
        let earliest = now.checked_sub(self.slack).unwrap_or(now);
        if self.next < earliest {
            self.next = earliest;
        }
        if self.next > now {
            tokio::time::sleep_until(self.next).await;
        }
        self.next += Duration::from_secs_f64(spans as f64 / self.rate);
    }
}

/// Prints a progress line to stderr every second until `stop` fires.
async fn progress_loop(stats: Arc<Stats>, start: Instant, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut last_sent = 0u64;
    let mut last_at = start;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = Instant::now();
        let sent = Stats::get(&stats.spans_sent);
        let window = now.duration_since(last_at).as_secs_f64().max(1e-3);
        let rate = (sent - last_sent) as f64 / window;
        last_sent = sent;
        last_at = now;
        eprintln!(
            "[{:>7.1}s] sent {} accepted {} rejected {} failed {} | requests {} retried {} in-flight {} | {:.0} spans/s",
            now.duration_since(start).as_secs_f64(),
            sent,
            Stats::get(&stats.spans_accepted),
            Stats::get(&stats.spans_rejected),
            Stats::get(&stats.spans_failed),
            Stats::get(&stats.requests),
            Stats::get(&stats.requests_retried),
            Stats::get(&stats.in_flight),
            rate,
        );
    }
}

/// Runs a load test; see the [module docs](self).
pub async fn run(opts: RunOptions) -> anyhow::Result<Summary> {
    opts.validate()?;
    let endpoint = opts.effective_endpoint();
    let sender = Arc::new(
        Sender::new(SenderConfig {
            protocol: opts.protocol,
            endpoint: endpoint.clone(),
            gzip: opts.gzip,
            timeout: opts.timeout,
            retry: opts.retry,
        })
        .await?,
    );
    let stats = Arc::new(Stats::default());
    let cancel = opts.cancel.clone().unwrap_or_default();
    let start = Instant::now();
    let deadline = opts.duration.map(|d| start + d);

    let progress_stop = CancellationToken::new();
    let progress = opts
        .progress
        .then(|| tokio::spawn(progress_loop(stats.clone(), start, progress_stop.clone())));

    let mut generator = Generator::new(opts.shape.clone(), opts.seed);
    let mut generated_spans = 0u64;
    let total = opts.total_spans;
    let source = std::iter::from_fn(|| {
        if cancel.is_cancelled() || deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let trace = match total {
            Some(total) => {
                let left = total.checked_sub(generated_spans).filter(|&l| l > 0)?;
                let cap = usize::try_from(left).unwrap_or(usize::MAX);
                generator.next_trace_capped(now_unix_nanos(), cap)
            }
            None => generator.next_trace(),
        };
        generated_spans += trace.spans as u64;
        Some(trace)
    });
    let batcher = Batcher::new(source, opts.batch);

    let permits = Arc::new(Semaphore::new(opts.concurrency));
    let mut tasks = JoinSet::new();
    let mut pacer = Pacer::new(opts.rate);
    let (mut traces, mut error_traces, mut slow_traces) = (0u64, 0u64, 0u64);
    let mut trace_records = Vec::new();
    let unacked = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));

    for batch in batcher {
        for record in &batch.new_traces {
            traces += 1;
            error_traces += u64::from(record.is_error);
            slow_traces += u64::from(record.is_slow);
        }
        if opts.record_traces {
            trace_records.extend_from_slice(&batch.new_traces);
        }
        if batch.spans == 0 {
            continue;
        }
        let permit = permits.clone().acquire_owned().await?;
        pacer.wait(batch.spans).await;
        stats.spans_sent.fetch_add(batch.spans as u64, Ordering::Relaxed);
        stats.requests.fetch_add(1, Ordering::Relaxed);
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let sender = sender.clone();
        let stats = stats.clone();
        let unacked = opts.record_traces.then(|| unacked.clone());
        tasks.spawn(async move {
            let sent = Instant::now();
            let report = sender.send(&batch.request).await;
            if report.delivery == Delivery::Accepted {
                stats.ack_latency.record(sent.elapsed());
            }
            stats.record(&report);
            if let Some(unacked) = unacked {
                if report.delivery != Delivery::Accepted || report.failed_spans > 0 || report.rejected_spans > 0 {
                    let mut set = unacked.lock().unwrap_or_else(|e| e.into_inner());
                    set.extend(trace_ids(&batch.request));
                }
            }
            stats.in_flight.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
        // Reap finished tasks so the set does not grow over a long run.
        while let Some(done) = tasks.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "request task died");
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "request task died");
        }
    }
    let elapsed = start.elapsed();
    progress_stop.cancel();
    if let Some(handle) = progress {
        // The progress task only prints; its end result does not matter.
        let _ = handle.await;
    }

    let spans_sent = Stats::get(&stats.spans_sent);
    let unacked_traces = std::mem::take(&mut *unacked.lock().unwrap_or_else(|e| e.into_inner()));
    let last_error = stats.last_error.lock().ok().and_then(|l| l.clone());
    Ok(Summary {
        protocol: opts.protocol,
        endpoint,
        seed: opts.seed,
        spans_sent,
        spans_accepted: Stats::get(&stats.spans_accepted),
        spans_rejected: Stats::get(&stats.spans_rejected),
        spans_failed: Stats::get(&stats.spans_failed),
        requests: Stats::get(&stats.requests),
        requests_retried: Stats::get(&stats.requests_retried),
        retry_attempts: Stats::get(&stats.retry_attempts),
        requests_rejected: Stats::get(&stats.requests_rejected),
        requests_failed: Stats::get(&stats.requests_failed),
        traces,
        error_traces,
        slow_traces,
        elapsed,
        achieved_spans_per_sec: spans_sent as f64 / elapsed.as_secs_f64().max(1e-9),
        ack_latency_p50_ms: stats.ack_latency.quantile(0.5).map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        ack_latency_p99_ms: stats.ack_latency.quantile(0.99).map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        last_error,
        trace_records,
        unacked_traces,
    })
}

/// The distinct trace IDs of a request's spans.
fn trace_ids(
    request: &opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
) -> std::collections::HashSet<[u8; 16]> {
    request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .filter_map(|s| <[u8; 16]>::try_from(s.trace_id.as_slice()).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_quantiles_are_within_five_percent() {
        let h = LatencyHistogram::default();
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let within = |got: Duration, want_ms: f64| {
            let g = got.as_secs_f64() * 1000.0;
            assert!(g >= want_ms && g <= want_ms * 1.051, "{g} vs {want_ms}");
        };
        within(h.quantile(0.5).unwrap(), 500.0);
        within(h.quantile(0.99).unwrap(), 990.0);
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
        // Out of range on both sides lands in the end buckets instead of panicking.
        h.record(Duration::ZERO);
        h.record(Duration::from_secs(100_000));
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_spaces_requests_evenly() {
        let mut pacer = Pacer::new(1000.0);
        let start = Instant::now();
        for _ in 0..10 {
            pacer.wait(100).await;
        }
        // 10 requests of 100 spans at 1000 spans/s: the 10th leaves at 0.9 s.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(950), "{elapsed:?}");
    }

    #[test]
    fn options_are_validated() {
        assert!(RunOptions::default().validate().is_ok());
        let no_stop = RunOptions {
            duration: None,
            ..RunOptions::default()
        };
        assert!(no_stop.validate().is_err());
        let bad_rate = RunOptions {
            rate: -1.0,
            ..RunOptions::default()
        };
        assert!(bad_rate.validate().is_err());
        assert_eq!(RunOptions::default().effective_endpoint(), "http://127.0.0.1:4317");
    }
}

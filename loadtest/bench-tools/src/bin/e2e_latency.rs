//! `tailsift-e2e-latency`: end-to-end decision latency of a running Tailsift pipeline.
//!
//! Sends realistic traces (the load generator's [`Generator`] and [`Batcher`]: each trace spread
//! over several requests, the root service's piece last) to an ingest node over OTLP/gRPC at a
//! steady rate, and runs an OTLP/HTTP sink that the sampler exports to
//! (`--export-kind otlp_http --export-endpoint http://<sink>`). For every trace it notes when the
//! request carrying the trace's **last** span was handed to the client, and the sink notes when
//! the first span of that trace arrived: latency = arrival - last send, for every kept trace.
//!
//! Prints one JSON line: traces sent, kept traces seen by the sink, spans received, and the
//! latency distribution (`count`, `p50_ms`, `p90_ms`, `p99_ms`, `max_ms`, `min_ms`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use clap::Parser;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use tailsift_bench_tools::summary_json;
use tailsift_loadtest::{
    now_unix_nanos, parse_duration, BatchOptions, Batcher, Generator, Protocol, RetryPolicy, Sender, SenderConfig,
    TraceShape,
};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// End-to-end decision latency: last span sent -> trace exported by the sampler.
#[derive(Debug, Parser)]
#[command(name = "tailsift-e2e-latency")]
struct Cli {
    /// Ingest node's OTLP/gRPC endpoint.
    #[arg(long)]
    endpoint: String,
    /// Address of the OTLP/HTTP sink (point the sampler's export.endpoint at it).
    #[arg(long)]
    sink_listen: SocketAddr,
    /// Spans per second.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// How long to send.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// After sending: stop once the sink has received nothing for this long.
    #[arg(long, default_value = "8s", value_parser = parse_duration)]
    settle: Duration,
    /// Spans per request.
    #[arg(long, default_value_t = 100)]
    batch_spans: usize,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Generator seed.
    #[arg(long, default_value_t = 11)]
    seed: u64,
    /// Let the sink start and the sampler connect for this long before sending.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    warmup: Duration,
}

#[derive(Default)]
struct Sink {
    /// Trace ID -> when its first span arrived.
    first_arrival: HashMap<[u8; 16], Instant>,
    spans: u64,
    requests: u64,
    last_activity: Option<Instant>,
}

type Shared = Arc<Mutex<Sink>>;

async fn receive(State(sink): State<Shared>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let now = Instant::now();
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let raw = if gzip {
        let mut out = Vec::new();
        if std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut out).is_err() {
            return (StatusCode::BAD_REQUEST, Vec::new());
        }
        Bytes::from(out)
    } else {
        body
    };
    let Ok(req) = ExportTraceServiceRequest::decode(raw) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    let mut s = sink.lock().expect("sink lock");
    s.requests += 1;
    s.last_activity = Some(now);
    for span in req
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
    {
        s.spans += 1;
        if let Ok(id) = <[u8; 16]>::try_from(span.trace_id.as_slice()) {
            s.first_arrival.entry(id).or_insert(now);
        }
    }
    // An empty ExportTraceServiceResponse encodes to zero bytes.
    (StatusCode::OK, Vec::new())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let sink: Shared = Arc::default();
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(sink.clone())
        .into_make_service();
    let listener = tokio::net::TcpListener::bind(cli.sink_listen)
        .await
        .with_context(|| format!("binding {}", cli.sink_listen))?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    tokio::time::sleep(cli.warmup).await;

    let sender = Arc::new(
        Sender::new(SenderConfig {
            protocol: Protocol::Grpc,
            endpoint: cli.endpoint.clone(),
            gzip: false,
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        })
        .await?,
    );
    let start = Instant::now();
    let stop_at = start + cli.duration;
    let mut generator = Generator::new(TraceShape::default(), cli.seed);
    let source = std::iter::from_fn(|| (Instant::now() < stop_at).then(|| generator.next_trace_at(now_unix_nanos())));
    let batcher = Batcher::new(
        source,
        BatchOptions {
            target_spans: cli.batch_spans,
            spread: true,
        },
    );
    // Trace ID -> (spans in the trace, spans handed to the client so far).
    let mut progress: HashMap<[u8; 16], (usize, usize)> = HashMap::new();
    let mut last_sent: HashMap<[u8; 16], Instant> = HashMap::new();
    let permits = Arc::new(Semaphore::new(cli.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let (mut spans_sent, mut failed_spans, mut traces) = (0u64, 0u64, 0u64);
    let mut next = Instant::now();
    for batch in batcher {
        for r in &batch.new_traces {
            traces += 1;
            progress.insert(r.trace_id, (r.spans, 0));
        }
        if batch.spans == 0 {
            continue;
        }
        let permit = permits.clone().acquire_owned().await?;
        if cli.rate > 0.0 {
            tokio::time::sleep_until(next).await;
            next = next.max(Instant::now() - Duration::from_millis(50))
                + Duration::from_secs_f64(batch.spans as f64 / cli.rate);
        }
        let now = Instant::now();
        let mut in_request: HashMap<[u8; 16], usize> = HashMap::new();
        for span in batch
            .request
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
        {
            if let Ok(id) = <[u8; 16]>::try_from(span.trace_id.as_slice()) {
                *in_request.entry(id).or_default() += 1;
            }
        }
        for (id, n) in in_request {
            if let Some(p) = progress.get_mut(&id) {
                p.1 += n;
                if p.1 >= p.0 {
                    last_sent.insert(id, now);
                    progress.remove(&id);
                }
            }
        }
        spans_sent += batch.spans as u64;
        let sender = sender.clone();
        tasks.spawn(async move {
            let report = sender.send(&batch.request).await;
            drop(permit);
            report.failed_spans + report.rejected_spans
        });
        while let Some(done) = tasks.try_join_next() {
            failed_spans += done.unwrap_or(0);
        }
    }
    while let Some(done) = tasks.join_next().await {
        failed_spans += done.unwrap_or(0);
    }
    let sent_elapsed = start.elapsed();
    // Wait for the sampler: until the sink has been quiet for `settle`.
    let quiet_since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let last = sink.lock().expect("sink lock").last_activity.unwrap_or(quiet_since);
        if last.max(quiet_since).elapsed() >= cli.settle {
            break;
        }
    }
    let s = sink.lock().expect("sink lock");
    let mut latencies = Vec::new();
    let mut before_last_span = 0u64;
    for (id, sent) in &last_sent {
        if let Some(arrived) = s.first_arrival.get(id) {
            match arrived.checked_duration_since(*sent) {
                Some(d) => latencies.push(d),
                None => before_last_span += 1,
            }
        }
    }
    let out = serde_json::json!({
        "traces_sent": traces,
        "spans_sent": spans_sent,
        "spans_failed_or_rejected": failed_spans,
        "send_seconds": sent_elapsed.as_secs_f64(),
        "sink_requests": s.requests,
        "sink_spans": s.spans,
        "traces_exported": s.first_arrival.len(),
        "exported_before_last_span_sent": before_last_span,
        "latency": summary_json(latencies),
    });
    println!("{out}");
    Ok(())
}

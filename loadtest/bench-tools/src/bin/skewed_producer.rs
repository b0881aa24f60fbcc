//! `tailsift-skewed-producer`: plays another producer of the spans topic whose clock is wrong (an
//! OpenTelemetry Collector with `partition_traces_by_id` on a host whose clock is an hour ahead):
//! writes `--per-partition` records to every partition of `--topic`, each one span of a new random
//! trace (an erroring child span, so samplers keep it), in the spans record format, with the
//! record timestamp `--timestamp-ms` or now + `--ahead-secs`. Used by `loadtest/faults.sh`
//! (scenario `skewed-producer`). Prints one JSON line: `{"records", "timestamp_ms"}`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

#[derive(Debug, Parser)]
#[command(name = "tailsift-skewed-producer")]
struct Cli {
    /// Bootstrap servers.
    #[arg(long)]
    brokers: String,
    /// The spans topic.
    #[arg(long, default_value = "tailsift-spans")]
    topic: String,
    /// Record timestamp: now + this many seconds (negative: behind).
    #[arg(long, default_value_t = 3600, allow_hyphen_values = true)]
    ahead_secs: i64,
    /// Record timestamp in milliseconds since the epoch (overrides --ahead-secs), e.g. 0 or
    /// 4102444800000 (the year 2100).
    #[arg(long, allow_hyphen_values = true)]
    timestamp_ms: Option<i64>,
    /// Records written to each partition.
    #[arg(long, default_value_t = 1)]
    per_partition: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let ts = cli
        .timestamp_ms
        .unwrap_or(now_ms.saturating_add(cli.ahead_secs.saturating_mul(1000)));
    let meta: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &cli.brokers).create()?;
    let partitions = meta
        .fetch_metadata(Some(&cli.topic), Duration::from_secs(10))?
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .filter(|n| *n > 0)
        .with_context(|| format!("topic {} not found", cli.topic))?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &cli.brokers)
        .set("message.timeout.ms", "30000")
        .create()?;
    let mut records = 0u64;
    for p in 0..partitions as i32 {
        for _ in 0..cli.per_partition {
            let trace_id: [u8; 16] = rand::random();
            let value = request(trace_id, ts).encode_to_vec();
            let key = hex::encode(trace_id);
            producer
                .send(
                    FutureRecord::to(&cli.topic)
                        .partition(p)
                        .key(&key)
                        .payload(&value)
                        .timestamp(ts),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
                .with_context(|| format!("producing to partition {p}"))?;
            records += 1;
        }
    }
    println!("{}", serde_json::json!({"records": records, "timestamp_ms": ts}));
    Ok(())
}

fn request(trace_id: [u8; 16], ts_ms: i64) -> ExportTraceServiceRequest {
    let start = u64::try_from(ts_ms).unwrap_or(0).saturating_mul(1_000_000);
    let span = Span {
        trace_id: trace_id.to_vec(),
        span_id: rand::random::<[u8; 8]>().to_vec(),
        parent_span_id: rand::random::<[u8; 8]>().to_vec(),
        name: "skewed-producer".into(),
        start_time_unix_nano: start,
        end_time_unix_nano: start.saturating_add(1_000_000),
        status: Some(Status {
            code: status::StatusCode::Error as i32,
            message: "from a producer with a skewed clock".into(),
        }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

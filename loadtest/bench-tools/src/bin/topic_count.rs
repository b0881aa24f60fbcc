//! `tailsift-topic-count`: reads a Kafka topic from the beginning up to its current end (high
//! watermarks taken at start) and counts records, bytes and spans, decoding every record value as
//! an OTLP `ExportTraceServiceRequest`. Used by `loadtest/bench-compare.sh` to verify that every
//! span a collector acknowledged actually reached Kafka, whatever the collector's own metrics say.
//!
//! Prints one JSON line: `{"topic", "partitions", "records", "value_bytes", "spans",
//! "undecodable_records", "keyed_records", "distinct_keys"}`. Exit status 1 when the end was not
//! reached within `--timeout`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// Counts records and OTLP spans in a Kafka topic, from the beginning to the current end.
#[derive(Debug, Parser)]
#[command(name = "tailsift-topic-count")]
struct Cli {
    /// Bootstrap servers.
    #[arg(long)]
    brokers: String,
    /// Topic to count.
    #[arg(long)]
    topic: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
    /// Wait until the topic holds at least this many spans (polling its end again), then count.
    #[arg(long)]
    expect_spans: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let deadline = Instant::now() + Duration::from_secs_f64(cli.timeout);
    loop {
        let c = count(&cli, deadline)?;
        let spans = c["spans"].as_u64().unwrap_or(0);
        match cli.expect_spans {
            Some(want) if spans < want && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(500));
            }
            _ => {
                println!("{c}");
                return Ok(());
            }
        }
    }
}

fn count(cli: &Cli, deadline: Instant) -> anyhow::Result<serde_json::Value> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cli.brokers)
        .set("group.id", format!("tailsift-topic-count-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating the consumer")?;
    let timeout = Duration::from_secs(10);
    let md = consumer
        .fetch_metadata(Some(&cli.topic), timeout)
        .context("fetching metadata")?;
    let Some(t) = md.topics().iter().find(|t| t.name() == cli.topic) else {
        bail!("topic {} not in metadata", cli.topic);
    };
    if t.partitions().is_empty() {
        bail!("topic {} has no partitions (does it exist?)", cli.topic);
    }
    let mut tpl = TopicPartitionList::new();
    // Per partition: the offset to reach (high watermark at start).
    let mut ends = Vec::new();
    for p in t.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(&cli.topic, p.id(), timeout)
            .with_context(|| format!("watermarks of partition {}", p.id()))?;
        if high > low {
            tpl.add_partition_offset(&cli.topic, p.id(), Offset::Offset(low))?;
            ends.push((p.id(), high));
        }
    }
    let partitions = t.partitions().len();
    let (mut records, mut bytes, mut spans, mut undecodable, mut keyed) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut keys: HashSet<Vec<u8>> = HashSet::new();
    if !ends.is_empty() {
        consumer.assign(&tpl).context("assigning partitions")?;
    }
    let mut reached: HashSet<i32> = HashSet::new();
    while reached.len() < ends.len() {
        if Instant::now() >= deadline {
            bail!(
                "timed out: {} of {} partitions read to their end ({records} records, {spans} spans so far)",
                reached.len(),
                ends.len()
            );
        }
        let Some(m) = consumer.poll(Duration::from_millis(200)) else { continue };
        let m = m.context("consuming")?;
        records += 1;
        let value = m.payload().unwrap_or_default();
        bytes += value.len() as u64;
        match ExportTraceServiceRequest::decode(value) {
            Ok(req) => {
                spans += req
                    .resource_spans
                    .iter()
                    .flat_map(|rs| &rs.scope_spans)
                    .map(|ss| ss.spans.len() as u64)
                    .sum::<u64>()
            }
            Err(_) => undecodable += 1,
        }
        if let Some(k) = m.key().filter(|k| !k.is_empty()) {
            keyed += 1;
            keys.insert(k.to_vec());
        }
        if let Some(&(_, end)) = ends.iter().find(|(p, _)| *p == m.partition()) {
            if m.offset() + 1 >= end {
                reached.insert(m.partition());
            }
        }
    }
    Ok(serde_json::json!({
        "topic": cli.topic,
        "partitions": partitions,
        "records": records,
        "value_bytes": bytes,
        "spans": spans,
        "undecodable_records": undecodable,
        "keyed_records": keyed,
        "distinct_keys": keys.len(),
    }))
}

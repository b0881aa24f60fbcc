//! `tailsift-topic-count`: reads a Kafka topic from the beginning up to its end and counts
//! records, bytes and spans, reading every record value as an OTLP `ExportTraceServiceRequest`
//! (spans counted at the wire level, without decoding them). Used by `loadtest/bench-compare.sh`
//! to verify that every span a collector acknowledged actually reached Kafka, whatever the
//! collector's own metrics say.
//!
//! Prints one JSON line: `{"topic", "partitions", "records", "value_bytes", "spans",
//! "undecodable_records", "keyed_records", "distinct_keys"}`. Exit status 1 when the end (and
//! `--expect-spans`) was not reached within `--timeout`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
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
    /// Keep reading until at least this many spans were seen (for collectors that acknowledge
    /// before writing), then up to the topic's end.
    #[arg(long)]
    expect_spans: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let deadline = Instant::now() + Duration::from_secs_f64(cli.timeout);
    let c = count(&cli, deadline)?;
    println!("{c}");
    Ok(())
}

/// Spans in an encoded `ExportTraceServiceRequest`, counted at the wire level (resource_spans = 1
/// -> scope_spans = 2 -> spans = 2) without decoding the spans; `None` if it is not valid protobuf.
fn count_spans(buf: &[u8]) -> Option<u64> {
    let mut n = 0;
    for rs in fields(buf, 1)? {
        for ss in fields(rs, 2)? {
            n += fields(ss, 2)?.len() as u64;
        }
    }
    Some(n)
}

/// The length-delimited fields numbered `want` of a message (other fields skipped).
fn fields(mut buf: &[u8], want: u64) -> Option<Vec<&[u8]>> {
    fn varint(buf: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = buf.split_first()?;
            *buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        match key & 7 {
            0 => {
                varint(&mut buf)?;
            }
            1 => buf = buf.get(8..)?,
            5 => buf = buf.get(4..)?,
            2 => {
                let len = usize::try_from(varint(&mut buf)?).ok()?;
                let (field, rest) = (buf.get(..len)?, buf.get(len..)?);
                if key >> 3 == want {
                    out.push(field);
                }
                buf = rest;
            }
            _ => return None,
        }
    }
    Some(out)
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
    let ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    for &p in &ids {
        tpl.add_partition_offset(&cli.topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl).context("assigning partitions")?;
    let (mut records, mut bytes, mut spans, mut undecodable, mut keyed) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut keys: HashSet<Vec<u8>> = HashSet::new();
    // Next offset to read per partition.
    let mut next: HashMap<i32, i64> = HashMap::new();
    loop {
        // Done once every partition is read up to its current end and, with --expect-spans, that
        // many spans were seen (a collector that acknowledges before writing may still be busy).
        let enough = cli.expect_spans.is_none_or(|want| spans >= want);
        if enough {
            let mut at_end = true;
            for &p in &ids {
                let (_, high) = consumer
                    .fetch_watermarks(&cli.topic, p, timeout)
                    .with_context(|| format!("watermarks of partition {p}"))?;
                if next.get(&p).copied().unwrap_or(0) < high {
                    at_end = false;
                    break;
                }
            }
            if at_end {
                break;
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out with {records} records, {spans} spans read (expected {:?} spans)",
                cli.expect_spans
            );
        }
        // Read what is there, then check the ends again.
        while let Some(m) = consumer.poll(Duration::from_millis(300)) {
            let m = m.context("consuming")?;
            records += 1;
            let value = m.payload().unwrap_or_default();
            bytes += value.len() as u64;
            match count_spans(value) {
                Some(n) => spans += n,
                None => undecodable += 1,
            }
            if let Some(k) = m.key().filter(|k| !k.is_empty()) {
                keyed += 1;
                keys.insert(k.to_vec());
            }
            next.insert(m.partition(), m.offset() + 1);
            if Instant::now() >= deadline {
                break;
            }
        }
    }
    Ok(serde_json::json!({
        "topic": cli.topic,
        "partitions": ids.len(),
        "records": records,
        "value_bytes": bytes,
        "spans": spans,
        "undecodable_records": undecodable,
        "keyed_records": keyed,
        "distinct_keys": keys.len(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message as _;

    #[test]
    fn wire_count_matches_decoded_count() {
        let span = |i: u8| Span {
            trace_id: vec![i; 16],
            span_id: vec![i; 8],
            name: format!("span {i}"),
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            ..Default::default()
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    scope_spans: vec![
                        ScopeSpans {
                            spans: vec![span(1), span(2)],
                            ..Default::default()
                        },
                        ScopeSpans {
                            spans: vec![span(3)],
                            ..Default::default()
                        },
                    ],
                    schema_url: "x".into(),
                    ..Default::default()
                },
                ResourceSpans {
                    scope_spans: vec![ScopeSpans {
                        spans: vec![span(4)],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
        };
        assert_eq!(count_spans(&req.encode_to_vec()), Some(4));
        assert_eq!(count_spans(&[]), Some(0));
        assert_eq!(count_spans(&[0x0a, 0x05, 0x01]), None);
    }
}

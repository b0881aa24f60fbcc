//! What-if replay (`tailsift policy whatif FILE --since 30m`): a candidate policy run over a
//! recorded window of the spans topic, beside the live policy, without exporting or committing
//! anything.
//!
//! Kafka is the durable log of every span, so the window can be read again: per partition from
//! the first offset at or after `since` (offsets-for-times; the low watermark when the broker
//! has none) up to `until` (default: when the replay starts). Partitions are assigned directly
//! (no consumer group: a unique `group.id` that never commits, `enable.auto.commit=false`).
//! Records are grouped into traces by trace ID per partition, as a sampler buffers them; when a
//! partition has been read to its end every trace is decided by both policies with the same
//! seed and the same `now` (the trace's latest span end), and tallied per rule: traces, spans
//! and encoded bytes kept by the candidate, by the live policy, by both and by one only.
//! Probabilistic rules are consistent hashes of (trace ID, seed), so for stateless rules the
//! prediction is exact. Rate limiters, byte limits, composite budgets and the dynamic
//! (Refinery) samplers depend on time and order: they are replayed on span time, in offset
//! order per partition, with the whole cluster's budget (`budget_share` 1) — an estimate.
//!
//! Memory is bounded: past `max_traces` traces or `max_bytes` record bytes held, the oldest
//! traces are decided early (`decided_early`); later records of them follow that decision, as
//! a sampler's late spans do (`late_records`). Malformed records (no span with a trace ID) are
//! skipped and counted.
//!
//! [`Replay`] is the pure part (records in, [`Report`] out); [`replay_kafka`] reads Kafka.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tailsift_policy::{Decision, PolicyEngine};

use crate::extract::{scan_record, trace_data, Resources};

pub use tailsift_kafka::Connection;

type TraceId = [u8; 16];

/// Traces, spans and encoded record bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub traces: u64,
    pub spans: u64,
    pub bytes: u64,
}

impl Counts {
    fn add(&mut self, traces: u64, spans: u64, bytes: u64) {
        self.traces += traces;
        self.spans += spans;
        self.bytes += bytes;
    }
}

/// Signed `a - b` of [`Counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Delta {
    pub traces: i64,
    pub spans: i64,
    pub bytes: i64,
}

impl Delta {
    fn of(a: Counts, b: Counts) -> Delta {
        Delta {
            traces: a.traces as i64 - b.traces as i64,
            spans: a.spans as i64 - b.spans as i64,
            bytes: a.bytes as i64 - b.bytes as i64,
        }
    }
}

/// What one policy keeps over the window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PolicyTally {
    /// Everything kept.
    pub kept: Counts,
    /// Kept, by the rule that kept.
    pub kept_by_rule: BTreeMap<String, Counts>,
    /// Dropped by a rule that matched (a `drop` policy, an inverted match); traces no rule kept
    /// are not listed.
    pub dropped_by_rule: BTreeMap<String, Counts>,
}

impl PolicyTally {
    fn add(&mut self, d: &Decided, traces: u64, spans: u64, bytes: u64) {
        if d.keep {
            self.kept.add(traces, spans, bytes);
        }
        if let Some(rule) = &d.rule {
            let by = if d.keep {
                &mut self.kept_by_rule
            } else {
                &mut self.dropped_by_rule
            };
            by.entry(rule.clone()).or_default().add(traces, spans, bytes);
        }
    }
}

/// One partition's part of the window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PartitionWindow {
    pub partition: i32,
    /// First offset of the window (offsets-for-times of `since`, or the low watermark).
    pub start_offset: i64,
    /// Where reading was to stop: offsets-for-times of `until`, or the high watermark at start
    /// (read on past it until quiet: some brokers report it low).
    pub end_offset: i64,
    /// The last offset read in the window, +1 (`start_offset` when nothing was read).
    pub read_through: i64,
    pub records: u64,
    /// The partition's first offset still stored (the topic's retention deletes below it).
    pub low_watermark: i64,
    /// The time of the first record read, Unix milliseconds (0: none).
    pub first_record_unix_ms: i64,
}

impl PartitionWindow {
    /// The topic's retention may have deleted records of the window: reading starts at the
    /// first offset still stored, and records were deleted before it.
    pub fn truncated_by_retention(&self) -> bool {
        self.low_watermark > 0 && self.start_offset <= self.low_watermark
    }
}

/// The answer of `tailsift policy whatif`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub topic: String,
    pub since_unix_ms: i64,
    pub until_unix_ms: i64,
    pub seed: u64,
    pub partitions: Vec<PartitionWindow>,
    /// Records in the window, malformed ones included.
    pub records_read: u64,
    /// Records without a span carrying a trace ID: skipped.
    pub malformed_records: u64,
    /// Traces decided before their partition was read to the end, to stay under the memory
    /// bounds; their later records followed that decision.
    pub decided_early: u64,
    /// Records of traces already decided early.
    pub late_records: u64,
    /// Records of traces that started after the cutoff for new traces (captures): skipped.
    pub after_cutoff_records: u64,
    /// Every trace in the window.
    pub total: Counts,
    pub candidate: PolicyTally,
    pub live: PolicyTally,
    /// Kept by both policies.
    pub both_kept: Counts,
    /// Kept by the candidate only (what it adds).
    pub candidate_only: Counts,
    /// Kept by the live policy only (what the candidate would lose).
    pub live_only: Counts,
    /// candidate kept - live kept.
    pub difference: Delta,
    /// Per rule name (either policy's): candidate kept by the rule - live kept by the rule.
    pub difference_by_rule: BTreeMap<String, Delta>,
    /// False when the read stopped at the timeout before every partition reached its end.
    pub complete: bool,
}

/// One policy's decision, as tallied.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decided {
    keep: bool,
    rule: Option<String>,
}

impl From<Decision> for Decided {
    fn from(d: Decision) -> Self {
        Decided {
            keep: d.keep,
            rule: d.policy,
        }
    }
}

struct Held {
    seq: u64,
    records: Vec<Bytes>,
    bytes: usize,
}

/// Limits of a [`Replay`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most traces held undecided.
    pub max_traces: usize,
    /// Most record bytes held undecided.
    pub max_bytes: usize,
    /// Most early decisions remembered for their late records (then the oldest are forgotten,
    /// and a later record of such a trace starts a new trace).
    pub max_remembered: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_traces: 200_000,
            max_bytes: 256 << 20,
            max_remembered: 1_000_000,
        }
    }
}

/// A trace (or late records of one) the candidate policy kept, handed to the replay's sink.
pub struct KeptTrace<'a> {
    pub partition: i32,
    pub trace_id: TraceId,
    pub records: &'a [Bytes],
    /// Spans in `records`.
    pub spans: u64,
    /// The rule that kept it.
    pub rule: Option<&'a str>,
    /// Records that arrived after the trace was decided early.
    pub late: bool,
}

/// Where a [`Replay`] hands the traces the candidate keeps (captures export them).
pub type Sink = Box<dyn FnMut(KeptTrace<'_>) + Send>;

/// The replay itself, without Kafka: records in (per partition, in offset order), a [`Report`]
/// out.
pub struct Replay {
    candidate: PolicyEngine,
    live: PolicyEngine,
    seed: u64,
    limits: Limits,
    held: HashMap<(i32, TraceId), Held>,
    /// Held traces by arrival order.
    order: BTreeMap<u64, (i32, TraceId)>,
    held_bytes: usize,
    next_seq: u64,
    /// Decisions of traces decided early, for their late records; with their order.
    early: HashMap<(i32, TraceId), (Decided, Decided)>,
    early_order: std::collections::VecDeque<(i32, TraceId)>,
    report: Report,
    sink: Option<Sink>,
    /// Records stamped after this (Unix ms) start no new trace.
    new_traces_until_ms: Option<i64>,
}

impl Replay {
    pub fn new(candidate: PolicyEngine, live: PolicyEngine, seed: u64, limits: Limits) -> Replay {
        let (mut candidate, mut live) = (candidate, live);
        // One reader sees every partition: the whole cluster's budgets apply.
        candidate.set_budget_share(1.0);
        live.set_budget_share(1.0);
        Replay {
            candidate,
            live,
            seed,
            limits,
            held: HashMap::new(),
            order: BTreeMap::new(),
            held_bytes: 0,
            next_seq: 0,
            early: HashMap::new(),
            early_order: Default::default(),
            report: Report {
                seed,
                complete: true,
                ..Default::default()
            },
            sink: None,
            new_traces_until_ms: None,
        }
    }

    /// Both policies' budgets as this share of the cluster's (a replay of some of the partitions).
    pub fn with_budget_share(mut self, share: f64) -> Replay {
        self.candidate.set_budget_share(share);
        self.live.set_budget_share(share);
        self
    }

    /// Hands every trace the candidate keeps (and late records of traces it kept early) to
    /// `sink`, with its records.
    pub fn with_sink(mut self, sink: Sink) -> Replay {
        self.sink = Some(sink);
        self
    }

    /// Records stamped after `unix_ms` start no new trace (they still join traces already
    /// started): a capture's window ends at `until`, but traces running then are read to their
    /// end.
    pub fn new_traces_until(mut self, unix_ms: i64) -> Replay {
        self.new_traces_until_ms = Some(unix_ms);
        self
    }

    /// [`Replay::record`] with the record's timestamp (for the new-trace cutoff).
    pub fn record_stamped(&mut self, partition: i32, payload: Bytes, timestamp_ms: Option<i64>) {
        if let (Some(cut), Some(ts)) = (self.new_traces_until_ms, timestamp_ms) {
            if ts > cut {
                let Some(trace_id) = scan_record(&payload).trace_id else {
                    self.report.records_read += 1;
                    self.report.malformed_records += 1;
                    return;
                };
                let key = (partition, trace_id);
                if !self.held.contains_key(&key) && !self.early.contains_key(&key) {
                    self.report.records_read += 1;
                    self.report.after_cutoff_records += 1;
                    return;
                }
            }
        }
        self.record(partition, payload);
    }

    /// One record of the window.
    pub fn record(&mut self, partition: i32, payload: Bytes) {
        self.report.records_read += 1;
        let scan = scan_record(&payload);
        let Some(trace_id) = scan.trace_id else {
            self.report.malformed_records += 1;
            return;
        };
        let key = (partition, trace_id);
        if let Some((c, l)) = self.early.get(&key) {
            // A late record of a trace decided early: it follows that decision (a sampler sends
            // it on, or drops it, by its decision cache). Spans counted as in the record.
            let (spans, bytes) = (scan.span_ids.len() as u64, payload.len() as u64);
            self.report.late_records += 1;
            self.report.total.add(0, spans, bytes);
            let (c, l) = (c.clone(), l.clone());
            self.tally(&c, &l, 0, spans, bytes);
            if let (true, Some(sink)) = (c.keep, self.sink.as_mut()) {
                sink(KeptTrace {
                    partition,
                    trace_id,
                    records: std::slice::from_ref(&payload),
                    spans,
                    rule: c.rule.as_deref(),
                    late: true,
                });
            }
            return;
        }
        let len = payload.len();
        let held = self.held.entry(key).or_insert_with(|| {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.order.insert(seq, key);
            Held {
                seq,
                records: Vec::new(),
                bytes: 0,
            }
        });
        held.records.push(payload);
        held.bytes += len;
        self.held_bytes += len;
        while self.held.len() > self.limits.max_traces || self.held_bytes > self.limits.max_bytes {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.report.decided_early += 1;
            let (c, l) = self.decide(oldest);
            self.early.insert(oldest, (c, l));
            self.early_order.push_back(oldest);
            while self.early_order.len() > self.limits.max_remembered {
                if let Some(k) = self.early_order.pop_front() {
                    self.early.remove(&k);
                }
            }
        }
    }

    /// `partition` has been read to its end: decides its traces, oldest first.
    pub fn finish_partition(&mut self, partition: i32) {
        let keys: Vec<(i32, TraceId)> = self.order.values().filter(|(p, _)| *p == partition).copied().collect();
        for key in keys {
            if let Some(h) = self.held.get(&key) {
                self.order.remove(&h.seq);
            }
            self.decide(key);
        }
        self.early.retain(|(p, _), _| *p != partition);
        self.early_order.retain(|(p, _)| *p != partition);
    }

    /// Decides every trace still held and returns the report.
    pub fn finish(mut self) -> Report {
        while let Some((_, key)) = self.order.pop_first() {
            self.decide(key);
        }
        let r = &mut self.report;
        r.difference = Delta::of(r.candidate.kept, r.live.kept);
        let names: std::collections::BTreeSet<&String> = r
            .candidate
            .kept_by_rule
            .keys()
            .chain(r.live.kept_by_rule.keys())
            .collect();
        r.difference_by_rule = names
            .into_iter()
            .map(|n| {
                let c = r.candidate.kept_by_rule.get(n).copied().unwrap_or_default();
                let l = r.live.kept_by_rule.get(n).copied().unwrap_or_default();
                (n.clone(), Delta::of(c, l))
            })
            .collect();
        self.report
    }

    /// The report so far (for the Kafka reader to fill in the window).
    fn report_mut(&mut self) -> &mut Report {
        &mut self.report
    }

    /// Decides a held trace (already out of `order`) with both policies and tallies it.
    fn decide(&mut self, key: (i32, TraceId)) -> (Decided, Decided) {
        let Some(h) = self.held.remove(&key) else {
            return (
                Decided {
                    keep: false,
                    rule: None,
                },
                Decided {
                    keep: false,
                    rule: None,
                },
            );
        };
        self.held_bytes -= h.bytes;
        let trace_id = key.1;
        let (c, spans, bytes, now) = {
            let mut res = Resources::new();
            let data = trace_data(trace_id, &h.records, self.candidate.requirements(), &mut res);
            // Both policies decide "now" = the trace's latest span end (span time, not replay time).
            let now = data.spans.iter().map(|s| s.end_unix_nano).max().unwrap_or(0);
            let d = self.candidate.decide(&data, self.seed, now);
            (Decided::from(d), data.spans.len() as u64, data.size_bytes, now)
        };
        let l = {
            let mut res = Resources::new();
            let data = trace_data(trace_id, &h.records, self.live.requirements(), &mut res);
            Decided::from(self.live.decide(&data, self.seed, now))
        };
        self.report.total.add(1, spans, bytes);
        self.tally(&c, &l, 1, spans, bytes);
        if let (true, Some(sink)) = (c.keep, self.sink.as_mut()) {
            sink(KeptTrace {
                partition: key.0,
                trace_id,
                records: &h.records,
                spans,
                rule: c.rule.as_deref(),
                late: false,
            });
        }
        (c, l)
    }

    fn tally(&mut self, c: &Decided, l: &Decided, traces: u64, spans: u64, bytes: u64) {
        let r = &mut self.report;
        r.candidate.add(c, traces, spans, bytes);
        r.live.add(l, traces, spans, bytes);
        match (c.keep, l.keep) {
            (true, true) => r.both_kept.add(traces, spans, bytes),
            (true, false) => r.candidate_only.add(traces, spans, bytes),
            (false, true) => r.live_only.add(traces, spans, bytes),
            (false, false) => {}
        }
    }

    /// Traces held undecided.
    pub fn held_traces(&self) -> usize {
        self.held.len()
    }
}

/// The live policy and the seed in force, from a coordinator's `GET /v1/policy` answer
/// (`{version, policy: {format, document, ...}, seeds: {current: {seed, ...}, ...}}`).
pub fn live_from_policy_answer(answer: &serde_json::Value) -> Result<(PolicyEngine, u64), String> {
    let policy = answer
        .get("policy")
        .filter(|p| !p.is_null())
        .ok_or("the cluster has no policy version yet")?;
    let document = policy
        .get("document")
        .and_then(|d| d.as_str())
        .ok_or("GET /v1/policy: no policy.document")?;
    let format = policy
        .get("format")
        .and_then(|f| f.as_str())
        .and_then(tailsift_policy::PolicyFormat::from_name);
    let seed = answer
        .pointer("/seeds/current/seed")
        .and_then(|s| s.as_u64())
        .ok_or("GET /v1/policy: no seeds.current.seed")?;
    let (doc, _) = tailsift_policy::PolicyDocument::parse(document, format).map_err(|e| format!("live policy: {e}"))?;
    let engine = PolicyEngine::compile(&doc).map_err(|e| format!("live policy: {e}"))?;
    Ok((engine, seed))
}

/// Where and what to replay.
#[derive(Debug, Clone)]
pub struct KafkaWindow {
    pub connection: tailsift_kafka::Connection,
    pub topic: String,
    pub since_unix_ms: i64,
    /// `None`: when the replay starts.
    pub until_unix_ms: Option<i64>,
    /// Start this many records before each start offset and skip them (tansu 0.6 skips the rest
    /// of a record batch when a fetch starts inside it; 0 for Apache Kafka), as
    /// `kafka.resume_lookback_records`.
    pub lookback_records: i64,
    /// After every partition reached its end offset, read on until nothing arrived for this long.
    pub quiet: Duration,
    /// Give up (report `complete: false`) after this long.
    pub timeout: Duration,
    /// Only these partitions (`None`: every partition of the topic).
    pub partitions: Option<Vec<i32>>,
    /// Set to stop reading early (report `complete: false`).
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl KafkaWindow {
    /// A window of every partition of `topic` from `since_unix_ms` to now, with the defaults of
    /// `tailsift policy whatif`.
    pub fn new(connection: tailsift_kafka::Connection, topic: &str, since_unix_ms: i64) -> Self {
        KafkaWindow {
            connection,
            topic: topic.to_string(),
            since_unix_ms,
            until_unix_ms: None,
            lookback_records: 0,
            quiet: Duration::from_secs(2),
            timeout: Duration::from_secs(600),
            partitions: None,
            stop: None,
        }
    }
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum WhatifError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("topic {0} does not exist (or has no partitions)")]
    NoTopic(String),
}

/// Reads the window of the spans topic through `replay` and returns the report. Blocking (a
/// librdkafka consumer polled on the calling thread): call it off any async runtime.
pub fn replay_kafka(window: &KafkaWindow, mut replay: Replay) -> Result<Report, WhatifError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};

    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let until = window.until_unix_ms.unwrap_or(now_ms);
    let started = Instant::now();
    let group = format!("tailsift-whatif-{}-{}", std::process::id(), now_ms);
    let consumer: BaseConsumer = window
        .connection
        .client_config()
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    let timeout = Duration::from_secs(10);
    let md = consumer.fetch_metadata(Some(&window.topic), timeout)?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == window.topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .filter(|p| window.partitions.as_ref().is_none_or(|only| only.contains(p)))
        .collect();
    if partitions.is_empty() {
        return Err(WhatifError::NoTopic(window.topic.clone()));
    }
    // Offsets for `since` and `until`; the watermarks when the broker has none.
    let at = |ms: i64| -> HashMap<i32, i64> {
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            let _ = tpl.add_partition_offset(&window.topic, *p, Offset::Offset(ms));
        }
        match consumer.offsets_for_times(tpl, timeout) {
            Ok(found) => found
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) if e.error().is_ok() && o >= 0 => Some((e.partition(), o)),
                    _ => None,
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "offsets for times failed; reading from the watermarks");
                HashMap::new()
            }
        }
    };
    let starts = at(window.since_unix_ms);
    // Up to now: the high watermark (then on until quiet); an earlier end: its offset.
    let ends = match window.until_unix_ms {
        Some(_) => at(until.saturating_add(1)),
        None => HashMap::new(),
    };
    let mut windows: BTreeMap<i32, PartitionWindow> = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        let (low, high) = consumer.fetch_watermarks(&window.topic, p, timeout)?;
        let start = starts.get(&p).copied().unwrap_or(high).max(low);
        // An end at or before the start is not believed (tansu 0.6 answers 0 for a time after
        // its last record, where Apache Kafka answers "none"): the high watermark then. Records
        // stamped outside the window are skipped whatever the offsets say.
        let end = match ends.get(&p) {
            Some(&o) if o > start => o,
            _ => high,
        }
        .max(start);
        windows.insert(
            p,
            PartitionWindow {
                partition: p,
                start_offset: start,
                end_offset: end,
                read_through: start,
                records: 0,
                low_watermark: low,
                first_record_unix_ms: 0,
            },
        );
        let from = (start - window.lookback_records.max(0)).max(low);
        let _ = tpl.add_partition_offset(&window.topic, p, Offset::Offset(from));
    }
    consumer.assign(&tpl)?;
    // A partition is done when it passed `until` (a record stamped later, at or past its end
    // offset), or when every partition reached its end offset and the topic was quiet.
    let mut done: HashMap<i32, bool> = HashMap::new();
    let mut reached: HashMap<i32, bool> = windows
        .values()
        .map(|w| (w.partition, w.start_offset >= w.end_offset))
        .collect();
    let mut last_record = Instant::now();
    loop {
        let stopped = window
            .stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed));
        if started.elapsed() >= window.timeout || stopped {
            replay.report_mut().complete = false;
            tracing::warn!("what-if replay stopped at its timeout before every partition was read to the end");
            break;
        }
        if reached.values().all(|r| *r) && last_record.elapsed() >= window.quiet {
            break;
        }
        let m = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "reading the spans topic");
                continue;
            }
            Some(Ok(m)) => m,
        };
        last_record = Instant::now();
        let p = m.partition();
        let Some(w) = windows.get_mut(&p) else { continue };
        if done.get(&p).copied().unwrap_or(false) || m.offset() < w.start_offset {
            continue;
        }
        let ts = m.timestamp().to_millis().filter(|t| *t > 0);
        if m.offset() + 1 >= w.end_offset {
            reached.insert(p, true);
        }
        if ts.is_some_and(|t| t > until) {
            if m.offset() >= w.end_offset {
                done.insert(p, true);
                replay.finish_partition(p);
            }
            continue;
        }
        if ts.is_some_and(|t| t < window.since_unix_ms) {
            continue;
        }
        w.records += 1;
        w.read_through = w.read_through.max(m.offset() + 1);
        if w.first_record_unix_ms == 0 {
            w.first_record_unix_ms = ts.unwrap_or(0);
        }
        replay.record_stamped(p, Bytes::copy_from_slice(m.payload().unwrap_or_default()), ts);
    }
    drop(consumer);
    let r = replay.report_mut();
    r.topic = window.topic.clone();
    r.since_unix_ms = window.since_unix_ms;
    r.until_unix_ms = until;
    r.partitions = windows.into_values().collect();
    Ok(replay.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
    use prost::Message;
    use tailsift_policy::PolicyDocument;

    fn engine(yaml: &str) -> PolicyEngine {
        PolicyEngine::compile(&PolicyDocument::from_yaml(yaml).unwrap()).unwrap()
    }

    /// One record of trace `[t; 16]` holding span `[s; 8]` (a root when `root`).
    fn rec(t: u8, s: u8, root: bool, error: bool, ms: u64) -> Bytes {
        let span = Span {
            trace_id: vec![t; 16],
            span_id: vec![s; 8],
            parent_span_id: if root { vec![] } else { vec![1; 8] },
            name: "op".into(),
            start_time_unix_nano: 1_000_000_000,
            end_time_unix_nano: 1_000_000_000 + ms * 1_000_000,
            status: error.then(|| Status {
                code: status::StatusCode::Error as i32,
                message: String::new(),
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
        .encode_to_vec()
        .into()
    }

    const LIVE: &str = "policies:\n  - name: errors\n    status_code: { codes: [ERROR] }\n  - name: slow\n    latency: { threshold_ms: 1000 }\n";
    const CANDIDATE: &str = "policies:\n  - name: errors\n    status_code: { codes: [ERROR] }\n  - name: half\n    probabilistic: { percentage: 50 }\n";

    #[test]
    fn the_sink_gets_kept_traces_with_their_records_and_the_cutoff_skips_new_traces() {
        type Got = Vec<(TraceId, usize, u64, bool)>;
        let got: std::sync::Arc<std::sync::Mutex<Got>> = Default::default();
        let sink = {
            let got = got.clone();
            Box::new(move |t: KeptTrace<'_>| {
                got.lock().unwrap().push((t.trace_id, t.records.len(), t.spans, t.late));
            })
        };
        let limits = Limits {
            max_traces: 2,
            ..Limits::default()
        };
        let mut r = Replay::new(engine(LIVE), engine(LIVE), 7, limits)
            .with_sink(sink)
            .new_traces_until(1_000);
        // Trace 1: error, two records; trace 2: plain (dropped); trace 3 starts after the cutoff.
        r.record_stamped(0, rec(1, 1, true, true, 5), Some(900));
        r.record_stamped(0, rec(2, 1, true, false, 5), Some(950));
        r.record_stamped(0, rec(1, 2, false, false, 5), Some(1_100));
        r.record_stamped(0, rec(3, 1, true, true, 5), Some(1_200));
        r.finish_partition(0);
        assert_eq!(*got.lock().unwrap(), vec![([1; 16], 2, 2, false)]);
        // Over the limits, an early-kept trace's later records reach the sink as late pieces.
        for t in 10..14u8 {
            r.record_stamped(1, rec(t, 1, true, t == 10, 5), Some(500));
        }
        r.record_stamped(1, rec(10, 2, false, false, 5), Some(1_500));
        r.finish_partition(1);
        let report = r.finish();
        assert_eq!(report.after_cutoff_records, 1);
        let g = got.lock().unwrap();
        assert_eq!(g[1..], [([10; 16], 1, 1, false), ([10; 16], 1, 1, true)]);
    }

    #[test]
    fn tallies_per_rule_and_differences() {
        let mut r = Replay::new(engine(CANDIDATE), engine(LIVE), 7, Limits::default());
        // Trace 1: error, two records in one partition; trace 2: slow; traces 10..60: plain.
        let (e1, e2) = (rec(1, 1, true, true, 5), rec(1, 2, false, false, 5));
        let slow = rec(2, 1, true, false, 2000);
        r.record(0, e1.clone());
        r.record(1, slow.clone());
        r.record(0, e2.clone());
        r.record(0, Bytes::from_static(b"\x0a\x03abc")); // no span: malformed
        let mut plain_half = Counts::default();
        let mut slow_half = false;
        for t in 10..60u8 {
            let b = rec(t, 1, true, false, 5);
            if tailsift_policy::consistent_keep([t; 16], 7, 0.5) {
                plain_half.add(1, 1, b.len() as u64);
            }
            r.record(i32::from(t % 2), b);
        }
        if tailsift_policy::consistent_keep([2; 16], 7, 0.5) {
            slow_half = true;
        }
        r.finish_partition(0);
        assert_eq!(
            r.held_traces(),
            26,
            "partition 1 (the slow trace and 25 plain ones) still held"
        );
        let rep = r.finish();
        assert_eq!(rep.records_read, 54);
        assert_eq!(rep.malformed_records, 1);
        assert_eq!(rep.decided_early, 0);
        assert_eq!(rep.total.traces, 52);
        let errors = Counts {
            traces: 1,
            spans: 2,
            bytes: (e1.len() + e2.len()) as u64,
        };
        assert_eq!(rep.live.kept_by_rule["errors"], errors);
        assert_eq!(rep.candidate.kept_by_rule["errors"], errors);
        assert_eq!(
            rep.live.kept_by_rule["slow"],
            Counts {
                traces: 1,
                spans: 1,
                bytes: slow.len() as u64
            }
        );
        let mut half = plain_half;
        if slow_half {
            half.add(1, 1, slow.len() as u64);
        }
        assert_eq!(
            rep.candidate.kept_by_rule.get("half").copied().unwrap_or_default(),
            half
        );
        assert_eq!(rep.live.kept.traces, 2);
        assert_eq!(rep.candidate.kept.traces, 1 + half.traces);
        assert_eq!(rep.both_kept.traces, 1 + u64::from(slow_half));
        assert_eq!(rep.candidate_only.traces, plain_half.traces);
        assert_eq!(rep.live_only.traces, u64::from(!slow_half));
        assert_eq!(rep.difference.traces, rep.candidate.kept.traces as i64 - 2);
        assert_eq!(rep.difference_by_rule["slow"].traces, -1);
        assert_eq!(rep.difference_by_rule["errors"], Delta::default());
        assert_eq!(rep.difference_by_rule["half"].traces, half.traces as i64);
        assert!(rep.complete);
    }

    #[test]
    fn live_policy_from_the_admin_answer() {
        let answer = serde_json::json!({
            "version": 3,
            "policy": {"version": 3, "format": "yaml", "document": LIVE, "seed_epoch": 1},
            "seeds": {"current": {"epoch": 1, "seed": 99, "effective_version": 2}, "next": null},
        });
        let (engine, seed) = live_from_policy_answer(&answer).unwrap();
        assert_eq!(seed, 99);
        assert_eq!(engine.policy_names().collect::<Vec<_>>(), ["errors", "slow"]);
        let none = serde_json::json!({"version": 0, "policy": null, "seeds": {"current": {"seed": 1}}});
        assert!(live_from_policy_answer(&none).is_err());
    }

    #[test]
    fn same_policy_no_difference() {
        let mut r = Replay::new(engine(CANDIDATE), engine(CANDIDATE), 3, Limits::default());
        for t in 1..100u8 {
            r.record(0, rec(t, 1, true, t % 10 == 0, 5));
        }
        let rep = r.finish();
        assert_eq!(rep.candidate, rep.live);
        assert_eq!(rep.candidate_only, Counts::default());
        assert_eq!(rep.live_only, Counts::default());
        assert_eq!(rep.both_kept, rep.live.kept);
        assert!(rep.difference_by_rule.values().all(|d| *d == Delta::default()));
    }

    #[test]
    fn drop_rules_are_listed() {
        let doc = "policies:\n  - name: no-health\n    drop: { policies: [] }\n    match: { span_name: op }\n  - name: all\n    always: {}\n";
        let mut r = Replay::new(engine(doc), engine(LIVE), 0, Limits::default());
        r.record(0, rec(1, 1, true, true, 5));
        let rep = r.finish();
        assert_eq!(rep.candidate.kept.traces, 0);
        assert_eq!(rep.candidate.dropped_by_rule["no-health"].traces, 1);
        assert_eq!(rep.live_only.traces, 1);
    }

    #[test]
    fn memory_bound_decides_oldest_early_and_late_records_follow() {
        let limits = Limits {
            max_traces: 3,
            max_bytes: usize::MAX,
            max_remembered: 100,
        };
        let mut r = Replay::new(engine(LIVE), engine(LIVE), 0, limits);
        // Trace 1 is an error; its second record arrives after it was decided early.
        r.record(0, rec(1, 1, false, true, 5));
        for t in 2..=4u8 {
            r.record(0, rec(t, 1, true, false, 5));
        }
        assert_eq!(r.held_traces(), 3, "trace 1 decided early");
        let late = rec(1, 2, true, false, 5);
        r.record(0, late.clone());
        assert_eq!(r.held_traces(), 3, "a late record is not held");
        let rep = r.finish();
        assert_eq!(rep.decided_early, 1);
        assert_eq!(rep.late_records, 1);
        assert_eq!(rep.total.traces, 4);
        assert_eq!(rep.total.spans, 5);
        let errors = rep.live.kept_by_rule["errors"];
        assert_eq!((errors.traces, errors.spans), (1, 2), "the late span follows the keep");

        // Bytes bound: each record alone is over half the bound.
        let one = rec(9, 1, true, false, 5).len();
        let limits = Limits {
            max_traces: usize::MAX,
            max_bytes: one + one / 2,
            max_remembered: 0,
        };
        let mut r = Replay::new(engine(LIVE), engine(LIVE), 0, limits);
        for t in 10..20u8 {
            r.record(0, rec(t, 1, true, false, 5));
            assert!(r.held_traces() <= 1);
        }
        let rep = r.finish();
        assert_eq!(rep.decided_early, 9);
        assert_eq!(rep.total.traces, 10);
        assert_eq!(rep.late_records, 0);
    }
}

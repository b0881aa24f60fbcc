//! What the run loop, the consumer's thread (rebalance callbacks) and the acker share: the engine
//! and the outputs' destinations, and the graceful handover and decisions preload that the
//! rebalance callbacks run.
//!
//! Lock order: [`Shared::engine`] is the only lock in the sampler (the in-process log's cursor is
//! private to its source and never held with it). It is taken for short, synchronous sections,
//! never across an `.await`, and nothing else is locked while it is held. The handover's wait
//! takes and releases it in a loop, so the run loop, the acker and the exporter keep going.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::Producer;
use rdkafka::{Message, Offset, TopicPartitionList};
use tailsift_kafka::served::{DeliveryContext, Record, ServedProducer};
use tokio::sync::mpsc;

use crate::decisions;
use crate::engine::{self, Engine, Output};

/// Why a source could not deliver, commit or pause.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("partition {0} does not exist")]
    NoSuchPartition(i32),
    #[error("the in-process log was dropped")]
    LogClosed,
}

/// Commits `(partition, next offset to read)` pairs, waiting for the acknowledgement.
pub(crate) type CommitOffsets<'a> = dyn Fn(&[(i32, i64)]) -> Result<(), SourceError> + 'a;

pub(crate) struct Shared {
    pub(crate) engine: Mutex<Engine>,
    pub(crate) export_tx: mpsc::Sender<engine::ExportJob>,
    /// To the read-back thread (traces buffered as an index).
    pub(crate) readback_tx: std::sync::mpsc::SyncSender<engine::ReadBackJob>,
    /// The decisions topic's producer; `None` on the in-process log (no decisions topic).
    pub(crate) decisions: Option<ServedProducer<DeliveryContext>>,
    pub(crate) decisions_topic: String,
    pub(crate) spans_topic: String,
    pub(crate) decisions_replay: i64,
    pub(crate) conn: tailsift_kafka::Connection,
    pub(crate) handover_timeout: Duration,
    pub(crate) resume_lookback: i64,
    /// A rebalance callback is running on the consumer's thread (no records are delivered).
    pub(crate) rebalancing: AtomicBool,
}

impl Shared {
    /// Hands outputs to the exporter and the decisions producer without blocking. Returns false
    /// when the export queue is full (the rest stays queued in the engine).
    pub(crate) fn drain(&self, engine: &mut Engine) -> bool {
        while let Some(o) = engine.pop_output() {
            match o {
                Output::Export(job) => match self.export_tx.try_send(job) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(job)) => {
                        engine.push_front_output(Output::Export(job));
                        return false;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                },
                Output::ReadBack(job) => match self.readback_tx.try_send(job) {
                    Ok(()) => {}
                    Err(std::sync::mpsc::TrySendError::Full(job)) => {
                        engine.push_front_output(Output::ReadBack(job));
                        return false;
                    }
                    Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return false,
                },
                Output::Decision(d) => {
                    let Some(producer) = &self.decisions else { continue };
                    let key = tailsift_otlp::record_key(&d.trace_id);
                    let value = decisions::encode(&d);
                    let rec = Record {
                        topic: &self.decisions_topic,
                        partition: Some(d.partition),
                        key: &key[..],
                        payload: &value,
                    };
                    if let Err(e) = producer.send(rec, None, false) {
                        tracing::debug!(error = %e, "decision record not queued (only duplicate avoidance is affected)");
                    }
                }
            }
        }
        true
    }

    /// Graceful handover of `partitions`: wait for their kept traces' exports, publish every
    /// decision, commit the lowest offset still needed, forget the partitions. Blocking; bounded by
    /// the handover timeout (then the commit stays lower: nothing is lost, at worst re-exported).
    pub(crate) fn handover(&self, commit: &CommitOffsets<'_>, partitions: &[i32]) {
        let owned: Vec<i32> = {
            let mut e = self.engine.lock().unwrap();
            let mine = e.partitions();
            let owned: Vec<i32> = partitions.iter().copied().filter(|p| mine.contains(p)).collect();
            // Nothing more is decided or taken on these partitions, so the exports and decision
            // records waited for below can only finish, and none starts after the wait.
            for p in &owned {
                e.leave(*p);
            }
            owned
        };
        if owned.is_empty() {
            return;
        }
        // Undecided traces stay in Kafka for the next owner (committed offset = their first record);
        // what was decided must reach the backend and the decisions topic first, so the next owner
        // skips it instead of exporting it again.
        let deadline = Instant::now() + self.handover_timeout;
        let wait = || loop {
            let done = {
                let mut e = self.engine.lock().unwrap();
                self.drain(&mut e);
                owned.iter().all(|p| e.unacked_exports(Some(*p)) == 0) && e.outputs_pending() == 0
            };
            if done || Instant::now() >= deadline {
                return done;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let complete = tokio::runtime::Handle::try_current()
            .map(|_| tokio::task::block_in_place(wait))
            .unwrap_or_else(|_| wait());
        if let Some(Err(e)) = self.decisions.as_ref().map(|d| d.flush(Duration::from_secs(5))) {
            tracing::warn!(error = %e, "decision records not flushed before handover");
        }
        let mut e = self.engine.lock().unwrap();
        let offsets: Vec<(i32, i64)> = e.committable().into_iter().filter(|(p, _)| owned.contains(p)).collect();
        if !offsets.is_empty() {
            if let Err(err) = commit(&offsets) {
                tracing::warn!(error = %err, "commit at handover failed; the next owner replays from the previous commit");
            }
        }
        for p in &owned {
            e.revoke(*p);
        }
        ::metrics::gauge!(crate::metrics::PARTITIONS_OWNED).set(e.partitions().len() as f64);
        tracing::info!(partitions = ?owned, complete, ?offsets, "partitions handed over");
    }

    /// Reads recent decisions of `partitions` back into the cache. Reads until the decisions
    /// topic has been quiet for a moment (the high watermark some brokers report is not
    /// reliable), bounded by a deadline.
    pub(crate) fn preload(&self, partitions: &[i32]) {
        if partitions.is_empty() || self.decisions.is_none() {
            return;
        }
        let started = Instant::now();
        let consumer: BaseConsumer = match self
            .conn
            .client_config()
            .set("group.id", "tailsift-decisions-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read decisions");
                return;
            }
        };
        let mut tpl = TopicPartitionList::new();
        // Partitions whose reported high watermark is above the start: read at least that far,
        // however slow the first fetches are (right after a broker restart they can take
        // seconds, and giving up early would lose decisions and split traces).
        let mut expected: HashMap<i32, i64> = HashMap::new();
        for &p in partitions {
            let start = match consumer.fetch_watermarks(&self.decisions_topic, p, Duration::from_secs(5)) {
                Ok((low, high)) => {
                    let start = low.max(high - self.decisions_replay - self.resume_lookback).max(0);
                    if high > start {
                        expected.insert(p, high);
                    }
                    start
                }
                Err(e) => {
                    tracing::warn!(error = %e, partition = p, "cannot read decisions watermarks");
                    continue;
                }
            };
            let _ = tpl.add_partition_offset(&self.decisions_topic, p, Offset::Offset(start));
        }
        if tpl.count() == 0 || consumer.assign(&tpl).is_err() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last_message = Instant::now();
        let mut records = Vec::new();
        // Then until the topic has been quiet for a moment: the reported watermark can lag. Short
        // of the watermark, quiet means much longer (but not forever: tansu skips the rest of a
        // batch when a fetch starts inside it, so the last records may never come).
        while Instant::now() < deadline {
            let quiet = if expected.is_empty() { 500 } else { 5_000 };
            if last_message.elapsed() >= Duration::from_millis(quiet) {
                break;
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    last_message = Instant::now();
                    if expected.get(&m.partition()).is_some_and(|high| m.offset() + 1 >= *high) {
                        expected.remove(&m.partition());
                    }
                    if let Some(d) = decisions::decode(
                        m.partition(),
                        m.key().unwrap_or_default(),
                        m.payload().unwrap_or_default(),
                    ) {
                        records.push(d);
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "reading decisions");
                    break;
                }
                None => {}
            }
        }
        let now = Instant::now();
        let mut e = self.engine.lock().unwrap();
        for d in &records {
            e.preload(d, now);
        }
        ::metrics::counter!(crate::metrics::DECISIONS_PRELOADED).increment(records.len() as u64);
        if !expected.is_empty() {
            tracing::warn!(partitions = ?expected.keys().collect::<Vec<_>>(), "decisions not read up to the high watermark in time; late spans of their traces may be decided again");
        }
        tracing::info!(partitions = ?partitions, decisions = records.len(), took = ?started.elapsed(), "decisions preloaded");
    }
}

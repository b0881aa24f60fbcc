//! The Kafka consumer group as a [`RecordSource`]: a consumer polled on a thread of its own, its
//! rebalance callbacks (graceful handover, decisions preload) and commits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::{RecordSource, SourceError, SourceRecord};
use crate::shared::Shared;

pub(crate) struct Ctx {
    pub(crate) shared: Arc<Shared>,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    /// The default rebalance, plus: assigned partitions start `kafka.resume_lookback_records`
    /// before their committed offset (records before it are ignored by the engine). This works
    /// around brokers (tansu 0.6) whose fetch skips the rest of a record batch when asked for an
    /// offset in its middle.
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        self.shared.rebalancing.store(true, Ordering::Release);
        self.rebalance_now(consumer, err, tpl);
        self.shared.rebalancing.store(false, Ordering::Release);
    }
}

impl Ctx {
    fn rebalance_now(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let committed = consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)).ok();
                let mut from = Vec::new();
                if let Some(c) = committed {
                    for e in c.elements() {
                        if let Offset::Offset(o) = e.offset() {
                            from.push((e.partition(), o));
                            if self.shared.resume_lookback > 0 {
                                let _ = tpl.set_partition_offset(
                                    e.topic(),
                                    e.partition(),
                                    Offset::Offset((o - self.shared.resume_lookback).max(0)),
                                );
                            }
                        }
                    }
                }
                {
                    let mut e = self.shared.engine.lock().unwrap();
                    for (p, o) in &from {
                        e.resume_from(*p, *o);
                    }
                }
                self.pre_rebalance(consumer, &Rebalance::Assign(tpl));
                let r = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = r {
                    tracing::error!(error = %e, "assigning partitions failed");
                }
                self.post_rebalance(consumer, &Rebalance::Assign(tpl));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.pre_rebalance(consumer, &Rebalance::Revoke(tpl));
                let r = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = r {
                    tracing::error!(error = %e, "revoking partitions failed");
                }
                self.post_rebalance(consumer, &Rebalance::Revoke(tpl));
            }
            other => {
                tracing::error!(error = ?other, "rebalance error");
                let _ = consumer.unassign();
            }
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(partitions = ?parts, "partitions revoked");
            self.shared.handover(
                &|offsets| kafka_commit(consumer, &self.shared.spans_topic, offsets, CommitMode::Sync),
                &parts,
            );
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            let committed = consumer
                .committed_offsets((*tpl).clone(), Duration::from_secs(5))
                .map(|t| t.to_topic_map());
            tracing::info!(partitions = ?parts, ?committed, "partitions assigned");
            self.shared.preload(&parts);
            for p in &parts {
                self.shared.engine.lock().unwrap().assign(*p);
            }
            let n = self.shared.engine.lock().unwrap().partitions().len();
            ::metrics::gauge!(crate::metrics::PARTITIONS_OWNED).set(n as f64);
        }
    }
}

/// Commits `offsets` (partition, next offset to read) of `topic` on a Kafka consumer.
fn kafka_commit(
    consumer: &impl Consumer<Ctx>,
    topic: &str,
    offsets: &[(i32, i64)],
    mode: CommitMode,
) -> Result<(), SourceError> {
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(*o));
    }
    if tpl.count() == 0 {
        return Ok(());
    }
    tracing::debug!(offsets = ?tpl.to_topic_map(), "committing");
    Ok(consumer.commit(&tpl, mode)?)
}

/// The Kafka consumer group, polled by a thread of its own: librdkafka runs the rebalance
/// callbacks (the graceful handover, which waits for exports, and the decisions preload, which
/// reads a topic) on the thread that polls, and they may block for seconds; on a dedicated
/// thread they never park a tokio worker. Records reach the run loop in batches (whatever the
/// consumer has ready, up to [`POLL_BATCH`]) through a bounded channel, so a busy partition costs
/// one thread handoff per batch, not per record.
pub(crate) struct KafkaSource {
    pub(crate) consumer: Arc<BaseConsumer<Ctx>>,
    topic: String,
    records: tokio::sync::Mutex<Batches>,
    stop: Arc<AtomicBool>,
    poller: Mutex<Option<std::thread::JoinHandle<()>>>,
}

type Polled = Result<SourceRecord, SourceError>;

/// Batches from the polling thread, and what is left of the current one.
struct Batches {
    rx: mpsc::Receiver<Vec<Polled>>,
    ready: std::collections::VecDeque<Polled>,
}

/// Most records handed over at once.
const POLL_BATCH: usize = 512;
/// Batches polled ahead of the run loop.
const BATCHES_AHEAD: usize = 4;

impl KafkaSource {
    pub(crate) fn start(consumer: BaseConsumer<Ctx>, topic: String) -> std::io::Result<KafkaSource> {
        let consumer = Arc::new(consumer);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<Vec<Polled>>(BATCHES_AHEAD);
        let poller = {
            let (consumer, stop) = (consumer.clone(), stop.clone());
            std::thread::Builder::new()
                .name("tailsift-consumer".into())
                .spawn(move || {
                    let convert = |r: Result<rdkafka::message::BorrowedMessage<'_>, rdkafka::error::KafkaError>| match r
                    {
                        Ok(m) => Ok(SourceRecord {
                            partition: m.partition(),
                            offset: m.offset(),
                            timestamp_ms: m.timestamp().to_millis(),
                            key: bytes::Bytes::copy_from_slice(m.key().unwrap_or_default()),
                            value: bytes::Bytes::copy_from_slice(m.payload().unwrap_or_default()),
                        }),
                        Err(e) => Err(SourceError::Kafka(e)),
                    };
                    while !stop.load(Ordering::Acquire) {
                        let Some(first) = consumer.poll(Duration::from_millis(100)) else {
                            continue;
                        };
                        let mut batch = vec![convert(first)];
                        while batch.len() < POLL_BATCH {
                            match consumer.poll(Duration::ZERO) {
                                Some(r) => batch.push(convert(r)),
                                None => break,
                            }
                        }
                        // Fails once the run loop has stopped and closed the channel.
                        if tx.blocking_send(batch).is_err() {
                            break;
                        }
                    }
                })?
        };
        Ok(KafkaSource {
            consumer,
            topic,
            records: tokio::sync::Mutex::new(Batches {
                rx,
                ready: Default::default(),
            }),
            stop,
            poller: Mutex::new(Some(poller)),
        })
    }

    /// Stops the polling thread and waits for it (blocking: call off the runtime).
    fn stop_polling(&self) {
        self.stop.store(true, Ordering::Release);
        if let Ok(mut b) = self.records.try_lock() {
            b.rx.close();
        }
        if let Some(t) = self.poller.lock().unwrap().take() {
            let _ = t.join();
        }
    }
}

impl RecordSource for KafkaSource {
    async fn recv(&self) -> Result<SourceRecord, SourceError> {
        let mut b = self.records.lock().await;
        loop {
            if let Some(r) = b.ready.pop_front() {
                return r;
            }
            match b.rx.recv().await {
                Some(batch) => b.ready.extend(batch),
                None => return std::future::pending().await,
            }
        }
    }

    fn commit(&self, offsets: &[(i32, i64)], sync: bool) -> Result<(), SourceError> {
        let mode = if sync { CommitMode::Sync } else { CommitMode::Async };
        kafka_commit(&*self.consumer, &self.topic, offsets, mode)
    }

    fn stop(&self) {
        self.stop_polling();
    }

    fn pause(&self, paused: bool) -> Result<(), SourceError> {
        let assignment = self.consumer.assignment()?;
        if paused {
            self.consumer.pause(&assignment)?;
        } else {
            self.consumer.resume(&assignment)?;
        }
        Ok(())
    }

    fn report_lag(self: Arc<Self>) {
        tokio::task::spawn_blocking(move || {
            let Ok(positions) = self.consumer.position() else {
                return;
            };
            for e in positions.elements() {
                if let (Offset::Offset(pos), Ok((_, high))) = (
                    e.offset(),
                    self.consumer
                        .fetch_watermarks(&self.topic, e.partition(), Duration::from_secs(2)),
                ) {
                    ::metrics::gauge!(crate::metrics::CONSUMER_LAG, "partition" => e.partition().to_string())
                        .set((high - pos).max(0) as f64);
                }
            }
        });
    }
}

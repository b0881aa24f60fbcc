//! The Tailsift sampling worker.
//!
//! Consumes the spans topic in a consumer group (cooperative-sticky), buffers whole traces per
//! partition ([`engine`]), decides them with the policy crate, exports kept traces
//! ([`export`]), and commits offsets only up to the lowest offset still needed. Decisions are
//! also written to a decisions topic, so whoever owns a partition next skips traces already
//! exported and routes late spans by the earlier decision.
//!
//! The run loop (`consume`) reads through [`RecordSource`]: a Kafka consumer group, or (in
//! `tailsift standalone`) the in-process log of [`tailsift_kafka::memlog`], which has the same
//! offsets, keys and partitioning and commits the same way, but no decisions topic.

pub mod annotate;
pub mod cache;
pub mod config;
pub mod coordination;
pub mod decisions;
pub mod engine;
pub mod export;
pub mod extract;
pub mod metrics;
#[cfg(test)]
mod source_tests;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol, StreamConsumer,
};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tailsift_kafka::memlog::{LogRecord, MemLog};
use tailsift_policy::{PolicyDocument, PolicyEngine};
use tailsift_telemetry::Readiness;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use config::SamplerConfig;
use engine::{ActivePolicy, Engine, EngineConfig, Output};

/// Errors that stop a sampler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("policy: {0}")]
    Policy(String),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("kafka: {0}")]
    KafkaSetup(#[from] tailsift_kafka::Error),
    #[error("exporter: {0}")]
    Export(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The policy used when none is configured: keep every trace with an error, every trace slower
/// than one second, and 10% of the rest (consistently, by trace ID and hash seed).
pub const DEFAULT_POLICY: &str = r#"
policies:
  - name: errors
    status_code: { codes: [ERROR] }
  - name: slow
    latency: { threshold_ms: 1000 }
  - name: baseline
    probabilistic: { percentage: 10 }
"#;

/// Loads and compiles the configured policy.
pub fn load_policy(cfg: &config::PolicyConfig) -> Result<(PolicyDocument, PolicyEngine), Error> {
    let doc = match &cfg.file {
        None => PolicyDocument::from_yaml(DEFAULT_POLICY).map_err(|e| Error::Policy(e.to_string()))?,
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| Error::Policy(format!("reading {}: {e}", path.display())))?;
            let parsed = match cfg.format {
                config::PolicyFormat::Native if path.extension().is_some_and(|e| e == "json") => {
                    PolicyDocument::from_json(&text)
                }
                config::PolicyFormat::Native => PolicyDocument::from_yaml(&text),
                config::PolicyFormat::Otel => PolicyDocument::from_otel_tail_sampling_yaml(&text),
            };
            parsed.map_err(|e| Error::Policy(format!("{}: {e}", path.display())))?
        }
    };
    doc.validate().map_err(|e| Error::Policy(e.to_string()))?;
    let engine = PolicyEngine::compile(&doc).map_err(|e| Error::Policy(e.to_string()))?;
    Ok((doc, engine))
}

/// Sockets a sampler serves on.
pub struct Listeners {
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(cfg: &SamplerConfig) -> std::io::Result<Self> {
        Ok(Listeners {
            admin: tailsift_telemetry::bind("admin", cfg.admin.listen).await?,
        })
    }
}

/// Commits `(partition, next offset to read)` pairs, waiting for the acknowledgement.
type CommitOffsets<'a> = dyn Fn(&[(i32, i64)]) -> Result<(), String> + 'a;

struct Shared {
    engine: Mutex<Engine>,
    export_tx: mpsc::Sender<engine::ExportJob>,
    /// The decisions topic's producer; `None` on the in-process log (no decisions topic).
    decisions: Option<FutureProducer>,
    decisions_topic: String,
    spans_topic: String,
    decisions_replay: i64,
    conn: tailsift_kafka::Connection,
    handover_timeout: Duration,
    resume_lookback: i64,
}

impl Shared {
    /// Hands outputs to the exporter and the decisions producer without blocking. Returns false
    /// when the export queue is full (the rest stays queued in the engine).
    fn drain(&self, engine: &mut Engine) -> bool {
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
                Output::Decision(d) => {
                    let Some(producer) = &self.decisions else { continue };
                    let key = tailsift_otlp::record_key(&d.trace_id);
                    let value = decisions::encode(&d);
                    let rec = FutureRecord::to(&self.decisions_topic)
                        .partition(d.partition)
                        .key(&key[..])
                        .payload(&value);
                    if let Err((e, _)) = producer.send_result(rec) {
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
    fn handover(&self, commit: &CommitOffsets<'_>, partitions: &[i32]) {
        let owned: Vec<i32> = {
            let e = self.engine.lock().unwrap();
            let mine = e.partitions();
            partitions.iter().copied().filter(|p| mine.contains(p)).collect()
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
    fn preload(&self, partitions: &[i32]) {
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

struct Ctx {
    shared: Arc<Shared>,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    /// The default rebalance, plus: assigned partitions start `kafka.resume_lookback_records`
    /// before their committed offset (records before it are ignored by the engine). This works
    /// around brokers (tansu 0.6) whose fetch skips the rest of a record batch when asked for an
    /// offset in its middle.
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
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
) -> Result<(), String> {
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(*o));
    }
    if tpl.count() == 0 {
        return Ok(());
    }
    tracing::debug!(offsets = ?tpl.to_topic_map(), "committing");
    consumer.commit(&tpl, mode).map_err(|e| e.to_string())
}

/// Waits until the spans topic exists; returns its partition count.
async fn wait_for_topic(
    cfg: &SamplerConfig,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> Result<Option<usize>, Error> {
    loop {
        match tailsift_kafka::topic_partitions(&cfg.kafka.connection(), &cfg.kafka.topic, Duration::from_secs(5)).await
        {
            Ok(Some(n)) => return Ok(Some(n)),
            Ok(None) => readiness.set(false, &format!("waiting for topic {}", cfg.kafka.topic)),
            Err(e) => readiness.set(false, &format!("Kafka: {e}")),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Where a sampler reads the spans log.
#[derive(Clone)]
pub enum Transport {
    /// The spans topic `kafka.topic`, in the consumer group `kafka.group_id`, with the decisions
    /// topic.
    Kafka,
    /// The in-process log of `tailsift standalone`: this sampler owns every partition and commits
    /// to the log; no decisions topic (late spans still follow the in-memory decision cache).
    InProcess(Arc<MemLog>),
}

/// One record of the spans log, as the run loop sees it.
pub struct SourceRecord {
    pub partition: i32,
    pub offset: i64,
    /// The producer's timestamp (milliseconds since the epoch), when the record has one.
    pub timestamp_ms: Option<i64>,
    /// The hex trace ID.
    pub key: bytes::Bytes,
    /// An encoded `ExportTraceServiceRequest` of one trace.
    pub value: bytes::Bytes,
}

/// What the run loop needs from the spans log: records in offset order per partition, commits
/// of "next offset to read" per partition, pausing, and lag. Partition ownership changes are the
/// source's business (the Kafka consumer's rebalance callbacks, or the in-process log assigning
/// everything at start); they go through `Engine::resume_from`, `Engine::assign` and
/// the graceful handover either way.
pub trait RecordSource: Send + Sync + 'static {
    /// The next record of an assigned, unpaused partition; errors are logged and retried.
    fn recv(&self) -> impl Future<Output = Result<SourceRecord, String>> + Send;
    /// Commits `(partition, next offset to read)` pairs; `sync` waits for the acknowledgement.
    fn commit(&self, offsets: &[(i32, i64)], sync: bool) -> Result<(), String>;
    /// Stops (`true`) or resumes delivery from every assigned partition.
    fn pause(&self, paused: bool) -> Result<(), String>;
    /// Updates the consumer lag gauges (possibly in the background).
    fn report_lag(self: Arc<Self>);
}

/// The Kafka consumer group.
struct KafkaSource {
    consumer: StreamConsumer<Ctx>,
    topic: String,
}

impl RecordSource for KafkaSource {
    async fn recv(&self) -> Result<SourceRecord, String> {
        let m = self.consumer.recv().await.map_err(|e| e.to_string())?;
        Ok(SourceRecord {
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key: bytes::Bytes::copy_from_slice(m.key().unwrap_or_default()),
            value: bytes::Bytes::copy_from_slice(m.payload().unwrap_or_default()),
        })
    }

    fn commit(&self, offsets: &[(i32, i64)], sync: bool) -> Result<(), String> {
        let mode = if sync { CommitMode::Sync } else { CommitMode::Async };
        kafka_commit(&self.consumer, &self.topic, offsets, mode)
    }

    fn pause(&self, paused: bool) -> Result<(), String> {
        let assignment = self.consumer.assignment().map_err(|e| e.to_string())?;
        if paused {
            self.consumer.pause(&assignment)
        } else {
            self.consumer.resume(&assignment)
        }
        .map_err(|e| e.to_string())
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

/// The in-process log: every partition is assigned to this sampler at start.
struct LogSource {
    log: Arc<MemLog>,
    cursor: Mutex<LogCursor>,
    paused: AtomicBool,
    appended: tokio::sync::Mutex<tokio::sync::watch::Receiver<u64>>,
}

struct LogCursor {
    /// Next offset to read, per partition.
    next: Vec<i64>,
    /// Read from the log, not yet delivered.
    ready: VecDeque<LogRecord>,
}

/// Records read from one partition at a time, so partitions take turns.
const LOG_READ_BATCH: usize = 64;

impl LogSource {
    /// Assigns every partition, each resumed from its committed offset (as a Kafka assignment).
    fn assign_all(log: Arc<MemLog>, shared: &Shared) -> LogSource {
        let partitions = log.partitions();
        let mut next = Vec::with_capacity(partitions as usize);
        {
            let mut e = shared.engine.lock().unwrap();
            for p in 0..partitions {
                let committed = log.committed(p);
                if let Some(o) = committed {
                    e.resume_from(p, o);
                }
                e.assign(p);
                next.push(committed.unwrap_or(0));
            }
        }
        ::metrics::gauge!(crate::metrics::PARTITIONS_OWNED).set(partitions as f64);
        tracing::info!(partitions, "every partition of the in-process log assigned");
        LogSource {
            appended: tokio::sync::Mutex::new(log.subscribe()),
            log,
            cursor: Mutex::new(LogCursor {
                next,
                ready: VecDeque::new(),
            }),
            paused: AtomicBool::new(false),
        }
    }

    fn next_ready(&self) -> Option<LogRecord> {
        let mut c = self.cursor.lock().unwrap();
        if c.ready.is_empty() {
            for p in 0..c.next.len() {
                let batch = self.log.read(p as i32, c.next[p], LOG_READ_BATCH);
                if let Some(last) = batch.last() {
                    c.next[p] = last.offset + 1;
                }
                c.ready.extend(batch);
            }
        }
        c.ready.pop_front()
    }
}

impl RecordSource for LogSource {
    async fn recv(&self) -> Result<SourceRecord, String> {
        let mut appended = self.appended.lock().await;
        loop {
            if !self.paused.load(Ordering::Acquire) {
                if let Some(r) = self.next_ready() {
                    return Ok(SourceRecord {
                        partition: r.partition,
                        offset: r.offset,
                        timestamp_ms: Some(r.timestamp_ms),
                        key: r.key,
                        value: r.value,
                    });
                }
            }
            // Checked after the read: an append in between is seen as a change.
            appended
                .changed()
                .await
                .map_err(|_| "the in-process log was dropped".to_string())?;
        }
    }

    fn commit(&self, offsets: &[(i32, i64)], _sync: bool) -> Result<(), String> {
        for (p, o) in offsets {
            self.log
                .commit(*p, *o)
                .ok_or_else(|| format!("partition {p} does not exist"))?;
        }
        Ok(())
    }

    fn pause(&self, paused: bool) -> Result<(), String> {
        self.paused.store(paused, Ordering::Release);
        Ok(())
    }

    fn report_lag(self: Arc<Self>) {
        let c = self.cursor.lock().unwrap();
        for (p, next) in c.next.iter().enumerate() {
            let undelivered = c.ready.iter().filter(|r| r.partition == p as i32).count() as i64;
            if let Some((_, end)) = self.log.watermarks(p as i32) {
                ::metrics::gauge!(crate::metrics::CONSUMER_LAG, "partition" => p.to_string())
                    .set((end - next + undelivered).max(0) as f64);
            }
        }
    }
}

/// Runs a sampler on Kafka until `shutdown` is cancelled; then hands its partitions over
/// gracefully (decides buffered traces, exports them, commits) and returns.
pub async fn run(cfg: SamplerConfig, listeners: Listeners, shutdown: CancellationToken) -> Result<(), Error> {
    run_on(cfg, Transport::Kafka, listeners, shutdown).await
}

/// [`run`], reading `transport`.
pub async fn run_on(
    cfg: SamplerConfig,
    transport: Transport,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    tailsift_telemetry::prometheus();
    metrics::describe();
    let readiness = Readiness::new();
    let worker_id = coordination::worker_id(&cfg.coordinator, listeners.admin.local_addr()?.port());
    let admin = tokio::spawn(tailsift_telemetry::serve_http(
        listeners.admin,
        tailsift_telemetry::admin_router(readiness.clone()),
        shutdown.clone(),
    ));
    let (doc, policy_engine) = load_policy(&cfg.policy)?;
    tracing::info!(
        version = doc.version,
        policies = policy_engine.policy_names().count(),
        seed = cfg.policy.hash_seed,
        "policy loaded"
    );

    // The decisions producer (Kafka only) and the partition count (budget shares).
    let (decisions, total_partitions) = match &transport {
        Transport::Kafka => {
            let Some(partitions) = wait_for_topic(&cfg, &readiness, &shutdown).await? else {
                let _ = admin.await;
                return Ok(());
            };
            let spec = tailsift_kafka::TopicSpec {
                partitions: partitions as i32,
                ..Default::default()
            };
            tailsift_kafka::ensure_topic(
                &cfg.kafka.connection(),
                &cfg.kafka.decisions_topic,
                &spec,
                Duration::from_secs(10),
            )
            .await?;
            if cfg.export.kind == config::ExportKind::Kafka {
                tailsift_kafka::ensure_topic(
                    &cfg.kafka.connection(),
                    &cfg.export.kafka_topic,
                    &spec,
                    Duration::from_secs(10),
                )
                .await?;
            }
            if let Some(topic) = &cfg.export.dead_letter_topic {
                tailsift_kafka::ensure_topic(&cfg.kafka.connection(), topic, &spec, Duration::from_secs(10)).await?;
            }
            let decisions: FutureProducer = cfg
                .kafka
                .connection()
                .client_config()
                .set("acks", "all")
                .set("linger.ms", "20")
                .set("compression.type", "lz4")
                .set("message.timeout.ms", "30000")
                .create()?;
            (Some(decisions), partitions as usize)
        }
        Transport::InProcess(log) => (None, log.partitions() as usize),
    };

    // With coordinators configured, the version persisted by an earlier run wins over the file.
    let initial_policy = if cfg.coordinator.endpoints.is_empty() {
        None
    } else {
        coordination::initial(&cfg.coordinator)
    };
    let from_version = initial_policy.as_ref().map_or(0, |p| p.version);
    let mut engine = Engine::new(
        EngineConfig::from_config(&cfg.decision, &cfg.memory),
        initial_policy.unwrap_or(ActivePolicy {
            version: doc.version,
            seed: cfg.policy.hash_seed,
            engine: policy_engine,
        }),
        Instant::now(),
    );
    engine.set_total_partitions(total_partitions);
    let (export_tx, export_rx) = mpsc::channel(cfg.export.queue_traces);
    let exporter = export::Exporter::new(&cfg.export, &cfg.kafka).map_err(Error::Export)?;
    let shared = Arc::new(Shared {
        engine: Mutex::new(engine),
        export_tx,
        decisions,
        decisions_topic: cfg.kafka.decisions_topic.clone(),
        spans_topic: cfg.kafka.topic.clone(),
        decisions_replay: cfg.kafka.decisions_replay,
        conn: cfg.kafka.connection(),
        handover_timeout: cfg.export.timeout * 3,
        resume_lookback: cfg.kafka.resume_lookback_records,
    });

    let coordination = {
        let shared = shared.clone();
        let with_engine = move |f: &mut dyn FnMut(&mut Engine)| f(&mut shared.engine.lock().unwrap());
        tokio::spawn(coordination::run(
            cfg.coordinator.clone(),
            worker_id,
            from_version,
            with_engine,
            shutdown.clone(),
        ))
    };

    // Export task: acknowledgements go straight to the engine (they unpin offsets).
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<u64>();
    let export_shutdown = CancellationToken::new();
    let exporter_task = tokio::spawn(export::run_exporter(
        exporter,
        cfg.export.clone(),
        export_rx,
        done_tx,
        export_shutdown.clone(),
    ));
    let acker = {
        let shared = shared.clone();
        tokio::spawn(async move {
            while let Some(id) = done_rx.recv().await {
                shared.engine.lock().unwrap().on_export_done(id);
            }
        })
    };

    match transport {
        Transport::Kafka => {
            let mut cc = cfg.kafka.connection().client_config();
            cc.set("group.id", &cfg.kafka.group_id)
                .set("partition.assignment.strategy", "cooperative-sticky")
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("auto.offset.reset", "earliest")
                .set("session.timeout.ms", "10000")
                .set("heartbeat.interval.ms", "1000")
                .set("max.poll.interval.ms", "300000")
                // librdkafka's 500 ms default adds up to that much to every decision's latency on
                // a quiet partition (docs/benchmarks.md); 100 ms costs a few idle fetches a second.
                .set("fetch.wait.max.ms", "100");
            for (k, v) in &cfg.kafka.properties {
                cc.set(k, v);
            }
            let consumer: StreamConsumer<Ctx> = cc.create_with_context(Ctx { shared: shared.clone() })?;
            consumer.subscribe(&[&cfg.kafka.topic])?;
            readiness.set(true, "ok");
            tracing::info!(topic = %cfg.kafka.topic, group = %cfg.kafka.group_id, export = ?cfg.export.kind, endpoint = %cfg.export.endpoint, "sampler consuming");
            let source = Arc::new(KafkaSource {
                consumer,
                topic: cfg.kafka.topic.clone(),
            });
            consume(source.clone(), &shared, &cfg, &readiness, &shutdown).await;
            source.consumer.unsubscribe();
        }
        Transport::InProcess(log) => {
            let source = Arc::new(LogSource::assign_all(log, &shared));
            readiness.set(true, "ok");
            tracing::info!(export = ?cfg.export.kind, endpoint = %cfg.export.endpoint, output = %cfg.export.output, "sampler consuming the in-process log");
            consume(source, &shared, &cfg, &readiness, &shutdown).await;
        }
    }

    let _ = coordination.await;
    export_shutdown.cancel();
    let _ = exporter_task.await;
    acker.abort();
    let _ = admin.await;
    tracing::info!("sampler stopped");
    Ok(())
}

/// The run loop, over any [`RecordSource`]: records into the engine, decision ticks, outputs to
/// the exporter (pausing the source while the export queue is full), periodic commits of the
/// committable offsets and lag; on `shutdown`, the graceful handover of every partition.
async fn consume<S: RecordSource>(
    source: Arc<S>,
    shared: &Arc<Shared>,
    cfg: &SamplerConfig,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) {
    let mut tick = tokio::time::interval(cfg.decision.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut commit_tick = tokio::time::interval(cfg.kafka.commit_interval);
    commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_committed: HashMap<i32, i64> = HashMap::new();
    let mut processed_through: HashMap<i32, i64> = HashMap::new();
    let mut paused = false;
    let mut lag_at = Instant::now();

    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                let mut e = shared.engine.lock().unwrap();
                e.on_tick(Instant::now());
                let drained = shared.drain(&mut e);
                drop(e);
                set_paused(&*source, &mut paused, !drained);
            }
            _ = commit_tick.tick() => {
                commit(&*source, shared, &mut last_committed);
                if lag_at.elapsed() >= Duration::from_secs(5) {
                    lag_at = Instant::now();
                    source.clone().report_lag();
                }
            }
            msg = source.recv() => match msg {
                Ok(m) => {
                    let (p, off) = (m.partition, m.offset);
                    if !processed_through.contains_key(&p) {
                        tracing::debug!(partition = p, offset = off, "first record of partition");
                    }
                    let seen = processed_through.entry(p).or_insert(-1);
                    if off <= *seen {
                        ::metrics::counter!(crate::metrics::REPLAYED_RECORDS).increment(1);
                    } else {
                        *seen = off;
                    }
                    let mut e = shared.engine.lock().unwrap();
                    e.on_record(p, off, m.timestamp_ms, m.value, Instant::now());
                    let drained = shared.drain(&mut e);
                    drop(e);
                    set_paused(&*source, &mut paused, !drained);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "consumer error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }

    tracing::info!("sampler stopping: handing partitions over");
    readiness.set(false, "shutting down");
    let parts = shared.engine.lock().unwrap().partitions();
    let s = shared.clone();
    // The handover blocks; run it where blocking is fine.
    tokio::task::spawn_blocking(move || s.handover(&|offsets| source.commit(offsets, true), &parts))
        .await
        .ok();
}

fn set_paused<S: RecordSource>(source: &S, paused: &mut bool, want: bool) {
    if *paused == want {
        return;
    }
    if source.pause(want).is_ok() {
        *paused = want;
        ::metrics::gauge!(crate::metrics::PAUSED).set(if want { 1.0 } else { 0.0 });
        if want {
            tracing::warn!("export queue full: consumption paused");
        } else {
            tracing::info!("export queue drained: consumption resumed");
        }
    }
}

fn commit<S: RecordSource>(source: &S, shared: &Shared, last: &mut HashMap<i32, i64>) {
    let offsets = shared.engine.lock().unwrap().committable();
    let mut fresh = Vec::new();
    for (p, o) in offsets {
        if last.get(&p).is_some_and(|l| *l >= o) {
            continue;
        }
        fresh.push((p, o));
        last.insert(p, o);
        ::metrics::gauge!(crate::metrics::COMMITTED_OFFSET, "partition" => p.to_string()).set(o as f64);
    }
    if !fresh.is_empty() {
        if let Err(e) = source.commit(&fresh, false) {
            tracing::warn!(error = %e, "offset commit failed");
        }
    }
}

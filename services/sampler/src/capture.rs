//! Retroactive captures, the worker's side: "keep every trace that matches X from the last 20
//! minutes", run over the spans topic the traces are still in.
//!
//! Captures come from the coordinators with the policy ([`crate::coordination`] hands them to
//! [`Captures::set_specs`]). For every running capture, each worker runs the partitions of the
//! spans topic it owns that the coordinators have not recorded as finished, one partition at a
//! time, once the capture's `read_until` has passed (the window's end plus the decision wait, so
//! that traces still running at the window's end are complete and the live policy has decided
//! them). A partition is run in three steps:
//!
//! 1. the decisions topic's partition is read from the window's start: the traces already kept
//!    (by the live policy, or by an earlier run of this capture) are not exported again;
//! 2. the spans topic's partition is read over the window ([`crate::whatif::replay_kafka`], the
//!    same bounded trace grouping as what-if replay): traces whose first record is after the
//!    window's end are skipped, the others are decided by the capture's match policy, and the kept
//!    ones are stamped `tailsift.sampling.policy = capture:<id>` (adjusted count 1) and handed to a
//!    separate exporter (the sampler's `export` configuration, its own queue);
//! 3. once every export is acknowledged, a kept decision per exported trace is written to the
//!    decisions topic (so a rerun or another capture skips it), and the partition is reported
//!    `done` with its counts; the coordinators record it in the replicated state.
//!
//! A worker that dies mid-partition, or loses the partition in a rebalance (the job stops within a
//! quarter of a second), leaves it unrecorded: the partition's next owner runs it again, and step
//! 1 skips what was already exported and recorded (only traces exported but not yet recorded at
//! that moment can be exported twice). Memory is bounded: the
//! already-kept set by [`MAX_KEPT_IDS`] per partition (past it the partition fails with that
//! reason rather than risk duplicates), the trace grouping by the what-if limits (past them
//! traces are decided early on what arrived, later records follow as late pieces), the exporter
//! by its queue.
//!
//! On the in-process log (`tailsift standalone`) there is no Kafka to read back: every owned
//! partition of a capture is reported failed with that reason.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::Producer;
use rdkafka::{Message, Offset, TopicPartitionList};
use tailsift_proto::v1::capture_progress::State;
use tailsift_proto::v1::{Capture as CaptureSpec, CaptureProgress};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::annotate::{stamp_request, Stamp};
use crate::engine::{DecisionRecord, ExportJob};
use crate::shared::Shared;
use crate::whatif::{self, KafkaWindow, KeptTrace, Limits, Replay};

/// `Capture.kind` of a what-if replay (`POST /v1/policy/whatif`).
pub const KIND_WHATIF: &str = "whatif";
/// Longest what-if report per partition sent to the coordinators.
pub const MAX_REPORT_JSON: usize = 256 << 10;

/// Most already-kept trace IDs read per partition (16 bytes each, plus the set's overhead).
pub const MAX_KEPT_IDS: usize = 4_000_000;
/// Capture jobs' export queue, in traces.
const EXPORT_QUEUE: usize = 256;
/// Extra wait after `read_until` for the live policy's decisions to reach the decisions topic.
const SETTLE: Duration = Duration::from_secs(2);

type TraceId = [u8; 16];

/// The captures this worker knows of and its progress on them; shared by the coordination task
/// (which sets the specs and reports the progress) and the runner.
pub struct Captures {
    specs: tokio::sync::watch::Sender<Vec<CaptureSpec>>,
    progress: Mutex<BTreeMap<(u64, i32), CaptureProgress>>,
}

impl Default for Captures {
    fn default() -> Self {
        Captures {
            specs: tokio::sync::watch::channel(Vec::new()).0,
            progress: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Captures {
    /// The running captures, as the coordinators sent them. Progress of captures no longer
    /// running is forgotten.
    pub fn set_specs(&self, specs: Vec<CaptureSpec>) {
        let ids: HashSet<u64> = specs.iter().map(|c| c.id).collect();
        self.lock().retain(|(id, _), _| ids.contains(id));
        self.specs.send_replace(specs);
    }

    /// Progress per (capture, partition) run by this worker, for its reports.
    pub fn progress(&self) -> Vec<CaptureProgress> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(u64, i32), CaptureProgress>> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, p: CaptureProgress) {
        let ids_running = self.specs.borrow().iter().any(|c| c.id == p.capture_id);
        if ids_running {
            self.lock().insert((p.capture_id, p.partition), p);
        }
    }

    fn finished(&self, id: u64, partition: i32) -> bool {
        self.lock()
            .get(&(id, partition))
            .is_some_and(|p| matches!(p.state(), State::Done | State::Failed))
    }
}

/// What the runner needs from the sampler's configuration.
#[derive(Clone)]
pub(crate) struct RunnerConfig {
    pub(crate) export: crate::config::ExportConfig,
    pub(crate) kafka: crate::config::KafkaConfig,
    /// The worker's own decision wait: reading never starts before `until` + this.
    pub(crate) decision_wait: Duration,
    /// The spans topic's partition count.
    pub(crate) partitions: i32,
    /// `None` on the in-process log (captures cannot run).
    pub(crate) kafka_transport: bool,
}

/// Runs the captures on the partitions this worker owns until `shutdown`.
pub(crate) async fn run(captures: Arc<Captures>, shared: Arc<Shared>, cfg: RunnerConfig, shutdown: CancellationToken) {
    let mut specs_rx = captures.specs.subscribe();
    // A separate exporter: capture traces do not queue behind (or pin offsets of) live ones.
    let (export_tx, export_rx) = mpsc::channel::<ExportJob>(EXPORT_QUEUE);
    let (done_tx, done_rx) = mpsc::unbounded_channel::<u64>();
    let exporter_task = if cfg.kafka_transport {
        match crate::export::Exporter::new(&cfg.export, &cfg.kafka) {
            Ok(exporter) => Some(tokio::spawn(crate::export::run_exporter(
                exporter,
                cfg.export.clone(),
                export_rx,
                done_tx,
                shutdown.clone(),
            ))),
            Err(e) => {
                tracing::error!(error = %e, "capture exporter not created; captures cannot run on this worker");
                None
            }
        }
    } else {
        None
    };
    let done_rx = Arc::new(Mutex::new(done_rx));
    // Export job ids, unique over every job of this runner: acknowledgements of a stopped job's
    // exports can never be taken for a later job's.
    let next_id = Arc::new(AtomicU64::new(1));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
            r = specs_rx.changed() => if r.is_err() { break },
        }
        let specs = specs_rx.borrow_and_update().clone();
        if specs.is_empty() {
            continue;
        }
        let owned = shared.engine.lock().unwrap().partitions();
        let now = unix_ms();
        for spec in &specs {
            for &p in &owned {
                if spec.done_partitions.contains(&p) || captures.finished(spec.id, p) {
                    continue;
                }
                let mut progress = CaptureProgress {
                    capture_id: spec.id,
                    partition: p,
                    partitions: cfg.partitions,
                    ..Default::default()
                };
                if !cfg.kafka_transport || exporter_task.is_none() {
                    progress.set_state(State::Failed);
                    progress.error = if cfg.kafka_transport {
                        "this worker's exporter could not be created (see its log)".into()
                    } else {
                        "this worker reads the in-process log (tailsift standalone): captures read the spans topic back from Kafka".into()
                    };
                    captures.set(progress);
                    continue;
                }
                // A capture waits for the decision wait after its window (running traces complete,
                // decided by the live policy); a what-if replay reads records up to its end only.
                let wait = if spec.kind == KIND_WHATIF {
                    0
                } else {
                    cfg.decision_wait.as_millis() as i64
                };
                let start_at = spec
                    .read_until_unix_ms
                    .max(spec.until_unix_ms.saturating_add(wait))
                    .saturating_add(SETTLE.as_millis() as i64);
                if now < start_at {
                    progress.set_state(State::Waiting);
                    captures.set(progress);
                    continue;
                }
                progress.set_state(State::Reading);
                captures.set(progress.clone());
                // Stops the job at shutdown, when the capture is cancelled (no longer sent), or
                // when the partition is revoked (its next owner runs it: two runs at once could
                // both export a trace before either recorded it).
                let job_stop = Arc::new(AtomicBool::new(false));
                let watcher = {
                    let job_stop = job_stop.clone();
                    let mut rx = captures.specs.subscribe();
                    let sd = shutdown.clone();
                    let shared = shared.clone();
                    let id = spec.id;
                    tokio::spawn(async move {
                        let mut check = tokio::time::interval(Duration::from_millis(250));
                        loop {
                            if !rx.borrow_and_update().iter().any(|c| c.id == id) {
                                break;
                            }
                            if !shared.engine.lock().unwrap().partitions().contains(&p) {
                                break;
                            }
                            tokio::select! {
                                _ = sd.cancelled() => break,
                                r = rx.changed() => if r.is_err() { break },
                                _ = check.tick() => {}
                            }
                        }
                        job_stop.store(true, Ordering::Relaxed);
                    })
                };
                let job = Job {
                    spec: spec.clone(),
                    partition: p,
                    partitions: cfg.partitions,
                    shared: shared.clone(),
                    export_tx: export_tx.clone(),
                    done_rx: done_rx.clone(),
                    stop: job_stop,
                    next_id: next_id.clone(),
                    lookback: cfg.kafka.resume_lookback_records,
                };
                let started = Instant::now();
                let result = tokio::task::spawn_blocking(move || job.run()).await;
                watcher.abort();
                let finished = match result {
                    Ok(Ok(p)) => p,
                    Ok(Err(JobError::Stopped)) => {
                        tracing::info!(
                            capture = spec.id,
                            partition = p,
                            "capture partition stopped (cancelled or shutting down)"
                        );
                        if shutdown.is_cancelled() {
                            break;
                        }
                        continue;
                    }
                    Ok(Err(e)) => {
                        let mut failed = progress.clone();
                        failed.set_state(State::Failed);
                        failed.error = e.to_string();
                        failed
                    }
                    Err(e) => {
                        let mut failed = progress.clone();
                        failed.set_state(State::Failed);
                        failed.error = format!("capture job panicked: {e}");
                        failed
                    }
                };
                let outcome = if finished.state() == State::Done {
                    "done"
                } else {
                    "failed"
                };
                ::metrics::counter!(crate::metrics::CAPTURE_PARTITIONS, "outcome" => outcome).increment(1);
                ::metrics::counter!(crate::metrics::CAPTURE_TRACES_EXPORTED).increment(finished.traces_exported);
                tracing::info!(
                    capture = spec.id,
                    partition = p,
                    outcome,
                    records = finished.records_read,
                    matched = finished.traces_matched,
                    already_kept = finished.traces_already_kept,
                    exported = finished.traces_exported,
                    error = %finished.error,
                    took = ?started.elapsed(),
                    "capture partition finished"
                );
                captures.set(finished);
                if shutdown.is_cancelled() {
                    break;
                }
            }
        }
    }
    drop(export_tx);
    if let Some(t) = exporter_task {
        let _ = t.await;
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Why a partition of a capture could not be run.
#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error("match policy: {0}")]
    Policy(String),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("what-if reader: {0}")]
    Replay(#[from] whatif::WhatifError),
    #[error(
        "more than {MAX_KEPT_IDS} traces of the window were already kept in this partition: too many to skip reliably; capture a shorter window"
    )]
    TooManyKept,
    #[error("the spans topic could not be read to the window's end in time")]
    Incomplete,
    #[error("the what-if report is {0} bytes of JSON, more than {MAX_REPORT_JSON}: the policies have too many rules to report per rule")]
    ReportTooLarge(usize),
    #[error("the sampler is shutting down")]
    Stopped,
}

/// One partition of one capture.
struct Job {
    spec: CaptureSpec,
    partition: i32,
    partitions: i32,
    shared: Arc<Shared>,
    export_tx: mpsc::Sender<ExportJob>,
    done_rx: Arc<Mutex<mpsc::UnboundedReceiver<u64>>>,
    stop: Arc<AtomicBool>,
    /// Export job ids (unique within the runner).
    next_id: Arc<AtomicU64>,
    lookback: i64,
}

/// Counts of a partition run, filled by the replay's sink.
#[derive(Default)]
struct Tally {
    matched: u64,
    already_kept: u64,
    exported: u64,
    spans: u64,
    bytes: u64,
    /// The export job ids this run used.
    ids: Vec<u64>,
    /// Exported traces, for the decision records.
    exported_ids: Vec<TraceId>,
    closed: bool,
}

impl Job {
    /// Runs the partition (blocking); returns its final progress.
    fn run(self) -> Result<CaptureProgress, JobError> {
        if self.spec.kind == KIND_WHATIF {
            return self.run_whatif();
        }
        let format = tailsift_policy::PolicyFormat::from_name(&self.spec.match_format);
        let (doc, _) = tailsift_policy::PolicyDocument::parse(&self.spec.match_document, format)
            .map_err(|e| JobError::Policy(e.to_string()))?;
        let compile = || tailsift_policy::PolicyEngine::compile(&doc).map_err(|e| JobError::Policy(e.to_string()));
        let (candidate, live) = (compile()?, compile()?);

        let kept = self.kept_before()?;
        let stamp = Arc::new(Stamp {
            policy: format!("capture:{}", self.spec.id),
            policy_version: 0,
            adjusted_count: 1.0,
            ot: None,
        });
        let tally = Arc::new(Mutex::new(Tally::default()));
        let sink = {
            let tally = tally.clone();
            let tx = self.export_tx.clone();
            let stamp = stamp.clone();
            let next_id = self.next_id.clone();
            move |t: KeptTrace<'_>| {
                let mut g = tally.lock().unwrap_or_else(|p| p.into_inner());
                if !t.late {
                    g.matched += 1;
                }
                if kept.contains(&t.trace_id) {
                    if !t.late {
                        g.already_kept += 1;
                    }
                    return;
                }
                if g.closed {
                    return;
                }
                let mut payload = Vec::with_capacity(t.records.iter().map(|r| r.len() + 64).sum());
                for r in t.records {
                    stamp_request(r, &stamp, &mut payload);
                }
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let bytes = payload.len() as u64;
                let job = ExportJob {
                    id,
                    partition: t.partition,
                    trace_id: t.trace_id,
                    payload,
                    spans: t.spans as usize,
                };
                // Blocking on a full queue is the backpressure (this runs on a blocking thread).
                if tx.blocking_send(job).is_err() {
                    g.closed = true;
                    return;
                }
                g.ids.push(id);
                if !t.late {
                    g.exported += 1;
                    g.exported_ids.push(t.trace_id);
                }
                g.spans += t.spans;
                g.bytes += bytes;
            }
        };
        let replay = Replay::new(candidate, live, 0, Limits::default())
            .with_sink(Box::new(sink))
            .new_traces_until(self.spec.until_unix_ms);
        let report = self.replay(replay, self.spec.read_until_unix_ms)?;
        if !report.complete {
            return Err(JobError::Incomplete);
        }
        let (exported_ids, ids) = {
            let mut g = tally.lock().unwrap_or_else(|p| p.into_inner());
            if g.closed {
                return Err(JobError::Stopped);
            }
            (std::mem::take(&mut g.exported_ids), std::mem::take(&mut g.ids))
        };
        // Every export acknowledged (delivered, dead-lettered or dropped by the export rules);
        // acknowledgements of earlier, stopped jobs are ignored.
        let mut pending: HashSet<u64> = ids.into_iter().collect();
        {
            let mut rx = self.done_rx.lock().unwrap_or_else(|p| p.into_inner());
            while !pending.is_empty() {
                match rx.blocking_recv() {
                    Some(id) => {
                        pending.remove(&id);
                    }
                    None => return Err(JobError::Stopped),
                }
            }
        }
        self.record_kept(&exported_ids, &stamp);
        let g = tally.lock().unwrap_or_else(|p| p.into_inner());
        let w = report.partitions.first();
        let mut progress = CaptureProgress {
            capture_id: self.spec.id,
            partition: self.partition,
            partitions: self.partitions,
            records_read: report.records_read,
            traces_matched: g.matched,
            traces_already_kept: g.already_kept,
            traces_exported: g.exported,
            spans_exported: g.spans,
            bytes_exported: g.bytes,
            first_record_unix_ms: w.map_or(0, |w| w.first_record_unix_ms),
            truncated_by_retention: w.is_some_and(|w| w.truncated_by_retention()),
            ..Default::default()
        };
        progress.set_state(State::Done);
        Ok(progress)
    }

    /// A what-if replay of the partition: the candidate (the match document) beside the live
    /// policy of the job, nothing exported; the report goes back as JSON.
    fn run_whatif(self) -> Result<CaptureProgress, JobError> {
        let compile = |format: &str, document: &str| {
            let format = tailsift_policy::PolicyFormat::from_name(format);
            let (doc, _) = tailsift_policy::PolicyDocument::parse(document, format)
                .map_err(|e| JobError::Policy(e.to_string()))?;
            tailsift_policy::PolicyEngine::compile(&doc).map_err(|e| JobError::Policy(e.to_string()))
        };
        let candidate = compile(&self.spec.match_format, &self.spec.match_document)?;
        let live = compile(&self.spec.live_format, &self.spec.live_document)?;
        // One partition of the cluster's: its share of rate and byte budgets.
        let replay = Replay::new(candidate, live, self.spec.seed, Limits::default())
            .with_budget_share(1.0 / f64::from(self.partitions.max(1)));
        let report = self.replay(replay, self.spec.until_unix_ms)?;
        let json = serde_json::to_string(&report).unwrap_or_default();
        if json.len() > MAX_REPORT_JSON {
            return Err(JobError::ReportTooLarge(json.len()));
        }
        let w = report.partitions.first();
        let mut progress = CaptureProgress {
            capture_id: self.spec.id,
            partition: self.partition,
            partitions: self.partitions,
            records_read: report.records_read,
            traces_matched: report.candidate.kept.traces,
            first_record_unix_ms: w.map_or(0, |w| w.first_record_unix_ms),
            truncated_by_retention: w.is_some_and(|w| w.truncated_by_retention()),
            report_json: json,
            ..Default::default()
        };
        progress.set_state(State::Done);
        Ok(progress)
    }

    /// Reads this partition of the spans topic from the window's start up to `until_unix_ms`
    /// through `replay`; stopped jobs end with [`JobError::Stopped`].
    fn replay(&self, replay: Replay, until_unix_ms: i64) -> Result<whatif::Report, JobError> {
        let mut window = KafkaWindow::new(
            self.shared.conn.clone(),
            &self.shared.spans_topic,
            self.spec.since_unix_ms,
        );
        window.until_unix_ms = Some(until_unix_ms);
        window.lookback_records = self.lookback;
        window.partitions = Some(vec![self.partition]);
        window.stop = Some(self.stop.clone());
        let report = whatif::replay_kafka(&window, replay)?;
        if self.stop.load(Ordering::Relaxed) {
            return Err(JobError::Stopped);
        }
        Ok(report)
    }

    /// The traces of this partition kept since the window's start, from the decisions topic.
    fn kept_before(&self) -> Result<HashSet<TraceId>, JobError> {
        let topic = &self.shared.decisions_topic;
        let consumer: BaseConsumer = self
            .shared
            .conn
            .client_config()
            .set("group.id", format!("tailsift-capture-{}", self.spec.id))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()?;
        let timeout = Duration::from_secs(10);
        let (low, high) = consumer.fetch_watermarks(topic, self.partition, timeout)?;
        let mut kept = HashSet::new();
        if high <= low {
            return Ok(kept);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, self.partition, Offset::Offset(self.spec.since_unix_ms))?;
        let start = match consumer.offsets_for_times(tpl, timeout) {
            Ok(found) => found
                .elements()
                .first()
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) if e.error().is_ok() && o >= 0 => Some(o),
                    _ => None,
                })
                .unwrap_or(low),
            Err(_) => low,
        };
        // Some brokers answer 0 for a time after their last record: read from the start then.
        let start = if start >= high { low } else { start };
        let from = (start - self.lookback.max(0)).max(low);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, self.partition, Offset::Offset(from))?;
        consumer.assign(&tpl)?;
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut last = Instant::now();
        let mut reached = false;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Err(JobError::Stopped);
            }
            // Up to the high watermark seen at the start, then until quiet (the watermark some
            // brokers report lags).
            let quiet = if reached { 500 } else { 5_000 };
            if last.elapsed() >= Duration::from_millis(quiet) || Instant::now() >= deadline {
                break;
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    last = Instant::now();
                    if m.offset() + 1 >= high {
                        reached = true;
                    }
                    let d = crate::decisions::decode(
                        m.partition(),
                        m.key().unwrap_or_default(),
                        m.payload().unwrap_or_default(),
                    );
                    if let Some(DecisionRecord {
                        trace_id,
                        kept: Some(_),
                        ..
                    }) = d
                    {
                        kept.insert(trace_id);
                        if kept.len() > MAX_KEPT_IDS {
                            return Err(JobError::TooManyKept);
                        }
                    }
                }
                Some(Err(e)) => tracing::debug!(error = %e, "reading decisions for a capture"),
                None => {}
            }
        }
        Ok(kept)
    }

    /// Writes a kept decision per exported trace to the decisions topic and flushes.
    fn record_kept(&self, ids: &[TraceId], stamp: &Arc<Stamp>) {
        let Some(producer) = &self.shared.decisions else { return };
        for trace_id in ids {
            let d = DecisionRecord {
                partition: self.partition,
                trace_id: *trace_id,
                kept: Some(stamp.clone()),
                exported_through: i64::MAX,
            };
            let key = tailsift_otlp::record_key(trace_id);
            let value = crate::decisions::encode(&d);
            let rec = tailsift_kafka::served::Record {
                topic: &self.shared.decisions_topic,
                partition: Some(self.partition),
                key: &key[..],
                payload: &value,
            };
            // The producer's queue is bounded: on a full queue, wait and retry.
            loop {
                match producer.send(rec, None, false) {
                    Ok(_) => break,
                    Err(e) => {
                        if self.stop.load(Ordering::Relaxed) {
                            tracing::warn!(error = %e, "capture decisions not all recorded at shutdown");
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        }
        if let Err(e) = producer.flush(Duration::from_secs(30)) {
            tracing::warn!(error = %e, "capture decisions not flushed; a rerun may export these traces again");
        }
    }
}

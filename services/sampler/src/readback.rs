//! Reading the records of traces buffered as an index back from the spans log (`memory.mode`
//! `index` or `hybrid`).
//!
//! The engine decides such a trace on its summary and, when it keeps it, asks for its records
//! ([`ReadBackJob`]: the trace's record offsets). One reader thread per sampler answers: it takes
//! the jobs waiting (up to [`MAX_JOBS_PER_PASS`] traces and [`MAX_PASS_BYTES`] of their records), and per partition sweeps the offsets they need
//! in ascending order, reading sequentially through gaps of up to [`MAX_GAP_RECORDS`] records
//! (records of other traces are skipped: neither decoded nor copied out of the consumer) and
//! seeking over longer ones, so a record is fetched about once per sweep however many kept traces
//! it lies between. A trace is handed to the engine ([`Engine::on_read_back`]) as soon as its last
//! record is read; the reader keeps nothing else between sweeps, so its memory is a pass's
//! records and the consumer's prefetch, not the decision window. (A cache of the records read
//! last, 32 MiB, served 18 of 208,567 records in `bench-sampler.sh`: sweeps rarely go back, and
//! what they go back for, a long trace's early records, lies minutes behind, past any cache.)
//!
//! A record the log no longer has (the log answers with a later offset: retention passed it) is
//! counted as missing and the trace exported without it. A log that does not answer within
//! [`QUIET`] (a broker restarting, a partition without a leader) proves nothing: the sweep stops
//! there, its unfinished traces are tried again after a pause, and the other partitions go on.
//! Their first offsets stay pinned meanwhile, so nothing is committed past them; if the outage
//! lasts, the read-back queue fills and consumption pauses, as for an export backend outage.
//!
//! [`Engine::on_read_back`]: crate::engine::Engine::on_read_back

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::engine::ReadBackJob;
use crate::metrics as m;
use crate::shared::{Shared, SourceError};

/// Jobs answered in one pass, and their records' bytes (at least one job per pass): what a pass
/// may hold while traces interleave.
pub const MAX_JOBS_PER_PASS: usize = 4096;
pub const MAX_PASS_BYTES: usize = 64 << 20;
/// Records read through (and skipped) rather than seeking over them.
pub const MAX_GAP_RECORDS: i64 = 2_000;
/// How long the log may stay silent before a sweep stops (its traces are tried again).
pub const QUIET: Duration = Duration::from_secs(5);
/// The pause before jobs a silent log left unfinished are tried again.
pub const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// What [`LogReader::next`] returns: a record's offset and, when wanted, its value.
pub(crate) type NextRecord = Result<Option<(i64, Option<Bytes>)>, SourceError>;

/// A log the reader can position and read.
pub(crate) trait LogReader: Send {
    /// The next [`LogReader::next`] returns records of `partition` from `offset` on (or the first
    /// the log has after it).
    fn seek(&mut self, partition: i32, offset: i64) -> Result<(), SourceError>;
    /// The next record of the partition sought: its offset, and its value when `wanted(offset)`
    /// (records read through are not copied); `None` when none came within `timeout`.
    fn next(&mut self, timeout: Duration, wanted: &dyn Fn(i64) -> bool) -> NextRecord;
}

/// What one sweep did, for the metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Swept {
    pub read: u64,
    pub skipped: u64,
    pub missing: u64,
    pub seeks: u64,
}

/// Sweeps the offsets `jobs` (all of `partition`) need, in ascending order. `done` gets each job's
/// records (in offset order) as soon as its last one was read or found missing. Returns what it
/// did and the jobs left unfinished because the log stopped answering. `position` is the
/// offset the log returns next for `partition`, if known (kept between sweeps, so a sweep that
/// starts where the last ended does not seek); when a seek's first record comes after the offset asked for, up to `lookback` records before it are
/// tried (brokers that start a fetch inside a batch at the next batch) before the offset counts
/// as missing.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sweep(
    log: &mut dyn LogReader,
    position: &mut Option<(i32, i64)>,
    partition: i32,
    jobs: &[ReadBackJob],
    lookback: i64,
    quiet: Duration,
    done: &mut dyn FnMut(usize, Vec<Bytes>),
) -> (Swept, Vec<usize>) {
    let mut swept = Swept::default();
    // offset -> the jobs needing it (one trace's record belongs to one job, unless a trace was
    // asked twice).
    let mut needed: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    let mut remaining: Vec<usize> = vec![0; jobs.len()];
    let mut found: Vec<Vec<Bytes>> = vec![Vec::new(); jobs.len()];
    for (i, j) in jobs.iter().enumerate() {
        for o in &j.offsets {
            let e = needed.entry(*o).or_default();
            if !e.contains(&i) {
                e.push(i);
                remaining[i] += 1;
            }
        }
        if remaining[i] == 0 {
            done(i, Vec::new());
        }
    }
    let mut finish = |i: usize, found: &mut Vec<Vec<Bytes>>, remaining: &mut Vec<usize>| {
        remaining[i] -= 1;
        if remaining[i] == 0 {
            done(i, std::mem::take(&mut found[i]));
        }
    };
    // The lookback of the seek whose first record is still to come.
    let mut fresh_seek: Option<i64> = None;
    while let Some((&want, _)) = needed.first_key_value() {
        let at = position.filter(|(p, _)| *p == partition).map(|(_, o)| o);
        if at.is_none_or(|o| o > want || want - o > MAX_GAP_RECORDS) {
            if let Err(e) = log.seek(partition, want) {
                tracing::warn!(error = %e, partition, offset = want, "read-back cannot seek; tried again later");
                *position = None;
                break;
            }
            swept.seeks += 1;
            *position = Some((partition, want));
            fresh_seek = Some(0);
        }
        match log.next(quiet, &|o| needed.contains_key(&o)) {
            Ok(Some((o, value))) => {
                if let Some(lb) = fresh_seek.take() {
                    if o > want && lb < lookback {
                        // The broker started after the offset asked for (tansu starts a fetch
                        // at the next batch when asked for an offset inside one): look further
                        // back, up to `lookback`, before calling anything missing.
                        let lb = if lb == 0 { 64 } else { lb.saturating_mul(8) }.min(lookback);
                        let from = want.saturating_sub(lb).max(0);
                        if let Err(e) = log.seek(partition, from) {
                            tracing::warn!(error = %e, partition, offset = want, "read-back cannot seek; tried again later");
                            *position = None;
                            break;
                        }
                        swept.seeks += 1;
                        *position = Some((partition, from));
                        fresh_seek = Some(lb);
                        continue;
                    }
                }
                *position = Some((partition, o + 1));
                // Everything needed below `o` is gone from the log.
                while let Some(entry) = needed.first_entry() {
                    if *entry.key() >= o {
                        break;
                    }
                    let (off, jobs) = entry.remove_entry();
                    tracing::warn!(
                        partition,
                        offset = off,
                        next = o,
                        "read-back: record no longer in the log"
                    );
                    swept.missing += 1;
                    for i in jobs {
                        finish(i, &mut found, &mut remaining);
                    }
                }
                match needed.first_entry() {
                    Some(entry) if *entry.key() == o => {
                        let jobs = entry.remove();
                        swept.read += 1;
                        let value = value.expect("a wanted record comes with its value");
                        for i in jobs {
                            found[i].push(value.clone());
                            finish(i, &mut found, &mut remaining);
                        }
                    }
                    _ => swept.skipped += 1,
                }
            }
            Ok(None) | Err(_) => {
                tracing::warn!(
                    partition,
                    offset = want,
                    "read-back: the log did not answer; tried again later"
                );
                *position = None;
                break;
            }
        }
    }
    let unfinished: Vec<usize> = (0..jobs.len()).filter(|i| remaining[*i] > 0).collect();
    if !unfinished.is_empty() {
        metrics::counter!(m::READ_BACK_STALLS).increment(1);
    }
    metrics::counter!(m::READ_BACK_RECORDS, "outcome" => "read").increment(swept.read);
    metrics::counter!(m::READ_BACK_RECORDS, "outcome" => "skipped").increment(swept.skipped);
    metrics::counter!(m::READ_BACK_RECORDS, "outcome" => "missing").increment(swept.missing);
    (swept, unfinished)
}

/// The reader thread: answers read-back jobs until `stop` is cancelled.
pub(crate) fn run(
    mut log: Box<dyn LogReader>,
    incoming: Receiver<ReadBackJob>,
    shared: Arc<Shared>,
    lookback: i64,
    stop: CancellationToken,
) {
    let mut position = None;
    // Jobs a silent log left unfinished, tried again after a pause.
    let mut deferred: Vec<ReadBackJob> = Vec::new();
    while !stop.is_cancelled() {
        let wait = if deferred.is_empty() {
            Duration::from_millis(100)
        } else {
            RETRY_PAUSE
        };
        let mut batch = std::mem::take(&mut deferred);
        match incoming.recv_timeout(wait) {
            Ok(j) => batch.push(j),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let mut bytes: usize = batch.iter().map(|j| j.bytes).sum();
        while batch.len() < MAX_JOBS_PER_PASS && bytes < MAX_PASS_BYTES {
            match incoming.try_recv() {
                Ok(j) => {
                    bytes += j.bytes;
                    batch.push(j);
                }
                Err(_) => break,
            }
        }
        {
            // Those of partitions revoked meanwhile are not waited for any more.
            let e = shared.engine.lock().unwrap();
            batch.retain(|j| e.reading(j.id));
        }
        let mut by_partition: HashMap<i32, Vec<ReadBackJob>> = HashMap::new();
        for j in batch {
            by_partition.entry(j.partition).or_default().push(j);
        }
        let mut parts: Vec<_> = by_partition.into_iter().collect();
        // Continue where the last sweep ended first (no seek).
        parts.sort_by_key(|(p, _)| (position.is_none_or(|(at, _)| at != *p), *p));
        for (partition, jobs) in parts {
            let (_, unfinished) = sweep(
                log.as_mut(),
                &mut position,
                partition,
                &jobs,
                lookback,
                QUIET,
                &mut |i, records| {
                    let mut e = shared.engine.lock().unwrap();
                    e.on_read_back(jobs[i].id, &records, Instant::now());
                    shared.drain(&mut e);
                },
            );
            deferred.extend(unfinished.into_iter().map(|i| jobs[i].clone()));
        }
    }
}

/// The spans topic, read with a consumer of its own (no group commits).
pub(crate) struct KafkaLog {
    consumer: BaseConsumer,
    topic: String,
    partition: Option<i32>,
}

impl KafkaLog {
    pub(crate) fn new(conn: &tailsift_kafka::Connection, topic: &str) -> Result<Self, rdkafka::error::KafkaError> {
        let consumer: BaseConsumer = conn
            .client_config()
            .set("group.id", "tailsift-readback")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            // Sweeps seek often: do not prefetch far past what they read (by count or by bytes:
            // librdkafka's default would queue up to 64 MiB).
            .set("queued.min.messages", "2000")
            .set("queued.max.messages.kbytes", "8192")
            .set("fetch.wait.max.ms", "10")
            .create()?;
        Ok(KafkaLog {
            consumer,
            topic: topic.to_string(),
            partition: None,
        })
    }
}

impl LogReader for KafkaLog {
    fn seek(&mut self, partition: i32, offset: i64) -> Result<(), SourceError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset))?;
        self.consumer.assign(&tpl)?;
        self.partition = Some(partition);
        Ok(())
    }

    fn next(&mut self, timeout: Duration, wanted: &dyn Fn(i64) -> bool) -> NextRecord {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match self.consumer.poll(left) {
                Some(Ok(m)) if Some(m.partition()) == self.partition => {
                    let o = m.offset();
                    let value = wanted(o).then(|| Bytes::copy_from_slice(m.payload().unwrap_or_default()));
                    return Ok(Some((o, value)));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => {}
            }
        }
    }
}

/// The in-process log of `tailsift standalone`.
pub(crate) struct MemLogReader {
    log: Arc<tailsift_kafka::memlog::MemLog>,
    partition: i32,
    next: i64,
    buf: std::collections::VecDeque<tailsift_kafka::memlog::LogRecord>,
}

impl MemLogReader {
    pub(crate) fn new(log: Arc<tailsift_kafka::memlog::MemLog>) -> Self {
        MemLogReader {
            log,
            partition: 0,
            next: 0,
            buf: Default::default(),
        }
    }
}

impl LogReader for MemLogReader {
    fn seek(&mut self, partition: i32, offset: i64) -> Result<(), SourceError> {
        if partition < 0 || partition >= self.log.partitions() {
            return Err(SourceError::NoSuchPartition(partition));
        }
        self.partition = partition;
        self.next = offset;
        self.buf.clear();
        Ok(())
    }

    fn next(&mut self, _timeout: Duration, wanted: &dyn Fn(i64) -> bool) -> NextRecord {
        if self.buf.is_empty() {
            self.buf.extend(self.log.read(self.partition, self.next, 256));
        }
        Ok(self.buf.pop_front().map(|r| {
            self.next = r.offset + 1;
            (r.offset, wanted(r.offset).then_some(r.value))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log of `n` records per partition (value = offset as text), with holes.
    struct FakeLog {
        records: BTreeMap<i64, Bytes>,
        at: i64,
        seeks: Vec<i64>,
        /// Records whose value was asked for.
        copied: u64,
    }

    impl FakeLog {
        fn new(n: i64, holes: &[i64]) -> Self {
            FakeLog {
                records: (0..n)
                    .filter(|o| !holes.contains(o))
                    .map(|o| (o, Bytes::from(o.to_string())))
                    .collect(),
                at: 0,
                seeks: Vec::new(),
                copied: 0,
            }
        }
    }

    impl LogReader for FakeLog {
        fn seek(&mut self, _partition: i32, offset: i64) -> Result<(), SourceError> {
            self.at = offset;
            self.seeks.push(offset);
            Ok(())
        }

        fn next(&mut self, _timeout: Duration, wanted: &dyn Fn(i64) -> bool) -> NextRecord {
            let r = self.records.range(self.at..).next().map(|(o, v)| (*o, v.clone()));
            if let Some((o, _)) = r {
                self.at = o + 1;
                self.copied += u64::from(wanted(o));
            }
            Ok(r.map(|(o, v)| (o, wanted(o).then_some(v))))
        }
    }

    fn job(id: u64, offsets: &[i64]) -> ReadBackJob {
        ReadBackJob {
            id,
            partition: 0,
            trace_id: [id as u8; 16],
            offsets: offsets.to_vec(),
            bytes: offsets.len() * 100,
        }
    }

    fn run_sweep(
        log: &mut FakeLog,
        position: &mut Option<(i32, i64)>,
        jobs: &[ReadBackJob],
    ) -> (Vec<(u64, Vec<String>)>, Swept) {
        let (out, swept, unfinished) = run_sweep_unfinished(log, position, jobs);
        assert!(unfinished.is_empty());
        (out, swept)
    }

    /// What a sweep read (per job id, its records' text), and which jobs it left unfinished.
    type SweepResult = (Vec<(u64, Vec<String>)>, Swept, Vec<usize>);

    fn run_sweep_unfinished(log: &mut FakeLog, position: &mut Option<(i32, i64)>, jobs: &[ReadBackJob]) -> SweepResult {
        let mut out = Vec::new();
        let (swept, unfinished) = sweep(log, position, 0, jobs, 0, Duration::from_millis(1), &mut |i, recs| {
            out.push((
                jobs[i].id,
                recs.iter().map(|r| String::from_utf8(r.to_vec()).unwrap()).collect(),
            ))
        });
        (out, swept, unfinished)
    }

    #[test]
    fn interleaved_traces_are_read_in_one_pass_and_handed_over_as_each_completes() {
        let mut log = FakeLog::new(10_000, &[]);
        let mut pos = None;
        let jobs = [job(1, &[10, 14, 30]), job(2, &[12, 13]), job(3, &[31])];
        let (out, swept) = run_sweep(&mut log, &mut pos, &jobs);
        assert_eq!(
            out,
            vec![
                (2, vec!["12".into(), "13".into()]),
                (1, vec!["10".into(), "14".into(), "30".into()]),
                (3, vec!["31".into()]),
            ],
            "each trace as soon as its last record was read"
        );
        assert_eq!(swept.seeks, 1, "one seek, then sequential");
        assert_eq!(swept.read, 6);
        assert_eq!(swept.skipped, 16, "11 and 15..=29 read through, not sought over");
        assert_eq!(log.copied, 6, "only the records needed are copied out of the log");
        assert_eq!(pos, Some((0, 32)));
        // A next sweep starting just after goes on without seeking.
        let (out, swept) = run_sweep(&mut log, &mut pos, &[job(4, &[40])]);
        assert_eq!(out, vec![(4, vec!["40".into()])]);
        assert_eq!(swept.seeks, 0);
    }

    #[test]
    fn long_gaps_and_records_behind_are_reached_by_seeking() {
        let mut log = FakeLog::new(100_000, &[]);
        let mut pos = Some((0, 500));
        let jobs = [job(1, &[100, 50_000])];
        let (out, swept) = run_sweep(&mut log, &mut pos, &jobs);
        assert_eq!(out, vec![(1, vec!["100".into(), "50000".into()])]);
        assert_eq!(
            log.seeks,
            vec![100, 50_000],
            "behind the position, then over a long gap"
        );
        assert_eq!(swept.skipped, 0);
    }

    #[test]
    fn records_gone_from_the_log_are_counted_missing_and_the_rest_exported() {
        // 20 and 21 are gone (retention).
        let mut log = FakeLog::new(100, &[20, 21]);
        let mut pos = None;
        let jobs = [job(1, &[19, 20, 22]), job(2, &[21])];
        let (out, swept) = run_sweep(&mut log, &mut pos, &jobs);
        assert_eq!(out, vec![(2, vec![]), (1, vec!["19".into(), "22".into()])]);
        assert_eq!(swept.missing, 2);
        assert_eq!(swept.read, 2);
    }

    #[test]
    fn a_silent_log_leaves_jobs_unfinished_not_missing() {
        // The log ends at 100 (a broker that stopped answering): 150 is not declared gone.
        let mut log = FakeLog::new(100, &[]);
        let mut pos = None;
        let jobs = [job(1, &[10]), job(2, &[90, 150]), job(3, &[160])];
        let (out, swept, unfinished) = run_sweep_unfinished(&mut log, &mut pos, &jobs);
        assert_eq!(out, vec![(1, vec!["10".into()])]);
        assert_eq!(unfinished, vec![1, 2], "tried again later");
        assert_eq!(swept.missing, 0);
        assert_eq!(pos, None, "the next attempt seeks");
        // The log answers again: the retry completes them.
        log.records.extend((100..200).map(|o| (o, Bytes::from(o.to_string()))));
        let retry = [jobs[1].clone(), jobs[2].clone()];
        let (out, _) = run_sweep(&mut log, &mut pos, &retry);
        assert_eq!(out, vec![(2, vec!["90".into(), "150".into()]), (3, vec!["160".into()])]);
    }

    /// A log that, asked for an offset inside a batch of `batch` records, starts at the next
    /// batch (as tansu 0.6 does).
    struct BatchSkippingLog {
        inner: FakeLog,
        batch: i64,
    }

    impl LogReader for BatchSkippingLog {
        fn seek(&mut self, partition: i32, offset: i64) -> Result<(), SourceError> {
            let start = (offset + self.batch - 1) / self.batch * self.batch;
            self.inner.seek(partition, start)
        }

        fn next(&mut self, timeout: Duration, wanted: &dyn Fn(i64) -> bool) -> NextRecord {
            self.inner.next(timeout, wanted)
        }
    }

    #[test]
    fn a_broker_starting_at_the_next_batch_is_met_by_looking_further_back() {
        let mut log = BatchSkippingLog {
            inner: FakeLog::new(1_000, &[]),
            batch: 100,
        };
        let mut out = Vec::new();
        let (swept, _) = sweep(
            &mut log,
            &mut None,
            0,
            &[job(1, &[150, 160])],
            1_000,
            Duration::from_millis(1),
            &mut |_, recs| out = recs,
        );
        assert_eq!(out, vec![Bytes::from("150"), Bytes::from("160")]);
        assert_eq!(swept.missing, 0);
        assert_eq!(
            log.inner.seeks,
            vec![200, 100],
            "150 -> next batch (200); 150-64 -> 100"
        );
        // Without a lookback the same answer means the record is gone.
        let (swept, _) = sweep(
            &mut log,
            &mut None,
            0,
            &[job(2, &[250])],
            0,
            Duration::from_millis(1),
            &mut |_, _| {},
        );
        assert_eq!(swept.missing, 1);
    }

    #[test]
    fn a_job_without_offsets_is_answered_at_once() {
        let mut log = FakeLog::new(10, &[]);
        let (out, _) = run_sweep(&mut log, &mut None, &[job(9, &[])]);
        assert_eq!(out, vec![(9, vec![])]);
    }
}

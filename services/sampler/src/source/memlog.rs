//! The in-process log of `tailsift standalone` as a [`RecordSource`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tailsift_kafka::memlog::{LogRecord, MemLog};

use super::{RecordSource, SourceError, SourceRecord};
use crate::shared::Shared;

/// The in-process log: every partition is assigned to this sampler at start.
pub(crate) struct LogSource {
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
    pub(crate) fn assign_all(log: Arc<MemLog>, shared: &Shared) -> LogSource {
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
    async fn recv(&self) -> Result<SourceRecord, SourceError> {
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
            appended.changed().await.map_err(|_| SourceError::LogClosed)?;
        }
    }

    fn commit(&self, offsets: &[(i32, i64)], _sync: bool) -> Result<(), SourceError> {
        for (p, o) in offsets {
            self.log.commit(*p, *o).ok_or(SourceError::NoSuchPartition(*p))?;
        }
        Ok(())
    }

    fn pause(&self, paused: bool) -> Result<(), SourceError> {
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

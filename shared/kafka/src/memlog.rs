//! An in-process partitioned log with Kafka's offset semantics, the transport of `tailsift
//! standalone` (ingest and sampler in one process, no broker).
//!
//! * `partitions` partitions, each append-only; a record's offset is its position in its
//!   partition, starting at 0 and never reused.
//! * Records are keyed like the spans topic (hex trace ID) and placed with the same FNV-1a
//!   partitioner as the Kafka producers ([`tailsift_otlp::fnv1a_partition`]), so every span of a
//!   trace lands on one partition.
//! * One committed offset per partition: the next offset to read (Kafka's meaning). It never
//!   moves back and is clamped to the end of the partition; records below it are trimmed
//!   (retention), which frees their capacity.
//! * Bounded: the retained key and value bytes (plus a small per-record overhead) never exceed
//!   `max_bytes`; an append that would is refused with [`LogError::Full`], which producers turn
//!   into the same retryable answer as a full Kafka producer queue.
//! * Reading from an offset below the first retained one starts at the first retained one
//!   (`auto.offset.reset=earliest`).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::watch;

/// Bytes counted per record on top of its key and value.
pub const RECORD_OVERHEAD: usize = 32;

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub partition: i32,
    pub offset: i64,
    /// Append time, milliseconds since the Unix epoch (Kafka's `CreateTime`).
    pub timestamp_ms: i64,
    pub key: Bytes,
    pub value: Bytes,
}

impl LogRecord {
    fn size(&self) -> usize {
        self.key.len() + self.value.len() + RECORD_OVERHEAD
    }
}

/// Why an append was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The retained bytes would pass the capacity; retry once consumers committed more.
    #[error("in-process log is full ({max_bytes} bytes retained); retry later")]
    Full { max_bytes: usize },
    #[error("partition {0} does not exist")]
    UnknownPartition(i32),
}

#[derive(Default)]
struct Partition {
    /// Offset of `records[0]` (the first retained record).
    start: i64,
    records: VecDeque<LogRecord>,
    committed: Option<i64>,
}

impl Partition {
    fn end(&self) -> i64 {
        self.start + self.records.len() as i64
    }
}

struct State {
    parts: Vec<Partition>,
    bytes: usize,
}

/// The log. Share it with `Arc`; every method takes `&self`.
pub struct MemLog {
    state: Mutex<State>,
    max_bytes: usize,
    appended: watch::Sender<u64>,
}

impl MemLog {
    /// A log of `partitions` (at least 1) partitions retaining at most `max_bytes`.
    pub fn new(partitions: i32, max_bytes: usize) -> MemLog {
        assert!(partitions >= 1, "a log needs at least one partition");
        MemLog {
            state: Mutex::new(State {
                parts: (0..partitions).map(|_| Partition::default()).collect(),
                bytes: 0,
            }),
            max_bytes,
            appended: watch::Sender::new(0),
        }
    }

    pub fn partitions(&self) -> i32 {
        self.state.lock().unwrap().parts.len() as i32
    }

    /// The capacity in bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Bytes retained now (keys, values and the per-record overhead).
    pub fn retained_bytes(&self) -> usize {
        self.state.lock().unwrap().bytes
    }

    /// The partition a key is written to: FNV-1a, as the Kafka producers.
    pub fn partition_for(&self, key: &[u8]) -> i32 {
        tailsift_otlp::fnv1a_partition(key, self.partitions())
    }

    /// Appends a record to the partition of `key`; returns `(partition, offset)`.
    pub fn append(&self, key: &[u8], value: Bytes) -> Result<(i32, i64), LogError> {
        let partition = self.partition_for(key);
        let offset = self.append_to(partition, Bytes::copy_from_slice(key), value)?;
        Ok((partition, offset))
    }

    /// Appends a record to `partition`; returns its offset.
    pub fn append_to(&self, partition: i32, key: Bytes, value: Bytes) -> Result<i64, LogError> {
        let timestamp_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let offset = {
            let mut s = self.state.lock().unwrap();
            let size = key.len() + value.len() + RECORD_OVERHEAD;
            if s.bytes + size > self.max_bytes {
                return Err(LogError::Full {
                    max_bytes: self.max_bytes,
                });
            }
            let part = usize::try_from(partition)
                .ok()
                .and_then(|i| s.parts.get_mut(i))
                .ok_or(LogError::UnknownPartition(partition))?;
            let offset = part.end();
            part.records.push_back(LogRecord {
                partition,
                offset,
                timestamp_ms,
                key,
                value,
            });
            s.bytes += size;
            offset
        };
        self.appended.send_modify(|n| *n += 1);
        Ok(offset)
    }

    /// Up to `max` records of `partition` from offset `from` on (from the first retained record
    /// when `from` is below it). Empty at the end of the partition.
    pub fn read(&self, partition: i32, from: i64, max: usize) -> Vec<LogRecord> {
        let s = self.state.lock().unwrap();
        let Some(part) = usize::try_from(partition).ok().and_then(|i| s.parts.get(i)) else {
            return Vec::new();
        };
        let skip = (from.max(part.start) - part.start) as usize;
        part.records.iter().skip(skip).take(max).cloned().collect()
    }

    /// Commits `offset` (the next offset to read) for `partition` and trims the records below it.
    /// A commit below the current one is ignored; one past the end is clamped to the end.
    /// Returns the committed offset in force.
    pub fn commit(&self, partition: i32, offset: i64) -> Option<i64> {
        let mut s = self.state.lock().unwrap();
        let part = usize::try_from(partition).ok().and_then(|i| s.parts.get_mut(i))?;
        let offset = offset.min(part.end());
        if part.committed.is_some_and(|c| c >= offset) {
            return part.committed;
        }
        part.committed = Some(offset);
        let mut freed = 0;
        while part.start < offset {
            let r = part
                .records
                .pop_front()
                .expect("offsets below the end are retained or trimmed");
            freed += r.size();
            part.start += 1;
        }
        s.bytes -= freed;
        Some(offset)
    }

    /// The committed offset of `partition`; `None` before the first commit.
    pub fn committed(&self, partition: i32) -> Option<i64> {
        let s = self.state.lock().unwrap();
        usize::try_from(partition)
            .ok()
            .and_then(|i| s.parts.get(i))
            .and_then(|p| p.committed)
    }

    /// `(first retained offset, end offset)` of `partition` (Kafka's low and high watermarks).
    pub fn watermarks(&self, partition: i32) -> Option<(i64, i64)> {
        let s = self.state.lock().unwrap();
        let part = usize::try_from(partition).ok().and_then(|i| s.parts.get(i))?;
        Some((part.start, part.end()))
    }

    /// A receiver that sees a change after every append (the value counts appends).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> Vec<u8> {
        format!("{:032x}", u128::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15)).into_bytes()
    }

    #[test]
    fn offsets_are_per_partition_and_keys_use_the_kafka_partitioner() {
        let log = MemLog::new(4, 1 << 20);
        let mut next = [0i64; 4];
        for i in 0..100 {
            let k = key(i);
            let (p, off) = log.append(&k, Bytes::from(vec![i as u8; 10])).unwrap();
            assert_eq!(p, tailsift_otlp::fnv1a_partition(&k, 4));
            assert_eq!(off, next[p as usize], "offsets are dense per partition");
            next[p as usize] += 1;
        }
        assert!(next.iter().all(|n| *n > 0), "keys spread over partitions: {next:?}");
        for p in 0..4 {
            assert_eq!(log.watermarks(p), Some((0, next[p as usize])));
            let all = log.read(p, 0, 1000);
            assert_eq!(all.len() as i64, next[p as usize]);
            assert!(all
                .iter()
                .enumerate()
                .all(|(i, r)| r.offset == i as i64 && r.partition == p));
            assert_eq!(log.partition_for(&all[0].key), p);
        }
        // Same key, same partition, increasing offsets.
        let (p1, o1) = log.append(b"5b8efff798038103d269b633813fc60c", Bytes::new()).unwrap();
        let (p2, o2) = log.append(b"5b8efff798038103d269b633813fc60c", Bytes::new()).unwrap();
        assert_eq!((p1, o1 + 1), (p2, o2));
        assert_eq!(
            log.append_to(9, Bytes::new(), Bytes::new()),
            Err(LogError::UnknownPartition(9))
        );
    }

    #[test]
    fn reads_start_at_the_requested_offset_or_the_first_retained_one() {
        let log = MemLog::new(1, 1 << 20);
        for i in 0..10u8 {
            log.append_to(0, Bytes::from_static(b"k"), Bytes::from(vec![i]))
                .unwrap();
        }
        let r = log.read(0, 4, 3);
        assert_eq!(r.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![4, 5, 6]);
        assert_eq!(r[0].value, Bytes::from(vec![4u8]));
        assert!(log.read(0, 10, 5).is_empty(), "nothing past the end");
        assert!(log.read(3, 0, 5).is_empty(), "unknown partition");
        assert_eq!(log.committed(0), None);
        assert_eq!(log.commit(0, 6), Some(6));
        assert_eq!(log.watermarks(0), Some((6, 10)), "records below the commit are trimmed");
        let r = log.read(0, 2, 100);
        assert_eq!(
            r.first().map(|r| r.offset),
            Some(6),
            "a trimmed offset reads from the first retained"
        );
        // Offsets are never reused after trimming.
        assert_eq!(log.append_to(0, Bytes::new(), Bytes::new()), Ok(10));
    }

    #[test]
    fn commits_never_move_back_and_are_clamped_to_the_end() {
        let log = MemLog::new(2, 1 << 20);
        for _ in 0..5 {
            log.append_to(1, Bytes::new(), Bytes::from_static(b"v")).unwrap();
        }
        assert_eq!(log.commit(1, 3), Some(3));
        assert_eq!(log.commit(1, 2), Some(3), "a lower commit is ignored");
        assert_eq!(log.committed(1), Some(3));
        assert_eq!(log.commit(1, 99), Some(5), "clamped to the end offset");
        assert_eq!(log.watermarks(1), Some((5, 5)));
        assert_eq!(log.committed(0), None, "partitions commit independently");
        assert_eq!(log.commit(7, 1), None);
    }

    #[test]
    fn a_full_log_refuses_appends_until_commits_trim_it() {
        let rec = 100 + RECORD_OVERHEAD;
        let log = MemLog::new(1, rec * 3);
        for _ in 0..3 {
            log.append_to(0, Bytes::new(), Bytes::from(vec![0u8; 100])).unwrap();
        }
        assert_eq!(log.retained_bytes(), rec * 3);
        let full = log.append_to(0, Bytes::new(), Bytes::from(vec![0u8; 100]));
        assert_eq!(full, Err(LogError::Full { max_bytes: rec * 3 }));
        assert_eq!(log.watermarks(0), Some((0, 3)), "a refused record takes no offset");
        log.commit(0, 2);
        assert_eq!(log.retained_bytes(), rec);
        assert_eq!(log.append_to(0, Bytes::new(), Bytes::from(vec![0u8; 100])), Ok(3));
        assert_eq!(log.append_to(0, Bytes::new(), Bytes::from(vec![0u8; 100])), Ok(4));
        assert!(log.append_to(0, Bytes::new(), Bytes::from(vec![0u8; 100])).is_err());
    }

    #[tokio::test]
    async fn subscribers_see_appends() {
        let log = MemLog::new(1, 1 << 20);
        let mut rx = log.subscribe();
        let waiter = tokio::spawn(async move {
            rx.changed().await.unwrap();
            *rx.borrow()
        });
        tokio::task::yield_now().await;
        log.append_to(0, Bytes::new(), Bytes::new()).unwrap();
        assert_eq!(waiter.await.unwrap(), 1);
    }
}

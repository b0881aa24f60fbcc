//! Where the run loop reads the spans log: [`RecordSource`], implemented by the Kafka consumer
//! group ([`kafka`]) and the in-process log of `tailsift standalone` ([`memlog`]).

pub(crate) mod kafka;
pub(crate) mod memlog;

use std::future::Future;
use std::sync::Arc;

use tailsift_kafka::memlog::MemLog;

pub use crate::shared::SourceError;

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
    fn recv(&self) -> impl Future<Output = Result<SourceRecord, SourceError>> + Send;
    /// Commits `(partition, next offset to read)` pairs; `sync` waits for the acknowledgement.
    fn commit(&self, offsets: &[(i32, i64)], sync: bool) -> Result<(), SourceError>;
    /// Stops (`true`) or resumes delivery from every assigned partition.
    fn pause(&self, paused: bool) -> Result<(), SourceError>;
    /// Updates the consumer lag gauges (possibly in the background).
    fn report_lag(self: Arc<Self>);
    /// Stops delivering records before the final handover (may block; called off the runtime).
    fn stop(&self) {}
}

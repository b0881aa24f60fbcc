//! Publishing split requests to Kafka (or, in `tailsift standalone`, to the in-process log),
//! acknowledging only what was acknowledged.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::util::Timeout;
use rdkafka::ClientContext;
use tailsift_kafka::memlog::{LogError, MemLog};
use tailsift_kafka::served::ServedProducer;
use tailsift_otlp::{record_key, TraceRecord};
use tokio::sync::oneshot;

use crate::admission::{Budget, Lease};
use crate::config::{Acks, KafkaConfig};
use crate::metrics as m;

/// Why a batch of records could not be written. All of these are retryable for the client.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PublishError {
    #[error("Kafka is unreachable: {0}")]
    BrokerDown(String),
    #[error("producer queue is full")]
    QueueFull,
    #[error("too many bytes in flight to Kafka ({0} bytes limit)")]
    InFlightLimit(usize),
    #[error("Kafka did not acknowledge a record: {0}")]
    Delivery(String),
    #[error("ingest node is shutting down")]
    ShuttingDown,
}

impl PublishError {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            PublishError::BrokerDown(_) => "broker_down",
            PublishError::QueueFull => "queue_full",
            PublishError::InFlightLimit(_) => "in_flight_limit",
            PublishError::Delivery(_) => "delivery",
            PublishError::ShuttingDown => "shutting_down",
        }
    }
}

/// Where records go.
/// The delivery reports of one request's records, gathered where the event queue is served: the
/// request's task is woken once, when the last record is reported, instead of once per record
/// (a future per record, as `FutureProducer` has, costs a wake-up and a poll of every pending
/// future for each record).
pub struct RequestAck {
    /// Records not yet reported.
    remaining: AtomicUsize,
    ok_records: AtomicU64,
    ok_bytes: AtomicU64,
    first_error: Mutex<Option<PublishError>>,
    done: Mutex<Option<oneshot::Sender<()>>>,
}

impl RequestAck {
    fn new(records: usize) -> (Arc<Self>, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let ack = RequestAck {
            remaining: AtomicUsize::new(records),
            ok_records: AtomicU64::new(0),
            ok_bytes: AtomicU64::new(0),
            first_error: Mutex::new(None),
            done: Mutex::new(Some(tx)),
        };
        (Arc::new(ack), rx)
    }

    fn fail(&self, e: PublishError) {
        self.first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(e);
    }

    /// `n` records are settled (reported, or never enqueued); the last one wakes the request.
    fn settle(&self, n: usize) {
        if n > 0 && self.remaining.fetch_sub(n, Ordering::AcqRel) == n {
            if let Some(tx) = self.done.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = tx.send(());
            }
        }
    }
}

/// The producer's context: delivery reports go to the request they belong to (on the runtime
/// thread that serves the producer's event queue, see [`IngestProducer`]).
pub struct IngestContext;

impl ClientContext for IngestContext {}

impl ProducerContext for IngestContext {
    type DeliveryOpaque = Arc<RequestAck>;

    fn delivery(&self, result: &DeliveryResult<'_>, ack: Arc<RequestAck>) {
        match result {
            Ok(m) => {
                ack.ok_records.fetch_add(1, Ordering::Relaxed);
                ack.ok_bytes
                    .fetch_add(m.payload().map_or(0, |p| p.len()) as u64, Ordering::Relaxed);
            }
            Err((e, _)) => ack.fail(classify(e)),
        }
        ack.settle(1);
    }
}

/// The ingest node's Kafka producer. Its event queue is served on the runtime
/// ([`tailsift_kafka::served`]), so a delivery report wakes the request it completes on the same
/// runtime thread, and an idle node costs nothing. Under load the two ways (this and a polling
/// thread) cost the same within noise (docs/benchmarks.md, ingest matrix).
pub type IngestProducer = ServedProducer<IngestContext>;

enum Transport {
    Kafka(IngestProducer),
    /// The in-process log of `tailsift standalone`: same keys, partitioner and answers; a full log
    /// is answered like a full producer queue.
    InProcess(Arc<MemLog>),
}

/// Owns the Kafka producer (or the in-process log); charges records to the node's in-flight byte
/// budget (shared with the receivers, see [`crate::admission`]).
pub struct Publisher {
    transport: Transport,
    topic: String,
    budget: Arc<Budget>,
    kafka_up: Arc<AtomicBool>,
    closing: AtomicBool,
}

impl Publisher {
    pub fn new(cfg: &KafkaConfig, budget: Arc<Budget>, kafka_up: Arc<AtomicBool>) -> Result<Self, KafkaError> {
        let mut c = cfg.connection().client_config();
        c.set(
            "acks",
            match cfg.acks {
                Acks::All => "all",
                Acks::Leader => "1",
                Acks::None => "0",
            },
        )
        .set("enable.idempotence", if cfg.idempotence { "true" } else { "false" })
        .set("compression.type", cfg.compression.as_librdkafka())
        .set("linger.ms", cfg.linger.as_millis().to_string())
        .set("batch.size", cfg.batch_bytes.to_string())
        .set("message.max.bytes", (cfg.batch_bytes + 64 * 1024).to_string())
        .set("queue.buffering.max.messages", cfg.queue_max_messages.to_string())
        .set("queue.buffering.max.kbytes", cfg.queue_max_kbytes.to_string())
        .set("message.timeout.ms", cfg.delivery_timeout.as_millis().to_string())
        // Sarama-compatible hashing of the key, as the OpenTelemetry Collector's Kafka exporter
        // partitions: collectors and ingest nodes writing one topic agree on partitions.
        .set("partitioner", "fnv1a");
        // Operator-supplied properties win.
        for (k, v) in &cfg.properties {
            c.set(k, v);
        }
        // The serving task ends by itself when the producer is dropped.
        let (producer, _task) = IngestProducer::start(&c, IngestContext)?;
        Ok(Publisher {
            transport: Transport::Kafka(producer),
            topic: cfg.topic.clone(),
            budget,
            kafka_up,
            closing: AtomicBool::new(false),
        })
    }

    /// A publisher appending to the in-process log `log` instead of Kafka.
    pub fn in_process(log: Arc<MemLog>, budget: Arc<Budget>) -> Self {
        Publisher {
            transport: Transport::InProcess(log),
            topic: String::new(),
            budget,
            kafka_up: Arc::new(AtomicBool::new(true)),
            closing: AtomicBool::new(false),
        }
    }

    /// The in-flight byte budget.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// The Kafka producer; `None` with the in-process log.
    pub fn producer(&self) -> Option<&IngestProducer> {
        match &self.transport {
            Transport::Kafka(p) => Some(p),
            Transport::InProcess(_) => None,
        }
    }

    /// Records queued and not yet acknowledged (always 0 with the in-process log, which appends
    /// synchronously).
    pub fn queued(&self) -> i32 {
        self.producer().map_or(0, |p| p.in_flight_count())
    }

    /// Writes every record and returns once Kafka acknowledged all of them. On error some
    /// records may have been written (the client retries; Kafka holds duplicates then, which the
    /// samplers tolerate), but nothing is reported as written that was not. The records are
    /// charged to `lease` (released when the caller drops it, after answering).
    pub async fn publish(&self, records: Vec<TraceRecord>, lease: &mut Lease) -> Result<(), PublishError> {
        let result = self.publish_inner(records, lease).await;
        if let Err(e) = &result {
            metrics::counter!(m::PRODUCE_ERRORS, "kind" => e.kind()).increment(1);
        }
        result
    }

    async fn publish_inner(&self, records: Vec<TraceRecord>, lease: &mut Lease) -> Result<(), PublishError> {
        if records.is_empty() {
            return Ok(());
        }
        if self.closing.load(Ordering::Acquire) {
            return Err(PublishError::ShuttingDown);
        }
        if !self.kafka_up.load(Ordering::Acquire) {
            return Err(PublishError::BrokerDown("metadata probe failing".into()));
        }
        let bytes: usize = records.iter().map(|r| r.payload.len() + 32).sum();
        lease.charge(bytes).map_err(|e| PublishError::InFlightLimit(e.max))?;

        let started = Instant::now();
        let producer = match &self.transport {
            Transport::Kafka(p) => p,
            Transport::InProcess(log) => return append_in_process(log, records, started),
        };
        let (ack, done) = RequestAck::new(records.len());
        let mut enqueued = 0usize;
        for rec in &records {
            let key = record_key(&rec.trace_id);
            let br = BaseRecord::with_opaque_to(&self.topic, ack.clone())
                .key(&key[..])
                .payload(&rec.payload[..]);
            match producer.send(br) {
                Ok(()) => enqueued += 1,
                Err((e, _)) => {
                    ack.fail(classify(&e));
                    break;
                }
            }
        }
        // Records never enqueued will not be reported.
        ack.settle(records.len() - enqueued);
        metrics::gauge!(m::PRODUCER_QUEUE).set(producer.in_flight_count() as f64);
        if done.await.is_err() {
            ack.fail(PublishError::ShuttingDown);
        }
        let ok_records = ack.ok_records.load(Ordering::Relaxed);
        let ok_bytes = ack.ok_bytes.load(Ordering::Relaxed);
        let first_error = ack.first_error.lock().unwrap_or_else(|p| p.into_inner()).take();
        metrics::counter!(m::RECORDS_PRODUCED).increment(ok_records);
        metrics::counter!(m::BYTES_PRODUCED).increment(ok_bytes);
        metrics::gauge!(m::PRODUCER_QUEUE).set(producer.in_flight_count() as f64);
        match first_error {
            Some(e) => Err(e),
            None => {
                metrics::histogram!(m::PRODUCE_DURATION).record(started.elapsed().as_secs_f64());
                Ok(())
            }
        }
    }

    /// Stops taking new requests and waits for queued records (at most `timeout`).
    pub fn close(&self, timeout: Duration) {
        self.closing.store(true, Ordering::Release);
        if let Some(producer) = self.producer() {
            if let Err(e) = producer.flush(Timeout::After(timeout)) {
                tracing::warn!(error = %e, queued = producer.in_flight_count(), "producer flush did not complete");
            }
        }
    }
}

/// Appends every record to the in-process log, in order; stops at the first refused one (the log
/// is full: retryable, as a full producer queue). What was appended stays (at-least-once, as with
/// Kafka).
fn append_in_process(log: &MemLog, records: Vec<TraceRecord>, started: Instant) -> Result<(), PublishError> {
    let (mut ok_records, mut ok_bytes) = (0u64, 0u64);
    let mut result = Ok(());
    for rec in records {
        let key = record_key(&rec.trace_id);
        let len = rec.payload.len() as u64;
        match log.append(&key, rec.payload.into()) {
            Ok(_) => {
                ok_records += 1;
                ok_bytes += len;
            }
            Err(LogError::Full { .. }) => {
                result = Err(PublishError::QueueFull);
                break;
            }
            Err(e @ LogError::UnknownPartition(_)) => {
                result = Err(PublishError::Delivery(e.to_string()));
                break;
            }
        }
    }
    metrics::counter!(m::RECORDS_PRODUCED).increment(ok_records);
    metrics::counter!(m::BYTES_PRODUCED).increment(ok_bytes);
    if result.is_ok() {
        metrics::histogram!(m::PRODUCE_DURATION).record(started.elapsed().as_secs_f64());
    }
    result
}

fn classify(e: &KafkaError) -> PublishError {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::QueueFull) => PublishError::QueueFull,
        Some(
            RDKafkaErrorCode::MessageTimedOut
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure,
        ) => PublishError::BrokerDown(e.to_string()),
        _ => PublishError::Delivery(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_publish_error_kind_is_a_zeroed_metric_label() {
        for e in [
            PublishError::BrokerDown(String::new()),
            PublishError::QueueFull,
            PublishError::InFlightLimit(1),
            PublishError::Delivery(String::new()),
            PublishError::ShuttingDown,
        ] {
            assert!(m::PRODUCE_ERROR_KINDS.contains(&e.kind()), "{}", e.kind());
        }
    }

    fn record(n: u8, bytes: usize) -> TraceRecord {
        TraceRecord {
            trace_id: [n; 16],
            payload: vec![n; bytes],
            spans: 1,
        }
    }

    #[tokio::test]
    async fn in_process_log_takes_records_by_key_and_a_full_log_is_a_full_queue() {
        let per_record = 1000 + 32 + tailsift_kafka::memlog::RECORD_OVERHEAD;
        let log = Arc::new(MemLog::new(3, per_record * 3));
        let p = Publisher::in_process(log.clone(), Budget::new(1 << 20));
        p.publish(vec![record(1, 1000), record(2, 1000)], &mut p.budget().lease())
            .await
            .unwrap();
        for n in [1u8, 2] {
            let key = record_key(&[n; 16]);
            let part = tailsift_otlp::fnv1a_partition(&key, 3);
            let recs = log.read(part, 0, 10);
            assert!(
                recs.iter()
                    .any(|r| r.key[..] == key[..] && r.value[..] == [n; 1000][..]),
                "record {n} keyed by its hex trace ID on partition {part}"
            );
        }
        // Room for one more record only: the request fails retryably, as with a full Kafka queue.
        assert_eq!(
            p.publish(vec![record(3, 1000), record(4, 1000)], &mut p.budget().lease())
                .await,
            Err(PublishError::QueueFull)
        );
        assert_eq!(p.queued(), 0);
        p.close(Duration::from_secs(1));
        assert_eq!(
            p.publish(vec![record(5, 10)], &mut p.budget().lease()).await,
            Err(PublishError::ShuttingDown)
        );
    }

    /// Delivery reports reach the request through the task serving the producer's event queue
    /// (there is no polling thread): a record for an unreachable broker fails the request when its
    /// delivery times out, and dropping the producer ends that task.
    #[tokio::test]
    async fn delivery_reports_are_served_on_the_runtime_and_the_task_ends_with_the_producer() {
        let cfg = KafkaConfig {
            brokers: "127.0.0.1:1".into(),
            delivery_timeout: Duration::from_millis(500),
            ..KafkaConfig::default()
        };
        let p = Publisher::new(&cfg, Budget::new(1 << 20), Arc::new(AtomicBool::new(true))).unwrap();
        let result = tokio::time::timeout(
            Duration::from_secs(20),
            p.publish(vec![record(1, 100)], &mut p.budget().lease()),
        )
        .await
        .expect("the delivery report (a timeout) reached the request");
        assert!(
            matches!(result, Err(PublishError::BrokerDown(_) | PublishError::Delivery(_))),
            "{result:?}"
        );

        let (producer, task) = IngestProducer::start(&cfg.connection().client_config(), IngestContext).unwrap();
        let clone = producer.clone();
        drop(producer);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!task.is_finished(), "a clone keeps the producer and its task");
        drop(clone);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the serving task ended with the producer")
            .unwrap();
    }
}

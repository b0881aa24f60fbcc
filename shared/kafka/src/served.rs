//! Producers whose event queue (delivery reports, errors) is served by a task on the async
//! runtime, woken through a socket librdkafka writes one byte to when the queue gets an event after
//! being served (`rd_kafka_queue_io_event_enable`), instead of by a polling thread:
//!
//! - a delivery report wakes whoever waits for it on the runtime (a local wake-up), where a
//!   polling thread woke it across threads (a futex wake-up per report batch);
//! - an idle producer costs nothing: rdkafka's `ThreadedProducer` (under `FutureProducer`) polls
//!   with a 100 ms deadline and truncates the time left to whole milliseconds, so the last
//!   sub-millisecond of every deadline is a busy loop of non-blocking polls (measured: 1% of a
//!   core per producer, idle; a profile of a sampler with two such producers found 14% of its CPU
//!   in that loop, docs/benchmarks.md).
//!
//! [`ServedProducer`] takes any producer context (the ingest node gathers a request's reports in
//! its own); [`DeliveryContext`] is the general one: a record sent with [`ServedProducer::send`]
//! reports its delivery to a oneshot channel, or to nobody.

use std::ops::Deref;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Weak};
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use tokio::sync::oneshot;

/// A producer whose event queue is served on the runtime. Cheap to clone; dropping the last clone
/// stops the serving task.
pub struct ServedProducer<C: ProducerContext + 'static> {
    inner: Arc<Inner<C>>,
}

impl<C: ProducerContext + 'static> Clone for ServedProducer<C> {
    fn clone(&self) -> Self {
        ServedProducer {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<C: ProducerContext + 'static> {
    /// Dropped first: detaches the wake-up from the queue before the client is destroyed.
    wake: QueueWake,
    producer: BaseProducer<C>,
}

/// The main queue's wake-up socket, enabled on the queue while this lives.
struct QueueWake {
    queue: *mut rdsys::rd_kafka_queue_t,
    /// The end librdkafka writes to; closing it ends the serving task (end of stream).
    _writer: UnixStream,
}

// SAFETY: a librdkafka queue handle may be used from any thread (librdkafka locks the queue);
// this one is only used to read the queue's length and, on drop, to detach and release it.
unsafe impl Send for QueueWake {}
unsafe impl Sync for QueueWake {}

impl QueueWake {
    fn len(&self) -> usize {
        // SAFETY: `queue` is a live handle until `drop`.
        unsafe { rdsys::rd_kafka_queue_length(self.queue) }
    }
}

impl Drop for QueueWake {
    fn drop(&mut self) {
        // SAFETY: the handle is live; fd -1 disables the wake-up, after which librdkafka no
        // longer writes to our socket; then the handle (not the queue itself) is released.
        unsafe {
            rdsys::rd_kafka_queue_io_event_enable(self.queue, -1, std::ptr::null(), 0);
            rdsys::rd_kafka_queue_destroy(self.queue);
        }
    }
}

impl<C: ProducerContext + 'static> Deref for ServedProducer<C> {
    type Target = BaseProducer<C>;
    fn deref(&self) -> &Self::Target {
        &self.inner.producer
    }
}

fn creation(e: std::io::Error) -> KafkaError {
    KafkaError::ClientCreation(e.to_string())
}

impl<C: ProducerContext + 'static> ServedProducer<C> {
    /// Creates the producer and spawns the task serving its event queue (on the current runtime).
    pub fn start(config: &ClientConfig, context: C) -> Result<(Self, tokio::task::JoinHandle<()>), KafkaError> {
        let producer: BaseProducer<C> = config.create_with_context(context)?;
        let (reader, writer) = UnixStream::pair().map_err(creation)?;
        for s in [&reader, &writer] {
            s.set_nonblocking(true).map_err(creation)?;
        }
        static WAKE_BYTE: [u8; 1] = [1];
        // SAFETY: the client is live; the returned handle is released by `QueueWake::drop`, which
        // runs before the client is destroyed (field order of `Inner`). The payload is a static;
        // the fd stays open while the wake-up is enabled (`_writer`).
        let queue = unsafe {
            let q = rdsys::rd_kafka_queue_get_main(producer.client().native_ptr());
            rdsys::rd_kafka_queue_io_event_enable(q, writer.as_raw_fd(), WAKE_BYTE.as_ptr().cast(), 1);
            q
        };
        let inner = Arc::new(Inner {
            wake: QueueWake { queue, _writer: writer },
            producer,
        });
        let reader = tokio::net::UnixStream::from_std(reader).map_err(creation)?;
        let task = tokio::spawn(serve_events(Arc::downgrade(&inner), reader));
        Ok((ServedProducer { inner }, task))
    }
}

/// Serves the producer's event queue whenever librdkafka signals it, until the producer is
/// dropped (its end of the socket closes).
async fn serve_events<C: ProducerContext + 'static>(producer: Weak<Inner<C>>, reader: tokio::net::UnixStream) {
    let mut buf = [0u8; 64];
    loop {
        // Events that came before the wake-up was enabled, or since the last pass.
        let pass = match producer.upgrade() {
            Some(p) => drain_events(&p),
            None => return,
        };
        match pass {
            Drained::All => {}
            Drained::Some => {
                tokio::task::yield_now().await;
                continue;
            }
            Drained::Stuck => {
                // Events that polling does not take (not expected): do not spin on them.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        }
        if reader.readable().await.is_err() {
            return;
        }
        loop {
            match reader.try_read(&mut buf) {
                Ok(0) => return, // the producer is gone
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => return,
            }
        }
    }
}

enum Drained {
    /// The queue is empty: the next event writes to the socket.
    All,
    /// A pass's worth was served and more is queued: serve the rest after a yield (no byte comes
    /// for events already queued).
    Some,
    /// Events stayed queued through a whole pass.
    Stuck,
}

/// Serves the events in the queue without blocking. Each poll takes one event (a delivery-report
/// event carries every report of a produce response); a pass is bounded so that a flood of events
/// cannot hold the runtime thread.
fn drain_events<C: ProducerContext + 'static>(p: &Inner<C>) -> Drained {
    const PASS: usize = 1024;
    let before = p.wake.len();
    for _ in 0..PASS {
        if p.wake.len() == 0 {
            return Drained::All;
        }
        p.producer.poll(Duration::ZERO);
    }
    match p.wake.len() {
        0 => Drained::All,
        left if left >= before => Drained::Stuck,
        _ => Drained::Some,
    }
}

/// Where a record's delivery is reported: a oneshot channel, or nobody.
pub struct Delivery(Option<oneshot::Sender<Result<(), KafkaError>>>);

/// The context of producers whose records report to a [`Delivery`].
pub struct DeliveryContext;

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, to: Box<Delivery>) {
        if let Some(tx) = to.0 {
            let _ = tx.send(result.as_ref().map(|_| ()).map_err(|(e, _)| e.clone()));
        }
    }
}

/// A record for [`ServedProducer::send`].
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub topic: &'a str,
    /// `None`: the producer's partitioner picks by key.
    pub partition: Option<i32>,
    pub key: &'a [u8],
    pub payload: &'a [u8],
}

/// The delivery of a record sent with [`ServedProducer::send`]: `Err` when it was not delivered,
/// or the producer went away before reporting it.
pub type DeliveryReceiver = oneshot::Receiver<Result<(), KafkaError>>;

impl ServedProducer<DeliveryContext> {
    /// Creates a producer reporting deliveries to oneshot channels (see [`ServedProducer::start`]).
    pub fn start_delivering(config: &ClientConfig) -> Result<(Self, tokio::task::JoinHandle<()>), KafkaError> {
        Self::start(config, DeliveryContext)
    }

    /// Enqueues `record`. With `report`, the returned receiver gets its delivery; without, nobody
    /// hears of it. An error means it was not enqueued (queue full, too large, unknown topic...).
    pub fn send(
        &self,
        record: Record<'_>,
        headers: Option<OwnedHeaders>,
        report: bool,
    ) -> Result<Option<DeliveryReceiver>, KafkaError> {
        let (tx, rx) = if report {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let mut rec = BaseRecord::with_opaque_to(record.topic, Box::new(Delivery(tx)))
            .key(record.key)
            .payload(record.payload);
        if let Some(p) = record.partition {
            rec = rec.partition(p);
        }
        if let Some(h) = headers {
            rec = rec.headers(h);
        }
        self.inner.producer.send(rec).map_err(|(e, _)| e)?;
        Ok(rx)
    }
}

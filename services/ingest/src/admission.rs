//! Admission control: what bounds an ingest node's memory under any load shape.
//!
//! - At most `limits.max_concurrent_requests` requests are in progress at once across every HTTP
//!   and gRPC receiver; one more is answered at once with a retryable error (HTTP 503 with
//!   `Retry-After`, gRPC `UNAVAILABLE`), never queued.
//! - One byte budget, `limits.max_in_flight_bytes`, covers every byte a request holds from the
//!   first body byte read until it is answered: the body as it arrives (its `Content-Length` is
//!   reserved before a byte is read), the decompressed body, the body converted to OTLP protobuf
//!   (OTLP JSON, Zipkin, Jaeger), and the records being written to Kafka. When the budget cannot
//!   take a charge the request is answered with a retryable error and everything it held is
//!   released. A request never holds more than the whole budget: once it holds all of it, further
//!   charges of that same request pass (so one maximum-size request is always admissible).
//! - Request bodies must arrive within `limits.read_timeout` (see [`crate::server`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics as m;

/// The shared in-flight byte budget (`limits.max_in_flight_bytes`).
pub struct Budget {
    sem: Arc<Semaphore>,
    max: usize,
}

/// The budget could not take a charge.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[error("in-flight byte budget of {max} bytes spent")]
pub struct BudgetSpent {
    pub max: usize,
}

impl Budget {
    pub fn new(max: usize) -> Arc<Budget> {
        Arc::new(Budget {
            sem: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
            max,
        })
    }

    /// An empty lease: the charges of one request (or datagram).
    pub fn lease(self: &Arc<Self>) -> Lease {
        Lease {
            budget: self.clone(),
            permit: None,
            held: 0,
        }
    }

    /// The budget's size.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Bytes currently charged.
    pub fn in_use(&self) -> usize {
        self.max.min(Semaphore::MAX_PERMITS) - self.sem.available_permits()
    }
}

/// What one request holds of the [`Budget`]; released when dropped (the request was answered).
pub struct Lease {
    budget: Arc<Budget>,
    permit: Option<OwnedSemaphorePermit>,
    held: usize,
}

impl Lease {
    /// Charges `n` more bytes, without waiting: `Err` when the budget cannot take them now (what
    /// was charged before stays held until the lease is dropped).
    pub fn charge(&mut self, n: usize) -> Result<(), BudgetSpent> {
        let room = self.budget.max - self.held;
        let take = n.min(room);
        if take == 0 {
            return Ok(());
        }
        let permits = u32::try_from(take).map_err(|_| BudgetSpent { max: self.budget.max })?;
        let p = self
            .budget
            .sem
            .clone()
            .try_acquire_many_owned(permits)
            .map_err(|_| BudgetSpent { max: self.budget.max })?;
        match &mut self.permit {
            Some(held) => held.merge(p),
            None => self.permit = Some(p),
        }
        self.held += take;
        metrics::gauge!(m::IN_FLIGHT_BYTES).increment(take as f64);
        Ok(())
    }

    /// Bytes held by this lease.
    pub fn held(&self) -> usize {
        self.held
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.held > 0 {
            metrics::gauge!(m::IN_FLIGHT_BYTES).decrement(self.held as f64);
        }
    }
}

/// Admission settings and state shared by every HTTP and gRPC receiver of a node.
pub struct Admission {
    slots: Arc<Semaphore>,
    max_concurrent: usize,
    drains: Arc<Semaphore>,
    pub budget: Arc<Budget>,
    pub max_request_bytes: usize,
    pub read_timeout: Duration,
    pub retry_after: Duration,
}

/// An admitted request: its concurrency slot and its byte lease. Dropping it (when the request
/// is answered) releases both.
pub struct Ticket {
    _slot: OwnedSemaphorePermit,
    pub lease: Lease,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("too many concurrent requests (limits.max_concurrent_requests = {0})")]
    Concurrency(usize),
    #[error("in-flight byte budget spent (limits.max_in_flight_bytes = {0}); retry later")]
    Memory(usize),
    #[error("request body not received within {0:?} (limits.read_timeout)")]
    ReadTimeout(Duration),
}

impl Refused {
    /// The `kind` label of `tailsift_ingest_produce_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Refused::Concurrency(_) => "concurrency_limit",
            Refused::Memory(_) => "memory_limit",
            Refused::ReadTimeout(_) => "read_timeout",
        }
    }

    /// Counts the refusal (`tailsift_ingest_produce_errors_total{kind}`).
    pub fn count(&self) {
        metrics::counter!(m::PRODUCE_ERRORS, "kind" => self.kind()).increment(1);
    }
}

impl From<BudgetSpent> for Refused {
    fn from(e: BudgetSpent) -> Self {
        Refused::Memory(e.max)
    }
}

impl Admission {
    pub fn new(
        budget: Arc<Budget>,
        max_concurrent: usize,
        max_request_bytes: usize,
        read_timeout: Duration,
        retry_after: Duration,
    ) -> Arc<Admission> {
        Arc::new(Admission {
            slots: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            drains: Arc::new(Semaphore::new(max_concurrent)),
            budget,
            max_request_bytes,
            read_timeout,
            retry_after,
        })
    }

    /// Takes a concurrency slot, without waiting.
    pub fn enter(&self) -> Result<Ticket, Refused> {
        match self.slots.clone().try_acquire_owned() {
            Ok(slot) => Ok(Ticket {
                _slot: slot,
                lease: self.budget.lease(),
            }),
            Err(_) => Err(Refused::Concurrency(self.max_concurrent)),
        }
    }

    /// A slot for reading and discarding the rest of a refused HTTP/1 request body (so the client
    /// reads the answer instead of a connection reset); `None` when too many are being drained
    /// (the connection is closed then).
    pub(crate) fn drain_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.drains.clone().try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_kind_is_a_zeroed_metric_label() {
        for r in [
            Refused::Concurrency(1),
            Refused::Memory(1),
            Refused::ReadTimeout(Duration::from_secs(1)),
        ] {
            assert!(m::PRODUCE_ERROR_KINDS.contains(&r.kind()), "{}", r.kind());
        }
    }

    #[test]
    fn leases_share_the_budget_and_release_on_drop() {
        let b = Budget::new(1000);
        let mut a = b.lease();
        a.charge(600).unwrap();
        let mut c = b.lease();
        assert_eq!(c.charge(500), Err(BudgetSpent { max: 1000 }));
        c.charge(400).unwrap();
        assert_eq!(b.in_use(), 1000);
        drop(a);
        assert_eq!(b.in_use(), 400);
        c.charge(600).unwrap();
        // Holding the whole budget, the same request may go on (a lone maximum-size request).
        c.charge(10_000).unwrap();
        assert_eq!(c.held(), 1000);
        drop(c);
        assert_eq!(b.in_use(), 0);
    }

    #[test]
    fn concurrency_slots_are_not_queued() {
        let a = Admission::new(
            Budget::new(1000),
            2,
            100,
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let t1 = a.enter().unwrap();
        let _t2 = a.enter().unwrap();
        assert_eq!(a.enter().err(), Some(Refused::Concurrency(2)));
        drop(t1);
        assert!(a.enter().is_ok());
    }
}

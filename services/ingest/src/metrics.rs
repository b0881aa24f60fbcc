//! Every metric the ingest node exports: names, units and descriptions in one place.
//!
//! Labels are bounded: `protocol` (the receivers: `otlp_*`, `zipkin_*`, `jaeger_*`), `outcome`, `reason` (span rejection reasons,
//! [`tailsift_otlp::RejectReason`]) and `kind` (produce error kinds).

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

pub const REQUESTS: &str = "tailsift_ingest_requests_total";
pub const SPANS_RECEIVED: &str = "tailsift_ingest_spans_received_total";
pub const SPANS_REJECTED: &str = "tailsift_ingest_spans_rejected_total";
pub const RECORDS_PRODUCED: &str = "tailsift_ingest_records_produced_total";
pub const BYTES_PRODUCED: &str = "tailsift_ingest_produced_bytes_total";
pub const PRODUCE_ERRORS: &str = "tailsift_ingest_produce_errors_total";
pub const PRODUCER_QUEUE: &str = "tailsift_ingest_producer_queue_messages";
pub const IN_FLIGHT_BYTES: &str = "tailsift_ingest_in_flight_bytes";
pub const PRODUCE_DURATION: &str = "tailsift_ingest_produce_duration_seconds";
pub const KAFKA_READY: &str = "tailsift_ingest_kafka_ready";
pub const UDP_DROPPED: &str = "tailsift_ingest_udp_datagrams_dropped_total";
pub const CONNECTIONS: &str = "tailsift_ingest_connections";
pub const CONNECTION_LIMIT_WAITS: &str = "tailsift_ingest_connection_limit_waits_total";

/// Registers descriptions with the global recorder. Idempotent.
pub fn describe() {
    describe_counter!(REQUESTS, Unit::Count, "Export requests received, by protocol and outcome (accepted, partial, invalid, too_large, unsupported, unavailable, timeout: body not received within limits.read_timeout).");
    describe_counter!(
        SPANS_RECEIVED,
        Unit::Count,
        "Spans received, by protocol (before validation)."
    );
    describe_counter!(
        SPANS_REJECTED,
        Unit::Count,
        "Spans rejected as invalid, by protocol and reason; reported to clients in partial_success."
    );
    describe_counter!(
        RECORDS_PRODUCED,
        Unit::Count,
        "Kafka records acknowledged by the brokers (one trace of one request each)."
    );
    describe_counter!(
        BYTES_PRODUCED,
        Unit::Bytes,
        "Payload bytes of Kafka records acknowledged by the brokers."
    );
    describe_counter!(PRODUCE_ERRORS, Unit::Count, "Requests answered with a retryable error, by kind: Kafka could not take them (queue_full, in_flight_limit: the byte budget could not take the records, broker_down, delivery, shutting_down), or admission control refused them (concurrency_limit: limits.max_concurrent_requests reached, memory_limit: the byte budget could not take the body, read_timeout: body not received within limits.read_timeout).");
    describe_gauge!(
        PRODUCER_QUEUE,
        Unit::Count,
        "Records in the producer queue, not yet acknowledged by Kafka."
    );
    describe_gauge!(
        IN_FLIGHT_BYTES,
        Unit::Bytes,
        "Bytes charged to the in-flight byte budget (limits.max_in_flight_bytes): request bodies being read or held, decompressed and converted bodies, and records not yet acknowledged by Kafka, until their requests are answered."
    );
    describe_histogram!(
        PRODUCE_DURATION,
        Unit::Seconds,
        "Time from a request's first record enqueued to Kafka acknowledging its last one."
    );
    describe_counter!(UDP_DROPPED, Unit::Count, "UDP datagrams (Jaeger agent protocols) whose spans were not written, by protocol and reason (malformed, invalid, too_large, overloaded, unavailable): UDP has no backpressure.");
    describe_gauge!(
        CONNECTIONS,
        Unit::Count,
        "TCP connections open on the node's receivers (capped at limits.max_connections)."
    );
    describe_counter!(
        CONNECTION_LIMIT_WAITS,
        Unit::Count,
        "Times a receiver stopped accepting because limits.max_connections connections were open (it resumes when one closes)."
    );
    describe_gauge!(
        KAFKA_READY,
        Unit::Count,
        "1 while the Kafka metadata probe succeeds, 0 otherwise."
    );
    zero();
}

/// The `kind` label values of [`PRODUCE_ERRORS`]: `PublishError::kind` and `Refused::kind` (tests
/// there keep them in step).
pub const PRODUCE_ERROR_KINDS: [&str; 8] = [
    "broker_down",
    "queue_full",
    "in_flight_limit",
    "delivery",
    "shutting_down",
    "concurrency_limit",
    "memory_limit",
    "read_timeout",
];

/// The `protocol` label values (`pipeline::Protocol::as_str`; a test there keeps them in step).
pub const PROTOCOLS: [&str; 11] = [
    "otlp_grpc",
    "otlp_http_protobuf",
    "otlp_http_json",
    "zipkin_v2_json",
    "zipkin_v2_proto",
    "zipkin_v1_json",
    "zipkin_v1_thrift",
    "jaeger_thrift_compact_udp",
    "jaeger_thrift_binary_udp",
    "jaeger_thrift_http",
    "jaeger_grpc",
];

/// Registers the counters whose labels are a fixed set at 0, so `rate()`, dashboards and alerts
/// see a series from the start (an absent series reads as "no data", not as "none").
fn zero() {
    use metrics::counter;
    counter!(RECORDS_PRODUCED).increment(0);
    counter!(CONNECTION_LIMIT_WAITS).increment(0);
    counter!(BYTES_PRODUCED).increment(0);
    for kind in PRODUCE_ERROR_KINDS {
        counter!(PRODUCE_ERRORS, "kind" => kind).increment(0);
    }
    for protocol in PROTOCOLS {
        counter!(SPANS_RECEIVED, "protocol" => protocol).increment(0);
    }
}

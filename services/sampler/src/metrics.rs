//! Every metric the sampler exports. Labels are bounded: `policy` (names in the policy
//! document), `outcome`, `trigger`, `partition` (the topic's partitions), `kind`, `reason` and
//! `destination` (fixed sets, see each metric).

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

pub const RECORDS_CONSUMED: &str = "tailsift_sampler_records_consumed_total";
pub const SPANS_CONSUMED: &str = "tailsift_sampler_spans_consumed_total";
pub const RECORDS_INVALID: &str = "tailsift_sampler_records_invalid_total";
pub const CLOCK_SKEWED_RECORDS: &str = "tailsift_sampler_clock_skewed_records_total";
pub const CLOCK_BACKSTOPS: &str = "tailsift_sampler_clock_backstop_decisions_total";
pub const TRACES_BUFFERED: &str = "tailsift_sampler_traces_buffered";
pub const BYTES_BUFFERED: &str = "tailsift_sampler_buffered_bytes";
pub const SPAN_BYTES_BUFFERED: &str = "tailsift_sampler_buffered_span_bytes";
pub const INDEX_TRACES: &str = "tailsift_sampler_index_traces";
pub const READ_BACKS: &str = "tailsift_sampler_read_backs_total";
pub const READ_BACK_RECORDS: &str = "tailsift_sampler_read_back_records_total";
pub const READ_BACK_STALLS: &str = "tailsift_sampler_read_back_stalls_total";
pub const DECISIONS: &str = "tailsift_sampler_decisions_total";
pub const DECISION_LATENCY: &str = "tailsift_sampler_decision_latency_seconds";
pub const LATE_SPANS: &str = "tailsift_sampler_late_spans_total";
pub const REPLAY_SKIPPED_SPANS: &str = "tailsift_sampler_replay_skipped_spans_total";
pub const DUPLICATE_SPANS: &str = "tailsift_sampler_duplicate_spans_total";
pub const REPLAYED_RECORDS: &str = "tailsift_sampler_replayed_records_total";
pub const EXPORT_SPANS: &str = "tailsift_sampler_export_spans_total";
pub const EXPORT_REQUESTS: &str = "tailsift_sampler_export_requests_total";
pub const EXPORT_QUEUE: &str = "tailsift_sampler_export_queue_traces";
pub const EXPORT_DURATION: &str = "tailsift_sampler_export_duration_seconds";
pub const EXPORT_DEAD_LETTER_SPANS: &str = "tailsift_sampler_export_dead_letter_spans_total";
pub const EXPORT_SPLIT_TRACES: &str = "tailsift_sampler_export_split_traces_total";
pub const EXPORT_PROBES: &str = "tailsift_sampler_export_probes_total";
pub const CONSUMER_LAG: &str = "tailsift_sampler_consumer_lag_records";
pub const COMMITTED_OFFSET: &str = "tailsift_sampler_committed_offset";
pub const STRESS_RELIEF: &str = "tailsift_sampler_stress_relief_active";
pub const PAUSED: &str = "tailsift_sampler_consumption_paused";
pub const POLICY_VERSION: &str = "tailsift_sampler_policy_version";
pub const POLICY_APPLIED_AT: &str = "tailsift_sampler_policy_applied_timestamp_seconds";
pub const PARTITIONS_OWNED: &str = "tailsift_sampler_partitions_owned";
pub const RECORDS_NOT_OWNED: &str = "tailsift_sampler_records_not_owned_total";
pub const DECISIONS_PRELOADED: &str = "tailsift_sampler_decisions_preloaded_total";
/// Capture partitions run by this worker, by `outcome` (`done`, `failed`).
pub const CAPTURE_PARTITIONS: &str = "tailsift_sampler_capture_partitions_total";
pub const CAPTURE_TRACES_EXPORTED: &str = "tailsift_sampler_capture_traces_exported_total";
pub const COORDINATOR_CONNECTED: &str = "tailsift_sampler_coordinator_connected";
pub const POLICY_UPDATES: &str = "tailsift_sampler_policy_updates_total";
pub const BUDGET_SHARE: &str = "tailsift_sampler_budget_share_ratio";
pub const SHADOW_DECISIONS: &str = "tailsift_sampler_shadow_decisions_total";
pub const SHADOW_REVISION: &str = "tailsift_sampler_shadow_revision";
pub const SETTINGS_REVISION: &str = "tailsift_sampler_settings_revision";
pub const POLICY_PROPAGATION: &str = "tailsift_sampler_policy_propagation_seconds";

/// The `reason` label values of [`EXPORT_DEAD_LETTER_SPANS`] (`export::classify::Refusal`; a test
/// there keeps the two in step).
pub const DEAD_LETTER_REASONS: [&str; 4] = ["rejected", "too_large", "retries_exhausted", "malformed"];

pub fn describe() {
    describe_counter!(
        RECORDS_CONSUMED,
        Unit::Count,
        "Kafka records consumed from the spans topic."
    );
    describe_counter!(SPANS_CONSUMED, Unit::Count, "Spans consumed from the spans topic.");
    describe_counter!(
        RECORDS_INVALID,
        Unit::Count,
        "Records without a readable trace ID (skipped)."
    );
    describe_counter!(
        CLOCK_SKEWED_RECORDS,
        Unit::Count,
        "Records whose timestamp was beyond the wall clock + decision.max_clock_skew (clamped), by partition."
    );
    describe_counter!(
        CLOCK_BACKSTOPS,
        Unit::Count,
        "Traces decided by the real-time backstop (decision wait + decision.max_clock_skew of running time) because their partition's record clock lagged."
    );
    describe_gauge!(TRACES_BUFFERED, Unit::Count, "Traces buffered, waiting for a decision.");
    describe_gauge!(
        BYTES_BUFFERED,
        Unit::Bytes,
        "Bytes held by buffered traces: their encoded spans, or their index (memory.mode); what the memory limits count."
    );
    describe_gauge!(
        SPAN_BYTES_BUFFERED,
        Unit::Bytes,
        "Encoded span bytes held by traces buffered with their records (hybrid mode switches traces to an index past memory.span_bytes_budget)."
    );
    describe_gauge!(
        INDEX_TRACES,
        Unit::Count,
        "Traces buffered as an index: a summary to decide on and their records' offsets."
    );
    describe_counter!(
        READ_BACKS,
        Unit::Count,
        "Traces buffered as an index whose records were read back from the spans log (kept, or summarised under an earlier policy)."
    );
    describe_counter!(
        READ_BACK_RECORDS,
        Unit::Count,
        "Records the read-back passed, by outcome: read (a trace's), skipped (read through between them) or missing (no longer in the log)."
    );
    describe_counter!(
        READ_BACK_STALLS,
        Unit::Count,
        "Read-back sweeps cut short because the spans log did not answer (their traces are tried again; nothing is committed past them)."
    );
    describe_counter!(DECISIONS, Unit::Count, "Trace decisions by deciding policy, outcome (kept, dropped) and trigger (root, timeout, limit, pressure, handover, stress).");
    describe_histogram!(
        DECISION_LATENCY,
        Unit::Seconds,
        "Time from a trace's first span to its decision."
    );
    describe_counter!(
        LATE_SPANS,
        Unit::Count,
        "Spans arriving after their trace was decided, by outcome (kept: exported, dropped)."
    );
    describe_counter!(
        REPLAY_SKIPPED_SPANS,
        Unit::Count,
        "Replayed spans of traces already exported (known from the decisions topic), not exported again."
    );
    describe_counter!(
        DUPLICATE_SPANS,
        Unit::Count,
        "Spans received twice for a buffered trace (client retries), exported once."
    );
    describe_counter!(
        REPLAYED_RECORDS,
        Unit::Count,
        "Records consumed again after a restart or rebalance (offsets below those already processed by this worker)."
    );
    describe_counter!(
        EXPORT_SPANS,
        Unit::Count,
        "Spans of kept traces handed to the backend, by outcome (ok: accepted; rejected: refused for good, see export_dead_letter_spans_total; partially_rejected: accepted requests whose partial_success rejected them)."
    );
    describe_counter!(
        EXPORT_REQUESTS,
        Unit::Count,
        "Export requests by outcome (ok, retry: failed retryably, rejected: refused for good)."
    );
    describe_counter!(
        EXPORT_DEAD_LETTER_SPANS,
        Unit::Count,
        "Spans refused for good, by reason (rejected, too_large, retries_exhausted, malformed) and destination (dead_letter: written to export.dead_letter_topic; dropped)."
    );
    describe_counter!(
        EXPORT_SPLIT_TRACES,
        Unit::Count,
        "Kept traces (or late spans of one) larger than export.max_request_bytes, sent in several requests."
    );
    describe_counter!(
        EXPORT_PROBES,
        Unit::Count,
        "Backend probes after export.max_retry_time of retryable failures, by outcome (backend_up: the request is poison and dead-lettered; outage: retries go on)."
    );
    describe_gauge!(
        EXPORT_QUEUE,
        Unit::Count,
        "Kept traces waiting for export, including the batch being sent or retried."
    );
    describe_histogram!(
        EXPORT_DURATION,
        Unit::Seconds,
        "Duration of successful export requests."
    );
    describe_gauge!(
        CONSUMER_LAG,
        Unit::Count,
        "Records between the consumer position and the partition's high watermark."
    );
    describe_gauge!(COMMITTED_OFFSET, Unit::Count, "Last committed offset per partition.");
    describe_gauge!(
        STRESS_RELIEF,
        Unit::Count,
        "1 while stress relief is active (spans decided without buffering)."
    );
    describe_gauge!(
        PAUSED,
        Unit::Count,
        "1 while consumption is paused because the export queue is full."
    );
    describe_gauge!(POLICY_VERSION, Unit::Count, "Version of the policy in force.");
    describe_gauge!(
        POLICY_APPLIED_AT,
        Unit::Seconds,
        "Unix time at which the policy version in force was applied on this worker."
    );
    describe_gauge!(
        PARTITIONS_OWNED,
        Unit::Count,
        "Partitions of the spans topic assigned to this worker."
    );
    describe_counter!(
        RECORDS_NOT_OWNED,
        Unit::Count,
        "Records of partitions no longer owned (delivered after a revocation), left to the new owner."
    );
    describe_gauge!(
        COORDINATOR_CONNECTED,
        Unit::Count,
        "1 while a coordinator watch stream is open."
    );
    describe_counter!(
        POLICY_UPDATES,
        Unit::Count,
        "Policy versions received from coordinators, by outcome (applied, invalid, persist_failed)."
    );
    describe_gauge!(
        BUDGET_SHARE,
        Unit::Count,
        "Share of the cluster-wide rate limits and composite budgets this worker enforces (partitions owned / partitions)."
    );
    describe_counter!(
        SHADOW_DECISIONS,
        Unit::Count,
        "Traces the shadow policy evaluated beside the live one, by the shadow rule that decided and what it would do (kept, dropped); decisions are unchanged."
    );
    describe_gauge!(
        SHADOW_REVISION,
        Unit::Count,
        "Revision of the shadow policy this worker evaluates (0: none)."
    );
    describe_gauge!(
        SETTINGS_REVISION,
        Unit::Count,
        "Revision of the live cluster settings this worker applies (0: none from a coordinator)."
    );
    describe_histogram!(
        POLICY_PROPAGATION,
        Unit::Seconds,
        "From a policy version's acceptance by the coordinator admin API to its application on this worker (wall clocks of both)."
    );
    describe_counter!(
        CAPTURE_PARTITIONS,
        Unit::Count,
        "Partitions of retroactive captures this worker ran, by outcome (done, failed)."
    );
    describe_counter!(
        CAPTURE_TRACES_EXPORTED,
        Unit::Count,
        "Traces exported by retroactive captures (matched, not already kept)."
    );
    describe_counter!(
        DECISIONS_PRELOADED,
        Unit::Count,
        "Decisions read back from the decisions topic on partition assignment."
    );
    zero();
}

/// Registers every counter whose labels are a fixed set at 0, so `rate()`, dashboards and alerts
/// see a series from the start rather than only after the first event (an absent series reads as
/// "no data", not as "none"). Per-partition and per-policy series start when those are known.
fn zero() {
    use metrics::counter;
    for name in [
        RECORDS_CONSUMED,
        SPANS_CONSUMED,
        RECORDS_INVALID,
        CLOCK_BACKSTOPS,
        REPLAY_SKIPPED_SPANS,
        DUPLICATE_SPANS,
        REPLAYED_RECORDS,
        EXPORT_SPLIT_TRACES,
        RECORDS_NOT_OWNED,
        DECISIONS_PRELOADED,
        CAPTURE_TRACES_EXPORTED,
    ] {
        counter!(name).increment(0);
    }
    for outcome in ["done", "failed"] {
        counter!(CAPTURE_PARTITIONS, "outcome" => outcome).increment(0);
    }
    for outcome in ["kept", "dropped"] {
        counter!(LATE_SPANS, "outcome" => outcome).increment(0);
    }
    for outcome in ["ok", "rejected", "partially_rejected"] {
        counter!(EXPORT_SPANS, "outcome" => outcome).increment(0);
    }
    for outcome in ["ok", "retry", "rejected"] {
        counter!(EXPORT_REQUESTS, "outcome" => outcome).increment(0);
    }
    for outcome in ["backend_up", "outage"] {
        counter!(EXPORT_PROBES, "outcome" => outcome).increment(0);
    }
    for outcome in ["applied", "invalid", "persist_failed"] {
        counter!(POLICY_UPDATES, "outcome" => outcome).increment(0);
    }
    for reason in DEAD_LETTER_REASONS {
        for destination in ["dead_letter", "dropped"] {
            counter!(EXPORT_DEAD_LETTER_SPANS, "reason" => reason, "destination" => destination).increment(0);
        }
    }
    metrics::gauge!(STRESS_RELIEF).set(0.0);
    metrics::gauge!(PAUSED).set(0.0);
}

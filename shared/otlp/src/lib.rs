//! OTLP helpers: the wire-level splitter that cuts a request into one record per trace without
//! decoding spans, the record key, OTLP/JSON.
//!
//! The hot path never builds owned span structs: [`split::split_by_trace`] walks the protobuf wire
//! format of an `ExportTraceServiceRequest`, reads only the span's `trace_id`, `span_id` and
//! `parent_span_id`, and re-slices the original bytes into one request per trace, preserving the
//! resource, the instrumentation scope, schema URLs and any fields this code does not know.

pub mod json;
pub mod split;
pub mod wire;

pub use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
pub use split::{split_by_trace, RejectReason, SplitOptions, SplitOutput, TraceRecord};

/// A trace ID as it travels on the wire: 16 bytes, never all zero.
pub type TraceId = [u8; 16];

/// The Kafka record key for a trace: the lowercase hex form of the 16-byte trace ID (32 ASCII
/// characters). This is exactly the key the OpenTelemetry Collector's Kafka exporter writes with
/// `partition_traces_by_id: true` (`traceutil.TraceIDToHexOrEmptyString`).
pub fn record_key(trace_id: &TraceId) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::encode_to_slice(trace_id, &mut out).expect("32 bytes of room for 16 bytes of hex");
    out
}

/// Parses a Kafka record key written by [`record_key`] (or by an OpenTelemetry Collector).
pub fn parse_record_key(key: &[u8]) -> Option<TraceId> {
    let mut out = [0u8; 16];
    hex::decode_to_slice(key, &mut out).ok()?;
    Some(out)
}

/// The partition that Sarama's default hash partitioner (used by the OpenTelemetry Collector's
/// Kafka exporter) and librdkafka's `fnv1a` partitioner choose for `key`: FNV-1a 32-bit, taken as a
/// signed integer, modulo the partition count, made non-negative.
pub fn fnv1a_partition(key: &[u8], partitions: i32) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let p = (h as i32) % partitions;
    if p < 0 {
        -p
    } else {
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_lowercase_hex_and_round_trips() {
        let id: TraceId = [
            0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c,
        ];
        let key = record_key(&id);
        assert_eq!(&key, b"5b8efff798038103d269b633813fc60c");
        assert_eq!(parse_record_key(&key), Some(id));
        assert_eq!(parse_record_key(b"zz"), None);
    }

    #[test]
    fn fnv1a_partition_matches_reference_values() {
        // FNV-1a 32 of "" is the offset basis 0x811c9dc5, negative as i32.
        let basis = 0x811c_9dc5u32 as i32;
        assert_eq!(fnv1a_partition(b"", 7), (basis % 7).abs());
        // FNV-1a 32 of "a" is 0xe40c292c (published test vector).
        assert_eq!(fnv1a_partition(b"a", 1000), ((0xe40c_292cu32 as i32) % 1000).abs());
        for p in 1..64 {
            let got = fnv1a_partition(b"5b8efff798038103d269b633813fc60c", p);
            assert!((0..p).contains(&got));
        }
    }
}

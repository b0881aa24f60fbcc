//! Pure decoders from Zipkin (JSON, proto3, thrift) and Jaeger (thrift, protobuf) to OTLP.
//!
//! Pure functions, no I/O. Every decoder takes the bytes of one request (an HTTP body, a gRPC
//! message, a UDP datagram) and returns an OTLP `ExportTraceServiceRequest`, or a
//! [`TranslateError`] naming the problem. No input makes them panic: lengths read from the input
//! are checked against the bytes actually present before anything is allocated, nesting depth is
//! bounded, and arithmetic on timestamps saturates.
//!
//! | format | function |
//! |---|---|
//! | Zipkin v2 JSON (`POST /api/v2/spans`, `application/json`) | [`zipkin::decode_v2_json`] |
//! | Zipkin v2 proto3 (`POST /api/v2/spans`, `application/x-protobuf`) | [`zipkin::decode_v2_proto`] |
//! | Zipkin v1 JSON (`POST /api/v1/spans`, `application/json`) | [`zipkin::decode_v1_json`] |
//! | Zipkin v1 thrift (`POST /api/v1/spans`, `application/x-thrift`: a binary-protocol list of `Span`) | [`zipkin::decode_v1_thrift`] |
//! | Jaeger thrift `Batch`, binary protocol (`POST /api/traces`) | [`jaeger::decode_thrift_binary_batch`] |
//! | Jaeger agent `emitBatch`, compact protocol (UDP 6831) | [`jaeger::decode_agent_compact`] |
//! | Jaeger agent `emitBatch`, binary protocol (UDP 6832) | [`jaeger::decode_agent_binary`] |
//! | Jaeger `api_v2.PostSpansRequest` protobuf (gRPC `CollectorService/PostSpans`) | [`jaeger::decode_post_spans`] |
//!
//! The mappings follow the OpenTelemetry Collector's Zipkin and Jaeger translators; the field-by-
//! field description, with the few deliberate differences, is in `docs/receivers.md`.

pub mod jaeger;
pub mod otlp;
pub mod thrift;
pub mod zipkin;

pub use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

/// Why a request could not be translated. The message names the format and the problem (and,
/// where it helps, the span), so it can be returned to the client as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {format}: {message}")]
pub struct TranslateError {
    pub format: &'static str,
    pub message: String,
}

impl TranslateError {
    pub fn new(format: &'static str, message: impl Into<String>) -> Self {
        TranslateError {
            format,
            message: message.into(),
        }
    }
}

/// Counts spans of a translated request (for metrics and tests).
pub fn span_count(req: &ExportTraceServiceRequest) -> usize {
    req.resource_spans
        .iter()
        .flat_map(|rs| rs.scope_spans.iter())
        .map(|ss| ss.spans.len())
        .sum()
}

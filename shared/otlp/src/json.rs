//! OTLP/JSON (the protobuf JSON mapping with OTLP's exceptions: hex trace and span IDs, enum
//! values as integers, 64-bit integers as strings or numbers) to protobuf.

use prost::Message;

use crate::ExportTraceServiceRequest;

/// Why an OTLP/JSON body could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid OTLP/JSON ExportTraceServiceRequest: {0}")]
pub struct JsonError(#[from] serde_json::Error);

/// Decodes an OTLP/JSON `ExportTraceServiceRequest`.
pub fn decode_json(body: &[u8]) -> Result<ExportTraceServiceRequest, JsonError> {
    Ok(serde_json::from_slice(body)?)
}

/// Decodes an OTLP/JSON body and re-encodes it as protobuf, ready for
/// [`crate::split_by_trace`].
pub fn json_to_protobuf(body: &[u8]) -> Result<Vec<u8>, JsonError> {
    Ok(decode_json(body)?.encode_to_vec())
}

/// Encodes a request as OTLP/JSON.
pub fn encode_json(req: &ExportTraceServiceRequest) -> Vec<u8> {
    serde_json::to_vec(req).expect("OTLP messages always serialize")
}

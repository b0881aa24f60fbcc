//! Zipkin v1 JSON: `POST /api/v1/spans` with `application/json` (what older Envoy versions and
//! Zipkin v1 clients send): `[{traceId, traceIdHigh?, id, parentId?, name, timestamp?, duration?,
//! annotations: [{timestamp, value, endpoint?}], binaryAnnotations: [{key, value, endpoint?}],
//! debug?}]`.

use serde::Deserialize;
use serde_json::Value;

use super::v1::{self, BinaryValue, V1Annotation, V1BinaryAnnotation, V1Span};
use super::v2_json::{endpoint, ids, micros, tag_string, JsonEndpoint};
use crate::{ExportTraceServiceRequest, TranslateError};

const FORMAT: &str = "Zipkin v1 JSON";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonAnnotation {
    timestamp: Option<Value>,
    value: Option<String>,
    endpoint: Option<JsonEndpoint>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonBinaryAnnotation {
    key: Option<String>,
    value: Option<Value>,
    endpoint: Option<JsonEndpoint>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan {
    trace_id: Option<String>,
    trace_id_high: Option<String>,
    id: Option<String>,
    parent_id: Option<String>,
    name: Option<String>,
    timestamp: Option<Value>,
    duration: Option<Value>,
    annotations: Option<Vec<JsonAnnotation>>,
    binary_annotations: Option<Vec<JsonBinaryAnnotation>>,
    debug: Option<bool>,
}

/// Decodes a Zipkin v1 JSON body.
pub fn decode_v1_json(body: &[u8]) -> Result<ExportTraceServiceRequest, TranslateError> {
    let spans: Vec<Option<JsonSpan>> = serde_json::from_slice(body)
        .map_err(|e| TranslateError::new(FORMAT, format!("expected a JSON array of spans: {e}")))?;
    let mut v1s = Vec::with_capacity(spans.len());
    for (i, s) in spans.into_iter().enumerate() {
        let Some(s) = s else { continue };
        let trace = match (&s.trace_id_high, &s.trace_id) {
            (Some(h), Some(l)) if !h.is_empty() && l.len() <= 16 => Some(format!("{h:0>16}{l:0>16}")),
            (_, t) => t.clone(),
        };
        let (trace_id, id, parent_id) = ids(FORMAT, i, trace.as_deref(), s.id.as_deref(), s.parent_id.as_deref())?;
        let mut annotations = Vec::new();
        for a in s.annotations.unwrap_or_default() {
            annotations.push(V1Annotation {
                timestamp_us: micros(&a.timestamp).unwrap_or(0),
                value: a.value.unwrap_or_default(),
                endpoint: endpoint(&a.endpoint, i, "annotations.endpoint")
                    .map_err(|e| TranslateError::new(FORMAT, e.message))?,
            });
        }
        let mut binary_annotations = Vec::new();
        for b in s.binary_annotations.unwrap_or_default() {
            binary_annotations.push(V1BinaryAnnotation {
                key: b.key.unwrap_or_default(),
                value: match b.value {
                    Some(Value::Bool(v)) => BinaryValue::Bool(v),
                    Some(v) => BinaryValue::Str(tag_string(&v)),
                    None => BinaryValue::Str(String::new()),
                },
                endpoint: endpoint(&b.endpoint, i, "binaryAnnotations.endpoint")
                    .map_err(|e| TranslateError::new(FORMAT, e.message))?,
            });
        }
        v1s.push(V1Span {
            trace_id,
            id,
            parent_id,
            name: s.name.unwrap_or_default(),
            timestamp_us: micros(&s.timestamp),
            duration_us: micros(&s.duration),
            annotations,
            binary_annotations,
            debug: s.debug.unwrap_or(false),
        });
    }
    let v2 = v1::convert(v1s);
    Ok(super::to_otlp(v2))
}

//! OTLP/HTTP receiver: `POST /v1/traces` with `application/x-protobuf` or `application/json`,
//! optionally gzip-compressed.
//!
//! Answers follow the OTLP/HTTP specification: 200 with an `ExportTraceServiceResponse` (with
//! `partial_success` when some spans were rejected) in the request's encoding; 400 with a
//! `google.rpc.Status` for bad input; 413 for bodies over the limit; 415 for unsupported content
//! types or encodings; 503 with `Retry-After` when Kafka cannot take the data.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceResponse};
use prost::Message;

use crate::pipeline::{IngestError, Pipeline, Protocol};

#[derive(Clone)]
struct HttpState {
    pipeline: Arc<Pipeline>,
    max_request_bytes: usize,
    retry_after: Duration,
}

/// The OTLP/HTTP router.
pub fn router(pipeline: Arc<Pipeline>, max_request_bytes: usize, retry_after: Duration) -> Router {
    Router::new()
        .route("/v1/traces", post(export))
        .layer(DefaultBodyLimit::disable())
        .with_state(HttpState {
            pipeline,
            max_request_bytes,
            retry_after,
        })
}

/// `google.rpc.Status`, the OTLP/HTTP error body.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

/// gRPC status codes used in error bodies.
const INVALID_ARGUMENT: i32 = 3;
const RESOURCE_EXHAUSTED: i32 = 8;
const UNAVAILABLE: i32 = 14;

fn error(enc: Encoding, status: StatusCode, code: i32, message: String) -> Response {
    let (ct, body) = match enc {
        Encoding::Protobuf => ("application/x-protobuf", RpcStatus { code, message }.encode_to_vec()),
        Encoding::Json => (
            "application/json",
            serde_json::json!({ "code": code, "message": message })
                .to_string()
                .into_bytes(),
        ),
    };
    (status, [(header::CONTENT_TYPE, ct)], body).into_response()
}

async fn export(State(st): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let (enc, protocol) = match mime.as_str() {
        "application/x-protobuf" | "application/protobuf" => (Encoding::Protobuf, Protocol::OtlpHttpProtobuf),
        "application/json" => (Encoding::Json, Protocol::OtlpHttpJson),
        _ => {
            count_request(Protocol::OtlpHttpProtobuf, "unsupported");
            let msg = format!("unsupported Content-Type `{ct}`: use application/x-protobuf or application/json");
            return error(
                Encoding::Protobuf,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                INVALID_ARGUMENT,
                msg,
            );
        }
    };
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
    {
        None => false,
        Some(e) if e.is_empty() || e == "identity" => false,
        Some(e) if e == "gzip" => true,
        Some(e) => {
            count_request(protocol, "unsupported");
            let msg = format!("unsupported Content-Encoding `{e}`: use gzip or none");
            return error(enc, StatusCode::UNSUPPORTED_MEDIA_TYPE, INVALID_ARGUMENT, msg);
        }
    };
    let too_large = |what: &str| {
        count_request(protocol, "too_large");
        let msg = format!("{what} exceeds the limit of {} bytes", st.max_request_bytes);
        error(enc, StatusCode::PAYLOAD_TOO_LARGE, RESOURCE_EXHAUSTED, msg)
    };
    let raw: Bytes = match axum::body::to_bytes(body, st.max_request_bytes).await {
        Ok(b) => b,
        Err(e) => {
            // `to_bytes` fails on the limit or on a broken connection.
            if is_length_limit(&e) {
                return too_large("request body");
            }
            count_request(protocol, "invalid");
            return error(
                enc,
                StatusCode::BAD_REQUEST,
                INVALID_ARGUMENT,
                format!("reading request body: {e}"),
            );
        }
    };
    let body: Bytes = if gzip {
        match gunzip_limited(&raw, st.max_request_bytes) {
            Ok(Some(b)) => b.into(),
            Ok(None) => return too_large("decompressed request body"),
            Err(e) => {
                count_request(protocol, "invalid");
                return error(
                    enc,
                    StatusCode::BAD_REQUEST,
                    INVALID_ARGUMENT,
                    format!("invalid gzip body: {e}"),
                );
            }
        }
    } else {
        raw
    };
    let pb: Bytes = match enc {
        Encoding::Protobuf => body,
        Encoding::Json => match tailsift_otlp::json::json_to_protobuf(&body) {
            Ok(pb) => pb.into(),
            Err(e) => {
                count_request(protocol, "invalid");
                return error(enc, StatusCode::BAD_REQUEST, INVALID_ARGUMENT, e.to_string());
            }
        },
    };
    match st.pipeline.export(protocol, &pb).await {
        Ok(a) => {
            let resp = ExportTraceServiceResponse {
                partial_success: (a.rejected_spans > 0).then(|| ExportTracePartialSuccess {
                    rejected_spans: a.rejected_spans as i64,
                    error_message: a.error_message,
                }),
            };
            match enc {
                Encoding::Protobuf => (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/x-protobuf")],
                    resp.encode_to_vec(),
                )
                    .into_response(),
                Encoding::Json => (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    serde_json::to_vec(&resp).unwrap_or_else(|_| b"{}".to_vec()),
                )
                    .into_response(),
            }
        }
        Err(IngestError::Invalid(msg)) => error(enc, StatusCode::BAD_REQUEST, INVALID_ARGUMENT, msg),
        Err(IngestError::Unavailable(e)) => {
            let mut r = error(enc, StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE, e.to_string());
            let secs = st.retry_after.as_secs().max(1);
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
    }
}

fn count_request(protocol: Protocol, outcome: &'static str) {
    metrics::counter!(crate::metrics::REQUESTS, "protocol" => protocol.as_str(), "outcome" => outcome).increment(1);
}

pub(crate) fn is_length_limit(e: &axum::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = src {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        src = err.source();
    }
    false
}

/// Decompresses `data`, refusing to produce more than `limit` bytes (`Ok(None)` then): a small
/// gzip bomb must not exhaust memory.
pub(crate) fn gunzip_limited(data: &[u8], limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::with_capacity((data.len() * 4).min(limit));
    let mut dec = flate2::read::MultiGzDecoder::new(data).take(limit as u64 + 1);
    dec.read_to_end(&mut out)?;
    if out.len() > limit {
        return Ok(None);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gunzip_respects_the_limit() {
        let data = vec![b'a'; 10_000];
        let z = gz(&data);
        assert_eq!(gunzip_limited(&z, 10_000).unwrap().unwrap(), data);
        assert!(gunzip_limited(&z, 9_999).unwrap().is_none());
        assert!(gunzip_limited(b"not gzip", 100).is_err());
    }
}

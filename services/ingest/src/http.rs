//! OTLP/HTTP receiver: `POST /v1/traces` with `application/x-protobuf` or `application/json`,
//! optionally gzip-compressed.
//!
//! Answers follow the OTLP/HTTP specification: 200 with an `ExportTraceServiceResponse` (with
//! `partial_success` when some spans were rejected) in the request's encoding; 400 with a
//! `google.rpc.Status` for bad input; 413 for bodies over the limit; 415 for unsupported content
//! types or encodings; 503 with `Retry-After` when Kafka cannot take the data.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceResponse};
use prost::Message;

use crate::admission::{Admission, Refused};
use crate::body::BodyError;
use crate::pipeline::{IngestError, Pipeline, Protocol};

#[derive(Clone)]
struct HttpState {
    pipeline: Arc<Pipeline>,
    admission: Arc<Admission>,
}

/// The OTLP/HTTP router.
pub fn router(pipeline: Arc<Pipeline>, admission: Arc<Admission>) -> Router {
    Router::new()
        .route("/v1/traces", post(export))
        .layer(DefaultBodyLimit::disable())
        .with_state(HttpState { pipeline, admission })
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
const DEADLINE_EXCEEDED: i32 = 4;
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
        let msg = format!("{what} exceeds the limit of {} bytes", st.admission.max_request_bytes);
        error(enc, StatusCode::PAYLOAD_TOO_LARGE, RESOURCE_EXHAUSTED, msg)
    };
    let refused = |r: Refused| {
        r.count();
        refused_response(protocol, &r, st.admission.retry_after, |status, code, msg| {
            error(enc, status, code, msg)
        })
    };
    let mut ticket = match st.admission.enter() {
        Ok(t) => t,
        Err(r) => return refused(r),
    };
    let body = match crate::body::read(&st.admission, &mut ticket.lease, &headers, body, gzip).await {
        Ok(b) => b,
        Err(BodyError::TooLarge(what)) => return too_large(what),
        Err(BodyError::Refused(r)) => return refused(r),
        Err(BodyError::Invalid(msg)) => {
            count_request(protocol, "invalid");
            return error(enc, StatusCode::BAD_REQUEST, INVALID_ARGUMENT, msg);
        }
    };
    let pb: Bytes = match enc {
        Encoding::Protobuf => body,
        Encoding::Json => match tailsift_otlp::json::json_to_protobuf(&body) {
            Ok(pb) => {
                if let Err(e) = ticket.lease.charge(pb.len()) {
                    return refused(e.into());
                }
                pb.into()
            }
            Err(e) => {
                count_request(protocol, "invalid");
                return error(enc, StatusCode::BAD_REQUEST, INVALID_ARGUMENT, e.to_string());
            }
        },
    };
    match st.pipeline.export(protocol, &pb, &mut ticket.lease).await {
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
            let secs = st.admission.retry_after.as_secs().max(1);
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
    }
}

fn count_request(protocol: Protocol, outcome: &'static str) {
    metrics::counter!(crate::metrics::REQUESTS, "protocol" => protocol.as_str(), "outcome" => outcome).increment(1);
}

/// The answer to a request refused by admission control: 503 with `Retry-After` (concurrency or
/// memory), 408 closing the connection (read timeout). Counted in
/// `tailsift_ingest_requests_total{outcome="unavailable"|"timeout"}`; `make` builds the body in
/// the receiver's style from (status, gRPC code, message).
pub(crate) fn refused_response(
    protocol: Protocol,
    r: &Refused,
    retry_after: std::time::Duration,
    make: impl FnOnce(StatusCode, i32, String) -> Response,
) -> Response {
    match r {
        Refused::ReadTimeout(_) => {
            count_request(protocol, "timeout");
            let mut resp = make(StatusCode::REQUEST_TIMEOUT, DEADLINE_EXCEEDED, r.to_string());
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            resp
        }
        Refused::Concurrency(_) | Refused::Memory(_) => {
            count_request(protocol, "unavailable");
            let mut resp = make(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE, r.to_string());
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
            resp
        }
    }
}

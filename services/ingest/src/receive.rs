//! The HTTP side shared by the Zipkin and Jaeger receivers: content type and encoding checks,
//! size limits, gzip, decoding with a translator from `tailsift-translate`, and answers in the
//! style of those protocols' collectors (202 with an empty body; 400 with a plain-text message;
//! 413; 415; 503 with `Retry-After` when Kafka cannot take the data).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tailsift_otlp::ExportTraceServiceRequest;
use tailsift_translate::TranslateError;

use crate::pipeline::{IngestError, Pipeline, Protocol};

pub(crate) type Decode = fn(&[u8]) -> Result<ExportTraceServiceRequest, TranslateError>;

#[derive(Clone)]
pub(crate) struct ReceiverState {
    pub pipeline: Arc<Pipeline>,
    pub max_request_bytes: usize,
    pub retry_after: Duration,
}

fn count(protocol: Protocol, outcome: &'static str) {
    metrics::counter!(crate::metrics::REQUESTS, "protocol" => protocol.as_str(), "outcome" => outcome).increment(1);
}

fn text(status: StatusCode, msg: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg + "\n",
    )
        .into_response()
}

/// Handles one request. `route` maps the lower-cased media type (empty when the header is
/// missing) to a protocol and its decoder; `fallback` labels requests refused before a route was
/// chosen; `supported` lists the media types for the 415 message.
pub(crate) async fn receive(
    st: &ReceiverState,
    headers: &HeaderMap,
    body: Body,
    fallback: Protocol,
    supported: &str,
    route: impl Fn(&str) -> Option<(Protocol, Decode)>,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let Some((protocol, decode)) = route(&mime) else {
        count(fallback, "unsupported");
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Type `{ct}`: use {supported}"),
        );
    };
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
    {
        None => false,
        Some(e) if e.is_empty() || e == "identity" => false,
        Some(e) if e == "gzip" => true,
        Some(e) => {
            count(protocol, "unsupported");
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Encoding `{e}`: use gzip or none"),
            );
        }
    };
    let too_large = |what: &str| {
        count(protocol, "too_large");
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what} exceeds the limit of {} bytes", st.max_request_bytes),
        )
    };
    let raw: Bytes = match axum::body::to_bytes(body, st.max_request_bytes).await {
        Ok(b) => b,
        Err(e) => {
            if crate::http::is_length_limit(&e) {
                return too_large("request body");
            }
            count(protocol, "invalid");
            return text(StatusCode::BAD_REQUEST, format!("reading request body: {e}"));
        }
    };
    let body: Bytes = if gzip {
        match crate::http::gunzip_limited(&raw, st.max_request_bytes) {
            Ok(Some(b)) => b.into(),
            Ok(None) => return too_large("decompressed request body"),
            Err(e) => {
                count(protocol, "invalid");
                return text(StatusCode::BAD_REQUEST, format!("invalid gzip body: {e}"));
            }
        }
    } else {
        raw
    };
    match st.pipeline.export_translated(protocol, decode(&body)).await {
        Ok(a) => {
            if a.rejected_spans > 0 {
                tracing::debug!(protocol = protocol.as_str(), rejected = a.rejected_spans, reasons = %a.error_message, "some spans rejected");
            }
            StatusCode::ACCEPTED.into_response()
        }
        Err(IngestError::Invalid(msg)) => text(StatusCode::BAD_REQUEST, msg),
        Err(IngestError::Unavailable(e)) => {
            let mut r = text(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(st.retry_after.as_secs().max(1)));
            r
        }
    }
}

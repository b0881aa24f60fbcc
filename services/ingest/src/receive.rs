//! The HTTP side shared by the Zipkin and Jaeger receivers: content type and encoding checks,
//! size limits, gzip, decoding with a translator from `tailsift-translate`, and answers in the
//! style of those protocols' collectors (202 with an empty body; 400 with a plain-text message;
//! 413; 415; 503 with `Retry-After` when Kafka cannot take the data).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tailsift_otlp::ExportTraceServiceRequest;
use tailsift_translate::TranslateError;

use crate::admission::Admission;
use crate::body::BodyError;
use crate::pipeline::{IngestError, Pipeline, Protocol};

pub(crate) type Decode = fn(&[u8]) -> Result<ExportTraceServiceRequest, TranslateError>;

#[derive(Clone)]
pub(crate) struct ReceiverState {
    pub pipeline: Arc<Pipeline>,
    pub admission: Arc<Admission>,
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
            format!("{what} exceeds the limit of {} bytes", st.admission.max_request_bytes),
        )
    };
    let refused = |r: crate::admission::Refused| {
        r.count();
        crate::http::refused_response(protocol, &r, st.admission.retry_after, |status, _, msg| {
            text(status, msg)
        })
    };
    let mut ticket = match st.admission.enter() {
        Ok(t) => t,
        Err(r) => return refused(r),
    };
    let body = match crate::body::read(&st.admission, &mut ticket.lease, headers, body, gzip).await {
        Ok(b) => b,
        Err(BodyError::TooLarge(what)) => return too_large(what),
        Err(BodyError::Refused(r)) => return refused(r),
        Err(BodyError::Invalid(msg)) => {
            count(protocol, "invalid");
            return text(StatusCode::BAD_REQUEST, msg);
        }
    };
    match st
        .pipeline
        .export_translated(protocol, decode(&body), &mut ticket.lease)
        .await
    {
        Ok(a) => {
            if a.rejected_spans > 0 {
                tracing::debug!(protocol = protocol.as_str(), rejected = a.rejected_spans, reasons = %a.error_message, "some spans rejected");
            }
            StatusCode::ACCEPTED.into_response()
        }
        Err(IngestError::Invalid(msg)) => text(StatusCode::BAD_REQUEST, msg),
        Err(IngestError::Unavailable(e)) => {
            let mut r = text(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(st.admission.retry_after.as_secs().max(1)),
            );
            r
        }
    }
}

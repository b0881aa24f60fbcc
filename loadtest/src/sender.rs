//! Sending export requests over OTLP/gRPC or OTLP/HTTP, with retries.
//!
//! Each attempt's result is classified ([`AttemptOutcome`]):
//!
//! - **accepted**: gRPC OK or HTTP 2xx; `partial_success.rejected_spans` (if any) are counted as
//!   rejected, the rest as accepted;
//! - **rejected**: the server refused the data as invalid (gRPC `INVALID_ARGUMENT`, HTTP 4xx
//!   other than 401/403/404/405/407, 408 and 429); not retried;
//! - **retryable**: gRPC `UNAVAILABLE`, `RESOURCE_EXHAUSTED`, `ABORTED`, `DEADLINE_EXCEEDED`,
//!   `CANCELLED`, `OUT_OF_RANGE`, `DATA_LOSS`; HTTP 408, 429, 502, 503, 504; connection errors and
//!   timeouts. Retried with exponential backoff and jitter ([`RetryPolicy`]), honouring HTTP
//!   `Retry-After` (seconds) and gRPC `google.rpc.RetryInfo`;
//! - **failed**: anything else (HTTP 5xx other than the above, authentication or routing errors,
//!   other gRPC codes); not retried.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tonic::codec::CompressionEncoding;
use tonic::transport::{Channel, Endpoint};

use crate::batch::count_spans;

/// Longest `Retry-After` / `RetryInfo` delay honoured; longer ones are cut to this.
pub const MAX_SERVER_DELAY: Duration = Duration::from_secs(60);

/// OTLP transport and encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// OTLP/gRPC (`TraceService/Export`).
    Grpc,
    /// OTLP/HTTP with a protobuf body (`application/x-protobuf`).
    HttpProto,
    /// OTLP/HTTP with a JSON body (`application/json`).
    HttpJson,
}

impl Protocol {
    /// The usual local collector endpoint for this protocol.
    pub fn default_endpoint(self) -> &'static str {
        match self {
            Protocol::Grpc => "http://127.0.0.1:4317",
            Protocol::HttpProto | Protocol::HttpJson => "http://127.0.0.1:4318",
        }
    }

    /// The protocol's name as accepted on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProto => "http-proto",
            Protocol::HttpJson => "http-json",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "grpc" => Ok(Protocol::Grpc),
            "http-proto" | "http/protobuf" | "http" => Ok(Protocol::HttpProto),
            "http-json" | "http/json" => Ok(Protocol::HttpJson),
            other => Err(format!(
                "unknown protocol {other:?} (expected grpc, http-proto or http-json)"
            )),
        }
    }
}

/// When and how often retryable failures are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts per request in total, the first one included (at least 1).
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub initial_backoff: Duration,
    /// Longest delay between attempts (the delay doubles after each retry up to this).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The backoff before retry number `retry` (1 for the first retry), without jitter.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }

    /// The delay before retry number `retry`: what the server asked for if it did (up to
    /// [`MAX_SERVER_DELAY`]), otherwise the backoff with jitter (50–100 % of it).
    pub fn delay(&self, retry: u32, server_delay: Option<Duration>) -> Duration {
        match server_delay {
            Some(d) => d.min(MAX_SERVER_DELAY),
            None => {
                let jitter = rand::rng().random_range(0.5..=1.0);
                self.backoff(retry).mul_f64(jitter)
            }
        }
    }
}

/// Where and how to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderConfig {
    /// Transport and encoding.
    pub protocol: Protocol,
    /// Base URL, e.g. `http://127.0.0.1:4317`; for HTTP `/v1/traces` is appended unless already
    /// there. A missing scheme means `http://`. TLS is not supported.
    pub endpoint: String,
    /// Compress request bodies with gzip.
    pub gzip: bool,
    /// Time limit of one attempt.
    pub timeout: Duration,
    /// Retries of retryable failures.
    pub retry: RetryPolicy,
}

impl SenderConfig {
    /// A configuration for `protocol` at its default endpoint, without gzip.
    pub fn new(protocol: Protocol) -> Self {
        SenderConfig {
            protocol,
            endpoint: protocol.default_endpoint().to_string(),
            gzip: false,
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }
}

/// The classified result of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The server took the request; `rejected_spans` of its spans were refused
    /// (`partial_success`).
    Accepted {
        /// `partial_success.rejected_spans` (0 when absent).
        rejected_spans: u64,
        /// `partial_success.error_message`, if any.
        message: Option<String>,
    },
    /// The server refused the request as invalid; not retried.
    Rejected {
        /// What the server said.
        reason: String,
    },
    /// A transient failure worth retrying.
    Retryable {
        /// What went wrong.
        reason: String,
        /// How long the server asked to wait (`Retry-After`, `RetryInfo`).
        retry_after: Option<Duration>,
    },
    /// A failure that retrying will not fix.
    Failed {
        /// What went wrong.
        reason: String,
    },
}

/// How a request ended up, after any retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Accepted (possibly with some spans rejected through `partial_success`).
    Accepted,
    /// Rejected as a whole as invalid.
    Rejected,
    /// Failed: a non-retryable error, or retryable errors until the attempts ran out.
    Failed,
}

/// The result of [`Sender::send`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendReport {
    /// Spans in the request.
    pub spans: u64,
    /// Spans the server accepted.
    pub accepted_spans: u64,
    /// Spans the server rejected (whole-request rejection or `partial_success`).
    pub rejected_spans: u64,
    /// Spans of a failed request.
    pub failed_spans: u64,
    /// Attempts made (1 when no retry was needed).
    pub attempts: u32,
    /// Final result.
    pub delivery: Delivery,
    /// The last error or partial-success message, if any.
    pub message: Option<String>,
}

impl SendReport {
    /// Whether at least one retry was needed.
    pub fn retried(&self) -> bool {
        self.attempts > 1
    }
}

/// Minimal `google.rpc.Status`, to find a `RetryInfo` in gRPC error details.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// The `RetryInfo.retry_delay` carried in a gRPC status' details, if any.
fn grpc_retry_delay(status: &tonic::Status) -> Option<Duration> {
    let details = status.details();
    if details.is_empty() {
        return None;
    }
    let rpc = RpcStatus::decode(details).ok()?;
    rpc.details
        .iter()
        .filter(|any| any.type_url.ends_with("google.rpc.RetryInfo"))
        .find_map(|any| RetryInfo::decode(any.value.as_slice()).ok()?.retry_delay)
        .map(|d| Duration::from_secs(d.seconds.max(0) as u64) + Duration::from_nanos(d.nanos.max(0) as u64))
}

/// Classifies a gRPC error status (see the [module docs](self)).
pub fn classify_grpc_status(status: &tonic::Status) -> AttemptOutcome {
    use tonic::Code;
    let reason = format!("gRPC {:?}: {}", status.code(), status.message());
    match status.code() {
        Code::Ok => AttemptOutcome::Accepted {
            rejected_spans: 0,
            message: None,
        },
        Code::InvalidArgument => AttemptOutcome::Rejected { reason },
        Code::Unavailable
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::OutOfRange
        | Code::DataLoss => AttemptOutcome::Retryable {
            reason,
            retry_after: grpc_retry_delay(status),
        },
        _ => AttemptOutcome::Failed { reason },
    }
}

/// Classifies a successful export response by its `partial_success`.
pub fn classify_response(response: &ExportTraceServiceResponse) -> AttemptOutcome {
    match &response.partial_success {
        Some(p) => AttemptOutcome::Accepted {
            rejected_spans: p.rejected_spans.max(0) as u64,
            message: (!p.error_message.is_empty()).then(|| p.error_message.clone()),
        },
        None => AttemptOutcome::Accepted {
            rejected_spans: 0,
            message: None,
        },
    }
}

/// Parses a `Retry-After` header value given in seconds (HTTP dates are ignored).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    v.parse::<u64>().ok().map(Duration::from_secs).or_else(|| {
        v.parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
    })
}

/// Reads `partial_success` from an OTLP/HTTP success body (JSON or protobuf). An empty or
/// unreadable body means everything was accepted.
fn parse_http_success(body: &[u8], json: bool) -> AttemptOutcome {
    let accepted = |rejected_spans: u64, message: Option<String>| AttemptOutcome::Accepted {
        rejected_spans,
        message,
    };
    if body.is_empty() {
        return accepted(0, None);
    }
    if json {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return accepted(0, None);
        };
        let Some(partial) = value.get("partialSuccess").or_else(|| value.get("partial_success")) else {
            return accepted(0, None);
        };
        let rejected = partial
            .get("rejectedSpans")
            .or_else(|| partial.get("rejected_spans"))
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .unwrap_or(0);
        let message = partial
            .get("errorMessage")
            .or_else(|| partial.get("error_message"))
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        accepted(rejected, message)
    } else {
        match ExportTraceServiceResponse::decode(body) {
            Ok(response) => classify_response(&response),
            Err(_) => accepted(0, None),
        }
    }
}

/// Classifies an OTLP/HTTP response (see the [module docs](self)). `json` tells how to read a
/// success body; `retry_after` is the parsed `Retry-After` header.
pub fn classify_http_response(status: u16, retry_after: Option<Duration>, body: &[u8], json: bool) -> AttemptOutcome {
    let reason = || {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
        let text = text.trim();
        if text.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {text}")
        }
    };
    match status {
        200..=299 => parse_http_success(body, json),
        408 | 429 | 502 | 503 | 504 => AttemptOutcome::Retryable {
            reason: reason(),
            retry_after,
        },
        401 | 403 | 404 | 405 | 407 => AttemptOutcome::Failed { reason: reason() },
        400..=499 => AttemptOutcome::Rejected { reason: reason() },
        _ => AttemptOutcome::Failed { reason: reason() },
    }
}

/// Adds `http://` when the endpoint has no scheme, drops trailing slashes, refuses `https`.
fn normalize_endpoint(endpoint: &str) -> anyhow::Result<String> {
    let e = endpoint.trim().trim_end_matches('/');
    if e.is_empty() {
        anyhow::bail!("empty endpoint");
    }
    if e.starts_with("https://") {
        anyhow::bail!("{e}: TLS is not supported by this load generator; use http://");
    }
    if e.starts_with("http://") {
        Ok(e.to_string())
    } else if e.contains("://") {
        anyhow::bail!("{e}: unsupported scheme (use http://)")
    } else {
        Ok(format!("http://{e}"))
    }
}

/// The OTLP/HTTP traces URL for an endpoint.
pub fn http_traces_url(endpoint: &str) -> anyhow::Result<String> {
    let base = normalize_endpoint(endpoint)?;
    Ok(if base.ends_with("/v1/traces") {
        base
    } else {
        format!("{base}/v1/traces")
    })
}

/// Encodes a request as an OTLP/HTTP body, optionally gzipped.
pub fn encode_http_body(request: &ExportTraceServiceRequest, json: bool, gzip: bool) -> anyhow::Result<Bytes> {
    let raw = if json {
        serde_json::to_vec(request)?
    } else {
        request.encode_to_vec()
    };
    if !gzip {
        return Ok(Bytes::from(raw));
    }
    use std::io::Write;
    let mut encoder =
        flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 4 + 64), flate2::Compression::fast());
    encoder.write_all(&raw)?;
    Ok(Bytes::from(encoder.finish()?))
}

#[derive(Clone, Debug)]
enum Transport {
    Grpc(TraceServiceClient<Channel>),
    Http {
        client: reqwest::Client,
        url: String,
        json: bool,
    },
}

/// Sends export requests to one endpoint; cheap to clone (clones share connections).
#[derive(Clone, Debug)]
pub struct Sender {
    transport: Transport,
    gzip: bool,
    retry: RetryPolicy,
}

impl Sender {
    /// Prepares a sender. Connections are made lazily, on the first request, so the server does
    /// not need to be up yet (connection failures are retryable). It is `async` only so that it
    /// runs inside a Tokio runtime, which the gRPC channel needs.
    pub async fn new(config: SenderConfig) -> anyhow::Result<Self> {
        let retry = RetryPolicy {
            max_attempts: config.retry.max_attempts.max(1),
            ..config.retry
        };
        let transport = match config.protocol {
            Protocol::Grpc => {
                let uri = normalize_endpoint(&config.endpoint)?;
                let channel = Endpoint::from_shared(uri.clone())
                    .map_err(|e| anyhow::anyhow!("invalid gRPC endpoint {uri}: {e}"))?
                    .connect_timeout(config.timeout.min(Duration::from_secs(5)))
                    .timeout(config.timeout)
                    .tcp_nodelay(true)
                    .connect_lazy();
                let mut client = TraceServiceClient::new(channel)
                    .max_decoding_message_size(16 * 1024 * 1024)
                    .max_encoding_message_size(usize::MAX);
                if config.gzip {
                    client = client
                        .send_compressed(CompressionEncoding::Gzip)
                        .accept_compressed(CompressionEncoding::Gzip);
                }
                Transport::Grpc(client)
            }
            Protocol::HttpProto | Protocol::HttpJson => {
                let url = http_traces_url(&config.endpoint)?;
                let client = reqwest::Client::builder()
                    .timeout(config.timeout)
                    .connect_timeout(config.timeout.min(Duration::from_secs(5)))
                    .tcp_nodelay(true)
                    .no_proxy()
                    .build()?;
                Transport::Http {
                    client,
                    url,
                    json: config.protocol == Protocol::HttpJson,
                }
            }
        };
        Ok(Sender {
            transport,
            gzip: config.gzip,
            retry,
        })
    }

    /// The retry policy in use.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// Sends `request`, retrying retryable failures according to the [`RetryPolicy`].
    pub async fn send(&self, request: &ExportTraceServiceRequest) -> SendReport {
        let spans = count_spans(request) as u64;
        let body = match &self.transport {
            Transport::Grpc(_) => None,
            Transport::Http { json, .. } => match encode_http_body(request, *json, self.gzip) {
                Ok(body) => Some(body),
                Err(e) => {
                    return SendReport {
                        spans,
                        accepted_spans: 0,
                        rejected_spans: 0,
                        failed_spans: spans,
                        attempts: 0,
                        delivery: Delivery::Failed,
                        message: Some(format!("cannot encode request: {e}")),
                    }
                }
            },
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let outcome = match &body {
                Some(body) => self.attempt_http(body.clone()).await,
                None => self.attempt_grpc(request).await,
            };
            let report = |delivery, accepted, rejected, message| SendReport {
                spans,
                accepted_spans: accepted,
                rejected_spans: rejected,
                failed_spans: spans - accepted - rejected,
                attempts,
                delivery,
                message,
            };
            match outcome {
                AttemptOutcome::Accepted {
                    rejected_spans,
                    message,
                } => {
                    let rejected = rejected_spans.min(spans);
                    return report(Delivery::Accepted, spans - rejected, rejected, message);
                }
                AttemptOutcome::Rejected { reason } => {
                    tracing::debug!(%reason, spans, "request rejected");
                    return report(Delivery::Rejected, 0, spans, Some(reason));
                }
                AttemptOutcome::Failed { reason } => {
                    tracing::debug!(%reason, spans, "request failed");
                    return report(Delivery::Failed, 0, 0, Some(reason));
                }
                AttemptOutcome::Retryable { reason, retry_after } => {
                    if attempts >= self.retry.max_attempts {
                        tracing::debug!(%reason, attempts, "giving up on request");
                        return report(
                            Delivery::Failed,
                            0,
                            0,
                            Some(format!("gave up after {attempts} attempts: {reason}")),
                        );
                    }
                    let delay = self.retry.delay(attempts, retry_after);
                    tracing::debug!(%reason, attempts, ?delay, "retrying request");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// One gRPC attempt.
    async fn attempt_grpc(&self, request: &ExportTraceServiceRequest) -> AttemptOutcome {
        let Transport::Grpc(client) = &self.transport else {
            return AttemptOutcome::Failed {
                reason: "not a gRPC sender".into(),
            };
        };
        let mut client = client.clone();
        match client.export(tonic::Request::new(request.clone())).await {
            Ok(response) => classify_response(response.get_ref()),
            Err(status) => classify_grpc_status(&status),
        }
    }

    /// One OTLP/HTTP attempt with an already encoded body.
    async fn attempt_http(&self, body: Bytes) -> AttemptOutcome {
        use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
        let Transport::Http { client, url, json } = &self.transport else {
            return AttemptOutcome::Failed {
                reason: "not an HTTP sender".into(),
            };
        };
        let content_type = if *json {
            "application/json"
        } else {
            "application/x-protobuf"
        };
        let mut builder = client.post(url).header(CONTENT_TYPE, content_type).body(body);
        if self.gzip {
            builder = builder.header(CONTENT_ENCODING, "gzip");
        }
        let response = match builder.send().await {
            Ok(r) => r,
            Err(e) if e.is_builder() => {
                return AttemptOutcome::Failed {
                    reason: format!("cannot build request: {e}"),
                }
            }
            Err(e) => {
                return AttemptOutcome::Retryable {
                    reason: format!("HTTP transport error: {e}"),
                    retry_after: None,
                }
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let response_json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| ct.contains("json"))
            .unwrap_or(*json);
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) if (200..300).contains(&status) => {
                tracing::debug!(error = %e, "cannot read success response body");
                Bytes::new()
            }
            Err(e) => {
                return AttemptOutcome::Retryable {
                    reason: format!("HTTP {status}, body unreadable: {e}"),
                    retry_after,
                }
            }
        };
        classify_http_response(status, retry_after, &body, response_json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;

    #[test]
    fn grpc_codes_are_classified() {
        use tonic::{Code, Status};
        assert!(matches!(
            classify_grpc_status(&Status::new(Code::InvalidArgument, "bad")),
            AttemptOutcome::Rejected { .. }
        ));
        for code in [
            Code::Unavailable,
            Code::ResourceExhausted,
            Code::Aborted,
            Code::DeadlineExceeded,
        ] {
            assert!(matches!(
                classify_grpc_status(&Status::new(code, "x")),
                AttemptOutcome::Retryable { .. }
            ));
        }
        for code in [Code::Internal, Code::Unimplemented, Code::PermissionDenied] {
            assert!(matches!(
                classify_grpc_status(&Status::new(code, "x")),
                AttemptOutcome::Failed { .. }
            ));
        }
    }

    #[test]
    fn grpc_retry_info_is_honoured() {
        let info = RetryInfo {
            retry_delay: Some(ProtoDuration {
                seconds: 2,
                nanos: 500_000_000,
            }),
        };
        let details = RpcStatus {
            code: 14,
            message: "busy".into(),
            details: vec![ProtoAny {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: info.encode_to_vec(),
            }],
        };
        let status =
            tonic::Status::with_details(tonic::Code::Unavailable, "busy", Bytes::from(details.encode_to_vec()));
        assert_eq!(
            classify_grpc_status(&status),
            AttemptOutcome::Retryable {
                reason: "gRPC Unavailable: busy".into(),
                retry_after: Some(Duration::from_millis(2500)),
            }
        );
    }

    #[test]
    fn http_statuses_are_classified() {
        let ok = classify_http_response(200, None, b"", false);
        assert_eq!(
            ok,
            AttemptOutcome::Accepted {
                rejected_spans: 0,
                message: None
            }
        );
        let partial = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 7,
                error_message: "too old".into(),
            }),
        };
        assert_eq!(
            classify_http_response(200, None, &partial.encode_to_vec(), false),
            AttemptOutcome::Accepted {
                rejected_spans: 7,
                message: Some("too old".into())
            }
        );
        let json = br#"{"partialSuccess":{"rejectedSpans":"3","errorMessage":"bad ids"}}"#;
        assert_eq!(
            classify_http_response(200, None, json, true),
            AttemptOutcome::Accepted {
                rejected_spans: 3,
                message: Some("bad ids".into())
            }
        );
        assert!(matches!(
            classify_http_response(400, None, b"invalid", false),
            AttemptOutcome::Rejected { .. }
        ));
        for status in [429, 502, 503, 504] {
            assert_eq!(
                classify_http_response(status, Some(Duration::ZERO), b"", false),
                AttemptOutcome::Retryable {
                    reason: format!("HTTP {status}"),
                    retry_after: Some(Duration::ZERO)
                }
            );
        }
        for status in [404, 500, 501] {
            assert!(matches!(
                classify_http_response(status, None, b"", false),
                AttemptOutcome::Failed { .. }
            ));
        }
    }

    #[test]
    fn retry_after_and_backoff() {
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        assert_eq!(policy.backoff(1), Duration::from_millis(100));
        assert_eq!(policy.backoff(2), Duration::from_millis(200));
        assert_eq!(policy.backoff(4), Duration::from_millis(800));
        assert_eq!(policy.backoff(5), Duration::from_secs(1));
        assert_eq!(policy.backoff(40), Duration::from_secs(1));
        let d = policy.delay(2, None);
        assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(200));
        assert_eq!(policy.delay(2, Some(Duration::from_secs(7))), Duration::from_secs(7));
        assert_eq!(policy.delay(2, Some(Duration::from_secs(3600))), MAX_SERVER_DELAY);
    }

    #[test]
    fn endpoints_are_normalized() {
        assert_eq!(
            http_traces_url("127.0.0.1:4318/").ok(),
            Some("http://127.0.0.1:4318/v1/traces".to_string())
        );
        assert_eq!(
            http_traces_url("http://h:1/v1/traces").ok(),
            Some("http://h:1/v1/traces".to_string())
        );
        assert!(http_traces_url("https://h:1").is_err());
        assert_eq!("http-json".parse::<Protocol>(), Ok(Protocol::HttpJson));
        assert_eq!(Protocol::Grpc.to_string(), "grpc");
    }

    #[test]
    fn http_bodies_round_trip() {
        use crate::generator::{Generator, TraceShape};
        use std::io::Read;
        let mut g = Generator::new(TraceShape::default(), 1);
        let request = g.next_trace_at(1_750_000_000_000_000_000).into_request();
        let proto = encode_http_body(&request, false, false).expect("encode");
        assert_eq!(
            ExportTraceServiceRequest::decode(proto.as_ref()).expect("decode"),
            request
        );
        let gz = encode_http_body(&request, true, true).expect("encode");
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(gz.as_ref())
            .read_to_end(&mut json)
            .expect("gunzip");
        let back: ExportTraceServiceRequest = serde_json::from_slice(&json).expect("json");
        assert_eq!(back, request);
    }
}

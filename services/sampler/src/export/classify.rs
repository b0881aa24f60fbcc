//! What a backend's answer means, as the OpenTelemetry protocol specification says
//! (<https://opentelemetry.io/docs/specs/otlp/#failures>): retry later, or refused for good.
//!
//! Pure functions of the answer, so every case is unit-tested.

use std::time::{Duration, SystemTime};

use prost::Message;

/// Why spans were refused for good. Also the `reason` label of the dead-letter metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The backend refused the data (INVALID_ARGUMENT, HTTP 400, ...).
    Rejected,
    /// Too large for the backend (RESOURCE_EXHAUSTED without RetryInfo, HTTP 413, Kafka size
    /// errors) or for `export.max_request_bytes` on its own (one span).
    TooLarge,
    /// Retryable failures for `export.max_retry_time` while the backend accepted other data.
    RetriesExhausted,
    /// Spans whose IDs are not valid, found while cutting a large trace (not sendable alone).
    Malformed,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Rejected => "rejected",
            Refusal::TooLarge => "too_large",
            Refusal::RetriesExhausted => "retries_exhausted",
            Refusal::Malformed => "malformed",
        }
    }
}

/// Why an export attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// Try again later (network, timeouts, UNAVAILABLE, HTTP 429/502/503/504, ...), after
    /// `retry_after` when the backend said so.
    #[error("retryable: {message}")]
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The backend refuses this data for good: retrying cannot help.
    #[error("refused ({}): {message}", reason.as_str())]
    Refused { reason: Refusal, message: String },
}

impl ExportError {
    pub fn retryable(message: impl Into<String>) -> Self {
        ExportError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn refused(reason: Refusal, message: impl Into<String>) -> Self {
        ExportError::Refused {
            reason,
            message: message.into(),
        }
    }
}

/// `google.rpc.Status`, the payload of `grpc-status-details-bin`.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

pub const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// The `RetryInfo` in a gRPC status's details (`Status::details`, an encoded `google.rpc.Status`):
/// `Some(delay)` when present (zero when it carries no delay), `None` when absent or unreadable.
pub fn retry_info(details: &[u8]) -> Option<Duration> {
    let status = RpcStatus::decode(details).ok()?;
    let any = status.details.iter().find(|a| a.type_url == RETRY_INFO_TYPE)?;
    let info = RetryInfo::decode(any.value.as_slice()).ok()?;
    Some(info.retry_delay.map_or(Duration::ZERO, |d| {
        Duration::new(d.seconds.max(0) as u64, d.nanos.clamp(0, 999_999_999) as u32)
    }))
}

/// Classifies a gRPC error status. Retryable: CANCELLED, DEADLINE_EXCEEDED, ABORTED,
/// OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS, and RESOURCE_EXHAUSTED when the details carry a
/// `RetryInfo` (whose delay is then honoured). Every other code is permanent, unless `local`: the
/// status was made by the client's own transport (connection reset, protocol error; tonic then
/// says UNKNOWN or INTERNAL), not answered by the server: a network error, retryable.
pub fn classify_grpc(code: tonic::Code, message: &str, details: &[u8], local: bool) -> ExportError {
    use tonic::Code;
    let text = format!("{code:?}: {message}");
    if local {
        return ExportError::retryable(format!("{text} (transport)"));
    }
    match code {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => ExportError::Retryable {
            message: text,
            retry_after: retry_info(details),
        },
        Code::ResourceExhausted => match retry_info(details) {
            Some(delay) => ExportError::Retryable {
                message: text,
                retry_after: Some(delay),
            },
            None => ExportError::refused(Refusal::TooLarge, text),
        },
        _ => ExportError::refused(Refusal::Rejected, text),
    }
}

/// Classifies a non-2xx HTTP answer: 429, 502, 503, 504 are retryable (after `Retry-After` when
/// given), 413 is too large, every other status is permanent.
pub fn classify_http(status: u16, retry_after: Option<&str>, now: SystemTime) -> ExportError {
    let message = format!("HTTP {status}");
    match status {
        429 | 502 | 503 | 504 => ExportError::Retryable {
            message,
            retry_after: retry_after.and_then(|v| parse_retry_after(v, now)),
        },
        413 => ExportError::refused(Refusal::TooLarge, message),
        _ => ExportError::refused(Refusal::Rejected, message),
    }
}

/// Parses a `Retry-After` value: delay-seconds, or an HTTP-date (IMF-fixdate,
/// `Sun, 06 Nov 1994 08:49:37 GMT`; a date in the past is no delay). `None` if unreadable.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_imf_fixdate(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn parse_imf_fixdate(s: &str) -> Option<SystemTime> {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_weekday, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? as i64 + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else { return None };
    if !(1..=31).contains(&day) || *h > 23 || *m > 59 || *sec > 60 {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + m * 60 + sec;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Spans a successful answer's `partial_success` says were rejected (an encoded
/// `ExportTraceServiceResponse`; empty or unreadable: none). They are not retried (OTLP spec).
pub fn partially_rejected(response: &[u8]) -> (u64, String) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    match ExportTraceServiceResponse::decode(response) {
        Ok(ExportTraceServiceResponse {
            partial_success: Some(p),
        }) => (p.rejected_spans.max(0) as u64, p.error_message),
        _ => (0, String::new()),
    }
}

/// Classifies an error of the Kafka producer: size errors are too large and invalid records are
/// rejected (both permanent); everything else (brokers down, timeouts, leaders moving) retries.
pub fn classify_kafka(e: &rdkafka::error::KafkaError) -> ExportError {
    use rdkafka::types::RDKafkaErrorCode as C;
    let message = e.to_string();
    match e.rdkafka_error_code() {
        Some(C::MessageSizeTooLarge | C::MessageBatchTooLarge | C::InvalidMessageSize) => {
            ExportError::refused(Refusal::TooLarge, message)
        }
        Some(C::InvalidMessage | C::InvalidRecord) => ExportError::refused(Refusal::Rejected, message),
        _ => ExportError::retryable(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn every_refusal_is_a_zeroed_metric_label() {
        let all = [
            Refusal::Rejected,
            Refusal::TooLarge,
            Refusal::RetriesExhausted,
            Refusal::Malformed,
        ];
        // A new variant must be added to `all` above (exhaustive match) and to the metric's list.
        for r in all {
            match r {
                Refusal::Rejected | Refusal::TooLarge | Refusal::RetriesExhausted | Refusal::Malformed => {}
            }
            assert!(
                crate::metrics::DEAD_LETTER_REASONS.contains(&r.as_str()),
                "{}",
                r.as_str()
            );
        }
        assert_eq!(all.len(), crate::metrics::DEAD_LETTER_REASONS.len());
    }

    fn details_with_retry_info(delay: Option<(i64, i32)>) -> Vec<u8> {
        RpcStatus {
            code: Code::ResourceExhausted as i32,
            message: "slow down".into(),
            details: vec![
                ProtoAny {
                    type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(),
                    value: vec![10, 1, b'x'],
                },
                ProtoAny {
                    type_url: RETRY_INFO_TYPE.into(),
                    value: RetryInfo {
                        retry_delay: delay.map(|(seconds, nanos)| ProtoDuration { seconds, nanos }),
                    }
                    .encode_to_vec(),
                },
            ],
        }
        .encode_to_vec()
    }

    fn is_retryable(e: &ExportError) -> bool {
        matches!(e, ExportError::Retryable { .. })
    }

    #[test]
    fn every_grpc_code_is_classified_as_the_otlp_spec_says() {
        let retryable = [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unavailable,
            Code::DataLoss,
        ];
        let all = [
            Code::Ok,
            Code::Cancelled,
            Code::Unknown,
            Code::InvalidArgument,
            Code::DeadlineExceeded,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unimplemented,
            Code::Internal,
            Code::Unavailable,
            Code::DataLoss,
            Code::Unauthenticated,
        ];
        for code in all {
            let e = classify_grpc(code, "m", &[], false);
            assert_eq!(is_retryable(&e), retryable.contains(&code), "{code:?}: {e}");
            if let ExportError::Refused { reason, message } = &e {
                let want = if code == Code::ResourceExhausted {
                    Refusal::TooLarge
                } else {
                    Refusal::Rejected
                };
                assert_eq!(*reason, want, "{code:?}");
                assert!(message.contains('m'));
            }
            // The same code made by the client's transport (no answer from the server): retried.
            assert!(
                is_retryable(&classify_grpc(code, "transport error", &[], true)),
                "{code:?}"
            );
        }
    }

    #[test]
    fn resource_exhausted_is_retryable_only_with_retry_info_and_its_delay_is_honoured() {
        let e = classify_grpc(
            Code::ResourceExhausted,
            "quota",
            &details_with_retry_info(Some((2, 500_000_000))),
            false,
        );
        assert_eq!(
            e,
            ExportError::Retryable {
                message: "ResourceExhausted: quota".into(),
                retry_after: Some(Duration::from_millis(2500)),
            }
        );
        let e = classify_grpc(Code::ResourceExhausted, "quota", &details_with_retry_info(None), false);
        assert!(matches!(e, ExportError::Retryable { retry_after: Some(d), .. } if d.is_zero()));
        // Details without a RetryInfo, or not a google.rpc.Status at all: permanent.
        let other = RpcStatus {
            code: 8,
            message: String::new(),
            details: vec![ProtoAny {
                type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(),
                value: vec![],
            }],
        }
        .encode_to_vec();
        for details in [&other[..], &[][..], &[0xff, 0xff][..]] {
            let e = classify_grpc(Code::ResourceExhausted, "too big", details, false);
            assert!(
                matches!(
                    e,
                    ExportError::Refused {
                        reason: Refusal::TooLarge,
                        ..
                    }
                ),
                "{e:?}"
            );
        }
        // A RetryInfo on an always-retryable code is honoured too.
        let e = classify_grpc(Code::Unavailable, "x", &details_with_retry_info(Some((7, 0))), false);
        assert!(matches!(e, ExportError::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(7)));
        assert_eq!(
            retry_info(&details_with_retry_info(Some((-3, -1)))),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn http_statuses_follow_the_otlp_spec() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for s in [429, 502, 503, 504] {
            assert!(is_retryable(&classify_http(s, None, now)), "{s}");
        }
        for s in [400, 401, 403, 404, 405, 408, 409, 415, 500, 501, 505, 507] {
            assert!(
                matches!(
                    classify_http(s, None, now),
                    ExportError::Refused {
                        reason: Refusal::Rejected,
                        ..
                    }
                ),
                "{s}"
            );
        }
        assert!(matches!(
            classify_http(413, None, now),
            ExportError::Refused {
                reason: Refusal::TooLarge,
                ..
            }
        ));
        assert!(matches!(
            classify_http(503, Some("12"), now),
            ExportError::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(12)
        ));
        assert!(matches!(
            classify_http(429, Some("soon"), now),
            ExportError::Retryable { retry_after: None, .. }
        ));
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        // 1994-11-06T08:49:37Z is 784111777 (RFC 9110's example date).
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let now = at - Duration::from_secs(90);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at + Duration::from_secs(5)),
            Some(Duration::ZERO),
            "a date in the past: no delay"
        );
        // 2024-02-29T23:59:59Z (a leap day) is 1709251199.
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_251_199);
        assert_eq!(
            parse_retry_after("Thu, 29 Feb 2024 23:59:59 GMT", leap - Duration::from_secs(1)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        for bad in [
            "",
            "-1",
            "1.5",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn partial_success_counts_rejected_spans() {
        use opentelemetry_proto::tonic::collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceResponse};
        let body = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 3,
                error_message: "3 spans too old".into(),
            }),
        }
        .encode_to_vec();
        assert_eq!(partially_rejected(&body), (3, "3 spans too old".into()));
        assert_eq!(partially_rejected(&[]), (0, String::new()));
        assert_eq!(partially_rejected(&[0xff]), (0, String::new()));
    }

    #[test]
    fn kafka_size_errors_are_not_retryable() {
        use rdkafka::error::KafkaError;
        use rdkafka::types::RDKafkaErrorCode as C;
        for code in [C::MessageSizeTooLarge, C::MessageBatchTooLarge, C::InvalidMessageSize] {
            let e = classify_kafka(&KafkaError::MessageProduction(code));
            assert!(
                matches!(
                    e,
                    ExportError::Refused {
                        reason: Refusal::TooLarge,
                        ..
                    }
                ),
                "{code:?}"
            );
        }
        for code in [C::InvalidRecord, C::InvalidMessage] {
            let e = classify_kafka(&KafkaError::MessageProduction(code));
            assert!(
                matches!(
                    e,
                    ExportError::Refused {
                        reason: Refusal::Rejected,
                        ..
                    }
                ),
                "{code:?}"
            );
        }
        for code in [
            C::MessageTimedOut,
            C::BrokerTransportFailure,
            C::NotLeaderForPartition,
            C::QueueFull,
        ] {
            assert!(
                is_retryable(&classify_kafka(&KafkaError::MessageProduction(code))),
                "{code:?}"
            );
        }
    }
}

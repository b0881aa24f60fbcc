//! The protocol-independent ingest path: split by trace ID, publish, answer.

use std::sync::Arc;

use prost::Message;
use tailsift_otlp::{split_by_trace, ExportTraceServiceRequest, SplitOptions};
use tailsift_translate::TranslateError;

use crate::admission::Lease;
use crate::metrics as m;
use crate::publisher::{PublishError, Publisher};

/// Receivers, as metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    OtlpGrpc,
    OtlpHttpProtobuf,
    OtlpHttpJson,
    ZipkinV2Json,
    ZipkinV2Proto,
    ZipkinV1Json,
    ZipkinV1Thrift,
    JaegerThriftCompactUdp,
    JaegerThriftBinaryUdp,
    JaegerThriftHttp,
    JaegerGrpc,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::OtlpGrpc => "otlp_grpc",
            Protocol::OtlpHttpProtobuf => "otlp_http_protobuf",
            Protocol::OtlpHttpJson => "otlp_http_json",
            Protocol::ZipkinV2Json => "zipkin_v2_json",
            Protocol::ZipkinV2Proto => "zipkin_v2_proto",
            Protocol::ZipkinV1Json => "zipkin_v1_json",
            Protocol::ZipkinV1Thrift => "zipkin_v1_thrift",
            Protocol::JaegerThriftCompactUdp => "jaeger_thrift_compact_udp",
            Protocol::JaegerThriftBinaryUdp => "jaeger_thrift_binary_udp",
            Protocol::JaegerThriftHttp => "jaeger_thrift_http",
            Protocol::JaegerGrpc => "jaeger_grpc",
        }
    }
}

/// A successful export: what to report in `partial_success`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    pub accepted_spans: usize,
    pub rejected_spans: usize,
    pub error_message: String,
}

/// A failed export.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IngestError {
    /// The request cannot be processed as sent (HTTP 400 / INVALID_ARGUMENT). Not retryable.
    #[error("{0}")]
    Invalid(String),
    /// Kafka could not take the request now (HTTP 503 / UNAVAILABLE). Retryable.
    #[error("{0}")]
    Unavailable(#[from] PublishError),
}

/// Shared by all receivers.
pub struct Pipeline {
    publisher: Arc<Publisher>,
    split: SplitOptions,
}

impl Pipeline {
    /// An empty lease on the node's in-flight byte budget (for requests that did not go through
    /// [`crate::admission::Admission`], e.g. UDP datagrams).
    pub fn lease(&self) -> Lease {
        self.publisher.budget().lease()
    }

    pub fn new(publisher: Arc<Publisher>, max_record_bytes: usize) -> Self {
        Pipeline {
            publisher,
            split: SplitOptions { max_record_bytes },
        }
    }

    /// Ingests one encoded `ExportTraceServiceRequest`; the records are charged to `lease` (the
    /// request's share of the in-flight byte budget) while they are written.
    pub async fn export(&self, protocol: Protocol, body: &[u8], lease: &mut Lease) -> Result<Accepted, IngestError> {
        let proto = protocol.as_str();
        let result = self.export_inner(protocol, body, lease).await;
        let outcome = match &result {
            Ok(a) if a.rejected_spans > 0 => "partial",
            Ok(_) => "accepted",
            Err(IngestError::Invalid(_)) => "invalid",
            Err(IngestError::Unavailable(_)) => "unavailable",
        };
        metrics::counter!(m::REQUESTS, "protocol" => proto, "outcome" => outcome).increment(1);
        result
    }

    /// Ingests a request decoded from another format (Zipkin, Jaeger): a decoding error is
    /// counted and answered as invalid input, a translated request takes the OTLP path.
    pub async fn export_translated(
        &self,
        protocol: Protocol,
        decoded: Result<ExportTraceServiceRequest, TranslateError>,
        lease: &mut Lease,
    ) -> Result<Accepted, IngestError> {
        match decoded {
            Ok(req) => {
                let pb = req.encode_to_vec();
                drop(req);
                if let Err(e) = lease.charge(pb.len()) {
                    let e = PublishError::InFlightLimit(e.max);
                    metrics::counter!(m::PRODUCE_ERRORS, "kind" => e.kind()).increment(1);
                    metrics::counter!(m::REQUESTS, "protocol" => protocol.as_str(), "outcome" => "unavailable")
                        .increment(1);
                    return Err(IngestError::Unavailable(e));
                }
                self.export(protocol, &pb, lease).await
            }
            Err(e) => {
                metrics::counter!(m::REQUESTS, "protocol" => protocol.as_str(), "outcome" => "invalid").increment(1);
                Err(IngestError::Invalid(e.to_string()))
            }
        }
    }

    async fn export_inner(&self, protocol: Protocol, body: &[u8], lease: &mut Lease) -> Result<Accepted, IngestError> {
        let proto = protocol.as_str();
        let out = split_by_trace(body, self.split).map_err(|e| IngestError::Invalid(e.to_string()))?;
        let rejected = out.rejected_spans();
        metrics::counter!(m::SPANS_RECEIVED, "protocol" => proto).increment((out.accepted_spans + rejected) as u64);
        for (reason, n) in &out.rejected {
            metrics::counter!(m::SPANS_REJECTED, "protocol" => proto, "reason" => reason.as_str()).increment(*n as u64);
        }
        if out.accepted_spans == 0 && rejected > 0 {
            return Err(IngestError::Invalid(format!(
                "no valid span in request: {}",
                out.error_message()
            )));
        }
        let accepted = Accepted {
            accepted_spans: out.accepted_spans,
            rejected_spans: rejected,
            error_message: out.error_message(),
        };
        self.publisher.publish(out.records, lease).await?;
        Ok(accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_is_a_zeroed_metric_label() {
        use Protocol::*;
        let all = [
            OtlpGrpc,
            OtlpHttpProtobuf,
            OtlpHttpJson,
            ZipkinV2Json,
            ZipkinV2Proto,
            ZipkinV1Json,
            ZipkinV1Thrift,
            JaegerThriftCompactUdp,
            JaegerThriftBinaryUdp,
            JaegerThriftHttp,
            JaegerGrpc,
        ];
        for p in all {
            assert!(m::PROTOCOLS.contains(&p.as_str()), "{}", p.as_str());
        }
        assert_eq!(all.len(), m::PROTOCOLS.len());
    }
}

//! Exporting kept traces: OTLP/gRPC, OTLP/HTTP, or a Kafka topic. Batches whole traces, retries
//! with exponential backoff until the backend accepts (nothing is dropped on transient errors),
//! and reports every acknowledged job back to the engine, which only then lets offsets advance.

use std::io::Write;
use std::time::Instant;

use bytes::{Buf, BufMut, Bytes};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::config::{ExportConfig, ExportKind};
use crate::engine::ExportJob;
use crate::metrics as m;

/// Why an export attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Try again later (network, 5xx, UNAVAILABLE, timeouts).
    #[error("retryable: {0}")]
    Retryable(String),
    /// The backend refuses this data for good (4xx, INVALID_ARGUMENT): retrying cannot help.
    #[error("rejected: {0}")]
    Rejected(String),
}

/// A destination for kept spans.
#[derive(Clone)]
pub enum Exporter {
    Grpc {
        client: tonic::client::Grpc<tonic::transport::Channel>,
        gzip: bool,
        headers: Vec<(String, String)>,
    },
    Http {
        client: reqwest::Client,
        url: String,
        gzip: bool,
        headers: Vec<(String, String)>,
    },
    Kafka {
        producer: FutureProducer,
        topic: String,
    },
}

impl Exporter {
    pub fn new(cfg: &ExportConfig, kafka: &crate::config::KafkaConfig) -> Result<Self, String> {
        let headers: Vec<(String, String)> = cfg
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        match cfg.kind {
            ExportKind::OtlpGrpc => {
                let ch = tonic::transport::Endpoint::from_shared(cfg.endpoint.clone())
                    .map_err(|e| format!("export.endpoint: {e}"))?
                    .timeout(cfg.timeout)
                    .connect_timeout(cfg.timeout)
                    .connect_lazy();
                Ok(Exporter::Grpc {
                    client: tonic::client::Grpc::new(ch),
                    gzip: cfg.gzip,
                    headers,
                })
            }
            ExportKind::OtlpHttp => {
                let client = reqwest::Client::builder()
                    .timeout(cfg.timeout)
                    .build()
                    .map_err(|e| e.to_string())?;
                let url = format!("{}/v1/traces", cfg.endpoint.trim_end_matches('/'));
                Ok(Exporter::Http {
                    client,
                    url,
                    gzip: cfg.gzip,
                    headers,
                })
            }
            ExportKind::Kafka => {
                let producer = kafka
                    .connection()
                    .client_config()
                    .set("acks", "all")
                    .set("enable.idempotence", "true")
                    .set("compression.type", "lz4")
                    .set("linger.ms", "5")
                    .set("partitioner", "fnv1a")
                    .set("message.timeout.ms", cfg.timeout.as_millis().to_string())
                    .create()
                    .map_err(|e| format!("export kafka producer: {e}"))?;
                Ok(Exporter::Kafka {
                    producer,
                    topic: cfg.kafka_topic.clone(),
                })
            }
        }
    }

    /// Sends one batch (jobs of whole traces).
    pub async fn send(&mut self, jobs: &[ExportJob]) -> Result<(), ExportError> {
        match self {
            Exporter::Grpc { client, gzip, headers } => {
                let body: Vec<u8> = jobs.iter().flat_map(|j| j.payload.iter().copied()).collect();
                let mut req = tonic::Request::new(Bytes::from(body));
                for (k, v) in headers.iter() {
                    if let (Ok(k), Ok(v)) = (k.parse::<tonic::metadata::MetadataKey<_>>(), v.parse()) {
                        req.metadata_mut().insert(k, v);
                    }
                }
                let mut c = client.clone();
                if *gzip {
                    c = c.send_compressed(CompressionEncoding::Gzip);
                }
                c.ready()
                    .await
                    .map_err(|e| ExportError::Retryable(format!("connecting: {e}")))?;
                let path =
                    http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export");
                match c.unary::<Bytes, Bytes, RawCodec>(req, path, RawCodec).await {
                    Ok(_) => Ok(()),
                    Err(s) => match s.code() {
                        tonic::Code::InvalidArgument
                        | tonic::Code::PermissionDenied
                        | tonic::Code::Unauthenticated
                        | tonic::Code::Unimplemented => {
                            Err(ExportError::Rejected(format!("{:?}: {}", s.code(), s.message())))
                        }
                        _ => Err(ExportError::Retryable(format!("{:?}: {}", s.code(), s.message()))),
                    },
                }
            }
            Exporter::Http {
                client,
                url,
                gzip,
                headers,
            } => {
                let body: Vec<u8> = jobs.iter().flat_map(|j| j.payload.iter().copied()).collect();
                let mut rb = client
                    .post(url.as_str())
                    .header("content-type", "application/x-protobuf");
                let body = if *gzip {
                    rb = rb.header("content-encoding", "gzip");
                    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    e.write_all(&body).map_err(|e| ExportError::Retryable(e.to_string()))?;
                    e.finish().map_err(|e| ExportError::Retryable(e.to_string()))?
                } else {
                    body
                };
                for (k, v) in headers.iter() {
                    rb = rb.header(k.as_str(), v.as_str());
                }
                let resp = rb
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| ExportError::Retryable(e.to_string()))?;
                let status = resp.status();
                if status.is_success() {
                    Ok(())
                } else if matches!(status.as_u16(), 429 | 502 | 503 | 504 | 408) || status.is_server_error() {
                    Err(ExportError::Retryable(format!("HTTP {status}")))
                } else {
                    Err(ExportError::Rejected(format!("HTTP {status}")))
                }
            }
            Exporter::Kafka { producer, topic } => {
                let mut futs = Vec::with_capacity(jobs.len());
                for j in jobs {
                    let key = tailsift_otlp::record_key(&j.trace_id);
                    let rec = FutureRecord::to(topic).key(&key[..]).payload(&j.payload[..]);
                    match producer.send_result(rec) {
                        Ok(f) => futs.push(f),
                        Err((e, _)) => return Err(ExportError::Retryable(e.to_string())),
                    }
                }
                for f in futures::future::join_all(futs).await {
                    match f {
                        Ok(Ok(_)) => {}
                        Ok(Err((e, _))) => return Err(ExportError::Retryable(e.to_string())),
                        Err(_) => return Err(ExportError::Retryable("producer closed".into())),
                    }
                }
                Ok(())
            }
        }
    }
}

/// Sends raw protobuf bytes, ignores the response body.
#[derive(Clone, Copy, Default)]
struct RawCodec;
struct RawEnc;
struct RawDec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEnc;
    type Decoder = RawDec;
    fn encoder(&mut self) -> RawEnc {
        RawEnc
    }
    fn decoder(&mut self) -> RawDec {
        RawDec
    }
}

impl Encoder for RawEnc {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The export task: batches jobs from `rx`, sends them, reports acknowledged job IDs on `done`.
/// Retries forever with backoff (until `shutdown`); a job the backend rejects for good is
/// reported done (it can never be delivered) and counted as rejected.
pub async fn run_exporter(
    mut exporter: Exporter,
    cfg: ExportConfig,
    mut rx: mpsc::Receiver<ExportJob>,
    done: mpsc::UnboundedSender<u64>,
    shutdown: CancellationToken,
) {
    let mut batch: Vec<ExportJob> = Vec::new();
    loop {
        // Fill a batch: wait for the first job, then up to batch_timeout for more.
        if batch.is_empty() {
            tokio::select! {
                biased;
                j = rx.recv() => match j { Some(j) => batch.push(j), None => return },
                _ = shutdown.cancelled() => return,
            }
        }
        let deadline = tokio::time::Instant::now() + cfg.batch_timeout;
        while batch.iter().map(|j| j.spans).sum::<usize>() < cfg.batch_spans {
            tokio::select! {
                j = rx.recv() => match j { Some(j) => batch.push(j), None => break },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        metrics::gauge!(m::EXPORT_QUEUE).set(rx.len() as f64);
        let spans: usize = batch.iter().map(|j| j.spans).sum();
        let mut backoff = cfg.initial_backoff;
        loop {
            let started = Instant::now();
            match exporter.send(&batch).await {
                Ok(()) => {
                    metrics::histogram!(m::EXPORT_DURATION).record(started.elapsed().as_secs_f64());
                    metrics::counter!(m::EXPORT_REQUESTS, "outcome" => "ok").increment(1);
                    metrics::counter!(m::EXPORT_SPANS, "outcome" => "ok").increment(spans as u64);
                    break;
                }
                Err(ExportError::Rejected(e)) => {
                    tracing::error!(error = %e, spans, "backend rejected kept spans for good; they are not retried");
                    metrics::counter!(m::EXPORT_REQUESTS, "outcome" => "rejected").increment(1);
                    metrics::counter!(m::EXPORT_SPANS, "outcome" => "rejected").increment(spans as u64);
                    break;
                }
                Err(ExportError::Retryable(e)) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "export failed, retrying");
                    metrics::counter!(m::EXPORT_REQUESTS, "outcome" => "retry").increment(1);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(cfg.max_backoff);
                }
            }
        }
        for j in batch.drain(..) {
            let _ = done.send(j.id);
        }
    }
}

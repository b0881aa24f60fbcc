//! Exporting kept traces: OTLP/gRPC, OTLP/HTTP, a Kafka topic, or OTLP/JSON lines on stdout or in
//! a file (`tailsift standalone`'s default). Batches whole traces, retries
//! with exponential backoff until the backend accepts (nothing is dropped on transient errors),
//! and reports every acknowledged job back to the engine, which only then lets offsets advance.

use std::io::Write;
use std::sync::{Arc, Mutex};
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
    /// One OTLP/JSON `ExportTraceServiceRequest` per line ([`json_line`]) per exported job (a kept
    /// trace, or late spans of one), on stdout or appended to a file.
    JsonLines {
        out: Arc<Mutex<Box<dyn Write + Send>>>,
        name: String,
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
            ExportKind::JsonLines => {
                let out: Box<dyn Write + Send> = if cfg.output == "-" {
                    Box::new(std::io::stdout())
                } else {
                    let path = std::path::Path::new(&cfg.output);
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir).map_err(|e| format!("export.output {}: {e}", dir.display()))?;
                    }
                    let file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| format!("export.output {}: {e}", path.display()))?;
                    Box::new(std::io::BufWriter::new(file))
                };
                let name = if cfg.output == "-" {
                    "stdout".into()
                } else {
                    cfg.output.clone()
                };
                Ok(Exporter::JsonLines {
                    out: Arc::new(Mutex::new(out)),
                    name,
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
            Exporter::JsonLines { out, name } => {
                let mut text = Vec::new();
                for j in jobs {
                    text.extend(json_line(&j.payload).map_err(ExportError::Rejected)?);
                }
                let mut w = out.lock().unwrap();
                w.write_all(&text)
                    .and_then(|()| w.flush())
                    .map_err(|e| ExportError::Retryable(format!("writing {name}: {e}")))
            }
        }
    }
}

/// An encoded `ExportTraceServiceRequest` as one line of OTLP/JSON (the protobuf JSON mapping with
/// OTLP's rules: lowerCamelCase keys, hex trace and span IDs, enums as integers), ending in `\n`.
pub fn json_line(payload: &[u8]) -> Result<Vec<u8>, String> {
    use prost::Message;
    let req = tailsift_otlp::ExportTraceServiceRequest::decode(payload)
        .map_err(|e| format!("kept spans do not decode: {e}"))?;
    let mut line = tailsift_otlp::json::encode_json(&req);
    line.push(b'\n');
    Ok(line)
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
        metrics::gauge!(m::EXPORT_QUEUE).set((rx.len() + batch.len()) as f64);
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
                    // The queue grows behind a failing backend: keep the gauge current.
                    metrics::gauge!(m::EXPORT_QUEUE).set((rx.len() + batch.len()) as f64);
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

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
    use prost::Message;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    fn request(trace_id: [u8; 16], span_id: [u8; 8]) -> tailsift_otlp::ExportTraceServiceRequest {
        tailsift_otlp::ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "checkout")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: trace_id.to_vec(),
                        span_id: span_id.to_vec(),
                        name: "POST /pay".into(),
                        kind: 2,
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        end_time_unix_nano: 1_700_000_000_500_000_000,
                        attributes: vec![kv("tailsift.sampling.policy", "errors")],
                        status: Some(Status {
                            code: status::StatusCode::Error as i32,
                            message: "card declined".into(),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn json_lines_follow_the_otlp_json_mapping() {
        let trace_id = [
            0x5b, 0x8e, 0xff, 0xf7, 0x98, 3, 0x81, 3, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c,
        ];
        let req = request(trace_id, [1, 2, 3, 4, 5, 6, 7, 8]);
        let line = json_line(&req.encode_to_vec()).unwrap();
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1, "exactly one line");
        assert_eq!(line.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        let rs = &v["resourceSpans"][0];
        assert_eq!(rs["resource"]["attributes"][0]["key"], "service.name");
        assert_eq!(rs["resource"]["attributes"][0]["value"]["stringValue"], "checkout");
        let span = &rs["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "5b8efff798038103d269b633813fc60c", "{span}");
        assert_eq!(span["spanId"], "0102030405060708");
        assert_eq!(span["kind"], 2, "enums are integers");
        assert_eq!(span["status"]["code"], 2);
        assert_eq!(span["status"]["message"], "card declined");
        assert_eq!(span["attributes"][0]["key"], "tailsift.sampling.policy");
        assert_eq!(span["attributes"][0]["value"]["stringValue"], "errors");
        assert_eq!(
            span["startTimeUnixNano"], "1700000000000000000",
            "64-bit integers as strings"
        );
        // What the OTLP/HTTP JSON receivers (ours included) read back is the same request.
        assert_eq!(tailsift_otlp::json::decode_json(&line).unwrap(), req);
        assert!(json_line(b"\xff\xff\xff").is_err(), "not protobuf");
    }

    #[tokio::test]
    async fn the_json_lines_exporter_appends_one_line_per_job_to_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/kept.jsonl");
        let cfg = ExportConfig {
            kind: ExportKind::JsonLines,
            output: path.display().to_string(),
            ..Default::default()
        };
        let mut exporter = Exporter::new(&cfg, &crate::config::KafkaConfig::default()).unwrap();
        let job = |n: u8| {
            let trace_id = [n; 16];
            ExportJob {
                id: u64::from(n),
                partition: 0,
                trace_id,
                // Two records of one trace, concatenated (a protobuf merge), as the engine sends.
                payload: [
                    request(trace_id, [n, 1, 0, 0, 0, 0, 0, 1]),
                    request(trace_id, [n, 2, 0, 0, 0, 0, 0, 2]),
                ]
                .iter()
                .flat_map(|r| r.encode_to_vec())
                .collect(),
                spans: 2,
            }
        };
        exporter.send(&[job(1), job(2)]).await.unwrap();
        exporter.send(&[job(3)]).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        for (line, n) in lines.iter().zip([1u8, 2, 3]) {
            let req = tailsift_otlp::json::decode_json(line.as_bytes()).unwrap();
            let spans: Vec<&Span> = req
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| &ss.spans)
                .collect();
            assert_eq!(spans.len(), 2, "the whole trace on one line");
            assert!(spans.iter().all(|s| s.trace_id == vec![n; 16]));
        }
        let bad = ExportConfig {
            output: dir.path().join("out").display().to_string(),
            ..cfg
        };
        assert!(
            Exporter::new(&bad, &crate::config::KafkaConfig::default()).is_err(),
            "a directory is not a file"
        );
    }
}

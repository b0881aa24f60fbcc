//! Exporting kept traces: OTLP/gRPC, OTLP/HTTP, a Kafka topic, or OTLP/JSON lines on stdout or in
//! a file (`tailsift standalone`'s default).
//!
//! The export task ([`run_exporter`]) takes [`ExportJob`]s (one kept trace each) from the engine
//! and, for every batch:
//! 1. cuts each job into pieces of at most `export.max_request_bytes` encoded bytes
//!    ([`pieces::split_job`]; a span too large on its own can never be sent: dead-letter path);
//! 2. packs whole pieces into requests within the byte and span limits ([`pieces::pack`]);
//! 3. delivers each request ([`Delivery::deliver`]): retryable failures back off and retry;
//!    a request refused for good is retried piece by piece to isolate the offender; a piece
//!    refused for good, or failing for `export.max_retry_time` while the backend accepts other
//!    data (a probe), goes to the dead-letter topic or is dropped ([`dead_letter`]). While the
//!    backend accepts nothing at all (an outage) retries never stop and nothing is dropped;
//! 4. acknowledges a job to the engine once all its pieces are done, which lets offsets advance.
//!
//! How answers are classified (retry or refuse) is in [`classify`].

pub mod classify;
pub mod dead_letter;
pub mod pieces;

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, BufMut, Bytes};
use tailsift_kafka::served::{DeliveryContext, Record, ServedProducer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};

pub use classify::{ExportError, Refusal};
use dead_letter::DeadLetter;
use pieces::Piece;

use crate::config::{ExportConfig, ExportKind, KafkaConfig};
use crate::engine::ExportJob;
use crate::metrics as m;

/// A server's own retry delay (RetryInfo, Retry-After) is honoured up to this, or up to
/// `export.max_backoff` when that is longer.
const SERVER_DELAY_CAP: Duration = Duration::from_secs(60);

/// What the backend said to a request it accepted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Spans the backend's `partial_success` says it rejected (not retried, per the OTLP spec).
    pub rejected_spans: u64,
    pub message: String,
}

/// A destination for kept spans, and the dead-letter path for spans it refuses.
pub struct Exporter {
    backend: Backend,
    dead_letter: DeadLetter,
}

#[derive(Clone)]
enum Backend {
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
        producer: ServedProducer<DeliveryContext>,
        topic: String,
    },
    /// One OTLP/JSON `ExportTraceServiceRequest` per line ([`json_line`]) per exported job (a kept
    /// trace, or late spans of one), on stdout or appended to a file.
    JsonLines {
        out: Arc<Mutex<Box<dyn Write + Send>>>,
        name: String,
    },
}

/// A producer for the Kafka exporter and the dead-letter topic: records are at most
/// `export.kafka_max_record_bytes`, so `message.max.bytes` is set above that (with room for the
/// key, headers and framing); operator properties from `kafka.properties` still apply last.
pub(crate) fn kafka_producer(kafka: &KafkaConfig, cfg: &ExportConfig) -> rdkafka::ClientConfig {
    let max_message = cfg.kafka_max_record_bytes + 64 * 1024;
    let mut c = kafka.connection().client_config();
    c.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("partitioner", "fnv1a")
        .set("message.max.bytes", max_message.to_string())
        .set("batch.size", max_message.min(1_000_000).to_string())
        .set("message.timeout.ms", cfg.timeout.as_millis().to_string());
    for (k, v) in &kafka.properties {
        c.set(k, v);
    }
    c
}

/// Why an exporter could not be set up (bad configuration or resources); named by key.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("export.endpoint: {0}")]
    Endpoint(String),
    #[error("export HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("{0} kafka producer: {1}")]
    Producer(&'static str, #[source] rdkafka::error::KafkaError),
    #[error("export.output {}: {source}", path.display())]
    Output {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Exporter {
    pub fn new(cfg: &ExportConfig, kafka: &KafkaConfig) -> Result<Self, SetupError> {
        let headers: Vec<(String, String)> = cfg
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        let backend = match cfg.kind {
            ExportKind::OtlpGrpc => {
                let ch = tonic::transport::Endpoint::from_shared(cfg.endpoint.clone())
                    .map_err(|e| SetupError::Endpoint(e.to_string()))?
                    .timeout(cfg.timeout)
                    .connect_timeout(cfg.timeout)
                    .connect_lazy();
                Backend::Grpc {
                    client: tonic::client::Grpc::new(ch),
                    gzip: cfg.gzip,
                    headers,
                }
            }
            ExportKind::OtlpHttp => {
                let client = reqwest::Client::builder()
                    .timeout(cfg.timeout)
                    .build()
                    .map_err(SetupError::HttpClient)?;
                let url = format!("{}/v1/traces", cfg.endpoint.trim_end_matches('/'));
                Backend::Http {
                    client,
                    url,
                    gzip: cfg.gzip,
                    headers,
                }
            }
            ExportKind::Kafka => {
                let (producer, _) = ServedProducer::start_delivering(&kafka_producer(kafka, cfg))
                    .map_err(|e| SetupError::Producer("export", e))?;
                Backend::Kafka {
                    producer,
                    topic: cfg.kafka_topic.clone(),
                }
            }
            ExportKind::JsonLines => {
                let out: Box<dyn Write + Send> = if cfg.output == "-" {
                    Box::new(std::io::stdout())
                } else {
                    let path = std::path::Path::new(&cfg.output);
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir).map_err(|e| SetupError::Output {
                            path: dir.to_path_buf(),
                            source: e,
                        })?;
                    }
                    let file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| SetupError::Output {
                            path: path.to_path_buf(),
                            source: e,
                        })?;
                    Box::new(std::io::BufWriter::new(file))
                };
                let name = if cfg.output == "-" {
                    "stdout".into()
                } else {
                    cfg.output.clone()
                };
                Backend::JsonLines {
                    out: Arc::new(Mutex::new(out)),
                    name,
                }
            }
        };
        Ok(Exporter {
            backend,
            dead_letter: DeadLetter::new(cfg, kafka)?,
        })
    }

    /// The largest piece this exporter sends: `export.max_request_bytes`, and for Kafka also
    /// `export.kafka_max_record_bytes` (a piece is one record). JSON lines are not cut (one line
    /// per job).
    fn piece_limit(&self, cfg: &ExportConfig) -> usize {
        match self.backend {
            Backend::Kafka { .. } => cfg.max_request_bytes.min(cfg.kafka_max_record_bytes),
            Backend::JsonLines { .. } => usize::MAX,
            _ => cfg.max_request_bytes,
        }
    }

    /// Sends one request made of `pieces`. The OTLP exporters send all in one request (all or
    /// nothing); the Kafka exporter writes one record per piece, and on error leaves in `pieces`
    /// only those not written, so nothing is written twice.
    pub async fn send(&mut self, pieces: &mut Vec<Piece>) -> Result<Accepted, ExportError> {
        match &mut self.backend {
            Backend::Grpc { client, gzip, headers } => {
                let body: Vec<u8> = pieces.iter().flat_map(|p| p.payload.iter().copied()).collect();
                grpc_export(client, *gzip, headers, body).await
            }
            Backend::Http {
                client,
                url,
                gzip,
                headers,
            } => {
                let body: Vec<u8> = pieces.iter().flat_map(|p| p.payload.iter().copied()).collect();
                http_export(client, url, *gzip, headers, body).await
            }
            Backend::Kafka { producer, topic } => {
                let mut futs = Vec::with_capacity(pieces.len());
                for p in pieces.iter() {
                    let key = tailsift_otlp::record_key(&p.trace_id);
                    let rec = Record {
                        topic,
                        partition: None,
                        key: &key[..],
                        payload: &p.payload[..],
                    };
                    futs.push(match producer.send(rec, None, true) {
                        Ok(f) => Ok(f.expect("a report was asked for")),
                        Err(e) => Err(classify::classify_kafka(&e)),
                    });
                }
                let mut results = Vec::with_capacity(futs.len());
                for f in futs {
                    results.push(match f {
                        Ok(f) => match f.await {
                            Ok(Ok(())) => Ok(()),
                            Ok(Err(e)) => Err(classify::classify_kafka(&e)),
                            Err(_) => Err(ExportError::retryable("producer closed")),
                        },
                        Err(e) => Err(e),
                    });
                }
                let mut worst: Option<ExportError> = None;
                let mut results = results.into_iter();
                pieces.retain(|_| match results.next() {
                    Some(Err(e)) => {
                        // A permanent refusal outranks a retryable failure: it needs isolating.
                        if !matches!(worst, Some(ExportError::Refused { .. })) {
                            worst = Some(e);
                        }
                        true
                    }
                    _ => false,
                });
                match worst {
                    None => Ok(Accepted::default()),
                    Some(e) => Err(e),
                }
            }
            Backend::JsonLines { out, name } => {
                let mut text = Vec::new();
                for p in pieces.iter() {
                    text.extend(json_line(&p.payload).map_err(|e| ExportError::refused(Refusal::Rejected, e))?);
                }
                let mut w = out.lock().unwrap();
                w.write_all(&text)
                    .and_then(|()| w.flush())
                    .map(|()| Accepted::default())
                    .map_err(|e| ExportError::retryable(format!("writing {name}: {e}")))
            }
        }
    }

    /// Does the backend accept anything at all? An empty `ExportTraceServiceRequest` for OTLP,
    /// the topic's metadata for Kafka, a flush for JSON lines.
    pub async fn probe(&mut self) -> Result<(), ExportError> {
        match &mut self.backend {
            Backend::Grpc { client, gzip, headers } => {
                grpc_export(client, *gzip, headers, Vec::new()).await.map(|_| ())
            }
            Backend::Http {
                client,
                url,
                gzip,
                headers,
            } => http_export(client, url, *gzip, headers, Vec::new()).await.map(|_| ()),
            Backend::Kafka { producer, topic } => {
                let (producer, topic) = (producer.clone(), topic.clone());
                tokio::task::spawn_blocking(move || {
                    use rdkafka::producer::Producer;
                    producer
                        .client()
                        .fetch_metadata(Some(&topic), Duration::from_secs(5))
                        .map(|_| ())
                        .map_err(|e| ExportError::retryable(e.to_string()))
                })
                .await
                .unwrap_or_else(|e| Err(ExportError::retryable(e.to_string())))
            }
            Backend::JsonLines { out, name } => out
                .lock()
                .unwrap()
                .flush()
                .map_err(|e| ExportError::retryable(format!("writing {name}: {e}"))),
        }
    }
}

async fn grpc_export(
    client: &tonic::client::Grpc<tonic::transport::Channel>,
    gzip: bool,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<Accepted, ExportError> {
    let mut req = tonic::Request::new(Bytes::from(body));
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (k.parse::<tonic::metadata::MetadataKey<_>>(), v.parse()) {
            req.metadata_mut().insert(k, v);
        }
    }
    let mut c = client.clone();
    if gzip {
        c = c.send_compressed(CompressionEncoding::Gzip);
    }
    c.ready()
        .await
        .map_err(|e| ExportError::retryable(format!("connecting: {e}")))?;
    let path = http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export");
    match c.unary::<Bytes, Bytes, RawCodec>(req, path, RawCodec).await {
        Ok(resp) => {
            let (rejected_spans, message) = classify::partially_rejected(resp.get_ref());
            Ok(Accepted {
                rejected_spans,
                message,
            })
        }
        Err(s) => {
            // A status the client's transport made itself carries the underlying error.
            let local = std::error::Error::source(&s).is_some();
            Err(classify::classify_grpc(s.code(), s.message(), s.details(), local))
        }
    }
}

async fn http_export(
    client: &reqwest::Client,
    url: &str,
    gzip: bool,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<Accepted, ExportError> {
    let mut rb = client.post(url).header("content-type", "application/x-protobuf");
    let body = if gzip {
        rb = rb.header("content-encoding", "gzip");
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&body).map_err(|e| ExportError::retryable(e.to_string()))?;
        e.finish().map_err(|e| ExportError::retryable(e.to_string()))?
    } else {
        body
    };
    for (k, v) in headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    let resp = rb
        .body(body)
        .send()
        .await
        .map_err(|e| ExportError::retryable(e.to_string()))?;
    let status = resp.status();
    if status.is_success() {
        let body = resp.bytes().await.unwrap_or_default();
        let (rejected_spans, message) = classify::partially_rejected(&body);
        return Ok(Accepted {
            rejected_spans,
            message,
        });
    }
    let retry_after = resp
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok());
    Err(classify::classify_http(status.as_u16(), retry_after, SystemTime::now()))
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

/// The requests of one batch still to deliver, and the acknowledgements they owe: a job is
/// reported on `done` once all its pieces are delivered, dead-lettered or dropped.
struct Batch {
    requests: VecDeque<Vec<Piece>>,
    unsendable: Vec<pieces::Unsendable>,
    /// Pieces not yet done, per job.
    pending: HashMap<u64, usize>,
    done: mpsc::UnboundedSender<u64>,
}

impl Batch {
    fn new(done: mpsc::UnboundedSender<u64>) -> Self {
        Batch {
            requests: VecDeque::new(),
            unsendable: Vec::new(),
            pending: HashMap::new(),
            done,
        }
    }

    /// Cuts `job` into pieces; returns them (to be packed) and keeps what can never be sent.
    fn add(&mut self, job: ExportJob, piece_limit: usize) -> Vec<Piece> {
        let id = job.id;
        let split = pieces::split_job(job, piece_limit);
        if split.pieces.len() > 1 {
            metrics::counter!(m::EXPORT_SPLIT_TRACES).increment(1);
            tracing::debug!(trace = %hex::encode(split.pieces[0].trace_id), pieces = split.pieces.len(),
                "trace larger than export.max_request_bytes: sent in several requests");
        }
        let parts = split.pieces.len() + split.unsendable.len();
        if parts == 0 {
            // Nothing to send (no spans): done at once, so offsets are never held by it.
            let _ = self.done.send(id);
        } else {
            self.pending.insert(id, parts);
        }
        self.unsendable.extend(split.unsendable);
        split.pieces
    }

    /// One piece of `job` is done.
    fn settle(&mut self, job: u64) {
        let left = self.pending.get_mut(&job).expect("every piece's job is pending");
        *left -= 1;
        if *left == 0 {
            self.pending.remove(&job);
            let _ = self.done.send(job);
        }
    }

    /// Settles the pieces of `before` that are no longer in `after` (delivered).
    fn settle_delivered(&mut self, before: &[u64], after: &[Piece]) {
        let mut left: Vec<u64> = after.iter().map(|p| p.job).collect();
        for job in before {
            match left.iter().position(|j| j == job) {
                Some(i) => {
                    left.swap_remove(i);
                }
                None => self.settle(*job),
            }
        }
    }
}

/// Delivers requests: retries, isolation of refused pieces, the poison/outage probe, and the
/// dead-letter path.
struct Delivery<'a> {
    exporter: &'a mut Exporter,
    cfg: &'a ExportConfig,
    rx: &'a mut mpsc::Receiver<ExportJob>,
    piece_limit: usize,
    shutdown: &'a CancellationToken,
}

/// How one request ended.
enum Settled {
    Delivered,
    Refused(Refusal, String),
}

impl Delivery<'_> {
    /// Delivers every request of `batch`, and dead-letters what cannot be sent. `None` when
    /// `shutdown` interrupted it (then what is not done is not acknowledged).
    async fn deliver_batch(&mut self, batch: &mut Batch) -> Option<()> {
        loop {
            if let Some(u) = batch.unsendable.pop() {
                self.exporter
                    .dead_letter
                    .refuse(&u.piece, u.reason, &u.message, self.shutdown)
                    .await?;
                batch.settle(u.piece.job);
            } else if let Some(request) = batch.requests.pop_front() {
                self.deliver(request, batch).await?;
            } else {
                return Some(());
            }
        }
    }

    /// Sends `request`; what is refused for good is isolated (a request of several pieces: each
    /// piece goes back to the front of the batch as a request of its own, so the good traces are
    /// still delivered) or dead-lettered (a single piece).
    async fn deliver(&mut self, mut request: Vec<Piece>, batch: &mut Batch) -> Option<()> {
        let jobs: Vec<u64> = request.iter().map(|p| p.job).collect();
        let settled = self.until_settled(&mut request, batch).await;
        batch.settle_delivered(&jobs, &request);
        match settled? {
            Settled::Delivered => {}
            Settled::Refused(reason, error) if request.len() > 1 => {
                tracing::warn!(pieces = request.len(), reason = reason.as_str(), %error,
                    "export request refused; retrying its traces one by one");
                for piece in request.into_iter().rev() {
                    batch.requests.push_front(vec![piece]);
                }
            }
            Settled::Refused(reason, error) => {
                let piece = request.pop().expect("a request holds a piece");
                self.exporter
                    .dead_letter
                    .refuse(&piece, reason, &error, self.shutdown)
                    .await?;
                batch.settle(piece.job);
            }
        }
        Some(())
    }

    /// Sends `request` until it is accepted or refused for good. Retryable failures back off
    /// (honouring the server's delay). After `max_retry_time` of them, a request of several
    /// pieces is refused as `retries_exhausted` (so its pieces are retried one by one); for a
    /// single piece the backend is probed ([`Delivery::probe`]): if it accepts other data this
    /// piece is poison (refused, `retries_exhausted`); if not, it is an outage and retrying goes
    /// on. On return `request` holds what was not delivered.
    async fn until_settled(&mut self, request: &mut Vec<Piece>, batch: &mut Batch) -> Option<Settled> {
        let mut backoff = self.cfg.initial_backoff;
        let mut failing_since: Option<Instant> = None;
        let mut attempts = 0u64;
        loop {
            let spans: usize = request.iter().map(|p| p.spans).sum();
            let started = Instant::now();
            let result = self.exporter.send(request).await;
            match result {
                Ok(accepted) => {
                    metrics::histogram!(m::EXPORT_DURATION).record(started.elapsed().as_secs_f64());
                    metrics::counter!(m::EXPORT_REQUESTS, "outcome" => "ok").increment(1);
                    let ok = (spans as u64).saturating_sub(accepted.rejected_spans);
                    metrics::counter!(m::EXPORT_SPANS, "outcome" => "ok").increment(ok);
                    if accepted.rejected_spans > 0 {
                        let traces: Vec<String> = request.iter().map(|p| hex::encode(p.trace_id)).collect();
                        tracing::error!(rejected_spans = accepted.rejected_spans, error = %accepted.message, ?traces,
                            "the backend accepted the request but rejected some spans (partial success; not retried)");
                        metrics::counter!(m::EXPORT_SPANS, "outcome" => "partially_rejected")
                            .increment(accepted.rejected_spans);
                    }
                    request.clear();
                    return Some(Settled::Delivered);
                }
                Err(_) if request.iter().map(|p| p.spans).sum::<usize>() < spans => {
                    // The Kafka exporter keeps only the pieces it could not write: go on with those.
                    let written = spans - request.iter().map(|p| p.spans).sum::<usize>();
                    metrics::counter!(m::EXPORT_SPANS, "outcome" => "ok").increment(written as u64);
                    continue;
                }
                Err(ExportError::Refused { reason, message }) => {
                    metrics::counter!(m::EXPORT_REQUESTS, "outcome" => "rejected").increment(1);
                    return Some(Settled::Refused(reason, message));
                }
                Err(ExportError::Retryable { message, retry_after }) => {
                    metrics::counter!(m::EXPORT_REQUESTS, "outcome" => "retry").increment(1);
                    // The queue grows behind a failing backend: keep the gauge current.
                    metrics::gauge!(m::EXPORT_QUEUE).set((self.rx.len() + batch.pending.len()) as f64);
                    attempts += 1;
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.cfg.max_retry_time {
                        let error = format!("retryable failures for {:?}: {message}", since.elapsed());
                        if request.len() > 1 {
                            return Some(Settled::Refused(Refusal::RetriesExhausted, error));
                        }
                        match self.probe(batch).await {
                            Ok(()) => {
                                metrics::counter!(m::EXPORT_PROBES, "outcome" => "backend_up").increment(1);
                                return Some(Settled::Refused(
                                    Refusal::RetriesExhausted,
                                    format!("{error} (while the backend accepts other data)"),
                                ));
                            }
                            Err(e) => {
                                metrics::counter!(m::EXPORT_PROBES, "outcome" => "outage").increment(1);
                                tracing::error!(error = %message, probe = %e, failing_for = ?since.elapsed(),
                                    "export backend outage: it accepts nothing; retrying, nothing is dropped (consumption pauses when the queue is full)");
                                failing_since = Some(Instant::now());
                            }
                        }
                    }
                    let cap = self.cfg.max_backoff.max(SERVER_DELAY_CAP);
                    let delay = retry_after.map_or(backoff, |d| d.min(cap));
                    if attempts == 1 || attempts.is_multiple_of(10) {
                        tracing::warn!(error = %message, attempts, retry_in = ?delay, "export failed, retrying");
                    }
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    backoff = (backoff * 2).min(self.cfg.max_backoff);
                }
            }
        }
    }

    /// Does the backend accept other data? Sends one other piece alone: the next of this batch,
    /// else of the next job waiting in the queue; delivered, it is acknowledged like any other.
    /// With nothing else to send, an empty `ExportTraceServiceRequest` (for Kafka: the topic's
    /// metadata).
    async fn probe(&mut self, batch: &mut Batch) -> Result<(), ExportError> {
        if batch.requests.is_empty() {
            if let Ok(job) = self.rx.try_recv() {
                let pieces = batch.add(job, self.piece_limit);
                batch.requests.extend(pieces.into_iter().map(|p| vec![p]));
            }
        }
        let Some(next) = batch.requests.front_mut() else {
            return self.exporter.probe().await;
        };
        let mut probe = vec![next.remove(0)];
        if next.is_empty() {
            batch.requests.pop_front();
        }
        let job = probe[0].job;
        let spans = probe[0].spans;
        match self.exporter.send(&mut probe).await {
            Ok(_) => {
                metrics::counter!(m::EXPORT_REQUESTS, "outcome" => "ok").increment(1);
                metrics::counter!(m::EXPORT_SPANS, "outcome" => "ok").increment(spans as u64);
                batch.settle(job);
                Ok(())
            }
            Err(e) => {
                // Not delivered: it is sent again in its turn.
                batch.requests.push_front(probe);
                Err(e)
            }
        }
    }
}

/// The export task: batches jobs from `rx`, cuts and packs them into requests, delivers them, and
/// reports each job on `done` once all its pieces are delivered, dead-lettered or dropped. Only a
/// shutdown stops it with jobs unacknowledged.
pub async fn run_exporter(
    mut exporter: Exporter,
    cfg: ExportConfig,
    mut rx: mpsc::Receiver<ExportJob>,
    done: mpsc::UnboundedSender<u64>,
    shutdown: CancellationToken,
) {
    let piece_limit = exporter.piece_limit(&cfg);
    let mut jobs: Vec<ExportJob> = Vec::new();
    loop {
        // Fill a batch: wait for the first job, then up to batch_timeout for more, while it is
        // under both the span and the byte limit.
        tokio::select! {
            biased;
            j = rx.recv() => match j { Some(j) => jobs.push(j), None => return },
            _ = shutdown.cancelled() => return,
        }
        let deadline = tokio::time::Instant::now() + cfg.batch_timeout;
        while jobs.iter().map(|j| j.spans).sum::<usize>() < cfg.batch_spans
            && jobs.iter().map(|j| j.payload.len()).sum::<usize>() < cfg.max_request_bytes
        {
            tokio::select! {
                j = rx.recv() => match j { Some(j) => jobs.push(j), None => break },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        metrics::gauge!(m::EXPORT_QUEUE).set((rx.len() + jobs.len()) as f64);

        let mut batch = Batch::new(done.clone());
        let pieces: Vec<Piece> = jobs.drain(..).flat_map(|j| batch.add(j, piece_limit)).collect();
        batch.requests = pieces::pack(pieces, cfg.max_request_bytes, cfg.batch_spans).into();
        let mut delivery = Delivery {
            exporter: &mut exporter,
            cfg: &cfg,
            rx: &mut rx,
            piece_limit,
            shutdown: &shutdown,
        };
        if delivery.deliver_batch(&mut batch).await.is_none() {
            return;
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
        let limit = exporter.piece_limit(&cfg);
        assert_eq!(limit, usize::MAX, "JSON lines are never cut");
        let pieces = |jobs: Vec<ExportJob>| -> Vec<Piece> {
            jobs.into_iter()
                .flat_map(|j| pieces::split_job(j, limit).pieces)
                .collect()
        };
        exporter.send(&mut pieces(vec![job(1), job(2)])).await.unwrap();
        exporter.send(&mut pieces(vec![job(3)])).await.unwrap();
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

#[cfg(test)]
mod delivery_tests;

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[tokio::test]
    async fn pieces_are_cut_to_the_request_limit_and_for_kafka_to_the_record_limit() {
        let kafka = KafkaConfig::default();
        let limit = |kind: ExportKind, request: usize, record: usize| {
            let cfg = ExportConfig {
                kind,
                max_request_bytes: request,
                kafka_max_record_bytes: record,
                output: std::env::temp_dir()
                    .join("tailsift-limit-test.jsonl")
                    .display()
                    .to_string(),
                ..Default::default()
            };
            Exporter::new(&cfg, &kafka).unwrap().piece_limit(&cfg)
        };
        assert_eq!(limit(ExportKind::OtlpGrpc, 3 << 20, 900_000), 3 << 20);
        assert_eq!(limit(ExportKind::OtlpHttp, 3 << 20, 900_000), 3 << 20);
        assert_eq!(limit(ExportKind::Kafka, 3 << 20, 900_000), 900_000);
        assert_eq!(limit(ExportKind::Kafka, 500_000, 900_000), 500_000);
        assert_eq!(limit(ExportKind::JsonLines, 3 << 20, 900_000), usize::MAX);
    }
}

#[cfg(test)]
mod config_tests {
    use tailsift_config::{ConfigError, Sources};

    fn load(sets: &[(&str, &str)]) -> Result<crate::SamplerConfig, ConfigError> {
        Sources {
            sets: sets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }
        .load()
    }

    #[test]
    fn export_limits_have_safe_defaults_and_are_validated() {
        let c = load(&[]).unwrap();
        assert_eq!(c.export.max_request_bytes, 3 << 20, "under the usual 4 MiB gRPC limit");
        assert_eq!(c.export.max_retry_time, std::time::Duration::from_secs(300));
        assert_eq!(c.export.dead_letter_topic, None);
        assert_eq!(c.export.kafka_max_record_bytes, 900_000);
        let c = load(&[
            ("export.dead_letter_topic", "dlq"),
            ("export.max_request_bytes", "1048576"),
        ])
        .unwrap();
        assert_eq!(c.export.dead_letter_topic.as_deref(), Some("dlq"));
        for (sets, key) in [
            (vec![("export.max_request_bytes", "100")], "export.max_request_bytes"),
            (
                vec![("export.kafka_max_record_bytes", "10")],
                "export.kafka_max_record_bytes",
            ),
            (vec![("export.max_retry_time", "0s")], "export.max_retry_time"),
            (
                vec![("export.dead_letter_topic", "tailsift-spans")],
                "export.dead_letter_topic",
            ),
            (
                vec![("export.dead_letter_topic", "tailsift-decisions")],
                "export.dead_letter_topic",
            ),
            (
                vec![
                    ("export.kind", "kafka"),
                    ("export.dead_letter_topic", "tailsift-sampled"),
                ],
                "export.dead_letter_topic",
            ),
        ] {
            let e = load(&sets).unwrap_err().to_string();
            assert!(e.contains(key), "{sets:?}: {e}");
        }
    }
}

//! The verifier: an OTLP backend that records what the samplers export, and checks it against
//! the manifest of what the load generator sent.
//!
//! [`Recorder`] receives OTLP/gRPC ([`Recorder::grpc_service`]) and OTLP/HTTP protobuf
//! ([`Recorder::router`], `POST /v1/traces`, gzip accepted) and keeps, per trace, every span ID
//! with how often it arrived and under which decision (the sampler's stamp: the attributes
//! `tailsift.sampling.policy` and `tailsift.sampling.policy_version`). It can be switched "down"
//! (gRPC `UNAVAILABLE`, HTTP 503) to play a backend outage.
//!
//! [`check`] compares a snapshot with the [`ManifestEntry`]s the load generator wrote
//! (`tailsift-loadgen --manifest FILE`) under the expectations of the usual policy ("keep every
//! error trace, every slow trace, and a fraction `p` of the rest"):
//!
//! - **lost**: an error or slow trace whose spans were all acknowledged by ingest, not received;
//! - **split**: a received trace with fewer distinct spans than were sent (partially exported), or
//!   whose spans came from several decisions (different stamps) none of which exported the whole
//!   trace (split between workers or decisions);
//! - **duplicates**: spans received more than once (at-least-once redelivery; counted, not an
//!   error);
//! - **probabilistic fraction**: of the other traces, the kept count must be within `sigma`
//!   binomial standard deviations of `n * p`.
//!
//! Traces some of whose requests ultimately failed (`acked: false`) are not judged: some of their
//! spans may legitimately be missing. Received traces not in the manifest are counted as
//! `unknown` (e.g. traffic of an earlier run).
//!
//! The control API on the HTTP port (used by `tailsift-verify` and the fault scripts):
//! `GET /control/stats`, `POST /control/down`, `POST /control/up`, `POST /control/reset`,
//! `POST /control/limit?max_message_bytes=N` (refuse larger requests as a backend with that
//! message limit does; 0 or a reset: no limit), `POST /control/check` (body: [`CheckRequest`],
//! manifests read from this machine's disk).

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::generator::TraceRecord;

/// Attribute naming the policy that kept a trace (stamped by the sampler).
pub const ATTR_POLICY: &str = "tailsift.sampling.policy";
/// Attribute holding the policy version a trace was decided under.
pub const ATTR_POLICY_VERSION: &str = "tailsift.sampling.policy_version";

/// One line of a manifest: a trace the load generator sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Trace ID, 32 lowercase hex digits.
    pub trace_id: String,
    /// Spans sent.
    pub spans: usize,
    /// At least one span with status ERROR.
    pub is_error: bool,
    /// Root span at or above the generator's slow threshold.
    pub is_slow: bool,
    /// Root span duration.
    pub duration_ns: u64,
    /// Every request carrying spans of this trace was acknowledged (accepted) by the server.
    /// Missing (a `--trace-log` file) means true.
    #[serde(default = "yes")]
    pub acked: bool,
}

fn yes() -> bool {
    true
}

impl ManifestEntry {
    /// The entry for a generated trace.
    pub fn new(record: &TraceRecord, acked: bool) -> Self {
        ManifestEntry {
            trace_id: record.trace_id_hex(),
            spans: record.spans,
            is_error: record.is_error,
            is_slow: record.is_slow,
            duration_ns: record.duration_ns,
            acked,
        }
    }
}

/// Reads a manifest (JSON lines; `--manifest` or `--trace-log` output).
pub fn read_manifest(path: &Path) -> anyhow::Result<Vec<ManifestEntry>> {
    let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))?);
    }
    Ok(out)
}

/// What was received for one trace.
#[derive(Clone, Debug, Default)]
pub struct ReceivedTrace {
    /// Span ID -> times received.
    pub spans: HashMap<u64, u32>,
    /// Decision index (into [`Snapshot::decisions`]) -> the span IDs it exported.
    pub decisions: HashMap<u32, std::collections::HashSet<u64>>,
}

impl ReceivedTrace {
    /// Distinct spans received.
    pub fn distinct(&self) -> usize {
        self.spans.len()
    }

    /// Spans received more than once (each extra copy counted).
    pub fn duplicates(&self) -> u64 {
        self.spans.values().map(|n| u64::from(n.saturating_sub(1))).sum()
    }

    /// Distinct spans per decision.
    pub fn per_decision(&self) -> HashMap<u32, usize> {
        self.decisions.iter().map(|(d, ids)| (*d, ids.len())).collect()
    }
}

#[derive(Default)]
struct State {
    traces: HashMap<[u8; 16], ReceivedTrace>,
    decisions: Vec<String>,
    decision_index: HashMap<String, u32>,
}

/// Counters of the recorder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Export requests accepted.
    pub requests: u64,
    /// Export requests refused while down.
    pub refused_requests: u64,
    /// Spans received (every copy).
    pub spans: u64,
    /// Distinct traces received.
    pub traces: u64,
    /// Whether the recorder is playing an outage.
    pub down: bool,
    /// Export requests refused (RESOURCE_EXHAUSTED / 413) for exceeding `max_message_bytes`.
    #[serde(default)]
    pub oversized_requests: u64,
    /// The message size limit played (`POST /control/limit?max_message_bytes=N`); 0: none (64 MiB).
    #[serde(default)]
    pub max_message_bytes: u64,
}

/// A snapshot of everything received.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub traces: HashMap<[u8; 16], ReceivedTrace>,
    /// Decision stamps (`policy@version`) by index.
    pub decisions: Vec<String>,
}

/// Records exported spans; cheap to clone (shared state).
#[derive(Clone, Default)]
pub struct Recorder {
    state: Arc<Mutex<State>>,
    down: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    spans: Arc<AtomicU64>,
    max_message_bytes: Arc<AtomicU64>,
    oversized: Arc<AtomicU64>,
}

fn stamp_of(span: &opentelemetry_proto::tonic::trace::v1::Span) -> String {
    let mut policy = String::new();
    let mut version = String::new();
    for kv in &span.attributes {
        let v = kv.value.as_ref().and_then(|v| v.value.as_ref());
        let text = match v {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            Some(any_value::Value::IntValue(i)) => i.to_string(),
            Some(other) => format!("{other:?}"),
            None => String::new(),
        };
        if kv.key == ATTR_POLICY {
            policy = text;
        } else if kv.key == ATTR_POLICY_VERSION {
            version = text;
        }
    }
    format!("{policy}@{version}")
}

impl Recorder {
    pub fn new() -> Self {
        Recorder::default()
    }

    /// Records one export request (unless down: then returns false and records nothing).
    pub fn record(&self, request: &ExportTraceServiceRequest) -> bool {
        if self.down.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0u64;
        for rs in &request.resource_spans {
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    let (Ok(tid), Ok(sid)) = (
                        <[u8; 16]>::try_from(span.trace_id.as_slice()),
                        <[u8; 8]>::try_from(span.span_id.as_slice()),
                    ) else {
                        continue;
                    };
                    n += 1;
                    let stamp = stamp_of(span);
                    let next = state.decisions.len() as u32;
                    let d = *state.decision_index.entry(stamp.clone()).or_insert(next);
                    if d == next {
                        state.decisions.push(stamp);
                    }
                    let id = u64::from_le_bytes(sid);
                    let t = state.traces.entry(tid).or_default();
                    *t.spans.entry(id).or_insert(0) += 1;
                    t.decisions.entry(d).or_default().insert(id);
                }
            }
        }
        self.spans.fetch_add(n, Ordering::Relaxed);
        true
    }

    /// Plays a backend's message size limit (0: none): larger requests are refused, as a gRPC
    /// server with `max_decoding_message_size` (RESOURCE_EXHAUSTED) or an HTTP server (413) does.
    pub fn set_max_message_bytes(&self, max: u64) {
        self.max_message_bytes.store(max, Ordering::SeqCst);
    }

    /// Whether `request` exceeds the limit played (then counted as oversized).
    pub fn oversized(&self, request: &ExportTraceServiceRequest) -> bool {
        let max = self.max_message_bytes.load(Ordering::SeqCst);
        let over = max > 0 && request.encoded_len() as u64 > max;
        if over {
            self.oversized.fetch_add(1, Ordering::Relaxed);
        }
        over
    }

    /// Plays an outage (`true`) or ends it.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Forgets everything received (counters included).
    pub fn reset(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *state = State::default();
        self.requests.store(0, Ordering::SeqCst);
        self.refused.store(0, Ordering::SeqCst);
        self.spans.store(0, Ordering::SeqCst);
        self.oversized.store(0, Ordering::SeqCst);
        self.max_message_bytes.store(0, Ordering::SeqCst);
    }

    pub fn stats(&self) -> Stats {
        let traces = self.state.lock().unwrap_or_else(|e| e.into_inner()).traces.len() as u64;
        Stats {
            requests: self.requests.load(Ordering::Relaxed),
            refused_requests: self.refused.load(Ordering::Relaxed),
            spans: self.spans.load(Ordering::Relaxed),
            traces,
            down: self.down.load(Ordering::SeqCst),
            oversized_requests: self.oversized.load(Ordering::Relaxed),
            max_message_bytes: self.max_message_bytes.load(Ordering::SeqCst),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Snapshot {
            traces: state.traces.clone(),
            decisions: state.decisions.clone(),
        }
    }

    /// Checks what was received against `manifest`.
    pub fn check(&self, manifest: &[ManifestEntry], expect: &Expectations) -> Report {
        check(manifest, &self.snapshot(), expect)
    }

    /// The OTLP/gRPC service (gzip accepted, 64 MiB messages).
    pub fn grpc_service(&self) -> TraceServiceServer<Recorder> {
        TraceServiceServer::new(self.clone())
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .max_decoding_message_size(64 << 20)
    }

    /// OTLP/HTTP (`POST /v1/traces`, protobuf, gzip accepted) and the control API.
    pub fn router(&self) -> axum::Router {
        use axum::routing::{get, post};
        axum::Router::new()
            .route("/v1/traces", post(http_export))
            .route(
                "/control/stats",
                get(|s: axum::extract::State<Recorder>| async move { axum::Json(s.stats()) }),
            )
            .route(
                "/control/down",
                post(|s: axum::extract::State<Recorder>| async move {
                    s.set_down(true);
                    axum::Json(s.stats())
                }),
            )
            .route(
                "/control/up",
                post(|s: axum::extract::State<Recorder>| async move {
                    s.set_down(false);
                    axum::Json(s.stats())
                }),
            )
            .route(
                "/control/reset",
                post(|s: axum::extract::State<Recorder>| async move {
                    s.reset();
                    axum::Json(s.stats())
                }),
            )
            .route(
                "/control/limit",
                post(
                    |s: axum::extract::State<Recorder>, q: axum::extract::Query<HashMap<String, u64>>| async move {
                        s.set_max_message_bytes(q.get("max_message_bytes").copied().unwrap_or(0));
                        axum::Json(s.stats())
                    },
                ),
            )
            .route("/control/check", post(http_check))
            .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
            .with_state(self.clone())
    }

    /// Serves gRPC on `grpc` and HTTP on `http` until `shutdown` fires.
    pub async fn serve(
        &self,
        grpc: tokio::net::TcpListener,
        http: tokio::net::TcpListener,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<()> {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc);
        let s1 = shutdown.clone();
        let grpc_server = tonic::transport::Server::builder()
            .add_service(self.grpc_service())
            .serve_with_incoming_shutdown(incoming, async move { s1.cancelled().await });
        let http_server =
            axum::serve(http, self.router()).with_graceful_shutdown(async move { shutdown.cancelled().await });
        let (a, b) = tokio::join!(grpc_server, http_server);
        a?;
        b?;
        Ok(())
    }

    /// Starts both servers on free loopback ports in the background; returns the gRPC endpoint
    /// and the HTTP base URL (`http://127.0.0.1:PORT`).
    pub async fn start_local(&self) -> anyhow::Result<(String, String)> {
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let urls = (
            format!("http://{}", grpc.local_addr()?),
            format!("http://{}", http.local_addr()?),
        );
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.serve(grpc, http, tokio_util::sync::CancellationToken::new()).await {
                tracing::error!(error = %e, "verifier stopped");
            }
        });
        Ok(urls)
    }
}

#[tonic::async_trait]
impl TraceService for Recorder {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if self.oversized(request.get_ref()) {
            return Err(tonic::Status::resource_exhausted(format!(
                "message of {} bytes exceeds the limit of {} bytes",
                request.get_ref().encoded_len(),
                self.max_message_bytes.load(Ordering::SeqCst)
            )));
        }
        if self.record(request.get_ref()) {
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        } else {
            Err(tonic::Status::unavailable(
                "verifier is down (simulated backend outage)",
            ))
        }
    }
}

async fn http_export(
    axum::extract::State(rec): axum::extract::State<Recorder>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, Vec<u8>) {
    use axum::http::StatusCode;
    let gzip = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let raw = if gzip {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(body.as_ref())
            .read_to_end(&mut out)
            .is_err()
        {
            return (StatusCode::BAD_REQUEST, b"bad gzip".to_vec());
        }
        out
    } else {
        body.to_vec()
    };
    let Ok(req) = ExportTraceServiceRequest::decode(raw.as_slice()) else {
        return (StatusCode::BAD_REQUEST, b"not an ExportTraceServiceRequest".to_vec());
    };
    if rec.oversized(&req) {
        return (StatusCode::PAYLOAD_TOO_LARGE, b"message too large".to_vec());
    }
    if rec.record(&req) {
        (StatusCode::OK, ExportTraceServiceResponse::default().encode_to_vec())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Vec::new())
    }
}

/// Body of `POST /control/check`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckRequest {
    /// Manifest files on the verifier's machine.
    pub manifests: Vec<String>,
    #[serde(default)]
    pub expect: Expectations,
}

async fn http_check(
    axum::extract::State(rec): axum::extract::State<Recorder>,
    axum::Json(req): axum::Json<CheckRequest>,
) -> Result<axum::Json<Report>, (axum::http::StatusCode, String)> {
    let mut manifest = Vec::new();
    for m in &req.manifests {
        manifest
            .extend(read_manifest(Path::new(m)).map_err(|e| (axum::http::StatusCode::BAD_REQUEST, format!("{e:#}")))?);
    }
    Ok(axum::Json(rec.check(&manifest, &req.expect)))
}

/// What the policy under test promises.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Expectations {
    /// Probability at which the other traces are kept.
    pub probability: f64,
    /// Largest allowed deviation of the kept count of the other traces, in binomial standard
    /// deviations.
    pub sigma: f64,
    /// Traces whose root lasted at least this long must be kept (as well as those the generator
    /// marked slow).
    pub slow_threshold_ns: u64,
    /// Judge the probabilistic fraction (off when the policy changed the probability mid-run).
    pub check_fraction: bool,
}

impl Default for Expectations {
    fn default() -> Self {
        Expectations {
            probability: 0.10,
            sigma: 5.0,
            slow_threshold_ns: 1_000_000_000,
            check_fraction: true,
        }
    }
}

/// The verdict of [`check`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Traces in the manifest.
    pub traces_sent: u64,
    /// Spans in the manifest.
    pub spans_sent: u64,
    /// Traces not judged because some of their requests failed.
    pub traces_not_acked: u64,
    /// Error or slow traces (acknowledged): must be kept.
    pub must_keep: u64,
    /// Of those, received complete.
    pub must_keep_complete: u64,
    /// Must-keep traces not received at all.
    pub lost: u64,
    /// Received traces with missing spans, or exported in pieces by several decisions.
    pub split: u64,
    /// `split` as a fraction of all kept traces.
    pub split_ratio: f64,
    /// Spans received more than once.
    pub duplicate_spans: u64,
    /// Traces with at least one duplicate span.
    pub duplicated_traces: u64,
    /// Traces exported under more than one decision stamp (each decision whole: duplicates).
    pub redecided_traces: u64,
    /// Other (neither error nor slow) acknowledged traces.
    pub other_traces: u64,
    /// Of those, kept.
    pub other_kept: u64,
    /// `other_kept / other_traces`.
    pub other_fraction: f64,
    /// Expected fraction.
    pub probability: f64,
    /// `(other_kept - n p) / sqrt(n p (1 - p))`.
    pub z: f64,
    /// Traces kept in total (manifest traces received).
    pub kept: u64,
    /// Spans received for manifest traces (distinct).
    pub spans_kept: u64,
    /// Received traces not in the manifest.
    pub unknown_traces: u64,
    /// Up to 10 examples of each problem (`lost:ID`, `split:ID got/sent`).
    pub examples: Vec<String>,
    /// No loss, no split, fraction within tolerance.
    pub pass: bool,
}

impl Report {
    /// A one-line human summary.
    pub fn line(&self) -> String {
        format!(
            "{} traces ({} spans) sent, {} not acked; must-keep {} -> {} complete, {} lost; split {} ({:.4}% of {} kept); \
             duplicates {} spans in {} traces ({} redecided); other {}/{} kept = {:.4} (p {}, z {:+.2}); unknown {}; {}",
            self.traces_sent,
            self.spans_sent,
            self.traces_not_acked,
            self.must_keep,
            self.must_keep_complete,
            self.lost,
            self.split,
            self.split_ratio * 100.0,
            self.kept,
            self.duplicate_spans,
            self.duplicated_traces,
            self.redecided_traces,
            self.other_kept,
            self.other_traces,
            self.other_fraction,
            self.probability,
            self.z,
            self.unknown_traces,
            if self.pass { "PASS" } else { "FAIL" }
        )
    }
}

/// Checks `snap` against `manifest`; see the [module docs](self).
pub fn check(manifest: &[ManifestEntry], snap: &Snapshot, expect: &Expectations) -> Report {
    let mut r = Report {
        probability: expect.probability,
        ..Report::default()
    };
    let mut seen: HashMap<[u8; 16], ()> = HashMap::with_capacity(manifest.len());
    for e in manifest {
        let mut id = [0u8; 16];
        if hex::decode_to_slice(&e.trace_id, &mut id).is_err() {
            continue;
        }
        if seen.insert(id, ()).is_some() {
            continue;
        }
        r.traces_sent += 1;
        r.spans_sent += e.spans as u64;
        if !e.acked {
            r.traces_not_acked += 1;
            continue;
        }
        let must = e.is_error || e.is_slow || e.duration_ns >= expect.slow_threshold_ns;
        let got = snap.traces.get(&id);
        if must {
            r.must_keep += 1;
        } else {
            r.other_traces += 1;
        }
        let Some(t) = got else {
            if must {
                r.lost += 1;
                if r.examples.len() < 20 {
                    r.examples
                        .push(format!("lost:{} ({} spans, error {})", e.trace_id, e.spans, e.is_error));
                }
            }
            continue;
        };
        r.kept += 1;
        r.spans_kept += t.distinct() as u64;
        if !must {
            r.other_kept += 1;
        }
        let dups = t.duplicates();
        if dups > 0 {
            r.duplicate_spans += dups;
            r.duplicated_traces += 1;
        }
        let groups = t.per_decision();
        if groups.len() > 1 {
            r.redecided_traces += 1;
        }
        let complete = t.distinct() >= e.spans;
        let one_decision_whole = groups.values().any(|&n| n >= e.spans);
        if !complete || !one_decision_whole {
            r.split += 1;
            if r.examples.len() < 20 {
                let stamps: Vec<String> = groups
                    .iter()
                    .map(|(d, n)| {
                        format!(
                            "{}x{}",
                            snap.decisions.get(*d as usize).map(String::as_str).unwrap_or("?"),
                            n
                        )
                    })
                    .collect();
                r.examples.push(format!(
                    "split:{} got {} of {} spans, decisions {:?}",
                    e.trace_id,
                    t.distinct(),
                    e.spans,
                    stamps
                ));
            }
        } else if must {
            r.must_keep_complete += 1;
        }
    }
    r.unknown_traces = snap.traces.keys().filter(|id| !seen.contains_key(*id)).count() as u64;
    r.split_ratio = if r.kept == 0 {
        0.0
    } else {
        r.split as f64 / r.kept as f64
    };
    let n = r.other_traces as f64;
    let p = expect.probability;
    r.other_fraction = if n == 0.0 { 0.0 } else { r.other_kept as f64 / n };
    let sd = (n * p * (1.0 - p)).sqrt();
    r.z = if sd > 0.0 {
        (r.other_kept as f64 - n * p) / sd
    } else {
        0.0
    };
    let fraction_ok = !expect.check_fraction || r.z.abs() <= expect.sigma;
    r.pass = r.lost == 0 && r.split == 0 && fraction_ok;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn span(trace: u8, id: u8, version: i64) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            attributes: vec![
                KeyValue {
                    key: ATTR_POLICY.into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("errors".into())),
                    }),
                    ..Default::default()
                },
                KeyValue {
                    key: ATTR_POLICY_VERSION.into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::IntValue(version)),
                    }),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn entry(trace: u8, spans: usize, is_error: bool) -> ManifestEntry {
        ManifestEntry {
            trace_id: hex::encode([trace; 16]),
            spans,
            is_error,
            is_slow: false,
            duration_ns: 1000,
            acked: true,
        }
    }

    #[test]
    fn lost_split_duplicates_and_fraction_are_judged() {
        let rec = Recorder::new();
        // Trace 1: error, complete, one span received twice under the same decision.
        rec.record(&request(vec![span(1, 1, 1), span(1, 2, 1)]));
        rec.record(&request(vec![span(1, 2, 1)]));
        // Trace 2: error, one of three spans missing -> split.
        rec.record(&request(vec![span(2, 1, 1), span(2, 2, 1)]));
        // Trace 3: error, not received -> lost.
        // Trace 4: two decisions, each with half the spans -> split.
        rec.record(&request(vec![span(4, 1, 1)]));
        rec.record(&request(vec![span(4, 2, 2)]));
        // Trace 5: two decisions, each whole -> redecided, duplicates, not split.
        rec.record(&request(vec![span(5, 1, 1), span(5, 2, 1)]));
        rec.record(&request(vec![span(5, 1, 2), span(5, 2, 2)]));
        // Trace 9: not in the manifest.
        rec.record(&request(vec![span(9, 1, 1)]));
        let mut manifest = vec![
            entry(1, 2, true),
            entry(2, 3, true),
            entry(3, 1, true),
            entry(4, 2, true),
            entry(5, 2, true),
        ];
        // Trace 6: error but not acknowledged -> not judged.
        manifest.push(ManifestEntry {
            acked: false,
            ..entry(6, 4, true)
        });
        let r = rec.check(&manifest, &Expectations::default());
        assert_eq!(r.traces_sent, 6);
        assert_eq!(r.traces_not_acked, 1);
        assert_eq!(r.must_keep, 5);
        assert_eq!(r.lost, 1, "{r:?}");
        assert_eq!(r.split, 2, "{r:?}");
        assert_eq!(r.must_keep_complete, 2);
        assert_eq!(r.duplicate_spans, 1 + 2);
        assert_eq!(r.duplicated_traces, 2);
        assert_eq!(r.redecided_traces, 2);
        assert_eq!(r.unknown_traces, 1);
        assert!(!r.pass);

        // Down: refused and not recorded.
        rec.set_down(true);
        assert!(!rec.record(&request(vec![span(7, 1, 1)])));
        assert_eq!(rec.stats().refused_requests, 1);
        rec.set_down(false);
        // A message size limit: larger requests refused, and counted.
        let req = request(vec![span(8, 1, 1)]);
        rec.set_max_message_bytes(req.encoded_len() as u64 - 1);
        assert!(rec.oversized(&req));
        rec.set_max_message_bytes(req.encoded_len() as u64);
        assert!(!rec.oversized(&req));
        assert_eq!(rec.stats().oversized_requests, 1);
        rec.reset();
        assert_eq!(rec.stats().spans, 0);
        assert_eq!((rec.stats().oversized_requests, rec.stats().max_message_bytes), (0, 0));
    }

    #[test]
    fn probabilistic_fraction_uses_binomial_tolerance() {
        let rec = Recorder::new();
        // 1000 ordinary traces, 100 kept: exactly p = 0.1.
        let mut manifest = Vec::new();
        for i in 0..1000u32 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_be_bytes());
            id[15] = 1;
            manifest.push(ManifestEntry {
                trace_id: hex::encode(id),
                spans: 1,
                is_error: false,
                is_slow: false,
                duration_ns: 1,
                acked: true,
            });
            if i % 10 == 0 {
                let mut s = span(0, 1, 1);
                s.trace_id = id.to_vec();
                rec.record(&request(vec![s]));
            }
        }
        let r = rec.check(&manifest, &Expectations::default());
        assert!(r.pass, "{r:?}");
        assert_eq!(r.other_kept, 100);
        assert!(r.z.abs() < 1e-9);
        // At p = 0.2 the same result is 100 vs 200 +- 12.6: z ~ -7.9, outside 5 sigma.
        let r = rec.check(
            &manifest,
            &Expectations {
                probability: 0.2,
                ..Expectations::default()
            },
        );
        assert!(!r.pass, "{r:?}");
        assert!(r.z < -7.0);
    }

    #[test]
    fn trace_logs_without_acked_read_as_acked() {
        let e: ManifestEntry = serde_json::from_str(
            r#"{"trace_id":"0102030405060708090a0b0c0d0e0f10","spans":3,"is_error":true,"is_slow":false,"duration_ns":5}"#,
        )
        .unwrap();
        assert!(e.acked);
    }
}

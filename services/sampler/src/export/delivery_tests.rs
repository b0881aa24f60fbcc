//! The export task against a real OTLP/gRPC server that misbehaves on purpose: isolation of a
//! refused trace, poison versus outage after `max_retry_time`, and big traces cut under the
//! server's message limit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tailsift_otlp::ExportTraceServiceRequest;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;

/// Refuses (INVALID_ARGUMENT) any request holding a span named `poison`, fails (UNAVAILABLE) any
/// holding one named `flaky`, fails everything while `down` and every non-empty request while
/// `data_down` (a front that answers empty requests itself); records every span it accepts.
#[derive(Clone, Default)]
struct Backend {
    spans: Arc<Mutex<HashMap<Vec<u8>, u32>>>,
    down: Arc<AtomicBool>,
    data_down: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl TraceService for Backend {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if self.down.load(Ordering::SeqCst) {
            return Err(tonic::Status::unavailable("down"));
        }
        let spans: Vec<Span> = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|rs| rs.scope_spans)
            .flat_map(|ss| ss.spans)
            .collect();
        if self.data_down.load(Ordering::SeqCst) && !spans.is_empty() {
            return Err(tonic::Status::unavailable("no data accepted"));
        }
        if spans.iter().any(|s| s.name == "poison") {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(tonic::Status::invalid_argument("poison span"));
        }
        if spans.iter().any(|s| s.name == "flaky") {
            return Err(tonic::Status::unavailable("this one never works"));
        }
        let mut map = self.spans.lock().unwrap();
        for s in spans {
            *map.entry(s.span_id).or_default() += 1;
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

async fn start(backend: Backend, max_message: usize) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = TraceServiceServer::new(backend)
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max_message);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    format!("http://{addr}")
}

/// A job (trace `[id; 16]`) of spans named `names`, each with `filler` bytes of attribute.
fn job(id: u8, names: &[&str], filler: usize) -> ExportJob {
    let spans: Vec<Span> = names
        .iter()
        .enumerate()
        .map(|(i, name)| Span {
            trace_id: vec![id; 16],
            span_id: span_id(id, i),
            name: name.to_string(),
            attributes: vec![KeyValue {
                key: "filler".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("x".repeat(filler))),
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    ExportJob {
        id: u64::from(id),
        partition: 0,
        trace_id: [id; 16],
        payload: req.encode_to_vec(),
        spans: names.len(),
    }
}

fn span_id(trace: u8, i: usize) -> Vec<u8> {
    let mut id = vec![trace, 0, 0, 0, 0, 0, 0, 0];
    id[4..].copy_from_slice(&(i as u32 + 1).to_be_bytes());
    id
}

fn config(endpoint: String) -> ExportConfig {
    ExportConfig {
        endpoint,
        batch_timeout: Duration::from_millis(50),
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        max_retry_time: Duration::from_millis(400),
        timeout: Duration::from_secs(3),
        ..Default::default()
    }
}

/// Runs the export task on `jobs` (queued before it starts, so they share a batch); returns the
/// acknowledgement receiver and the shutdown token.
fn run(cfg: ExportConfig, jobs: Vec<ExportJob>) -> (mpsc::UnboundedReceiver<u64>, CancellationToken) {
    let exporter = Exporter::new(&cfg, &crate::config::KafkaConfig::default()).unwrap();
    let (tx, rx) = mpsc::channel(100);
    for j in jobs {
        tx.try_send(j).unwrap();
    }
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    tokio::spawn(run_exporter(exporter, cfg, rx, done_tx, shutdown.clone()));
    // Keep the sender alive: the task must not stop for want of jobs.
    std::mem::forget(tx);
    (done_rx, shutdown)
}

async fn acks(done: &mut mpsc::UnboundedReceiver<u64>, n: usize, within: Duration) -> Vec<u64> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(within, async {
        while got.len() < n {
            match done.recv().await {
                Some(id) => got.push(id),
                None => break,
            }
        }
    })
    .await;
    got.sort();
    got
}

#[tokio::test]
async fn a_refused_trace_is_isolated_and_the_rest_of_its_batch_is_delivered() {
    let backend = Backend::default();
    let endpoint = start(backend.clone(), 4 << 20).await;
    let jobs = vec![
        job(1, &["a", "b"], 10),
        job(2, &["c", "poison"], 10),
        job(3, &["d"], 10),
    ];
    let (mut done, shutdown) = run(config(endpoint), jobs);
    assert_eq!(
        acks(&mut done, 3, Duration::from_secs(10)).await,
        vec![1, 2, 3],
        "every job done"
    );
    let spans = backend.spans.lock().unwrap().clone();
    let mut want: Vec<Vec<u8>> = vec![span_id(1, 0), span_id(1, 1), span_id(3, 0)];
    let mut got: Vec<Vec<u8>> = spans.keys().cloned().collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "the good traces delivered, the refused one not");
    assert!(spans.values().all(|n| *n == 1), "nothing twice: {spans:?}");
    assert_eq!(
        backend.refused.load(Ordering::SeqCst),
        2,
        "the batch, then the offender alone; never retried"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn a_trace_failing_retryably_while_the_backend_takes_other_data_is_given_up_after_max_retry_time() {
    let backend = Backend::default();
    let endpoint = start(backend.clone(), 4 << 20).await;
    let jobs = vec![job(1, &["a"], 10), job(2, &["flaky"], 10), job(3, &["c"], 10)];
    let (mut done, shutdown) = run(config(endpoint), jobs);
    let started = std::time::Instant::now();
    assert_eq!(acks(&mut done, 3, Duration::from_secs(10)).await, vec![1, 2, 3]);
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "retried for max_retry_time as a batch, then alone"
    );
    let spans = backend.spans.lock().unwrap().clone();
    let mut got: Vec<Vec<u8>> = spans.keys().cloned().collect();
    got.sort();
    assert_eq!(
        got,
        vec![span_id(1, 0), span_id(3, 0)],
        "the others delivered (one as the probe)"
    );
    assert!(spans.values().all(|n| *n == 1), "nothing twice: {spans:?}");
    shutdown.cancel();
}

#[tokio::test]
async fn an_outage_behind_a_front_that_accepts_empty_requests_drops_nothing() {
    let backend = Backend::default();
    backend.data_down.store(true, Ordering::SeqCst);
    let endpoint = start(backend.clone(), 4 << 20).await;
    let (mut done, shutdown) = run(config(endpoint), vec![job(1, &["a"], 10), job(2, &["b"], 10)]);
    assert!(
        acks(&mut done, 1, Duration::from_millis(2000)).await.is_empty(),
        "the probe sends real data, which fails too: an outage, nothing given up"
    );
    backend.data_down.store(false, Ordering::SeqCst);
    assert_eq!(acks(&mut done, 2, Duration::from_secs(10)).await, vec![1, 2]);
    let spans = backend.spans.lock().unwrap().clone();
    assert_eq!(spans.len(), 2, "both delivered after the outage");
    assert!(spans.values().all(|n| *n == 1));
    shutdown.cancel();
}

#[tokio::test]
async fn an_outage_drops_nothing_however_long_it_lasts() {
    let backend = Backend::default();
    backend.down.store(true, Ordering::SeqCst);
    let endpoint = start(backend.clone(), 4 << 20).await;
    let (mut done, shutdown) = run(config(endpoint), vec![job(1, &["a"], 10), job(2, &["b"], 10)]);
    assert!(
        acks(&mut done, 1, Duration::from_millis(1500)).await.is_empty(),
        "nothing acknowledged (nor dropped) while the backend accepts nothing, past max_retry_time"
    );
    backend.down.store(false, Ordering::SeqCst);
    assert_eq!(acks(&mut done, 2, Duration::from_secs(10)).await, vec![1, 2]);
    assert_eq!(
        backend.spans.lock().unwrap().len(),
        2,
        "both delivered after the outage"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn a_trace_over_the_backend_message_limit_is_sent_in_pieces_under_it() {
    let backend = Backend::default();
    let limit = 64 * 1024;
    let endpoint = start(backend.clone(), limit).await;
    let names: Vec<&str> = vec!["s"; 1000];
    let big = job(1, &names, 300);
    assert!(big.payload.len() > 4 * limit, "{} bytes", big.payload.len());
    let cfg = ExportConfig {
        max_request_bytes: limit - 1024,
        ..config(endpoint)
    };
    let (mut done, shutdown) = run(cfg, vec![big, job(2, &["after"], 10)]);
    assert_eq!(acks(&mut done, 2, Duration::from_secs(10)).await, vec![1, 2]);
    let spans = backend.spans.lock().unwrap().clone();
    assert_eq!(spans.len(), 1001, "every span of both traces");
    assert!(spans.values().all(|n| *n == 1), "each exactly once");
    shutdown.cancel();
}

#[tokio::test]
async fn a_single_span_over_the_limit_is_dropped_alone_and_counted_as_refused() {
    let backend = Backend::default();
    let endpoint = start(backend.clone(), 4 << 20).await;
    let mut trace = job(1, &["a", "b"], 10);
    let huge = job(1, &["huge"], 20_000);
    let mut huge_payload = huge.payload.clone();
    // Give the huge span its own ID within trace 1.
    let req = ExportTraceServiceRequest::decode(huge_payload.as_slice()).unwrap();
    let mut req = req;
    req.resource_spans[0].scope_spans[0].spans[0].span_id = span_id(1, 9);
    huge_payload = req.encode_to_vec();
    trace.payload.extend(huge_payload);
    trace.spans += 1;
    let cfg = ExportConfig {
        max_request_bytes: 8 * 1024,
        ..config(endpoint)
    };
    let (mut done, shutdown) = run(cfg, vec![trace]);
    assert_eq!(acks(&mut done, 1, Duration::from_secs(10)).await, vec![1]);
    let mut got: Vec<Vec<u8>> = backend.spans.lock().unwrap().keys().cloned().collect();
    got.sort();
    assert_eq!(
        got,
        vec![span_id(1, 0), span_id(1, 1)],
        "the rest of the trace delivered"
    );
    shutdown.cancel();
}

//! Sender and runner against in-process fake OTLP servers (gRPC with tonic, HTTP with axum) on
//! 127.0.0.1. Small counts, no timing assertions.

use std::collections::HashSet;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tailsift_loadtest::{
    count_spans, run, BatchOptions, Delivery, Protocol, RetryPolicy, RunOptions, Sender, SenderConfig, Summary,
    TraceShape,
};
use tonic::codec::CompressionEncoding;

/// What the fake server does and what it saw.
#[derive(Debug, Default)]
struct Fake {
    /// Answer this many calls with a retryable error first.
    fail_first: usize,
    /// Always answer with a whole-request rejection (INVALID_ARGUMENT / HTTP 400).
    reject_all: bool,
    /// Report this many spans of each request as rejected (capped at the request's spans).
    reject_per_request: u64,
    /// Calls received (failed ones included).
    calls: AtomicUsize,
    accepted_spans: AtomicU64,
    rejected_spans: AtomicU64,
    trace_ids: Mutex<HashSet<Vec<u8>>>,
}

impl Fake {
    fn new() -> Self {
        Fake::default()
    }

    /// Handles one decoded request: `Err(())` for an injected retryable failure, otherwise the
    /// number of spans rejected through partial success.
    fn handle(&self, request: &ExportTraceServiceRequest) -> Result<u64, ()> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call < self.fail_first {
            return Err(());
        }
        let spans = count_spans(request) as u64;
        let rejected = self.reject_per_request.min(spans);
        self.accepted_spans.fetch_add(spans - rejected, Ordering::SeqCst);
        self.rejected_spans.fetch_add(rejected, Ordering::SeqCst);
        let mut ids = self.trace_ids.lock().expect("lock");
        for rs in &request.resource_spans {
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    ids.insert(s.trace_id.clone());
                }
            }
        }
        Ok(rejected)
    }
}

struct GrpcFake(Arc<Fake>);

#[tonic::async_trait]
impl TraceService for GrpcFake {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if self.0.reject_all {
            self.0.calls.fetch_add(1, Ordering::SeqCst);
            return Err(tonic::Status::invalid_argument("bad spans"));
        }
        match self.0.handle(request.get_ref()) {
            Err(()) => Err(tonic::Status::unavailable("warming up")),
            Ok(0) => Ok(tonic::Response::new(ExportTraceServiceResponse::default())),
            Ok(rejected) => Ok(tonic::Response::new(ExportTraceServiceResponse {
                partial_success: Some(ExportTracePartialSuccess {
                    rejected_spans: rejected as i64,
                    error_message: "spans too old".into(),
                }),
            })),
        }
    }
}

async fn start_grpc(fake: Arc<Fake>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let service = TraceServiceServer::new(GrpcFake(fake))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming),
    );
    addr
}

async fn http_export(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut raw = body.to_vec();
    if header("content-encoding") == "gzip" {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(body.as_ref())
            .read_to_end(&mut out)
            .is_err()
        {
            return (StatusCode::BAD_REQUEST, "bad gzip").into_response();
        }
        raw = out;
    }
    let json = header("content-type") == "application/json";
    let request = if json {
        serde_json::from_slice::<ExportTraceServiceRequest>(&raw).map_err(|e| e.to_string())
    } else {
        ExportTraceServiceRequest::decode(raw.as_slice()).map_err(|e| e.to_string())
    };
    let request = match request {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    if fake.reject_all {
        fake.calls.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::BAD_REQUEST, "invalid trace data").into_response();
    }
    match fake.handle(&request) {
        Err(()) => (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "0")], "overloaded").into_response(),
        Ok(rejected) if json => {
            let body = if rejected == 0 {
                "{}".to_string()
            } else {
                format!(r#"{{"partialSuccess":{{"rejectedSpans":"{rejected}","errorMessage":"spans too old"}}}}"#)
            };
            (StatusCode::OK, [("content-type", "application/json")], body).into_response()
        }
        Ok(rejected) => {
            let response = ExportTraceServiceResponse {
                partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
                    rejected_spans: rejected as i64,
                    error_message: "spans too old".into(),
                }),
            };
            (
                StatusCode::OK,
                [("content-type", "application/x-protobuf")],
                response.encode_to_vec(),
            )
                .into_response()
        }
    }
}

async fn start_http(fake: Arc<Fake>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(http_export))
        .with_state(fake);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn options(protocol: Protocol, addr: SocketAddr, total_spans: u64) -> RunOptions {
    RunOptions {
        endpoint: Some(format!("http://{addr}")),
        protocol,
        rate: 0.0,
        duration: None,
        total_spans: Some(total_spans),
        concurrency: 4,
        seed: 7,
        shape: TraceShape {
            max_spans: 60,
            ..TraceShape::default()
        },
        batch: BatchOptions {
            target_spans: 50,
            spread: true,
        },
        retry: RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
        },
        timeout: Duration::from_secs(10),
        record_traces: true,
        ..RunOptions::default()
    }
}

/// Checks that the server saw every span and every trace exactly as the summary says.
fn check_delivered(summary: &Summary, fake: &Fake, total: u64) {
    assert!(summary.success(), "{summary}");
    assert_eq!(summary.spans_sent, total, "{summary}");
    assert_eq!(summary.spans_failed, 0);
    assert_eq!(summary.requests_failed, 0);
    assert_eq!(summary.spans_accepted, fake.accepted_spans.load(Ordering::SeqCst));
    assert_eq!(summary.spans_rejected, fake.rejected_spans.load(Ordering::SeqCst));
    assert_eq!(summary.spans_accepted + summary.spans_rejected, total);
    assert_eq!(summary.trace_records.len() as u64, summary.traces);
    assert_eq!(summary.trace_records.iter().map(|r| r.spans as u64).sum::<u64>(), total);
    let recorded: HashSet<Vec<u8>> = summary.trace_records.iter().map(|r| r.trace_id.to_vec()).collect();
    assert_eq!(recorded, *fake.trace_ids.lock().expect("lock"));
    assert_eq!(
        summary.error_traces,
        summary.trace_records.iter().filter(|r| r.is_error).count() as u64
    );
}

#[tokio::test]
async fn grpc_unavailable_is_retried_until_accepted() {
    let fake = Arc::new(Fake {
        fail_first: 3,
        ..Fake::new()
    });
    let addr = start_grpc(fake.clone()).await;
    let summary = run(RunOptions {
        gzip: true,
        ..options(Protocol::Grpc, addr, 1500)
    })
    .await
    .expect("run");
    check_delivered(&summary, &fake, 1500);
    assert_eq!(summary.spans_accepted, 1500);
    // Retried until accepted: every trace counts as acknowledged in the manifest.
    assert!(summary.unacked_traces.is_empty(), "{:?}", summary.unacked_traces);
    assert!(summary.requests_retried > 0, "{summary}");
    assert!(summary.retry_attempts >= 3, "{summary}");
    assert_eq!(
        fake.calls.load(Ordering::SeqCst) as u64,
        summary.requests + summary.retry_attempts
    );
}

#[tokio::test]
async fn http_503_with_retry_after_is_retried_until_accepted() {
    let fake = Arc::new(Fake {
        fail_first: 2,
        ..Fake::new()
    });
    let addr = start_http(fake.clone()).await;
    let summary = run(RunOptions {
        gzip: true,
        ..options(Protocol::HttpProto, addr, 1200)
    })
    .await
    .expect("run");
    check_delivered(&summary, &fake, 1200);
    assert_eq!(summary.spans_accepted, 1200);
    assert!(summary.requests_retried > 0, "{summary}");
}

#[tokio::test]
async fn http_json_is_decodable_and_retried() {
    let fake = Arc::new(Fake {
        fail_first: 1,
        ..Fake::new()
    });
    let addr = start_http(fake.clone()).await;
    let summary = run(options(Protocol::HttpJson, addr, 800)).await.expect("run");
    check_delivered(&summary, &fake, 800);
    assert_eq!(summary.spans_accepted, 800);
    assert!(summary.requests_retried > 0, "{summary}");
}

#[tokio::test]
async fn grpc_partial_success_counts_as_rejected() {
    let fake = Arc::new(Fake {
        reject_per_request: 2,
        ..Fake::new()
    });
    let addr = start_grpc(fake.clone()).await;
    let summary = run(options(Protocol::Grpc, addr, 1000)).await.expect("run");
    check_delivered(&summary, &fake, 1000);
    assert!(summary.spans_rejected > 0, "{summary}");
    assert!(summary.spans_rejected <= 2 * summary.requests);
    assert_eq!(summary.requests_rejected, 0);
}

#[tokio::test]
async fn http_json_partial_success_counts_as_rejected() {
    let fake = Arc::new(Fake {
        reject_per_request: 3,
        ..Fake::new()
    });
    let addr = start_http(fake.clone()).await;
    let summary = run(options(Protocol::HttpJson, addr, 600)).await.expect("run");
    check_delivered(&summary, &fake, 600);
    assert!(summary.spans_rejected > 0, "{summary}");
}

#[tokio::test]
async fn invalid_requests_are_rejected_not_failed() {
    for protocol in [Protocol::Grpc, Protocol::HttpProto] {
        let fake = Arc::new(Fake {
            reject_all: true,
            ..Fake::new()
        });
        let addr = match protocol {
            Protocol::Grpc => start_grpc(fake.clone()).await,
            _ => start_http(fake.clone()).await,
        };
        let summary = run(options(protocol, addr, 300)).await.expect("run");
        assert!(summary.success(), "{summary}");
        assert_eq!(summary.spans_rejected, 300, "{summary}");
        assert_eq!(summary.spans_accepted, 0);
        assert_eq!(summary.requests_rejected, summary.requests);
        assert_eq!(summary.requests_retried, 0);
        assert_eq!(fake.calls.load(Ordering::SeqCst) as u64, summary.requests);
    }
}

#[tokio::test]
async fn exhausted_retries_fail_the_run() {
    let fake = Arc::new(Fake {
        fail_first: usize::MAX,
        ..Fake::new()
    });
    let addr = start_grpc(fake.clone()).await;
    let summary = run(RunOptions {
        retry: RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
        },
        ..options(Protocol::Grpc, addr, 200)
    })
    .await
    .expect("run");
    assert!(!summary.success());
    assert_eq!(summary.requests_failed, summary.requests);
    assert_eq!(summary.spans_failed, 200);
    assert_eq!(summary.retry_attempts, summary.requests);
    assert!(summary.last_error.is_some());
    // Nothing was acknowledged: the manifest marks every trace as not acked.
    assert_eq!(summary.unacked_traces.len() as u64, summary.traces);
    let recorded: HashSet<[u8; 16]> = summary.trace_records.iter().map(|r| r.trace_id).collect();
    assert_eq!(recorded, summary.unacked_traces);
}

#[tokio::test]
async fn connection_refused_is_retryable_then_fails() {
    // A port that was free a moment ago: nothing listens there.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    for protocol in [Protocol::Grpc, Protocol::HttpProto] {
        let sender = Sender::new(SenderConfig {
            protocol,
            endpoint: format!("http://{addr}"),
            gzip: false,
            timeout: Duration::from_secs(5),
            retry: RetryPolicy {
                max_attempts: 3,
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(2),
            },
        })
        .await
        .expect("sender");
        let mut generator = tailsift_loadtest::Generator::new(TraceShape::default(), 3);
        let request = generator.next_trace().into_request();
        let report = sender.send(&request).await;
        assert_eq!(report.delivery, Delivery::Failed, "{protocol}: {report:?}");
        assert_eq!(report.attempts, 3, "{protocol}: {report:?}");
        assert_eq!(report.failed_spans, count_spans(&request) as u64);
    }
}

#[tokio::test]
async fn duration_bounded_run_with_rate_limit() {
    let fake = Arc::new(Fake::new());
    let addr = start_http(fake.clone()).await;
    let summary = run(RunOptions {
        total_spans: None,
        duration: Some(Duration::from_millis(300)),
        rate: 2000.0,
        ..options(Protocol::HttpProto, addr, 0)
    })
    .await
    .expect("run");
    assert!(summary.traces > 0, "{summary}");
    let total = summary.spans_sent;
    check_delivered(&summary, &fake, total);
    let json: serde_json::Value = serde_json::from_str(&summary.to_json_line()).expect("summary JSON");
    assert_eq!(json["spans_sent"], total);
    assert_eq!(json["protocol"], "http-proto");
}

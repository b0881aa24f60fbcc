//! Ingest admission control against a real broker: request bodies are charged to the in-flight
//! byte budget before they are read, slow clients are cut off, decompression bombs are refused,
//! and refusals are retryable answers (HTTP 503 with Retry-After, gRPC UNAVAILABLE).

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tailsift_tests::{metric_value, Broker, IngestNode, Storage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn small_request(attr_bytes: usize) -> ExportTraceServiceRequest {
    let mut id: [u8; 16] = rand::random();
    id[0] |= 1;
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource::default()),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: id.to_vec(),
                    span_id: 7u64.to_be_bytes().to_vec(),
                    name: "x".repeat(attr_bytes.max(1)),
                    start_time_unix_nano: 1,
                    end_time_unix_nano: 2,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn post(addr: SocketAddr, body: Vec<u8>, gzip: bool) -> reqwest::Response {
    let mut r = reqwest::Client::new()
        .post(format!("http://{addr}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(body);
    if gzip {
        r = r.header("content-encoding", "gzip");
    }
    r.send().await.expect("http request")
}

/// Sends only the request head of an OTLP/HTTP POST announcing `length` body bytes.
async fn head_only(addr: SocketAddr, path: &str, length: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\ncontent-length: {length}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

/// Reads what the server sends until it closes or `timeout` passes.
async fn read_answer(s: &mut TcpStream, timeout: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                // A complete head is enough for the status line and headers.
                if out.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn limits<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![
        ("limits.max_request_bytes", "65536"),
        ("limits.max_in_flight_bytes", "65536"),
        ("limits.read_timeout", "2s"),
    ];
    v.extend_from_slice(extra);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_over_the_limit_or_the_budget_is_refused_before_the_body_is_read() {
    let broker = Broker::start(Storage::Memory);
    let node = IngestNode::start(&broker.brokers(), "limits-cl", &limits(&[])).await;
    let zipkin = node.receivers.zipkin.unwrap();

    // Over max_request_bytes: 413 at once, no body byte sent.
    for (addr, path) in [(node.http, "/v1/traces"), (zipkin, "/api/v2/spans")] {
        let mut s = head_only(addr, path, 10 << 20).await;
        let answer = read_answer(&mut s, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
    }

    // A request announcing 60,000 bytes holds them from its head on; one more that the budget
    // cannot take is answered 503 with Retry-After, before its body is sent.
    let mut holder = head_only(node.http, "/v1/traces", 60_000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut s = head_only(node.http, "/v1/traces", 10_000).await;
    let answer = read_answer(&mut s, Duration::from_secs(5)).await.to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    // The same through reqwest, sending its body (drained, so the client reads the answer).
    let r = post(node.http, small_request(8000).encode_to_vec(), false).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    // gRPC: the message prefix is reserved like a Content-Length: UNAVAILABLE, from the body
    // wrapper's error (tonic answers the Status found in the body error).
    let mut client = TraceServiceClient::connect(format!("http://{}", node.grpc))
        .await
        .unwrap();
    let err = client.export(small_request(8000)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains("budget"), "{err:?}");

    // Once the holder is gone, the same requests pass.
    holder.shutdown().await.ok();
    drop(holder);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = post(node.http, small_request(8000).encode_to_vec(), false).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    client
        .export(small_request(8000))
        .await
        .expect("gRPC export after release");

    let m = node.metrics().await;
    assert!(
        metric_value(&m, "tailsift_ingest_produce_errors_total", &[r#"kind="memory_limit""#]) >= 3.0,
        "{m}"
    );
    assert!(metric_value(&m, "tailsift_ingest_requests_total", &[r#"outcome="too_large""#]) >= 2.0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_off_after_the_read_timeout_and_releases_its_budget() {
    let broker = Broker::start(Storage::Memory);
    let node = IngestNode::start(&broker.brokers(), "limits-slow", &limits(&[])).await;

    // One byte per second: never done within read_timeout (2 s).
    let mut slow = head_only(node.http, "/v1/traces", 60_000).await;
    let started = Instant::now();
    let (mut rd, mut wr) = slow.split();
    let trickle = async {
        for _ in 0..30 {
            if wr.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    let answer = async {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    };
    let node_ref = &node;
    let during = async {
        // While the slow request holds its 60,000 bytes, a normal one does not fit the budget.
        tokio::time::sleep(Duration::from_millis(500)).await;
        post(node_ref.http, small_request(8000).encode_to_vec(), false)
            .await
            .status()
    };
    let (answer, during) = tokio::select! {
        (a, d) = async { tokio::join!(answer, during) } => (a, d),
        _ = trickle => panic!("the slow client was not cut off within 30 s"),
    };
    let took = started.elapsed();
    assert_eq!(during, 503, "the slow request's reservation is held while it is read");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?} after {took:?}");
    assert!(took < Duration::from_secs(15), "cut off after {took:?}");
    drop(slow);

    // Its budget is back: a normal request fits again.
    let r = post(node.http, small_request(8000).encode_to_vec(), false).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let m = node.metrics().await;
    assert!(
        metric_value(&m, "tailsift_ingest_produce_errors_total", &[r#"kind="read_timeout""#]) >= 1.0,
        "{m}"
    );
    assert!(metric_value(&m, "tailsift_ingest_requests_total", &[r#"outcome="timeout""#]) >= 1.0);

    // Slow headers are cut off too (hyper's header read timeout, the same read_timeout).
    let mut s = TcpStream::connect(node.http).await.unwrap();
    s.write_all(b"POST /v1/traces HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let t0 = Instant::now();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "connection with unfinished headers still open after 15 s");
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "closed too early: {:?}",
        t0.elapsed()
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_answers_retryable_errors_at_once_on_every_receiver() {
    let broker = Broker::start(Storage::Memory);
    let node = IngestNode::start(
        &broker.brokers(),
        "limits-concurrency",
        &limits(&[("limits.max_concurrent_requests", "1"), ("limits.read_timeout", "20s")]),
    )
    .await;
    // One request in progress (its body never comes) takes the only slot.
    let holder = head_only(node.http, "/v1/traces", 1000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let r = post(node.http, small_request(100).encode_to_vec(), false).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/v2/spans", node.receivers.zipkin.unwrap()))
        .header("content-type", "application/json")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let mut client = TraceServiceClient::connect(format!("http://{}", node.grpc))
        .await
        .unwrap();
    let err = client.export(small_request(100)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    let jaeger = tonic::transport::Channel::from_shared(format!("http://{}", node.receivers.jaeger_grpc.unwrap()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut jg = tonic::client::Grpc::new(jaeger);
    jg.ready().await.unwrap();
    let err = jg
        .unary::<_, tailsift_translate::jaeger::proto::PostSpansResponse, _>(
            tonic::Request::new(tailsift_translate::jaeger::proto::PostSpansRequest::default()),
            "/jaeger.api_v2.CollectorService/PostSpans".parse().unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");

    drop(holder);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = post(node.http, small_request(100).encode_to_vec(), false).await;
    assert_eq!(r.status(), 200);
    let m = node.metrics().await;
    assert!(
        metric_value(
            &m,
            "tailsift_ingest_produce_errors_total",
            &[r#"kind="concurrency_limit""#]
        ) >= 4.0,
        "{m}"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_is_refused_without_taking_the_memory() {
    let broker = Broker::start(Storage::Memory);
    let node = IngestNode::start(
        &broker.brokers(),
        "limits-bomb",
        &[
            ("limits.max_request_bytes", "1048576"),
            ("limits.max_in_flight_bytes", "4194304"),
        ],
    )
    .await;
    // 256 MiB of zeros in ~250 KB.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        e.write_all(&zeros).unwrap();
    }
    let bomb = e.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    let r = post(node.http, bomb.clone(), true).await;
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("decompressed request body"));
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/v2/spans", node.receivers.zipkin.unwrap()))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // gRPC: tonic stops decompressing at the message limit.
    let mut client = TraceServiceClient::connect(format!("http://{}", node.grpc))
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let mut big = small_request(2 << 20);
    big.resource_spans[0].scope_spans[0].spans[0].name = "\0".repeat(2 << 20);
    let err = client.export(big).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    // Nothing is held afterwards: a request near the record size limit (body and records, about
    // 1.7 MB of the 4 MiB budget) fits. (Metrics are process-wide, shared with the other tests here.)
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = post(node.http, small_request(850_000).encode_to_vec(), false).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_holding_connections_cannot_use_up_the_node_and_others_get_in_when_one_closes() {
    let broker = Broker::start(Storage::Memory);
    let node = IngestNode::start(
        &broker.brokers(),
        "limits-connections",
        &limits(&[("limits.max_connections", "3"), ("limits.read_timeout", "20s")]),
    )
    .await;
    // Three idle connections, over two receivers, take every slot of the node.
    let idle = [
        TcpStream::connect(node.http).await.unwrap(),
        TcpStream::connect(node.receivers.zipkin.unwrap()).await.unwrap(),
        TcpStream::connect(node.grpc).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = node.metrics().await;
    // (The gauge is process-wide: other tests of this binary may hold connections too.)
    assert!(metric_value(&m, "tailsift_ingest_connections", &[]) >= 3.0, "{m}");

    // A fourth client is not accepted (it waits in the backlog: no answer), on any receiver.
    let body = small_request(100).encode_to_vec();
    let mut waiting = TcpStream::connect(node.http).await.unwrap();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    waiting.write_all(head.as_bytes()).await.unwrap();
    waiting.write_all(&body).await.unwrap();
    let answer = read_answer(&mut waiting, Duration::from_millis(800)).await;
    assert!(answer.is_empty(), "answered at the connection cap: {answer}");
    let grpc = tokio::time::timeout(Duration::from_millis(800), async {
        let mut c = TraceServiceClient::connect(format!("http://{}", node.grpc)).await?;
        c.export(small_request(10))
            .await
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error>)?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
    .await;
    assert!(grpc.is_err(), "a gRPC export got through at the connection cap");
    // The metrics endpoint is not a receiver: still served, and it counts the waits.
    let m = node.metrics().await;
    assert!(
        metric_value(&m, "tailsift_ingest_connection_limit_waits_total", &[]) >= 1.0,
        "{m}"
    );

    // One idle connection closes: the waiting client is accepted and answered.
    drop(idle);
    let answer = read_answer(&mut waiting, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let r = post(node.http, small_request(100).encode_to_vec(), false).await;
    assert_eq!(r.status(), 200);
    node.stop().await;
}

//! Export never stalls on one trace: ingest -> Kafka (real broker) -> sampler -> an OTLP/gRPC
//! backend with a message size limit, or one that refuses a trace for good.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use tailsift_otlp::ExportTraceServiceRequest;
use tailsift_tests::{metric_value, read_topic, sampler_sets, Broker, IngestNode, SamplerNode, Sink, Storage};

/// The samplers of both tests run in this process and share its metrics registry: one test at a
/// time, and counters compared before and after.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Sum of the export counters that must not move when nothing is refused or retried.
fn refusals(m: &str) -> f64 {
    metric_value(m, "tailsift_sampler_export_requests_total", &["outcome=\"rejected\""])
        + metric_value(m, "tailsift_sampler_export_requests_total", &["outcome=\"retry\""])
        + metric_value(m, "tailsift_sampler_export_dead_letter_spans_total", &[])
}

/// Span `i` of trace `trace`: span 0 is the root (status ERROR when `error`), the others its
/// children; `filler` bytes of attribute make it as large as wanted.
fn span(trace: [u8; 16], i: u64, name: &str, error: bool, filler: usize) -> Span {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    Span {
        trace_id: trace.to_vec(),
        span_id: (i + 1).to_be_bytes().to_vec(),
        parent_span_id: if i == 0 {
            Vec::new()
        } else {
            1u64.to_be_bytes().to_vec()
        },
        name: name.into(),
        start_time_unix_nano: now,
        end_time_unix_nano: now + 1000,
        attributes: vec![KeyValue {
            key: "filler".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("x".repeat(filler))),
            }),
            ..Default::default()
        }],
        status: (error && i == 0).then(|| Status {
            code: status::StatusCode::Error as i32,
            message: String::new(),
        }),
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

fn trace_id(n: u32) -> [u8; 16] {
    let mut id = [0x5a; 16];
    id[12..].copy_from_slice(&n.to_be_bytes());
    id
}

/// Waits until the sink holds `want` spans per trace (bounded).
async fn wait_for(sink: &Sink, want: &[([u8; 16], usize)], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = sink.traces();
        let missing: Vec<String> = want
            .iter()
            .filter(|(id, n)| got.get(id).map_or(0, |s| s.len()) < *n)
            .map(|(id, n)| format!("{}: {}/{n}", hex::encode(id), got.get(id).map_or(0, |s| s.len())))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} traces incomplete after {timeout:?}: {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The scenario: a kept trace of 20,000 spans (~8 MB) used to be exported as one request,
/// refused by a backend with the usual 4 MiB limit and retried forever, and nothing after it was
/// delivered. With the default export config it is sent in pieces under the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_trace_is_delivered_in_pieces_and_never_stalls_the_traces_after_it() {
    let _serial = SERIAL.lock().await;
    let broker = Broker::start(Storage::Memory);
    let topic = "x-oversized";
    let ingest = IngestNode::start(&broker.brokers(), topic, &[]).await;
    let (sink, endpoint) = Sink::start_with_limit(4 << 20).await;
    let sampler = SamplerNode::start(sampler_sets(&broker.brokers(), topic, "g-oversized", &endpoint)).await;
    let m = sampler.metrics().await;
    let (refusals_before, splits_before) = (
        refusals(&m),
        metric_value(&m, "tailsift_sampler_export_split_traces_total", &[]),
    );
    let mut client = TraceServiceClient::connect(format!("http://{}", ingest.grpc))
        .await
        .unwrap();

    // One error trace of 20,000 spans of ~400 bytes, sent in 20 requests of 1,000 spans.
    let big = trace_id(0xffff_ffff);
    let big_spans = 20_000u64;
    let mut encoded = 0;
    for chunk in 0..20 {
        let spans: Vec<Span> = (chunk * 1000..(chunk + 1) * 1000)
            .map(|i| span(big, i, "big", true, 340))
            .collect();
        let req = request(spans);
        encoded += req.encoded_len();
        client.export(req).await.unwrap();
    }
    assert!(encoded > 8_000_000, "the big trace is ~8 MB: {encoded} bytes");
    // Then 200 ordinary error traces of 3 spans.
    for n in 0..200u32 {
        let id = trace_id(n);
        client
            .export(request((0..3).map(|i| span(id, i, "ordinary", true, 50)).collect()))
            .await
            .unwrap();
    }

    let mut want: Vec<([u8; 16], usize)> = (0..200).map(|n| (trace_id(n), 3)).collect();
    want.push((big, big_spans as usize));
    wait_for(&sink, &want, Duration::from_secs(90)).await;
    sink.wait_quiet(Duration::from_secs(1), Duration::from_secs(10)).await;
    let got = sink.traces();
    assert_eq!(got.len(), 201, "nothing else kept");
    for (id, n) in &want {
        assert_eq!(got[id].len(), *n, "trace {} complete", hex::encode(id));
    }
    assert_eq!(
        sink.duplicates(),
        0,
        "every span exactly once: {:?}",
        &sink.duplicate_ids()[..sink.duplicate_ids().len().min(5)]
    );
    let m = sampler.metrics().await;
    assert_eq!(
        refusals(&m),
        refusals_before,
        "no request refused or retried, nothing dead-lettered or dropped"
    );
    assert!(
        metric_value(&m, "tailsift_sampler_export_split_traces_total", &[]) > splits_before,
        "the big trace was cut into pieces"
    );
    sampler.stop().await;
    ingest.stop().await;
}

/// A backend that refuses one trace for good (INVALID_ARGUMENT on a marker span): that trace goes
/// to the dead-letter topic, every other trace is delivered, and offsets move past it (a sampler
/// restarted in the same group exports nothing again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_the_backend_refuses_goes_to_the_dead_letter_topic_and_offsets_move_past_it() {
    let _serial = SERIAL.lock().await;
    let broker = Broker::start(Storage::Memory);
    let topic = "x-refused";
    let dlq = format!("{topic}-dead-letter");
    let ingest = IngestNode::start(&broker.brokers(), topic, &[]).await;
    let (sink, endpoint) = Sink::start().await;
    sink.refuse_span_name("poison");
    let mut sets = sampler_sets(&broker.brokers(), topic, "g-refused", &endpoint);
    sets.push(("export.dead_letter_topic".into(), dlq.clone()));
    let sampler = SamplerNode::start(sets.clone()).await;
    let dead_lettered_before = metric_value(
        &sampler.metrics().await,
        "tailsift_sampler_export_dead_letter_spans_total",
        &["reason=\"rejected\"", "destination=\"dead_letter\""],
    );
    let mut client = TraceServiceClient::connect(format!("http://{}", ingest.grpc))
        .await
        .unwrap();

    let poison = trace_id(0xdead);
    // The poison trace in the middle of ordinary ones, so it shares batches with them.
    for n in 0..40u32 {
        let (id, name) = if n == 20 {
            (poison, "poison")
        } else {
            (trace_id(n), "ordinary")
        };
        client
            .export(request((0..2).map(|i| span(id, i, name, true, 20)).collect()))
            .await
            .unwrap();
    }
    let want: Vec<([u8; 16], usize)> = (0..40).filter(|n| *n != 20).map(|n| (trace_id(n), 2)).collect();
    wait_for(&sink, &want, Duration::from_secs(60)).await;

    let records = read_topic(&broker.brokers(), &dlq, 1, Duration::from_secs(30));
    assert_eq!(records.len(), 1, "the refused trace in the dead-letter topic");
    let r = &records[0];
    assert_eq!(r.key, hex::encode(poison).into_bytes(), "keyed by the hex trace ID");
    let header = |name: &str| {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).to_string())
    };
    assert_eq!(header("tailsift.dead_letter.reason").as_deref(), Some("rejected"));
    assert!(
        header("tailsift.dead_letter.error").is_some_and(|e| e.contains("InvalidArgument")),
        "{:?}",
        r.headers
    );
    let req = ExportTraceServiceRequest::decode(r.payload.as_slice()).unwrap();
    let spans: Vec<&Span> = req
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .collect();
    assert_eq!(spans.len(), 2, "the whole refused trace");
    assert!(spans.iter().all(|s| s.trace_id == poison.to_vec()));
    assert!(
        !sink.traces().contains_key(&poison),
        "the refused trace never reached the backend"
    );
    let m = sampler.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "tailsift_sampler_export_dead_letter_spans_total",
            &["reason=\"rejected\"", "destination=\"dead_letter\""]
        ) - dead_lettered_before,
        2.0
    );
    let skipped_before = metric_value(&m, "tailsift_sampler_replay_skipped_spans_total", &[]);
    sampler.stop().await;

    // Offsets moved past the refused trace: a new sampler in the group neither sends it again
    // nor needs the decisions topic to skip anything.
    let refused = sink.refused();
    let sampler = SamplerNode::start(sets).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let m = sampler.metrics().await;
    assert_eq!(sink.refused(), refused, "the refused trace is not sent again");
    assert_eq!(
        metric_value(&m, "tailsift_sampler_replay_skipped_spans_total", &[]) - skipped_before,
        0.0,
        "nothing replayed past the committed offsets"
    );
    assert_eq!(sink.duplicates(), 0);
    assert_eq!(read_topic(&broker.brokers(), &dlq, 2, Duration::from_secs(3)).len(), 1);
    sampler.stop().await;
    ingest.stop().await;
}

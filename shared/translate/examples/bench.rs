//! Decoding + translation throughput of every format, single-threaded:
//! `cargo run --release -p tailsift-translate --example bench`.
//!
//! Each request holds 100 spans of 20 traces (5 spans each, 8 tags, 1 annotation/log), about what
//! an Envoy sidecar or a Jaeger client flushes at once. Prints spans per second of one core for
//! decode + translate to an OTLP request + encode it to protobuf (what the receivers do before the
//! split).

use std::time::{Duration, Instant};

use prost::Message;
use tailsift_translate::jaeger::{self, Batch, JaegerSpan, Log, Process, Tag, TagValue};
use tailsift_translate::zipkin::{self, Annotation, Endpoint, Kind, ZipkinSpan};
use tailsift_translate::{ExportTraceServiceRequest, TranslateError};

fn zipkin_spans() -> Vec<ZipkinSpan> {
    (0..100u64)
        .map(|i| ZipkinSpan {
            trace_id: [[0u8; 8], (i / 5 + 1).to_be_bytes()].concat(),
            id: (i + 1).to_be_bytes().to_vec(),
            parent_id: if i % 5 == 0 {
                Vec::new()
            } else {
                (i - i % 5 + 1).to_be_bytes().to_vec()
            },
            kind: Some(if i % 5 == 0 { Kind::Server } else { Kind::Client }),
            name: format!("GET /api/v1/items/{}", i % 7),
            timestamp_us: 1_700_000_000_000_000 + i,
            duration_us: 1500,
            local: Some(Endpoint {
                service_name: format!("svc-{}", i % 4),
                ipv4: Some([10, 0, 0, 1].into()),
                ipv6: None,
                port: 8080,
            }),
            remote: Some(Endpoint {
                service_name: "db".into(),
                ipv4: Some([10, 0, 0, 2].into()),
                ipv6: None,
                port: 5432,
            }),
            annotations: vec![Annotation {
                timestamp_us: 1_700_000_000_000_100,
                value: "wire send".into(),
            }],
            tags: (0..8)
                .map(|t| (format!("tag.key.{t}"), format!("value-{t}-{i}")))
                .collect(),
            ..Default::default()
        })
        .collect()
}

fn jaeger_batch() -> Batch {
    let s = |k: String, v: String| Tag::new(&k, TagValue::Str(v));
    Batch {
        process: Some(Process {
            service_name: "checkout".into(),
            tags: vec![s("hostname".into(), "node-1".into())],
        }),
        spans: (0..100u64)
            .map(|i| JaegerSpan {
                trace_id: [[0u8; 8], (i / 5 + 1).to_be_bytes()].concat(),
                span_id: (i + 1).to_be_bytes().to_vec(),
                parent_span_id: if i % 5 == 0 {
                    vec![0; 8]
                } else {
                    (i - i % 5 + 1).to_be_bytes().to_vec()
                },
                operation_name: format!("GET /api/v1/items/{}", i % 7),
                start_nanos: 1_700_000_000_000_000_000 + i * 1000,
                duration_nanos: 1_500_000,
                tags: (0..7)
                    .map(|t| s(format!("tag.key.{t}"), format!("value-{t}-{i}")))
                    .chain([Tag::new("span.kind", TagValue::Str("server".into()))])
                    .collect(),
                logs: vec![Log {
                    timestamp_nanos: 1_700_000_000_000_100_000,
                    fields: vec![s("event".into(), "retry".into())],
                }],
                ..Default::default()
            })
            .collect(),
    }
}

fn bench(name: &str, body: &[u8], decode: fn(&[u8]) -> Result<ExportTraceServiceRequest, TranslateError>) {
    let n_spans = tailsift_translate::span_count(&decode(body).expect("valid"));
    let t0 = Instant::now();
    let mut reqs = 0u64;
    let mut bytes = 0usize;
    while t0.elapsed() < Duration::from_secs(2) {
        for _ in 0..50 {
            let req = decode(body).unwrap();
            bytes += req.encode_to_vec().len();
            reqs += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let spans = reqs as f64 * n_spans as f64 / secs;
    println!(
        "{name:<34} {:>7} bytes/request  {:>10.0} spans/s  ({bytes} bytes out)",
        body.len(),
        spans
    );
}

fn main() {
    let z = zipkin_spans();
    bench(
        "zipkin v2 JSON",
        &zipkin::v2_json::encode_v2_json(&z),
        zipkin::decode_v2_json,
    );
    bench(
        "zipkin v2 proto3",
        &zipkin::proto::encode_v2_proto(&z),
        zipkin::decode_v2_proto,
    );
    let b = jaeger_batch();
    bench(
        "jaeger thrift binary (HTTP)",
        &jaeger::thrift::encode_binary_batch(&b),
        jaeger::decode_thrift_binary_batch,
    );
    bench(
        "jaeger agent compact (UDP)",
        &jaeger::thrift::encode_agent_compact(&b),
        jaeger::decode_agent_compact,
    );
    bench(
        "jaeger api_v2 protobuf (gRPC)",
        &jaeger::proto::encode_post_spans(&b),
        jaeger::decode_post_spans,
    );
}

//! Writes a few valid inputs per fuzz target into `<dir>/<target>/`, so the fuzzer starts from
//! real structure: `cargo run --bin seeds -- seeds`.

use std::path::Path;

use prost::Message;
use tailsift_translate::jaeger::{self, Batch, JaegerSpan, Log, Process, RefType, SpanRef, Tag, TagValue};
use tailsift_translate::zipkin::v1::{BinaryValue, V1Annotation, V1BinaryAnnotation, V1Span};
use tailsift_translate::zipkin::{self, Annotation, Endpoint, Kind, ZipkinSpan};

fn zipkin_spans() -> Vec<ZipkinSpan> {
    let trace = [[0u8; 8], 7u64.to_be_bytes()].concat();
    vec![
        ZipkinSpan {
            trace_id: trace.clone(),
            id: 1u64.to_be_bytes().to_vec(),
            kind: Some(Kind::Server),
            name: "get".into(),
            timestamp_us: 1_700_000_000_000_000,
            duration_us: 10,
            local: Some(Endpoint { service_name: "a".into(), ipv4: Some([1, 2, 3, 4].into()), ipv6: None, port: 80 }),
            remote: Some(Endpoint { service_name: "b".into(), ipv4: None, ipv6: Some(std::net::Ipv6Addr::LOCALHOST), port: 1 }),
            annotations: vec![Annotation { timestamp_us: 1, value: "x|{\"a\":1}|0".into() }],
            tags: vec![("error".into(), "true".into()), ("otel.library.name".into(), "l".into())],
            debug: true,
            shared: true,
            ..Default::default()
        },
        ZipkinSpan { trace_id: trace, id: 2u64.to_be_bytes().to_vec(), parent_id: 1u64.to_be_bytes().to_vec(), ..Default::default() },
    ]
}

fn v1_spans() -> Vec<V1Span> {
    let e = Some(Endpoint { service_name: "a".into(), ipv4: Some([1, 2, 3, 4].into()), ipv6: None, port: 80 });
    vec![V1Span {
        trace_id: [[0u8; 8], 7u64.to_be_bytes()].concat(),
        id: 1u64.to_be_bytes().to_vec(),
        parent_id: 9u64.to_be_bytes().to_vec(),
        name: "get".into(),
        timestamp_us: Some(5),
        duration_us: Some(6),
        annotations: vec![
            V1Annotation { timestamp_us: 5, value: "cs".into(), endpoint: e.clone() },
            V1Annotation { timestamp_us: 6, value: "sr".into(), endpoint: e.clone() },
        ],
        binary_annotations: vec![
            V1BinaryAnnotation { key: "k".into(), value: BinaryValue::Str("v".into()), endpoint: e.clone() },
            V1BinaryAnnotation { key: "sa".into(), value: BinaryValue::Bool(true), endpoint: e },
        ],
        debug: false,
    }]
}

fn batch() -> Batch {
    let trace = [[0u8; 8], 7u64.to_be_bytes()].concat();
    Batch {
        process: Some(Process { service_name: "svc".into(), tags: vec![Tag::new("hostname", TagValue::Str("h".into()))] }),
        spans: vec![JaegerSpan {
            trace_id: trace.clone(),
            span_id: 2u64.to_be_bytes().to_vec(),
            parent_span_id: 1u64.to_be_bytes().to_vec(),
            operation_name: "op".into(),
            references: vec![SpanRef { ref_type: RefType::FollowsFrom, trace_id: trace, span_id: 3u64.to_be_bytes().to_vec() }],
            flags: 1,
            start_nanos: 1_000,
            duration_nanos: 2_000,
            tags: vec![
                Tag::new("span.kind", TagValue::Str("client".into())),
                Tag::new("error", TagValue::Bool(true)),
                Tag::new("n", TagValue::Long(-1)),
                Tag::new("d", TagValue::Double(0.5)),
                Tag::new("b", TagValue::Binary(vec![0, 1])),
            ],
            logs: vec![Log { timestamp_nanos: 1_000, fields: vec![Tag::new("event", TagValue::Str("e".into()))] }],
            process: None,
        }],
    }
}

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "seeds".into());
    let write = |target: &str, name: &str, data: Vec<u8>| {
        let d = Path::new(&dir).join(target);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), data).unwrap();
    };
    let z = zipkin_spans();
    let v2 = zipkin::v2_json::encode_v2_json(&z);
    write("zipkin_v2_json", "spans.json", v2.clone());
    write("zipkin_v2_proto", "spans.pb", zipkin::proto::encode_v2_proto(&z));
    write("zipkin_v1_thrift", "spans.thrift", zipkin::v1_thrift::encode_v1_thrift(&v1_spans()));
    write(
        "zipkin_v1_json",
        "spans.json",
        br#"[{"traceId":"7","id":"1","name":"get","timestamp":5,"duration":6,"annotations":[{"timestamp":5,"value":"cs","endpoint":{"serviceName":"a","ipv4":"1.2.3.4","port":80}},{"timestamp":6,"value":"sr","endpoint":{"serviceName":"b"}}],"binaryAnnotations":[{"key":"sa","value":true,"endpoint":{"serviceName":"c"}},{"key":"k","value":"v"}]}]"#.to_vec(),
    );
    let b = batch();
    write("jaeger_thrift_binary", "batch.thrift", jaeger::thrift::encode_binary_batch(&b));
    let mut w = tailsift_translate::thrift::CompactWriter::default();
    jaeger::thrift::write_batch(&mut w, &b);
    write("jaeger_thrift_compact", "batch.thrift", tailsift_translate::thrift::Writer::into_bytes(w));
    write("jaeger_agent_compact", "emit.thrift", jaeger::thrift::encode_agent_compact(&b));
    write("jaeger_agent_binary", "emit.thrift", jaeger::thrift::encode_agent_binary(&b));
    write("jaeger_proto", "post.pb", jaeger::proto::encode_post_spans(&b));
    let otlp = zipkin::decode_v2_json(&v2).unwrap();
    write("otlp_split", "req.pb", otlp.encode_to_vec());
    write("otlp_json", "req.json", tailsift_otlp::json::encode_json(&otlp));
}

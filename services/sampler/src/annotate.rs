//! Marking kept spans: which policy kept the trace, under which policy version, and the
//! OpenTelemetry sampling threshold, so a backend can extrapolate true counts.
//!
//! Every span of a kept trace gets, appended at the wire level (no decoding):
//! - attribute `tailsift.sampling.policy` (string): the rule that kept the trace;
//! - attribute `tailsift.sampling.policy_version` (int);
//! - attribute `sampling.adjusted_count` (double): 1 / sampling probability;
//! - when a consistent rule decided (or the trace was kept for sure, `th:0`): `trace_state` with
//!   the W3C `ot` entry set to `th:<threshold>;rv:<randomness>` (OpenTelemetry
//!   probability sampling), other vendors' entries kept. Appending a second `trace_state` field is
//!   valid protobuf: the last value of a singular field wins.
//!
//! Only span, scope and resource length prefixes are rewritten.

use tailsift_otlp::wire::{len_field_size, put_len_header, put_varint, Fields, LEN};

/// What to stamp on every span of a kept trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamp {
    pub policy: String,
    pub policy_version: u64,
    pub adjusted_count: f64,
    /// The `ot` tracestate value, e.g. `th:c;rv:3a9f...`, or `None` to leave tracestate alone.
    pub ot: Option<String>,
}

pub const ATTR_POLICY: &str = "tailsift.sampling.policy";
pub const ATTR_POLICY_VERSION: &str = "tailsift.sampling.policy_version";
pub const ATTR_ADJUSTED_COUNT: &str = "sampling.adjusted_count";

fn put_kv_string(out: &mut Vec<u8>, key: &str, value: &str) {
    let any = len_field_size(1, value.len());
    let kv = len_field_size(1, key.len()) + len_field_size(2, any);
    put_len_header(out, 9, kv);
    put_len_header(out, 1, key.len());
    out.extend_from_slice(key.as_bytes());
    put_len_header(out, 2, any);
    put_len_header(out, 1, value.len());
    out.extend_from_slice(value.as_bytes());
}

fn put_kv_int(out: &mut Vec<u8>, key: &str, value: i64) {
    let any = 1 + tailsift_otlp::wire::varint_len(value as u64);
    let kv = len_field_size(1, key.len()) + len_field_size(2, any);
    put_len_header(out, 9, kv);
    put_len_header(out, 1, key.len());
    out.extend_from_slice(key.as_bytes());
    put_len_header(out, 2, any);
    put_varint(out, 3 << 3); // int_value, varint
    put_varint(out, value as u64);
}

fn put_kv_double(out: &mut Vec<u8>, key: &str, value: f64) {
    let any = 1 + 8;
    let kv = len_field_size(1, key.len()) + len_field_size(2, any);
    put_len_header(out, 9, kv);
    put_len_header(out, 1, key.len());
    out.extend_from_slice(key.as_bytes());
    put_len_header(out, 2, any);
    put_varint(out, (4 << 3) | 1); // double_value, fixed64
    out.extend_from_slice(&value.to_le_bytes());
}

/// Merges the `ot` entry into a W3C tracestate: `ot` goes first (most recent), other entries
/// stay in order. Sub-keys of an existing `ot` entry other than `th` and `rv` are kept.
pub fn merge_tracestate(existing: &str, ot: &str) -> String {
    let mut extra_ot: Vec<&str> = Vec::new();
    let mut others: Vec<&str> = Vec::new();
    for entry in existing.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match entry.strip_prefix("ot=") {
            Some(v) => extra_ot.extend(
                v.split(';')
                    .filter(|kv| !kv.starts_with("th:") && !kv.starts_with("rv:") && !kv.is_empty()),
            ),
            None => others.push(entry),
        }
    }
    let mut out = String::from("ot=");
    out.push_str(ot);
    for kv in extra_ot {
        out.push(';');
        out.push_str(kv);
    }
    for o in others {
        out.push(',');
        out.push_str(o);
    }
    out
}

/// The bytes appended to one span.
fn span_suffix(span: &[u8], stamp: &Stamp) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    put_kv_string(&mut out, ATTR_POLICY, &stamp.policy);
    put_kv_int(&mut out, ATTR_POLICY_VERSION, stamp.policy_version as i64);
    put_kv_double(&mut out, ATTR_ADJUSTED_COUNT, stamp.adjusted_count);
    if let Some(ot) = &stamp.ot {
        let existing = Fields::new(span)
            .filter_map(Result::ok)
            .filter(|f| f.number == 3 && f.wire_type == LEN)
            .last()
            .and_then(|f| std::str::from_utf8(f.payload).ok())
            .unwrap_or("");
        let ts = merge_tracestate(existing, ot);
        put_len_header(&mut out, 3, ts.len());
        out.extend_from_slice(ts.as_bytes());
    }
    out
}

/// Appends the stamp to every span of an encoded `ExportTraceServiceRequest`, writing the result
/// to `out`. Fields other than spans are copied verbatim.
pub fn stamp_request(record: &[u8], stamp: &Stamp, out: &mut Vec<u8>) {
    for f in Fields::new(record).filter_map(Result::ok) {
        if f.number != 1 || f.wire_type != LEN {
            out.extend_from_slice(f.raw);
            continue;
        }
        let rs = rewrite(f.payload, 2, &|scope: &[u8], out: &mut Vec<u8>| {
            let ss = rewrite(scope, 2, &|span: &[u8], out: &mut Vec<u8>| {
                out.extend_from_slice(span);
                out.extend_from_slice(&span_suffix(span, stamp));
            });
            out.extend_from_slice(&ss);
        });
        put_len_header(out, 1, rs.len());
        out.extend_from_slice(&rs);
    }
}

/// Copies message `msg`, replacing each length-delimited field `child` with the bytes `f`
/// produces for its payload (re-framed with a new length).
fn rewrite(msg: &[u8], child: u32, f: &dyn Fn(&[u8], &mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 256);
    let mut buf = Vec::new();
    for field in Fields::new(msg).filter_map(Result::ok) {
        if field.number == child && field.wire_type == LEN {
            buf.clear();
            f(field.payload, &mut buf);
            put_len_header(&mut out, child, buf.len());
            out.extend_from_slice(&buf);
        } else {
            out.extend_from_slice(field.raw);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    #[test]
    fn stamps_every_span_and_keeps_everything_else() {
        let span = |n: u8, ts: &str| Span {
            trace_id: vec![1; 16],
            span_id: vec![n; 8],
            name: format!("s{n}"),
            trace_state: ts.into(),
            ..Default::default()
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource::default()),
                scope_spans: vec![
                    ScopeSpans {
                        spans: vec![span(1, ""), span(2, "vendor=a,ot=th:8;xx:1")],
                        schema_url: "s".into(),
                        ..Default::default()
                    },
                    ScopeSpans {
                        spans: vec![span(3, "")],
                        ..Default::default()
                    },
                ],
                schema_url: "r".into(),
            }],
        };
        let stamp = Stamp {
            policy: "errors".into(),
            policy_version: 7,
            adjusted_count: 4.0,
            ot: Some("th:c;rv:0123456789abcd".into()),
        };
        let mut out = Vec::new();
        stamp_request(&req.encode_to_vec(), &stamp, &mut out);
        let got = ExportTraceServiceRequest::decode(out.as_slice()).unwrap();
        assert_eq!(got.resource_spans[0].schema_url, "r");
        assert_eq!(got.resource_spans[0].scope_spans[0].schema_url, "s");
        let spans: Vec<&Span> = got.resource_spans[0]
            .scope_spans
            .iter()
            .flat_map(|s| s.spans.iter())
            .collect();
        assert_eq!(spans.len(), 3);
        for s in &spans {
            let attr = |k: &str| {
                s.attributes
                    .iter()
                    .find(|a| a.key == k)
                    .and_then(|a| a.value.clone())
                    .and_then(|v| v.value)
            };
            assert_eq!(attr(ATTR_POLICY), Some(Value::StringValue("errors".into())));
            assert_eq!(attr(ATTR_POLICY_VERSION), Some(Value::IntValue(7)));
            assert_eq!(attr(ATTR_ADJUSTED_COUNT), Some(Value::DoubleValue(4.0)));
        }
        assert_eq!(spans[0].trace_state, "ot=th:c;rv:0123456789abcd");
        assert_eq!(spans[1].trace_state, "ot=th:c;rv:0123456789abcd;xx:1,vendor=a");
        assert_eq!(spans[1].name, "s2");
    }

    #[test]
    fn tracestate_merge() {
        assert_eq!(merge_tracestate("", "th:0"), "ot=th:0");
        assert_eq!(merge_tracestate("a=1, b=2", "th:8"), "ot=th:8,a=1,b=2");
        assert_eq!(merge_tracestate("ot=rv:ff;th:1", "th:8"), "ot=th:8");
    }
}

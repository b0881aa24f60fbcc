//! Building OTLP values: attributes with map semantics, grouping spans by resource and scope.

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use crate::ExportTraceServiceRequest;

pub use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
pub use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

pub fn str_value(s: impl Into<String>) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    }
}
pub fn int_value(i: i64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::IntValue(i)),
    }
}
pub fn bool_value(b: bool) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::BoolValue(b)),
    }
}
pub fn double_value(d: f64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::DoubleValue(d)),
    }
}
pub fn bytes_value(b: Vec<u8>) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::BytesValue(b)),
    }
}

/// Wraps a value.
pub fn any(v: any_value::Value) -> AnyValue {
    AnyValue { value: Some(v) }
}

pub fn kv(key: impl Into<String>, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value),
        ..Default::default()
    }
}

/// An attribute list with map semantics (a key set twice keeps its first position and its last
/// value), as the Collector's `pcommon.Map` behaves. Every operation is O(1) (removal leaves a
/// hole), so a request with huge tag lists cannot make translation quadratic.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Attrs {
    list: Vec<Option<KeyValue>>,
    index: HashMap<String, usize>,
}

impl Attrs {
    pub fn new() -> Self {
        Attrs::default()
    }

    /// Inserts or replaces.
    pub fn put(&mut self, key: &str, value: AnyValue) {
        match self.index.get(key) {
            Some(&i) => {
                if let Some(kv) = self.list[i].as_mut() {
                    kv.value = Some(value);
                }
            }
            None => {
                self.index.insert(key.to_string(), self.list.len());
                self.list.push(Some(kv(key, value)));
            }
        }
    }

    /// Inserts only if absent.
    pub fn insert(&mut self, key: &str, value: AnyValue) {
        if !self.index.contains_key(key) {
            self.put(key, value);
        }
    }

    pub fn get(&self, key: &str) -> Option<&any_value::Value> {
        let i = *self.index.get(key)?;
        self.list[i]
            .as_ref()
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(any_value::Value::StringValue(s)) => Some(s),
            _ => None,
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// Removes a key, keeping the order of the rest.
    pub fn remove(&mut self, key: &str) -> Option<any_value::Value> {
        let i = self.index.remove(key)?;
        self.list[i].take().and_then(|kv| kv.value).and_then(|v| v.value)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn into_vec(self) -> Vec<KeyValue> {
        self.list.into_iter().flatten().collect()
    }
}

/// A string form of an attribute value (the Collector's `Value.AsString` for scalars).
pub fn value_as_string(v: &any_value::Value) -> String {
    match v {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        any_value::Value::BytesValue(b) => hex::encode(b),
        _ => String::new(),
    }
}

/// A 64-bit trace ID widened to OTLP's 16 bytes: the high 8 bytes zero.
pub fn trace_id(high: u64, low: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&high.to_be_bytes());
    out.extend_from_slice(&low.to_be_bytes());
    out
}

/// Collects spans into `ResourceSpans` / `ScopeSpans`, grouping equal resources and equal scopes
/// in order of first appearance (deterministic output). Lookups are hashed on the encoded
/// resource and scope, so many distinct services in one request stay linear.
#[derive(Default)]
pub struct Grouper {
    resources: Vec<(Vec<KeyValue>, Vec<(InstrumentationScope, Vec<Span>)>)>,
    resource_index: HashMap<Vec<u8>, usize>,
    scope_index: HashMap<(usize, Vec<u8>), usize>,
}

impl Grouper {
    pub fn push(&mut self, resource: Vec<KeyValue>, scope: InstrumentationScope, span: Span) {
        use prost::Message;
        let rkey = Resource {
            attributes: resource,
            ..Default::default()
        }
        .encode_to_vec();
        let r = match self.resource_index.get(&rkey) {
            Some(&i) => i,
            None => {
                let attrs = Resource::decode(rkey.as_slice())
                    .map(|r| r.attributes)
                    .unwrap_or_default();
                self.resources.push((attrs, Vec::new()));
                self.resource_index.insert(rkey, self.resources.len() - 1);
                self.resources.len() - 1
            }
        };
        let skey = (r, scope.encode_to_vec());
        let scopes = &mut self.resources[r].1;
        match self.scope_index.get(&skey) {
            Some(&i) => scopes[i].1.push(span),
            None => {
                scopes.push((scope, vec![span]));
                self.scope_index.insert(skey, scopes.len() - 1);
            }
        }
    }

    pub fn finish(self) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: self
                .resources
                .into_iter()
                .map(|(attrs, scopes)| ResourceSpans {
                    resource: Some(Resource {
                        attributes: attrs,
                        ..Default::default()
                    }),
                    scope_spans: scopes
                        .into_iter()
                        .map(|(scope, spans)| ScopeSpans {
                            scope: (scope != InstrumentationScope::default()).then_some(scope),
                            spans,
                            schema_url: String::new(),
                        })
                        .collect(),
                    schema_url: String::new(),
                })
                .collect(),
        }
    }
}

/// The OTel status of an HTTP status code for a span kind (OpenTelemetry HTTP semantic
/// conventions, as the Collector's Jaeger translator applies them): 4xx is an error for clients
/// only, 5xx and codes outside 100..=399 are errors.
pub fn status_from_http(code: i64, kind: SpanKind) -> StatusCode {
    if (400..500).contains(&code) {
        return match kind {
            SpanKind::Server => StatusCode::Unset,
            _ => StatusCode::Error,
        };
    }
    if (100..400).contains(&code) {
        StatusCode::Unset
    } else {
        StatusCode::Error
    }
}

/// Resource attribute names (OpenTelemetry semantic conventions) that Zipkin spans carry as tags
/// and the Collector moves to the resource.
pub fn is_resource_attribute(key: &str) -> bool {
    const EXACT: &[&str] = &[
        "service.name",
        "service.namespace",
        "service.instance.id",
        "service.version",
        "deployment.environment",
        "deployment.environment.name",
        "opencensus.exporterversion",
        "opencensus.starttime",
        "opencensus.resourcetype",
    ];
    const PREFIXES: &[&str] = &[
        "telemetry.sdk.",
        "telemetry.auto.",
        "host.",
        "os.",
        "process.",
        "container.",
        "k8s.",
        "cloud.",
        "faas.",
        "device.",
        "webengine.",
        "aws.ecs.",
        "aws.eks.",
        "aws.log.",
        "heroku.",
    ];
    EXACT.contains(&key) || PREFIXES.iter().any(|p| key.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attrs_have_map_semantics() {
        let mut a = Attrs::new();
        a.put("a", int_value(1));
        a.put("b", int_value(2));
        a.put("a", int_value(3));
        a.insert("b", int_value(9));
        assert_eq!(a.len(), 2);
        assert_eq!(a.get("a"), Some(&any_value::Value::IntValue(3)));
        assert_eq!(a.remove("a"), Some(any_value::Value::IntValue(3)));
        a.put("c", str_value("x"));
        assert_eq!(a.get_str("c"), Some("x"));
        let v = a.into_vec();
        assert_eq!(v.iter().map(|k| k.key.as_str()).collect::<Vec<_>>(), ["b", "c"]);
    }

    #[test]
    fn http_status_mapping() {
        assert_eq!(status_from_http(404, SpanKind::Server), StatusCode::Unset);
        assert_eq!(status_from_http(404, SpanKind::Client), StatusCode::Error);
        assert_eq!(status_from_http(503, SpanKind::Server), StatusCode::Error);
        assert_eq!(status_from_http(200, SpanKind::Client), StatusCode::Unset);
        assert_eq!(status_from_http(99, SpanKind::Client), StatusCode::Error);
    }
}

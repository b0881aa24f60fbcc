//! Zipkin v2 JSON: `POST /api/v2/spans` with `application/json`, a JSON array of spans
//! (openzipkin/zipkin-api `zipkin2-api.yaml`).

use serde::Deserialize;
use serde_json::Value;

use super::{parse_hex_id, parse_trace_id, Annotation, Endpoint, Kind, ZipkinSpan};
use crate::{ExportTraceServiceRequest, TranslateError};

const FORMAT: &str = "Zipkin v2 JSON";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JsonEndpoint {
    service_name: Option<String>,
    ipv4: Option<String>,
    ipv6: Option<String>,
    port: Option<Value>,
}

#[derive(Deserialize)]
pub(crate) struct JsonAnnotation {
    timestamp: Option<Value>,
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan {
    trace_id: Option<String>,
    id: Option<String>,
    parent_id: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    timestamp: Option<Value>,
    duration: Option<Value>,
    local_endpoint: Option<JsonEndpoint>,
    remote_endpoint: Option<JsonEndpoint>,
    #[serde(default)]
    annotations: Option<Vec<JsonAnnotation>>,
    #[serde(default)]
    tags: Option<serde_json::Map<String, Value>>,
    debug: Option<bool>,
    shared: Option<bool>,
}

/// A non-negative integer (floats are truncated), or `None`.
pub(crate) fn micros(v: &Option<Value>) -> Option<u64> {
    match v {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as u64)),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
}

pub(crate) fn endpoint(e: &Option<JsonEndpoint>, span: usize, which: &str) -> Result<Option<Endpoint>, TranslateError> {
    let Some(e) = e else { return Ok(None) };
    let bad = |what: &str, v: &str| {
        TranslateError::new(
            FORMAT,
            format!("span {span}: {which}.{what} `{v}` is not a valid address"),
        )
    };
    let ipv4 = match e.ipv4.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(s.parse().map_err(|_| bad("ipv4", s))?),
        None => None,
    };
    let ipv6 = match e.ipv6.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(s.parse().map_err(|_| bad("ipv6", s))?),
        None => None,
    };
    let port = micros(&e.port).map(|p| p.min(u16::MAX as u64) as u16).unwrap_or(0);
    Ok(Some(Endpoint {
        service_name: e.service_name.clone().unwrap_or_default(),
        ipv4,
        ipv6,
        port,
    }))
}

pub(crate) fn tag_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub(crate) fn ids(
    format: &'static str,
    i: usize,
    trace: Option<&str>,
    id: Option<&str>,
    parent: Option<&str>,
) -> Result<(Vec<u8>, Vec<u8>, Vec<u8>), TranslateError> {
    let e = |m: String| TranslateError::new(format, format!("span {i}: {m}"));
    let trace = trace.ok_or_else(|| e("traceId is required".into()))?;
    let trace_id =
        parse_trace_id(trace).ok_or_else(|| e(format!("traceId `{trace}` is not 1 to 32 hex characters")))?;
    let id = id.ok_or_else(|| e("id is required".into()))?;
    let span_id = parse_hex_id(id, 16).ok_or_else(|| e(format!("id `{id}` is not 1 to 16 hex characters")))?;
    let parent = match parent.filter(|p| !p.is_empty()) {
        Some(p) => parse_hex_id(p, 16).ok_or_else(|| e(format!("parentId `{p}` is not 1 to 16 hex characters")))?,
        None => Vec::new(),
    };
    Ok((trace_id, span_id, parent))
}

/// Decodes a Zipkin v2 JSON body.
pub fn decode_v2_json(body: &[u8]) -> Result<ExportTraceServiceRequest, TranslateError> {
    let spans: Vec<Option<JsonSpan>> = serde_json::from_slice(body)
        .map_err(|e| TranslateError::new(FORMAT, format!("expected a JSON array of spans: {e}")))?;
    let mut out = Vec::with_capacity(spans.len());
    for (i, s) in spans.into_iter().enumerate() {
        let Some(s) = s else { continue };
        let (trace_id, id, parent_id) = ids(
            FORMAT,
            i,
            s.trace_id.as_deref(),
            s.id.as_deref(),
            s.parent_id.as_deref(),
        )?;
        let kind = match s.kind.as_deref().map(str::to_ascii_uppercase).as_deref() {
            None | Some("") => None,
            Some("CLIENT") => Some(Kind::Client),
            Some("SERVER") => Some(Kind::Server),
            Some("PRODUCER") => Some(Kind::Producer),
            Some("CONSUMER") => Some(Kind::Consumer),
            Some(k) => return Err(TranslateError::new(FORMAT, format!("span {i}: unknown kind `{k}`"))),
        };
        out.push(ZipkinSpan {
            trace_id,
            id,
            parent_id,
            kind,
            name: s.name.unwrap_or_default(),
            timestamp_us: micros(&s.timestamp).unwrap_or(0),
            duration_us: micros(&s.duration).unwrap_or(0),
            local: endpoint(&s.local_endpoint, i, "localEndpoint")?,
            remote: endpoint(&s.remote_endpoint, i, "remoteEndpoint")?,
            annotations: s
                .annotations
                .unwrap_or_default()
                .into_iter()
                .map(|a| Annotation {
                    timestamp_us: micros(&a.timestamp).unwrap_or(0),
                    value: a.value.unwrap_or_default(),
                })
                .collect(),
            tags: s
                .tags
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| {
                    let v = tag_string(&v);
                    (k, v)
                })
                .collect(),
            debug: s.debug.unwrap_or(false),
            shared: s.shared.unwrap_or(false),
        });
    }
    Ok(super::to_otlp(out))
}

/// Encodes spans as Zipkin v2 JSON (tests, fuzz seeds, tools).
pub fn encode_v2_json(spans: &[ZipkinSpan]) -> Vec<u8> {
    let ep = |e: &Endpoint| {
        let mut m = serde_json::Map::new();
        if !e.service_name.is_empty() {
            m.insert("serviceName".into(), e.service_name.clone().into());
        }
        if let Some(ip) = e.ipv4 {
            m.insert("ipv4".into(), ip.to_string().into());
        }
        if let Some(ip) = e.ipv6 {
            m.insert("ipv6".into(), ip.to_string().into());
        }
        if e.port > 0 {
            m.insert("port".into(), e.port.into());
        }
        Value::Object(m)
    };
    let arr: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut m = serde_json::Map::new();
            let t = if s.trace_id[..8].iter().all(|b| *b == 0) {
                hex::encode(&s.trace_id[8..])
            } else {
                hex::encode(&s.trace_id)
            };
            m.insert("traceId".into(), t.into());
            m.insert("id".into(), hex::encode(&s.id).into());
            if !s.parent_id.is_empty() {
                m.insert("parentId".into(), hex::encode(&s.parent_id).into());
            }
            if let Some(k) = s.kind {
                m.insert("kind".into(), format!("{k:?}").to_ascii_uppercase().into());
            }
            m.insert("name".into(), s.name.clone().into());
            if s.timestamp_us > 0 {
                m.insert("timestamp".into(), s.timestamp_us.into());
            }
            if s.duration_us > 0 {
                m.insert("duration".into(), s.duration_us.into());
            }
            if let Some(e) = &s.local {
                m.insert("localEndpoint".into(), ep(e));
            }
            if let Some(e) = &s.remote {
                m.insert("remoteEndpoint".into(), ep(e));
            }
            if !s.annotations.is_empty() {
                m.insert(
                    "annotations".into(),
                    s.annotations
                        .iter()
                        .map(|a| serde_json::json!({"timestamp": a.timestamp_us, "value": a.value}))
                        .collect(),
                );
            }
            if !s.tags.is_empty() {
                m.insert(
                    "tags".into(),
                    Value::Object(
                        s.tags
                            .iter()
                            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                            .collect(),
                    ),
                );
            }
            if s.debug {
                m.insert("debug".into(), true.into());
            }
            if s.shared {
                m.insert("shared".into(), true.into());
            }
            Value::Object(m)
        })
        .collect();
    serde_json::to_vec(&arr).expect("JSON values serialize")
}

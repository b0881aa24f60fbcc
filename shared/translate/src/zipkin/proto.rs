//! Zipkin v2 proto3: `POST /api/v2/spans` with `application/x-protobuf`, a `ListOfSpans`
//! (openzipkin/zipkin-api `zipkin.proto`): `ListOfSpans { repeated Span spans = 1 }`,
//! `Span { bytes trace_id = 1; bytes parent_id = 2; bytes id = 3; Kind kind = 4; string name = 5;
//! fixed64 timestamp = 6; uint64 duration = 7; Endpoint local_endpoint = 8; Endpoint
//! remote_endpoint = 9; repeated Annotation annotations = 10; map<string, string> tags = 11;
//! bool debug = 12; bool shared = 13 }` (Kind: unspecified 0, CLIENT 1, SERVER 2, PRODUCER 3,
//! CONSUMER 4), `Endpoint { string service_name = 1; bytes ipv4 = 2; bytes ipv6 = 3; int32 port
//! = 4 }`, `Annotation { fixed64 timestamp = 1; string value = 2 }`.

use std::net::{Ipv4Addr, Ipv6Addr};

use prost::Message;

use super::{Annotation, Endpoint, Kind, ZipkinSpan};
use crate::{ExportTraceServiceRequest, TranslateError};

const FORMAT: &str = "Zipkin v2 proto3 ListOfSpans";

#[derive(Clone, PartialEq, Message)]
pub struct ListOfSpans {
    #[prost(message, repeated, tag = "1")]
    pub spans: Vec<PbSpan>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PbSpan {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub parent_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub id: Vec<u8>,
    #[prost(int32, tag = "4")]
    pub kind: i32,
    #[prost(string, tag = "5")]
    pub name: String,
    #[prost(fixed64, tag = "6")]
    pub timestamp: u64,
    #[prost(uint64, tag = "7")]
    pub duration: u64,
    #[prost(message, optional, tag = "8")]
    pub local_endpoint: Option<PbEndpoint>,
    #[prost(message, optional, tag = "9")]
    pub remote_endpoint: Option<PbEndpoint>,
    #[prost(message, repeated, tag = "10")]
    pub annotations: Vec<PbAnnotation>,
    #[prost(btree_map = "string, string", tag = "11")]
    pub tags: std::collections::BTreeMap<String, String>,
    #[prost(bool, tag = "12")]
    pub debug: bool,
    #[prost(bool, tag = "13")]
    pub shared: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct PbEndpoint {
    #[prost(string, tag = "1")]
    pub service_name: String,
    #[prost(bytes = "vec", tag = "2")]
    pub ipv4: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub ipv6: Vec<u8>,
    #[prost(int32, tag = "4")]
    pub port: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct PbAnnotation {
    #[prost(fixed64, tag = "1")]
    pub timestamp: u64,
    #[prost(string, tag = "2")]
    pub value: String,
}

fn endpoint(e: &Option<PbEndpoint>, i: usize, which: &str) -> Result<Option<Endpoint>, TranslateError> {
    let Some(e) = e else { return Ok(None) };
    let bad = |what: &str, n: usize| TranslateError::new(FORMAT, format!("span {i}: {which}.{what} has {n} bytes"));
    let ipv4 = match e.ipv4.len() {
        0 => None,
        4 => Some(Ipv4Addr::new(e.ipv4[0], e.ipv4[1], e.ipv4[2], e.ipv4[3])),
        n => return Err(bad("ipv4", n)),
    };
    let ipv6 = match e.ipv6.len() {
        0 => None,
        16 => Some(Ipv6Addr::from(
            <[u8; 16]>::try_from(e.ipv6.as_slice()).expect("16 bytes"),
        )),
        n => return Err(bad("ipv6", n)),
    };
    Ok(Some(Endpoint {
        service_name: e.service_name.clone(),
        ipv4,
        ipv6,
        port: e.port.clamp(0, u16::MAX as i32) as u16,
    }))
}

/// Decodes a Zipkin proto3 `ListOfSpans`.
pub fn decode_v2_proto(body: &[u8]) -> Result<ExportTraceServiceRequest, TranslateError> {
    let list = ListOfSpans::decode(body).map_err(|e| TranslateError::new(FORMAT, e.to_string()))?;
    let mut out = Vec::with_capacity(list.spans.len());
    for (i, s) in list.spans.into_iter().enumerate() {
        let e = |m: String| TranslateError::new(FORMAT, format!("span {i}: {m}"));
        let trace_id = match s.trace_id.len() {
            8 => [vec![0u8; 8], s.trace_id].concat(),
            16 => s.trace_id,
            n => return Err(e(format!("trace_id must be 8 or 16 bytes, got {n}"))),
        };
        if s.id.len() != 8 {
            return Err(e(format!("id must be 8 bytes, got {}", s.id.len())));
        }
        if !s.parent_id.is_empty() && s.parent_id.len() != 8 {
            return Err(e(format!(
                "parent_id must be empty or 8 bytes, got {}",
                s.parent_id.len()
            )));
        }
        let kind = match s.kind {
            1 => Some(Kind::Client),
            2 => Some(Kind::Server),
            3 => Some(Kind::Producer),
            4 => Some(Kind::Consumer),
            _ => None,
        };
        out.push(ZipkinSpan {
            trace_id,
            id: s.id,
            parent_id: s.parent_id,
            kind,
            name: s.name,
            timestamp_us: s.timestamp,
            duration_us: s.duration,
            local: endpoint(&s.local_endpoint, i, "local_endpoint")?,
            remote: endpoint(&s.remote_endpoint, i, "remote_endpoint")?,
            annotations: s
                .annotations
                .into_iter()
                .map(|a| Annotation {
                    timestamp_us: a.timestamp,
                    value: a.value,
                })
                .collect(),
            tags: s.tags.into_iter().collect(),
            debug: s.debug,
            shared: s.shared,
        });
    }
    Ok(super::to_otlp(out))
}

/// Encodes spans as a proto3 `ListOfSpans` (tests, fuzz seeds, tools).
pub fn encode_v2_proto(spans: &[ZipkinSpan]) -> Vec<u8> {
    let ep = |e: &Endpoint| PbEndpoint {
        service_name: e.service_name.clone(),
        ipv4: e.ipv4.map(|i| i.octets().to_vec()).unwrap_or_default(),
        ipv6: e.ipv6.map(|i| i.octets().to_vec()).unwrap_or_default(),
        port: e.port as i32,
    };
    ListOfSpans {
        spans: spans
            .iter()
            .map(|s| PbSpan {
                trace_id: if s.trace_id[..8].iter().all(|b| *b == 0) {
                    s.trace_id[8..].to_vec()
                } else {
                    s.trace_id.clone()
                },
                parent_id: s.parent_id.clone(),
                id: s.id.clone(),
                kind: match s.kind {
                    None => 0,
                    Some(Kind::Client) => 1,
                    Some(Kind::Server) => 2,
                    Some(Kind::Producer) => 3,
                    Some(Kind::Consumer) => 4,
                },
                name: s.name.clone(),
                timestamp: s.timestamp_us,
                duration: s.duration_us,
                local_endpoint: s.local.as_ref().map(ep),
                remote_endpoint: s.remote.as_ref().map(ep),
                annotations: s
                    .annotations
                    .iter()
                    .map(|a| PbAnnotation {
                        timestamp: a.timestamp_us,
                        value: a.value.clone(),
                    })
                    .collect(),
                tags: s.tags.iter().cloned().collect(),
                debug: s.debug,
                shared: s.shared,
            })
            .collect(),
    }
    .encode_to_vec()
}

//! Zipkin v1 thrift: `POST /api/v1/spans` with `application/x-thrift`, a binary-protocol
//! `list<Span>` (zipkincore.thrift): `Span { 1: i64 trace_id, 3: string name, 4: i64 id, 5: i64
//! parent_id, 6: list<Annotation> annotations, 8: list<BinaryAnnotation> binary_annotations,
//! 9: bool debug, 10: i64 timestamp, 11: i64 duration, 12: i64 trace_id_high }`,
//! `Annotation { 1: i64 timestamp, 2: string value, 3: Endpoint host }`, `BinaryAnnotation
//! { 1: string key, 2: binary value, 3: AnnotationType annotation_type, 4: Endpoint host }`
//! (BOOL 0, BYTES 1, I16 2, I32 3, I64 4, DOUBLE 5, STRING 6; numbers big-endian),
//! `Endpoint { 1: i32 ipv4, 2: i16 port, 3: string service_name, 4: binary ipv6 }`.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::v1::{self, BinaryValue, V1Annotation, V1BinaryAnnotation, V1Span};
use super::Endpoint;
use crate::thrift::{self, BinaryReader, Reader, TType, Writer};
use crate::{ExportTraceServiceRequest, TranslateError};

const FORMAT: &str = "Zipkin v1 thrift";

fn read_endpoint<'a, R: Reader<'a>>(r: &mut R) -> thrift::Result<Endpoint> {
    r.struct_begin()?;
    let mut e = Endpoint::default();
    while let Some((t, id)) = r.field_begin()? {
        match (id, t) {
            (1, TType::I32) => {
                let v = r.i32()? as u32;
                if v != 0 {
                    e.ipv4 = Some(Ipv4Addr::from(v));
                }
            }
            (2, TType::I16) => e.port = r.i16()? as u16,
            (3, TType::Binary) => e.service_name = r.string()?,
            (4, TType::Binary) => {
                let b = r.binary()?;
                if let Ok(a) = <[u8; 16]>::try_from(b) {
                    e.ipv6 = Some(Ipv6Addr::from(a));
                }
            }
            _ => r.skip(t)?,
        }
    }
    r.struct_end();
    Ok(e)
}

/// Base64 (standard alphabet, padded), as Zipkin renders BYTES binary annotations.
pub(crate) fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn binary_value(bytes: &[u8], t: i32) -> BinaryValue {
    let s = match (t, bytes.len()) {
        (0, 1) => return BinaryValue::Bool(bytes[0] != 0),
        (2, 2) => i16::from_be_bytes([bytes[0], bytes[1]]).to_string(),
        (3, 4) => i32::from_be_bytes(bytes.try_into().expect("4 bytes")).to_string(),
        (4, 8) => i64::from_be_bytes(bytes.try_into().expect("8 bytes")).to_string(),
        (5, 8) => f64::from_bits(u64::from_be_bytes(bytes.try_into().expect("8 bytes"))).to_string(),
        (6, _) => String::from_utf8_lossy(bytes).into_owned(),
        _ => base64(bytes),
    };
    BinaryValue::Str(s)
}

/// Reads one `Span` struct.
pub fn read_span<'a, R: Reader<'a>>(r: &mut R) -> thrift::Result<V1Span> {
    r.struct_begin()?;
    let (mut low, mut high) = (0i64, 0i64);
    let mut s = V1Span::default();
    let mut parent = 0i64;
    while let Some((t, id)) = r.field_begin()? {
        match (id, t) {
            (1, TType::I64) => low = r.i64()?,
            (3, TType::Binary) => s.name = r.string()?,
            (4, TType::I64) => s.id = r.i64()?.to_be_bytes().to_vec(),
            (5, TType::I64) => parent = r.i64()?,
            (6, TType::List) => {
                s.annotations = r.list_of(TType::Struct, |r| {
                    r.struct_begin()?;
                    let mut a = V1Annotation {
                        timestamp_us: 0,
                        value: String::new(),
                        endpoint: None,
                    };
                    while let Some((t, id)) = r.field_begin()? {
                        match (id, t) {
                            (1, TType::I64) => a.timestamp_us = r.i64()?.max(0) as u64,
                            (2, TType::Binary) => a.value = r.string()?,
                            (3, TType::Struct) => a.endpoint = Some(read_endpoint(r)?),
                            _ => r.skip(t)?,
                        }
                    }
                    r.struct_end();
                    Ok(a)
                })?
            }
            (8, TType::List) => {
                s.binary_annotations = r.list_of(TType::Struct, |r| {
                    r.struct_begin()?;
                    let (mut key, mut value, mut atype, mut endpoint) = (String::new(), Vec::new(), 6, None);
                    while let Some((t, id)) = r.field_begin()? {
                        match (id, t) {
                            (1, TType::Binary) => key = r.string()?,
                            (2, TType::Binary) => value = r.binary()?.to_vec(),
                            (3, TType::I32) => atype = r.i32()?,
                            (4, TType::Struct) => endpoint = Some(read_endpoint(r)?),
                            _ => r.skip(t)?,
                        }
                    }
                    r.struct_end();
                    Ok(V1BinaryAnnotation {
                        key,
                        value: binary_value(&value, atype),
                        endpoint,
                    })
                })?
            }
            (9, TType::Bool) => s.debug = r.bool()?,
            (10, TType::I64) => s.timestamp_us = Some(r.i64()?.max(0) as u64),
            (11, TType::I64) => s.duration_us = Some(r.i64()?.max(0) as u64),
            (12, TType::I64) => high = r.i64()?,
            _ => r.skip(t)?,
        }
    }
    r.struct_end();
    s.trace_id = crate::otlp::trace_id(high as u64, low as u64);
    if s.id.is_empty() {
        s.id = vec![0; 8];
    }
    if parent != 0 {
        s.parent_id = parent.to_be_bytes().to_vec();
    }
    Ok(s)
}

/// Decodes a Zipkin v1 thrift body (a binary-protocol list of spans).
pub fn decode_v1_thrift(body: &[u8]) -> Result<ExportTraceServiceRequest, TranslateError> {
    let mut r = BinaryReader::new(body);
    let spans = r
        .list_of(TType::Struct, read_span)
        .map_err(|e| TranslateError::new(FORMAT, e.0))?;
    if r.remaining() != 0 {
        return Err(TranslateError::new(
            FORMAT,
            format!("{} bytes after the list of spans", r.remaining()),
        ));
    }
    let v2 = v1::convert(spans);
    Ok(super::to_otlp(v2))
}

fn write_endpoint<W: Writer>(w: &mut W, id: i16, e: &Endpoint) {
    w.field(TType::Struct, id);
    w.struct_begin();
    w.field(TType::I32, 1);
    w.i32(e.ipv4.map(u32::from).unwrap_or(0) as i32);
    w.field(TType::I16, 2);
    w.i16(e.port as i16);
    w.field(TType::Binary, 3);
    w.string(&e.service_name);
    if let Some(ip) = e.ipv6 {
        w.field(TType::Binary, 4);
        w.binary(&ip.octets());
    }
    w.stop();
    w.struct_end();
}

fn id64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    let n = b.len().min(8);
    a[8 - n..].copy_from_slice(&b[b.len() - n..]);
    i64::from_be_bytes(a)
}

/// Writes v1 spans as a binary-protocol list (tests, fuzz seeds, tools). Binary annotation
/// values are written as STRING, or BOOL.
pub fn encode_v1_thrift(spans: &[V1Span]) -> Vec<u8> {
    let mut w = thrift::BinaryWriter::default();
    w.list_begin(TType::Struct, spans.len());
    for s in spans {
        w.struct_begin();
        w.field(TType::I64, 1);
        w.i64(id64(&s.trace_id[8..]));
        w.field(TType::Binary, 3);
        w.string(&s.name);
        w.field(TType::I64, 4);
        w.i64(id64(&s.id));
        if !s.parent_id.is_empty() {
            w.field(TType::I64, 5);
            w.i64(id64(&s.parent_id));
        }
        w.field(TType::List, 6);
        w.list_begin(TType::Struct, s.annotations.len());
        for a in &s.annotations {
            w.struct_begin();
            w.field(TType::I64, 1);
            w.i64(a.timestamp_us as i64);
            w.field(TType::Binary, 2);
            w.string(&a.value);
            if let Some(e) = &a.endpoint {
                write_endpoint(&mut w, 3, e);
            }
            w.stop();
            w.struct_end();
        }
        w.field(TType::List, 8);
        w.list_begin(TType::Struct, s.binary_annotations.len());
        for b in &s.binary_annotations {
            w.struct_begin();
            w.field(TType::Binary, 1);
            w.string(&b.key);
            w.field(TType::Binary, 2);
            match &b.value {
                BinaryValue::Bool(v) => {
                    w.binary(&[*v as u8]);
                    w.field(TType::I32, 3);
                    w.i32(0);
                }
                BinaryValue::Str(v) => {
                    w.binary(v.as_bytes());
                    w.field(TType::I32, 3);
                    w.i32(6);
                }
            }
            if let Some(e) = &b.endpoint {
                write_endpoint(&mut w, 4, e);
            }
            w.stop();
            w.struct_end();
        }
        if s.debug {
            w.bool_field(9, true);
        }
        if let Some(t) = s.timestamp_us {
            w.field(TType::I64, 10);
            w.i64(t as i64);
        }
        if let Some(d) = s.duration_us {
            w.field(TType::I64, 11);
            w.i64(d as i64);
        }
        let high = id64(&s.trace_id[..8]);
        if high != 0 {
            w.field(TType::I64, 12);
            w.i64(high);
        }
        w.stop();
        w.struct_end();
    }
    w.into_bytes()
}

//! Jaeger thrift (`jaeger.thrift`, `agent.thrift`): `Batch` in the binary and compact protocols,
//! and the agent's `emitBatch` oneway message (UDP 6831 compact, 6832 binary).
//!
//! Field ids: `Batch { 1: Process process, 2: list<Span> spans, 3: i64 seqNo, 4: ClientStats }`,
//! `Process { 1: string serviceName, 2: list<Tag> tags }`, `Tag { 1: string key, 2: TagType vType,
//! 3: string vStr, 4: double vDouble, 5: bool vBool, 6: i64 vLong, 7: binary vBinary }`
//! (`TagType`: STRING 0, DOUBLE 1, BOOL 2, LONG 3, BINARY 4), `Log { 1: i64 timestamp,
//! 2: list<Tag> fields }`, `SpanRef { 1: SpanRefType refType, 2: i64 traceIdLow, 3: i64
//! traceIdHigh, 4: i64 spanId }` (CHILD_OF 0, FOLLOWS_FROM 1), `Span { 1: i64 traceIdLow,
//! 2: i64 traceIdHigh, 3: i64 spanId, 4: i64 parentSpanId, 5: string operationName,
//! 6: list<SpanRef> references, 7: i32 flags, 8: i64 startTime, 9: i64 duration, 10: list<Tag>
//! tags, 11: list<Log> logs }` (times in microseconds). Agent: `oneway void emitBatch(1: Batch)`,
//! `oneway void emitZipkinBatch(1: list<zipkincore.Span>)`.

use super::{Batch, JaegerSpan, Log, Process, RefType, SpanRef, Tag, TagValue};
use crate::thrift::{self, BinaryReader, CompactReader, Reader, TType, Writer};
use crate::{ExportTraceServiceRequest, TranslateError};

const FORMAT_BINARY: &str = "Jaeger thrift Batch (binary protocol)";
const FORMAT_COMPACT: &str = "Jaeger thrift Batch (compact protocol)";
const FORMAT_AGENT_COMPACT: &str = "Jaeger agent emitBatch (compact thrift)";
const FORMAT_AGENT_BINARY: &str = "Jaeger agent emitBatch (binary thrift)";

fn ids(high: i64, low: i64) -> Vec<u8> {
    crate::otlp::trace_id(high as u64, low as u64)
}

fn micros_to_nanos(us: i64) -> u64 {
    (us.max(0) as u64).saturating_mul(1000)
}

fn read_tag<'a, R: Reader<'a>>(r: &mut R) -> thrift::Result<Tag> {
    r.struct_begin()?;
    let (mut key, mut vtype) = (String::new(), 0i32);
    let (mut s, mut d, mut b, mut l, mut bin) = (None, None, None, None, None);
    while let Some((t, id)) = r.field_begin()? {
        match (id, t) {
            (1, TType::Binary) => key = r.string()?,
            (2, TType::I32) => vtype = r.i32()?,
            (3, TType::Binary) => s = Some(r.string()?),
            (4, TType::Double) => d = Some(r.double()?),
            (5, TType::Bool) => b = Some(r.bool()?),
            (6, TType::I64) => l = Some(r.i64()?),
            (7, TType::Binary) => bin = Some(r.binary()?.to_vec()),
            _ => r.skip(t)?,
        }
    }
    r.struct_end();
    let value = match vtype {
        0 => TagValue::Str(s.unwrap_or_default()),
        1 => TagValue::Double(d.unwrap_or_default()),
        2 => TagValue::Bool(b.unwrap_or_default()),
        3 => TagValue::Long(l.unwrap_or_default()),
        4 => TagValue::Binary(bin.unwrap_or_default()),
        other => TagValue::Str(format!("<Unknown Jaeger TagType {other}>")),
    };
    Ok(Tag { key, value })
}

fn read_tags<'a, R: Reader<'a>>(r: &mut R) -> thrift::Result<Vec<Tag>> {
    r.list_of(TType::Struct, |r| read_tag(r))
}

fn read_log<'a, R: Reader<'a>>(r: &mut R) -> thrift::Result<Log> {
    r.struct_begin()?;
    let mut log = Log {
        timestamp_nanos: 0,
        fields: Vec::new(),
    };
    while let Some((t, id)) = r.field_begin()? {
        match (id, t) {
            (1, TType::I64) => log.timestamp_nanos = micros_to_nanos(r.i64()?),
            (2, TType::List) => log.fields = read_tags(r)?,
            _ => r.skip(t)?,
        }
    }
    r.struct_end();
    Ok(log)
}

fn read_ref<'a, R: Reader<'a>>(r: &mut R) -> thrift::Result<SpanRef> {
    r.struct_begin()?;
    let (mut rt, mut low, mut high, mut span) = (0, 0, 0, 0);
    while let Some((t, id)) = r.field_begin()? {
        match (id, t) {
            (1, TType::I32) => rt = r.i32()?,
            (2, TType::I64) => low = r.i64()?,
            (3, TType::I64) => high = r.i64()?,
            (4, TType::I64) => span = r.i64()?,
            _ => r.skip(t)?,
        }
    }
    r.struct_end();
    Ok(SpanRef {
        ref_type: if rt == 0 {
            RefType::ChildOf
        } else {
            RefType::FollowsFrom
        },
        trace_id: ids(high, low),
        span_id: span.to_be_bytes().to_vec(),
    })
}

fn read_span<'a, R: Reader<'a>>(r: &mut R) -> thrift::Result<JaegerSpan> {
    r.struct_begin()?;
    let (mut low, mut high, mut start, mut dur) = (0i64, 0i64, 0i64, 0i64);
    let mut s = JaegerSpan::default();
    while let Some((t, id)) = r.field_begin()? {
        match (id, t) {
            (1, TType::I64) => low = r.i64()?,
            (2, TType::I64) => high = r.i64()?,
            (3, TType::I64) => s.span_id = r.i64()?.to_be_bytes().to_vec(),
            (4, TType::I64) => s.parent_span_id = r.i64()?.to_be_bytes().to_vec(),
            (5, TType::Binary) => s.operation_name = r.string()?,
            (6, TType::List) => s.references = r.list_of(TType::Struct, |r| read_ref(r))?,
            (7, TType::I32) => s.flags = r.i32()? as u32,
            (8, TType::I64) => start = r.i64()?,
            (9, TType::I64) => dur = r.i64()?,
            (10, TType::List) => s.tags = read_tags(r)?,
            (11, TType::List) => s.logs = r.list_of(TType::Struct, |r| read_log(r))?,
            _ => r.skip(t)?,
        }
    }
    r.struct_end();
    s.trace_id = ids(high, low);
    if s.span_id.is_empty() {
        s.span_id = vec![0; 8];
    }
    s.start_nanos = micros_to_nanos(start);
    s.duration_nanos = micros_to_nanos(dur);
    Ok(s)
}

fn read_process<'a, R: Reader<'a>>(r: &mut R) -> thrift::Result<Process> {
    r.struct_begin()?;
    let mut p = Process::default();
    while let Some((t, id)) = r.field_begin()? {
        match (id, t) {
            (1, TType::Binary) => p.service_name = r.string()?,
            (2, TType::List) => p.tags = read_tags(r)?,
            _ => r.skip(t)?,
        }
    }
    r.struct_end();
    Ok(p)
}

/// Reads a `Batch` struct.
pub fn read_batch<'a, R: Reader<'a>>(r: &mut R) -> thrift::Result<Batch> {
    r.struct_begin()?;
    let mut b = Batch::default();
    while let Some((t, id)) = r.field_begin()? {
        match (id, t) {
            (1, TType::Struct) => b.process = Some(read_process(r)?),
            (2, TType::List) => b.spans = r.list_of(TType::Struct, |r| read_span(r))?,
            _ => r.skip(t)?,
        }
    }
    r.struct_end();
    Ok(b)
}

fn finish<'a, R: Reader<'a>>(r: &R, format: &'static str) -> Result<(), TranslateError> {
    if r.remaining() != 0 {
        return Err(TranslateError::new(
            format,
            format!("{} bytes after the end of the message", r.remaining()),
        ));
    }
    Ok(())
}

/// A `Batch` in the binary protocol: the body of Jaeger's HTTP `POST /api/traces`.
pub fn decode_thrift_binary_batch(data: &[u8]) -> Result<ExportTraceServiceRequest, TranslateError> {
    let mut r = BinaryReader::new(data);
    let b = read_batch(&mut r).map_err(|e| TranslateError::new(FORMAT_BINARY, e.0))?;
    finish(&r, FORMAT_BINARY)?;
    Ok(super::to_otlp(&[b]))
}

/// A `Batch` in the compact protocol.
pub fn decode_thrift_compact_batch(data: &[u8]) -> Result<ExportTraceServiceRequest, TranslateError> {
    let mut r = CompactReader::new(data);
    let b = read_batch(&mut r).map_err(|e| TranslateError::new(FORMAT_COMPACT, e.0))?;
    finish(&r, FORMAT_COMPACT)?;
    Ok(super::to_otlp(&[b]))
}

fn decode_agent<'a, R: Reader<'a>>(
    mut r: R,
    format: &'static str,
) -> Result<ExportTraceServiceRequest, TranslateError> {
    let e = |m: String| TranslateError::new(format, m);
    let (name, mtype, _seq) = r.message_begin().map_err(|x| e(x.0))?;
    if mtype != thrift::MSG_ONEWAY && mtype != thrift::MSG_CALL {
        return Err(e(format!("message type {mtype} is not a call")));
    }
    let zipkin = match name {
        b"emitBatch" => false,
        b"emitZipkinBatch" => true,
        other => {
            return Err(e(format!(
                "unknown method `{}` (expected emitBatch)",
                String::from_utf8_lossy(other)
            )))
        }
    };
    // The arguments struct: field 1 is the batch (or the list of Zipkin spans).
    r.struct_begin().map_err(|x| e(x.0))?;
    let mut out = None;
    while let Some((t, id)) = r.field_begin().map_err(|x| e(x.0))? {
        match (id, t, zipkin) {
            (1, TType::Struct, false) => out = Some(super::to_otlp(&[read_batch(&mut r).map_err(|x| e(x.0))?])),
            (1, TType::List, true) => {
                let spans = r
                    .list_of(TType::Struct, |r| crate::zipkin::v1_thrift::read_span(r))
                    .map_err(|x| e(x.0))?;
                let v2 = crate::zipkin::v1::convert(spans);
                out = Some(crate::zipkin::to_otlp(v2));
            }
            _ => r.skip(t).map_err(|x| e(x.0))?,
        }
    }
    r.struct_end();
    finish(&r, format)?;
    out.ok_or_else(|| e("emitBatch without a batch argument".into()))
}

/// A UDP datagram of the agent's compact protocol (port 6831).
pub fn decode_agent_compact(datagram: &[u8]) -> Result<ExportTraceServiceRequest, TranslateError> {
    decode_agent(CompactReader::new(datagram), FORMAT_AGENT_COMPACT)
}

/// A UDP datagram of the agent's binary protocol (port 6832).
pub fn decode_agent_binary(datagram: &[u8]) -> Result<ExportTraceServiceRequest, TranslateError> {
    decode_agent(BinaryReader::new(datagram), FORMAT_AGENT_BINARY)
}

// ---- encoding (tests, fuzz seeds, tools) ----

fn split_trace(id: &[u8]) -> (i64, i64) {
    let mut b = [0u8; 16];
    let n = id.len().min(16);
    b[16 - n..].copy_from_slice(&id[id.len() - n..]);
    (
        i64::from_be_bytes(b[..8].try_into().unwrap()),
        i64::from_be_bytes(b[8..].try_into().unwrap()),
    )
}

fn id64(id: &[u8]) -> i64 {
    split_trace(id).1
}

fn write_tags<W: Writer>(w: &mut W, id: i16, tags: &[Tag]) {
    w.field(TType::List, id);
    w.list_begin(TType::Struct, tags.len());
    for t in tags {
        w.struct_begin();
        w.field(TType::Binary, 1);
        w.string(&t.key);
        w.field(TType::I32, 2);
        match &t.value {
            TagValue::Str(s) => {
                w.i32(0);
                w.field(TType::Binary, 3);
                w.string(s);
            }
            TagValue::Double(d) => {
                w.i32(1);
                w.field(TType::Double, 4);
                w.double(*d);
            }
            TagValue::Bool(b) => {
                w.i32(2);
                w.bool_field(5, *b);
            }
            TagValue::Long(l) => {
                w.i32(3);
                w.field(TType::I64, 6);
                w.i64(*l);
            }
            TagValue::Binary(b) => {
                w.i32(4);
                w.field(TType::Binary, 7);
                w.binary(b);
            }
        }
        w.stop();
        w.struct_end();
    }
}

/// Writes a `Batch` struct (times are written in microseconds).
pub fn write_batch<W: Writer>(w: &mut W, b: &Batch) {
    w.struct_begin();
    if let Some(p) = &b.process {
        w.field(TType::Struct, 1);
        w.struct_begin();
        w.field(TType::Binary, 1);
        w.string(&p.service_name);
        if !p.tags.is_empty() {
            write_tags(w, 2, &p.tags);
        }
        w.stop();
        w.struct_end();
    }
    w.field(TType::List, 2);
    w.list_begin(TType::Struct, b.spans.len());
    for s in &b.spans {
        let (high, low) = split_trace(&s.trace_id);
        w.struct_begin();
        w.field(TType::I64, 1);
        w.i64(low);
        w.field(TType::I64, 2);
        w.i64(high);
        w.field(TType::I64, 3);
        w.i64(id64(&s.span_id));
        w.field(TType::I64, 4);
        w.i64(if s.parent_span_id.is_empty() {
            0
        } else {
            id64(&s.parent_span_id)
        });
        w.field(TType::Binary, 5);
        w.string(&s.operation_name);
        if !s.references.is_empty() {
            w.field(TType::List, 6);
            w.list_begin(TType::Struct, s.references.len());
            for r in &s.references {
                let (h, l) = split_trace(&r.trace_id);
                w.struct_begin();
                w.field(TType::I32, 1);
                w.i32(if r.ref_type == RefType::ChildOf { 0 } else { 1 });
                w.field(TType::I64, 2);
                w.i64(l);
                w.field(TType::I64, 3);
                w.i64(h);
                w.field(TType::I64, 4);
                w.i64(id64(&r.span_id));
                w.stop();
                w.struct_end();
            }
        }
        w.field(TType::I32, 7);
        w.i32(s.flags as i32);
        w.field(TType::I64, 8);
        w.i64((s.start_nanos / 1000) as i64);
        w.field(TType::I64, 9);
        w.i64((s.duration_nanos / 1000) as i64);
        if !s.tags.is_empty() {
            write_tags(w, 10, &s.tags);
        }
        if !s.logs.is_empty() {
            w.field(TType::List, 11);
            w.list_begin(TType::Struct, s.logs.len());
            for l in &s.logs {
                w.struct_begin();
                w.field(TType::I64, 1);
                w.i64((l.timestamp_nanos / 1000) as i64);
                write_tags(w, 2, &l.fields);
                w.stop();
                w.struct_end();
            }
        }
        w.stop();
        w.struct_end();
    }
    w.stop();
    w.struct_end();
}

/// A `Batch` in the binary protocol (an HTTP `/api/traces` body).
pub fn encode_binary_batch(b: &Batch) -> Vec<u8> {
    let mut w = thrift::BinaryWriter::default();
    write_batch(&mut w, b);
    w.into_bytes()
}

fn encode_agent<W: Writer + Default>(b: &Batch) -> Vec<u8> {
    let mut w = W::default();
    w.message_begin("emitBatch", thrift::MSG_ONEWAY, 1);
    w.struct_begin();
    w.field(TType::Struct, 1);
    write_batch(&mut w, b);
    w.stop();
    w.struct_end();
    w.into_bytes()
}

/// An agent `emitBatch` datagram, compact protocol (UDP 6831).
pub fn encode_agent_compact(b: &Batch) -> Vec<u8> {
    encode_agent::<thrift::CompactWriter>(b)
}

/// An agent `emitBatch` datagram, binary protocol (UDP 6832).
pub fn encode_agent_binary(b: &Batch) -> Vec<u8> {
    encode_agent::<thrift::BinaryWriter>(b)
}

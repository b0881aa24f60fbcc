//! A compact, append-only summary of one buffered trace, for "index mode": the sampler keeps
//! this instead of the span bytes and rebuilds, at decision time, the very [`TraceData`] that
//! [`extract::trace_data`] would have built from all the records pushed.
//!
//! What a record contributes is what [`extract::trace_data`] extracts from it for the
//! [`Requirements`] given to [`TraceSummary::push_record`] (the same decoder, one record at a
//! time), encoded compactly:
//! - `data`: one byte stream of varint-encoded spans (layout below);
//! - `ids`: a table of the distinct span IDs met (own and parent IDs), so that a parent costs an
//!   index, not 8 bytes. Looked up linearly; past [`MAX_IDS`] entries IDs are stored inline;
//! - `arena` + `ends`: a table of distinct byte strings (span names, attribute keys and string
//!   values, and the encoded "origin" of each span: its resource attribute list and scope),
//!   de-duplicated by a linear search over the first [`MAX_STRS_SEARCHED`] entries.
//!
//! A span in `data`:
//! ```text
//! b0        bits 0-2 kind (0..=6; 7: a zigzag varint kind follows), bits 3-4 status,
//!           bits 5-6 parent (0 none, 1 ID table index, 2 inline 8 bytes), bit 7 b1 present
//! b1        presence bits: 0 flags differ from the previous span's, 1 trace_state,
//!           2 status_message, 3-5 dropped attributes/events/links counts, 6 events, 7 attributes
//! [kind]    zigzag varint, when b0 kind is 7
//! own id    varint: 0 then 8 inline bytes, or ID table index + 1
//! [parent]  varint ID table index, or 8 inline bytes
//! name      varint string index
//! origin    varint string index of the encoded resource attributes and scope
//! start     zigzag varint of start - (start of the first span pushed), wrapping
//! duration  zigzag varint of end - start, wrapping
//! then, as b1 says: flags, trace_state, status_message, the dropped counts, events
//! (count; each: name, zigzag time - span start, dropped count, attributes), attributes.
//! ```
//! An attribute list is a count then, per attribute, a varint `key string index << 3 | tag`
//! followed by the value: a string index (tag 0), a zigzag varint (1, Int), 8 bytes of the bits
//! (2, Double, bit-exact), nothing (3/4, Bool false/true; 5, Other).
//!
//! Duplicates (same span ID) are stored as pushed and dropped at rebuild (first one wins), as
//! extract does. Offsets in the string table are `u32`: a trace summary is limited to 4 GiB of
//! distinct strings.

use std::collections::{HashMap, HashSet};

use tailsift_otlp::wire::{put_varint, read_varint};
use tailsift_policy::{AttrValue, Requirements, SpanData, SpanEventData, StatusCode, TraceData, SERVICE_NAME_KEY};

use crate::extract;

/// Span IDs kept in the ID table (searched linearly, so at most `MAX_IDS` compares per lookup);
/// IDs met once it is full are stored inline.
pub const MAX_IDS: usize = 4096;
/// Entries of the string table searched for a duplicate before a string is appended.
pub const MAX_STRS_SEARCHED: usize = 1024;

type Attrs<'a> = Vec<(&'a str, AttrValue<'a>)>;

/// The distinct byte strings of one trace: one arena and the end offset of each entry.
#[derive(Debug, Default, Clone)]
struct Strings {
    arena: Vec<u8>,
    ends: Vec<u32>,
}

impl Strings {
    fn intern(&mut self, s: &[u8]) -> u64 {
        let mut start = 0usize;
        for (i, &end) in self.ends.iter().take(MAX_STRS_SEARCHED).enumerate() {
            let end = end as usize;
            if end.wrapping_sub(start) == s.len() && self.arena.get(start..end) == Some(s) {
                return i as u64;
            }
            start = end;
        }
        self.arena.extend_from_slice(s);
        self.ends.push(self.arena.len() as u32);
        (self.ends.len() - 1) as u64
    }

    fn get(&self, i: u64) -> Option<&[u8]> {
        let i = usize::try_from(i).ok()?;
        let end = *self.ends.get(i)? as usize;
        let start = match i {
            0 => 0,
            _ => *self.ends.get(i - 1)? as usize,
        };
        self.arena.get(start..end)
    }

    fn str(&self, i: u64) -> Option<&str> {
        std::str::from_utf8(self.get(i)?).ok()
    }
}

/// The compact summary of one trace (see the module documentation).
#[derive(Debug, Default, Clone)]
pub struct TraceSummary {
    data: Vec<u8>,
    ids: Vec<[u8; 8]>,
    strs: Strings,
    /// Start time of the first span pushed (times are stored relative to it).
    base: u64,
    /// Flags of the last span pushed (a span's flags are stored only when they differ).
    last_flags: u32,
    spans: usize,
    size: u64,
}

/// Decoded resource/scope tables a rebuilt [`TraceData`] borrows from.
#[derive(Default)]
pub struct SummaryScratch<'a> {
    origins: Vec<Origin<'a>>,
}

impl SummaryScratch<'_> {
    pub fn new() -> Self {
        Self::default()
    }
}

/// A span's resource attributes and instrumentation scope, decoded.
#[derive(Default)]
struct Origin<'a> {
    resource: Attrs<'a>,
    service: &'a str,
    scope_name: &'a str,
    scope_version: &'a str,
    scope_attributes: Attrs<'a>,
}

// b0 bits.
const KIND_MASK: u8 = 0x07;
const KIND_ESCAPE: u8 = 7;
const STATUS_SHIFT: u8 = 3;
const PARENT_SHIFT: u8 = 5;
const PARENT_NONE: u8 = 0;
const PARENT_INDEX: u8 = 1;
const PARENT_INLINE: u8 = 2;
const HAS_B1: u8 = 0x80;
// b1 bits.
const B1_FLAGS: u8 = 1;
const B1_TRACE_STATE: u8 = 1 << 1;
const B1_STATUS_MESSAGE: u8 = 1 << 2;
const B1_DROPPED_ATTRIBUTES: u8 = 1 << 3;
const B1_DROPPED_EVENTS: u8 = 1 << 4;
const B1_DROPPED_LINKS: u8 = 1 << 5;
const B1_EVENTS: u8 = 1 << 6;
const B1_ATTRIBUTES: u8 = 1 << 7;
// Attribute value tags.
const TAG_STR: u64 = 0;
const TAG_INT: u64 = 1;
const TAG_DOUBLE: u64 = 2;
const TAG_FALSE: u64 = 3;
const TAG_TRUE: u64 = 4;
const TAG_OTHER: u64 = 5;

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_attrs(strs: &mut Strings, out: &mut Vec<u8>, attrs: &[(&str, AttrValue<'_>)]) {
    put_varint(out, attrs.len() as u64);
    for (k, v) in attrs {
        let key = strs.intern(k.as_bytes()) << 3;
        match *v {
            AttrValue::Str(s) => {
                put_varint(out, key | TAG_STR);
                put_varint(out, strs.intern(s.as_bytes()));
            }
            AttrValue::Int(i) => {
                put_varint(out, key | TAG_INT);
                put_varint(out, zigzag(i));
            }
            AttrValue::Double(d) => {
                put_varint(out, key | TAG_DOUBLE);
                out.extend_from_slice(&d.to_bits().to_le_bytes());
            }
            AttrValue::Bool(b) => put_varint(out, key | if b { TAG_TRUE } else { TAG_FALSE }),
            AttrValue::Other => put_varint(out, key | TAG_OTHER),
        }
    }
}

/// Reads what [`TraceSummary`] wrote; `None` on anything inconsistent (never for its own data).
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    strs: &'a Strings,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn varint(&mut self) -> Option<u64> {
        read_varint(self.buf, &mut self.pos, 0).ok()
    }

    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.varint()?).ok()
    }

    fn eight(&mut self) -> Option<[u8; 8]> {
        let b = self.buf.get(self.pos..self.pos.checked_add(8)?)?.try_into().ok()?;
        self.pos += 8;
        Some(b)
    }

    fn str(&mut self) -> Option<&'a str> {
        let i = self.varint()?;
        self.strs.str(i)
    }

    fn attrs(&mut self) -> Option<Attrs<'a>> {
        let n = self.varint()?;
        // A count is bounded by the bytes left (each attribute takes at least one).
        let mut out = Vec::with_capacity(usize::try_from(n).ok()?.min(self.buf.len() - self.pos.min(self.buf.len())));
        for _ in 0..n {
            let kt = self.varint()?;
            let key = self.strs.str(kt >> 3)?;
            let value = match kt & 7 {
                TAG_STR => AttrValue::Str(self.str()?),
                TAG_INT => AttrValue::Int(unzigzag(self.varint()?)),
                TAG_DOUBLE => AttrValue::Double(f64::from_bits(u64::from_le_bytes(self.eight()?))),
                TAG_FALSE => AttrValue::Bool(false),
                TAG_TRUE => AttrValue::Bool(true),
                TAG_OTHER => AttrValue::Other,
                _ => return None,
            };
            out.push((key, value));
        }
        Some(out)
    }
}

/// Identity of a span's (resource, scope) in one extracted record: equal keys mean the same
/// decoded slices, hence equal contents.
type OriginKey = [usize; 8];

fn origin_key(sd: &SpanData<'_>) -> OriginKey {
    [
        sd.resource_attributes.as_ptr() as usize,
        sd.resource_attributes.len(),
        sd.scope_attributes.as_ptr() as usize,
        sd.scope_attributes.len(),
        sd.scope_name.as_ptr() as usize,
        sd.scope_name.len(),
        sd.scope_version.as_ptr() as usize,
        sd.scope_version.len(),
    ]
}

impl TraceSummary {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the spans of one record (an encoded `ExportTraceServiceRequest` of this trace),
    /// exactly what [`extract::trace_data`] extracts from it for `req`, and `record.len()` to the
    /// trace's size. The same `req` must be used for every record of a trace.
    pub fn push_record(&mut self, trace_id: [u8; 16], record: &[u8], req: &Requirements) {
        self.size = self.size.wrapping_add(record.len() as u64);
        let records = [record];
        let mut res = extract::Resources::new();
        let td = extract::trace_data(trace_id, &records, req, &mut res);
        let mut origins: Vec<(OriginKey, u64)> = Vec::new();
        let mut scratch = Vec::new();
        for sd in &td.spans {
            let key = origin_key(sd);
            let origin = match origins.iter().find(|(k, _)| *k == key) {
                Some(&(_, i)) => i,
                None => {
                    scratch.clear();
                    put_attrs(&mut self.strs, &mut scratch, sd.resource_attributes);
                    put_varint(&mut scratch, self.strs.intern(sd.scope_name.as_bytes()));
                    put_varint(&mut scratch, self.strs.intern(sd.scope_version.as_bytes()));
                    put_attrs(&mut self.strs, &mut scratch, sd.scope_attributes);
                    let i = self.strs.intern(&scratch);
                    origins.push((key, i));
                    i
                }
            };
            self.push_span(sd, origin);
        }
    }

    /// The index of `id` in the ID table, adding it when there is room.
    fn id_index(&mut self, id: [u8; 8]) -> Option<usize> {
        if let Some(i) = self.ids.iter().position(|x| *x == id) {
            return Some(i);
        }
        (self.ids.len() < MAX_IDS).then(|| {
            self.ids.push(id);
            self.ids.len() - 1
        })
    }

    fn push_span(&mut self, sd: &SpanData<'_>, origin: u64) {
        if self.spans == 0 {
            self.base = sd.start_unix_nano;
        }
        self.spans += 1;
        let own = self.id_index(sd.span_id);
        let parent = sd.parent_span_id.map(|p| (p, self.id_index(p)));
        let kind = u8::try_from(sd.kind).ok().filter(|k| *k < KIND_ESCAPE);
        let status = match sd.status {
            StatusCode::Unset => 0u8,
            StatusCode::Ok => 1,
            StatusCode::Error => 2,
        };
        let parent_mode = match parent {
            None => PARENT_NONE,
            Some((_, Some(_))) => PARENT_INDEX,
            Some((_, None)) => PARENT_INLINE,
        };
        let mut b1 = 0u8;
        for (bit, on) in [
            (B1_FLAGS, sd.flags != self.last_flags),
            (B1_TRACE_STATE, !sd.trace_state.is_empty()),
            (B1_STATUS_MESSAGE, !sd.status_message.is_empty()),
            (B1_DROPPED_ATTRIBUTES, sd.dropped_attributes_count != 0),
            (B1_DROPPED_EVENTS, sd.dropped_events_count != 0),
            (B1_DROPPED_LINKS, sd.dropped_links_count != 0),
            (B1_EVENTS, !sd.events.is_empty()),
            (B1_ATTRIBUTES, !sd.attributes.is_empty()),
        ] {
            if on {
                b1 |= bit;
            }
        }
        let b0 = kind.unwrap_or(KIND_ESCAPE)
            | status << STATUS_SHIFT
            | parent_mode << PARENT_SHIFT
            | if b1 != 0 { HAS_B1 } else { 0 };
        let out = &mut self.data;
        out.push(b0);
        if b1 != 0 {
            out.push(b1);
        }
        if kind.is_none() {
            put_varint(out, zigzag(i64::from(sd.kind)));
        }
        match own {
            Some(i) => put_varint(out, i as u64 + 1),
            None => {
                out.push(0);
                out.extend_from_slice(&sd.span_id);
            }
        }
        match parent {
            Some((_, Some(i))) => put_varint(out, i as u64),
            Some((p, None)) => out.extend_from_slice(&p),
            None => {}
        }
        put_varint(out, self.strs.intern(sd.name.as_bytes()));
        put_varint(out, origin);
        put_varint(out, zigzag(sd.start_unix_nano.wrapping_sub(self.base) as i64));
        put_varint(out, zigzag(sd.end_unix_nano.wrapping_sub(sd.start_unix_nano) as i64));
        if b1 & B1_FLAGS != 0 {
            put_varint(out, u64::from(sd.flags));
            self.last_flags = sd.flags;
        }
        if b1 & B1_TRACE_STATE != 0 {
            put_varint(out, self.strs.intern(sd.trace_state.as_bytes()));
        }
        if b1 & B1_STATUS_MESSAGE != 0 {
            put_varint(out, self.strs.intern(sd.status_message.as_bytes()));
        }
        for (bit, n) in [
            (B1_DROPPED_ATTRIBUTES, sd.dropped_attributes_count),
            (B1_DROPPED_EVENTS, sd.dropped_events_count),
            (B1_DROPPED_LINKS, sd.dropped_links_count),
        ] {
            if b1 & bit != 0 {
                put_varint(out, u64::from(n));
            }
        }
        if b1 & B1_EVENTS != 0 {
            put_varint(out, sd.events.len() as u64);
            for ev in &sd.events {
                put_varint(out, self.strs.intern(ev.name.as_bytes()));
                put_varint(out, zigzag(ev.time_unix_nano.wrapping_sub(sd.start_unix_nano) as i64));
                put_varint(out, u64::from(ev.dropped_attributes_count));
                put_attrs(&mut self.strs, out, &ev.attributes);
            }
        }
        if b1 & B1_ATTRIBUTES != 0 {
            put_attrs(&mut self.strs, out, &sd.attributes);
        }
    }

    /// Rebuilds the policy view: equal to [`extract::trace_data`] over all the records pushed,
    /// for the requirements they were pushed with. `scratch` holds the decoded resource and
    /// scope tables the spans borrow.
    pub fn trace_data<'a>(&'a self, trace_id: [u8; 16], scratch: &'a mut SummaryScratch<'a>) -> TraceData<'a> {
        let mut r = Reader {
            buf: &self.data,
            pos: 0,
            strs: &self.strs,
        };
        let mut last_flags = 0u32;
        let mut seen = HashSet::with_capacity(self.spans);
        let mut spans = Vec::with_capacity(self.spans);
        let mut origin_of = Vec::with_capacity(self.spans);
        while !r.done() {
            let Some((sd, origin)) = self.read_span(&mut r, &mut last_flags) else {
                break;
            };
            if seen.insert(sd.span_id) {
                spans.push(sd);
                origin_of.push(origin);
            }
        }
        let mut slot: HashMap<u64, usize> = HashMap::new();
        for &o in &origin_of {
            slot.entry(o).or_insert_with(|| {
                scratch.origins.push(self.read_origin(o).unwrap_or_default());
                scratch.origins.len() - 1
            });
        }
        let scratch: &'a SummaryScratch<'a> = scratch;
        for (sd, o) in spans.iter_mut().zip(&origin_of) {
            if let Some(origin) = slot.get(o).and_then(|&i| scratch.origins.get(i)) {
                sd.resource_attributes = &origin.resource;
                sd.service = origin.service;
                sd.scope_name = origin.scope_name;
                sd.scope_version = origin.scope_version;
                sd.scope_attributes = &origin.scope_attributes;
            }
        }
        TraceData {
            trace_id,
            spans,
            size_bytes: self.size,
        }
    }

    fn read_origin(&self, i: u64) -> Option<Origin<'_>> {
        let mut r = Reader {
            buf: self.strs.get(i)?,
            pos: 0,
            strs: &self.strs,
        };
        let resource = r.attrs()?;
        let service = resource
            .iter()
            .find_map(|(k, v)| match (*k, v) {
                (SERVICE_NAME_KEY, AttrValue::Str(s)) => Some(*s),
                _ => None,
            })
            .unwrap_or("");
        Some(Origin {
            service,
            scope_name: r.str()?,
            scope_version: r.str()?,
            scope_attributes: r.attrs()?,
            resource,
        })
    }

    /// One span (without its origin's fields) and its origin's string index.
    fn read_span<'a>(&'a self, r: &mut Reader<'a>, last_flags: &mut u32) -> Option<(SpanData<'a>, u64)> {
        let b0 = r.byte()?;
        let b1 = if b0 & HAS_B1 != 0 { r.byte()? } else { 0 };
        let kind = match b0 & KIND_MASK {
            KIND_ESCAPE => i32::try_from(unzigzag(r.varint()?)).ok()?,
            k => i32::from(k),
        };
        let status = match (b0 >> STATUS_SHIFT) & 3 {
            0 => StatusCode::Unset,
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => return None,
        };
        let span_id = match r.varint()? {
            0 => r.eight()?,
            i => *self.ids.get(usize::try_from(i - 1).ok()?)?,
        };
        let parent_span_id = match (b0 >> PARENT_SHIFT) & 3 {
            PARENT_NONE => None,
            PARENT_INDEX => Some(*self.ids.get(usize::try_from(r.varint()?).ok()?)?),
            PARENT_INLINE => Some(r.eight()?),
            _ => return None,
        };
        let name = r.str()?;
        let origin = r.varint()?;
        let start = self.base.wrapping_add(unzigzag(r.varint()?) as u64);
        let end = start.wrapping_add(unzigzag(r.varint()?) as u64);
        if b1 & B1_FLAGS != 0 {
            *last_flags = r.u32()?;
        }
        let mut sd = SpanData {
            span_id,
            parent_span_id,
            name,
            kind,
            start_unix_nano: start,
            end_unix_nano: end,
            status,
            flags: *last_flags,
            ..Default::default()
        };
        if b1 & B1_TRACE_STATE != 0 {
            sd.trace_state = r.str()?;
        }
        if b1 & B1_STATUS_MESSAGE != 0 {
            sd.status_message = r.str()?;
        }
        if b1 & B1_DROPPED_ATTRIBUTES != 0 {
            sd.dropped_attributes_count = r.u32()?;
        }
        if b1 & B1_DROPPED_EVENTS != 0 {
            sd.dropped_events_count = r.u32()?;
        }
        if b1 & B1_DROPPED_LINKS != 0 {
            sd.dropped_links_count = r.u32()?;
        }
        if b1 & B1_EVENTS != 0 {
            let n = r.varint()?;
            for _ in 0..n {
                sd.events.push(SpanEventData {
                    name: r.str()?,
                    time_unix_nano: start.wrapping_add(unzigzag(r.varint()?) as u64),
                    dropped_attributes_count: r.u32()?,
                    attributes: r.attrs()?,
                });
            }
        }
        if b1 & B1_ATTRIBUTES != 0 {
            sd.attributes = r.attrs()?;
        }
        Some((sd, origin))
    }

    /// Spans pushed, duplicates included.
    pub fn spans(&self) -> usize {
        self.spans
    }

    /// The trace's size so far: the sum of the lengths of the records pushed.
    pub fn size_bytes(&self) -> u64 {
        self.size
    }

    /// Heap memory held (capacities), for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.data.capacity()
            + self.ids.capacity() * std::mem::size_of::<[u8; 8]>()
            + self.strs.arena.capacity()
            + self.strs.ends.capacity() * std::mem::size_of::<u32>()
    }

    /// Gives back spare capacity (a trace that went idle).
    pub fn shrink(&mut self) {
        self.data.shrink_to_fit();
        self.ids.shrink_to_fit();
        self.strs.arena.shrink_to_fit();
        self.strs.ends.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{span::Event, ResourceSpans, ScopeSpans, Span, Status};
    use proptest::prelude::*;
    use prost::Message;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const TID: [u8; 16] = [0xab; 16];
    const KEYS: [&str; 6] = ["service.name", "k1", "k2", "k3", "http.status_code", "exception.type"];

    /// `TraceData` with doubles compared bit-exactly (derived `PartialEq` says NaN != NaN), one
    /// string per span.
    fn canon(td: &TraceData<'_>) -> (String, Vec<String>) {
        fn attrs(a: &[(&str, AttrValue<'_>)]) -> String {
            a.iter()
                .map(|(k, v)| match v {
                    AttrValue::Double(d) => format!("{k:?}=D{:#x}", d.to_bits()),
                    v => format!("{k:?}={v:?}"),
                })
                .collect::<Vec<_>>()
                .join(",")
        }
        let spans = td
            .spans
            .iter()
            .map(|s| {
                let events: Vec<String> = s
                    .events
                    .iter()
                    .map(|e| {
                        format!(
                            "{:?}@{} d{} [{}]",
                            e.name,
                            e.time_unix_nano,
                            e.dropped_attributes_count,
                            attrs(&e.attributes)
                        )
                    })
                    .collect();
                format!(
                    "{:?} {:?} {:?} k{} {}..{} {:?} ts{:?} svc{:?} a[{}] r[{}] f{:#x} m{:?} d{}/{}/{} e{:?} s{:?}/{:?}[{}]",
                    s.span_id,
                    s.parent_span_id,
                    s.name,
                    s.kind,
                    s.start_unix_nano,
                    s.end_unix_nano,
                    s.status,
                    s.trace_state,
                    s.service,
                    attrs(&s.attributes),
                    attrs(s.resource_attributes),
                    s.flags,
                    s.status_message,
                    s.dropped_attributes_count,
                    s.dropped_events_count,
                    s.dropped_links_count,
                    events,
                    s.scope_name,
                    s.scope_version,
                    attrs(s.scope_attributes),
                )
            })
            .collect();
        (format!("{:?} {}", td.trace_id, td.size_bytes), spans)
    }

    fn has_nan(td: &TraceData<'_>) -> bool {
        let nan = |a: &[(&str, AttrValue<'_>)]| a.iter().any(|(_, v)| matches!(v, AttrValue::Double(d) if d.is_nan()));
        td.spans.iter().any(|s| {
            nan(&s.attributes)
                || nan(s.resource_attributes)
                || nan(s.scope_attributes)
                || s.events.iter().any(|e| nan(&e.attributes))
        })
    }

    /// Pushes `records` (with a `shrink` after the first half) and checks the rebuilt view
    /// against extract's.
    fn check(records: &[bytes::Bytes], req: &Requirements) {
        let mut s = TraceSummary::new();
        for (i, r) in records.iter().enumerate() {
            if i == records.len() / 2 {
                s.shrink();
            }
            s.push_record(TID, r, req);
        }
        let mut res = extract::Resources::new();
        let want = extract::trace_data(TID, records, req, &mut res);
        let mut scratch = SummaryScratch::new();
        let got = s.trace_data(TID, &mut scratch);
        assert_eq!(canon(&got), canon(&want));
        if !has_nan(&want) {
            assert_eq!(got, want);
        }
        assert_eq!(s.size_bytes(), want.size_bytes);
        assert!(s.spans() >= want.spans.len());
        assert!(s.heap_bytes() >= s.data.len() + s.strs.arena.len());
    }

    fn pick<'x, T>(rng: &mut StdRng, xs: &'x [T]) -> &'x T {
        &xs[rng.random_range(0..xs.len())]
    }

    fn value(rng: &mut StdRng) -> Option<AnyValue> {
        use any_value::Value as V;
        let v = match rng.random_range(0..10) {
            0 => return None,
            1 => None,
            2 | 3 => Some(V::StringValue((*pick(rng, &["a", "b", "prod", "", "é", "GET /x"])).into())),
            4 => {
                let r = rng.random();
                Some(V::IntValue(*pick(rng, &[0, -1, 1, i64::MIN, i64::MAX, r])))
            }
            5 => {
                let r = rng.random();
                Some(V::DoubleValue(f64::from_bits(*pick(
                rng,
                &[
                    0,
                    (-0.0f64).to_bits(),
                    f64::NAN.to_bits(),
                    0x7ff8_0000_0000_1234,
                    0xfff0_0000_0000_0001,
                    f64::INFINITY.to_bits(),
                    1.5f64.to_bits(),
                    r,
                ],
            ))))
            }
            6 => Some(V::BoolValue(rng.random())),
            7 => Some(V::BytesValue(vec![1, 2, 3])),
            8 => Some(V::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(V::IntValue(1)),
                }],
            })),
            _ => Some(V::StringValue(format!("v{}", rng.random_range(0..1000)))),
        };
        Some(AnyValue { value: v })
    }

    fn kvs(rng: &mut StdRng, max: usize) -> Vec<KeyValue> {
        (0..rng.random_range(0..=max))
            .map(|_| KeyValue {
                key: (*pick(rng, &KEYS)).into(),
                value: value(rng),
                ..Default::default()
            })
            .collect()
    }

    fn time(rng: &mut StdRng, base: u64) -> u64 {
        match rng.random_range(0..8) {
            0 => 0,
            1 => u64::MAX,
            2 => rng.random(),
            3 => base.wrapping_sub(rng.random_range(0..1_000_000)),
            _ => base.wrapping_add(rng.random_range(0..5_000_000_000)),
        }
    }

    fn span(rng: &mut StdRng, ids: &[[u8; 8]], base: u64) -> Span {
        let start = time(rng, base);
        let id = |rng: &mut StdRng| -> Vec<u8> {
            match rng.random_range(0..20) {
                0 => vec![],
                1 => vec![1, 2, 3],
                2 => vec![0; 8],
                3 => rng.random::<[u8; 8]>().to_vec(),
                _ => pick(rng, ids).to_vec(),
            }
        };
        Span {
            trace_id: match rng.random_range(0..20) {
                0 => vec![1; 16],
                1 => vec![0xab; 15],
                _ => TID.to_vec(),
            },
            span_id: id(rng),
            parent_span_id: if rng.random_bool(0.3) { vec![] } else { id(rng) },
            trace_state: (*pick(rng, &["", "", "", "vendor=x"])).into(),
            name: (*pick(rng, &["GET /cart", "SELECT", "publish", "", "GET /cart"])).into(),
            kind: *pick(rng, &[0, 1, 2, 3, 4, 5, 6, 7, -1, i32::MAX, i32::MIN, 1000]),
            start_time_unix_nano: start,
            end_time_unix_nano: if rng.random_bool(0.8) {
                start.wrapping_add(rng.random_range(0..2_000_000_000))
            } else {
                time(rng, base)
            },
            attributes: kvs(rng, 4),
            dropped_attributes_count: *pick(rng, &[0, 0, 0, 3, u32::MAX]),
            events: (0..*pick(rng, &[0, 0, 1, 3]))
                .map(|_| Event {
                    time_unix_nano: time(rng, start),
                    name: (*pick(rng, &["exception", "", "retry"])).into(),
                    attributes: kvs(rng, 3),
                    dropped_attributes_count: *pick(rng, &[0, 0, 2, u32::MAX]),
                })
                .collect(),
            dropped_events_count: *pick(rng, &[0, 0, 0, 7]),
            links: vec![],
            dropped_links_count: *pick(rng, &[0, 0, 0, 1]),
            status: match rng.random_range(0..4) {
                0 => None,
                _ => Some(Status {
                    code: *pick(rng, &[0, 1, 2, 3, -1]),
                    message: (*pick(rng, &["", "", "boom", "deadline exceeded"])).into(),
                }),
            },
            flags: {
                let r = rng.random();
                *pick(rng, &[0, 0, 1, 0x100, 0x101, 0x301, r])
            },
        }
    }

    fn record(rng: &mut StdRng, ids: &[[u8; 8]], base: u64) -> Vec<u8> {
        let resource_spans = (0..rng.random_range(0..=3))
            .map(|_| ResourceSpans {
                resource: rng.random_bool(0.9).then(|| Resource {
                    attributes: kvs(rng, 4),
                    ..Default::default()
                }),
                scope_spans: (0..rng.random_range(0..=3))
                    .map(|_| ScopeSpans {
                        scope: rng.random_bool(0.8).then(|| InstrumentationScope {
                            name: (*pick(rng, &["", "io.otel.http", "jdbc"])).into(),
                            version: (*pick(rng, &["", "1.0", "2.1"])).into(),
                            attributes: kvs(rng, 2),
                            ..Default::default()
                        }),
                        spans: (0..rng.random_range(0..=4)).map(|_| span(rng, ids, base)).collect(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        ExportTraceServiceRequest { resource_spans }.encode_to_vec()
    }

    /// A random trace: valid records, repeated records, and now and then a damaged one.
    fn records(rng: &mut StdRng) -> Vec<bytes::Bytes> {
        let ids: Vec<[u8; 8]> = (0..12).map(|_| rng.random()).collect();
        let r = rng.random();
        let base = *pick(rng, &[0, 1_700_000_000_000_000_000, r]);
        let mut out: Vec<bytes::Bytes> = Vec::new();
        for _ in 0..rng.random_range(1..=5) {
            let r = match rng.random_range(0..12) {
                0 if !out.is_empty() => pick(rng, &out).to_vec(),
                1 => {
                    let mut r = record(rng, &ids, base);
                    let n = rng.random_range(0..=r.len());
                    r.truncate(n);
                    r
                }
                2 => {
                    let mut r = record(rng, &ids, base);
                    if !r.is_empty() {
                        let i = rng.random_range(0..r.len());
                        r[i] ^= 1 << rng.random_range(0..8);
                    }
                    r
                }
                3 => (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
                _ => record(rng, &ids, base),
            };
            out.push(r.into());
        }
        out
    }

    fn requirements(rng: &mut StdRng) -> Requirements {
        let mut keys = |p: f64| {
            KEYS.iter()
                .filter(|_| rng.random_bool(p))
                .map(|k| k.to_string())
                .collect()
        };
        let (span_attributes, resource_attributes, event_attributes, scope_attributes) =
            (keys(0.4), keys(0.4), keys(0.4), keys(0.4));
        Requirements {
            span_attributes,
            resource_attributes,
            event_attributes,
            scope_attributes,
            all_attributes: rng.random_bool(0.15),
            span_events: rng.random_bool(0.5),
            scope: rng.random_bool(0.5),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn summary_rebuilds_what_extract_builds(seed in any::<u64>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            let recs = records(&mut rng);
            let req = requirements(&mut rng);
            check(&recs, &req);
        }

        #[test]
        fn garbage_records_agree_with_extract(bytes in prop::collection::vec(any::<u8>(), 0..200), all in any::<bool>()) {
            let req = Requirements { all_attributes: all, span_events: all, scope: all, ..Default::default() };
            check(&[bytes.into()], &req);
        }
    }

    #[test]
    fn damaged_records_agree_with_extract() {
        let mut rng = StdRng::seed_from_u64(7);
        let ids: Vec<[u8; 8]> = (0..12).map(|_| rng.random()).collect();
        let req = Requirements {
            all_attributes: true,
            span_events: true,
            scope: true,
            ..Default::default()
        };
        for _ in 0..20 {
            let r = record(&mut rng, &ids, 1_700_000_000_000_000_000);
            for n in 0..=r.len() {
                check(&[bytes::Bytes::copy_from_slice(&r[..n])], &req);
            }
            for i in 0..r.len() {
                let mut d = r.clone();
                d[i] = !d[i];
                check(&[d.into(), r.clone().into()], &req);
            }
        }
    }

    #[test]
    fn every_field_round_trips() {
        let mut rng = StdRng::seed_from_u64(1);
        let ids: Vec<[u8; 8]> = (0..12).map(|_| rng.random()).collect();
        let req = Requirements {
            all_attributes: true,
            span_events: true,
            scope: true,
            ..Default::default()
        };
        let mut spans = 0;
        let mut recs = Vec::new();
        while spans < 200 {
            let r = record(&mut rng, &ids, 1_700_000_000_000_000_000);
            let mut res = extract::Resources::new();
            spans += extract::trace_data(TID, std::slice::from_ref(&r), &req, &mut res).spans.len();
            recs.push(bytes::Bytes::from(r));
        }
        check(&recs, &req);
    }

    /// A realistic trace: `n` spans of 4 services (one record per service, spans in random
    /// order), 5 span names, random span IDs, parents among the trace's spans, times within 3 s.
    fn realistic(rng: &mut StdRng, n: usize) -> Vec<bytes::Bytes> {
        use any_value::Value as V;
        let sv = |s: &str| Some(AnyValue {
            value: Some(V::StringValue(s.into())),
        });
        let ids: Vec<[u8; 8]> = (0..n).map(|_| rng.random()).collect();
        let base = 1_764_560_000_000_000_000u64 + rng.random_range(0..1_000_000_000_000);
        let services = ["frontend", "cart", "checkout", "payment"];
        let names = ["GET /cart", "POST /checkout", "SELECT orders", "charge", "redis GET"];
        let mut per_service: Vec<Vec<Span>> = vec![vec![]; services.len()];
        for (i, id) in ids.iter().enumerate() {
            let start = base + rng.random_range(0..3_000_000_000);
            let error = rng.random_bool(0.05);
            per_service[rng.random_range(0..services.len())].push(Span {
                trace_id: TID.to_vec(),
                span_id: id.to_vec(),
                parent_span_id: if i == 0 { vec![] } else { ids[rng.random_range(0..i)].to_vec() },
                name: (*pick(rng, &names)).into(),
                kind: *pick(rng, &[1, 2, 3]),
                start_time_unix_nano: start,
                end_time_unix_nano: start + rng.random_range(50_000..800_000_000),
                attributes: vec![
                    KeyValue {
                        key: "http.method".into(),
                        value: sv("GET"),
                        ..Default::default()
                    },
                    KeyValue {
                        key: "http.status_code".into(),
                        value: Some(AnyValue {
                            value: Some(V::IntValue(if error { 500 } else { 200 })),
                        }),
                        ..Default::default()
                    },
                ],
                status: Some(Status {
                    code: if error { 2 } else { 0 },
                    message: if error { "internal error".into() } else { String::new() },
                }),
                flags: 0x101,
                ..Default::default()
            });
        }
        per_service
            .into_iter()
            .enumerate()
            .filter(|(_, spans)| !spans.is_empty())
            .map(|(i, mut spans)| {
                for k in (1..spans.len()).rev() {
                    spans.swap(k, rng.random_range(0..=k));
                }
                let resource = Resource {
                    attributes: vec![
                        KeyValue {
                            key: "service.name".into(),
                            value: sv(services[i]),
                            ..Default::default()
                        },
                        KeyValue {
                            key: "host.name".into(),
                            value: sv(&format!("{}-7d9f-{i}", services[i])),
                            ..Default::default()
                        },
                        KeyValue {
                            key: "telemetry.sdk.language".into(),
                            value: sv("go"),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                };
                let rec = ExportTraceServiceRequest {
                    resource_spans: vec![ResourceSpans {
                        resource: Some(resource),
                        scope_spans: vec![ScopeSpans {
                            scope: Some(InstrumentationScope {
                                name: "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp".into(),
                                version: "0.58.0".into(),
                                ..Default::default()
                            }),
                            spans,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                };
                rec.encode_to_vec().into()
            })
            .collect()
    }

    /// Bytes per span of realistic traces (heap, after `shrink`), for the default policy's
    /// requirements (nothing beyond `service.name`) and with one span attribute required.
    #[test]
    fn realistic_bytes_per_span() {
        let doc = tailsift_policy::PolicyDocument::from_yaml(crate::DEFAULT_POLICY).unwrap();
        let default_req = tailsift_policy::PolicyEngine::compile(&doc).unwrap().requirements().clone();
        let mut with_status = default_req.clone();
        with_status.span_attributes.insert("http.status_code".into());
        for (label, req, bound) in [("default policy", &default_req, 40.0), ("+http.status_code", &with_status, 46.0)] {
            let mut rng = StdRng::seed_from_u64(42);
            let (mut spans, mut heap, mut grown, mut record_bytes) = (0usize, 0usize, 0usize, 0usize);
            for _ in 0..200 {
                let recs = realistic(&mut rng, 20);
                let mut s = TraceSummary::new();
                for r in &recs {
                    s.push_record(TID, r, req);
                    record_bytes += r.len();
                }
                grown += s.heap_bytes();
                s.shrink();
                heap += s.heap_bytes();
                spans += s.spans();
                check(&recs, req);
            }
            let per_span = heap as f64 / spans as f64;
            println!(
                "{label}: {per_span:.1} B/span after shrink ({:.1} before; records {:.1} B/span; struct {} B/trace)",
                grown as f64 / spans as f64,
                record_bytes as f64 / spans as f64,
                std::mem::size_of::<TraceSummary>()
            );
            assert!(per_span < bound, "{label}: {per_span:.1} B/span");
        }
    }
}

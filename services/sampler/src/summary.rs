//! A compact, append-only summary of one buffered trace, for "index mode": the sampler keeps
//! this instead of the span bytes and rebuilds, at decision time, the very [`TraceData`] that
//! [`extract::trace_data`] would have built from all the records pushed.
//!
//! What a record contributes is what [`extract::trace_data`] extracts from it for the
//! [`Requirements`] given to [`TraceSummary::push_record`] (the same decoder, one record at a
//! time), encoded compactly in four vectors:
//! - `data`: one byte stream of varint-encoded spans (layout below);
//! - `ids`: a table of the distinct span IDs met (own and parent IDs), so that a parent costs an
//!   index, not 8 bytes. Up to [`LINEAR_IDS`] entries it is searched linearly; beyond, through
//!   `index`, an open-addressing hash table of `u16` (about 2.7 to 5.3 bytes per ID, less than
//!   the ~7 bytes a parent reference saves), which [`TraceSummary::shrink`] drops (an idle
//!   trace pays nothing for it; the next push rebuilds it). Past [`MAX_IDS`] IDs, IDs are
//!   stored inline;
//! - `strs`: the distinct byte strings (span names, attribute keys and string values, status
//!   messages, and the encoded "origin" of spans: their resource attributes and scope), each
//!   as a varint length and its bytes, referred to by ordinal (0 is always "", 1 always
//!   `service.name`). A new string is compared with the first [`MAX_STRS_SEARCHED`] entries
//!   (linearly; for a record of [`LOOKUP_SPANS`] spans or more, through a hash table built for
//!   that record, which also holds the strings it adds) and appended when none is equal.
//!
//! A span in `data`:
//! ```text
//! b0        bit 7: same origin as the previous span; bits 0-6: the number
//!           ((kind * 3 + status) * 3 + parent) * 2 + (b1 present), with kind 0..=5 literal
//!           and 6 when a zigzag varint kind follows, status 0 unset 1 ok 2 error, parent 0
//!           none 1 ID table index 2 inline 8 bytes
//! b1        presence bits: 0 flags differ from the previous span's, 1 trace_state,
//!           2 status_message, 3-5 dropped attributes/events/links counts, 6 events, 7 attributes
//! [kind]    zigzag varint, when kind is 6
//! own id    varint: 0 then 8 inline bytes, or ID table index + 1
//! [parent]  varint ID table index, or 8 inline bytes
//! name      varint string ordinal
//! [origin]  varint string ordinal of the encoded resource attributes and scope
//! start     zigzag varint of start - (start of the first span pushed), wrapping
//! duration  zigzag varint of end - start, wrapping
//! then, as b1 says: flags, trace_state, status_message, the dropped counts, events
//! (count; each: name, zigzag time - span start, dropped count, attributes), attributes.
//! ```
//! An attribute list is a count then, per attribute, a varint `key ordinal << 3 | tag` followed
//! by the value: a string ordinal (tag 0), a zigzag varint (1, Int), 8 bytes of the bits (2,
//! Double, bit-exact), nothing (3/4, Bool false/true; 5, Other). An origin is the resource
//! attribute list, the scope name and version ordinals and the scope attribute list.
//!
//! Duplicates (same span ID) are stored as pushed and dropped at rebuild (first one wins), as
//! extract does. The summary is built for one [`Requirements`]: a trace whose records were
//! pushed with different requirements rebuilds what each record was pushed with.
//!
//! **Collapsed summaries.** When the requirements of the first record pushed say the policy
//! reads only trace-level facts ([`Requirements::trace_level`]: status codes, trace flags,
//! service, required attributes, span count, duration, size), spans that agree on those are
//! interchangeable, and `data` holds one entry per distinct combination instead of one per
//! span (for the default policy, a handful per trace whatever its size):
//! ```text
//! key length  varint
//! key         status byte (0 unset 1 ok 2 error), flags varint, origin string ordinal,
//!             attribute list
//! count       u32 little-endian: spans with this key
//! start, end  u64 little-endian each: earliest start and latest end of those spans
//! ```
//! The first [`MAX_CLASSES_SEARCHED`] entries are searched for the key of a new span; past
//! them a span with a new key gets an entry of its own (correct, only larger). The rebuilt
//! view has the same span count, trace duration, size and set of (status, flags, origin,
//! attributes) as extract's, which is all such a policy reads; its spans carry made-up IDs,
//! no names and the class's time bounds. One difference from extract: a span repeated in
//! another record (same span ID, a different record) is counted again; a record repeated as a
//! whole (a client's retry) is skipped by the engine before it gets here.

use std::collections::{HashMap, HashSet};

use tailsift_otlp::wire::{put_varint, read_varint};
use tailsift_policy::{AttrValue, Requirements, SpanData, SpanEventData, StatusCode, TraceData, SERVICE_NAME_KEY};

use crate::extract;

/// Span IDs up to which the ID table is searched linearly (no index).
pub const LINEAR_IDS: usize = 64;
/// Span IDs kept in the ID table (the hash index holds `u16`s); IDs met once it is full are
/// stored inline.
pub const MAX_IDS: usize = u16::MAX as usize;
/// Entries of the string table searched for a duplicate before a string is appended.
pub const MAX_STRS_SEARCHED: usize = 256;
/// Spans of a record from which its strings are looked up in a hash table built for the record
/// (below, linearly).
pub const LOOKUP_SPANS: usize = 16;
/// Entries of a collapsed summary searched for a span's key before a new one is appended.
pub const MAX_CLASSES_SEARCHED: usize = 64;
/// The fixed part of a collapsed entry after its key: count, earliest start, latest end.
const CLASS_FIXED: usize = 4 + 8 + 8;

type Attrs<'a> = Vec<(&'a str, AttrValue<'a>)>;

/// String ordinals that are not stored.
const STR_EMPTY: u64 = 0;
const STR_SERVICE_NAME: u64 = 1;
const STR_RESERVED: u64 = 2;

/// The distinct byte strings of one trace (see the module documentation).
#[derive(Debug, Default, Clone)]
struct Strings {
    arena: Vec<u8>,
    count: u64,
    /// While a large record is pushed: a hash of each entry searched (the first
    /// [`MAX_STRS_SEARCHED`] and those added by this record) to its ordinal and arena offset.
    /// `None` between pushes (it costs no memory then).
    /// Boxed: 8 bytes in every summary instead of 48 (it is `None` almost always).
    #[allow(clippy::box_collection)]
    lookup: Option<Box<HashMap<u64, (u64, usize)>>>,
}

fn str_hash(s: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

impl Strings {
    fn intern(&mut self, s: &[u8]) -> u64 {
        if s.is_empty() {
            return STR_EMPTY;
        }
        if s == SERVICE_NAME_KEY.as_bytes() {
            return STR_SERVICE_NAME;
        }
        let at = self.arena.len();
        let hash = match &self.lookup {
            Some(lookup) => {
                let hash = str_hash(s);
                if let Some(&(i, mut pos)) = lookup.get(&hash) {
                    if self.entry_at(&mut pos) == Some(s) {
                        return i;
                    }
                }
                Some(hash)
            }
            None => {
                let mut pos = 0usize;
                for i in 0..self.count.min(MAX_STRS_SEARCHED as u64) {
                    let Some(entry) = self.entry_at(&mut pos) else { break };
                    if entry == s {
                        return STR_RESERVED + i;
                    }
                }
                None
            }
        };
        put_varint(&mut self.arena, s.len() as u64);
        self.arena.extend_from_slice(s);
        self.count += 1;
        let i = STR_RESERVED + self.count - 1;
        if let (Some(lookup), Some(hash)) = (&mut self.lookup, hash) {
            lookup.insert(hash, (i, at));
        }
        i
    }

    /// Starts a lookup for a large record (instead of a linear search per string).
    fn begin_lookup(&mut self) {
        let mut lookup = HashMap::new();
        let mut pos = 0usize;
        for i in 0..self.count.min(MAX_STRS_SEARCHED as u64) {
            let at = pos;
            let Some(entry) = self.entry_at(&mut pos) else { break };
            lookup.entry(str_hash(entry)).or_insert((STR_RESERVED + i, at));
        }
        self.lookup = Some(Box::new(lookup));
    }

    /// The entry at `*pos` in the arena, moving `*pos` past it.
    fn entry_at(&self, pos: &mut usize) -> Option<&[u8]> {
        let len = usize::try_from(read_varint(&self.arena, pos, 0).ok()?).ok()?;
        let entry = self.arena.get(*pos..pos.checked_add(len)?)?;
        *pos += len;
        Some(entry)
    }

    /// Every entry, by ordinal (the reserved ones included).
    fn table(&self) -> Vec<&[u8]> {
        let mut out: Vec<&[u8]> = Vec::with_capacity(usize::try_from(self.count).unwrap_or(0).saturating_add(2));
        out.push(b"");
        out.push(SERVICE_NAME_KEY.as_bytes());
        let mut pos = 0;
        while pos < self.arena.len() {
            let Some(entry) = self.entry_at(&mut pos) else { break };
            out.push(entry);
        }
        out
    }
}

/// The compact summary of one trace (see the module documentation).
#[derive(Debug, Clone)]
pub struct TraceSummary {
    data: Vec<u8>,
    ids: Vec<[u8; 8]>,
    /// Open-addressing hash index of `ids` (ID table index + 1; 0 empty) once there are more
    /// than [`LINEAR_IDS`]; empty when dropped by [`TraceSummary::shrink`].
    index: Vec<u16>,
    strs: Strings,
    /// Start time of the first span pushed (times are stored relative to it).
    base: u64,
    /// Flags of the last span pushed (a span's flags are stored only when they differ).
    last_flags: u32,
    /// Origin of the last span pushed (`u64::MAX` before the first).
    last_origin: u64,
    spans: usize,
    size: u64,
    /// One entry per distinct trace-level key, not per span (see the module documentation);
    /// decided by the first record pushed.
    collapsed: bool,
}

impl Default for TraceSummary {
    fn default() -> Self {
        TraceSummary {
            data: Vec::new(),
            ids: Vec::new(),
            index: Vec::new(),
            strs: Strings::default(),
            base: 0,
            last_flags: 0,
            last_origin: u64::MAX,
            spans: 0,
            size: 0,
            collapsed: false,
        }
    }
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

// b0.
const SAME_ORIGIN: u8 = 0x80;
const KIND_ESCAPE: u8 = 6;
const B0_VALUES: u8 = (KIND_ESCAPE + 1) * 3 * 3 * 2;
const PARENT_NONE: u8 = 0;
const PARENT_INDEX: u8 = 1;
const PARENT_INLINE: u8 = 2;
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

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
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
struct Reader<'t, 'a> {
    buf: &'a [u8],
    pos: usize,
    strs: &'t [&'a [u8]],
}

impl<'a> Reader<'_, 'a> {
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

    fn str_at(&self, i: u64) -> Option<&'a str> {
        std::str::from_utf8(self.strs.get(usize::try_from(i).ok()?)?).ok()
    }

    fn str(&mut self) -> Option<&'a str> {
        let i = self.varint()?;
        self.str_at(i)
    }

    fn attrs(&mut self) -> Option<Attrs<'a>> {
        let n = usize::try_from(self.varint()?).ok()?;
        // Each attribute takes at least one byte: the count cannot exceed the bytes left.
        let mut out = Vec::with_capacity(n.min(self.buf.len().saturating_sub(self.pos)));
        for _ in 0..n {
            let kt = self.varint()?;
            let key = self.str_at(kt >> 3)?;
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

fn id_hash(id: &[u8; 8], mask: usize) -> usize {
    // Fibonacci hashing: the top bits of the product (span IDs are usually random already, but
    // need not be).
    (u64::from_le_bytes(*id).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & mask
}

impl TraceSummary {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the spans of one record (an encoded `ExportTraceServiceRequest` of this trace),
    /// exactly what [`extract::trace_data`] extracts from it for `req`, and `record.len()` to the
    /// trace's size. The same `req` must be used for every record of a trace.
    pub fn push_record(&mut self, trace_id: [u8; 16], record: &[u8], req: &Requirements) {
        if self.spans == 0 && self.data.is_empty() {
            self.collapsed = req.trace_level;
        }
        self.size = self.size.wrapping_add(record.len() as u64);
        let records = [record];
        let mut res = extract::Resources::new();
        let td = extract::trace_data(trace_id, &records, req, &mut res);
        if td.spans.len() >= LOOKUP_SPANS {
            self.strs.begin_lookup();
        }
        let mut origins: Vec<(OriginKey, u64)> = Vec::new();
        let mut scratch = Vec::new();
        let mut class_key = Vec::new();
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
            if self.collapsed {
                self.push_class(sd, origin, &mut class_key);
            } else {
                self.push_span(sd, origin);
            }
        }
        self.strs.lookup = None;
    }

    /// Counts a span in the entry of its key (collapsed summaries).
    fn push_class(&mut self, sd: &SpanData<'_>, origin: u64, key: &mut Vec<u8>) {
        self.spans += 1;
        key.clear();
        key.push(match sd.status {
            StatusCode::Unset => 0u8,
            StatusCode::Ok => 1,
            StatusCode::Error => 2,
        });
        put_varint(key, u64::from(sd.flags));
        put_varint(key, origin);
        put_attrs(&mut self.strs, key, &sd.attributes);
        let (start, end) = (sd.start_unix_nano, sd.end_unix_nano);
        let mut pos = 0usize;
        for _ in 0..MAX_CLASSES_SEARCHED {
            if pos >= self.data.len() {
                break;
            }
            let Ok(len) = read_varint(&self.data, &mut pos, 0) else {
                break;
            };
            let Some(fixed) = usize::try_from(len).ok().and_then(|l| pos.checked_add(l)) else {
                break;
            };
            let Some(rest) = self.data.get_mut(pos..fixed.saturating_add(CLASS_FIXED)) else {
                break;
            };
            if rest.len() == key.len() + CLASS_FIXED && rest[..key.len()] == key[..] {
                let f = &mut rest[key.len()..];
                let count = u32::from_le_bytes(f[0..4].try_into().expect("4 bytes"));
                let lo = u64::from_le_bytes(f[4..12].try_into().expect("8 bytes")).min(start);
                let hi = u64::from_le_bytes(f[12..20].try_into().expect("8 bytes")).max(end);
                f[0..4].copy_from_slice(&count.saturating_add(1).to_le_bytes());
                f[4..12].copy_from_slice(&lo.to_le_bytes());
                f[12..20].copy_from_slice(&hi.to_le_bytes());
                return;
            }
            pos = fixed + CLASS_FIXED;
        }
        put_varint(&mut self.data, key.len() as u64);
        self.data.extend_from_slice(key);
        self.data.extend_from_slice(&1u32.to_le_bytes());
        self.data.extend_from_slice(&start.to_le_bytes());
        self.data.extend_from_slice(&end.to_le_bytes());
    }

    /// The spans of a collapsed summary: per entry, `count` spans with its key and time bounds
    /// (and made-up, distinct span IDs), with each span's origin string ordinal.
    fn read_classes<'a>(&'a self, strs: &[&'a [u8]]) -> (Vec<SpanData<'a>>, Vec<u64>) {
        let mut spans = Vec::with_capacity(self.spans);
        let mut origin_of = Vec::with_capacity(self.spans);
        let mut pos = 0usize;
        let mut class = 0u32;
        while pos < self.data.len() {
            let Some((sd, origin, count)) = self.read_class(strs, &mut pos) else {
                break;
            };
            // Never more spans than were pushed.
            let left = self.spans.saturating_sub(spans.len());
            let count = count.min(u32::try_from(left).unwrap_or(u32::MAX));
            for i in 0..count {
                let mut id = [0u8; 8];
                id[..4].copy_from_slice(&(class + 1).to_be_bytes());
                id[4..].copy_from_slice(&i.to_be_bytes());
                let mut s = sd.clone();
                s.span_id = id;
                spans.push(s);
                origin_of.push(origin);
            }
            class = class.wrapping_add(1);
        }
        (spans, origin_of)
    }

    fn read_class<'a>(&'a self, strs: &[&'a [u8]], pos: &mut usize) -> Option<(SpanData<'a>, u64, u32)> {
        let len = usize::try_from(read_varint(&self.data, pos, 0).ok()?).ok()?;
        let key_end = pos.checked_add(len)?;
        let mut r = Reader {
            buf: self.data.get(..key_end)?,
            pos: *pos,
            strs,
        };
        let status = [StatusCode::Unset, StatusCode::Ok, StatusCode::Error].get(usize::from(r.byte()?))?;
        let flags = r.u32()?;
        let origin = r.varint()?;
        let attributes = r.attrs()?;
        let fixed = self.data.get(key_end..key_end.checked_add(CLASS_FIXED)?)?;
        *pos = key_end + CLASS_FIXED;
        let count = u32::from_le_bytes(fixed[0..4].try_into().ok()?);
        let sd = SpanData {
            start_unix_nano: u64::from_le_bytes(fixed[4..12].try_into().ok()?),
            end_unix_nano: u64::from_le_bytes(fixed[12..20].try_into().ok()?),
            status: *status,
            flags,
            attributes,
            ..Default::default()
        };
        Some((sd, origin, count))
    }

    /// The index of `id` in the ID table, adding it when there is room.
    fn id_index(&mut self, id: [u8; 8]) -> Option<usize> {
        if self.ids.len() <= LINEAR_IDS {
            if let Some(i) = self.ids.iter().position(|x| *x == id) {
                return Some(i);
            }
        } else {
            if self.index.is_empty() {
                self.rebuild_index();
            }
            let mask = self.index.len() - 1;
            let mut slot = id_hash(&id, mask);
            loop {
                match self.index[slot] {
                    0 => break,
                    e if self.ids[usize::from(e) - 1] == id => return Some(usize::from(e) - 1),
                    _ => slot = (slot + 1) & mask,
                }
            }
        }
        if self.ids.len() >= MAX_IDS {
            return None;
        }
        self.ids.push(id);
        let i = self.ids.len() - 1;
        if self.ids.len() > LINEAR_IDS {
            // Load at most 3/4 (the table always keeps an empty slot).
            if self.index.len() * 3 < self.ids.len() * 4 {
                self.rebuild_index();
            } else {
                self.index_insert(i);
            }
        }
        Some(i)
    }

    fn index_insert(&mut self, i: usize) {
        let mask = self.index.len() - 1;
        let mut slot = id_hash(&self.ids[i], mask);
        while self.index[slot] != 0 {
            slot = (slot + 1) & mask;
        }
        self.index[slot] = (i + 1) as u16;
    }

    /// A new index of `ids`, at a load of at most 3/8.
    fn rebuild_index(&mut self) {
        let size = (self.ids.len() * 8 / 3 + 1).next_power_of_two();
        self.index = vec![0; size];
        for i in 0..self.ids.len() {
            self.index_insert(i);
        }
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
        let same_origin = origin == self.last_origin;
        self.last_origin = origin;
        let b0 = ((kind.unwrap_or(KIND_ESCAPE) * 3 + status) * 3 + parent_mode) * 2
            + u8::from(b1 != 0)
            + if same_origin { SAME_ORIGIN } else { 0 };
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
        if !same_origin {
            put_varint(out, origin);
        }
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
        let strs = self.strs.table();
        let mut r = Reader {
            buf: &self.data,
            pos: 0,
            strs: &strs,
        };
        let (mut spans, origin_of) = if self.collapsed {
            self.read_classes(&strs)
        } else {
            let mut state = (0u32, u64::MAX);
            let mut seen = HashSet::with_capacity(self.spans);
            let mut spans = Vec::with_capacity(self.spans);
            let mut origin_of = Vec::with_capacity(self.spans);
            while !r.done() {
                let Some((sd, origin)) = self.read_span(&mut r, &mut state) else {
                    break;
                };
                if seen.insert(sd.span_id) {
                    spans.push(sd);
                    origin_of.push(origin);
                }
            }
            (spans, origin_of)
        };
        let mut slot: HashMap<u64, usize> = HashMap::new();
        for &o in &origin_of {
            slot.entry(o).or_insert_with(|| {
                scratch.origins.push(read_origin(&strs, o).unwrap_or_default());
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

    /// One span (without its origin's fields) and its origin's string ordinal. `state` is the
    /// flags and origin of the previous span.
    fn read_span<'a>(&'a self, r: &mut Reader<'_, 'a>, state: &mut (u32, u64)) -> Option<(SpanData<'a>, u64)> {
        let b0 = r.byte()?;
        let same_origin = b0 & SAME_ORIGIN != 0;
        let mut v = b0 & !SAME_ORIGIN;
        if v >= B0_VALUES {
            return None;
        }
        let has_b1 = v % 2 == 1;
        v /= 2;
        let parent_mode = v % 3;
        v /= 3;
        let status = [StatusCode::Unset, StatusCode::Ok, StatusCode::Error][usize::from(v % 3)];
        let kind_code = v / 3;
        let b1 = if has_b1 { r.byte()? } else { 0 };
        let kind = match kind_code {
            KIND_ESCAPE => i32::try_from(unzigzag(r.varint()?)).ok()?,
            k => i32::from(k),
        };
        let span_id = match r.varint()? {
            0 => r.eight()?,
            i => *self.ids.get(usize::try_from(i - 1).ok()?)?,
        };
        let parent_span_id = match parent_mode {
            PARENT_NONE => None,
            PARENT_INDEX => Some(*self.ids.get(usize::try_from(r.varint()?).ok()?)?),
            _ => Some(r.eight()?),
        };
        let name = r.str()?;
        if !same_origin {
            state.1 = r.varint()?;
        }
        let start = self.base.wrapping_add(unzigzag(r.varint()?) as u64);
        let end = start.wrapping_add(unzigzag(r.varint()?) as u64);
        if b1 & B1_FLAGS != 0 {
            state.0 = r.u32()?;
        }
        let mut sd = SpanData {
            span_id,
            parent_span_id,
            name,
            kind,
            start_unix_nano: start,
            end_unix_nano: end,
            status,
            flags: state.0,
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
        Some((sd, state.1))
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
            + self.index.capacity() * std::mem::size_of::<u16>()
            + self.strs.arena.capacity()
    }

    /// Appends the summary, in one byte string, to `out` (its hash index left out: a push after
    /// [`TraceSummary::thaw`] rebuilds it). An idle trace kept this way costs one allocation of
    /// exactly its bytes instead of a struct and four vectors.
    pub fn freeze(&self, out: &mut Vec<u8>) {
        put_varint(out, u64::from(self.collapsed));
        put_varint(out, self.spans as u64);
        put_varint(out, self.size);
        put_varint(out, self.base);
        put_varint(out, u64::from(self.last_flags));
        put_varint(out, self.last_origin.wrapping_add(1));
        put_varint(out, self.strs.count);
        if self.collapsed {
            freeze_classes(&self.data, out);
        } else {
            put_varint(out, self.data.len() as u64);
            out.extend_from_slice(&self.data);
        }
        put_varint(out, self.ids.len() as u64);
        for id in &self.ids {
            out.extend_from_slice(id);
        }
        put_varint(out, self.strs.arena.len() as u64);
        out.extend_from_slice(&self.strs.arena);
    }

    /// The summary [`TraceSummary::freeze`] wrote at `buf[*pos..]`, moving `*pos` past it;
    /// `None` if it is not one.
    pub fn thaw(buf: &[u8], pos: &mut usize) -> Option<TraceSummary> {
        let mut r = Reader {
            buf,
            pos: *pos,
            strs: &[],
        };
        let collapsed = r.varint()? == 1;
        let spans = usize::try_from(r.varint()?).ok()?;
        let size = r.varint()?;
        let base = r.varint()?;
        let last_flags = r.u32()?;
        let last_origin = r.varint()?.wrapping_sub(1);
        let count = r.varint()?;
        let bytes = |r: &mut Reader<'_, '_>, unit: usize| -> Option<&[u8]> {
            let n = usize::try_from(r.varint()?).ok()?.checked_mul(unit)?;
            let b = buf.get(r.pos..r.pos.checked_add(n)?)?;
            r.pos += n;
            Some(b)
        };
        let data = if collapsed {
            thaw_classes(buf, &mut r.pos)?
        } else {
            bytes(&mut r, 1)?.to_vec()
        };
        let ids = bytes(&mut r, 8)?
            .chunks_exact(8)
            .map(|c| c.try_into().expect("8 bytes"))
            .collect();
        let arena = bytes(&mut r, 1)?.to_vec();
        *pos = r.pos;
        Some(TraceSummary {
            data,
            ids,
            index: Vec::new(),
            strs: Strings {
                arena,
                count,
                lookup: None,
            },
            base,
            last_flags,
            last_origin,
            spans,
            size,
            collapsed,
        })
    }

    /// Gives back spare capacity and drops the ID hash index (a trace that went idle; a later
    /// push rebuilds the index).
    pub fn shrink(&mut self) {
        self.data.shrink_to_fit();
        self.ids.shrink_to_fit();
        self.index = Vec::new();
        self.strs.arena.shrink_to_fit();
    }
}

/// The entries of a collapsed summary as frozen: their number, then each entry's key as it is
/// and its count and time bounds as varints (the open form keeps them fixed-width, to update in
/// place: 20 bytes, against ~10 here): count, the earliest start as a zigzag delta from the
/// previous entry's, and the latest end after it (wrapping).
fn freeze_classes(data: &[u8], out: &mut Vec<u8>) {
    put_varint(out, class_entries(data).count() as u64);
    let mut prev = 0u64;
    for (key, count, lo, hi) in class_entries(data) {
        put_varint(out, key.len() as u64);
        out.extend_from_slice(key);
        put_varint(out, u64::from(count));
        put_varint(out, zigzag(lo.wrapping_sub(prev) as i64));
        put_varint(out, hi.wrapping_sub(lo));
        prev = lo;
    }
}

/// The entries of a collapsed summary's `data` (as [`TraceSummary::push_class`] wrote them):
/// key, count, earliest start, latest end.
fn class_entries(data: &[u8]) -> impl Iterator<Item = (&[u8], u32, u64, u64)> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        if pos >= data.len() {
            return None;
        }
        let len = usize::try_from(read_varint(data, &mut pos, 0).ok()?).ok()?;
        let key = data.get(pos..pos.checked_add(len)?)?;
        let fixed = data.get(pos + len..pos + len + CLASS_FIXED)?;
        pos += len + CLASS_FIXED;
        Some((
            key,
            u32::from_le_bytes(fixed[0..4].try_into().ok()?),
            u64::from_le_bytes(fixed[4..12].try_into().ok()?),
            u64::from_le_bytes(fixed[12..20].try_into().ok()?),
        ))
    })
}

/// What [`freeze_classes`] wrote at `buf[*pos..]`, in the open form; `None` if it is not that.
fn thaw_classes(buf: &[u8], pos: &mut usize) -> Option<Vec<u8>> {
    let n = read_varint(buf, pos, 0).ok()?;
    // Each entry takes at least 4 bytes: the count cannot exceed what is left.
    let n = usize::try_from(n).ok()?.min(buf.len().saturating_sub(*pos) / 4);
    let mut data = Vec::with_capacity(n * 30);
    let mut prev = 0u64;
    for _ in 0..n {
        let len = usize::try_from(read_varint(buf, pos, 0).ok()?).ok()?;
        let key = buf.get(*pos..pos.checked_add(len)?)?;
        *pos += len;
        let count = u32::try_from(read_varint(buf, pos, 0).ok()?).ok()?;
        let lo = prev.wrapping_add(unzigzag(read_varint(buf, pos, 0).ok()?) as u64);
        let hi = lo.wrapping_add(read_varint(buf, pos, 0).ok()?);
        prev = lo;
        put_varint(&mut data, len as u64);
        data.extend_from_slice(key);
        data.extend_from_slice(&count.to_le_bytes());
        data.extend_from_slice(&lo.to_le_bytes());
        data.extend_from_slice(&hi.to_le_bytes());
    }
    Some(data)
}

/// The origin stored as string `i`.
fn read_origin<'a>(strs: &[&'a [u8]], i: u64) -> Option<Origin<'a>> {
    let mut r = Reader {
        buf: strs.get(usize::try_from(i).ok()?)?,
        pos: 0,
        strs,
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

    /// An attribute list as one string, doubles bit-exactly.
    fn attrs(a: &[(&str, AttrValue<'_>)]) -> String {
        a.iter()
            .map(|(k, v)| match v {
                AttrValue::Double(d) => format!("{k:?}=D{:#x}", d.to_bits()),
                v => format!("{k:?}={v:?}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `TraceData` with doubles compared bit-exactly (derived `PartialEq` says NaN != NaN), one
    /// string per span.
    fn canon(td: &TraceData<'_>) -> (String, Vec<String>) {
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

    /// What a trace-level policy reads of a trace: span count, earliest start, latest end,
    /// size, and the distinct (status, flags, service, resource and span attributes) of spans.
    fn facts(spans: &[SpanData<'_>], size: u64) -> (usize, u64, u64, u64, std::collections::BTreeSet<String>) {
        let keys = spans
            .iter()
            .map(|s| {
                format!(
                    "{:?} f{:#x} svc{:?} a[{}] r[{}]",
                    s.status,
                    s.flags,
                    s.service,
                    attrs(&s.attributes),
                    attrs(s.resource_attributes)
                )
            })
            .collect();
        let start = spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(u64::MAX);
        let end = spans.iter().map(|s| s.end_unix_nano).max().unwrap_or(0);
        (spans.len(), start, end, size, keys)
    }

    /// Pushes `records` (with a `shrink` after the first half) and checks the rebuilt view
    /// against extract's: equal, or for trace-level requirements equal in what such a policy
    /// reads (spans repeated across records counted again).
    fn check(records: &[bytes::Bytes], req: &Requirements) {
        let mut s = TraceSummary::new();
        for (i, r) in records.iter().enumerate() {
            if i == records.len() / 2 {
                s.shrink();
            }
            if i == records.len() / 3 {
                // Frozen and thawed between two pushes: the same summary, and it goes on.
                let mut out = vec![7];
                s.freeze(&mut out);
                out.push(9);
                let mut pos = 1;
                let t = TraceSummary::thaw(&out, &mut pos).expect("thaws");
                assert_eq!(out[pos..], [9]);
                assert_eq!(
                    (&t.data, &t.ids, &t.strs.arena, t.strs.count),
                    (&s.data, &s.ids, &s.strs.arena, s.strs.count)
                );
                assert_eq!(
                    (t.base, t.last_flags, t.last_origin, t.spans, t.size, t.collapsed),
                    (s.base, s.last_flags, s.last_origin, s.spans, s.size, s.collapsed)
                );
                s = t;
            }
            s.push_record(TID, r, req);
        }
        if req.trace_level {
            let mut res: Vec<extract::Resources> = records.iter().map(|_| extract::Resources::new()).collect();
            let per_record: Vec<_> = records
                .iter()
                .zip(res.iter_mut())
                .map(|(r, res)| extract::trace_data(TID, std::slice::from_ref(r), req, res))
                .collect();
            let all: Vec<SpanData<'_>> = per_record.iter().flat_map(|t| t.spans.iter().cloned()).collect();
            let size = records.iter().map(|r| r.len() as u64).sum();
            let mut scratch = SummaryScratch::new();
            let got = s.trace_data(TID, &mut scratch);
            assert_eq!(facts(&got.spans, got.size_bytes), facts(&all, size));
            assert_eq!(s.spans(), all.len());
            let ids: HashSet<[u8; 8]> = got.spans.iter().map(|s| s.span_id).collect();
            assert_eq!(ids.len(), got.spans.len(), "made-up span IDs are distinct");
            return;
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
        let pushed: usize = records
            .iter()
            .map(|r| {
                let mut res = extract::Resources::new();
                extract::trace_data(TID, std::slice::from_ref(r), req, &mut res)
                    .spans
                    .len()
            })
            .sum();
        assert_eq!(s.spans(), pushed);
        assert!(s.heap_bytes() >= s.data.len() + s.ids.len() * 8 + s.strs.arena.len());
    }

    fn pick<'x, T>(rng: &mut StdRng, xs: &'x [T]) -> &'x T {
        &xs[rng.random_range(0..xs.len())]
    }

    fn value(rng: &mut StdRng) -> Option<AnyValue> {
        use any_value::Value as V;
        let v = match rng.random_range(0..10) {
            0 => return None,
            1 => None,
            2 | 3 => Some(V::StringValue(
                (*pick(rng, &["a", "b", "prod", "", "é", "GET /x"])).into(),
            )),
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
            let r = match rng.random_range(0..14) {
                // A retried record: a copy, or the same bytes again (extract then meets the
                // same resource pointers twice).
                0 if !out.is_empty() => pick(rng, &out).to_vec(),
                13 if !out.is_empty() => {
                    let same = pick(rng, &out).clone();
                    out.push(same);
                    continue;
                }
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
            trace_level: rng.random_bool(0.3),
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
        fn thawing_any_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut pos = 0;
            if let Some(s) = TraceSummary::thaw(&bytes, &mut pos) {
                prop_assert!(pos <= bytes.len());
                // (A made-up span count can be anything; the rebuild allocates for it.)
                if s.spans() < 100_000 {
                    let mut scratch = SummaryScratch::new();
                    let _ = s.trace_data(TID, &mut scratch);
                }
            }
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
            spans += extract::trace_data(TID, std::slice::from_ref(&r), &req, &mut res)
                .spans
                .len();
            recs.push(bytes::Bytes::from(r));
        }
        check(&recs, &req);
    }

    /// A trace of 70,000 spans in 70 records: the ID hash index (grown, dropped by `shrink`,
    /// rebuilt), the full ID table (inline IDs past `MAX_IDS`), strings past
    /// `MAX_STRS_SEARCHED` (a unique attribute value per span).
    #[test]
    fn large_trace() {
        use any_value::Value as V;
        let mut rng = StdRng::seed_from_u64(3);
        let n = 70_000usize;
        let ids: Vec<[u8; 8]> = (0..n).map(|_| rng.random()).collect();
        let mut req = Requirements::default();
        req.span_attributes.insert("url".into());
        let records: Vec<bytes::Bytes> = ids
            .chunks(1000)
            .map(|chunk| {
                let spans = chunk
                    .iter()
                    .map(|id| Span {
                        trace_id: TID.to_vec(),
                        span_id: id.to_vec(),
                        parent_span_id: match rng.random_range(0..4) {
                            0 => vec![],
                            1 => rng.random::<[u8; 8]>().to_vec(),
                            _ => pick(&mut rng, &ids).to_vec(),
                        },
                        name: format!("op{}", rng.random_range(0..300)),
                        start_time_unix_nano: rng.random(),
                        end_time_unix_nano: rng.random(),
                        attributes: vec![KeyValue {
                            key: "url".into(),
                            value: Some(AnyValue {
                                value: Some(V::StringValue(format!("/item/{}", rng.random::<u32>()))),
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .collect();
                ExportTraceServiceRequest {
                    resource_spans: vec![ResourceSpans {
                        scope_spans: vec![ScopeSpans {
                            spans,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                }
                .encode_to_vec()
                .into()
            })
            .collect();
        let mut s = TraceSummary::new();
        let t0 = std::time::Instant::now();
        for (i, r) in records.iter().enumerate() {
            s.push_record(TID, r, &req);
            if i % 7 == 3 {
                let before = s.heap_bytes();
                s.shrink();
                assert!(s.index.is_empty() && s.heap_bytes() <= before);
            }
        }
        let t_push = t0.elapsed();
        assert_eq!(s.ids.len(), MAX_IDS);
        let t0 = std::time::Instant::now();
        let mut res = extract::Resources::new();
        let want = extract::trace_data(TID, &records, &req, &mut res);
        let t_extract = t0.elapsed();
        let t0 = std::time::Instant::now();
        let mut scratch = SummaryScratch::new();
        let got = s.trace_data(TID, &mut scratch);
        println!("push {t_push:?} extract {t_extract:?} rebuild {:?}", t0.elapsed());
        assert_eq!(got.spans.len(), want.spans.len());
        assert!(got == want);
        s.shrink();
        println!(
            "large trace: {} spans, {:.1} B/span",
            s.spans(),
            s.heap_bytes() as f64 / s.spans() as f64
        );
        // Collapsed: a distinct key per span (the unique `url`), past the entries searched.
        let mut flat = req.clone();
        flat.trace_level = true;
        check(&records, &flat);
    }

    /// A realistic trace: `n` spans of 4 services (one record per service, spans in random
    /// order), 5 span names, random span IDs, parents among the trace's spans, times within 3 s.
    fn realistic(rng: &mut StdRng, n: usize) -> Vec<bytes::Bytes> {
        use any_value::Value as V;
        let sv = |s: &str| {
            Some(AnyValue {
                value: Some(V::StringValue(s.into())),
            })
        };
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
                parent_span_id: if i == 0 {
                    vec![]
                } else {
                    ids[rng.random_range(0..i)].to_vec()
                },
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
        let default_req = tailsift_policy::PolicyEngine::compile(&doc)
            .unwrap()
            .requirements()
            .clone();
        assert!(default_req.trace_level);
        let mut with_status = default_req.clone();
        with_status.span_attributes.insert("http.status_code".into());
        let detailed = |r: &Requirements| Requirements {
            trace_level: false,
            ..r.clone()
        };
        // (label, requirements, bound on open and on frozen bytes per span)
        for (label, req, bound, frozen_bound) in [
            ("default policy (collapsed)", &default_req, 12.0, 8.5),
            ("+http.status_code (collapsed)", &with_status, 14.0, 10.0),
            ("default policy, span detail", &detailed(&default_req), 30.0, 30.0),
            ("+http.status_code, span detail", &detailed(&with_status), 36.0, 36.0),
        ] {
            let mut rng = StdRng::seed_from_u64(42);
            let (mut spans, mut heap, mut grown, mut record_bytes) = (0usize, 0usize, 0usize, 0usize);
            let mut frozen = 0usize;
            let mut parts = [0usize; 3];
            for _ in 0..200 {
                let recs = realistic(&mut rng, 20);
                let mut s = TraceSummary::new();
                for r in &recs {
                    s.push_record(TID, r, req);
                    record_bytes += r.len();
                }
                grown += s.heap_bytes();
                s.shrink();
                parts[0] += s.data.len();
                parts[1] += s.ids.len() * 8;
                parts[2] += s.strs.arena.len();
                heap += s.heap_bytes();
                let mut out = Vec::new();
                s.freeze(&mut out);
                frozen += out.len();
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
            println!("  data/ids/strings {:?}", parts.map(|p| p as f64 / spans as f64));
            let frozen_per_span = frozen as f64 / spans as f64;
            println!("  frozen: {frozen_per_span:.1} B/span");
            assert!(per_span < bound, "{label}: {per_span:.1} B/span");
            assert!(
                frozen_per_span < frozen_bound,
                "{label}: frozen {frozen_per_span:.1} B/span"
            );
        }
    }
}

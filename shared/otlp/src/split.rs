//! Splitting an OTLP `ExportTraceServiceRequest` by trace ID without decoding spans.
//!
//! Field numbers used (opentelemetry/proto/trace/v1/trace.proto):
//! `ExportTraceServiceRequest.resource_spans = 1`; `ResourceSpans { resource = 1, scope_spans = 2,
//! schema_url = 3 }`; `ScopeSpans { scope = 1, spans = 2, schema_url = 3 }`;
//! `Span { trace_id = 1, span_id = 2, parent_span_id = 4 }`.

use std::collections::HashMap;

use crate::wire::{len_field_size, put_len_header, Fields, WireError, LEN};
use crate::TraceId;

const RESOURCE_SPANS: u32 = 1;
const SCOPE_SPANS: u32 = 2;
const SPANS: u32 = 2;
const SPAN_TRACE_ID: u32 = 1;
const SPAN_SPAN_ID: u32 = 2;
const SPAN_PARENT_SPAN_ID: u32 = 4;

/// Why a single span was rejected while the rest of its request was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// `trace_id` missing or not 16 bytes.
    TraceIdLength,
    /// `trace_id` is 16 zero bytes.
    TraceIdZero,
    /// `span_id` missing or not 8 bytes.
    SpanIdLength,
    /// `span_id` is 8 zero bytes.
    SpanIdZero,
    /// `parent_span_id` present but not 8 bytes.
    ParentSpanIdLength,
    /// The span alone is larger than the largest record the topic accepts.
    SpanTooLarge,
    /// The span's own bytes are not valid protobuf.
    MalformedSpan,
}

impl RejectReason {
    /// A stable, low-cardinality name, used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::TraceIdLength => "trace_id_length",
            RejectReason::TraceIdZero => "trace_id_zero",
            RejectReason::SpanIdLength => "span_id_length",
            RejectReason::SpanIdZero => "span_id_zero",
            RejectReason::ParentSpanIdLength => "parent_span_id_length",
            RejectReason::SpanTooLarge => "span_too_large",
            RejectReason::MalformedSpan => "malformed_span",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            RejectReason::TraceIdLength => "trace_id must be exactly 16 bytes",
            RejectReason::TraceIdZero => "trace_id must not be all zero",
            RejectReason::SpanIdLength => "span_id must be exactly 8 bytes",
            RejectReason::SpanIdZero => "span_id must not be all zero",
            RejectReason::ParentSpanIdLength => "parent_span_id must be empty or exactly 8 bytes",
            RejectReason::SpanTooLarge => "span is larger than the maximum record size",
            RejectReason::MalformedSpan => "span is not valid protobuf",
        }
    }
}

/// Options for [`split_by_trace`].
#[derive(Debug, Clone, Copy)]
pub struct SplitOptions {
    /// The largest record payload to produce. A trace whose spans in this request exceed it is
    /// written as several records with the same key; a single span over it is rejected.
    pub max_record_bytes: usize,
}

impl Default for SplitOptions {
    fn default() -> Self {
        SplitOptions {
            max_record_bytes: 900 * 1024,
        }
    }
}

/// One Kafka record's worth of spans: an encoded `ExportTraceServiceRequest` holding spans of one
/// trace only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRecord {
    pub trace_id: TraceId,
    pub payload: Vec<u8>,
    pub spans: usize,
}

/// The result of splitting one request.
#[derive(Debug, Default)]
pub struct SplitOutput {
    pub records: Vec<TraceRecord>,
    /// Spans accepted (in `records`).
    pub accepted_spans: usize,
    /// Rejected spans by reason, in first-seen order.
    pub rejected: Vec<(RejectReason, usize)>,
    /// The first rejected span, described for the client (`partial_success.error_message`).
    pub first_rejection: Option<String>,
}

impl SplitOutput {
    pub fn rejected_spans(&self) -> usize {
        self.rejected.iter().map(|(_, n)| n).sum()
    }

    /// The OTLP `partial_success.error_message` for this request, or empty when nothing was
    /// rejected.
    pub fn error_message(&self) -> String {
        if self.rejected.is_empty() {
            return String::new();
        }
        let parts: Vec<String> = self
            .rejected
            .iter()
            .map(|(r, n)| format!("{n} span(s): {}", r.describe()))
            .collect();
        let mut msg = format!("rejected {}", parts.join("; "));
        if let Some(first) = &self.first_rejection {
            msg.push_str(&format!(" (first: {first})"));
        }
        msg
    }

    fn reject(&mut self, reason: RejectReason, location: impl FnOnce() -> String) {
        if self.first_rejection.is_none() {
            self.first_rejection = Some(location());
        }
        match self.rejected.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.rejected.push((reason, 1)),
        }
    }
}

/// Why a whole request was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SplitError {
    #[error("malformed ExportTraceServiceRequest: {0}")]
    Malformed(#[from] WireError),
    #[error("malformed ExportTraceServiceRequest: field {field} at byte {at} must be length-delimited")]
    NotLengthDelimited { field: u32, at: usize },
}

/// A span located inside the request.
struct SpanRef<'a> {
    resource: usize,
    scope: usize,
    raw: &'a [u8],
}

/// A resource or scope envelope: every field except the repeated children, kept verbatim.
#[derive(Default)]
struct Envelope<'a> {
    other: Vec<&'a [u8]>,
    other_len: usize,
}

impl<'a> Envelope<'a> {
    fn push(&mut self, raw: &'a [u8]) {
        self.other_len += raw.len();
        self.other.push(raw);
    }
}

struct TraceSpans<'a> {
    id: TraceId,
    spans: Vec<SpanRef<'a>>,
}

/// Splits an encoded `ExportTraceServiceRequest` (or `TracesData`, which has the same wire form)
/// into records holding the spans of exactly one trace each, in first-seen trace order.
///
/// The request is rejected whole when its envelope is not valid protobuf. Individual spans with
/// invalid IDs are dropped and counted in [`SplitOutput::rejected`]; the rest are kept.
pub fn split_by_trace(buf: &[u8], opts: SplitOptions) -> Result<SplitOutput, SplitError> {
    let mut out = SplitOutput::default();
    let mut resources: Vec<Envelope<'_>> = Vec::new();
    let mut scopes: Vec<Envelope<'_>> = Vec::new();
    let mut index: HashMap<TraceId, usize> = HashMap::new();
    let mut traces: Vec<TraceSpans<'_>> = Vec::new();

    for field in Fields::new(buf) {
        let field = field?;
        if field.number != RESOURCE_SPANS {
            // Unknown top-level fields carry no spans; they are not forwarded.
            continue;
        }
        if field.wire_type != LEN {
            return Err(SplitError::NotLengthDelimited {
                field: field.number,
                at: offset_of(buf, field.raw),
            });
        }
        let resource_idx = resources.len();
        let mut resource = Envelope::default();
        for rf in Fields::with_base(field.payload, offset_of(buf, field.payload)) {
            let rf = rf?;
            if rf.number != SCOPE_SPANS {
                resource.push(rf.raw);
                continue;
            }
            if rf.wire_type != LEN {
                return Err(SplitError::NotLengthDelimited {
                    field: rf.number,
                    at: offset_of(buf, rf.raw),
                });
            }
            let scope_idx = scopes.len();
            let mut scope = Envelope::default();
            for sf in Fields::with_base(rf.payload, offset_of(buf, rf.payload)) {
                let sf = sf?;
                if sf.number != SPANS {
                    scope.push(sf.raw);
                    continue;
                }
                if sf.wire_type != LEN {
                    return Err(SplitError::NotLengthDelimited {
                        field: sf.number,
                        at: offset_of(buf, sf.raw),
                    });
                }
                let span_at = offset_of(buf, sf.raw);
                match span_ids(sf.payload) {
                    Ok(trace_id) => {
                        let slot = *index.entry(trace_id).or_insert_with(|| {
                            traces.push(TraceSpans {
                                id: trace_id,
                                spans: Vec::new(),
                            });
                            traces.len() - 1
                        });
                        traces[slot].spans.push(SpanRef {
                            resource: resource_idx,
                            scope: scope_idx,
                            raw: sf.raw,
                        });
                        out.accepted_spans += 1;
                    }
                    Err(reason) => out.reject(reason, || format!("span at byte {span_at}: {}", reason.describe())),
                }
            }
            scopes.push(scope);
        }
        resources.push(resource);
    }

    out.records.reserve(traces.len());
    for trace in &traces {
        let too_large = encode_trace(trace, &resources, &scopes, opts.max_record_bytes, &mut out.records);
        for _ in 0..too_large {
            out.accepted_spans -= 1;
            out.reject(RejectReason::SpanTooLarge, || {
                format!(
                    "a span of trace {} with its resource and scope exceeds {} bytes",
                    hex::encode(trace.id),
                    opts.max_record_bytes
                )
            });
        }
    }
    Ok(out)
}

fn offset_of(outer: &[u8], inner: &[u8]) -> usize {
    inner.as_ptr() as usize - outer.as_ptr() as usize
}

/// Reads and validates the IDs of one span.
fn span_ids(span: &[u8]) -> Result<TraceId, RejectReason> {
    let mut trace_id: Option<&[u8]> = None;
    let mut span_id: Option<&[u8]> = None;
    for f in Fields::new(span) {
        let f = f.map_err(|_| RejectReason::MalformedSpan)?;
        match (f.number, f.wire_type) {
            (SPAN_TRACE_ID, LEN) => trace_id = Some(f.payload),
            (SPAN_SPAN_ID, LEN) => span_id = Some(f.payload),
            (SPAN_PARENT_SPAN_ID, LEN) if !f.payload.is_empty() && f.payload.len() != 8 => {
                return Err(RejectReason::ParentSpanIdLength);
            }
            (SPAN_PARENT_SPAN_ID, LEN) => {}
            (SPAN_TRACE_ID | SPAN_SPAN_ID | SPAN_PARENT_SPAN_ID, _) => return Err(RejectReason::MalformedSpan),
            _ => {}
        }
    }
    let trace_id: TraceId = trace_id
        .unwrap_or_default()
        .try_into()
        .map_err(|_| RejectReason::TraceIdLength)?;
    if trace_id == [0; 16] {
        return Err(RejectReason::TraceIdZero);
    }
    let span_id = span_id.unwrap_or_default();
    if span_id.len() != 8 {
        return Err(RejectReason::SpanIdLength);
    }
    if span_id == [0; 8] {
        return Err(RejectReason::SpanIdZero);
    }
    Ok(trace_id)
}

/// Groups of consecutive spans that share one resource and one scope.
fn groups<'s, 'a>(spans: &'s [SpanRef<'a>]) -> impl Iterator<Item = &'s [SpanRef<'a>]> {
    spans.chunk_by(|a, b| a.resource == b.resource && a.scope == b.scope)
}

fn scope_len(scope: &Envelope<'_>, spans: &[SpanRef<'_>]) -> usize {
    scope.other_len + spans.iter().map(|s| s.raw.len()).sum::<usize>()
}

/// Encodes one trace's spans, cutting into several records when they exceed `max`. Returns the
/// number of spans dropped because, alone with their resource and scope, they exceed `max`.
fn encode_trace(
    trace: &TraceSpans<'_>,
    resources: &[Envelope<'_>],
    scopes: &[Envelope<'_>],
    max: usize,
    records: &mut Vec<TraceRecord>,
) -> usize {
    // Fast path: the whole trace fits in one record (the common case).
    let whole = encoded_size(&trace.spans, resources, scopes);
    if whole <= max {
        records.push(TraceRecord {
            trace_id: trace.id,
            payload: encode(&trace.spans, resources, scopes, whole),
            spans: trace.spans.len(),
        });
        return 0;
    }
    let mut too_large = 0;
    let mut start = 0;
    while start < trace.spans.len() {
        let mut end = start + 1;
        let mut size = encoded_size(&trace.spans[start..end], resources, scopes);
        if size > max {
            too_large += 1;
            start = end;
            continue;
        }
        // Grow with an upper-bound estimate (linear time), then compute the exact size once.
        let mut estimate = size;
        while end < trace.spans.len() {
            let (prev, next) = (&trace.spans[end - 1], &trace.spans[end]);
            let mut add = next.raw.len() + 8;
            if prev.scope != next.scope || prev.resource != next.resource {
                add += scopes[next.scope].other_len + 12;
            }
            if prev.resource != next.resource {
                add += resources[next.resource].other_len + 12;
            }
            if estimate + add > max {
                break;
            }
            estimate += add;
            end += 1;
        }
        if end > start + 1 {
            size = encoded_size(&trace.spans[start..end], resources, scopes);
        }
        records.push(TraceRecord {
            trace_id: trace.id,
            payload: encode(&trace.spans[start..end], resources, scopes, size),
            spans: end - start,
        });
        start = end;
    }
    too_large
}

/// The encoded size of a request holding `spans`. Cheap: no copying.
fn encoded_size(spans: &[SpanRef<'_>], resources: &[Envelope<'_>], scopes: &[Envelope<'_>]) -> usize {
    // Consecutive groups with the same resource share one ResourceSpans.
    let mut total = 0;
    let mut iter = groups(spans).peekable();
    while let Some(first) = iter.next() {
        let r = first[0].resource;
        let mut rs_len = resources[r].other_len;
        rs_len += len_field_size(SCOPE_SPANS, scope_len(&scopes[first[0].scope], first));
        while let Some(g) = iter.next_if(|g| g[0].resource == r) {
            rs_len += len_field_size(SCOPE_SPANS, scope_len(&scopes[g[0].scope], g));
        }
        total += len_field_size(RESOURCE_SPANS, rs_len);
    }
    total
}

fn encode(spans: &[SpanRef<'_>], resources: &[Envelope<'_>], scopes: &[Envelope<'_>], size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    let all: Vec<&[SpanRef<'_>]> = groups(spans).collect();
    let mut i = 0;
    while i < all.len() {
        let r = all[i][0].resource;
        let mut j = i;
        while j < all.len() && all[j][0].resource == r {
            j += 1;
        }
        let rs_len = resources[r].other_len
            + all[i..j]
                .iter()
                .map(|g| len_field_size(SCOPE_SPANS, scope_len(&scopes[g[0].scope], g)))
                .sum::<usize>();
        put_len_header(&mut out, RESOURCE_SPANS, rs_len);
        for raw in &resources[r].other {
            out.extend_from_slice(raw);
        }
        for g in &all[i..j] {
            let scope = &scopes[g[0].scope];
            put_len_header(&mut out, SCOPE_SPANS, scope_len(scope, g));
            for raw in &scope.other {
                out.extend_from_slice(raw);
            }
            for s in *g {
                out.extend_from_slice(s.raw);
            }
        }
        i = j;
    }
    debug_assert_eq!(out.len(), size);
    out
}

#[cfg(test)]
mod tests;

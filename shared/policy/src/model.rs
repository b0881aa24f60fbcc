//! The input model: what the sampler extracts from a buffered trace so that
//! policies can be evaluated, and what it must extract ([`Requirements`]).

use std::collections::BTreeSet;

/// Which attribute keys the sampler must extract for a compiled policy set.
///
/// Computed once by [`crate::PolicyEngine::compile`]; see
/// [`crate::PolicyEngine::requirements`]. The sampler only has to put these
/// keys into [`SpanData::attributes`] / [`SpanData::resource_attributes`];
/// every other attribute can be skipped while decoding.
///
/// `service.name` never appears in `resource_attributes`: rules that read it
/// use [`SpanData::service`], which the sampler always fills.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    /// Span attribute keys read by some rule.
    pub span_attributes: BTreeSet<String>,
    /// Resource attribute keys read by some rule.
    pub resource_attributes: BTreeSet<String>,
    /// When true the sampler must extract every attribute (span and
    /// resource). Reserved for rules that inspect arbitrary keys; none of the
    /// current rule types sets it, but samplers must honour it.
    pub all_attributes: bool,
    /// When true the sampler must fill [`SpanData::events`] (name, time,
    /// dropped attribute count, and the attributes listed in
    /// `event_attributes`). Set by OTTL `spanevent` conditions.
    pub span_events: bool,
    /// Span event attribute keys read by some rule (only meaningful with
    /// `span_events`).
    pub event_attributes: BTreeSet<String>,
    /// When true the sampler must fill the instrumentation scope fields
    /// ([`SpanData::scope_name`], [`SpanData::scope_version`],
    /// [`SpanData::scope_attributes`] with the keys in `scope_attributes`).
    pub scope: bool,
    /// Instrumentation scope attribute keys read by some rule.
    pub scope_attributes: BTreeSet<String>,
    /// Every rule reads only what is the same for spans that agree on their status, flags,
    /// service, required resource attributes and required span attributes (a span with such
    /// a combination exists or not), plus the trace's span count, duration (earliest start to
    /// latest end), size and ID. Spans that agree on those are then interchangeable: a sampler
    /// may keep one entry per distinct combination with a count and time bounds instead of
    /// every span. Set by [`crate::PolicyEngine::compile`]; `false` (keep span detail) is
    /// always safe.
    pub trace_level: bool,
}

impl Requirements {
    /// Whether the span attribute `key` must be extracted.
    pub fn wants_span_attribute(&self, key: &str) -> bool {
        self.all_attributes || self.span_attributes.contains(key)
    }

    /// Whether the resource attribute `key` must be extracted.
    pub fn wants_resource_attribute(&self, key: &str) -> bool {
        self.all_attributes || self.resource_attributes.contains(key)
    }

    /// Whether the span event attribute `key` must be extracted.
    pub fn wants_event_attribute(&self, key: &str) -> bool {
        self.span_events && (self.all_attributes || self.event_attributes.contains(key))
    }

    /// Whether the instrumentation scope attribute `key` must be extracted.
    pub fn wants_scope_attribute(&self, key: &str) -> bool {
        self.scope && (self.all_attributes || self.scope_attributes.contains(key))
    }

    /// True when nothing beyond the always-decoded span fields has to be
    /// extracted (no attribute, no span event, no scope).
    pub fn is_empty(&self) -> bool {
        !self.all_attributes
            && self.span_attributes.is_empty()
            && self.resource_attributes.is_empty()
            && !self.span_events
            && !self.scope
    }
}

/// OTLP span status code (`Status.code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StatusCode {
    /// `STATUS_CODE_UNSET` (0).
    #[default]
    Unset,
    /// `STATUS_CODE_OK` (1).
    Ok,
    /// `STATUS_CODE_ERROR` (2).
    Error,
}

impl StatusCode {
    /// Maps the OTLP wire number; unknown numbers map to [`StatusCode::Unset`].
    pub fn from_otlp(code: i32) -> Self {
        match code {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }

    /// Parses `ERROR` / `OK` / `UNSET` (case-insensitive, with or without the
    /// `STATUS_CODE_` prefix).
    pub fn parse(s: &str) -> Option<Self> {
        let upper = s.trim().to_ascii_uppercase();
        let name = upper.strip_prefix("STATUS_CODE_").unwrap_or(&upper);
        match name {
            "UNSET" => Some(StatusCode::Unset),
            "OK" => Some(StatusCode::Ok),
            "ERROR" => Some(StatusCode::Error),
            _ => None,
        }
    }

    /// The canonical upper-case name (`UNSET`, `OK`, `ERROR`).
    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Unset => "UNSET",
            StatusCode::Ok => "OK",
            StatusCode::Error => "ERROR",
        }
    }

    pub(crate) fn bit(self) -> u8 {
        match self {
            StatusCode::Unset => 1,
            StatusCode::Ok => 2,
            StatusCode::Error => 4,
        }
    }
}

/// An attribute value, borrowed from the decoded span bytes.
///
/// Only the scalar kinds policies can compare are distinguished; arrays,
/// maps and bytes are [`AttrValue::Other`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttrValue<'a> {
    /// `string_value`.
    Str(&'a str),
    /// `int_value`.
    Int(i64),
    /// `double_value`.
    Double(f64),
    /// `bool_value`.
    Bool(bool),
    /// Any other kind (array, kvlist, bytes, empty).
    Other,
}

/// One span event, as far as policies look at it (only filled when
/// [`Requirements::span_events`] is set).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpanEventData<'a> {
    /// Event name.
    pub name: &'a str,
    /// Event time, Unix epoch nanoseconds.
    pub time_unix_nano: u64,
    /// Event attributes (only the keys in [`Requirements::event_attributes`]).
    pub attributes: Vec<(&'a str, AttrValue<'a>)>,
    /// The event's `dropped_attributes_count`.
    pub dropped_attributes_count: u32,
}

impl<'a> SpanEventData<'a> {
    /// Looks up an event attribute (first occurrence).
    pub fn attribute(&self, key: &str) -> Option<AttrValue<'a>> {
        self.attributes.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

/// One span, as far as policies look at it.
///
/// Strings borrow from the protobuf bytes the sampler owns. `attributes`
/// only needs the keys listed in [`Requirements::span_attributes`];
/// `resource_attributes` is a slice so that all spans of one resource can
/// share a single decoded list (it only needs the keys in
/// [`Requirements::resource_attributes`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpanData<'a> {
    /// The span ID.
    pub span_id: [u8; 8],
    /// Parent span ID; `None` (or all zero bytes) for a root span.
    pub parent_span_id: Option<[u8; 8]>,
    /// Span name.
    pub name: &'a str,
    /// OTLP `SpanKind` number (0 unspecified, 1 internal, 2 server, 3
    /// client, 4 producer, 5 consumer).
    pub kind: i32,
    /// Start time, Unix epoch nanoseconds.
    pub start_unix_nano: u64,
    /// End time, Unix epoch nanoseconds.
    pub end_unix_nano: u64,
    /// Span status code.
    pub status: StatusCode,
    /// The span's W3C `tracestate` header value (may be empty).
    pub trace_state: &'a str,
    /// The resource's `service.name` (empty when absent).
    pub service: &'a str,
    /// Span attributes (only the required keys).
    pub attributes: Vec<(&'a str, AttrValue<'a>)>,
    /// Resource attributes (only the required keys), usually shared by all
    /// spans of the same resource.
    pub resource_attributes: &'a [(&'a str, AttrValue<'a>)],
    /// OTLP `Span.flags`: the W3C trace flags in bits 0-7 (bit 0 = sampled),
    /// bits 8-9 the parent-is-remote flags. Always filled (cheap).
    pub flags: u32,
    /// The status message (may be empty). Always filled (cheap).
    pub status_message: &'a str,
    /// The span's `dropped_attributes_count`.
    pub dropped_attributes_count: u32,
    /// The span's `dropped_events_count`.
    pub dropped_events_count: u32,
    /// The span's `dropped_links_count`.
    pub dropped_links_count: u32,
    /// Span events; only filled when [`Requirements::span_events`] is set.
    pub events: Vec<SpanEventData<'a>>,
    /// Instrumentation scope name; only filled when [`Requirements::scope`].
    pub scope_name: &'a str,
    /// Instrumentation scope version; only filled when [`Requirements::scope`].
    pub scope_version: &'a str,
    /// Instrumentation scope attributes (only the keys in
    /// [`Requirements::scope_attributes`]), usually shared by all spans of
    /// the same scope.
    pub scope_attributes: &'a [(&'a str, AttrValue<'a>)],
}

impl<'a> SpanData<'a> {
    /// True when the span has no parent (`None` or an all-zero parent ID).
    pub fn is_root(&self) -> bool {
        match self.parent_span_id {
            None => true,
            Some(p) => p == [0u8; 8],
        }
    }

    /// Looks up a span attribute (first occurrence).
    pub fn attribute(&self, key: &str) -> Option<AttrValue<'a>> {
        self.attributes.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// Looks up an instrumentation scope attribute (first occurrence).
    pub fn scope_attribute(&self, key: &str) -> Option<AttrValue<'a>> {
        self.scope_attributes.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// True when the W3C `sampled` trace flag (bit 0 of [`Self::flags`]) is set.
    pub fn is_sampled_flag(&self) -> bool {
        self.flags & 0x01 != 0
    }

    /// Looks up a resource attribute (first occurrence). `service.name` falls
    /// back to [`SpanData::service`] when it is not in the list and the
    /// service is non-empty.
    pub fn resource_attribute(&self, key: &str) -> Option<AttrValue<'a>> {
        if let Some((_, v)) = self.resource_attributes.iter().find(|(k, _)| *k == key) {
            return Some(*v);
        }
        if key == SERVICE_NAME_KEY && !self.service.is_empty() {
            return Some(AttrValue::Str(self.service));
        }
        None
    }
}

/// The resource attribute key holding the service name.
pub const SERVICE_NAME_KEY: &str = "service.name";

/// A whole (buffered) trace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceData<'a> {
    /// The 16-byte trace ID.
    pub trace_id: [u8; 16],
    /// All spans received for the trace, in any order.
    pub spans: Vec<SpanData<'a>>,
    /// The trace's encoded size in bytes (the OTLP protobuf size of all its
    /// spans with their resources and scopes), what `bytes_limiting` charges.
    /// 0 when unknown (then `bytes_limiting` charges nothing).
    pub size_bytes: u64,
}

impl TraceData<'_> {
    /// Trace duration in nanoseconds: `max(end) - min(start)` over all spans
    /// (0 for an empty trace, saturating at 0 if clocks are skewed).
    pub fn duration_nanos(&self) -> u64 {
        let mut min_start = u64::MAX;
        let mut max_end = 0u64;
        for s in &self.spans {
            min_start = min_start.min(s.start_unix_nano);
            max_end = max_end.max(s.end_unix_nano);
        }
        if self.spans.is_empty() {
            0
        } else {
            max_end.saturating_sub(min_start)
        }
    }

    /// Number of spans.
    pub fn span_count(&self) -> u64 {
        self.spans.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_is_max_end_minus_min_start() {
        let t = TraceData {
            trace_id: [1; 16],
            spans: vec![
                SpanData {
                    start_unix_nano: 100,
                    end_unix_nano: 150,
                    ..Default::default()
                },
                SpanData {
                    start_unix_nano: 120,
                    end_unix_nano: 400,
                    ..Default::default()
                },
                SpanData {
                    start_unix_nano: 90,
                    end_unix_nano: 95,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(t.duration_nanos(), 310);
        assert_eq!(TraceData::default().duration_nanos(), 0);
    }

    #[test]
    fn status_parse() {
        assert_eq!(StatusCode::parse("ERROR"), Some(StatusCode::Error));
        assert_eq!(StatusCode::parse("ok"), Some(StatusCode::Ok));
        assert_eq!(StatusCode::parse("STATUS_CODE_UNSET"), Some(StatusCode::Unset));
        assert_eq!(StatusCode::parse("FATAL"), None);
        assert_eq!(StatusCode::from_otlp(2), StatusCode::Error);
        assert_eq!(StatusCode::from_otlp(7), StatusCode::Unset);
    }

    #[test]
    fn service_name_fallback() {
        let res = [("host.name", AttrValue::Str("h1"))];
        let s = SpanData {
            service: "checkout",
            resource_attributes: &res,
            ..Default::default()
        };
        assert_eq!(s.resource_attribute("service.name"), Some(AttrValue::Str("checkout")));
        assert_eq!(s.resource_attribute("host.name"), Some(AttrValue::Str("h1")));
        assert_eq!(s.resource_attribute("nope"), None);
        assert!(s.is_root());
        let child = SpanData {
            parent_span_id: Some([1; 8]),
            ..Default::default()
        };
        assert!(!child.is_root());
    }
}

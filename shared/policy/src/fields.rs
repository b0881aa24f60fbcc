//! Refinery-style field lookup on the spans of a trace, Go value
//! formatting, and the sampling key of the dynamic samplers.
//!
//! Refinery sees a span as one flat map: a few fields derived from the span
//! itself (`name`, `duration_ms`, ...), overwritten by the resource
//! attributes, overwritten by the span attributes. [`Field::lookup`] reads
//! in that precedence from a [`SpanData`]. Depends on `model` and `error`.

use std::borrow::Cow;
use std::collections::BTreeSet;

use crate::error::Issue;
use crate::model::{AttrValue, Requirements, SpanData, StatusCode, TraceData, SERVICE_NAME_KEY};

/// A field value as Refinery's rules see it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val<'a> {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(Cow<'a, str>),
}

impl<'a> Val<'a> {
    fn from_attr(v: AttrValue<'a>) -> Option<Val<'a>> {
        match v {
            AttrValue::Str(s) => Some(Val::Str(Cow::Borrowed(s))),
            AttrValue::Int(i) => Some(Val::Int(i)),
            AttrValue::Double(d) => Some(Val::Float(d)),
            AttrValue::Bool(b) => Some(Val::Bool(b)),
            AttrValue::Other => None,
        }
    }

    /// Go's `fmt.Sprintf("%v", v)`.
    pub(crate) fn go_v(&self) -> Cow<'_, str> {
        match self {
            Val::Int(i) => Cow::Owned(i.to_string()),
            Val::Float(f) => Cow::Owned(go_float_v(*f)),
            Val::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Val::Str(s) => Cow::Borrowed(s),
        }
    }

    /// Refinery's key formatting (`strconv.AppendFloat(.., 'f', -1, 64)`
    /// for floats, `%v` for the rest).
    fn key_string(&self) -> Cow<'_, str> {
        match self {
            Val::Float(f) if f.is_finite() => Cow::Owned(format!("{f}")),
            _ => self.go_v(),
        }
    }
}

/// Go's `%v` of a float64 (`strconv.FormatFloat(f, 'g', -1, 64)`): the
/// shortest digits that round-trip, in exponent form (`1e+06`,
/// `1.234567e+06`, `1e-05`) when the decimal exponent is < -4 or >= 6.
pub(crate) fn go_float_v(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    // Shortest digits and decimal exponent.
    let e = format!("{f:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    // strconv 'g' with the shortest precision decides with precision 6.
    if !(-4..6).contains(&exp) {
        format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.unsigned_abs())
    } else {
        format!("{f}")
    }
}

/// Fields derived from the span itself (Honeycomb's OTLP translation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Builtin {
    /// `name`
    Name,
    /// `trace.trace_id` (hex, as Refinery writes it)
    TraceId,
    /// `trace.span_id`
    SpanId,
    /// `trace.parent_id` (absent on root spans)
    ParentId,
    /// `type`, `span.kind` (`server`, `client`, ...)
    Kind,
    /// `status_code` (0 unset, 1 ok, 2 error)
    StatusCode,
    /// `error` (true on error spans, absent otherwise)
    Error,
    /// `duration_ms` (float)
    DurationMs,
    /// `trace.trace_state` (absent when empty)
    TraceState,
    /// `meta.signal_type` (`trace`)
    SignalType,
}

impl Builtin {
    fn parse(name: &str) -> Option<Builtin> {
        Some(match name {
            "name" => Builtin::Name,
            "trace.trace_id" => Builtin::TraceId,
            "trace.span_id" => Builtin::SpanId,
            "trace.parent_id" => Builtin::ParentId,
            "type" | "span.kind" => Builtin::Kind,
            "status_code" => Builtin::StatusCode,
            "error" => Builtin::Error,
            "duration_ms" => Builtin::DurationMs,
            "trace.trace_state" => Builtin::TraceState,
            "meta.signal_type" => Builtin::SignalType,
            _ => return None,
        })
    }

    fn value<'a>(self, span: &SpanData<'a>, trace: &TraceData<'a>) -> Option<Val<'a>> {
        Some(match self {
            Builtin::Name => Val::Str(Cow::Borrowed(span.name)),
            Builtin::TraceId => Val::Str(Cow::Owned(crate::sha1::refinery_trace_id_string(trace.trace_id))),
            Builtin::SpanId => Val::Str(Cow::Owned(hex(&span.span_id))),
            Builtin::ParentId => match span.parent_span_id {
                Some(p) if !span.is_root() => Val::Str(Cow::Owned(hex(&p))),
                _ => return None,
            },
            Builtin::Kind => Val::Str(Cow::Borrowed(match span.kind {
                1 => "internal",
                2 => "server",
                3 => "client",
                4 => "producer",
                5 => "consumer",
                _ => "unspecified",
            })),
            Builtin::StatusCode => Val::Int(match span.status {
                StatusCode::Unset => 0,
                StatusCode::Ok => 1,
                StatusCode::Error => 2,
            }),
            Builtin::Error if span.status == StatusCode::Error => Val::Bool(true),
            Builtin::Error => return None,
            Builtin::DurationMs => Val::Float(span.end_unix_nano.saturating_sub(span.start_unix_nano) as f64 / 1e6),
            Builtin::TraceState if !span.trace_state.is_empty() => Val::Str(Cow::Borrowed(span.trace_state)),
            Builtin::TraceState => return None,
            Builtin::SignalType => Val::Str(Cow::Borrowed("trace")),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Computed field: the trace's span count (Refinery's `?.NUM_DESCENDANTS`).
pub(crate) const NUM_DESCENDANTS: &str = "?.NUM_DESCENDANTS";
/// Computed field: the HTTP status class (`2xx`, `5xx`, ...) of the span's
/// `http.response.status_code` or else `http.status_code` (Tailsift only).
pub(crate) const HTTP_STATUS_CLASS: &str = "?.HTTP_STATUS_CLASS";
const STATUS_CODE_KEYS: [&str; 2] = ["http.response.status_code", "http.status_code"];

/// Names Refinery derives from data Tailsift's span model does not carry.
fn unavailable(name: &str) -> bool {
    matches!(
        name,
        "span.num_links" | "span.num_events" | "status_message" | "library.name" | "library.version" | "parent_name"
    ) || (name.starts_with("meta.") && name != "meta.signal_type")
}

#[derive(Debug, Clone, PartialEq)]
enum FieldName {
    /// Span attribute, else resource attribute, else a builtin.
    Plain {
        key: Box<str>,
        builtin: Option<Builtin>,
    },
    NumDescendants,
    HttpStatusClass,
}

/// A resolved field name, optionally `root.`-prefixed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Field {
    /// `root.` prefix: read from the root span.
    pub root: bool,
    name: FieldName,
}

impl Field {
    /// Resolves `name`; unsupported names are reported at `path`. Records
    /// the attributes the sampler must extract.
    pub(crate) fn parse(name: &str, path: &str, issues: &mut Vec<Issue>, req: &mut Requirements) -> Field {
        let (root, rest) = match name.strip_prefix("root.") {
            Some(r) => (true, r),
            None => (false, name),
        };
        let name_kind = if rest == NUM_DESCENDANTS {
            FieldName::NumDescendants
        } else if rest == HTTP_STATUS_CLASS {
            for k in STATUS_CODE_KEYS {
                require(k, req);
            }
            FieldName::HttpStatusClass
        } else {
            if rest.is_empty() {
                issues.push(Issue::new(path, "field name must not be empty"));
            } else if rest.starts_with("?.") {
                issues.push(Issue::new(
                    path,
                    format!("unknown computed field \"{rest}\" (supported: {NUM_DESCENDANTS}, {HTTP_STATUS_CLASS})"),
                ));
            } else if unavailable(rest) {
                issues.push(Issue::new(
                    path,
                    format!("field \"{rest}\" is not available: Tailsift's span model does not carry it"),
                ));
            }
            require(rest, req);
            FieldName::Plain {
                key: rest.into(),
                builtin: Builtin::parse(rest),
            }
        };
        Field { root, name: name_kind }
    }

    /// The field's value on `span` (the caller picks the root span for
    /// `root.` fields).
    pub(crate) fn lookup<'a>(&self, span: &SpanData<'a>, trace: &TraceData<'a>) -> Option<Val<'a>> {
        match &self.name {
            FieldName::Plain { key, builtin } => {
                plain(key, span).or_else(|| builtin.and_then(|b| b.value(span, trace)))
            }
            FieldName::NumDescendants => Some(Val::Int(i64::try_from(trace.spans.len()).unwrap_or(i64::MAX))),
            FieldName::HttpStatusClass => {
                let code = STATUS_CODE_KEYS.iter().find_map(|k| plain(k, span))?;
                let n = match code {
                    Val::Int(i) => i,
                    Val::Float(f) if f.is_finite() => f.trunc() as i64,
                    Val::Str(s) => s.trim().parse().ok()?,
                    _ => return None,
                };
                (100..600)
                    .contains(&n)
                    .then(|| Val::Str(Cow::Owned(format!("{}xx", n / 100))))
            }
        }
    }

    /// True for `?.NUM_DESCENDANTS` (a trace-level value).
    pub(crate) fn is_num_descendants(&self) -> bool {
        self.name == FieldName::NumDescendants
    }
}

fn plain<'a>(key: &str, span: &SpanData<'a>) -> Option<Val<'a>> {
    span.attribute(key)
        .and_then(Val::from_attr)
        .or_else(|| span.resource_attribute(key).and_then(Val::from_attr))
}

fn require(key: &str, req: &mut Requirements) {
    req.span_attributes.insert(key.to_string());
    if key != SERVICE_NAME_KEY {
        req.resource_attributes.insert(key.to_string());
    }
}

/// The root span Refinery would use: the first span without a parent.
pub(crate) fn root_span<'t, 'a>(trace: &'t TraceData<'a>) -> Option<&'t SpanData<'a>> {
    trace.spans.iter().find(|s| s.is_root())
}

/// Keys longer than this (bytes) are truncated.
pub(crate) const MAX_KEY_BYTES: usize = 1024;
/// Refinery's `maxKeyLength`: at most this many distinct values (minus
/// one) go into a key.
const MAX_KEY_VALUES: usize = 100;

/// How a dynamic sampler builds its key (Refinery's `traceKey`).
#[derive(Debug, Clone)]
pub(crate) struct KeySpec {
    fields: Vec<Field>,
    root_fields: Vec<Field>,
    use_trace_length: bool,
}

impl KeySpec {
    /// `field_list` sorted as Refinery does; `root.` fields read the root span.
    pub(crate) fn new(
        field_list: &[String],
        use_trace_length: bool,
        path: &str,
        issues: &mut Vec<Issue>,
        req: &mut Requirements,
    ) -> KeySpec {
        let mut sorted: Vec<(usize, &String)> = field_list.iter().enumerate().collect();
        sorted.sort_by(|a, b| a.1.cmp(b.1));
        let mut seen = BTreeSet::new();
        let mut fields = Vec::new();
        let mut root_fields = Vec::new();
        for (i, name) in sorted {
            let at = format!("{path}[{i}]");
            if !seen.insert(name.as_str()) {
                issues.push(Issue::new(at, format!("duplicate field \"{name}\"")));
                continue;
            }
            let f = Field::parse(name, &at, issues, req);
            if f.root {
                root_fields.push(f);
            } else {
                fields.push(f);
            }
        }
        KeySpec {
            fields,
            root_fields,
            use_trace_length,
        }
    }

    /// The key: for each field (sorted), its distinct values over all spans,
    /// sorted, each followed by `•`, then `,`; then `<value>,` for each
    /// `root.` field present on the root span; then the span count when
    /// `use_trace_length`. NUL characters become U+FFFD; at most
    /// [`MAX_KEY_BYTES`] bytes.
    pub(crate) fn build(&self, trace: &TraceData<'_>) -> String {
        let mut per_field: Vec<Vec<String>> = vec![Vec::new(); self.fields.len()];
        let mut unique = 0usize;
        'outer: for (i, f) in self.fields.iter().enumerate() {
            for span in &trace.spans {
                if let Some(v) = f.lookup(span, trace) {
                    if unique >= MAX_KEY_VALUES {
                        break 'outer;
                    }
                    let s = v.key_string();
                    if !per_field[i].iter().any(|x| *x == *s) {
                        unique += 1;
                        if unique < MAX_KEY_VALUES {
                            per_field[i].push(s.into_owned());
                        }
                    }
                }
            }
        }
        let mut key = String::new();
        for values in &mut per_field {
            if values.is_empty() {
                continue;
            }
            values.sort();
            for v in values.iter() {
                key.push_str(v);
                key.push('•');
            }
            key.push(',');
        }
        if let Some(root) = root_span(trace) {
            for f in &self.root_fields {
                if let Some(v) = f.lookup(root, trace) {
                    key.push_str(&v.go_v());
                    key.push(',');
                }
            }
        }
        if self.use_trace_length {
            key.push_str(&trace.spans.len().to_string());
        }
        if key.contains('\0') {
            key = key.replace('\0', "\u{fffd}");
        }
        if key.len() > MAX_KEY_BYTES {
            let mut end = MAX_KEY_BYTES;
            while !key.is_char_boundary(end) {
                end -= 1;
            }
            key.truncate(end);
        }
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_v_floats() {
        assert_eq!(go_float_v(1.0), "1");
        assert_eq!(go_float_v(0.5), "0.5");
        assert_eq!(go_float_v(123456.0), "123456");
        assert_eq!(go_float_v(1e6), "1e+06");
        assert_eq!(go_float_v(1234567.0), "1.234567e+06");
        assert_eq!(go_float_v(0.0001), "0.0001");
        assert_eq!(go_float_v(0.00001), "1e-05");
        assert_eq!(go_float_v(-2.5e-7), "-2.5e-07");
        assert_eq!(go_float_v(1e100), "1e+100");
        assert_eq!(go_float_v(f64::INFINITY), "+Inf");
        assert_eq!(Val::Float(1e6).key_string(), "1000000");
    }

    fn span<'a>(attrs: Vec<(&'a str, AttrValue<'a>)>, parent: Option<[u8; 8]>) -> SpanData<'a> {
        SpanData {
            attributes: attrs,
            parent_span_id: parent,
            service: "svc",
            ..Default::default()
        }
    }

    #[test]
    fn key_like_refinery() {
        let mut issues = Vec::new();
        let mut req = Requirements::default();
        let fields: Vec<String> = ["http.method", "root.http.route", "app.n"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let spec = KeySpec::new(&fields, true, "f", &mut issues, &mut req);
        assert!(issues.is_empty());
        assert!(req.span_attributes.contains("http.method"));
        assert!(req.span_attributes.contains("http.route"));
        let t = TraceData {
            trace_id: [1; 16],
            spans: vec![
                span(
                    vec![
                        ("http.method", AttrValue::Str("GET")),
                        ("http.route", AttrValue::Str("/a")),
                    ],
                    None,
                ),
                span(
                    vec![
                        ("http.method", AttrValue::Str("POST")),
                        ("app.n", AttrValue::Double(2.0)),
                    ],
                    Some([1; 8]),
                ),
                span(vec![("http.method", AttrValue::Str("GET"))], Some([1; 8])),
            ],
            size_bytes: 0,
        };
        // Sorted fields: app.n, http.method, root.http.route.
        assert_eq!(spec.build(&t), "2•,GET•POST•,/a,3");
    }

    #[test]
    fn field_precedence_and_builtins() {
        let res = [
            ("deployment", AttrValue::Str("prod")),
            ("name", AttrValue::Str("res-name")),
        ];
        let s = SpanData {
            name: "GET /x",
            status: StatusCode::Error,
            start_unix_nano: 0,
            end_unix_nano: 1_500_000,
            resource_attributes: &res,
            attributes: vec![("http.status_code", AttrValue::Int(503))],
            ..Default::default()
        };
        let t = TraceData {
            trace_id: [0; 16],
            spans: vec![s.clone()],
            size_bytes: 0,
        };
        let mut issues = Vec::new();
        let mut req = Requirements::default();
        let mut f = |n: &str| Field::parse(n, "x", &mut issues, &mut req).lookup(&s, &t);
        assert_eq!(f("name"), Some(Val::Str("res-name".into())));
        assert_eq!(f("deployment"), Some(Val::Str("prod".into())));
        assert_eq!(f("error"), Some(Val::Bool(true)));
        assert_eq!(f("status_code"), Some(Val::Int(2)));
        assert_eq!(f("duration_ms"), Some(Val::Float(1.5)));
        assert_eq!(f("trace.parent_id"), None);
        assert_eq!(f("?.HTTP_STATUS_CLASS"), Some(Val::Str("5xx".into())));
        assert_eq!(f("?.NUM_DESCENDANTS"), Some(Val::Int(1)));
        assert!(issues.is_empty());
        Field::parse("span.num_links", "x", &mut issues, &mut req);
        Field::parse("?.FOO", "y", &mut issues, &mut req);
        assert_eq!(issues.len(), 2);
    }
}

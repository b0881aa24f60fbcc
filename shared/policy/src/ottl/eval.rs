//! The compiled (typed, resolved) form of a condition and its evaluation.
//!
//! Evaluation follows upstream's rules: `and`/`or` short-circuit, an error
//! anywhere makes the whole condition fail with an error, comparisons use
//! `pkg/ottl/compare.go`'s typed rules (see [`compare`]), arithmetic
//! `pkg/ottl/math.go`'s. Values borrow from the span data and from the
//! compiled condition; only converters producing new strings allocate.

use crate::go_duration::parse_go_duration;
use std::borrow::Cow;

use regex::Regex;

use super::ast::MathOp;
use super::lexer::CmpOp;
use crate::model::{AttrValue, SpanData, SpanEventData};

/// A boolean expression.
#[derive(Debug, Clone)]
pub(crate) enum Cond {
    Or(Vec<Cond>),
    And(Vec<Cond>),
    Not(Box<Cond>),
    Const(bool),
    Cmp(CmpOp, Expr, Expr),
    /// A converter whose value must be a bool.
    Call(Expr),
}

/// A value expression.
#[derive(Debug, Clone)]
pub(crate) enum Expr {
    Lit(Lit),
    Path(Path),
    Math(Box<Expr>, Vec<(MathOp, Expr)>),
    Neg(Box<Expr>),
    Call(Box<Func>),
}

/// A literal, folded at compile time.
#[derive(Debug, Clone)]
pub(crate) enum Lit {
    Nil,
    Str(Box<str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    Bytes(Box<[u8]>),
    TraceId([u8; 16]),
    SpanId([u8; 8]),
    Duration(i64),
}

/// A resolved path.
#[derive(Debug, Clone)]
pub(crate) enum Path {
    Name,
    Kind,
    KindString,
    StatusCode,
    StatusMessage,
    Attr(Box<str>),
    TraceId,
    TraceIdString,
    SpanId,
    SpanIdString,
    ParentSpanId,
    ParentSpanIdString,
    TraceState,
    TraceStateKey(Box<str>),
    StartNanos,
    EndNanos,
    StartTime,
    EndTime,
    DroppedAttributes,
    DroppedEvents,
    DroppedLinks,
    ResourceAttr(Box<str>),
    ScopeName,
    ScopeVersion,
    ScopeAttr(Box<str>),
    EventName,
    EventTimeNanos,
    EventTime,
    EventAttr(Box<str>),
    EventDroppedAttributes,
}

/// Which value kind an `Is*` converter tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Int,
    Double,
    Bool,
}

/// A converter call with its (compiled) arguments.
#[derive(Debug, Clone)]
pub(crate) enum Func {
    IsMatch(Expr, Regex),
    Len(Expr),
    Int(Expr),
    Double(Expr),
    Bool(Expr),
    String(Expr),
    Is(Kind, Expr),
    IsRootSpan,
    HasPrefix(Expr, Box<str>),
    HasSuffix(Expr, Box<str>),
    Substring(Expr, Expr, Expr),
    ToLowerCase(Expr),
    ToUpperCase(Expr),
    Duration(Expr),
}

/// A runtime value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val<'v> {
    Nil,
    Str(Cow<'v, str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    Bytes(&'v [u8]),
    TraceId([u8; 16]),
    SpanId([u8; 8]),
    /// Nanoseconds.
    Duration(i64),
    /// Unix epoch nanoseconds.
    Time(i64),
    /// An attribute value the sampler does not decode (map, list, bytes):
    /// not equal to anything, not ordered.
    Opaque,
}

impl Val<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Val::Nil => "nil",
            Val::Str(_) => "string",
            Val::Int(_) => "int64",
            Val::Float(_) => "float64",
            Val::Bool(_) => "bool",
            Val::Bytes(_) => "bytes",
            Val::TraceId(_) => "trace ID",
            Val::SpanId(_) => "span ID",
            Val::Duration(_) => "duration",
            Val::Time(_) => "time",
            Val::Opaque => "map/list/bytes attribute",
        }
    }
}

/// Why a condition could not be evaluated (upstream: an evaluation error,
/// handled by the policy's `error_mode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EvalError(pub Cow<'static, str>);

type R<T> = Result<T, EvalError>;

fn err<T>(msg: impl Into<Cow<'static, str>>) -> R<T> {
    Err(EvalError(msg.into()))
}

/// What a condition is evaluated against: a span (and, in the `spanevent`
/// context, one of its events).
#[derive(Clone, Copy)]
pub(crate) struct Scope<'v> {
    pub trace_id: [u8; 16],
    pub span: &'v SpanData<'v>,
    pub event: Option<&'v SpanEventData<'v>>,
}

fn attr(v: Option<AttrValue<'_>>) -> Val<'_> {
    match v {
        None => Val::Nil,
        Some(AttrValue::Str(s)) => Val::Str(Cow::Borrowed(s)),
        Some(AttrValue::Int(i)) => Val::Int(i),
        Some(AttrValue::Double(d)) => Val::Float(d),
        Some(AttrValue::Bool(b)) => Val::Bool(b),
        Some(AttrValue::Other) => Val::Opaque,
    }
}

fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 15) as usize] as char);
    }
    s
}

fn kind_string(kind: i32) -> &'static str {
    match kind {
        1 => "Internal",
        2 => "Server",
        3 => "Client",
        4 => "Producer",
        5 => "Consumer",
        _ => "Unspecified",
    }
}

fn trace_state_member<'v>(ts: &'v str, key: &str) -> &'v str {
    ts.split(',')
        .filter_map(|m| m.trim_matches(|c| c == ' ' || c == '\t').split_once('='))
        .find(|(k, _)| *k == key)
        .map_or("", |(_, v)| v)
}

impl Path {
    fn get<'v>(&'v self, sc: Scope<'v>) -> R<Val<'v>> {
        let s = sc.span;
        let ev = || {
            sc.event
                .ok_or_else(|| EvalError("no span event in this context".into()))
        };
        Ok(match self {
            Path::Name => Val::Str(Cow::Borrowed(s.name)),
            Path::Kind => Val::Int(i64::from(s.kind)),
            Path::KindString => Val::Str(Cow::Borrowed(kind_string(s.kind))),
            Path::StatusCode => Val::Int(match s.status {
                crate::model::StatusCode::Unset => 0,
                crate::model::StatusCode::Ok => 1,
                crate::model::StatusCode::Error => 2,
            }),
            Path::StatusMessage => Val::Str(Cow::Borrowed(s.status_message)),
            Path::Attr(k) => attr(s.attribute(k)),
            Path::TraceId => Val::TraceId(sc.trace_id),
            Path::TraceIdString => Val::Str(Cow::Owned(hex(&sc.trace_id))),
            Path::SpanId => Val::SpanId(s.span_id),
            Path::SpanIdString => Val::Str(Cow::Owned(hex(&s.span_id))),
            Path::ParentSpanId => Val::SpanId(s.parent_span_id.unwrap_or_default()),
            Path::ParentSpanIdString => Val::Str(match s.parent_span_id {
                Some(p) if p != [0; 8] => Cow::Owned(hex(&p)),
                _ => Cow::Borrowed(""),
            }),
            Path::TraceState => Val::Str(Cow::Borrowed(s.trace_state)),
            Path::TraceStateKey(k) => Val::Str(Cow::Borrowed(trace_state_member(s.trace_state, k))),
            Path::StartNanos => Val::Int(s.start_unix_nano as i64),
            Path::EndNanos => Val::Int(s.end_unix_nano as i64),
            Path::StartTime => Val::Time(s.start_unix_nano as i64),
            Path::EndTime => Val::Time(s.end_unix_nano as i64),
            Path::DroppedAttributes => Val::Int(i64::from(s.dropped_attributes_count)),
            Path::DroppedEvents => Val::Int(i64::from(s.dropped_events_count)),
            Path::DroppedLinks => Val::Int(i64::from(s.dropped_links_count)),
            Path::ResourceAttr(k) => attr(s.resource_attribute(k)),
            Path::ScopeName => Val::Str(Cow::Borrowed(s.scope_name)),
            Path::ScopeVersion => Val::Str(Cow::Borrowed(s.scope_version)),
            Path::ScopeAttr(k) => attr(s.scope_attribute(k)),
            Path::EventName => Val::Str(Cow::Borrowed(ev()?.name)),
            Path::EventTimeNanos => Val::Int(ev()?.time_unix_nano as i64),
            Path::EventTime => Val::Time(ev()?.time_unix_nano as i64),
            Path::EventAttr(k) => attr(ev()?.attribute(k)),
            Path::EventDroppedAttributes => Val::Int(i64::from(ev()?.dropped_attributes_count)),
        })
    }
}

impl Cond {
    /// Evaluates the condition (short-circuit `and`/`or`).
    pub(crate) fn eval(&self, sc: Scope<'_>) -> R<bool> {
        match self {
            Cond::Or(items) => {
                for c in items {
                    if c.eval(sc)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Cond::And(items) => {
                for c in items {
                    if !c.eval(sc)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Cond::Not(c) => Ok(!c.eval(sc)?),
            Cond::Const(b) => Ok(*b),
            Cond::Cmp(op, l, r) => {
                let a = l.eval(sc)?;
                let b = r.eval(sc)?;
                Ok(compare(&a, &b, *op))
            }
            Cond::Call(e) => match e.eval(sc)? {
                Val::Bool(b) => Ok(b),
                other => Err(EvalError(format!("expected bool but got {}", other.type_name()).into())),
            },
        }
    }
}

impl Expr {
    pub(crate) fn eval<'v>(&'v self, sc: Scope<'v>) -> R<Val<'v>> {
        match self {
            Expr::Lit(l) => Ok(match l {
                Lit::Nil => Val::Nil,
                Lit::Str(s) => Val::Str(Cow::Borrowed(s)),
                Lit::Int(i) => Val::Int(*i),
                Lit::Float(f) => Val::Float(*f),
                Lit::Bool(b) => Val::Bool(*b),
                Lit::Bytes(b) => Val::Bytes(b),
                Lit::TraceId(t) => Val::TraceId(*t),
                Lit::SpanId(s) => Val::SpanId(*s),
                Lit::Duration(d) => Val::Duration(*d),
            }),
            Expr::Path(p) => p.get(sc),
            Expr::Math(first, rest) => {
                let mut acc = first.eval(sc)?;
                for (op, e) in rest {
                    let rhs = e.eval(sc)?;
                    acc = math(acc, *op, rhs)?;
                }
                Ok(acc)
            }
            Expr::Neg(e) => match e.eval(sc)? {
                Val::Int(i) => Ok(Val::Int(i.wrapping_neg())),
                Val::Float(f) => Ok(Val::Float(-f)),
                Val::Duration(d) => Ok(Val::Duration(d.wrapping_neg())),
                other => err(format!(
                    "unsupported unary minus operation on type {}",
                    other.type_name()
                )),
            },
            Expr::Call(f) => f.eval(sc),
        }
    }
}

/// `pkg/ottl/math.go`: int and float arithmetic (mixed operands are
/// floats), time ± duration, time - time, duration ± duration; division by
/// zero is an error; integer overflow wraps (as in Go).
fn math<'v>(x: Val<'v>, op: MathOp, y: Val<'v>) -> R<Val<'v>> {
    fn ints(a: i64, b: i64, op: MathOp) -> R<i64> {
        Ok(match op {
            MathOp::Add => a.wrapping_add(b),
            MathOp::Sub => a.wrapping_sub(b),
            MathOp::Mul => a.wrapping_mul(b),
            MathOp::Div if b == 0 => return err("attempted to divide by 0"),
            MathOp::Div => a.wrapping_div(b),
        })
    }
    fn floats(a: f64, b: f64, op: MathOp) -> R<f64> {
        Ok(match op {
            MathOp::Add => a + b,
            MathOp::Sub => a - b,
            MathOp::Mul => a * b,
            MathOp::Div if b == 0.0 => return err("attempted to divide by 0"),
            MathOp::Div => a / b,
        })
    }
    match (x, y) {
        (Val::Int(a), Val::Int(b)) => ints(a, b, op).map(Val::Int),
        (Val::Int(a), Val::Float(b)) => floats(a as f64, b, op).map(Val::Float),
        (Val::Float(a), Val::Int(b)) => floats(a, b as f64, op).map(Val::Float),
        (Val::Float(a), Val::Float(b)) => floats(a, b, op).map(Val::Float),
        (Val::Time(t), y) => match (op, y) {
            (MathOp::Add, Val::Duration(d)) => Ok(Val::Time(t.wrapping_add(d))),
            (MathOp::Sub, Val::Time(u)) => Ok(Val::Duration(t.wrapping_sub(u))),
            (MathOp::Sub, Val::Duration(d)) => Ok(Val::Time(t.wrapping_sub(d))),
            (MathOp::Add | MathOp::Sub, y) => err(format!(
                "time can only be combined with a duration (or subtract a time), found {}",
                y.type_name()
            )),
            _ => err("only addition and subtraction supported for time and duration"),
        },
        (Val::Duration(d), y) => match (op, y) {
            (MathOp::Add, Val::Duration(e)) => Ok(Val::Duration(d.wrapping_add(e))),
            (MathOp::Add, Val::Time(t)) => Ok(Val::Time(t.wrapping_add(d))),
            (MathOp::Sub, Val::Duration(e)) => Ok(Val::Duration(d.wrapping_sub(e))),
            (MathOp::Add | MathOp::Sub, y) => err(format!(
                "a duration can only be combined with a duration, found {}",
                y.type_name()
            )),
            _ => err("only addition and subtraction supported for time and duration"),
        },
        (Val::Int(_) | Val::Float(_), y) => err(format!("{} must be int64 or float64", y.type_name())),
        (x, _) => err(format!("{} must be int64, float64, time or duration", x.type_name())),
    }
}

fn ord<T: PartialOrd>(a: T, b: T, op: CmpOp) -> bool {
    match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
    }
}

/// `pkg/ottl/compare.go`: `nil == nil`; `nil` and any other value are only
/// `!=`; values of different types are only `!=`, except int and float
/// which compare numerically; strings compare byte-wise, bools with
/// `false < true`, bytes lexicographically; trace/span IDs only support
/// `==`/`!=` (and never equal a byte literal); durations and times compare
/// with their own kind. An undecoded map/list/bytes attribute is only `!=`.
pub(crate) fn compare(a: &Val<'_>, b: &Val<'_>, op: CmpOp) -> bool {
    let invalid = op == CmpOp::Ne;
    match (a, b) {
        (Val::Nil, Val::Nil) => matches!(op, CmpOp::Eq | CmpOp::Le | CmpOp::Ge),
        (Val::Nil, _) | (_, Val::Nil) => invalid,
        (Val::Str(x), Val::Str(y)) => ord(x.as_bytes(), y.as_bytes(), op),
        (Val::Int(x), Val::Int(y)) => ord(x, y, op),
        (Val::Int(x), Val::Float(y)) => ord(*x as f64, *y, op),
        (Val::Float(x), Val::Int(y)) => ord(*x, *y as f64, op),
        (Val::Float(x), Val::Float(y)) => ord(x, y, op),
        (Val::Bool(x), Val::Bool(y)) => ord(x, y, op),
        (Val::Bytes(x), Val::Bytes(y)) => ord(x, y, op),
        (Val::Duration(x), Val::Duration(y)) => ord(x, y, op),
        (Val::Time(x), Val::Time(y)) => ord(x, y, op),
        (Val::TraceId(x), Val::TraceId(y)) => match op {
            CmpOp::Eq => x == y,
            CmpOp::Ne => x != y,
            _ => false,
        },
        (Val::SpanId(x), Val::SpanId(y)) => match op {
            CmpOp::Eq => x == y,
            CmpOp::Ne => x != y,
            _ => false,
        },
        _ => invalid,
    }
}

/// `StringLikeGetter`: `None` for nil.
fn string_like<'v>(v: Val<'v>) -> R<Option<Cow<'v, str>>> {
    Ok(Some(match v {
        Val::Nil => return Ok(None),
        Val::Str(s) => s,
        Val::Int(i) => Cow::Owned(i.to_string()),
        Val::Float(f) => Cow::Owned(f.to_string()),
        Val::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
        Val::Bytes(b) => Cow::Owned(hex(b)),
        Val::Duration(d) => Cow::Owned(d.to_string()),
        other => return err(format!("unsupported type: {}", other.type_name())),
    }))
}

/// `StringGetter`: the value must be a string (nil is an error).
fn string_strict(v: Val<'_>) -> R<Cow<'_, str>> {
    match v {
        Val::Str(s) => Ok(s),
        other => err(format!("expected string but got {}", other.type_name())),
    }
}

/// `IntLikeGetter`: a string that is not an integer reads as nil (no error).
fn int_like(v: Val<'_>) -> R<Option<i64>> {
    Ok(match v {
        Val::Nil => None,
        Val::Int(i) => Some(i),
        Val::Float(f) => Some(f as i64),
        Val::Str(s) => s.parse::<i64>().ok(),
        Val::Bool(b) => Some(i64::from(b)),
        other => return err(format!("unsupported type: {}", other.type_name())),
    })
}

/// `FloatLikeGetter`: a string that is not a number is an error.
fn float_like(v: Val<'_>) -> R<Option<f64>> {
    Ok(match v {
        Val::Nil => None,
        Val::Int(i) => Some(i as f64),
        Val::Float(f) => Some(f),
        Val::Str(s) => match s.parse::<f64>() {
            Ok(f) => Some(f),
            Err(_) => return err(format!("strconv.ParseFloat: parsing {s:?}: invalid syntax")),
        },
        Val::Bool(b) => Some(if b { 1.0 } else { 0.0 }),
        other => return err(format!("unsupported type: {}", other.type_name())),
    })
}

/// `BoolLikeGetter` (Go's `strconv.ParseBool` for strings).
fn bool_like(v: Val<'_>) -> R<Option<bool>> {
    Ok(match v {
        Val::Nil => None,
        Val::Bool(b) => Some(b),
        Val::Int(i) => Some(i != 0),
        Val::Float(f) => Some(f != 0.0),
        Val::Str(s) => match &*s {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
            _ => return err(format!("strconv.ParseBool: parsing {s:?}: invalid syntax")),
        },
        other => return err(format!("unsupported type: {}", other.type_name())),
    })
}

impl Func {
    fn eval<'v>(&'v self, sc: Scope<'v>) -> R<Val<'v>> {
        Ok(match self {
            Func::IsMatch(t, re) => Val::Bool(match string_like(t.eval(sc)?)? {
                Some(s) => re.is_match(&s),
                None => false,
            }),
            Func::Len(t) => match t.eval(sc)? {
                Val::Str(s) => Val::Int(s.len() as i64),
                Val::Bytes(b) => Val::Int(b.len() as i64),
                other => return err(format!("unsupported type for Len: {}", other.type_name())),
            },
            Func::Int(t) => int_like(t.eval(sc)?)?.map_or(Val::Nil, Val::Int),
            Func::Double(t) => float_like(t.eval(sc)?)?.map_or(Val::Nil, Val::Float),
            Func::Bool(t) => bool_like(t.eval(sc)?)?.map_or(Val::Nil, Val::Bool),
            Func::String(t) => string_like(t.eval(sc)?)?.map_or(Val::Nil, Val::Str),
            Func::Is(kind, t) => {
                let v = t.eval(sc)?;
                Val::Bool(matches!(
                    (kind, v),
                    (Kind::Str, Val::Str(_))
                        | (Kind::Int, Val::Int(_))
                        | (Kind::Double, Val::Float(_))
                        | (Kind::Bool, Val::Bool(_))
                ))
            }
            Func::IsRootSpan => Val::Bool(sc.span.is_root()),
            Func::HasPrefix(t, p) => Val::Bool(string_strict(t.eval(sc)?)?.starts_with(&**p)),
            Func::HasSuffix(t, p) => Val::Bool(string_strict(t.eval(sc)?)?.ends_with(&**p)),
            Func::Substring(t, start, len) => {
                let s = string_strict(t.eval(sc)?)?;
                let (Val::Int(start), Val::Int(len)) = (start.eval(sc)?, len.eval(sc)?) else {
                    return err("Substring start and length must be int64");
                };
                if start < 0 {
                    return err(format!(
                        "invalid start for substring function, {start} cannot be negative"
                    ));
                }
                if len <= 0 {
                    return err(format!(
                        "invalid length for substring function, {len} cannot be negative or zero"
                    ));
                }
                let end = start.saturating_add(len);
                if end > s.len() as i64 {
                    return err(format!(
                        "invalid range for substring function, {end} cannot be greater than the length of target string({})",
                        s.len()
                    ));
                }
                let (start, end) = (start as usize, end as usize);
                match s {
                    Cow::Borrowed(b) => match b.get(start..end) {
                        Some(sub) => Val::Str(Cow::Borrowed(sub)),
                        None => return err("substring does not fall on character boundaries"),
                    },
                    Cow::Owned(o) => match o.get(start..end) {
                        Some(sub) => Val::Str(Cow::Owned(sub.to_string())),
                        None => return err("substring does not fall on character boundaries"),
                    },
                }
            }
            Func::ToLowerCase(t) => Val::Str(Cow::Owned(string_strict(t.eval(sc)?)?.to_lowercase())),
            Func::ToUpperCase(t) => Val::Str(Cow::Owned(string_strict(t.eval(sc)?)?.to_uppercase())),
            Func::Duration(t) => {
                let s = string_strict(t.eval(sc)?)?;
                match parse_go_duration(&s) {
                    Some(d) => Val::Duration(d),
                    None => return err(format!("time: invalid duration {s:?}")),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Val<'_> {
        Val::Str(Cow::Borrowed(x))
    }

    #[test]
    fn comparison_rules_match_upstream() {
        use CmpOp::*;
        // nil
        assert!(compare(&Val::Nil, &Val::Nil, Eq));
        assert!(compare(&Val::Nil, &Val::Nil, Le));
        assert!(!compare(&Val::Nil, &Val::Nil, Lt));
        assert!(!compare(&Val::Nil, &s("a"), Eq));
        assert!(compare(&Val::Nil, &s("a"), Ne));
        assert!(!compare(&Val::Int(1), &Val::Nil, Gt));
        // mixed types: only !=
        assert!(!compare(&s("1"), &Val::Int(1), Eq));
        assert!(compare(&s("1"), &Val::Int(1), Ne));
        assert!(!compare(&Val::Bool(true), &Val::Int(1), Eq));
        // int/float
        assert!(compare(&Val::Int(1), &Val::Float(1.0), Eq));
        assert!(compare(&Val::Float(0.5), &Val::Int(1), Lt));
        // strings, bools
        assert!(compare(&s("abc"), &s("abd"), Lt));
        assert!(compare(&s("B"), &s("a"), Lt), "byte order");
        assert!(compare(&Val::Bool(false), &Val::Bool(true), Lt));
        assert!(compare(&Val::Bool(true), &Val::Bool(true), Ge));
        // ids
        assert!(compare(&Val::SpanId([1; 8]), &Val::SpanId([1; 8]), Eq));
        assert!(!compare(&Val::SpanId([1; 8]), &Val::SpanId([2; 8]), Lt));
        assert!(!compare(&Val::SpanId([1; 8]), &Val::Bytes(&[1; 8]), Eq));
        // opaque
        assert!(!compare(&Val::Opaque, &Val::Opaque, Eq));
        assert!(compare(&Val::Opaque, &Val::Nil, Ne));
        // NaN
        assert!(!compare(&Val::Float(f64::NAN), &Val::Float(f64::NAN), Eq));
        assert!(compare(&Val::Float(f64::NAN), &Val::Float(f64::NAN), Ne));
    }

    #[test]
    fn math_rules() {
        assert_eq!(math(Val::Int(7), MathOp::Div, Val::Int(2)), Ok(Val::Int(3)));
        assert_eq!(math(Val::Int(7), MathOp::Div, Val::Float(2.0)), Ok(Val::Float(3.5)));
        assert!(math(Val::Int(7), MathOp::Div, Val::Int(0)).is_err());
        assert!(math(Val::Float(7.0), MathOp::Div, Val::Float(0.0)).is_err());
        assert_eq!(
            math(Val::Int(i64::MAX), MathOp::Add, Val::Int(1)),
            Ok(Val::Int(i64::MIN))
        );
        assert!(math(s("a"), MathOp::Add, Val::Int(1)).is_err());
        assert!(math(Val::Int(1), MathOp::Add, s("a")).is_err());
        assert_eq!(math(Val::Time(10), MathOp::Sub, Val::Time(4)), Ok(Val::Duration(6)));
        assert_eq!(math(Val::Time(10), MathOp::Add, Val::Duration(4)), Ok(Val::Time(14)));
        assert!(math(Val::Time(10), MathOp::Mul, Val::Duration(4)).is_err());
    }

    #[test]
    fn conversions() {
        assert_eq!(int_like(s("42")), Ok(Some(42)));
        assert_eq!(int_like(s("4.2")), Ok(None), "Int() of a non-integer string is nil");
        assert_eq!(int_like(Val::Float(-3.9)), Ok(Some(-3)));
        assert!(int_like(Val::Opaque).is_err());
        assert_eq!(float_like(s("4.5")), Ok(Some(4.5)));
        assert!(
            float_like(s("abc")).is_err(),
            "Double() of a non-number string is an error"
        );
        assert_eq!(bool_like(s("T")), Ok(Some(true)));
        assert!(bool_like(s("yes")).is_err());
        assert_eq!(string_like(Val::Int(5)).unwrap().as_deref(), Some("5"));
        assert_eq!(string_like(Val::Float(1.5)).unwrap().as_deref(), Some("1.5"));
        assert_eq!(string_like(Val::Nil).unwrap(), None);
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1s"), Some(1_000_000_000));
        assert_eq!(parse_go_duration("1.5ms"), Some(1_500_000));
        assert_eq!(parse_go_duration("1h2m3s"), Some(3_723_000_000_000));
        assert_eq!(parse_go_duration("-250us"), Some(-250_000));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration(".5s"), Some(500_000_000));
        assert_eq!(parse_go_duration("1"), None);
        assert_eq!(parse_go_duration("1d"), None);
        assert_eq!(parse_go_duration(""), None);
    }
}

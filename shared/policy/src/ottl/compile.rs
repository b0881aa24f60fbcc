//! Resolution of a parsed condition: paths to span/resource/scope/event
//! fields, enum symbols to numbers, converter names to implementations
//! (arity and literal arguments checked, regexes compiled), and the
//! attribute keys read recorded in [`Requirements`].

use regex::Regex;

use super::ast::{ArgAst, BoolAst, CallAst, FieldAst, KeyAst, PathAst, ValAst};
use super::eval::{Cond, Expr, Func, Kind, Lit, Path};
use super::{Context, OttlError};
use crate::go_duration::parse_go_duration;
use crate::model::{Requirements, SERVICE_NAME_KEY};

pub(crate) struct Compiler<'t, 'r> {
    pub text: &'t str,
    pub context: Context,
    pub req: &'r mut Requirements,
}

type CResult<T> = Result<T, OttlError>;

/// Converters supported in conditions, with their parameter names.
const FUNCS: &[(&str, &[&str])] = &[
    ("IsMatch", &["target", "pattern"]),
    ("Len", &["target"]),
    ("Int", &["target"]),
    ("Double", &["target"]),
    ("Bool", &["target"]),
    ("String", &["target"]),
    ("IsString", &["target"]),
    ("IsInt", &["target"]),
    ("IsDouble", &["target"]),
    ("IsBool", &["target"]),
    ("IsRootSpan", &[]),
    ("HasPrefix", &["target", "prefix"]),
    ("HasSuffix", &["target", "suffix"]),
    ("Substring", &["target", "start", "length"]),
    ("ToLowerCase", &["target"]),
    ("ToUpperCase", &["target"]),
    ("TraceID", &["bytes"]),
    ("SpanID", &["bytes"]),
    ("Duration", &["duration"]),
];

/// The names of the supported converters (for messages and docs).
pub(crate) fn supported_functions(context: Context) -> Vec<&'static str> {
    FUNCS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| context == Context::Span || *n != "IsRootSpan")
        .collect()
}

fn enum_value(sym: &str) -> Option<i64> {
    Some(match sym {
        "SPAN_KIND_UNSPECIFIED" => 0,
        "SPAN_KIND_INTERNAL" => 1,
        "SPAN_KIND_SERVER" => 2,
        "SPAN_KIND_CLIENT" => 3,
        "SPAN_KIND_PRODUCER" => 4,
        "SPAN_KIND_CONSUMER" => 5,
        "STATUS_CODE_UNSET" => 0,
        "STATUS_CODE_OK" => 1,
        "STATUS_CODE_ERROR" => 2,
        _ => return None,
    })
}

/// Which part of the telemetry a path addresses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Span,
    Resource,
    Scope,
    Event,
}

impl Compiler<'_, '_> {
    fn err(&self, pos: usize, msg: impl Into<String>) -> OttlError {
        OttlError::at(self.text, pos, msg)
    }

    pub(crate) fn cond(&mut self, b: &BoolAst) -> CResult<Cond> {
        Ok(match b {
            BoolAst::Or(items) => Cond::Or(items.iter().map(|i| self.cond(i)).collect::<CResult<_>>()?),
            BoolAst::And(items) => Cond::And(items.iter().map(|i| self.cond(i)).collect::<CResult<_>>()?),
            BoolAst::Not(inner) => Cond::Not(Box::new(self.cond(inner)?)),
            BoolAst::Const(v) => Cond::Const(*v),
            BoolAst::Cmp { lhs, op, rhs } => Cond::Cmp(*op, self.value(lhs)?, self.value(rhs)?),
            BoolAst::Call(c) => Cond::Call(self.call(c)?),
        })
    }

    fn value(&mut self, v: &ValAst) -> CResult<Expr> {
        Ok(match v {
            ValAst::Nil(_) => Expr::Lit(Lit::Nil),
            ValAst::Str(s, _) => Expr::Lit(Lit::Str(s.clone().into_boxed_str())),
            ValAst::Bool(b, _) => Expr::Lit(Lit::Bool(*b)),
            ValAst::Bytes(b, _) => Expr::Lit(Lit::Bytes(b.clone().into_boxed_slice())),
            ValAst::Int(i, _) => Expr::Lit(Lit::Int(*i)),
            ValAst::Float(f, _) => Expr::Lit(Lit::Float(*f)),
            ValAst::Enum(sym, pos) => match enum_value(sym) {
                Some(n) => Expr::Lit(Lit::Int(n)),
                None => {
                    return Err(self.err(
                        *pos,
                        format!("unknown enum symbol {sym} (supported: SPAN_KIND_*, STATUS_CODE_*)"),
                    ))
                }
            },
            ValAst::Path(p) => Expr::Path(self.path(p)?),
            ValAst::Call(c) => self.call(c)?,
            ValAst::Math { first, rest } => {
                let operand = |me: &mut Self, v: &ValAst| -> CResult<Expr> {
                    match v {
                        ValAst::Int(..)
                        | ValAst::Float(..)
                        | ValAst::Path(_)
                        | ValAst::Call(_)
                        | ValAst::Math { .. }
                        | ValAst::Neg(..) => me.value(v),
                        _ => Err(me.err(
                            v.pos(),
                            "arithmetic operands must be numbers, paths, converters or parenthesized expressions",
                        )),
                    }
                };
                let first = operand(self, first)?;
                let mut out = Vec::with_capacity(rest.len());
                for (op, v) in rest {
                    out.push((*op, operand(self, v)?));
                }
                Expr::Math(Box::new(first), out)
            }
            ValAst::Neg(inner, _) => Expr::Neg(Box::new(self.value(inner)?)),
            ValAst::Unsupported(what, pos) => {
                return Err(self.err(*pos, format!("{what} are not supported in tail sampling conditions")))
            }
        })
    }

    fn path(&mut self, p: &PathAst) -> CResult<Path> {
        let f = &p.fields;
        let written = f.iter().map(|x| x.name.as_str()).collect::<Vec<_>>().join(".");
        let unknown = |me: &Self, at: &FieldAst| me.err(at.pos, format!("unknown path \"{written}\""));
        let span_ctx = self.context == Context::Span;
        let prefixed = |name: &str| f.len() > 1 && f[0].name == name && f[0].keys.is_empty();
        let (target, rest): (Target, &[FieldAst]) = if f[0].name == "cache" {
            return Err(self.err(
                f[0].pos,
                "the `cache` path is not supported in tail sampling conditions",
            ));
        } else if prefixed("resource") {
            (Target::Resource, &f[1..])
        } else if prefixed("instrumentation_scope") || prefixed("scope") {
            (Target::Scope, &f[1..])
        } else if prefixed("span") {
            (Target::Span, &f[1..])
        } else if !span_ctx && prefixed("spanevent") {
            (Target::Event, &f[1..])
        } else if span_ctx {
            (Target::Span, f)
        } else {
            (Target::Event, f)
        };
        let names: Vec<&str> = rest.iter().map(|x| x.name.as_str()).collect();
        let key = |me: &Self, field: &FieldAst| -> CResult<Box<str>> {
            match field.keys.first() {
                Some(KeyAst::Str(s, _)) => Ok(s.clone().into_boxed_str()),
                Some(KeyAst::Int(_, pos)) => Err(me.err(*pos, format!("`{}` needs a string key", field.name))),
                None => Err(me.err(
                    field.pos,
                    format!(
                        "`{}` must be indexed with a key, e.g. {}[\"key\"] (whole maps are not supported)",
                        field.name, field.name
                    ),
                )),
            }
        };
        let path = match (target, names.as_slice()) {
            (Target::Resource, ["attributes"]) => {
                let k = key(self, &rest[0])?;
                if &*k != SERVICE_NAME_KEY {
                    self.req.resource_attributes.insert(k.to_string());
                }
                Path::ResourceAttr(k)
            }
            (Target::Scope, ["name"]) => Path::ScopeName,
            (Target::Scope, ["version"]) => Path::ScopeVersion,
            (Target::Scope, ["attributes"]) => {
                let k = key(self, &rest[0])?;
                self.req.scope_attributes.insert(k.to_string());
                Path::ScopeAttr(k)
            }
            (Target::Span, ["name"]) => Path::Name,
            (Target::Span, ["kind"]) => Path::Kind,
            (Target::Span, ["kind", "string"]) => Path::KindString,
            (Target::Span, ["status", "code"]) => Path::StatusCode,
            (Target::Span, ["status", "message"]) => Path::StatusMessage,
            (Target::Span, ["attributes"]) => {
                let k = key(self, &rest[0])?;
                self.req.span_attributes.insert(k.to_string());
                Path::Attr(k)
            }
            (Target::Span, ["trace_id"]) => Path::TraceId,
            (Target::Span, ["trace_id", "string"]) => Path::TraceIdString,
            (Target::Span, ["span_id"]) => Path::SpanId,
            (Target::Span, ["span_id", "string"]) => Path::SpanIdString,
            (Target::Span, ["parent_span_id"]) => Path::ParentSpanId,
            (Target::Span, ["parent_span_id", "string"]) => Path::ParentSpanIdString,
            (Target::Span, ["trace_state"]) if rest[0].keys.is_empty() => Path::TraceState,
            (Target::Span, ["trace_state"]) => Path::TraceStateKey(key(self, &rest[0])?),
            (Target::Span, ["start_time_unix_nano"]) => Path::StartNanos,
            (Target::Span, ["end_time_unix_nano"]) => Path::EndNanos,
            (Target::Span, ["start_time"]) => Path::StartTime,
            (Target::Span, ["end_time"]) => Path::EndTime,
            (Target::Span, ["dropped_attributes_count"]) => Path::DroppedAttributes,
            (Target::Span, ["dropped_events_count"]) => Path::DroppedEvents,
            (Target::Span, ["dropped_links_count"]) => Path::DroppedLinks,
            (Target::Event, ["name"]) => Path::EventName,
            (Target::Event, ["time_unix_nano"]) => Path::EventTimeNanos,
            (Target::Event, ["time"]) => Path::EventTime,
            (Target::Event, ["attributes"]) => {
                let k = key(self, &rest[0])?;
                self.req.event_attributes.insert(k.to_string());
                Path::EventAttr(k)
            }
            (Target::Event, ["dropped_attributes_count"]) => Path::EventDroppedAttributes,
            _ => {
                // Point at the first segment that makes the path unknown.
                let bad = self.first_unknown(target, rest);
                return Err(unknown(self, bad));
            }
        };
        // Keys: only `attributes["k"]` and `trace_state["k"]` take one.
        let keyed = matches!(
            (target, names.as_slice()),
            (_, ["attributes"]) | (Target::Span, ["trace_state"])
        );
        for (k, field) in rest.iter().enumerate() {
            let allowed = if keyed && k + 1 == rest.len() { 1 } else { 0 };
            if field.keys.len() > allowed {
                let key = &field.keys[allowed];
                let msg = if allowed == 1 {
                    "nested indexing is not supported (attribute values are only decoded as scalars)".to_string()
                } else {
                    format!("`{}` cannot be indexed", field.name)
                };
                return Err(self.err(key.pos(), msg));
            }
        }
        if target == Target::Scope {
            self.req.scope = true;
        }
        if target == Target::Event {
            self.req.span_events = true;
        }
        Ok(path)
    }

    /// The first segment of `rest` that no known path starts with.
    fn first_unknown<'f>(&self, target: Target, rest: &'f [FieldAst]) -> &'f FieldAst {
        let known: &[&str] = match target {
            Target::Resource => &["attributes"],
            Target::Scope => &["name", "version", "attributes"],
            Target::Event => &[
                "name",
                "time_unix_nano",
                "time",
                "attributes",
                "dropped_attributes_count",
            ],
            Target::Span => &[
                "name",
                "kind",
                "status",
                "attributes",
                "trace_id",
                "span_id",
                "parent_span_id",
                "trace_state",
                "start_time_unix_nano",
                "end_time_unix_nano",
                "start_time",
                "end_time",
                "dropped_attributes_count",
                "dropped_events_count",
                "dropped_links_count",
            ],
        };
        match rest.first() {
            Some(first) if !known.contains(&first.name.as_str()) => first,
            Some(first) => rest.get(1).unwrap_or(first),
            None => unreachable!("paths have at least one segment after the context"),
        }
    }

    /// Orders the arguments by parameter (positional first, then named).
    fn args<'a>(&self, c: &'a CallAst, params: &[&str]) -> CResult<Vec<&'a ValAst>> {
        let mut out: Vec<Option<&ValAst>> = vec![None; params.len()];
        let mut seen_named = false;
        for (i, ArgAst { name, pos, value }) in c.args.iter().enumerate() {
            let slot = match name {
                None if seen_named => {
                    return Err(self.err(*pos, "positional arguments must come before named arguments"));
                }
                None => i,
                Some(n) => {
                    seen_named = true;
                    match params.iter().position(|p| p == n) {
                        Some(k) => k,
                        None => {
                            return Err(self.err(
                                *pos,
                                format!(
                                    "{} has no parameter named `{n}` (parameters: {})",
                                    c.name,
                                    params.join(", ")
                                ),
                            ))
                        }
                    }
                }
            };
            if slot >= params.len() {
                return Err(self.err(
                    *pos,
                    format!("too many arguments to {}: expected {}", c.name, params.len()),
                ));
            }
            if out[slot].is_some() {
                return Err(self.err(*pos, format!("argument `{}` given twice", params[slot])));
            }
            out[slot] = Some(value);
        }
        out.iter()
            .enumerate()
            .map(|(k, v)| {
                v.ok_or_else(|| {
                    self.err(
                        c.pos,
                        format!(
                            "{} expects {} argument(s) ({}); `{}` is missing",
                            c.name,
                            params.len(),
                            params.join(", "),
                            params[k]
                        ),
                    )
                })
            })
            .collect()
    }

    fn literal_str<'a>(&self, v: &'a ValAst, what: &str) -> CResult<&'a str> {
        match v {
            ValAst::Str(s, _) => Ok(s),
            other => Err(self.err(other.pos(), format!("{what} must be a string literal"))),
        }
    }

    fn literal_bytes<'a>(&self, v: &'a ValAst, what: &str) -> CResult<&'a [u8]> {
        match v {
            ValAst::Bytes(b, _) => Ok(b),
            other => Err(self.err(other.pos(), format!("{what} must be a byte literal (0x...)"))),
        }
    }

    fn call(&mut self, c: &CallAst) -> CResult<Expr> {
        let Some((_, params)) = FUNCS
            .iter()
            .find(|(n, _)| *n == c.name)
            .filter(|(n, _)| self.context == Context::Span || *n != "IsRootSpan")
        else {
            return Err(self.err(
                c.pos,
                format!(
                    "unknown function \"{}\" (supported: {})",
                    c.name,
                    supported_functions(self.context).join(", ")
                ),
            ));
        };
        if let Some(k) = c.keys.first() {
            return Err(self.err(k.pos(), "indexing the result of a converter is not supported"));
        }
        let a = self.args(c, params)?;
        let f = match c.name.as_str() {
            "IsMatch" => {
                let pattern = self.literal_str(a[1], "the IsMatch pattern")?;
                let re = Regex::new(pattern).map_err(|e| {
                    self.err(
                        a[1].pos(),
                        format!("the pattern supplied to IsMatch is not a valid regexp pattern: {e}"),
                    )
                })?;
                Func::IsMatch(self.value(a[0])?, re)
            }
            "Len" => Func::Len(self.value(a[0])?),
            "Int" => Func::Int(self.value(a[0])?),
            "Double" => Func::Double(self.value(a[0])?),
            "Bool" => Func::Bool(self.value(a[0])?),
            "String" => Func::String(self.value(a[0])?),
            "IsString" => Func::Is(Kind::Str, self.value(a[0])?),
            "IsInt" => Func::Is(Kind::Int, self.value(a[0])?),
            "IsDouble" => Func::Is(Kind::Double, self.value(a[0])?),
            "IsBool" => Func::Is(Kind::Bool, self.value(a[0])?),
            "IsRootSpan" => Func::IsRootSpan,
            "HasPrefix" => {
                let p = self.literal_str(a[1], "the HasPrefix prefix")?;
                Func::HasPrefix(self.value(a[0])?, p.into())
            }
            "HasSuffix" => {
                let p = self.literal_str(a[1], "the HasSuffix suffix")?;
                Func::HasSuffix(self.value(a[0])?, p.into())
            }
            "Substring" => Func::Substring(self.value(a[0])?, self.value(a[1])?, self.value(a[2])?),
            "ToLowerCase" => Func::ToLowerCase(self.value(a[0])?),
            "ToUpperCase" => Func::ToUpperCase(self.value(a[0])?),
            "TraceID" => {
                let b = self.literal_bytes(a[0], "the TraceID argument")?;
                let id: [u8; 16] = b
                    .try_into()
                    .map_err(|_| self.err(a[0].pos(), "traces ids must be 16 bytes"))?;
                return Ok(Expr::Lit(Lit::TraceId(id)));
            }
            "SpanID" => {
                let b = self.literal_bytes(a[0], "the SpanID argument")?;
                let id: [u8; 8] = b
                    .try_into()
                    .map_err(|_| self.err(a[0].pos(), "span ids must be 8 bytes"))?;
                return Ok(Expr::Lit(Lit::SpanId(id)));
            }
            "Duration" => {
                if let ValAst::Str(s, pos) = a[0] {
                    return match parse_go_duration(s) {
                        Some(d) => Ok(Expr::Lit(Lit::Duration(d))),
                        None => Err(self.err(
                            *pos,
                            format!("invalid duration {s:?} (e.g. \"1.5s\", \"300ms\", \"1h2m\")"),
                        )),
                    };
                }
                Func::Duration(self.value(a[0])?)
            }
            other => unreachable!("converter {other} is listed but not implemented"),
        };
        Ok(Expr::Call(Box::new(f)))
    }
}

//! OTTL (OpenTelemetry Transformation Language) conditions, the subset the
//! collector's `ottl_condition` tail-sampling policy uses: parsed and
//! compiled once, evaluated per span / span event without parsing.
//!
//! Layering inside this module (no cycles): `lexer` and `ast` depend on
//! nothing here; `parser` on both; `eval` (the compiled form and its
//! evaluation) on `ast` and `lexer` for the operator types; `compile` (AST
//! to compiled form) on `ast` and `eval`. This file ties them together and
//! depends only on `crate::model` outside the module.

mod ast;
mod compile;
mod eval;
mod lexer;
mod parser;

use crate::model::{Requirements, TraceData};

/// Longest accepted condition, in bytes.
pub(crate) const MAX_CONDITION_LEN: usize = 4096;
/// Deepest accepted nesting (parentheses, `not`, converter arguments).
pub(crate) const MAX_DEPTH: usize = 64;

/// A compile-time problem in one condition, located by its 1-based column
/// (in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OttlError {
    /// 1-based character column.
    pub column: usize,
    /// Byte offset (used to pick the error that got furthest).
    pub offset: usize,
    pub message: String,
}

impl OttlError {
    pub(crate) fn at(text: &str, offset: usize, message: impl Into<String>) -> Self {
        let offset = offset.min(text.len());
        let column = text.char_indices().take_while(|(i, _)| *i < offset).count() + 1;
        OttlError {
            column,
            offset,
            message: message.into(),
        }
    }
}

/// The OTTL context a condition is evaluated in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    /// `ottlspan`: once per span.
    Span,
    /// `ottlspanevent`: once per span event.
    SpanEvent,
}

/// What an evaluation error does (the policy's `error_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorMode {
    /// The policy evaluation fails.
    Propagate,
    /// The failing condition counts as false (upstream logs it).
    Ignore,
    /// The failing condition counts as false.
    Silent,
}

/// One compiled condition.
#[derive(Debug, Clone)]
pub(crate) struct Condition {
    cond: eval::Cond,
}

/// Parses and compiles one condition, recording the attributes it reads.
pub(crate) fn compile(text: &str, context: Context, req: &mut Requirements) -> Result<Condition, OttlError> {
    let ast = parser::parse(text)?;
    let mut c = compile::Compiler { text, context, req };
    Ok(Condition { cond: c.cond(&ast)? })
}

/// An evaluation error under `error_mode: propagate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PolicyEvalError(pub String);

/// The span and span-event condition lists of one `ottl_condition` policy.
#[derive(Debug, Clone)]
pub(crate) struct ConditionSet {
    pub span: Vec<Condition>,
    pub span_event: Vec<Condition>,
    pub error_mode: ErrorMode,
}

impl ConditionSet {
    /// Upstream's evaluation: spans in order; for each span the span
    /// conditions (any true → sampled), then each of its events against the
    /// span-event conditions. A condition that fails to evaluate is skipped
    /// (`ignore`, `silent`) or fails the whole policy (`propagate`).
    pub(crate) fn matches(&self, trace: &TraceData<'_>) -> Result<bool, PolicyEvalError> {
        let propagate = self.error_mode == ErrorMode::Propagate;
        let any = |conds: &[Condition], sc: eval::Scope<'_>| -> Result<bool, PolicyEvalError> {
            for c in conds {
                match c.cond.eval(sc) {
                    Ok(true) => return Ok(true),
                    Ok(false) => {}
                    Err(e) if propagate => return Err(PolicyEvalError(e.0.into_owned())),
                    Err(_) => {}
                }
            }
            Ok(false)
        };
        for span in &trace.spans {
            if !self.span.is_empty()
                && any(
                    &self.span,
                    eval::Scope {
                        trace_id: trace.trace_id,
                        span,
                        event: None,
                    },
                )?
            {
                return Ok(true);
            }
            if !self.span_event.is_empty() {
                for event in &span.events {
                    let sc = eval::Scope {
                        trace_id: trace.trace_id,
                        span,
                        event: Some(event),
                    };
                    if any(&self.span_event, sc)? {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AttrValue, SpanData, SpanEventData, StatusCode};

    fn cond(text: &str, ctx: Context) -> Condition {
        compile(text, ctx, &mut Requirements::default()).unwrap_or_else(|e| panic!("{text}: {e:?}"))
    }

    fn eval_span(text: &str, span: &SpanData<'_>) -> Result<bool, String> {
        let c = cond(text, Context::Span);
        c.cond
            .eval(eval::Scope {
                trace_id: [0xab; 16],
                span,
                event: None,
            })
            .map_err(|e| e.0.into_owned())
    }

    fn test_span() -> SpanData<'static> {
        static RES: [(&str, AttrValue<'static>); 1] = [("host.name", AttrValue::Str("h1"))];
        static SCOPE: [(&str, AttrValue<'static>); 1] = [("lib.flag", AttrValue::Bool(true))];
        SpanData {
            span_id: [1, 2, 3, 4, 5, 6, 7, 8],
            parent_span_id: None,
            name: "GET /cart",
            kind: 2,
            start_unix_nano: 1_000_000_000,
            end_unix_nano: 1_250_000_000,
            status: StatusCode::Error,
            status_message: "boom",
            trace_state: "ot=th:8,vendor=x",
            service: "checkout",
            attributes: vec![
                ("http.status_code", AttrValue::Int(503)),
                ("http.method", AttrValue::Str("GET")),
                ("ratio", AttrValue::Double(0.25)),
                ("cached", AttrValue::Bool(false)),
                ("blob", AttrValue::Other),
                ("num_str", AttrValue::Str("42")),
            ],
            resource_attributes: &RES,
            scope_name: "io.opentelemetry.http",
            scope_version: "1.2.3",
            scope_attributes: &SCOPE,
            dropped_attributes_count: 3,
            ..Default::default()
        }
    }

    #[test]
    fn span_paths_and_operators() {
        let s = test_span();
        let yes = [
            r#"name == "GET /cart""#,
            r#"span.name == "GET /cart""#,
            "kind == SPAN_KIND_SERVER",
            "kind == 2",
            r#"kind.string == "Server""#,
            "status.code == STATUS_CODE_ERROR",
            r#"status.message == "boom""#,
            r#"attributes["http.status_code"] >= 500 and attributes["http.status_code"] < 600"#,
            r#"attributes["http.status_code"] == 503.0"#,
            r#"attributes["ratio"] < 1"#,
            r#"attributes["cached"] == false"#,
            r#"attributes["missing"] == nil"#,
            r#"attributes["missing"] != "x""#,
            r#"attributes["blob"] != nil"#,
            r#"resource.attributes["host.name"] == "h1""#,
            r#"resource.attributes["service.name"] == "checkout""#,
            r#"instrumentation_scope.name == "io.opentelemetry.http""#,
            r#"scope.version == "1.2.3""#,
            r#"instrumentation_scope.attributes["lib.flag"] == true"#,
            r#"trace_state["vendor"] == "x""#,
            r#"trace_state["nope"] == """#,
            r#"span_id.string == "0102030405060708""#,
            "span_id == SpanID(0x0102030405060708)",
            "trace_id == TraceID(0xabababababababababababababababab)",
            r#"trace_id.string == "abababababababababababababababab""#,
            r#"parent_span_id.string == """#,
            "end_time_unix_nano - start_time_unix_nano > 200000000",
            "(end_time_unix_nano - start_time_unix_nano) / 1000000 == 250",
            r#"end_time - start_time >= Duration("250ms")"#,
            r#"end_time - start_time < Duration("1s")"#,
            "dropped_attributes_count == 3",
            r#"IsMatch(name, "^GET ")"#,
            r#"IsMatch(attributes["http.status_code"], "^5\\d\\d$")"#,
            r#"not IsMatch(attributes["missing"], ".*")"#,
            "IsRootSpan()",
            r#"Len(name) == 9"#,
            r#"Int(attributes["num_str"]) == 42"#,
            r#"Int(attributes["http.method"]) == nil"#,
            r#"Double(attributes["num_str"]) == 42.0"#,
            r#"String(attributes["http.status_code"]) == "503""#,
            r#"IsString(name) and IsInt(kind) and IsDouble(attributes["ratio"]) and IsBool(attributes["cached"])"#,
            r#"not IsString(attributes["missing"])"#,
            r#"HasPrefix(name, "GET") and HasSuffix(name, "cart")"#,
            r#"Substring(name, 0, 3) == "GET""#,
            r#"ToLowerCase(attributes["http.method"]) == "get""#,
            r#"IsMatch(target = name, pattern = "cart$")"#,
            "1 + 2 * 3 == 7",
            "-kind == -2",
            "true",
            "not false",
            r#"name == "x" or (kind == 2 and status.code != 0)"#,
            "kind > 1.5",
        ];
        for c in yes {
            assert_eq!(eval_span(c, &s), Ok(true), "{c}");
        }
        let no = [
            r#"name == "other""#,
            r#"attributes["http.status_code"] == "503""#,
            r#"attributes["missing"] > 0"#,
            r#"attributes["blob"] == nil"#,
            "kind < SPAN_KIND_SERVER",
            "span_id == SpanID(0x0000000000000000)",
            "span_id == 0x0102030405060708",
            "false",
            r#"not name == "GET /cart""#,
            r#"IsMatch(name, "^POST")"#,
            r#"IsRootSpan() and kind == 1"#,
        ];
        for c in no {
            assert_eq!(eval_span(c, &s), Ok(false), "{c}");
        }
        let errors = [
            (r#"Double(attributes["http.method"]) > 1"#, "ParseFloat"),
            (r#"Substring(name, 5, 100) == "x""#, "invalid range"),
            (
                r#"HasPrefix(attributes["missing"], "x")"#,
                "expected string but got nil",
            ),
            (r#"Len(attributes["missing"]) > 0"#, "unsupported type"),
            ("kind / 0 == 1", "divide by 0"),
            (r#"String(attributes["blob"]) == "x""#, "unsupported type"),
            (r#"Int(name)"#, "expected bool but got nil"),
            (r#"Len(name)"#, "expected bool but got int64"),
            (r#"name + 1 == 2"#, "must be int64"),
        ];
        for (c, msg) in errors {
            match eval_span(c, &s) {
                Err(e) => assert!(e.contains(msg), "{c}: {e}"),
                Ok(v) => panic!("{c}: expected an error, got {v}"),
            }
        }
        // Short-circuit: the failing right side is not evaluated.
        assert_eq!(eval_span(r#"kind == 2 or Double(name) > 1"#, &s), Ok(true));
        assert_eq!(eval_span(r#"kind == 3 and Double(name) > 1"#, &s), Ok(false));
    }

    #[test]
    fn span_event_context() {
        let s = SpanData {
            events: vec![SpanEventData {
                name: "exception",
                time_unix_nano: 5,
                attributes: vec![("exception.type", AttrValue::Str("java.lang.NullPointerException"))],
                dropped_attributes_count: 1,
            }],
            ..test_span()
        };
        let ev = &s.events[0];
        let check = |text: &str| {
            let mut req = Requirements::default();
            let c = compile(text, Context::SpanEvent, &mut req).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            let r = c
                .cond
                .eval(eval::Scope {
                    trace_id: [0; 16],
                    span: &s,
                    event: Some(ev),
                })
                .unwrap();
            (r, req)
        };
        let (r, req) = check(r#"name == "exception" and IsMatch(attributes["exception.type"], "NullPointer")"#);
        assert!(r);
        assert!(req.span_events);
        assert!(req.event_attributes.contains("exception.type"));
        assert!(req.span_attributes.is_empty());
        let (r, req) = check(r#"span.attributes["http.method"] == "GET" and spanevent.time_unix_nano == 5"#);
        assert!(r);
        assert!(req.span_attributes.contains("http.method"));
        assert!(check("dropped_attributes_count == 1 and span.dropped_attributes_count == 3").0);
        assert!(
            !check(r#"time - Duration("5ns") == span.start_time - span.start_time + Duration("0s") + time - time"#).0,
            "a time is not a duration"
        );
        assert!(check(r#"time - Duration("5ns") - time == Duration("-5ns")"#).0);
        // IsRootSpan is a span-context function only (as upstream).
        let e = compile("IsRootSpan()", Context::SpanEvent, &mut Requirements::default()).unwrap_err();
        assert!(e.message.contains("unknown function \"IsRootSpan\""), "{e:?}");
    }

    #[test]
    fn compile_errors_have_columns() {
        let e = |t: &str| compile(t, Context::Span, &mut Requirements::default()).unwrap_err();
        let x = e(r#"name == "x" and attributs["k"] == 1"#);
        assert_eq!((x.column, x.message.as_str()), (17, "unknown path \"attributs\""));
        let x = e(r#"span.status.cod == 1"#);
        assert_eq!((x.column, x.message.as_str()), (13, "unknown path \"span.status.cod\""));
        let x = e(r#"IsMatc(name, "x")"#);
        assert_eq!(x.column, 1);
        assert!(
            x.message
                .starts_with("unknown function \"IsMatc\" (supported: IsMatch,"),
            "{x:?}"
        );
        let x = e(r#"IsMatch(name, "(")"#);
        assert_eq!(x.column, 15);
        assert!(x.message.contains("not a valid regexp"), "{x:?}");
        assert_eq!(e(r#"IsMatch(name)"#).column, 1);
        assert_eq!(e(r#"IsMatch(name, "a", "b")"#).column, 20);
        assert_eq!(e(r#"kind == SPAN_KIND_SERVR"#).column, 9);
        assert_eq!(e(r#"attributes == nil"#).column, 1);
        assert_eq!(e(r#"attributes["a"]["b"] == nil"#).column, 17);
        assert_eq!(e(r#"name["a"] == nil"#).column, 6);
        assert_eq!(e(r#"cache["a"] == nil"#).column, 1);
        assert_eq!(e(r#"TraceID(0x01) == trace_id"#).column, 9);
        assert_eq!(e(r#"end_time - start_time > Duration("1x")"#).column, 34);
        assert_eq!(e(r#"[1, 2] == nil"#).column, 1);
        assert_eq!(e(r#""a" + 1 == nil"#).column, 1);
        assert_eq!(e(r#"time_unix_nano > 0"#).column, 1, "event paths are not span paths");
    }

    #[test]
    fn requirements_are_recorded() {
        let mut req = Requirements::default();
        compile(
            r#"attributes["a"] == 1 or resource.attributes["r"] == 2 or resource.attributes["service.name"] == "s" or scope.attributes["sc"] == 3"#,
            Context::Span,
            &mut req,
        )
        .unwrap();
        assert!(req.span_attributes.contains("a"));
        assert!(req.resource_attributes.contains("r"));
        assert!(
            !req.resource_attributes.contains("service.name"),
            "read from SpanData::service"
        );
        assert!(req.scope && req.scope_attributes.contains("sc"));
        assert!(!req.span_events);
    }
}

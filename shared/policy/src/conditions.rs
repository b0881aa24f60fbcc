//! Rule conditions of the `rules` sampler, with Refinery's
//! `RulesBasedSampler` semantics (operators, datatype coercion, `root.`
//! fields, trace and span scope). Depends on `fields`, `sampler_policy`,
//! `model` and `error`.

use std::cmp::Ordering;
use std::collections::HashSet;

use regex::Regex;

use crate::error::Issue;
use crate::fields::{go_float_v, root_span, Field, Val};
use crate::model::{Requirements, SpanData, TraceData};
use crate::sampler_policy::{ConditionScalar, ConditionValue, RuleCondition, RuleDatatype, RuleOperator, RuleScope};

/// A condition value as Refinery holds it after YAML decoding.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Nil,
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

impl Scalar {
    fn from_value(v: Option<&ConditionValue>) -> Scalar {
        match v {
            None => Scalar::Nil,
            Some(ConditionValue::Scalar(s)) => Scalar::from_scalar(s),
            // Go's %v of a []any: "[a b c]".
            Some(ConditionValue::List(items)) => Scalar::Str(format!(
                "[{}]",
                items
                    .iter()
                    .map(|i| Scalar::from_scalar(i).go_v())
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
        }
    }

    fn from_scalar(s: &ConditionScalar) -> Scalar {
        match s {
            ConditionScalar::Bool(b) => Scalar::Bool(*b),
            ConditionScalar::Int(i) => Scalar::Int(*i),
            ConditionScalar::Float(f) => Scalar::Float(*f),
            ConditionScalar::Str(s) => Scalar::Str(s.clone()),
        }
    }

    /// Go's `%v`.
    fn go_v(&self) -> String {
        match self {
            Scalar::Nil => "<nil>".into(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => go_float_v(*f),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Str(s) => s.clone(),
        }
    }

    fn try_int(&self) -> Option<i64> {
        match self {
            Scalar::Int(i) => Some(*i),
            Scalar::Float(f) => Some(*f as i64),
            Scalar::Str(s) => s.parse().ok(),
            _ => None,
        }
    }

    fn try_float(&self) -> Option<f64> {
        match self {
            Scalar::Int(i) => Some(*i as f64),
            Scalar::Float(f) => Some(*f),
            Scalar::Str(s) => s.parse().ok(),
            _ => None,
        }
    }
}

/// `%v` of a span value, `<nil>` when absent.
fn v_string(v: Option<&Val<'_>>) -> String {
    match v {
        Some(v) => v.go_v().into_owned(),
        None => "<nil>".into(),
    }
}

/// Refinery's `tryConvertToInt`.
fn val_int(v: Option<&Val<'_>>) -> Option<i64> {
    match v? {
        Val::Int(i) => Some(*i),
        Val::Float(f) => Some(*f as i64),
        Val::Str(s) => s.parse().ok(),
        Val::Bool(_) => None,
    }
}

/// Refinery's `tryConvertToFloat`.
fn val_float(v: Option<&Val<'_>>) -> Option<f64> {
    match v? {
        Val::Int(i) => Some(*i as f64),
        Val::Float(f) => Some(*f),
        Val::Str(s) => s.parse().ok(),
        Val::Bool(_) => None,
    }
}

/// Go's `strconv.ParseBool` of a `%v` string; errors read as false.
fn go_bool(s: &str) -> bool {
    matches!(s, "1" | "t" | "T" | "TRUE" | "true" | "True")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Cmp {
    fn holds(self, o: Ordering) -> bool {
        match self {
            Cmp::Eq => o == Ordering::Equal,
            Cmp::Ne => o != Ordering::Equal,
            Cmp::Gt => o == Ordering::Greater,
            Cmp::Ge => o != Ordering::Less,
            Cmp::Lt => o == Ordering::Less,
            Cmp::Le => o != Ordering::Greater,
        }
    }
}

/// Go's `<`/`>` on floats: NaN compares "equal" to everything.
fn fcmp(a: f64, b: f64) -> Ordering {
    if a < b {
        Ordering::Less
    } else if a > b {
        Ordering::Greater
    } else {
        Ordering::Equal
    }
}

/// Refinery's untyped `compare`: numbers with numbers, bools with bools,
/// strings with strings; anything else is not comparable.
fn compare(a: &Val<'_>, b: &Scalar) -> Option<Ordering> {
    Some(match (a, b) {
        (_, Scalar::Nil) => Ordering::Greater,
        (Val::Int(x), Scalar::Int(y)) => x.cmp(y),
        (Val::Int(x), Scalar::Float(y)) => fcmp(*x as f64, *y),
        (Val::Float(x), Scalar::Int(y)) => fcmp(*x, *y as f64),
        (Val::Float(x), Scalar::Float(y)) => fcmp(*x, *y),
        (Val::Bool(x), Scalar::Bool(y)) => x.cmp(y),
        (Val::Str(x), Scalar::Str(y)) => (**x).cmp(y.as_str()),
        _ => return None,
    })
}

#[derive(Debug, Clone)]
enum Test {
    Exists,
    NotExists,
    HasRootSpan(bool),
    Untyped(Cmp, Scalar),
    Str(Cmp, String),
    Int(Cmp, i64),
    Float(Cmp, f64),
    Bool(Cmp, bool),
    StartsWith(String),
    Contains(String),
    DoesNotContain(String),
    InStr(HashSet<String>, bool),
    InInt(HashSet<i64>, bool),
    InFloat(Vec<f64>, bool),
    Regex(Regex),
}

impl Test {
    /// Whether the value (None: the field is absent) satisfies the test.
    fn matches(&self, v: Option<&Val<'_>>) -> bool {
        match self {
            Test::Exists => v.is_some(),
            Test::NotExists => v.is_none(),
            Test::HasRootSpan(_) => false, // trace-level, handled by the rule
            Test::Untyped(op, want) => match v {
                Some(v) => compare(v, want).is_some_and(|o| op.holds(o)),
                None => false,
            },
            Test::Str(op, want) => op.holds(v_string(v).as_str().cmp(want.as_str())),
            Test::Int(op, want) => val_int(v).is_some_and(|n| op.holds(n.cmp(want))),
            Test::Float(op, want) => val_float(v).is_some_and(|n| op.holds(fcmp(n, *want))),
            Test::Bool(op, want) => v.is_some() && op.holds(go_bool(&v_string(v)).cmp(want)),
            Test::StartsWith(s) => v_string(v).starts_with(s.as_str()),
            Test::Contains(s) => v_string(v).contains(s.as_str()),
            Test::DoesNotContain(s) => !v_string(v).contains(s.as_str()),
            Test::InStr(set, neg) => set.contains(&v_string(v)) != *neg,
            Test::InInt(set, neg) => val_int(v).is_some_and(|n| set.contains(&n)) != *neg,
            Test::InFloat(set, neg) => val_float(v).is_some_and(|n| set.contains(&n)) != *neg,
            Test::Regex(re) => re.is_match(&v_string(v)),
        }
    }
}

/// A compiled condition.
#[derive(Debug, Clone)]
pub(crate) struct Condition {
    fields: Vec<Field>,
    /// `field: ?.NUM_DESCENDANTS`: the trace's span count, decided once.
    num_descendants: bool,
    test: Test,
}

impl Condition {
    pub(crate) fn compile(
        c: &RuleCondition,
        scope: RuleScope,
        at: &str,
        issues: &mut Vec<Issue>,
        req: &mut Requirements,
    ) -> Condition {
        let mut names: Vec<(String, &String)> = Vec::new();
        if let Some(f) = &c.field {
            names.push((format!("{at}.field"), f));
            if !c.fields.is_empty() {
                issues.push(Issue::new(
                    format!("{at}.fields"),
                    "give either field or fields, not both",
                ));
            }
        }
        for (i, f) in c.fields.iter().enumerate() {
            names.push((format!("{at}.fields[{i}]"), f));
        }
        let fields: Vec<Field> = names.iter().map(|(p, n)| Field::parse(n, p, issues, req)).collect();
        let is_root_check = c.operator == RuleOperator::HasRootSpan;
        if is_root_check {
            if scope == RuleScope::Span {
                issues.push(Issue::new(
                    format!("{at}.operator"),
                    "has-root-span is a trace-level check and cannot be used with `scope: span`",
                ));
            }
        } else if fields.is_empty() {
            issues.push(Issue::new(at, "a condition needs `field` or `fields`"));
        }
        let num_descendants = c.field.is_some() && fields.first().is_some_and(|f| f.is_num_descendants() && !f.root);
        let test = compile_test(c, at, issues);
        Condition {
            fields,
            num_descendants,
            test,
        }
    }

    /// Refinery's `extractValueFromSpan`: the first present field's value,
    /// and whether only the root span was consulted (then other spans
    /// cannot give another answer).
    fn extract<'a>(
        &self,
        trace: &TraceData<'a>,
        root: Option<&SpanData<'a>>,
        span: &SpanData<'a>,
    ) -> (Option<Val<'a>>, bool) {
        if self.num_descendants {
            return (
                Some(Val::Int(i64::try_from(trace.spans.len()).unwrap_or(i64::MAX))),
                true,
            );
        }
        let mut only_root = true;
        for f in &self.fields {
            let s = if f.root {
                match root {
                    Some(r) => r,
                    None => continue,
                }
            } else {
                only_root = false;
                span
            };
            if let Some(v) = f.lookup(s, trace) {
                return (Some(v), only_root);
            }
        }
        (None, false)
    }
}

fn compile_test(c: &RuleCondition, at: &str, issues: &mut Vec<Issue>) -> Test {
    let value = Scalar::from_value(c.value.as_ref());
    let vpath = format!("{at}.value");
    let cmp = match c.operator {
        RuleOperator::Eq => Some(Cmp::Eq),
        RuleOperator::Ne => Some(Cmp::Ne),
        RuleOperator::Gt => Some(Cmp::Gt),
        RuleOperator::Ge => Some(Cmp::Ge),
        RuleOperator::Lt => Some(Cmp::Lt),
        RuleOperator::Le => Some(Cmp::Le),
        _ => None,
    };
    if let Some(op) = cmp {
        return match c.datatype {
            None => Test::Untyped(op, value),
            Some(RuleDatatype::String) => Test::Str(op, value.go_v()),
            Some(RuleDatatype::Int) => match value.try_int() {
                Some(n) => Test::Int(op, n),
                None => {
                    issues.push(Issue::new(vpath, format!("cannot convert {} to int", value.go_v())));
                    Test::Exists
                }
            },
            Some(RuleDatatype::Float) => match value.try_float() {
                Some(n) => Test::Float(op, n),
                None => {
                    issues.push(Issue::new(vpath, format!("cannot convert {} to float", value.go_v())));
                    Test::Exists
                }
            },
            Some(RuleDatatype::Bool) => match op {
                Cmp::Eq | Cmp::Ne => Test::Bool(op, go_bool(&value.go_v())),
                // Refinery sets no typed comparison for ordered bools and
                // falls back to the untyped one.
                _ => Test::Untyped(op, value),
            },
        };
    }
    match c.operator {
        RuleOperator::Exists => Test::Exists,
        RuleOperator::NotExists => Test::NotExists,
        RuleOperator::HasRootSpan => Test::HasRootSpan(go_bool(&value.go_v())),
        RuleOperator::StartsWith => Test::StartsWith(value.go_v()),
        RuleOperator::Contains => Test::Contains(value.go_v()),
        RuleOperator::DoesNotContain => Test::DoesNotContain(value.go_v()),
        RuleOperator::Matches => match Regex::new(&value.go_v()) {
            Ok(re) => Test::Regex(re),
            Err(e) => {
                issues.push(Issue::new(vpath, format!("invalid regex: {e}")));
                Test::Exists
            }
        },
        RuleOperator::In | RuleOperator::NotIn => {
            let neg = c.operator == RuleOperator::NotIn;
            let items: Vec<Scalar> = match &c.value {
                Some(ConditionValue::List(items)) => items.iter().map(Scalar::from_scalar).collect(),
                Some(ConditionValue::Scalar(s)) if !matches!(s, ConditionScalar::Bool(_)) => {
                    vec![Scalar::from_scalar(s)]
                }
                _ => {
                    issues.push(Issue::new(vpath, "in / not-in need a list of scalars (or one scalar)"));
                    Vec::new()
                }
            };
            match c.datatype {
                None | Some(RuleDatatype::String) => Test::InStr(items.iter().map(Scalar::go_v).collect(), neg),
                Some(RuleDatatype::Int) => Test::InInt(items.iter().filter_map(Scalar::try_int).collect(), neg),
                Some(RuleDatatype::Float) => Test::InFloat(items.iter().filter_map(Scalar::try_float).collect(), neg),
                Some(RuleDatatype::Bool) => {
                    issues.push(Issue::new(
                        format!("{at}.datatype"),
                        "in / not-in cannot be used with datatype bool",
                    ));
                    Test::Exists
                }
            }
        }
        _ => Test::Exists, // comparison operators returned above
    }
}

/// Does the rule (all its conditions) match the trace?
pub(crate) fn rule_matches(conds: &[Condition], scope: RuleScope, trace: &TraceData<'_>) -> bool {
    if conds.is_empty() {
        return true;
    }
    let root = root_span(trace);
    match scope {
        RuleScope::Trace => conds.iter().all(|c| {
            if let Test::HasRootSpan(want) = c.test {
                return root.is_some() == want;
            }
            for span in &trace.spans {
                let (v, only_root) = c.extract(trace, root, span);
                if c.test.matches(v.as_ref()) {
                    return true;
                }
                if only_root {
                    return false;
                }
            }
            false
        }),
        RuleScope::Span => {
            for span in &trace.spans {
                let mut all = true;
                for c in conds {
                    let (v, only_root) = c.extract(trace, root, span);
                    if !c.test.matches(v.as_ref()) {
                        if only_root {
                            return false;
                        }
                        all = false;
                        break;
                    }
                }
                if all {
                    return true;
                }
            }
            false
        }
    }
}

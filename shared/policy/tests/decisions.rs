//! Table-driven decision tests for every policy type, their combinations,
//! rate limiting with simulated time, OTel import and validation errors.

use tailsift_policy::{
    otel_probabilistic_keep, otel_trace_hash, AttrValue, Decision, PolicyDocument, PolicyEngine, PolicyError,
    Semantics, SpanData, StatusCode, TraceData,
};

const SEC: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
const T0: u64 = 1_700_000_000 * SEC;

fn span() -> SpanData<'static> {
    SpanData {
        span_id: [1; 8],
        parent_span_id: Some([9; 8]),
        name: "work",
        kind: 1,
        start_unix_nano: T0,
        end_unix_nano: T0 + 10 * MS,
        service: "svc",
        ..Default::default()
    }
}

fn root(name: &'static str, service: &'static str) -> SpanData<'static> {
    SpanData {
        parent_span_id: None,
        name,
        service,
        kind: 2,
        ..span()
    }
}

fn with_attr(mut s: SpanData<'static>, key: &'static str, v: AttrValue<'static>) -> SpanData<'static> {
    s.attributes.push((key, v));
    s
}

fn with_status(s: SpanData<'static>, status: StatusCode) -> SpanData<'static> {
    SpanData { status, ..s }
}

fn with_duration(s: SpanData<'static>, ns: u64) -> SpanData<'static> {
    SpanData {
        end_unix_nano: s.start_unix_nano + ns,
        ..s
    }
}

fn trace(spans: Vec<SpanData<'static>>) -> TraceData<'static> {
    TraceData {
        trace_id: [0x42; 16],
        spans,
        ..Default::default()
    }
}

fn one(s: SpanData<'static>) -> TraceData<'static> {
    trace(vec![s])
}

fn native(yaml: &str) -> PolicyEngine {
    let doc = PolicyDocument::from_yaml(yaml).unwrap_or_else(|e| panic!("invalid test document: {e}\n{yaml}"));
    PolicyEngine::compile(&doc).expect("compile")
}

fn otel(yaml: &str) -> PolicyEngine {
    let doc = PolicyDocument::from_otel_tail_sampling_yaml(yaml)
        .unwrap_or_else(|e| panic!("invalid test document: {e}\n{yaml}"));
    assert_eq!(doc.semantics, Semantics::OtelTailSampling);
    PolicyEngine::compile(&doc).expect("compile")
}

fn decide(engine: &mut PolicyEngine, t: &TraceData<'_>) -> Decision {
    engine.decide(t, 0, T0)
}

/// (case name, policies YAML, trace, expected keep, expected reason)
type Case = (
    &'static str,
    &'static str,
    TraceData<'static>,
    bool,
    Option<&'static str>,
);

fn run_native(cases: Vec<Case>) {
    for (name, policies, t, keep, reason) in cases {
        let yaml = format!("policies:\n{policies}");
        let mut e = native(&yaml);
        let d = decide(&mut e, &t);
        assert_eq!((d.keep, d.policy.as_deref()), (keep, reason), "case `{name}`: {d:?}");
    }
}

#[test]
fn leaf_policies_native() {
    let error = with_status(span(), StatusCode::Error);
    let ok = with_status(span(), StatusCode::Ok);
    let cases: Vec<Case> = vec![
        ("always", "  - {name: a, always: {}}", one(span()), true, Some("a")),
        (
            "always null body",
            "  - name: a\n    always:",
            one(span()),
            true,
            Some("a"),
        ),
        (
            "status error",
            "  - {name: e, status_code: {codes: [ERROR]}}",
            trace(vec![ok.clone(), error.clone()]),
            true,
            Some("e"),
        ),
        (
            "status no error",
            "  - {name: e, status_code: {codes: [ERROR]}}",
            trace(vec![ok.clone(), span()]),
            false,
            None,
        ),
        (
            "status ok/unset",
            "  - {name: e, status_code: {codes: [ok, UNSET]}}",
            one(span()),
            true,
            Some("e"),
        ),
        (
            "status ok only",
            "  - {name: e, status_code: {codes: [OK]}}",
            one(error.clone()),
            false,
            None,
        ),
        (
            "latency exact threshold",
            "  - {name: l, latency: {threshold_ms: 2000}}",
            one(with_duration(span(), 2000 * MS)),
            true,
            Some("l"),
        ),
        (
            "latency below",
            "  - {name: l, latency: {threshold_ms: 2000}}",
            one(with_duration(span(), 2000 * MS - 1)),
            false,
            None,
        ),
        (
            "latency within upper",
            "  - {name: l, latency: {threshold_ms: 1000, upper_threshold_ms: 3000}}",
            one(with_duration(span(), 3000 * MS)),
            true,
            Some("l"),
        ),
        (
            "latency above upper",
            "  - {name: l, latency: {threshold_ms: 1000, upper_threshold_ms: 3000}}",
            one(with_duration(span(), 3000 * MS + 1)),
            false,
            None,
        ),
        (
            "latency spans whole trace",
            "  - {name: l, latency: {threshold_ms: 100}}",
            trace(vec![
                span(),
                SpanData {
                    start_unix_nano: T0 + 95 * MS,
                    end_unix_nano: T0 + 100 * MS,
                    ..span()
                },
            ]),
            true,
            Some("l"),
        ),
        (
            "probabilistic 100",
            "  - {name: p, probabilistic: {percentage: 100}}",
            one(span()),
            true,
            Some("p"),
        ),
        (
            "probabilistic 0",
            "  - {name: p, probabilistic: {percentage: 0}}",
            one(span()),
            false,
            None,
        ),
        (
            "span_count in range",
            "  - {name: c, span_count: {min: 2, max: 3}}",
            trace(vec![span(), span(), span()]),
            true,
            Some("c"),
        ),
        (
            "span_count too many",
            "  - {name: c, span_count: {min: 2, max: 3}}",
            trace(vec![span(); 4]),
            false,
            None,
        ),
        (
            "span_count too few",
            "  - {name: c, span_count: {min: 2}}",
            one(span()),
            false,
            None,
        ),
        (
            "trace_state match",
            "  - {name: t, trace_state: {key: vendor, values: [debug, x]}}",
            one(SpanData {
                trace_state: "ot=th:8, vendor=debug",
                ..span()
            }),
            true,
            Some("t"),
        ),
        (
            "trace_state other value",
            "  - {name: t, trace_state: {key: vendor, values: [debug]}}",
            one(SpanData {
                trace_state: "vendor=prod,debug=vendor",
                ..span()
            }),
            false,
            None,
        ),
        (
            "trace_state empty",
            "  - {name: t, trace_state: {key: vendor, values: [debug]}}",
            one(span()),
            false,
            None,
        ),
    ];
    run_native(cases);
}

#[test]
fn attribute_policies_native() {
    static RES_PROD: [(&str, AttrValue<'static>); 2] = [
        ("deployment.environment", AttrValue::Str("prod")),
        ("replicas", AttrValue::Int(3)),
    ];
    let res_prod = |s: SpanData<'static>| SpanData {
        resource_attributes: &RES_PROD,
        ..s
    };
    let cases: Vec<Case> = vec![
        // string_attribute
        (
            "string exact span",
            "  - {name: s, string_attribute: {key: http.route, values: [/cart, /pay]}}",
            one(with_attr(span(), "http.route", AttrValue::Str("/pay"))),
            true,
            Some("s"),
        ),
        (
            "string exact no match",
            "  - {name: s, string_attribute: {key: http.route, values: [/cart]}}",
            one(with_attr(span(), "http.route", AttrValue::Str("/cart/1"))),
            false,
            None,
        ),
        (
            "string non-string value",
            "  - {name: s, string_attribute: {key: k, values: ['1']}}",
            one(with_attr(span(), "k", AttrValue::Int(1))),
            false,
            None,
        ),
        (
            "string regex unanchored",
            "  - {name: s, string_attribute: {key: http.route, values: ['/cart/\\d+'], regex: true}}",
            one(with_attr(span(), "http.route", AttrValue::Str("/api/cart/12"))),
            true,
            Some("s"),
        ),
        (
            "string regex anchored",
            "  - {name: s, string_attribute: {key: http.route, values: ['^/cart$'], regex: true}}",
            one(with_attr(span(), "http.route", AttrValue::Str("/cart/12"))),
            false,
            None,
        ),
        (
            "string span scope ignores resource",
            "  - {name: s, string_attribute: {key: deployment.environment, values: [prod]}}",
            one(res_prod(span())),
            false,
            None,
        ),
        (
            "string resource scope",
            "  - {name: s, string_attribute: {key: deployment.environment, values: [prod], scope: resource}}",
            one(res_prod(span())),
            true,
            Some("s"),
        ),
        (
            "string resource scope ignores span",
            "  - {name: s, string_attribute: {key: env, values: [prod], scope: resource}}",
            one(with_attr(span(), "env", AttrValue::Str("prod"))),
            false,
            None,
        ),
        (
            "string any scope (span)",
            "  - {name: s, string_attribute: {key: env, values: [prod], scope: any}}",
            one(with_attr(span(), "env", AttrValue::Str("prod"))),
            true,
            Some("s"),
        ),
        (
            "string any scope (resource)",
            "  - {name: s, string_attribute: {key: deployment.environment, values: [prod], scope: any}}",
            one(res_prod(span())),
            true,
            Some("s"),
        ),
        (
            "string service.name via service field",
            "  - {name: s, string_attribute: {key: service.name, values: [checkout], scope: resource}}",
            one(root("GET /", "checkout")),
            true,
            Some("s"),
        ),
        (
            "string invert, value present",
            "  - {name: s, string_attribute: {key: env, values: [dev], invert: true}}",
            one(with_attr(span(), "env", AttrValue::Str("dev"))),
            false,
            None,
        ),
        (
            "string invert, other value",
            "  - {name: s, string_attribute: {key: env, values: [dev], invert: true}}",
            one(with_attr(span(), "env", AttrValue::Str("prod"))),
            true,
            Some("s"),
        ),
        (
            "string invert, attribute absent",
            "  - {name: s, string_attribute: {key: env, values: [dev], invert: true}}",
            one(span()),
            true,
            Some("s"),
        ),
        (
            "string invert, one of many spans matches",
            "  - {name: s, string_attribute: {key: env, values: [dev], invert: true}}",
            trace(vec![span(), with_attr(span(), "env", AttrValue::Str("dev"))]),
            false,
            None,
        ),
        // numeric_attribute
        (
            "numeric int in range",
            "  - {name: n, numeric_attribute: {key: http.status_code, min: 500, max: 599}}",
            one(with_attr(span(), "http.status_code", AttrValue::Int(503))),
            true,
            Some("n"),
        ),
        (
            "numeric inclusive bounds",
            "  - {name: n, numeric_attribute: {key: c, min: 500, max: 599}}",
            trace(vec![with_attr(span(), "c", AttrValue::Int(599))]),
            true,
            Some("n"),
        ),
        (
            "numeric out of range",
            "  - {name: n, numeric_attribute: {key: c, min: 500, max: 599}}",
            one(with_attr(span(), "c", AttrValue::Int(404))),
            false,
            None,
        ),
        (
            "numeric double",
            "  - {name: n, numeric_attribute: {key: ratio, min: 0.5}}",
            one(with_attr(span(), "ratio", AttrValue::Double(0.75))),
            true,
            Some("n"),
        ),
        (
            "numeric max only",
            "  - {name: n, numeric_attribute: {key: ratio, max: 0.5}}",
            one(with_attr(span(), "ratio", AttrValue::Double(0.75))),
            false,
            None,
        ),
        (
            "numeric string value ignored",
            "  - {name: n, numeric_attribute: {key: c, min: 0}}",
            one(with_attr(span(), "c", AttrValue::Str("5"))),
            false,
            None,
        ),
        (
            "numeric resource",
            "  - {name: n, numeric_attribute: {key: replicas, min: 2, scope: resource}}",
            one(res_prod(span())),
            true,
            Some("n"),
        ),
        (
            "numeric invert absent",
            "  - {name: n, numeric_attribute: {key: c, min: 500, invert: true}}",
            one(span()),
            true,
            Some("n"),
        ),
        (
            "numeric invert in range",
            "  - {name: n, numeric_attribute: {key: c, min: 500, invert: true}}",
            one(with_attr(span(), "c", AttrValue::Int(500))),
            false,
            None,
        ),
        // boolean_attribute
        (
            "bool true",
            "  - {name: b, boolean_attribute: {key: force, value: true}}",
            one(with_attr(span(), "force", AttrValue::Bool(true))),
            true,
            Some("b"),
        ),
        (
            "bool wrong value",
            "  - {name: b, boolean_attribute: {key: force, value: true}}",
            one(with_attr(span(), "force", AttrValue::Bool(false))),
            false,
            None,
        ),
        (
            "bool false value",
            "  - {name: b, boolean_attribute: {key: force, value: false}}",
            one(with_attr(span(), "force", AttrValue::Bool(false))),
            true,
            Some("b"),
        ),
        (
            "bool false, absent",
            "  - {name: b, boolean_attribute: {key: force, value: false}}",
            one(span()),
            false,
            None,
        ),
        (
            "bool non-bool",
            "  - {name: b, boolean_attribute: {key: force, value: false}}",
            one(with_attr(span(), "force", AttrValue::Str("false"))),
            false,
            None,
        ),
        (
            "bool invert",
            "  - {name: b, boolean_attribute: {key: synthetic, value: true, invert: true}}",
            one(with_attr(span(), "synthetic", AttrValue::Bool(true))),
            false,
            None,
        ),
        (
            "bool invert absent",
            "  - {name: b, boolean_attribute: {key: synthetic, value: true, invert: true}}",
            one(span()),
            true,
            Some("b"),
        ),
    ];
    run_native(cases);
}

#[test]
fn match_filters_native() {
    let checkout = root("GET /cart", "checkout");
    let child_health = SpanData {
        name: "GET /health",
        ..span()
    };
    let cases: Vec<Case> = vec![
        (
            "service exact",
            "  - {name: m, match: {service: checkout}, always: {}}",
            one(checkout.clone()),
            true,
            Some("m"),
        ),
        (
            "service other",
            "  - {name: m, match: {service: checkout}, always: {}}",
            one(root("GET /cart", "cart")),
            false,
            None,
        ),
        (
            "service list",
            "  - {name: m, match: {service: [cart, checkout]}, always: {}}",
            one(checkout.clone()),
            true,
            Some("m"),
        ),
        (
            "service regex",
            "  - {name: m, match: {service: {regex: '^check'}}, always: {}}",
            one(checkout.clone()),
            true,
            Some("m"),
        ),
        (
            "span name exact",
            "  - {name: m, match: {span_name: GET /cart}, always: {}}",
            one(checkout.clone()),
            true,
            Some("m"),
        ),
        (
            "span name + service on same span",
            "  - {name: m, match: {service: checkout, span_name: work}, always: {}}",
            trace(vec![checkout.clone(), span()]),
            false,
            None,
        ),
        (
            "span name + service",
            "  - {name: m, match: {service: svc, span_name: work}, always: {}}",
            trace(vec![checkout.clone(), span()]),
            true,
            Some("m"),
        ),
        (
            "root only ignores children",
            "  - {name: m, match: {span_name: GET /health, root_only: true}, always: {}}",
            trace(vec![checkout.clone(), child_health.clone()]),
            false,
            None,
        ),
        (
            "any span by default",
            "  - {name: m, match: {span_name: GET /health}, always: {}}",
            trace(vec![checkout.clone(), child_health.clone()]),
            true,
            Some("m"),
        ),
        (
            "filter combines with policy",
            "  - {name: m, match: {service: checkout}, status_code: {codes: [ERROR]}}",
            one(checkout.clone()),
            false,
            None,
        ),
        (
            "filter on nested policy",
            "  - {name: m, and: {policies: [{match: {service: checkout}, always: {}}, {span_count: {min: 1}}]}}",
            one(checkout.clone()),
            true,
            Some("m"),
        ),
        (
            "zero parent id is root",
            "  - {name: m, match: {root_only: true}, always: {}}",
            one(SpanData {
                parent_span_id: Some([0; 8]),
                ..span()
            }),
            true,
            Some("m"),
        ),
    ];
    run_native(cases);
}

#[test]
fn combinations_native() {
    let error = with_status(span(), StatusCode::Error);
    let slow = with_duration(span(), 3 * SEC);
    let health = root("GET /health", "svc");
    let cases: Vec<Case> = vec![
        ("and all", "  - {name: x, and: {policies: [{status_code: {codes: [ERROR]}}, {span_count: {min: 1}}]}}",
            one(error.clone()), true, Some("x")),
        ("and one fails", "  - {name: x, and: {policies: [{status_code: {codes: [ERROR]}}, {span_count: {min: 2}}]}}",
            one(error.clone()), false, None),
        ("not", "  - {name: x, not: {policy: {status_code: {codes: [ERROR]}}}}", one(span()), true, Some("x")),
        ("not matched", "  - {name: x, not: {policy: {status_code: {codes: [ERROR]}}}}", one(error.clone()), false, None),
        ("not not", "  - {name: x, not: {policy: {not: {policy: {always: {}}}}}}", one(span()), true, Some("x")),
        ("first match names the reason",
            "  - {name: slow, latency: {threshold_ms: 2000}}\n  - {name: errors, status_code: {codes: [ERROR]}}",
            trace(vec![error.clone(), slow.clone()]), true, Some("slow")),
        ("later policy keeps",
            "  - {name: slow, latency: {threshold_ms: 2000}}\n  - {name: errors, status_code: {codes: [ERROR]}}",
            one(error.clone()), true, Some("errors")),
        ("drop beats earlier keep",
            "  - {name: errors, status_code: {codes: [ERROR]}}\n  - {name: health, match: {span_name: GET /health}, drop: {}}",
            trace(vec![health.clone(), error.clone()]), false, Some("health")),
        ("drop with sub-policies all match",
            "  - {name: all, always: {}}\n  - {name: d, drop: {policies: [{status_code: {codes: [OK]}}, {span_count: {max: 1}}]}}",
            one(with_status(span(), StatusCode::Ok)), false, Some("d")),
        ("drop with sub-policy not matching",
            "  - {name: all, always: {}}\n  - {name: d, drop: {policies: [{status_code: {codes: [OK]}}, {span_count: {max: 1}}]}}",
            trace(vec![with_status(span(), StatusCode::Ok), span()]), true, Some("all")),
        ("first matching drop names the reason",
            "  - {name: d1, match: {service: nope}, drop: {}}\n  - {name: d2, match: {service: svc}, drop: {}}\n  - {name: d3, drop: {policies: [{always: {}}]}}",
            one(span()), false, Some("d2")),
        ("nothing matches", "  - {name: e, status_code: {codes: [ERROR]}}\n  - {name: l, latency: {threshold_ms: 1000}}",
            one(span()), false, None),
    ];
    run_native(cases);
}

#[test]
fn decision_probability_and_tracestate() {
    let mut e = native(
        "policies:\n  - {name: errors, status_code: {codes: [ERROR]}}\n  - {name: half, probabilistic: {percentage: 50}}\n  - {name: both, and: {policies: [{probabilistic: {percentage: 50}}, {probabilistic: {percentage: 20}}]}}",
    );
    let err = one(with_status(span(), StatusCode::Error));
    let d = decide(&mut e, &err);
    assert_eq!((d.sampling_probability, d.threshold, d.randomness), (1.0, None, None));
    assert_eq!(d.adjusted_count(), 1.0);
    assert_eq!(d.ot_tracestate(), None);

    // Find traces kept by "half".
    let mut seen_half = 0;
    for i in 0..200u8 {
        let t = TraceData {
            trace_id: [i; 16],
            spans: vec![span()],
            ..Default::default()
        };
        let d = e.decide(&t, 7, T0);
        let r = tailsift_policy::randomness(t.trace_id, 7);
        if d.keep {
            assert_eq!(d.policy.as_deref(), Some("half"));
            assert_eq!(d.sampling_probability, 0.5);
            assert_eq!(d.adjusted_count(), 2.0);
            assert_eq!(d.threshold, Some(1 << 55));
            assert_eq!(d.randomness, Some(r));
            assert!(r >= 1 << 55);
            assert_eq!(d.ot_tracestate().unwrap(), format!("th:8;rv:{r:014x}"));
            seen_half += 1;
        } else {
            assert_eq!(d, Decision::dropped(None));
            assert!(r < 1 << 55);
        }
    }
    assert!(seen_half > 60 && seen_half < 140, "{seen_half}");

    // and of two probabilistic rules: the smallest probability / largest threshold.
    let mut e = native("policies:\n  - {name: both, and: {policies: [{probabilistic: {percentage: 50}}, {probabilistic: {percentage: 20}}]}}");
    let mut kept = 0;
    for i in 0..=255u8 {
        let t = TraceData {
            trace_id: [i; 16],
            spans: vec![span()],
            ..Default::default()
        };
        let d = e.decide(&t, 1, T0);
        assert_eq!(d.keep, tailsift_policy::consistent_keep(t.trace_id, 1, 0.2));
        if d.keep {
            kept += 1;
            assert_eq!(d.threshold, Some(tailsift_policy::threshold_for(0.2)));
            assert!((d.sampling_probability - 0.2).abs() < 1e-12);
        }
    }
    assert!(kept > 20, "{kept}");
}

#[test]
fn stress_decision_is_consistent() {
    for i in 0..100u8 {
        let id = [i; 16];
        let d = tailsift_policy::stress_decision(id, 99, 0.3);
        assert_eq!(d.keep, tailsift_policy::consistent_keep(id, 99, 0.3));
        assert_eq!(d.policy.as_deref(), Some(tailsift_policy::STRESS_POLICY));
        if d.keep {
            assert_eq!(d.threshold, Some(tailsift_policy::threshold_for(0.3)));
            assert_eq!(d.randomness, Some(tailsift_policy::randomness(id, 99)));
            assert!(d.ot_tracestate().is_some());
        } else {
            assert_eq!(d.sampling_probability, 0.0);
        }
    }
}

#[test]
fn requirements_are_collected() {
    let mut e = native(
        r#"
policies:
  - {name: a, string_attribute: {key: http.route, values: [x]}}
  - {name: b, numeric_attribute: {key: k8s.replicas, min: 1, scope: resource}}
  - {name: c, and: {policies: [{boolean_attribute: {key: force, value: true, scope: any}}, {always: {}}]}}
  - {name: d, string_attribute: {key: service.name, values: [x], scope: any}}
  - {name: e, not: {policy: {string_attribute: {key: deep, values: [x]}}}}
"#,
    );
    let r = e.requirements().clone();
    let span: Vec<&str> = r.span_attributes.iter().map(String::as_str).collect();
    let res: Vec<&str> = r.resource_attributes.iter().map(String::as_str).collect();
    assert_eq!(span, ["deep", "force", "http.route", "service.name"]);
    assert_eq!(res, ["force", "k8s.replicas"]);
    assert!(!r.all_attributes);
    assert!(r.wants_span_attribute("force") && !r.wants_span_attribute("k8s.replicas"));
    let _ = decide(&mut e, &one(span_fn()));
    assert!(native("policies:\n  - {name: a, always: {}}").requirements().is_empty());
    assert!(
        r.trace_level,
        "attribute rules, and/not of them, read trace-level facts"
    );
}

#[test]
fn trace_level_requirements() {
    let level = |yaml: &str| native(yaml).requirements().trace_level;
    // The default policy's kinds, budgets and attribute rules, nested.
    assert!(level(
        r#"
policies:
  - {name: errors, status_code: {codes: [ERROR]}}
  - {name: slow, latency: {threshold_ms: 1000}}
  - {name: big, span_count: {min: 100}}
  - {name: base, probabilistic: {percentage: 10}}
  - {name: budget, rate_limiting: {spans_per_second: 100}}
  - {name: bytes, bytes_limiting: {bytes_per_second: 1000}}
  - {name: flags, trace_flags: {}}
  - {name: c, composite: {max_total_spans_per_second: 100, policies: [{name: x, string_attribute: {key: k, values: [v]}}]}}
  - {name: n, not: {policy: {and: {policies: [{boolean_attribute: {key: b, value: true}}, {numeric_attribute: {key: n, min: 1}}]}}}}
"#
    ));
    // Anything that reads per-span detail, alone or nested, turns it off.
    for rule in [
        "{name: x, ottl_condition: {span: ['name == \"a\"']}}",
        "{name: x, trace_state: {key: k, values: [v]}}",
        "{name: x, always: {}, match: {span_name: a}}",
        "{name: x, composite: {max_total_spans_per_second: 9, policies: [{name: y, always: {}, match: {service: s}}]}}",
        "{name: x, and: {policies: [{always: {}}, {trace_state: {key: k, values: [v]}}]}}",
        "{name: x, not: {policy: {ottl_condition: {span: ['kind == 2']}}}}",
    ] {
        let yaml = format!("policies:\n  - {{name: ok, latency: {{threshold_ms: 5}}}}\n  - {rule}\n");
        assert!(!level(&yaml), "{rule}");
    }
}

fn span_fn() -> SpanData<'static> {
    span()
}

#[test]
fn engine_is_send() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<PolicyEngine>();
    let e = native("policies:\n  - {name: a, always: {}}");
    let handle = std::thread::spawn(move || {
        let mut e = e;
        decide(&mut e, &one(span())).keep
    });
    assert!(handle.join().unwrap());
}

// ---------------------------------------------------------------------------
// Rate limiting and composite with simulated time.

#[test]
fn rate_limiter_traces_per_second_simulated_time() {
    let mut e = native("policies:\n  - {name: rl, rate_limiting: {traces_per_second: 10}}");
    // 1000 traces per second for 10 s, evenly spaced (one per ms).
    let mut kept_per_second = [0u32; 10];
    for k in 0..10_000u64 {
        let d = e.decide(&one(span()), 0, T0 + k * MS);
        if d.keep {
            kept_per_second[(k / 1000) as usize] += 1;
        }
    }
    // The bucket starts full (10 tokens) then refills at exactly 10/s.
    assert!((10..=20).contains(&kept_per_second[0]), "{kept_per_second:?}");
    for (s, kept) in kept_per_second.iter().enumerate().skip(1) {
        assert_eq!(*kept, 10, "second {s}: {kept_per_second:?}");
    }
    // Identical replay on a fresh engine: no hidden clock.
    let mut e2 = native("policies:\n  - {name: rl, rate_limiting: {traces_per_second: 10}}");
    let replay: u32 = (0..10_000u64)
        .filter(|k| e2.decide(&one(span()), 0, T0 + k * MS).keep)
        .count() as u32;
    assert_eq!(replay, kept_per_second.iter().sum::<u32>());
}

/// Kept traces over 10 s at 1000 traces/s (one per ms), after the initial burst.
fn kept_after_first_second(e: &mut tailsift_policy::PolicyEngine) -> u32 {
    (0..10_000u64)
        .filter(|k| e.decide(&one(span()), 0, T0 + k * MS).keep && *k >= 1000)
        .count() as u32
}

#[test]
fn cluster_budgets_are_split_by_the_worker_share() {
    // Cluster scope (the default): a worker owning a quarter of the partitions keeps a quarter.
    let doc = "policies:\n  - {name: rl, rate_limiting: {traces_per_second: 40}}";
    let mut e = native(doc);
    e.set_budget_share(0.25);
    assert_eq!(kept_after_first_second(&mut e), 90, "10/s for 9 s");
    // Four workers with a quarter each keep the configured 40/s together.
    let total: u32 = (0..4)
        .map(|_| {
            let mut w = native(doc);
            w.set_budget_share(0.25);
            kept_after_first_second(&mut w)
        })
        .sum();
    assert_eq!(total, 360);
    // Share back to 1 (the worker now owns every partition): the whole budget.
    let mut e = native(doc);
    e.set_budget_share(0.5);
    e.set_budget_share(1.0);
    assert_eq!(kept_after_first_second(&mut e), 360);
    // Composite budgets scale too.
    let mut c = native(
        "policies:\n  - name: c\n    composite:\n      max_total_spans_per_second: 100\n      policies:\n        - {name: all, always: {}}\n",
    );
    c.set_budget_share(0.1);
    assert_eq!(kept_after_first_second(&mut c), 90);
    // Worker scope: every worker enforces the whole budget, whatever its share.
    let mut w = native(&format!("budget_scope: worker\n{doc}"));
    w.set_budget_share(0.25);
    assert_eq!(w.budget_share(), 1.0);
    assert_eq!(kept_after_first_second(&mut w), 360);
}

#[test]
fn rate_limiter_spans_and_burst() {
    let mut e = native("policies:\n  - {name: rl, rate_limiting: {spans_per_second: 100, burst_seconds: 0.5}}");
    let big = trace(vec![span(); 40]);
    assert!(e.decide(&big, 0, T0).keep); // 50 -> 10
    assert!(!e.decide(&big, 0, T0).keep); // 10 < 40
    assert!(e.decide(&trace(vec![span(); 10]), 0, T0).keep); // 10 -> 0
    assert!(!e.decide(&one(span()), 0, T0).keep);
    assert!(!e.decide(&one(span()), 0, T0 + 9 * MS).keep); // 0.9 token
    assert!(e.decide(&one(span()), 0, T0 + 10 * MS).keep); // 1 token
                                                           // A trace larger than the capacity never passes.
    assert!(!e.decide(&trace(vec![span(); 51]), 0, T0 + 100 * SEC).keep);
    assert!(e.decide(&trace(vec![span(); 50]), 0, T0 + 100 * SEC).keep);
    // Time going backwards refills nothing.
    assert!(!e.decide(&one(span()), 0, T0).keep);
}

#[test]
fn rate_limiter_both_budgets() {
    let mut e = native("policies:\n  - {name: rl, rate_limiting: {spans_per_second: 5, traces_per_second: 2}}");
    assert!(e.decide(&trace(vec![span(); 3]), 0, T0).keep);
    assert!(!e.decide(&trace(vec![span(); 3]), 0, T0).keep); // spans: 2 left
    assert!(e.decide(&one(span()), 0, T0).keep); // traces: 0 left
    assert!(!e.decide(&one(span()), 0, T0).keep); // spans 1 left but no trace token
}

#[test]
fn rate_limiter_consumes_only_when_it_keeps_native() {
    // An earlier policy keeping the trace means the limiter is not consulted.
    let mut e = native(
        "policies:\n  - {name: errors, status_code: {codes: [ERROR]}}\n  - {name: rl, rate_limiting: {traces_per_second: 1}}",
    );
    for _ in 0..50 {
        assert_eq!(
            decide(&mut e, &one(with_status(span(), StatusCode::Error)))
                .policy
                .as_deref(),
            Some("errors")
        );
    }
    assert_eq!(decide(&mut e, &one(span())).policy.as_deref(), Some("rl"));
    assert!(!decide(&mut e, &one(span())).keep);

    // Inside an `and`, the limiter only pays when the whole policy keeps,
    // even when it is evaluated before the failing condition.
    let mut e = native(
        "policies:\n  - {name: x, and: {policies: [{rate_limiting: {traces_per_second: 1}}, {boolean_attribute: {key: debug, value: true}}]}}",
    );
    for _ in 0..10 {
        assert!(!decide(&mut e, &one(span())).keep);
    }
    let debug = one(with_attr(span(), "debug", AttrValue::Bool(true)));
    assert!(decide(&mut e, &debug).keep);
    assert!(!decide(&mut e, &debug).keep);
    assert!(e.decide(&debug, 0, T0 + SEC).keep);

    // Drop policies with a limiter: consumed only when dropping.
    let mut e = native(
        "policies:\n  - {name: all, always: {}}\n  - {name: d, drop: {policies: [{status_code: {codes: [OK]}}, {rate_limiting: {traces_per_second: 1}}]}}",
    );
    assert!(decide(&mut e, &one(span())).keep);
    assert!(!decide(&mut e, &one(with_status(span(), StatusCode::Ok))).keep);
    assert!(decide(&mut e, &one(with_status(span(), StatusCode::Ok))).keep); // budget spent
}

#[test]
fn composite_native() {
    let yaml = r#"
policies:
  - name: budget
    composite:
      max_total_spans_per_second: 10
      policies:
        - {name: errors, status_code: {codes: [ERROR]}}
        - {name: rest, always: {}}
        - {name: never-reached, always: {}}
      rate_allocation:
        - {policy: errors, percent: 60}
"#;
    let mut e = native(yaml);
    let err = one(with_status(span(), StatusCode::Error));
    let ok = one(span());
    // errors: 6 spans/s; rest and never-reached share the other 40%: 2 each.
    let kept_err = (0..20).filter(|_| decide(&mut e, &err).keep).count();
    let kept_ok = (0..20).filter(|_| decide(&mut e, &ok).keep).count();
    assert_eq!((kept_err, kept_ok), (6, 2));
    let d = decide(&mut e, &ok);
    assert_eq!(d, Decision::dropped(None));
    // Next second: counters reset.
    assert!(e.decide(&ok, 0, T0 + SEC).keep);
    assert_eq!(e.decide(&err, 0, T0 + SEC).policy.as_deref(), Some("budget"));

    // A trace larger than the allocation is not kept, smaller ones still are.
    let mut e = native(yaml);
    assert!(!decide(&mut e, &trace(vec![with_status(span(), StatusCode::Error); 7])).keep);
    assert!(decide(&mut e, &trace(vec![with_status(span(), StatusCode::Error); 6])).keep);
}

// ---------------------------------------------------------------------------
// OpenTelemetry collector compatibility.

#[test]
fn otel_example_file_parses_and_decides() {
    let text = include_str!("../examples/otel_tail_sampling.yaml");
    let doc = PolicyDocument::from_otel_tail_sampling_yaml(text).expect("example parses");
    assert_eq!(doc.policies.len(), 13);
    let mut e = PolicyEngine::compile(&doc).unwrap();
    let names: Vec<&str> = e.policy_names().collect();
    assert_eq!(names[0], "errors");
    let req = e.requirements().clone();
    for k in [
        "http.response.status_code",
        "app.force_sample",
        "tenant.tier",
        "deployment.environment",
        "url.path",
    ] {
        assert!(
            req.span_attributes.contains(k) && req.resource_attributes.contains(k),
            "{k}"
        );
    }
    assert!(!req.resource_attributes.contains("service.name"));

    // Find a trace ID not sampled by the 5% baseline (collector hash).
    let base_id = (0u8..=255)
        .map(|i| [i; 16])
        .find(|id| !otel_probabilistic_keep("", *id, 5.0))
        .unwrap();
    let t = |spans: Vec<SpanData<'static>>| TraceData {
        trace_id: base_id,
        spans,
        ..Default::default()
    };
    let check = |e: &mut PolicyEngine, name: &str, tr: TraceData<'static>, keep: bool, reason: Option<&str>| {
        let d = e.decide(&tr, 0, T0);
        assert_eq!((d.keep, d.policy.as_deref()), (keep, reason), "{name}: {d:?}");
    };

    check(&mut e, "plain", t(vec![span()]), false, None);
    check(
        &mut e,
        "error",
        t(vec![with_status(span(), StatusCode::Error)]),
        true,
        Some("errors"),
    );
    check(
        &mut e,
        "slow 5s",
        t(vec![with_duration(span(), 5 * SEC)]),
        true,
        Some("slow-requests"),
    );
    check(
        &mut e,
        "5xx",
        t(vec![with_attr(
            span(),
            "http.response.status_code",
            AttrValue::Int(503),
        )]),
        true,
        Some("server-errors"),
    );
    check(
        &mut e,
        "force",
        t(vec![with_attr(span(), "app.force_sample", AttrValue::Bool(true))]),
        true,
        Some("force-sample"),
    );
    check(
        &mut e,
        "vip",
        t(vec![with_attr(span(), "tenant.tier", AttrValue::Str("gold"))]),
        true,
        Some("vip-tenants"),
    );
    check(&mut e, "big", t(vec![span(); 200]), true, Some("big-traces"));
    check(
        &mut e,
        "tracestate",
        t(vec![SpanData {
            trace_state: "vendor=debug",
            ..span()
        }]),
        true,
        Some("flagged-upstream"),
    );
    // Inverted match vetoes the error keep.
    static DEV: [(&str, AttrValue<'static>); 1] = [("deployment.environment", AttrValue::Str("dev"))];
    check(
        &mut e,
        "dev error",
        t(vec![SpanData {
            resource_attributes: &DEV,
            ..with_status(span(), StatusCode::Error)
        }]),
        false,
        Some("production-only"),
    );
    // Drop beats the error keep.
    check(
        &mut e,
        "health error",
        t(vec![with_attr(
            with_status(span(), StatusCode::Error),
            "url.path",
            AttrValue::Str("/health"),
        )]),
        false,
        Some("internal-noise"),
    );
    // Composite budgets on latency (1.5 s: second sub-policy, 2 s: first).
    check(
        &mut e,
        "composite slow",
        t(vec![with_duration(span(), 1500 * MS)]),
        true,
        Some("budgeted-slow"),
    );
    check(
        &mut e,
        "composite very slow",
        t(vec![with_duration(span(), 2500 * MS)]),
        true,
        Some("budgeted-slow"),
    );
    // payments: and(service.name regex, not synthetic, 25% with its own salt).
    let pay_id = (0u8..=255)
        .map(|i| [i; 16])
        .find(|id| otel_probabilistic_keep("tailsift-example", *id, 25.0) && !otel_probabilistic_keep("", *id, 5.0))
        .unwrap();
    let pay = |synthetic: bool| TraceData {
        trace_id: pay_id,
        spans: vec![with_attr(
            root("POST /pay", "payment-api"),
            "synthetic",
            AttrValue::Bool(synthetic),
        )],
        ..Default::default()
    };
    assert_eq!(e.decide(&pay(false), 0, T0).policy.as_deref(), Some("payments-sample"));
    assert!(!e.decide(&pay(true), 0, T0).keep);
    let unlucky = (0u8..=255)
        .map(|i| [i; 16])
        .find(|id| !otel_probabilistic_keep("tailsift-example", *id, 25.0) && !otel_probabilistic_keep("", *id, 5.0))
        .unwrap();
    assert!(
        !e.decide(
            &TraceData {
                trace_id: unlucky,
                ..pay(false)
            },
            0,
            T0
        )
        .keep
    );
    // The 5% baseline (default salt).
    let lucky = (0u8..=255)
        .map(|i| [i; 16])
        .find(|id| otel_probabilistic_keep("", *id, 5.0))
        .unwrap();
    assert_eq!(
        e.decide(
            &TraceData {
                trace_id: lucky,
                spans: vec![span()],
                ..Default::default()
            },
            0,
            T0
        )
        .policy
        .as_deref(),
        Some("baseline")
    );
    // debug sessions: and(bool, rate limit 100 spans/s, burst 200).
    let debug = t(vec![with_attr(span(), "app.debug", AttrValue::Bool(true)); 150]);
    check(&mut e, "debug 1", debug.clone(), true, Some("debug-sessions"));
    check(&mut e, "debug 2 (over budget)", debug.clone(), false, None);
}

#[test]
fn otel_probabilistic_matches_collector_hash() {
    // FNV-1a-64("default-hash-seed" ++ 00 01 .. 0f) = 0xa6622cfe5bfb0e0d (~65.0% of 2^64).
    let id: [u8; 16] = core::array::from_fn(|i| i as u8);
    assert_eq!(otel_trace_hash("", id), 0xa662_2cfe_5bfb_0e0d);
    assert_eq!(otel_trace_hash("default-hash-seed", id), 0xa662_2cfe_5bfb_0e0d);
    assert_eq!(otel_trace_hash("tailsift-example", [0; 16]), 0x1ffd_0ef7_1d8c_75e2);
    let cases = [
        ("", id, 65.0, true),
        ("", id, 64.9, false),
        ("tailsift-example", [0; 16], 12.5, true),
        ("tailsift-example", [0; 16], 12.4, false),
    ];
    for (salt, id, pct, keep) in cases {
        assert_eq!(otel_probabilistic_keep(salt, id, pct), keep, "{salt} {pct}");
        let yaml = format!("policies:\n  - {{name: p, type: probabilistic, probabilistic: {{hash_salt: '{salt}', sampling_percentage: {pct}}}}}");
        let mut e = otel(&yaml);
        let d = e.decide(
            &TraceData {
                trace_id: id,
                spans: vec![span()],
                ..Default::default()
            },
            12345,
            T0,
        );
        assert_eq!(d.keep, keep, "{yaml}");
        if keep {
            assert!((d.sampling_probability - pct / 100.0).abs() < 1e-12);
            assert_eq!((d.threshold, d.randomness), (None, None));
        }
    }
    // The seed passed to decide() does not influence the collector hash.
    let mut e = otel("policies: [{name: p, type: probabilistic, probabilistic: {sampling_percentage: 50}}]");
    for i in 0..50u8 {
        let t = TraceData {
            trace_id: [i; 16],
            spans: vec![span()],
            ..Default::default()
        };
        let a = e.decide(&t, 1, T0).keep;
        let b = e.decide(&t, 2, T0).keep;
        assert_eq!(a, b);
        assert_eq!(a, otel_probabilistic_keep("", [i; 16], 50.0));
    }
}

#[test]
fn otel_inverted_decisions() {
    let dev = one(with_attr(
        with_status(span(), StatusCode::Error),
        "env",
        AttrValue::Str("dev"),
    ));
    let prod = one(with_attr(span(), "env", AttrValue::Str("prod")));
    let prod_err = one(with_attr(
        with_status(span(), StatusCode::Error),
        "env",
        AttrValue::Str("prod"),
    ));
    let invert =
        "{name: not-dev, type: string_attribute, string_attribute: {key: env, values: [dev], invert_match: true}}";
    let errors = "{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}";

    // InvertNotSampled overrides a Sampled from another policy.
    let mut e = otel(&format!("policies: [{errors}, {invert}]"));
    assert_eq!(decide(&mut e, &dev), Decision::dropped(Some("not-dev".into())));
    assert_eq!(decide(&mut e, &prod_err).policy.as_deref(), Some("errors"));
    // InvertSampled alone keeps only when no policy said NotSampled: here
    // `errors` says NotSampled for `prod`, so it is not kept.
    assert!(!decide(&mut e, &prod).keep);

    let mut e = otel(&format!("policies: [{invert}]"));
    assert_eq!(decide(&mut e, &prod).policy.as_deref(), Some("not-dev"));
    assert!(decide(&mut e, &one(span())).keep); // attribute absent -> inverted sample
    assert!(!decide(&mut e, &dev).keep);

    // A non-matching drop policy counts as NotSampled and blocks InvertSampled.
    let drop =
        "{name: d, type: drop, drop: {drop_sub_policy: [{name: s, type: span_count, span_count: {min_spans: 100}}]}}";
    let mut e = otel(&format!("policies: [{invert}, {drop}]"));
    assert!(!decide(&mut e, &prod).keep);

    // Inside `and`: InvertSampled passes, InvertNotSampled fails -> NotSampled (no veto).
    let and =
        format!("{{name: a, type: and, and: {{and_sub_policy: [{invert}, {{name: all, type: always_sample}}]}}}}");
    let mut e = otel(&format!("policies: [{and}, {errors}]"));
    assert_eq!(decide(&mut e, &prod).policy.as_deref(), Some("a"));
    assert_eq!(decide(&mut e, &dev).policy.as_deref(), Some("errors")); // no veto from inside and

    // `not` passes inverted decisions through unchanged (veto stays a veto).
    let not = format!("{{name: n, type: not, not: {{not_sub_policy: {invert}}}}}");
    let mut e = otel(&format!("policies: [{errors}, {not}]"));
    assert_eq!(decide(&mut e, &dev), Decision::dropped(Some("n".into())));

    // Collector string quirks: non-string resource values read as "" (regex `^$` matches),
    // empty span values never match.
    static RES: [(&str, AttrValue<'static>); 1] = [("k", AttrValue::Int(5))];
    let mut e = otel("policies: [{name: s, type: string_attribute, string_attribute: {key: k, values: ['^$'], enabled_regex_matching: true}}]");
    assert!(
        decide(
            &mut e,
            &one(SpanData {
                resource_attributes: &RES,
                ..span()
            })
        )
        .keep
    );
    assert!(!decide(&mut e, &one(with_attr(span(), "k", AttrValue::Str("")))).keep);
    // numeric: collector reads non-int values as 0.
    let mut e = otel(
        "policies: [{name: n, type: numeric_attribute, numeric_attribute: {key: k, min_value: 0, max_value: 10}}]",
    );
    assert!(decide(&mut e, &one(with_attr(span(), "k", AttrValue::Str("x")))).keep);
    assert!(decide(&mut e, &one(with_attr(span(), "k", AttrValue::Int(10)))).keep);
    assert!(!decide(&mut e, &one(with_attr(span(), "k", AttrValue::Int(11)))).keep);
    // boolean invert.
    let mut e = otel("policies: [{name: b, type: boolean_attribute, boolean_attribute: {key: synthetic, value: true, invert_match: true}}]");
    assert!(decide(&mut e, &one(span())).keep);
    assert_eq!(
        decide(&mut e, &one(with_attr(span(), "synthetic", AttrValue::Bool(true)))),
        Decision::dropped(Some("b".into()))
    );
}

#[test]
fn otel_latency_and_span_count_semantics() {
    let mut e = otel("policies: [{name: l, type: latency, latency: {threshold_ms: 1000, upper_threshold_ms: 2000}}]");
    for (dur, keep) in [
        (1000 * MS, false),
        (1001 * MS - 1, false),
        (1001 * MS, true),
        (2000 * MS + 999_999, true),
        (2001 * MS, false),
    ] {
        assert_eq!(decide(&mut e, &one(with_duration(span(), dur))).keep, keep, "{dur}");
    }
    let mut e = otel("policies: [{name: l, type: latency, latency: {threshold_ms: 1000, upper_threshold_ms: 0}}]");
    assert!(decide(&mut e, &one(with_duration(span(), 1000 * MS))).keep);
    assert!(!decide(&mut e, &one(with_duration(span(), 1000 * MS - 1))).keep);
    let mut e = otel("policies: [{name: c, type: span_count, span_count: {min_spans: 2, max_spans: 0}}]");
    assert!(decide(&mut e, &trace(vec![span(); 1000])).keep);
    assert!(!decide(&mut e, &one(span())).keep);
}

#[test]
fn otel_evaluates_every_policy_so_limiters_always_consume() {
    let cfg = "policies: [{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}, {name: rl, type: rate_limiting, rate_limiting: {spans_per_second: 1}}]";
    let err = one(with_status(span(), StatusCode::Error));
    // Collector: bucket of 2 spans consumed by the two error traces.
    let mut e = otel(cfg);
    assert_eq!(decide(&mut e, &err).policy.as_deref(), Some("errors"));
    assert_eq!(decide(&mut e, &err).policy.as_deref(), Some("errors"));
    assert!(!decide(&mut e, &one(span())).keep);
    // sample_on_first_match stops before the limiter.
    let mut e = otel(&format!("sample_on_first_match: true\n{cfg}"));
    decide(&mut e, &err);
    decide(&mut e, &err);
    assert_eq!(decide(&mut e, &one(span())).policy.as_deref(), Some("rl"));
    // Refill: 1 span per second.
    let mut e = otel(cfg);
    decide(&mut e, &err);
    decide(&mut e, &err);
    assert!(!e.decide(&one(span()), 0, T0 + 999 * MS).keep);
    assert!(e.decide(&one(span()), 0, T0 + SEC).keep);
}

#[test]
fn otel_composite_allocations() {
    let cfg = r#"
policies:
  - name: c
    type: composite
    composite:
      max_total_spans_per_second: 10
      policy_order: [a, b, rest]
      composite_sub_policy:
        - {name: a, type: status_code, status_code: {status_codes: [ERROR]}}
        - {name: b, type: numeric_attribute, numeric_attribute: {key: n, min_value: 1}}
        - {name: rest, type: always_sample}
      rate_allocation:
        - {policy: a, percent: 50}
        - {policy: b, percent: 0}
"#;
    let mut e = otel(cfg);
    let err = one(with_status(span(), StatusCode::Error));
    let numeric = one(with_attr(span(), "n", AttrValue::Int(3)));
    // a: 5 spans/s; b (percent 0): equal share 10/3 -> 3; rest: no entry -> 0.
    assert_eq!((0..10).filter(|_| decide(&mut e, &err).keep).count(), 5);
    assert_eq!((0..10).filter(|_| decide(&mut e, &numeric).keep).count(), 3);
    assert_eq!((0..10).filter(|_| decide(&mut e, &one(span())).keep).count(), 0);
    assert!(e.decide(&err, 0, T0 + SEC).keep);
}

#[test]
fn otel_wrapped_configs_and_flow_style() {
    let processor = r#"
processors:
  batch: {}
  tail_sampling/main:
    decision_wait: 5s
    num_traces: 100
    expected_new_traces_per_sec: 10
    policies:
      [
        { name: test-policy-1, type: always_sample },
        { name: test-policy-2, type: latency, latency: { threshold_ms: 5000, upper_threshold_ms: 10000 } },
        { name: test-policy-3, type: numeric_attribute, numeric_attribute: { key: key1, min_value: 50, max_value: 100 } },
        { name: test-policy-4, type: probabilistic, probabilistic: { sampling_percentage: 10 } },
        { name: test-policy-5, type: status_code, status_code: { status_codes: [ERROR, UNSET] } },
        { name: test-policy-6, type: string_attribute, string_attribute: { key: key2, values: [value1, value2] } },
        { name: test-policy-7, type: string_attribute, string_attribute: { key: key2, values: [value1, val*], enabled_regex_matching: true, cache_max_size: 10 } },
        { name: test-policy-8, type: rate_limiting, rate_limiting: { spans_per_second: 35 } },
        { name: test-policy-10, type: span_count, span_count: { min_spans: 2, max_spans: 20 } },
        { name: test-policy-11, type: trace_state, trace_state: { key: key3, values: [value1, value2] } },
        { name: test-policy-12, type: boolean_attribute, boolean_attribute: { key: key4, value: true } },
      ]
service:
  pipelines: {}
"#;
    let doc = PolicyDocument::from_otel_tail_sampling_yaml(processor).expect("collector config");
    assert_eq!(doc.policies.len(), 11);
    let mut e = PolicyEngine::compile(&doc).unwrap();
    assert_eq!(decide(&mut e, &one(span())).policy.as_deref(), Some("test-policy-1"));

    let bare = "tail_sampling:\n  policies:\n    - {name: a, type: always_sample}\n";
    assert!(PolicyDocument::from_otel_tail_sampling_yaml(bare).is_ok());

    // The imported document round-trips through the native format.
    let yaml = doc.to_yaml().unwrap();
    let back = PolicyDocument::from_yaml(&yaml).unwrap();
    assert_eq!(back, doc);
    let json = doc.to_json().unwrap();
    assert_eq!(PolicyDocument::from_json(&json).unwrap(), doc);
}

#[test]
fn otel_errors_have_paths() {
    let err = |yaml: &str| {
        PolicyDocument::from_otel_tail_sampling_yaml(yaml)
            .unwrap_err()
            .to_string()
    };
    let e = err(
        "policies: [{name: a, type: always_sample}, {name: b, type: ottl_condition, ottl_condition: {span: ['x']}}]",
    );
    assert_eq!(
        e,
        "policies[1].ottl_condition.span[0]: column 2: expected a comparison operator (==, !=, <, <=, >, >=), \
         found the end of the condition"
    );
    let e = err("policies: [{name: a, type: sometimes_sample}]");
    assert!(
        e.starts_with("policies[0].type: unknown policy type \"sometimes_sample\""),
        "{e}"
    );
    let e = err("policies: [{name: a, type: status_code, status_code: {status_codes: [ERROR, FATAL]}}]");
    assert!(
        e.starts_with("policies[0].status_code.status_codes[1]: unknown status code \"FATAL\""),
        "{e}"
    );
    let e = err("policies: [{name: a, type: string_attribute, string_attribute: {key: k, value: v}}]");
    assert!(
        e.starts_with("policies[0].string_attribute.value: unknown field `value`"),
        "{e}"
    );
    let e = err("tail_sampling:\n  policies: [{name: a, type: latency, latency: {threshold_ms: fast}}]");
    assert!(
        e.starts_with("tail_sampling.policies[0].latency.threshold_ms: invalid type"),
        "{e}"
    );
    let e = err("policies: [{name: a, type: probabilistic, probabilistic: {sampling_percentage: 150}}]");
    assert!(
        e.starts_with("policies[0].otel_probabilistic.sampling_percentage: must be between 0 and 100"),
        "{e}"
    );
    let e = err("decision_wait: 10s\n");
    assert!(e.contains("no `policies` list found"), "{e}");
    let e = err("policies: [{name: a, type: and, and: {and_sub_policy: [{name: x, type: nope}]}}]");
    assert!(
        e.starts_with("policies[0].and.and_sub_policy[0].type: unknown policy type"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------
// Native examples and validation.

#[test]
fn native_example_file() {
    let text = include_str!("../examples/native.yaml");
    let doc = PolicyDocument::from_yaml(text).expect("example parses");
    assert_eq!(doc.version, 1);
    let mut e = PolicyEngine::compile(&doc).unwrap();
    assert!(e.requirements().is_empty());

    let health_error = trace(vec![with_status(root("GET /healthz", "api"), StatusCode::Error)]);
    assert_eq!(
        decide(&mut e, &health_error),
        Decision::dropped(Some("health-checks".into()))
    );
    let err = trace(vec![root("GET /orders", "api"), with_status(span(), StatusCode::Error)]);
    assert_eq!(decide(&mut e, &err).policy.as_deref(), Some("errors"));
    let slow = trace(vec![with_duration(root("GET /orders", "api"), 2500 * MS)]);
    assert_eq!(decide(&mut e, &slow).policy.as_deref(), Some("slow"));

    // checkout at 50%, the rest at 10% (capped) — consistent with the seed.
    let seed = 0xfeed;
    let (mut checkout_kept, mut other_kept) = (0, 0);
    for i in 0..2000u32 {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&i.to_be_bytes());
        let c = TraceData {
            trace_id: id,
            spans: vec![root("POST /checkout", "checkout")],
            ..Default::default()
        };
        let o = TraceData {
            trace_id: id,
            spans: vec![root("GET /orders", "api")],
            ..Default::default()
        };
        // Spread in time so that the 200 traces/s cap does not bind.
        let now = T0 + u64::from(i) * 10 * MS;
        let dc = e.decide(&c, seed, now);
        assert_eq!(dc.keep, tailsift_policy::consistent_keep(id, seed, 0.5));
        if dc.keep {
            assert_eq!(dc.policy.as_deref(), Some("checkout"));
            checkout_kept += 1;
        }
        let d = e.decide(&o, seed, now);
        assert_eq!(d.keep, tailsift_policy::consistent_keep(id, seed, 0.1));
        if d.keep {
            assert_eq!(d.policy.as_deref(), Some("baseline"));
            assert_eq!(d.threshold, Some(tailsift_policy::threshold_for(0.1)));
            other_kept += 1;
        }
    }
    assert!((850..1150).contains(&checkout_kept), "{checkout_kept}");
    assert!((140..260).contains(&other_kept), "{other_kept}");

    // Round trip through YAML and JSON.
    let back = PolicyDocument::from_yaml(&doc.to_yaml().unwrap()).unwrap();
    assert_eq!(back, doc);
    assert_eq!(PolicyDocument::from_json(&doc.to_json().unwrap()).unwrap(), doc);
}

fn yaml_err(yaml: &str) -> PolicyError {
    PolicyDocument::from_yaml(yaml).unwrap_err()
}

#[test]
fn validation_errors_name_the_path() {
    let cases: Vec<(&str, &str)> = vec![
        (
            "policies:\n  - {name: a, always: {}}\n  - {name: b, always: {}}\n  - {name: c, string_attribute: {key: k, values: []}}",
            "policies[2].string_attribute.values: must not be empty",
        ),
        (
            "policies:\n  - {name: errors, status_code: {codes: [ERROR]}}\n  - {name: errors, always: {}}",
            "policies[1].name: duplicate name \"errors\"",
        ),
        ("policies:\n  - {always: {}}", "policies[0].name: must not be empty"),
        ("policies: []", "policies: must contain at least one policy"),
        (
            "policies:\n  - {name: p, probabilistic: {percentage: 120}}",
            "policies[0].probabilistic.percentage: must be between 0 and 100, got 120",
        ),
        (
            "policies:\n  - {name: p, probabilistic: {percentage: -1}}",
            "policies[0].probabilistic.percentage: must be between 0 and 100, got -1",
        ),
        (
            "policies:\n  - name: c\n    composite:\n      max_total_spans_per_second: 100\n      policies: [{name: a, always: {}}, {name: b, always: {}}]\n      rate_allocation: [{policy: a, percent: 70}, {policy: b, percent: 50}]",
            "policies[0].composite.rate_allocation: percentages sum to 120, must be <= 100",
        ),
        (
            "policies:\n  - name: c\n    composite:\n      max_total_spans_per_second: 100\n      policies: [{name: a, always: {}}]\n      rate_allocation: [{policy: z, percent: 10}]",
            "policies[0].composite.rate_allocation[0].policy: unknown sub-policy \"z\"",
        ),
        (
            "policies:\n  - name: c\n    composite:\n      max_total_spans_per_second: 0\n      policies: [{name: a, always: {}}]",
            "policies[0].composite.max_total_spans_per_second: must be > 0, got 0",
        ),
        (
            "policies:\n  - {name: a, and: {policies: [{always: {}}, {drop: {policies: [{always: {}}]}}]}}",
            "policies[0].and.policies[1].drop: drop policies are only allowed at the top level",
        ),
        ("policies:\n  - {name: d, drop: {}}", "policies[0].drop: a drop policy needs a `match` filter or at least one sub-policy"),
        ("policies:\n  - {name: a, and: {policies: []}}", "policies[0].and.policies: must not be empty"),
        (
            "policies:\n  - {name: l, latency: {threshold_ms: 2000, upper_threshold_ms: 1000}}",
            "policies[0].latency.upper_threshold_ms: must be >= threshold_ms (2000)",
        ),
        ("policies:\n  - {name: n, numeric_attribute: {key: k}}", "policies[0].numeric_attribute: at least one of min or max must be set"),
        ("policies:\n  - {name: n, numeric_attribute: {key: k, min: 5, max: 1}}", "policies[0].numeric_attribute.max: must be >= min (5)"),
        ("policies:\n  - {name: n, boolean_attribute: {key: '', value: true}}", "policies[0].boolean_attribute.key: must not be empty"),
        (
            "policies:\n  - {name: r, rate_limiting: {}}",
            "policies[0].rate_limiting: at least one of spans_per_second or traces_per_second must be set",
        ),
        (
            "policies:\n  - {name: r, rate_limiting: {traces_per_second: 0}}",
            "policies[0].rate_limiting.traces_per_second: must be between 0.001 and 1e12, got 0",
        ),
        ("policies:\n  - {name: s, span_count: {min: 3, max: 2}}", "policies[0].span_count.max: must be >= min (3)"),
        ("policies:\n  - {name: t, trace_state: {key: k, values: []}}", "policies[0].trace_state.values: must not be empty"),
        ("policies:\n  - {name: m, match: {}, always: {}}", "policies[0].match: must set at least one of service, span_name, root_only"),
        ("policies:\n  - {name: m, match: {service: []}, always: {}}", "policies[0].match.service: must not be empty"),
        (
            "sample_on_first_match: true\npolicies:\n  - {name: a, always: {}}",
            "sample_on_first_match: only supported with `semantics: otel_tail_sampling` (native semantics are always first-match)",
        ),
    ];
    for (yaml, expected) in cases {
        let err = yaml_err(yaml);
        assert!(matches!(err, PolicyError::Invalid(_)), "{yaml}: {err:?}");
        assert_eq!(err.to_string(), expected, "{yaml}");
    }
}

#[test]
fn regex_errors_include_regex_message() {
    let err = yaml_err("policies:\n  - {name: a, always: {}}\n  - {name: r, string_attribute: {key: k, values: [ok, '(unclosed'], regex: true}}");
    let s = err.to_string();
    assert!(
        s.starts_with("policies[1].string_attribute.values[1]: invalid regex: regex parse error:"),
        "{s}"
    );
    assert!(s.contains("unclosed group"), "{s}");
    let err = yaml_err("policies:\n  - {name: r, match: {span_name: {regex: '[z-a]'}}, always: {}}");
    assert!(
        err.to_string()
            .starts_with("policies[0].match.span_name.regex: invalid regex:"),
        "{err}"
    );
}

#[test]
fn all_issues_are_reported() {
    let err = yaml_err(
        "policies:\n  - {name: a, string_attribute: {key: '', values: []}}\n  - {name: a, probabilistic: {percentage: 101}}",
    );
    let paths: Vec<String> = err.issues().into_iter().map(|i| i.path).collect();
    assert_eq!(
        paths,
        [
            "policies[0].string_attribute.key",
            "policies[0].string_attribute.values",
            "policies[1].name",
            "policies[1].probabilistic.percentage"
        ]
    );
}

#[test]
fn parse_errors_name_the_path() {
    let cases: Vec<(&str, &str)> = vec![
        (
            "policies:\n  - {name: a, sample: {}}",
            "policies[0].sample: unknown field `sample`, expected one of `name`, `match`, `always`",
        ),
        (
            "policies:\n  - {name: a}",
            "policies[0]: policy \"a\": missing policy type, expected one of: always, drop",
        ),
        (
            "policies:\n  - {name: a, always: {}, drop: {}}",
            "policies[0]: policy \"a\": exactly one policy type must be given, found always, drop",
        ),
        (
            "policies:\n  - {name: a, probabilistic: {percentage: lots}}",
            "policies[0].probabilistic.percentage: invalid type",
        ),
        (
            "policies:\n  - {name: a, latency: {}}",
            "policies[0].latency: missing field `threshold_ms`",
        ),
        (
            "policies:\n  - name: a\n    latency:\n",
            "policies[0].latency: expected the policy settings, found null",
        ),
        (
            "policies:\n  - {name: a, status_code: {codes: [FATAL]}}",
            "policies[0].status_code.codes[0]: unknown status code `FATAL`",
        ),
        (
            "policies:\n  - {name: a, string_attribute: {key: k, values: [x], scope: everywhere}}",
            "policies[0].string_attribute.scope: unknown variant `everywhere`",
        ),
        (
            "policies:\n  - {name: a, match: {service: {rgx: x}}, always: {}}",
            "policies[0].match.service: unknown field `rgx`",
        ),
        ("version: 1\nsemantic: native\npolicies: []", "semantic"),
        ("policies: {name: a}", "policies: invalid type"),
    ];
    for (yaml, expected) in cases {
        let err = yaml_err(yaml);
        let s = err.to_string();
        assert!(matches!(err, PolicyError::Parse { .. }), "{yaml}: {err:?}");
        assert!(
            s.starts_with(expected) || (expected == "semantic" && s.contains("unknown field `semantic`")),
            "{yaml}\n=> {s}"
        );
    }
    let json =
        PolicyDocument::from_json(r#"{"policies": [{"name": "a", "latency": {"threshold_ms": -5}}]}"#).unwrap_err();
    assert!(
        json.to_string()
            .starts_with("policies[0].latency.threshold_ms: invalid value"),
        "{json}"
    );
    let ok = PolicyDocument::from_json(r#"{"version": 2, "policies": [{"name": "a", "always": {}}]}"#).unwrap();
    assert_eq!(ok.version, 2);
}

// ---------------------------------------------------------------------------
// ottl_condition, bytes_limiting, trace_flags.

use tailsift_policy::SpanEventData;

/// Attributes as (key, string value) pairs.
type StrAttrs = &'static [(&'static str, &'static str)];
/// Spans of an upstream-style test trace: (span attributes, event attributes).
type Spans = &'static [(StrAttrs, StrAttrs)];
/// (case, span conditions, span event conditions, spans, sampled).
type OttlCase = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    Spans,
    bool,
);
/// (scenario, span conditions, span event conditions, trace, result with error_mode ignore).
type ErrorModeCase = (
    &'static str,
    Vec<&'static str>,
    Vec<&'static str>,
    TraceData<'static>,
    &'static str,
);

/// Upstream's test helper (`newTraceWithSpansAttributes`): every span gets
/// one event named "test event".
fn upstream_ottl_trace(spans: Spans) -> TraceData<'static> {
    trace(
        spans
            .iter()
            .map(|(span_attrs, event_attrs)| SpanData {
                attributes: span_attrs.iter().map(|(k, v)| (*k, AttrValue::Str(v))).collect(),
                events: vec![SpanEventData {
                    name: "test event",
                    attributes: event_attrs.iter().map(|(k, v)| (*k, AttrValue::Str(v))).collect(),
                    ..Default::default()
                }],
                ..span()
            })
            .collect(),
    )
}

fn ottl_policy(mode: &str, span: &[&str], events: &[&str]) -> String {
    let q = |v: &[&str]| {
        v.iter()
            .map(|c| format!("'{}'", c.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "policies:\n  - name: o\n    type: ottl_condition\n    ottl_condition: {{error_mode: {mode}, span: [{}], spanevent: [{}]}}\n",
        q(span),
        q(events)
    )
}

#[test]
fn ottl_upstream_evaluate_table() {
    // processor/tailsamplingprocessor/internal/sampling/ottl_test.go, TestEvaluate_OTTL (error_mode ignore).
    let err = PolicyDocument::from_otel_tail_sampling_yaml(&ottl_policy("ignore", &[], &[]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "policies[0].ottl_condition: expected at least one OTTL condition in `span` or `spanevent`"
    );
    let cases: Vec<OttlCase> = vec![
        (
            "match specific span attributes 1",
            &[r#"attributes["attr_k_1"] == "attr_v_1""#],
            &[],
            &[(&[("attr_k_1", "attr_v_1")], &[])],
            true,
        ),
        (
            "match specific span attributes 2",
            &[r#"attributes["attr_k_1"] != "attr_v_1""#],
            &[],
            &[(&[("attr_k_1", "attr_v_1")], &[])],
            false,
        ),
        (
            "inverse match(!=) span attributes 2",
            &[r#"attributes["attr_k_1"] != "attr_v_1""#],
            &[],
            &[(&[("attr_k_1", "attr_v_2")], &[])],
            true,
        ),
        (
            "match specific span event attributes",
            &[],
            &[r#"attributes["event_attr_k_1"] == "event_attr_v_1""#],
            &[(&[], &[("event_attr_k_1", "event_attr_v_1")])],
            true,
        ),
        (
            "match specific span event name",
            &[],
            &[r#"name != "incorrect event name""#],
            &[(&[], &[])],
            true,
        ),
        (
            "not matched",
            &[r#"attributes["attr_k_1"] == "attr_v_1""#],
            &[r#"attributes["event_attr_k_1"] == "event_attr_v_1""#],
            &[],
            false,
        ),
        // Absent attributes: `!=` a value holds (nil != "x"), `==` does not.
        (
            "absent attribute !=",
            &[r#"attributes["nope"] != "x""#],
            &[],
            &[(&[], &[])],
            true,
        ),
        (
            "absent attribute ==",
            &[r#"attributes["nope"] == "x""#, r#"attributes["nope"] > 1"#],
            &[],
            &[(&[], &[])],
            false,
        ),
        (
            "absent attribute == nil",
            &[r#"attributes["nope"] == nil"#],
            &[],
            &[(&[], &[])],
            true,
        ),
    ];
    for (name, span_conds, event_conds, spans, keep) in cases {
        let doc = PolicyDocument::from_otel_tail_sampling_yaml(&ottl_policy("ignore", span_conds, event_conds))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut e = PolicyEngine::compile(&doc).unwrap();
        let d = decide(&mut e, &upstream_ottl_trace(spans));
        assert_eq!(d.keep, keep, "{name}: {d:?}");
        // The native format accepts the same conditions with the same result.
        let native_doc = format!(
            "policies:\n  - name: o\n    ottl_condition: {{error_mode: ignore, span: [{}], spanevent: [{}]}}\n",
            span_conds
                .iter()
                .map(|c| format!("'{c}'"))
                .collect::<Vec<_>>()
                .join(", "),
            event_conds
                .iter()
                .map(|c| format!("'{c}'"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut n = native(&native_doc);
        assert_eq!(
            decide(&mut n, &upstream_ottl_trace(spans)).keep,
            keep,
            "{name} (native)"
        );
    }
}

/// Whether the OTTL policy errored, matched or not: evaluated next to an
/// inverted rule that finds nothing (an "inverted sampled" decision, which
/// keeps the trace only when no policy said "not sampled"; an erroring
/// policy records no decision at all).
fn ottl_outcome(mode: &str, span: &[&str], events: &[&str], t: &TraceData<'_>) -> &'static str {
    let mut yaml = ottl_policy(mode, span, events);
    yaml.push_str(
        "  - {name: inv, type: string_attribute, string_attribute: {key: absent, values: [x], invert_match: true}}\n",
    );
    let mut e = otel(&yaml);
    let d = decide(&mut e, t);
    match (d.keep, d.policy.as_deref()) {
        (true, Some("o")) => "sampled",
        (true, Some("inv")) => "error",
        (false, None) => "not_sampled",
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn ottl_error_modes_match_upstream() {
    // ottl_default_error_mode_test.go: the first condition fails on spans and events without a
    // `value` attribute (Substring of nil is an error), the second matches a name "keep".
    let conditions = [r#"Substring(attributes["value"], 0, 4) == "keep""#, r#"name == "keep""#];
    let keep_span = SpanData {
        name: "keep",
        events: vec![SpanEventData::default()],
        ..span()
    };
    let keep_event = SpanData {
        events: vec![SpanEventData {
            name: "keep",
            ..Default::default()
        }],
        ..span()
    };
    let plain = SpanData {
        events: vec![SpanEventData::default()],
        ..span()
    };
    let valued_span = SpanData {
        span_id: [2; 8],
        attributes: vec![("value", AttrValue::Str("keep"))],
        ..span()
    };
    let valued_event = SpanData {
        events: vec![
            SpanEventData::default(),
            SpanEventData {
                attributes: vec![("value", AttrValue::Str("keepme"))],
                ..Default::default()
            },
        ],
        ..span()
    };
    let scenarios: Vec<ErrorModeCase> = vec![
        (
            "span_conditions",
            conditions.to_vec(),
            vec![],
            one(keep_span),
            "sampled",
        ),
        (
            "span_event_conditions",
            vec![],
            conditions.to_vec(),
            one(keep_event),
            "sampled",
        ),
        (
            "next_span",
            conditions[..1].to_vec(),
            vec![],
            trace(vec![plain.clone(), valued_span]),
            "sampled",
        ),
        (
            "next_span_event",
            vec![],
            conditions[..1].to_vec(),
            one(valued_event),
            "sampled",
        ),
        ("no_match", conditions.to_vec(), vec![], one(plain), "not_sampled"),
    ];
    for (name, span_conds, event_conds, t, ignore_result) in scenarios {
        for mode in ["propagate", "\"\""] {
            assert_eq!(
                ottl_outcome(mode, &span_conds, &event_conds, &t),
                "error",
                "{name}, error_mode {mode}: the first failing condition fails the policy"
            );
        }
        for mode in ["ignore", "silent"] {
            assert_eq!(
                ottl_outcome(mode, &span_conds, &event_conds, &t),
                ignore_result,
                "{name}, error_mode {mode}"
            );
        }
    }
    // An error fails an `and` and passes through `not` (upstream and.go / not.go).
    let yaml = r#"
policies:
  - name: a
    type: and
    and: {and_sub_policy: [{name: x, type: always_sample}, {name: o, type: ottl_condition, ottl_condition: {span: ['Double(name) > 1']}}]}
  - name: n
    type: not
    not: {not_sub_policy: {name: o, type: ottl_condition, ottl_condition: {span: ['Double(name) > 1']}}}
  - {name: inv, type: string_attribute, string_attribute: {key: absent, values: [x], invert_match: true}}
"#;
    let d = decide(&mut otel(yaml), &one(span()));
    assert_eq!((d.keep, d.policy.as_deref()), (true, Some("inv")), "{d:?}");
    // Native semantics: an erroring policy simply does not match, `not` included.
    let mut n = native(
        r#"
policies:
  - {name: o, ottl_condition: {span: ['Double(name) > 1']}}
  - {name: n, not: {policy: {ottl_condition: {span: ['Double(name) > 1']}}}}
  - {name: i, ottl_condition: {error_mode: ignore, span: ['Double(name) > 1', 'name == "work"']}}
"#,
    );
    assert_eq!(decide(&mut n, &one(span())).policy.as_deref(), Some("i"));
}

#[test]
fn ottl_conditions_over_resource_scope_and_events() {
    static RES: [(&str, AttrValue<'static>); 1] = [("deployment.environment", AttrValue::Str("prod"))];
    let t = one(SpanData {
        resource_attributes: &RES,
        scope_name: "io.opentelemetry.jdbc",
        status_message: "timeout",
        kind: 3,
        events: vec![SpanEventData {
            name: "exception",
            attributes: vec![("exception.type", AttrValue::Str("java.sql.SQLTimeoutException"))],
            ..Default::default()
        }],
        ..with_status(span(), StatusCode::Error)
    });
    let mut e = native(
        r#"
policies:
  - name: slow-db
    ottl_condition:
      span:
        - 'resource.attributes["deployment.environment"] == "prod" and instrumentation_scope.name == "io.opentelemetry.jdbc" and kind == SPAN_KIND_CLIENT and end_time_unix_nano - start_time_unix_nano > 5000000'
  - name: sql-exceptions
    ottl_condition:
      spanevent: ['name == "exception" and IsMatch(attributes["exception.type"], "SQL") and span.status.code == STATUS_CODE_ERROR']
"#,
    );
    assert_eq!(decide(&mut e, &t).policy.as_deref(), Some("slow-db"));
    let r = e.requirements();
    assert!(r.scope && r.span_events);
    assert!(r.resource_attributes.contains("deployment.environment"));
    assert!(r.event_attributes.contains("exception.type"));
    assert!(r.span_attributes.is_empty());
    let fast = one(SpanData {
        resource_attributes: &RES,
        scope_name: "io.opentelemetry.jdbc",
        kind: 3,
        end_unix_nano: T0 + MS,
        events: t.spans[0].events.clone(),
        ..with_status(span(), StatusCode::Error)
    });
    assert_eq!(decide(&mut e, &fast).policy.as_deref(), Some("sql-exceptions"));
    // Policies without OTTL conditions do not ask for events or scopes.
    let plain = native("policies:\n  - {name: a, status_code: {codes: [ERROR]}}");
    assert!(!plain.requirements().span_events && !plain.requirements().scope);
}

#[test]
fn ottl_errors_name_the_condition_and_column() {
    let e = yaml_err(
        r#"
policies:
  - {name: a, always: {}}
  - {name: b, always: {}}
  - name: c
    ottl_condition:
      span: ['name == "x" and attributs["k"] == 1', 'IsMatch(name, "(")']
      spanevent: ['Frobnicate(name)']
"#,
    );
    let issues: Vec<String> = e.issues().iter().map(ToString::to_string).collect();
    assert_eq!(
        issues[0],
        "policies[2].ottl_condition.span[0]: column 17: unknown path \"attributs\""
    );
    assert!(
        issues[1].starts_with("policies[2].ottl_condition.span[1]: column 15: the pattern supplied to IsMatch is not a valid regexp pattern"),
        "{issues:?}"
    );
    assert!(
        issues[2].starts_with("policies[2].ottl_condition.spanevent[0]: column 1: unknown function \"Frobnicate\" (supported: IsMatch, Len,"),
        "{issues:?}"
    );
    assert_eq!(issues.len(), 3);
    let e = PolicyDocument::from_otel_tail_sampling_yaml(
        "policies: [{name: o, type: ottl_condition, ottl_condition: {error_mode: loud, span: ['true']}}]",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "policies[0].ottl_condition.error_mode: unknown error mode \"loud\", supported: propagate, ignore, silent"
    );
}

#[test]
fn ottl_huge_deep_and_malformed_conditions_are_clear_errors() {
    let check = |cond: String, expect: &str| {
        let yaml = format!("policies:\n  - name: o\n    ottl_condition: {{span: ['{cond}']}}\n");
        let msg = yaml_err(&yaml).to_string();
        assert!(
            msg.starts_with("policies[0].ottl_condition.span[0]: column ") && msg.contains(expect),
            "{msg}"
        );
    };
    check(
        format!("{}name == \"x\"{}", "(".repeat(5000), ")".repeat(5000)),
        "too long",
    );
    check(
        format!("{}name == \"x\"{}", "(".repeat(200), ")".repeat(200)),
        "nested too deeply",
    );
    check(
        format!("{}1{} == kind", "Int(".repeat(100), ")".repeat(100)),
        "nested too deeply",
    );
    check(
        format!("{}name == \"x\"{}", "not (".repeat(100), ")".repeat(100)),
        "nested too deeply",
    );
    check(vec!["kind == 1"; 1000].join(" or "), "too long");
    check("name == \"x".into(), "unterminated string");
    check("name === \"x\"".into(), "column 8");
    check("((name == \"x\")".into(), "expected `)`");
    check("name == \"x\" and".into(), "column 16");
    check("\u{1F600} == 1".into(), "unexpected character");
    // Long but acceptable flat chains compile and evaluate.
    let chain = vec!["kind == 9"; 200].join(" or ");
    let mut e = native(&format!(
        "policies:\n  - name: o\n    ottl_condition: {{span: ['{chain} or kind == 1']}}\n"
    ));
    assert!(decide(&mut e, &one(span())).keep);
}

#[test]
fn ottl_documents_round_trip() {
    let yaml = r#"
policies:
  - name: o
    ottl_condition: {error_mode: silent, span: ['kind == 2'], spanevent: ['name == "e"']}
  - name: b
    bytes_limiting: {bytes_per_second: 1000, burst_capacity: 5000}
  - name: f
    trace_flags: {}
"#;
    let doc = PolicyDocument::from_yaml(yaml).unwrap();
    assert_eq!(PolicyDocument::from_yaml(&doc.to_yaml().unwrap()).unwrap(), doc);
    assert_eq!(PolicyDocument::from_json(&doc.to_json().unwrap()).unwrap(), doc);
    let imported = PolicyDocument::from_otel_tail_sampling_yaml(
        r#"
policies:
  - {name: o, type: ottl_condition, ottl_condition: {error_mode: ignore, span: ['kind == 2']}}
  - {name: b, type: bytes_limiting, bytes_limiting: {bytes_per_second: 1000}}
  - {name: f, type: trace_flags}
"#,
    )
    .unwrap();
    let out = imported.to_yaml().unwrap();
    assert!(
        out.contains("error_mode: ignore") && out.contains("trace_flags: {}"),
        "{out}"
    );
    assert_eq!(PolicyDocument::from_yaml(&out).unwrap(), imported);
}

fn sized(size_bytes: u64) -> TraceData<'static> {
    TraceData {
        size_bytes,
        ..one(span())
    }
}

#[test]
fn bytes_limiting_upstream_token_bucket_table() {
    // bytes_limiting_test.go, TestBytesLimitingTokenBucket: (rate, burst, decisions) for a trace of
    // size S, all evaluated at the same instant.
    const S: u64 = 331;
    let cases: Vec<(&str, u64, u64, Vec<bool>)> = vec![
        ("under burst capacity", S / 2, S * 2, vec![true]),
        ("at burst capacity", S / 2, S, vec![true]),
        ("over burst capacity", S, S - 1, vec![false]),
        ("multiple traces within burst", S, S * 3, vec![true, true]),
        ("multiple traces exceeding burst", S / 2, S + 1, vec![true, false]),
    ];
    for (name, rate, burst, want) in cases {
        let yaml = format!(
            "policies:\n  - {{name: b, type: bytes_limiting, bytes_limiting: {{bytes_per_second: {rate}, burst_capacity: {burst}}}}}\n"
        );
        let mut e = otel(&yaml);
        let got: Vec<bool> = want.iter().map(|_| e.decide(&sized(S), 0, T0).keep).collect();
        assert_eq!(got, want, "{name}");
    }
    // TestBytesLimitingDefaultConstructor: burst defaults to 2 x bytes_per_second (also for 0).
    for burst in ["", ", burst_capacity: 0"] {
        let mut e = otel(&format!(
            "policies:\n  - {{name: b, type: bytes_limiting, bytes_limiting: {{bytes_per_second: {S}{burst}}}}}\n"
        ));
        let got: Vec<bool> = (0..3).map(|_| e.decide(&sized(S), 0, T0).keep).collect();
        assert_eq!(got, [true, true, false]);
    }
    // TestBytesLimitingTokenRefill: 2 traces/s worth of bytes, burst of one trace; 600 ms later
    // 1.2 traces worth have refilled.
    let mut e = otel(&format!(
        "policies:\n  - {{name: b, type: bytes_limiting, bytes_limiting: {{bytes_per_second: {}, burst_capacity: {S}}}}}\n",
        2 * S
    ));
    assert!(e.decide(&sized(S), 0, T0).keep);
    assert!(!e.decide(&sized(S), 0, T0).keep);
    assert!(!e.decide(&sized(S), 0, T0 + 400 * MS).keep, "0.8 of a trace refilled");
    assert!(e.decide(&sized(S), 0, T0 + 600 * MS).keep);
    // A trace of unknown size (0) costs nothing.
    assert!(e.decide(&sized(0), 0, T0 + 600 * MS).keep);
}

#[test]
fn bytes_limiting_native_consumes_only_when_deciding_and_splits_by_share() {
    // Kept by an earlier policy: the limiter is not charged.
    let mut e = native(
        r#"
policies:
  - {name: errors, status_code: {codes: [ERROR]}}
  - {name: bytes, bytes_limiting: {bytes_per_second: 1000, burst_capacity: 1000}}
"#,
    );
    for _ in 0..5 {
        let d = e.decide(
            &TraceData {
                size_bytes: 600,
                ..one(with_status(span(), StatusCode::Error))
            },
            0,
            T0,
        );
        assert_eq!(d.policy.as_deref(), Some("errors"));
    }
    assert_eq!(e.decide(&sized(600), 0, T0).policy.as_deref(), Some("bytes"));
    assert!(!e.decide(&sized(600), 0, T0).keep, "400 bytes left");
    assert!(e.decide(&sized(400), 0, T0).keep);
    // Inside an `and` that does not match, nothing is consumed.
    let mut e = native(
        r#"
policies:
  - name: sampled-errors
    and: {policies: [{bytes_limiting: {bytes_per_second: 1000}}, {status_code: {codes: [ERROR]}}]}
"#,
    );
    for _ in 0..10 {
        assert!(!e.decide(&sized(1500), 0, T0).keep);
    }
    assert!(
        e.decide(
            &TraceData {
                size_bytes: 1500,
                ..one(with_status(span(), StatusCode::Error))
            },
            0,
            T0
        )
        .keep
    );
    // Cluster budget: a worker with a quarter of the partitions gets a quarter of the bytes.
    let mut e = native("policies:\n  - {name: b, bytes_limiting: {bytes_per_second: 4000}}");
    e.set_budget_share(0.25);
    let kept = (0..1000u64)
        .filter(|k| e.decide(&sized(100), 0, T0 + k * 10 * MS).keep)
        .count();
    // A burst of 2 s at the worker's 1000 B/s (20 traces of 100 B), then 10 s x 1000 B/s.
    assert!((118..=121).contains(&kept), "{kept}");
    let mut w = native("budget_scope: worker\npolicies:\n  - {name: b, bytes_limiting: {bytes_per_second: 100}}");
    w.set_budget_share(0.25);
    assert_eq!(
        (0..3).filter(|_| w.decide(&sized(100), 0, T0).keep).count(),
        2,
        "2 x 100 bytes of burst"
    );
}

#[test]
fn bytes_limiting_validation() {
    let e = yaml_err("policies:\n  - {name: b, bytes_limiting: {bytes_per_second: 0, burst_capacity: -1}}").to_string();
    assert_eq!(
        e,
        "policies[0].bytes_limiting.bytes_per_second: must be between 1 and 1e12, got 0; \
         policies[0].bytes_limiting.burst_capacity: must be between 1 and 1e15, got -1"
    );
}

#[test]
fn trace_flags_upstream_cases() {
    // trace_flags.go: sampled when some span has bit 0 of the W3C trace flags (low byte of
    // Span.flags) set; the upper bits (remote-parent flags) do not count.
    let flagged = |flags: u32| SpanData { flags, ..span() };
    let cases: Vec<(&str, TraceData<'static>, bool)> = vec![
        ("no spans", trace(vec![]), false),
        ("no flags", one(flagged(0)), false),
        ("sampled", one(flagged(1)), true),
        ("sampled among others", trace(vec![flagged(0), flagged(0x301)]), true),
        ("only remote-parent bits", one(flagged(0x300)), false),
        ("other trace flag bits", one(flagged(0xfe)), false),
    ];
    for (name, t, keep) in cases {
        let mut o = otel("policies:\n  - {name: f, type: trace_flags}\n");
        assert_eq!(decide(&mut o, &t).keep, keep, "{name}");
        let mut n = native("policies:\n  - {name: f, trace_flags: {}}\n");
        assert_eq!(decide(&mut n, &t).keep, keep, "{name} (native)");
        let mut n = native("policies:\n  - name: f\n    trace_flags:\n");
        assert_eq!(decide(&mut n, &t).keep, keep, "{name} (native, null body)");
    }
}

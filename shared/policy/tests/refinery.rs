//! Refinery-style samplers (deterministic, dynamic, EMA, throughput, rules)
//! and the Refinery `rules.yaml` importer: convergence over simulated time,
//! cluster budget shares, clock jumps, determinism across workers, rule
//! semantics, golden comparisons with native documents, validation.

use std::collections::HashMap;

use tailsift_policy::{
    adjusted_count, refinery_deterministic_keep, threshold_for, AttrValue, BudgetScope, Decision, PolicyDocument,
    PolicyEngine, PolicyError, SpanData, StatusCode, TraceData,
};

const SEC: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
const T0: u64 = 1_700_000_000 * SEC;
const SEED: u64 = 0x5eed;

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Distinct trace IDs from a counter (mixed so that the randomness is spread).
fn tid(n: u64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    id[8..].copy_from_slice(&(n ^ 0xabcd).to_be_bytes());
    id
}

fn root_span(route: &'static str) -> SpanData<'static> {
    SpanData {
        span_id: [1; 8],
        parent_span_id: None,
        name: "GET",
        kind: 2,
        start_unix_nano: T0,
        end_unix_nano: T0 + 20 * MS,
        service: "api",
        attributes: vec![("http.route", AttrValue::Str(route))],
        ..Default::default()
    }
}

fn route_trace(n: u64, route: &'static str) -> TraceData<'static> {
    TraceData {
        trace_id: tid(n),
        spans: vec![root_span(route)],
        size_bytes: 0,
    }
}

fn engine(yaml: &str) -> PolicyEngine {
    let doc = PolicyDocument::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    PolicyEngine::compile(&doc).unwrap()
}

fn assert_consistent_keep(d: &Decision, rate: f64) {
    assert!(d.keep);
    assert!((d.adjusted_count() - rate).abs() < 1e-9, "{d:?}");
    assert_eq!(d.threshold, Some(threshold_for(1.0 / rate)));
    assert!(d.randomness.is_some_and(|r| r >= d.threshold.unwrap()));
    assert!(d.ot_tracestate().is_some());
}

// ---------------------------------------------------------------------------
// Dynamic samplers: convergence

#[test]
fn dynamic_keeps_rare_keys_and_thins_the_frequent_one() {
    // 1000 traces/s: 90% on /hot, 10% cycling over 1000 rare routes (each
    // seen once per 10 s interval).
    let rare: Vec<&'static str> = (0..1000).map(|i| leak(format!("/rare/{i}"))).collect();
    for kind in ["dynamic", "ema_dynamic"] {
        let settings = if kind == "dynamic" {
            "sample_rate: 10, clear_frequency: 10s"
        } else {
            "goal_sample_rate: 10, adjustment_interval: 10s, weight: 0.5"
        };
        let mut e = engine(&format!(
            "policies:\n  - name: dyn\n    {kind}: {{ {settings}, field_list: [http.route], max_keys: 2000 }}\n"
        ));
        let (mut hot_seen, mut hot_kept, mut rare_seen, mut rare_kept) = (0u64, 0u64, 0u64, 0u64);
        let mut n = 0u64;
        let mut r = 0usize;
        for ms in 0..120_000u64 {
            // One trace per millisecond.
            let route = if ms % 10 == 0 {
                r += 1;
                rare[r % rare.len()]
            } else {
                "/hot"
            };
            n += 1;
            let d = e.decide(&route_trace(n, route), SEED, T0 + ms * MS);
            if ms < 60_000 {
                continue; // warm-up (EMA needs a few intervals)
            }
            if route == "/hot" {
                hot_seen += 1;
                hot_kept += u64::from(d.keep);
                if d.keep {
                    assert!(d.adjusted_count() > 5.0, "{kind}: {d:?}");
                }
            } else {
                rare_seen += 1;
                rare_kept += u64::from(d.keep);
                if d.keep {
                    assert_eq!(d.adjusted_count(), 1.0, "{kind}");
                }
            }
        }
        assert_eq!(rare_kept, rare_seen, "{kind}: rare keys are all kept");
        let hot_ratio = hot_kept as f64 / hot_seen as f64;
        // dynamic: hot rate 9 (goal count 1000 of 10000, all rare keys at 1).
        assert!((0.08..0.16).contains(&hot_ratio), "{kind}: hot keep ratio {hot_ratio}");
    }
}

/// Kept traces per second (averaged over the last half) of `policy` for
/// `per_sec` traces per second spread over 4 keys (50/30/15/5 %).
fn throughput_run(policy: &str, per_sec: u64, share: f64, seconds: u64) -> f64 {
    let mut e = engine(policy);
    e.set_budget_share(share);
    let step = SEC / per_sec;
    let mut kept = 0u64;
    let total = per_sec * seconds;
    for i in 0..total {
        let route = match i % 20 {
            0..=9 => "/a",
            10..=15 => "/b",
            16..=18 => "/c",
            _ => "/d",
        };
        let d = e.decide(&route_trace(i, route), SEED, T0 + i * step);
        if i >= total / 2 && d.keep {
            kept += 1;
            assert!(d.threshold.is_some() && d.adjusted_count() >= 1.0);
        }
    }
    kept as f64 / (seconds / 2) as f64
}

const THROUGHPUT_POLICIES: [&str; 3] = [
    "ema_throughput: { goal_throughput_per_sec: 100, adjustment_interval: 5s, field_list: [http.route], unit: traces }",
    "windowed_throughput: { goal_throughput_per_sec: 100, update_frequency: 1s, lookback_frequency: 10s, field_list: [http.route], unit: traces }",
    "total_throughput: { goal_throughput_per_sec: 100, clear_frequency: 5s, field_list: [http.route], unit: traces }",
];

#[test]
fn throughput_samplers_keep_about_the_goal() {
    for p in THROUGHPUT_POLICIES {
        let doc = format!("policies:\n  - name: tp\n    {p}\n");
        let per_sec = throughput_run(&doc, 2000, 1.0, 120);
        assert!(
            (70.0..=130.0).contains(&per_sec),
            "{p}: {per_sec} kept/s for a goal of 100"
        );
    }
}

#[test]
fn throughput_goal_is_for_the_cluster() {
    // A worker owning a quarter of the partitions sees a quarter of the
    // traffic and keeps about a quarter of the cluster goal.
    for p in THROUGHPUT_POLICIES {
        let doc = format!("policies:\n  - name: tp\n    {p}\n");
        let per_sec = throughput_run(&doc, 500, 0.25, 120);
        assert!(
            (17.0..=33.0).contains(&per_sec),
            "{p}: {per_sec} kept/s for a share of 25"
        );
        // budget_scope: worker ignores the share.
        let doc = format!("budget_scope: worker\npolicies:\n  - name: tp\n    {p}\n");
        let per_sec = throughput_run(&doc, 2000, 0.25, 60);
        assert!((70.0..=130.0).contains(&per_sec), "{p}: worker scope {per_sec}");
    }
}

#[test]
fn spans_unit_counts_spans() {
    // With the default unit a 5-span trace counts 5 toward the goal (Refinery
    // counts events): 200 spans/s at a goal of 100 spans/s keeps ~20 traces/s.
    let mut e = engine(
        "policies:\n  - name: tp\n    total_throughput: { goal_throughput_per_sec: 100, clear_frequency: 5s, field_list: [http.route] }\n",
    );
    let mut kept = 0;
    for i in 0..40 * 40u64 {
        let mut t = route_trace(i, "/a");
        for k in 0..4u8 {
            let mut s = root_span("/a");
            s.parent_span_id = Some([k + 1; 8]);
            t.spans.push(s);
        }
        let d = e.decide(&t, SEED, T0 + i * (SEC / 40));
        if i >= 20 * 40 && d.keep {
            kept += 1;
        }
    }
    let per_sec = kept as f64 / 20.0;
    assert!((14.0..=26.0).contains(&per_sec), "{per_sec}");
}

// ---------------------------------------------------------------------------
// Clocks, memory, determinism

const ALL_SAMPLERS: [&str; 6] = [
    "deterministic: { sample_rate: 4 }",
    "dynamic: { sample_rate: 4, clear_frequency: 1s, field_list: [http.route] }",
    "ema_dynamic: { goal_sample_rate: 4, adjustment_interval: 1s, field_list: [http.route] }",
    "ema_throughput: { goal_throughput_per_sec: 50, adjustment_interval: 1s, field_list: [http.route] }",
    "windowed_throughput: { goal_throughput_per_sec: 50, update_frequency: 1s, field_list: [http.route] }",
    "total_throughput: { goal_throughput_per_sec: 50, clear_frequency: 1s, field_list: [http.route] }",
];

#[test]
fn clock_jumps_do_not_break_samplers() {
    for p in ALL_SAMPLERS {
        let mut e = engine(&format!("policies:\n  - name: s\n    {p}\n"));
        let times = [
            T0,
            T0 + SEC / 2,
            T0 - 3600 * SEC, // back an hour
            T0 - 3600 * SEC + 5 * SEC,
            0,
            T0 + 10 * 86_400 * SEC, // ten days ahead
            u64::MAX,
            u64::MAX - 1,
            T0, // and back again
        ];
        let mut n = 0;
        for &t in &times {
            for k in 0..300u64 {
                n += 1;
                let now = t.saturating_add(k * 10 * MS);
                let d = e.decide(&route_trace(n, if k % 3 == 0 { "/x" } else { "/y" }), SEED, now);
                if d.keep {
                    assert!(d.sampling_probability > 0.0 && d.sampling_probability <= 1.0, "{p}");
                }
            }
        }
        // After the jumps, the sampler still converges: a steady second of
        // traffic gets thinned rather than all kept or all dropped.
        let mut kept = 0;
        for k in 0..4000u64 {
            n += 1;
            let d = e.decide(&route_trace(n, "/z"), SEED, T0 + 100 * SEC + k * MS);
            kept += u64::from(d.keep);
        }
        assert!(kept > 0 && kept < 4000, "{p}: {kept}");
    }
}

#[test]
fn two_workers_with_the_same_seed_agree() {
    let doc = r#"
policies:
  - name: r
    rules:
      rules:
        - name: errors
          conditions: [{ field: error, operator: exists }]
          sample_rate: 2
        - name: by-route
          sampler:
            ema_dynamic: { goal_sample_rate: 5, adjustment_interval: 2s, field_list: [http.route, root.name] }
"#;
    let mut a = engine(doc);
    let mut b = engine(doc);
    let routes = ["/a", "/a", "/a", "/b", "/c"];
    for i in 0..20_000u64 {
        let mut t = route_trace(i, routes[(i % 5) as usize]);
        if i % 13 == 0 {
            t.spans[0].status = StatusCode::Error;
        }
        let now = T0 + i * MS;
        assert_eq!(a.decide(&t, SEED, now), b.decide(&t, SEED, now), "trace {i}");
    }
}

// ---------------------------------------------------------------------------
// Deterministic

#[test]
fn deterministic_is_consistent_sampling() {
    let mut e = engine("policies:\n  - name: d\n    deterministic: { sample_rate: 8 }\n");
    let mut kept = 0;
    for i in 0..40_000u64 {
        let d = e.decide(&route_trace(i, "/a"), SEED, T0);
        if d.keep {
            kept += 1;
            assert_consistent_keep(&d, 8.0);
            assert_eq!(d.policy.as_deref(), Some("d"));
        }
    }
    assert!((4_500..5_500).contains(&kept), "{kept}");
    // Same traces as the probabilistic policy at 12.5%.
    let mut p = engine("policies:\n  - name: p\n    probabilistic: { percentage: 12.5 }\n");
    for i in 0..2_000u64 {
        let t = route_trace(i, "/a");
        assert_eq!(e.decide(&t, SEED, T0).keep, p.decide(&t, SEED, T0).keep);
    }
}

#[test]
fn deterministic_refinery_sha1_matches_refinery() {
    let mut e = engine("policies:\n  - name: d\n    deterministic: { sample_rate: 10, hash: refinery_sha1 }\n");
    let mut kept = 0;
    for i in 0..10_000u64 {
        let t = route_trace(i, "/a");
        let d = e.decide(&t, 1, T0);
        // Not seeded: any seed gives the same answer.
        assert_eq!(d.keep, e.decide(&t, 2, T0).keep);
        assert_eq!(d.keep, refinery_deterministic_keep(t.trace_id, 10));
        if d.keep {
            kept += 1;
            assert!((d.adjusted_count() - 10.0).abs() < 1e-9);
            assert_eq!(d.threshold, None);
        }
    }
    assert!((800..1_200).contains(&kept), "{kept}");
}

// ---------------------------------------------------------------------------
// Rules

fn rules_engine(rules: &str) -> PolicyEngine {
    engine(&format!("policies:\n  - name: r\n    rules:\n      rules:\n{rules}"))
}

/// A two-span trace: a root (`GET /api`, service `api`) and a child.
fn two_spans(
    root_attrs: Vec<(&'static str, AttrValue<'static>)>,
    child_attrs: Vec<(&'static str, AttrValue<'static>)>,
) -> TraceData<'static> {
    let root = SpanData {
        span_id: [1; 8],
        name: "GET /api",
        service: "api",
        kind: 2,
        start_unix_nano: T0,
        end_unix_nano: T0 + 1500 * MS,
        attributes: root_attrs,
        ..Default::default()
    };
    let child = SpanData {
        span_id: [2; 8],
        parent_span_id: Some([1; 8]),
        name: "SELECT",
        service: "db",
        kind: 3,
        start_unix_nano: T0,
        end_unix_nano: T0 + 10 * MS,
        attributes: child_attrs,
        ..Default::default()
    };
    TraceData {
        trace_id: tid(42),
        spans: vec![root, child],
        size_bytes: 0,
    }
}

/// Does a rule with this one condition (trace scope) match the trace?
fn cond_matches(cond: &str, t: &TraceData<'_>) -> bool {
    let mut e = rules_engine(&format!(
        "        - name: m\n          conditions: [{cond}]\n          drop: true\n"
    ));
    !e.decide(t, SEED, T0).keep
}

#[test]
fn rule_operators_and_datatypes() {
    let t = two_spans(
        vec![
            ("http.status_code", AttrValue::Int(503)),
            ("http.url", AttrValue::Str("https://honeycomb.io/x")),
            ("ratio", AttrValue::Double(2.5)),
            ("flag", AttrValue::Bool(true)),
            ("code_str", AttrValue::Str("404")),
        ],
        vec![("db.system", AttrValue::Str("postgres"))],
    );
    let cases: &[(&str, bool)] = &[
        ("{ field: http.status_code, operator: '=', value: 503 }", true),
        ("{ field: http.status_code, operator: '=', value: '503' }", false), // untyped: int vs string
        (
            "{ field: http.status_code, operator: '=', value: '503', datatype: int }",
            true,
        ),
        ("{ field: http.status_code, operator: '>=', value: 500 }", true),
        ("{ field: http.status_code, operator: '<', value: 500.5 }", false),
        ("{ field: http.status_code, operator: '!=', value: 200 }", true),
        ("{ field: code_str, operator: '>', value: 400, datatype: int }", true),
        ("{ field: code_str, operator: '=', value: 404 }", false),
        ("{ field: ratio, operator: '>', value: 2 }", true),
        ("{ field: ratio, operator: '=', value: '2.5', datatype: float }", true),
        ("{ field: flag, operator: '=', value: true }", true),
        ("{ field: flag, operator: '=', value: 'T', datatype: bool }", true),
        (
            "{ field: http.status_code, operator: '=', value: '503', datatype: string }",
            true,
        ),
        (
            "{ field: http.url, operator: starts-with, value: 'https://honey' }",
            true,
        ),
        ("{ field: http.url, operator: contains, value: eyco }", true),
        ("{ field: http.url, operator: does-not-contain, value: eyco }", true), // the child span lacks it
        (
            "{ field: http.url, operator: matches, value: '^https://[a-z]+\\.io/' }",
            true,
        ),
        ("{ field: http.url, operator: matches, value: '^http://' }", false),
        ("{ field: db.system, operator: in, value: [mysql, postgres] }", true),
        (
            "{ field: http.status_code, operator: in, value: [500, 503], datatype: int }",
            true,
        ),
        ("{ field: http.status_code, operator: in, value: [500, 503] }", true), // strings: "503"
        ("{ field: db.system, operator: not-in, value: [postgres] }", true),    // the root span lacks it
        ("{ field: db.system, operator: exists }", true),
        ("{ field: nope, operator: exists }", false),
        ("{ field: nope, operator: not-exists }", true),
        ("{ field: service.name, operator: '=', value: db }", true),
        ("{ field: name, operator: '=', value: SELECT }", true),
        ("{ field: root.name, operator: '=', value: SELECT }", false),
        ("{ field: root.service.name, operator: '=', value: api }", true),
        (
            "{ field: duration_ms, operator: '>=', value: 1000, datatype: float }",
            true,
        ),
        ("{ field: span.kind, operator: '=', value: client }", true),
        ("{ field: status_code, operator: '=', value: 0 }", true),
        ("{ field: error, operator: exists }", false),
        ("{ field: trace.parent_id, operator: not-exists }", true),
        (
            "{ fields: [missing, http.status_code], operator: '=', value: 503 }",
            true,
        ),
        ("{ field: '?.NUM_DESCENDANTS', operator: '>=', value: 2 }", true),
        ("{ field: '?.NUM_DESCENDANTS', operator: '>', value: 2 }", false),
        ("{ field: '?.HTTP_STATUS_CLASS', operator: '=', value: 5xx }", true),
        ("{ operator: has-root-span, value: true }", true),
        ("{ operator: has-root-span, value: false }", false),
    ];
    for (cond, want) in cases {
        assert_eq!(cond_matches(cond, &t), *want, "{cond}");
    }
    // Without a root span.
    let mut orphan = t.clone();
    orphan.spans.remove(0);
    assert!(cond_matches("{ operator: has-root-span, value: false }", &orphan));
    assert!(!cond_matches("{ field: root.name, operator: exists }", &orphan));
}

#[test]
fn rule_scope_trace_vs_span() {
    let t = two_spans(vec![("a", AttrValue::Int(1))], vec![("b", AttrValue::Int(2))]);
    let rule = |scope: &str| {
        format!(
            "        - name: both\n          scope: {scope}\n          conditions:\n            - {{ field: a, operator: '=', value: 1 }}\n            - {{ field: b, operator: '=', value: 2 }}\n          drop: true\n"
        )
    };
    assert!(!rules_engine(&rule("trace")).decide(&t, SEED, T0).keep);
    assert!(rules_engine(&rule("span")).decide(&t, SEED, T0).keep);
    let one_span = two_spans(vec![("a", AttrValue::Int(1)), ("b", AttrValue::Int(2))], vec![]);
    assert!(!rules_engine(&rule("span")).decide(&one_span, SEED, T0).keep);
}

#[test]
fn first_matching_rule_decides_and_unmatched_is_kept() {
    let mut e = rules_engine(
        "        - name: drop-health\n          conditions: [{ field: http.route, operator: '=', value: /health }]\n          drop: true\n        - name: keep-all-api\n          conditions: [{ field: http.route, operator: starts-with, value: /api }]\n          sample_rate: 1\n        - name: thin\n          conditions: [{ field: http.route, operator: exists }]\n          sample_rate: 20\n",
    );
    assert!(!e.decide(&route_trace(1, "/health"), SEED, T0).keep);
    let d = e.decide(&route_trace(2, "/api/x"), SEED, T0);
    assert_consistent_keep(&d, 1.0);
    let mut kept = 0;
    for i in 0..4000 {
        let d = e.decide(&route_trace(i, "/other"), SEED, T0);
        if d.keep {
            kept += 1;
            assert_consistent_keep(&d, 20.0);
        }
    }
    assert!((120..280).contains(&kept), "{kept}");
    // No rule matches a trace without a route: kept at rate 1, no threshold.
    let mut bare = route_trace(3, "/x");
    bare.spans[0].attributes.clear();
    let d = e.decide(&bare, SEED, T0);
    assert!(d.keep && d.sampling_probability == 1.0 && d.threshold.is_none());

    // `unmatched: pass` lets later policies decide.
    let mut e = engine(
        "policies:\n  - name: r\n    rules:\n      unmatched: pass\n      rules:\n        - { conditions: [{ field: http.route, operator: exists }], sample_rate: 1 }\n  - name: fallback\n    always: {}\n",
    );
    assert_eq!(e.decide(&bare, SEED, T0).policy.as_deref(), Some("fallback"));
    assert_eq!(e.decide(&route_trace(4, "/x"), SEED, T0).policy.as_deref(), Some("r"));
}

#[test]
fn requirements_list_rule_and_key_fields() {
    let e = rules_engine(
        "        - conditions: [{ field: root.http.target, operator: exists }]\n          sampler: { dynamic: { sample_rate: 5, field_list: [deployment.environment, name] } }\n",
    );
    let req = e.requirements();
    for k in ["http.target", "deployment.environment", "name"] {
        assert!(req.wants_span_attribute(k) && req.wants_resource_attribute(k), "{k}");
    }
}

// ---------------------------------------------------------------------------
// Refinery rules.yaml import

const REFINERY_RULES: &str = r#"
RulesVersion: 2
Samplers:
  __default__:
    RulesBasedSampler:
      Rules:
        - Name: drop healthchecks
          Drop: true
          Conditions:
            - Field: http.route
              Operator: =
              Value: /health-check
        - Name: drop noisy services
          Drop: true
          Conditions:
            - Field: service.name
              Operator: in
              Value: [noisy-service, overly-chatty-service17]
        - Name: keep slow 500 errors across semantic conventions
          SampleRate: 1
          Conditions:
            - Fields: [http.status_code, http.response.status_code]
              Operator: =
              Value: 500
              Datatype: int
            - Field: duration_ms
              Operator: '>='
              Value: 1000
              Datatype: float
        - Name: dynamically sample 200 responses
          Conditions:
            - Fields: [http.status_code, http.response.status_code]
              Operator: =
              Value: 200
              Datatype: int
          Sampler:
            EMADynamicSampler:
              GoalSampleRate: 15
              AdjustmentInterval: 5s
              FieldList: [http.method, http.route]
        - Name: users service roots
          SampleRate: 5
          Scope: span
          Conditions:
            - Field: service.name
              Operator: =
              Value: users
            - Field: trace.parent_id
              Operator: not-exists
        - Name: incomplete buggy traces
          Drop: true
          Conditions:
            - Operator: has-root-span
              Value: false
            - Field: service.name
              Operator: =
              Value: buggy-service
        - Name: default rule
          SampleRate: 10
"#;

const NATIVE_RULES: &str = r#"
policies:
  - name: refinery/__default__
    rules:
      rules:
        - name: drop healthchecks
          drop: true
          conditions: [{ field: http.route, operator: '=', value: /health-check }]
        - name: drop noisy services
          drop: true
          conditions: [{ field: service.name, operator: in, value: [noisy-service, overly-chatty-service17] }]
        - name: keep slow 500 errors across semantic conventions
          sample_rate: 1
          conditions:
            - { fields: [http.status_code, http.response.status_code], operator: '=', value: 500, datatype: int }
            - { field: duration_ms, operator: '>=', value: 1000, datatype: float }
        - name: dynamically sample 200 responses
          conditions:
            - { fields: [http.status_code, http.response.status_code], operator: '=', value: 200, datatype: int }
          sampler:
            ema_dynamic: { goal_sample_rate: 15, adjustment_interval: 5s, field_list: [http.method, http.route] }
        - name: users service roots
          sample_rate: 5
          scope: span
          conditions:
            - { field: service.name, operator: '=', value: users }
            - { field: trace.parent_id, operator: not-exists }
        - name: incomplete buggy traces
          drop: true
          conditions:
            - { operator: has-root-span, value: false }
            - { field: service.name, operator: '=', value: buggy-service }
        - name: default rule
          sample_rate: 10
"#;

/// A varied stream of traces for golden comparisons.
fn generated_trace(i: u64) -> TraceData<'static> {
    const SERVICES: [&str; 5] = ["api", "users", "noisy-service", "buggy-service", "web"];
    const ROUTES: [&str; 6] = ["/health-check", "/a", "/b", "/c/{id}", "/d", "/e"];
    const METHODS: [&str; 3] = ["GET", "POST", "PUT"];
    let h = i.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 7;
    let service = SERVICES[(h % 5) as usize];
    let route = ROUTES[((h >> 3) % 6) as usize];
    let status: i64 = [200, 200, 200, 500, 404, 200][((h >> 6) % 6) as usize];
    let duration = [5, 50, 1200, 3000][((h >> 9) % 4) as usize] * MS;
    let mut attrs = vec![
        ("http.route", AttrValue::Str(route)),
        ("http.method", AttrValue::Str(METHODS[((h >> 11) % 3) as usize])),
    ];
    attrs.push(if h & (1 << 13) == 0 {
        ("http.status_code", AttrValue::Int(status))
    } else {
        ("http.response.status_code", AttrValue::Int(status))
    });
    let root = SpanData {
        span_id: [1; 8],
        parent_span_id: None,
        name: "handler",
        service,
        kind: 2,
        start_unix_nano: T0,
        end_unix_nano: T0 + duration,
        attributes: attrs,
        ..Default::default()
    };
    let child = SpanData {
        span_id: [2; 8],
        parent_span_id: Some([1; 8]),
        name: "db",
        service,
        start_unix_nano: T0,
        end_unix_nano: T0 + MS,
        ..Default::default()
    };
    let spans = match (h >> 14) % 4 {
        0 => vec![child], // incomplete: no root span
        1 => vec![root],
        _ => vec![root, child],
    };
    TraceData {
        trace_id: tid(i),
        spans,
        size_bytes: 0,
    }
}

fn assert_same_decisions(a: &mut PolicyEngine, b: &mut PolicyEngine, n: u64) -> usize {
    let mut kept = 0;
    for i in 0..n {
        let t = generated_trace(i);
        let now = T0 + i * 3 * MS;
        let (da, db) = (a.decide(&t, SEED, now), b.decide(&t, SEED, now));
        assert_eq!(da, db, "trace {i}: {t:?}");
        kept += usize::from(da.keep);
    }
    kept
}

#[test]
fn golden_refinery_rules_equal_native_rules() {
    let imported = PolicyDocument::from_refinery_rules_yaml(REFINERY_RULES).unwrap();
    let native = PolicyDocument::from_yaml(NATIVE_RULES).unwrap();
    assert_eq!(imported, native);
    let mut a = PolicyEngine::compile(&imported).unwrap();
    let mut b = PolicyEngine::compile(&native).unwrap();
    let kept = assert_same_decisions(&mut a, &mut b, 30_000);
    assert!(kept > 1000 && kept < 25_000, "{kept}");
    // The imported document round-trips through native YAML and JSON.
    let yaml = imported.to_yaml().unwrap();
    let mut c = PolicyEngine::compile(&PolicyDocument::from_yaml(&yaml).unwrap()).unwrap();
    let json = imported.to_json().unwrap();
    let mut d = PolicyEngine::compile(&PolicyDocument::from_json(&json).unwrap()).unwrap();
    let mut a = PolicyEngine::compile(&imported).unwrap();
    assert_same_decisions(&mut a, &mut c, 10_000);
    let mut c = PolicyEngine::compile(&PolicyDocument::from_yaml(&yaml).unwrap()).unwrap();
    assert_same_decisions(&mut c, &mut d, 10_000);
}

#[test]
fn golden_each_refinery_sampler_equals_native() {
    let pairs: [(&str, &str); 6] = [
        (
            "DeterministicSampler: { SampleRate: 7 }",
            "deterministic: { sample_rate: 7, hash: refinery_sha1 }",
        ),
        (
            "DynamicSampler: { SampleRate: 5, ClearFrequency: 2s, FieldList: [http.route, root.service.name], UseTraceLength: true, MaxKeys: 50 }",
            "dynamic: { sample_rate: 5, clear_frequency: 2s, field_list: [http.route, root.service.name], use_trace_length: true, max_keys: 50 }",
        ),
        (
            "EMADynamicSampler: { GoalSampleRate: 5, AdjustmentInterval: 2s, Weight: 0.3, AgeOutValue: 0.2, BurstMultiple: 3, BurstDetectionDelay: 2, FieldList: [http.route] }",
            "ema_dynamic: { goal_sample_rate: 5, adjustment_interval: 2s, weight: 0.3, age_out_value: 0.2, burst_multiple: 3, burst_detection_delay: 2, field_list: [http.route] }",
        ),
        (
            "EMAThroughputSampler: { GoalThroughputPerSec: 50, InitialSampleRate: 4, AdjustmentInterval: 2s, FieldList: [http.method] }",
            "ema_throughput: { goal_throughput_per_sec: 50, initial_sample_rate: 4, adjustment_interval: 2s, field_list: [http.method] }",
        ),
        (
            "WindowedThroughputSampler: { GoalThroughputPerSec: 50, UpdateFrequency: 1s, LookbackFrequency: 5s, FieldList: [http.method] }",
            "windowed_throughput: { goal_throughput_per_sec: 50, update_frequency: 1s, lookback_frequency: 5s, field_list: [http.method] }",
        ),
        (
            "TotalThroughputSampler: { GoalThroughputPerSec: 50, ClearFrequency: 2s, FieldList: [http.method] }",
            "total_throughput: { goal_throughput_per_sec: 50, clear_frequency: 2s, field_list: [http.method] }",
        ),
    ];
    for (refinery, native) in pairs {
        let imported = PolicyDocument::from_refinery_rules_yaml(&format!(
            "RulesVersion: 2\nSamplers:\n  __default__:\n    {refinery}\n"
        ))
        .unwrap_or_else(|e| panic!("{refinery}: {e}"));
        let scope = if refinery.contains("Throughput") {
            "budget_scope: worker\n"
        } else {
            ""
        };
        let native_doc = PolicyDocument::from_yaml(&format!(
            "{scope}policies:\n  - name: refinery/__default__\n    {native}\n"
        ))
        .unwrap();
        assert_eq!(imported, native_doc, "{refinery}");
        let mut a = PolicyEngine::compile(&imported).unwrap();
        let mut b = PolicyEngine::compile(&native_doc).unwrap();
        assert_same_decisions(&mut a, &mut b, 5_000);
    }
}

#[test]
fn refinery_example_files_import() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/refinery/");
    let read = |f: &str| std::fs::read_to_string(format!("{dir}{f}")).unwrap();
    for f in [
        "rules.yaml",
        "rules_complete.yaml",
        "EMAThroughput_rules.yaml",
        "smoke_rules.yaml",
    ] {
        let doc = PolicyDocument::from_refinery_rules_yaml(&read(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        // __default__ is DeterministicSampler { SampleRate: 1 } everywhere: keep all.
        let mut e = PolicyEngine::compile(&doc).unwrap();
        assert!(e.decide(&generated_trace(1), SEED, T0).keep);
    }
    let complete = read("rules_complete.yaml");
    for env in ["env1", "env2", "env3", "env4", "env5"] {
        let doc = PolicyDocument::from_refinery_rules_yaml_env(&complete, env).unwrap_or_else(|e| panic!("{env}: {e}"));
        let mut e = PolicyEngine::compile(&doc).unwrap();
        for i in 0..2000 {
            let d = e.decide(&generated_trace(i), SEED, T0 + i * MS);
            assert!(!d.keep || d.adjusted_count() >= 1.0);
        }
    }
    // env5's EMAThroughputSampler has no UseClusterSize: per-worker goal.
    let env5 = PolicyDocument::from_refinery_rules_yaml_env(&complete, "env5").unwrap();
    assert_eq!(env5.budget_scope, BudgetScope::Worker);
    let ema = PolicyDocument::from_refinery_rules_yaml_env(&read("EMAThroughput_rules.yaml"), "TheNewWorld").unwrap();
    assert_eq!(ema.policies[0].kind.type_name(), "ema_throughput");
}

fn err(r: Result<PolicyDocument, PolicyError>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn refinery_import_errors() {
    // Unknown keys, with their path.
    let e = err(PolicyDocument::from_refinery_rules_yaml(
        "RulesVersion: 2\nSamplers:\n  __default__:\n    DynamicSampler: { SampleRate: 2, FieldList: [a], Bogus: 1 }\n",
    ));
    assert!(
        e.contains("Samplers.__default__.DynamicSampler") && e.contains("Bogus"),
        "{e}"
    );
    let e = err(PolicyDocument::from_refinery_rules_yaml(
        "RulesVersion: 2\nSamplers:\n  __default__:\n    RulesBasedSampler:\n      Rules:\n        - Name: x\n          Conditions: [{ Field: a, Operator: '=', Valeu: 1 }]\n",
    ));
    assert!(e.contains("Rules[0].Conditions[0]") && e.contains("Valeu"), "{e}");
    let e = err(PolicyDocument::from_refinery_rules_yaml(
        "RulesVersion: 2\nSamplers:\n  __default__:\n    RulesBasedSampler:\n      Rules:\n        - Conditions: [{ Field: a, Operator: 'like', Value: 1 }]\n",
    ));
    assert!(e.contains("Operator") && e.contains("like"), "{e}");
    // No __default__: the environments are named.
    let e = err(PolicyDocument::from_refinery_rules_yaml(
        "RulesVersion: 2\nSamplers:\n  prod:\n    DeterministicSampler: { SampleRate: 2 }\n  staging:\n    DeterministicSampler: { SampleRate: 3 }\n",
    ));
    assert!(e.contains("__default__") && e.contains("prod, staging"), "{e}");
    let e = err(PolicyDocument::from_refinery_rules_yaml_env(
        "RulesVersion: 2\nSamplers:\n  prod:\n    DeterministicSampler: { SampleRate: 2 }\n",
        "dev",
    ));
    assert!(e.contains("dev") && e.contains("prod"), "{e}");
    // Version.
    let e = err(PolicyDocument::from_refinery_rules_yaml("Samplers: {}\n"));
    assert!(e.contains("RulesVersion"), "{e}");
    // Unsupported features.
    let e = err(PolicyDocument::from_refinery_rules_yaml(
        "RulesVersion: 2\nSamplers:\n  __default__:\n    RulesBasedSampler:\n      CheckNestedFields: true\n      Rules: [{ SampleRate: 1 }]\n",
    ));
    assert!(e.contains("CheckNestedFields"), "{e}");
    let e = err(PolicyDocument::from_refinery_rules_yaml(
        "RulesVersion: 2\nSamplers:\n  __default__:\n    RulesBasedSampler:\n      Rules:\n        - Conditions: [{ Field: span.num_links, Operator: '>', Value: 1 }]\n          SampleRate: 1\n",
    ));
    assert!(e.contains("span.num_links") && e.contains("not available"), "{e}");
    // Mixed UseClusterSize.
    let e = err(PolicyDocument::from_refinery_rules_yaml(
        "RulesVersion: 2\nSamplers:\n  __default__:\n    RulesBasedSampler:\n      Rules:\n        - Conditions: [{ Field: a, Operator: exists }]\n          Sampler: { TotalThroughputSampler: { GoalThroughputPerSec: 5, FieldList: [a], UseClusterSize: true } }\n        - Sampler: { TotalThroughputSampler: { GoalThroughputPerSec: 5, FieldList: [a] } }\n",
    ));
    assert!(e.contains("UseClusterSize"), "{e}");
}

#[test]
fn refinery_rule_without_rate_drops() {
    // Refinery keeps nothing for a matching rule with SampleRate 0 and no
    // sampler: imported as a drop rule.
    let doc = PolicyDocument::from_refinery_rules_yaml(
        "RulesVersion: 2\nSamplers:\n  __default__:\n    RulesBasedSampler:\n      Rules:\n        - Name: no rate\n          Conditions: [{ Field: http.route, Operator: exists }]\n",
    )
    .unwrap();
    let mut e = PolicyEngine::compile(&doc).unwrap();
    assert!(!e.decide(&route_trace(1, "/a"), SEED, T0).keep);
}

#[test]
fn native_validation_errors() {
    let bad = [
        ("dynamic: { sample_rate: 0, field_list: [a] }", "policies[0].dynamic.sample_rate"),
        ("dynamic: { sample_rate: 2, field_list: [] }", "policies[0].dynamic.field_list"),
        ("dynamic: { sample_rate: 2, field_list: [a], max_keys: 0 }", "policies[0].dynamic.max_keys"),
        ("dynamic: { sample_rate: 2, field_list: [a], clear_frequency: 30x }", "clear_frequency"),
        ("ema_dynamic: { field_list: [a], weight: 1.5 }", "policies[0].ema_dynamic.weight"),
        ("windowed_throughput: { update_frequency: 10s, lookback_frequency: 1s }", "lookback_frequency"),
        ("total_throughput: { goal_throughput_per_sec: -1, field_list: [a] }", "goal_throughput_per_sec"),
        ("deterministic: { sample_rate: 0 }", "policies[0].deterministic.sample_rate"),
        ("dynamic: { sample_rate: 2, field_list: ['?.WHAT'] }", "policies[0].dynamic.field_list[0]"),
        (
            "rules: { rules: [{ scope: span, conditions: [{ operator: has-root-span, value: true }], drop: true }] }",
            "policies[0].rules.rules[0].conditions[0].operator",
        ),
        ("rules: { rules: [{ drop: true, sample_rate: 2 }] }", "policies[0].rules.rules[0]"),
        ("rules: { rules: [{ conditions: [{ field: a, operator: matches, value: '(' }], drop: true }] }", "conditions[0].value"),
        ("rules: { rules: [{ conditions: [{ field: a, operator: '=', value: x, datatype: int }], drop: true }] }", "conditions[0].value"),
        ("rules: { rules: [{ conditions: [{ field: a, operator: in, value: [1], datatype: bool }], drop: true }] }", "conditions[0].datatype"),
        ("rules: { rules: [{ conditions: [{ operator: exists }], drop: true }] }", "conditions[0]"),
        ("rules: { rules: [{ sampler: { rules: { rules: [{ drop: true }] } } }] }", "sampler.rules"),
        ("rules: { rules: [{ sampler: { dynamic: { sample_rate: 2, field_list: [a] }, deterministic: { sample_rate: 2 } } }] }", "exactly one sampler type"),
    ];
    for (policy, want) in bad {
        let e = err(PolicyDocument::from_yaml(&format!(
            "policies:\n  - name: p\n    {policy}\n"
        )));
        assert!(e.contains(want), "{policy}: {e}");
    }
}

#[test]
fn adjusted_counts_sum_to_traffic() {
    // Horvitz-Thompson: the adjusted counts of kept traces estimate the
    // number of traces seen, per key.
    let mut e = engine(
        "policies:\n  - name: d\n    dynamic: { sample_rate: 20, clear_frequency: 5s, field_list: [http.route], unit: traces }\n",
    );
    let mut est: HashMap<&str, f64> = HashMap::new();
    let mut seen: HashMap<&str, f64> = HashMap::new();
    for i in 0..200_000u64 {
        let route = if i % 4 == 0 { "/b" } else { "/a" };
        let d = e.decide(&route_trace(i, route), SEED, T0 + i * MS / 4);
        *seen.entry(route).or_default() += 1.0;
        if d.keep {
            *est.entry(route).or_default() += d.adjusted_count();
        }
    }
    for (route, n) in seen {
        let rel = (est[route] - n).abs() / n;
        assert!(rel < 0.1, "{route}: estimated {} for {n}", est[route]);
    }
    assert!(adjusted_count(0.25) == 4.0);
}

//! Golden comparisons: the same generated traces go through a policy as users bring it (an
//! OpenTelemetry Collector `tail_sampling` configuration, Refinery rules) and through a
//! hand-written native twin, and every decision (keep, deciding policy, sampling probability,
//! threshold) must be identical, with two fresh engines fed the same seed and `now` sequence.
//!
//! The tests are not vacuous: every policy is also run alone and must both keep (match) and not
//! keep (not match) some generated trace, every upstream policy type and every Refinery operator
//! must appear, and deliberately wrong twins must be told apart.
//!
//! docs/policies.md cites these tests.

use std::collections::{BTreeMap, BTreeSet};

use tailsift_policy::{
    AttrValue, Decision, PolicyDocument, PolicyEngine, PolicyFormat, PolicyKind, SamplerPolicy, Semantics, SpanData,
    SpanEventData, StatusCode, TraceData,
};

const SEC: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
const T0: u64 = 1_700_000_000 * SEC;
const SEED: u64 = 0x5eed;
/// Traces per comparison.
const N: usize = 4000;

// ---------------------------------------------------------------------------
// Trace generator (deterministic xorshift64*, no dependencies)

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }

    /// True `percent` % of the time.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

type Attrs = &'static [(&'static str, AttrValue<'static>)];

const SERVICES: [&str; 5] = ["checkout", "cart", "frontend", "payments", "search"];
const SPAN_NAMES: [&str; 8] = [
    "GET /api/v1/orders",
    "GET /healthz",
    "POST /cart",
    "SELECT orders",
    "publish",
    "GET /search",
    "HTTP GET",
    "render",
];
const ROUTES: [&str; 8] = [
    "/api/v1/orders",
    "/api/v2/orders",
    "/api/v12/orders",
    "/api/v2/orders/{id}",
    "/healthz",
    "/cart",
    "/search",
    "/search/suggest",
];
const METHODS: [&str; 3] = ["GET", "POST", "PUT"];
const STATUS_CODES: [i64; 13] = [200, 200, 200, 200, 201, 204, 404, 429, 499, 500, 502, 503, 599];
const TIERS: [&str; 4] = ["gold", "silver", "bronze", ""];
const SCOPES: [&str; 4] = ["io.opentelemetry.jdbc", "io.opentelemetry.netty", "checkout-lib", ""];
const TRACE_STATES: [&str; 10] = [
    "",
    "",
    "",
    "",
    "vendor=debug",
    "ot=th:8,vendor=normal",
    "vendor=normal,other=debug",
    "congo=t61rcWkgMzE,vendor=debug",
    "malformed member,vendor=debug",
    "vendor=Debug",
];
const EXCEPTIONS: [&str; 4] = [
    "java.net.SocketTimeoutException",
    "java.io.IOException",
    "TimeoutError",
    "ValueError",
];
/// Root durations, with the OTel latency boundaries (whole milliseconds) on both sides.
const DURATIONS_NS: [u64; 17] = [
    0,
    MS / 2,
    3 * MS,
    40 * MS,
    250 * MS,
    500 * MS,
    999 * MS,
    1000 * MS,
    1000 * MS + 500_000,
    1001 * MS,
    1800 * MS,
    2999 * MS,
    3000 * MS,
    3000 * MS + 400_000,
    3001 * MS,
    4500 * MS,
    12_000 * MS,
];
const RESOURCES: [Attrs; 6] = [
    &[
        ("deployment.environment", AttrValue::Str("prod")),
        ("cloud.region", AttrValue::Str("eu-west-1")),
    ],
    &[("deployment.environment", AttrValue::Str("prod"))],
    &[("deployment.environment", AttrValue::Str("dev"))],
    &[
        ("deployment.environment", AttrValue::Str("test")),
        ("cloud.region", AttrValue::Str("us-east-1")),
    ],
    // A non-string value: the collector reads it as "" for string rules.
    &[("deployment.environment", AttrValue::Int(1))],
    &[],
];

fn span_attributes(rng: &mut Rng, root: bool) -> Vec<(&'static str, AttrValue<'static>)> {
    let mut a = Vec::new();
    if root || rng.chance(30) {
        a.push(("http.route", AttrValue::Str(rng.pick(&ROUTES))));
    }
    if (root && rng.chance(75)) || rng.chance(20) {
        a.push(("http.method", AttrValue::Str(rng.pick(&METHODS))));
    }
    if root || rng.chance(15) {
        let code = rng.pick(&STATUS_CODES);
        a.push((
            "http.status_code",
            match rng.below(100) {
                // Mostly ints; the odd double or string shows typed corner cases.
                0..=4 => AttrValue::Double(code as f64),
                5..=7 => AttrValue::Str(["500", "200", "oops"][(code % 3) as usize]),
                _ => AttrValue::Int(code),
            },
        ));
    }
    match rng.below(100) {
        0..=5 => a.push(("app.debug", AttrValue::Bool(true))),
        6..=35 => a.push(("app.debug", AttrValue::Bool(false))),
        36..=37 => a.push(("app.debug", AttrValue::Str("true"))),
        _ => {}
    }
    match rng.below(100) {
        0..=19 => a.push(("retry.count", AttrValue::Int(rng.below(5) as i64))),
        20..=21 => a.push(("retry.count", AttrValue::Str("many"))),
        22..=23 => a.push(("retry.count", AttrValue::Double(2.5))),
        _ => {}
    }
    if rng.chance(40) {
        a.push(("user.tier", AttrValue::Str(rng.pick(&TIERS))));
    }
    if rng.chance(3) {
        a.push(("payload", AttrValue::Other));
    }
    a
}

fn span_events(rng: &mut Rng, error: bool, at: u64) -> Vec<SpanEventData<'static>> {
    let mut events = Vec::new();
    if error && rng.chance(60) {
        let mut attributes = vec![("exception.type", AttrValue::Str(rng.pick(&EXCEPTIONS)))];
        if rng.chance(50) {
            attributes.push(("exception.escaped", AttrValue::Bool(rng.chance(50))));
        }
        events.push(SpanEventData {
            name: "exception",
            time_unix_nano: at,
            attributes,
            dropped_attributes_count: 0,
        });
    }
    if rng.chance(12) {
        events.push(SpanEventData {
            name: "retry",
            time_unix_nano: at + MS,
            attributes: vec![("attempt", AttrValue::Int(1 + rng.below(4) as i64))],
            dropped_attributes_count: u32::from(rng.chance(10)),
        });
    }
    if rng.chance(5) {
        events.push(SpanEventData {
            name: "log",
            time_unix_nano: at,
            ..Default::default()
        });
    }
    events
}

/// One varied trace: 1 to 60 spans (5% without a root), several services and resources,
/// attributes of every kind, events, scopes, tracestate, W3C flags and an encoded size.
fn generated_trace(rng: &mut Rng) -> TraceData<'static> {
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&rng.next().to_le_bytes());
    trace_id[8..].copy_from_slice(&rng.next().to_le_bytes());
    let spans = match rng.below(100) {
        0..=29 => 1,
        30..=74 => 2 + rng.below(3),
        75..=94 => 5 + rng.below(8),
        _ => 40 + rng.below(21),
    };
    let orphan = rng.chance(5);
    let duration = rng.pick(&DURATIONS_NS);
    let start = T0 + rng.below(1000) * MS;
    let service = rng.pick(&SERVICES);
    let resource = rng.pick(&RESOURCES);
    let child_resource = if rng.chance(20) { rng.pick(&RESOURCES) } else { resource };
    let trace_state = rng.pick(&TRACE_STATES);
    let flagged = if rng.chance(8) { Some(rng.below(spans)) } else { None };
    let mut out = Vec::with_capacity(spans as usize);
    for k in 0..spans {
        let root = k == 0 && !orphan;
        let parent_span_id = if root {
            // An all-zero parent is a root too.
            if rng.chance(10) {
                Some([0; 8])
            } else {
                None
            }
        } else if orphan {
            Some([0xee; 8])
        } else {
            Some([1; 8])
        };
        let (s, e) = if root {
            (start, start + duration)
        } else {
            let s = start + rng.below(duration / 2 + 1);
            (s, s + rng.below(start + duration - s + 1))
        };
        let status = match rng.below(100) {
            0..=6 => StatusCode::Error,
            7..=16 => StatusCode::Ok,
            _ => StatusCode::Unset,
        };
        let flags = match flagged {
            Some(f) if f == k => rng.pick(&[1u32, 0x101, 0x301]),
            _ => rng.pick(&[0u32, 0, 0, 0x100, 0x300, 0xfe]),
        };
        out.push(SpanData {
            span_id: [(k as u8).wrapping_add(1); 8],
            parent_span_id,
            name: if root && rng.chance(50) {
                "GET /api/v1/orders"
            } else {
                rng.pick(&SPAN_NAMES)
            },
            kind: if root { 2 } else { rng.below(6) as i32 },
            start_unix_nano: s,
            end_unix_nano: e,
            status,
            trace_state: if root || rng.chance(50) { trace_state } else { "" },
            service: if root || rng.chance(60) {
                service
            } else {
                rng.pick(&SERVICES)
            },
            attributes: span_attributes(rng, root),
            resource_attributes: if root { resource } else { child_resource },
            flags,
            status_message: if status == StatusCode::Error { "boom" } else { "" },
            dropped_attributes_count: u32::from(rng.chance(5)),
            dropped_events_count: 0,
            dropped_links_count: 0,
            events: span_events(rng, status == StatusCode::Error, s),
            scope_name: rng.pick(&SCOPES),
            scope_version: "1.2.0",
            scope_attributes: &[],
        });
    }
    let size_bytes = if rng.chance(5) {
        0 // unknown size: bytes_limiting charges nothing
    } else {
        (0..spans).map(|_| 150 + rng.below(1350)).sum()
    };
    TraceData {
        trace_id,
        spans: out,
        size_bytes,
    }
}

/// The traces and the `now` passed with each: about 100 traces per simulated second, with the
/// odd pause (budgets refill, composite seconds roll).
fn workload(n: usize, seed: u64) -> Vec<(TraceData<'static>, u64)> {
    let mut rng = Rng::new(seed);
    let mut now = T0;
    (0..n)
        .map(|_| {
            now += match rng.below(1000) {
                0..=969 => rng.below(6) * MS,
                970..=997 => (50 + rng.below(200)) * MS,
                _ => 1500 * MS,
            };
            (generated_trace(&mut rng), now)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Comparison helpers

fn parse(text: &str, want: PolicyFormat) -> PolicyDocument {
    let (doc, format) = PolicyDocument::parse(text, None).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(format, want, "detected format of\n{text}");
    doc
}

/// What a decision is compared on.
type Key = (bool, Option<String>, f64, Option<u64>);

fn key(d: &Decision) -> Key {
    (d.keep, d.policy.clone(), d.sampling_probability, d.threshold)
}

/// Decides every trace with two fresh engines (same seed, same `now`, same budget share).
fn run_both(
    a: &PolicyDocument,
    b: &PolicyDocument,
    traces: &[(TraceData<'static>, u64)],
    share: f64,
) -> Vec<(Decision, Decision)> {
    let mut ea = PolicyEngine::compile(a).unwrap();
    let mut eb = PolicyEngine::compile(b).unwrap();
    ea.set_budget_share(share);
    eb.set_budget_share(share);
    traces
        .iter()
        .map(|(t, now)| (ea.decide(t, SEED, *now), eb.decide(t, SEED, *now)))
        .collect()
}

fn mismatches(a: &PolicyDocument, b: &PolicyDocument, traces: &[(TraceData<'static>, u64)]) -> usize {
    run_both(a, b, traces, 1.0)
        .iter()
        .filter(|(x, y)| key(x) != key(y))
        .count()
}

/// Asserts identical decisions; returns the decisions by deciding policy: (kept, not kept).
fn assert_same(
    what: &str,
    a: &PolicyDocument,
    b: &PolicyDocument,
    traces: &[(TraceData<'static>, u64)],
    share: f64,
) -> BTreeMap<Option<String>, (usize, usize)> {
    let mut by_policy: BTreeMap<Option<String>, (usize, usize)> = BTreeMap::new();
    for (i, (x, y)) in run_both(a, b, traces, share).into_iter().enumerate() {
        assert_eq!(
            key(&x),
            key(&y),
            "{what}: trace {i} decided differently (left: imported, right: native twin)\n{:?}",
            traces[i].0
        );
        assert_eq!(x, y, "{what}: trace {i}");
        let e = by_policy.entry(x.policy.clone()).or_default();
        if x.keep {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    by_policy
}

/// The document with only its top-level policy `i` (same semantics and options).
fn only(doc: &PolicyDocument, i: usize) -> PolicyDocument {
    let mut d = doc.clone();
    d.policies = vec![doc.policies[i].clone()];
    d
}

/// Every top-level policy alone: the twin decides alike, and the policy both matches and does
/// not match some trace (a drop policy: drops by name / does not; others: keeps / does not).
/// `always_sample` can only keep and is checked to keep everything.
fn assert_each_policy_alone(
    what: &str,
    imported: &PolicyDocument,
    twin: &PolicyDocument,
    traces: &[(TraceData<'static>, u64)],
) {
    assert_eq!(imported.policies.len(), twin.policies.len(), "{what}: policy count");
    for i in 0..imported.policies.len() {
        let name = imported.policies[i].name.clone();
        assert_eq!(name, twin.policies[i].name, "{what}: policies[{i}] name");
        let (a, b) = (only(imported, i), only(twin, i));
        let label = format!("{what} / {name} alone");
        let by_policy = assert_same(&label, &a, &b, traces, 1.0);
        let is_drop = matches!(imported.policies[i].kind, PolicyKind::Drop(_));
        let (mut hit, mut miss) = (0, 0);
        for (policy, (kept, not_kept)) in &by_policy {
            if is_drop {
                if policy.as_deref() == Some(name.as_str()) {
                    hit += not_kept;
                } else {
                    miss += kept + not_kept;
                }
            } else {
                hit += kept;
                miss += not_kept;
            }
        }
        if matches!(imported.policies[i].kind, PolicyKind::Always) {
            assert_eq!((hit, miss), (traces.len(), 0), "{label}: keeps everything");
        } else {
            assert!(
                hit > 0 && miss > 0,
                "{label}: matched {hit}, not matched {miss}: not a useful test"
            );
        }
    }
}

/// Native type names of every policy in the document, nested ones included.
fn kinds(doc: &PolicyDocument) -> BTreeSet<&'static str> {
    fn walk(k: &PolicyKind, out: &mut BTreeSet<&'static str>) {
        out.insert(k.type_name());
        match k {
            PolicyKind::And(a) => a.policies.iter().for_each(|p| walk(&p.kind, out)),
            PolicyKind::Drop(d) => d.policies.iter().for_each(|p| walk(&p.kind, out)),
            PolicyKind::Composite(c) => c.policies.iter().for_each(|p| walk(&p.kind, out)),
            PolicyKind::Not(n) => walk(&n.policy.kind, out),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    doc.policies.iter().for_each(|p| walk(&p.kind, &mut out));
    out
}

// ---------------------------------------------------------------------------
// OpenTelemetry Collector tail_sampling: three configs that together use every policy type.

/// Stateless selectors. Every policy is evaluated (collector semantics), so the order only
/// chooses the reported reason; `not-dev` vetoes dev/test traces.
const OTEL_SELECTORS: &str = r#"
policies:
  - name: health-checks
    type: drop
    drop:
      drop_sub_policy:
        - name: health-route
          type: string_attribute
          string_attribute: { key: http.route, values: [/healthz] }
  - name: server-errors
    type: numeric_attribute
    numeric_attribute: { key: http.status_code, min_value: 500, max_value: 599 }
  - name: errors
    type: status_code
    status_code: { status_codes: [ERROR] }
  - name: slow
    type: latency
    latency: { threshold_ms: 1000, upper_threshold_ms: 3000 }
  - name: orders-api
    type: string_attribute
    string_attribute:
      key: http.route
      values: ['^/api/v[0-9]+/orders$']
      enabled_regex_matching: true
      cache_max_size: 100
  - name: not-dev
    type: string_attribute
    string_attribute: { key: deployment.environment, values: [dev, test], invert_match: true }
  - name: debug
    type: boolean_attribute
    boolean_attribute: { key: app.debug, value: true }
  - name: big
    type: span_count
    span_count: { min_spans: 10, max_spans: 0 }
  - name: flagged
    type: trace_state
    trace_state: { key: vendor, values: [debug] }
  - name: sampled-upstream
    type: trace_flags
  - name: checkout-slow
    type: and
    and:
      and_sub_policy:
        - name: checkout
          type: string_attribute
          string_attribute: { key: service.name, values: [checkout] }
        - name: over-500ms
          type: latency
          latency: { threshold_ms: 500 }
  - name: no-method
    type: not
    not:
      not_sub_policy:
        name: has-method
        type: string_attribute
        string_attribute: { key: http.method, values: [GET, POST, PUT] }
  - name: baseline
    type: probabilistic
    probabilistic: { hash_salt: golden-salt, sampling_percentage: 20 }
"#;

/// The native twin: native type names and fields, the collector's semantics. `checkout-slow`
/// is written with a `match` filter instead of an `and` over `service.name`.
const NATIVE_SELECTORS: &str = r#"
semantics: otel_tail_sampling
policies:
  - name: health-checks
    drop:
      policies:
        - string_attribute: { key: http.route, values: [/healthz], scope: any }
  - name: server-errors
    numeric_attribute: { key: http.status_code, min: 500, max: 599, scope: any }
  - name: errors
    status_code: { codes: [ERROR] }
  - name: slow
    latency: { threshold_ms: 1000, upper_threshold_ms: 3000 }
  - name: orders-api
    string_attribute: { key: http.route, values: ['^/api/v[0-9]+/orders$'], regex: true, scope: any }
  - name: not-dev
    string_attribute: { key: deployment.environment, values: [dev, test], invert: true, scope: any }
  - name: debug
    boolean_attribute: { key: app.debug, value: true, scope: any }
  - name: big
    span_count: { min: 10 }
  - name: flagged
    trace_state: { key: vendor, values: [debug] }
  - name: sampled-upstream
    trace_flags: {}
  - name: checkout-slow
    match: { service: checkout }
    latency: { threshold_ms: 500 }
  - name: no-method
    not:
      policy:
        string_attribute: { key: http.method, values: [GET, POST, PUT], scope: any }
  - name: baseline
    otel_probabilistic: { hash_salt: golden-salt, sampling_percentage: 20 }
"#;

/// OTTL conditions and budgets. Under collector semantics every rate limiter that samples
/// consumes, whichever policy is reported.
const OTEL_BUDGETS: &str = r#"
policies:
  - name: ottl
    type: ottl_condition
    ottl_condition:
      span:
        - 'attributes["http.route"] == "/cart" and status.code == STATUS_CODE_ERROR'
        - 'Double(attributes["retry.count"]) > 3'
        - 'IsRootSpan() and kind == SPAN_KIND_SERVER and end_time - start_time > Duration("4s")'
        - 'instrumentation_scope.name == "io.opentelemetry.jdbc" and resource.attributes["deployment.environment"] == "test"'
      spanevent:
        - 'name == "exception" and IsMatch(attributes["exception.type"], "Timeout")'
        - 'name == "retry" and attributes["attempt"] >= 4 and span.name == "publish"'
  - name: errors-budget
    type: and
    and:
      and_sub_policy:
        - name: errors
          type: status_code
          status_code: { status_codes: [ERROR] }
        - name: error-spans
          type: rate_limiting
          rate_limiting: { spans_per_second: 100 }
  - name: spans-budget
    type: rate_limiting
    rate_limiting: { spans_per_second: 300 }
  - name: bytes-budget
    type: bytes_limiting
    bytes_limiting: { bytes_per_second: 60000, burst_capacity: 150000 }
  - name: shared-budget
    type: composite
    composite:
      max_total_spans_per_second: 400
      policy_order: [slow, tiered, rest]
      composite_sub_policy:
        - name: slow
          type: latency
          latency: { threshold_ms: 2000 }
        - name: tiered
          type: string_attribute
          string_attribute: { key: user.tier, values: [gold, silver] }
        - name: rest
          type: always_sample
      rate_allocation:
        - { policy: slow, percent: 40 }
        - { policy: tiered, percent: 0 }
  - name: production
    type: string_attribute
    string_attribute: { key: deployment.environment, values: [prod], invert_match: true }
"#;

const NATIVE_BUDGETS: &str = r#"
semantics: otel_tail_sampling
policies:
  - name: ottl
    ottl_condition:
      span:
        - 'attributes["http.route"] == "/cart" and status.code == STATUS_CODE_ERROR'
        - 'Double(attributes["retry.count"]) > 3'
        - 'IsRootSpan() and kind == SPAN_KIND_SERVER and end_time - start_time > Duration("4s")'
        - 'instrumentation_scope.name == "io.opentelemetry.jdbc" and resource.attributes["deployment.environment"] == "test"'
      spanevent:
        - 'name == "exception" and IsMatch(attributes["exception.type"], "Timeout")'
        - 'name == "retry" and attributes["attempt"] >= 4 and span.name == "publish"'
  - name: errors-budget
    and:
      policies:
        - status_code: { codes: [ERROR] }
        - rate_limiting: { spans_per_second: 100, burst_seconds: 2 }
  - name: spans-budget
    rate_limiting: { spans_per_second: 300, burst_seconds: 2 }
  - name: bytes-budget
    bytes_limiting: { bytes_per_second: 60000, burst_capacity: 150000 }
  - name: shared-budget
    composite:
      max_total_spans_per_second: 400
      policies:
        - name: slow
          latency: { threshold_ms: 2000 }
        - name: tiered
          string_attribute: { key: user.tier, values: [gold, silver], scope: any }
        - name: rest
          always: {}
      rate_allocation:
        - { policy: slow, percent: 40 }
        - { policy: tiered, percent: 0 }
  - name: production
    string_attribute: { key: deployment.environment, values: [prod], invert: true, scope: any }
"#;

/// `sample_on_first_match`: evaluation stops at the first policy that samples, so the order
/// matters; `always_sample` comes last.
const OTEL_FIRST_MATCH_POLICIES: &str = r#"
- name: health-checks
  type: drop
  drop:
    drop_sub_policy:
      - name: health
        type: string_attribute
        string_attribute: { key: http.route, values: [/healthz, /search/suggest] }
      - name: quick
        type: latency
        latency: { threshold_ms: 0, upper_threshold_ms: 1000 }
- name: errors
  type: status_code
  status_code: { status_codes: [ERROR] }
- name: timeouts
  type: ottl_condition
  ottl_condition:
    error_mode: ignore
    span: ['Double(attributes["retry.count"]) >= 4']
    spanevent: ['IsMatch(attributes["exception.type"], "Timeout")']
- name: gold
  type: string_attribute
  string_attribute: { key: user.tier, values: [gold] }
- name: slow
  type: latency
  latency: { threshold_ms: 2000 }
- name: limited
  type: rate_limiting
  rate_limiting: { spans_per_second: 50 }
- name: everything-else
  type: always_sample
"#;

/// The same, as a native document keeping the collector's semantics.
const NATIVE_FIRST_MATCH_OTEL_SEMANTICS: &str = r#"
semantics: otel_tail_sampling
sample_on_first_match: true
policies:
  - name: health-checks
    drop:
      policies:
        - string_attribute: { key: http.route, values: [/healthz, /search/suggest], scope: any }
        - latency: { threshold_ms: 0, upper_threshold_ms: 1000 }
  - name: errors
    status_code: { codes: [ERROR] }
  - name: timeouts
    ottl_condition:
      error_mode: ignore
      span: ['Double(attributes["retry.count"]) >= 4']
      spanevent: ['IsMatch(attributes["exception.type"], "Timeout")']
  - name: gold
    string_attribute: { key: user.tier, values: [gold], scope: any }
  - name: slow
    latency: { threshold_ms: 2000 }
  - name: limited
    rate_limiting: { spans_per_second: 50, burst_seconds: 2 }
  - name: everything-else
    always: {}
"#;

/// The same with native semantics (drop policies first, then the first keeping policy): equal
/// here because the config has no inverted rule, no limiter evaluated before a policy that can
/// fail, and no value quirk in play. The collector's `threshold_ms: 0, upper_threshold_ms: 1000`
/// window (`threshold < d <= upper` in whole milliseconds, i.e. `1 ms <= d < 1001 ms`) is
/// written `latency >= 1` and `not: latency >= 1001` (native bounds are inclusive).
const NATIVE_FIRST_MATCH_NATIVE_SEMANTICS: &str = r#"
policies:
  - name: health-checks
    drop:
      policies:
        - string_attribute: { key: http.route, values: [/healthz, /search/suggest], scope: any }
        - latency: { threshold_ms: 1 }
        - not: { policy: { latency: { threshold_ms: 1001 } } }
  - name: errors
    status_code: { codes: [ERROR] }
  - name: timeouts
    ottl_condition:
      error_mode: ignore
      span: ['Double(attributes["retry.count"]) >= 4']
      spanevent: ['IsMatch(attributes["exception.type"], "Timeout")']
  - name: gold
    string_attribute: { key: user.tier, values: [gold], scope: any }
  - name: slow
    latency: { threshold_ms: 2000 }
  - name: limited
    rate_limiting: { spans_per_second: 50, burst_seconds: 2 }
  - name: everything-else
    always: {}
"#;

fn otel_first_match() -> String {
    format!(
        "sample_on_first_match: true\npolicies:{}",
        indent(OTEL_FIRST_MATCH_POLICIES, 2)
    )
}

fn indent(text: &str, by: usize) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{}{l}", " ".repeat(by))
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// The three configs as (name, collector config, native twin).
fn otel_pairs() -> Vec<(&'static str, String, String)> {
    vec![
        ("selectors", OTEL_SELECTORS.to_string(), NATIVE_SELECTORS.to_string()),
        ("budgets", OTEL_BUDGETS.to_string(), NATIVE_BUDGETS.to_string()),
        (
            "first-match",
            otel_first_match(),
            NATIVE_FIRST_MATCH_OTEL_SEMANTICS.to_string(),
        ),
    ]
}

#[test]
fn golden_otel_configs_use_every_upstream_policy_type() {
    let mut types = BTreeSet::new();
    let mut all_text = String::new();
    for (name, otel, native) in otel_pairs() {
        let imported = parse(&otel, PolicyFormat::OtelTailSampling);
        assert_eq!(imported.semantics, Semantics::OtelTailSampling, "{name}");
        let twin = parse(&native, PolicyFormat::Native);
        assert_eq!(twin.semantics, Semantics::OtelTailSampling, "{name}");
        types.extend(kinds(&imported));
        all_text.push_str(&otel);
    }
    // Every upstream type, as the native type it is imported as.
    let upstream = [
        ("always_sample", "always"),
        ("latency", "latency"),
        ("numeric_attribute", "numeric_attribute"),
        ("probabilistic", "otel_probabilistic"),
        ("status_code", "status_code"),
        ("string_attribute", "string_attribute"),
        ("rate_limiting", "rate_limiting"),
        ("span_count", "span_count"),
        ("trace_state", "trace_state"),
        ("boolean_attribute", "boolean_attribute"),
        ("ottl_condition", "ottl_condition"),
        ("bytes_limiting", "bytes_limiting"),
        ("trace_flags", "trace_flags"),
        ("and", "and"),
        ("not", "not"),
        ("drop", "drop"),
        ("composite", "composite"),
    ];
    for (otel_type, native_type) in upstream {
        assert!(
            all_text.contains(&format!("type: {otel_type}\n")),
            "no `type: {otel_type}`"
        );
        assert!(
            types.contains(native_type),
            "{otel_type} not imported as {native_type}: {types:?}"
        );
    }
    // The options that change each type's behaviour are used too.
    for option in [
        "upper_threshold_ms: 3000",
        "hash_salt: golden-salt",
        "enabled_regex_matching: true",
        "invert_match: true",
        "spanevent:",
        "rate_allocation:",
        "burst_capacity:",
        "sample_on_first_match: true",
    ] {
        assert!(all_text.contains(option), "{option}");
    }
}

#[test]
fn golden_otel_configs_equal_their_native_twins() {
    let traces = workload(N, 1);
    for (name, otel, native) in otel_pairs() {
        let imported = parse(&otel, PolicyFormat::OtelTailSampling);
        let twin = parse(&native, PolicyFormat::Native);
        for share in [1.0, 0.5] {
            let by_policy = assert_same(&format!("{name} (share {share})"), &imported, &twin, &traces, share);
            // Both outcomes, and several policies deciding.
            let kept: usize = by_policy.values().map(|v| v.0).sum();
            assert!(
                kept > 0 && kept < traces.len(),
                "{name}: kept {kept} of {}",
                traces.len()
            );
            let deciding = by_policy.keys().filter(|p| p.is_some()).count();
            assert!(
                deciding >= 4,
                "{name}: only {deciding} policies ever decide: {by_policy:?}"
            );
        }
        assert_each_policy_alone(name, &imported, &twin, &traces);
    }
}

#[test]
fn golden_first_match_config_equals_a_native_semantics_twin() {
    let traces = workload(N, 2);
    let imported = parse(&otel_first_match(), PolicyFormat::OtelTailSampling);
    let twin = parse(NATIVE_FIRST_MATCH_NATIVE_SEMANTICS, PolicyFormat::Native);
    assert_eq!(twin.semantics, Semantics::Native);
    let by_policy = assert_same("first-match vs native semantics", &imported, &twin, &traces, 1.0);
    for p in [
        "health-checks",
        "errors",
        "timeouts",
        "gold",
        "slow",
        "limited",
        "everything-else",
    ] {
        assert!(
            by_policy.contains_key(&Some(p.to_string())),
            "{p} never decides: {by_policy:?}"
        );
    }
    assert_each_policy_alone("first-match (native semantics)", &imported, &twin, &traces);
}

#[test]
fn golden_whole_collector_config_equals_its_native_twin() {
    let collector = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: 0.0.0.0:4317 }}
processors:
  batch: {{}}
  tail_sampling:
    decision_wait: 10s
    decision_wait_after_root_received: 2s
    num_traces: 50000
    expected_new_traces_per_sec: 1000
    decision_cache:
      sampled_cache_size: 100000
      non_sampled_cache_size: 50000
    sample_on_first_match: true
    drop_pending_traces_on_shutdown: false
    maximum_trace_size_bytes: 4194304
    block_on_overflow: false
    policies:{}exporters:
  otlp:
    endpoint: backend:4317
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [tail_sampling, batch]
      exporters: [otlp]
"#,
        indent(OTEL_FIRST_MATCH_POLICIES, 6)
    );
    let twin_text = NATIVE_FIRST_MATCH_OTEL_SEMANTICS.replace(
        "sample_on_first_match: true\n",
        "sample_on_first_match: true\ndecision:\n  wait_ms: 10000\n  wait_after_root_ms: 2000\n  max_traces: 50000\n  max_trace_bytes: 4194304\n  oversized: drop\n  cache_traces: 100000\n",
    );
    let imported = parse(&collector, PolicyFormat::OtelTailSampling);
    let twin = parse(&twin_text, PolicyFormat::Native);
    assert!(twin.decision.max_traces.is_some(), "the twin carries the options");
    let (a, b) = (
        PolicyEngine::compile(&imported).unwrap(),
        PolicyEngine::compile(&twin).unwrap(),
    );
    assert_eq!(a.decision_options(), b.decision_options());
    // Same policies as the bare processor config.
    let processor = parse(&otel_first_match(), PolicyFormat::OtelTailSampling);
    assert_eq!(imported.policies, processor.policies);
    let traces = workload(N, 3);
    assert_same("collector config", &imported, &twin, &traces, 1.0);
    assert_each_policy_alone("collector config", &imported, &twin, &traces);
}

#[test]
fn golden_comparison_tells_wrong_twins_apart() {
    let traces = workload(N, 4);
    let imported = parse(OTEL_SELECTORS, PolicyFormat::OtelTailSampling);
    // Native semantics for the selectors: inverted rules, latency bounds and the collector's
    // value quirks no longer apply.
    let mut native_semantics = parse(NATIVE_SELECTORS, PolicyFormat::Native);
    native_semantics.semantics = Semantics::Native;
    assert!(mismatches(&imported, &native_semantics, &traces) > 0);
    // The seeded consistent probabilistic sampler is not the collector's FNV hash.
    let consistent = parse(
        &NATIVE_SELECTORS.replace(
            "otel_probabilistic: { hash_salt: golden-salt, sampling_percentage: 20 }",
            "probabilistic: { percentage: 20 }",
        ),
        PolicyFormat::Native,
    );
    assert!(mismatches(&imported, &consistent, &traces) > 0);
    // Another salt.
    let salted = parse(
        &NATIVE_SELECTORS.replace("golden-salt", "other-salt"),
        PolicyFormat::Native,
    );
    assert!(mismatches(&imported, &salted, &traces) > 0);
    // Native (inclusive) latency bounds under collector semantics differ at the boundaries.
    let inclusive = parse(
        &NATIVE_SELECTORS.replace("semantics: otel_tail_sampling\n", ""),
        PolicyFormat::Native,
    );
    assert!(
        mismatches(&only(&imported, 3), &only(&inclusive, 3), &traces) > 0,
        "slow"
    );
    // The collector's rate limiter has a burst of 2 s; one of 1 s is different.
    let budgets = parse(OTEL_BUDGETS, PolicyFormat::OtelTailSampling);
    let one_second = parse(
        &NATIVE_BUDGETS.replace("spans_per_second: 300, burst_seconds: 2", "spans_per_second: 300"),
        PolicyFormat::Native,
    );
    assert!(mismatches(&budgets, &one_second, &traces) > 0);
    // And a faithful twin has none.
    assert_eq!(
        mismatches(&budgets, &parse(NATIVE_BUDGETS, PolicyFormat::Native), &traces),
        0
    );
}

// ---------------------------------------------------------------------------
// Refinery: every rules operator, datatype and rule option.

const REFINERY_EVERY_OPERATOR: &str = r#"
RulesVersion: 2
Samplers:
  __default__:
    RulesBasedSampler:
      Rules:
        - Name: has-root-span
          Conditions: [{ Operator: has-root-span, Value: false }]
          Drop: true
        - Name: span scope
          Scope: span
          Conditions:
            - { Field: service.name, Operator: '=', Value: search }
            - { Field: status_code, Operator: '=', Value: 1 }
          Drop: true
        - Name: string datatype
          Conditions: [{ Field: http.status_code, Operator: '=', Value: 503, Datatype: string }]
          SampleRate: 15
        - Name: dynamic by route
          Conditions: [{ Field: root.service.name, Operator: '=', Value: frontend }]
          Sampler:
            EMADynamicSampler:
              GoalSampleRate: 5
              AdjustmentInterval: 2s
              FieldList: [http.route, root.http.method]
        - Name: exists
          Conditions: [{ Field: error, Operator: exists }]
          SampleRate: 1
        - Name: gt
          Conditions: [{ Field: http.status_code, Operator: '>', Value: 501 }]
          SampleRate: 1
        - Name: does-not-contain
          Conditions: [{ Field: root.name, Operator: does-not-contain, Value: GET }]
          SampleRate: 8
        - Name: bool datatype
          Conditions: [{ Field: app.debug, Operator: '=', Value: true, Datatype: bool }]
          SampleRate: 14
        - Name: le
          Conditions: [{ Field: '?.NUM_DESCENDANTS', Operator: '<=', Value: 1 }]
          SampleRate: 5
        - Name: ge
          Conditions: [{ Field: duration_ms, Operator: '>=', Value: 3000, Datatype: float }]
          SampleRate: 1
        - Name: matches
          Conditions: [{ Field: root.http.route, Operator: matches, Value: '^/api/v[0-9]+/orders$' }]
          SampleRate: 10
        - Name: fields
          Conditions: [{ Fields: [http.response.status_code, http.status_code], Operator: '>=', Value: 500, Datatype: int }]
          SampleRate: 13
        - Name: ne
          Conditions: [{ Field: deployment.environment, Operator: '!=', Value: prod }]
          SampleRate: 3
        - Name: starts-with
          Conditions: [{ Field: http.route, Operator: starts-with, Value: /api/v2 }]
          SampleRate: 6
        - Name: eq
          Conditions: [{ Field: http.method, Operator: '=', Value: PUT }]
          SampleRate: 2
        - Name: lt
          Conditions: [{ Field: http.status_code, Operator: '<', Value: 201, Datatype: int }]
          SampleRate: 4
        - Name: in
          Conditions: [{ Field: service.name, Operator: in, Value: [cart, payments] }]
          SampleRate: 11
        - Name: not-exists
          Conditions: [{ Field: http.route, Operator: not-exists }]
          SampleRate: 9
        - Name: contains
          Conditions: [{ Field: name, Operator: contains, Value: orders }]
          SampleRate: 7
        - Name: not-in
          Conditions: [{ Field: http.status_code, Operator: not-in, Value: [200, 201, 204], Datatype: int }]
          SampleRate: 12
        - Name: default
          SampleRate: 20
"#;

const NATIVE_EVERY_OPERATOR: &str = r#"
policies:
  - name: refinery/__default__
    rules:
      rules:
        - name: has-root-span
          conditions: [{ operator: has-root-span, value: false }]
          drop: true
        - name: span scope
          scope: span
          conditions:
            - { field: service.name, operator: '=', value: search }
            - { field: status_code, operator: '=', value: 1 }
          drop: true
        - name: string datatype
          conditions: [{ field: http.status_code, operator: '=', value: 503, datatype: string }]
          sample_rate: 15
        - name: dynamic by route
          conditions: [{ field: root.service.name, operator: '=', value: frontend }]
          sampler:
            ema_dynamic: { goal_sample_rate: 5, adjustment_interval: 2s, field_list: [http.route, root.http.method] }
        - name: exists
          conditions: [{ field: error, operator: exists }]
          sample_rate: 1
        - name: gt
          conditions: [{ field: http.status_code, operator: '>', value: 501 }]
          sample_rate: 1
        - name: does-not-contain
          conditions: [{ field: root.name, operator: does-not-contain, value: GET }]
          sample_rate: 8
        - name: bool datatype
          conditions: [{ field: app.debug, operator: '=', value: true, datatype: bool }]
          sample_rate: 14
        - name: le
          conditions: [{ field: '?.NUM_DESCENDANTS', operator: '<=', value: 1 }]
          sample_rate: 5
        - name: ge
          conditions: [{ field: duration_ms, operator: '>=', value: 3000, datatype: float }]
          sample_rate: 1
        - name: matches
          conditions: [{ field: root.http.route, operator: matches, value: '^/api/v[0-9]+/orders$' }]
          sample_rate: 10
        - name: fields
          conditions: [{ fields: [http.response.status_code, http.status_code], operator: '>=', value: 500, datatype: int }]
          sample_rate: 13
        - name: ne
          conditions: [{ field: deployment.environment, operator: '!=', value: prod }]
          sample_rate: 3
        - name: starts-with
          conditions: [{ field: http.route, operator: starts-with, value: /api/v2 }]
          sample_rate: 6
        - name: eq
          conditions: [{ field: http.method, operator: '=', value: PUT }]
          sample_rate: 2
        - name: lt
          conditions: [{ field: http.status_code, operator: '<', value: 201, datatype: int }]
          sample_rate: 4
        - name: in
          conditions: [{ field: service.name, operator: in, value: [cart, payments] }]
          sample_rate: 11
        - name: not-exists
          conditions: [{ field: http.route, operator: not-exists }]
          sample_rate: 9
        - name: contains
          conditions: [{ field: name, operator: contains, value: orders }]
          sample_rate: 7
        - name: not-in
          conditions: [{ field: http.status_code, operator: not-in, value: [200, 201, 204], datatype: int }]
          sample_rate: 12
        - name: default
          sample_rate: 20
"#;

fn rules_of(doc: &PolicyDocument) -> &tailsift_policy::RulesPolicy {
    match &doc.policies[0].kind {
        PolicyKind::Sampler(SamplerPolicy::Rules(r)) => r,
        other => panic!("not a rules policy: {other:?}"),
    }
}

/// The document with only rule `k`, made a drop rule: the trace is dropped iff the rule matches.
fn only_rule(doc: &PolicyDocument, k: usize) -> PolicyDocument {
    let mut d = doc.clone();
    let PolicyKind::Sampler(SamplerPolicy::Rules(r)) = &mut d.policies[0].kind else {
        unreachable!()
    };
    let mut rule = r.rules[k].clone();
    rule.drop = true;
    rule.sample_rate = None;
    rule.sampler = None;
    r.rules = vec![rule];
    d
}

#[test]
fn golden_refinery_every_operator_equals_native() {
    let imported = parse(REFINERY_EVERY_OPERATOR, PolicyFormat::RefineryRules);
    let twin = parse(NATIVE_EVERY_OPERATOR, PolicyFormat::Native);
    let traces = workload(N, 5);
    let by_policy = assert_same("refinery rules", &imported, &twin, &traces, 1.0);
    // A rules policy that does not keep (a drop rule or the draw) leaves the trace undecided.
    let kept = by_policy[&Some("refinery/__default__".to_string())].0;
    let dropped = by_policy[&None].1;
    assert!(kept > 0 && dropped > 0, "kept {kept}, dropped {dropped}");
    // Kept traces carry Refinery's sample rate as the adjusted count, with a threshold.
    let mut e = PolicyEngine::compile(&imported).unwrap();
    let mut rates = BTreeSet::new();
    for (t, now) in &traces {
        let d = e.decide(t, SEED, *now);
        if d.keep {
            assert!(d.threshold.is_some() && d.ot_tracestate().is_some(), "{d:?}");
            rates.insert(d.adjusted_count().round() as u64);
        }
    }
    assert!(rates.len() >= 10, "sample rates seen: {rates:?}");

    // Every operator is used, and every rule alone both matches and misses some trace.
    let rules = rules_of(&imported);
    let ops: BTreeSet<String> = rules
        .rules
        .iter()
        .flat_map(|r| r.conditions.iter())
        .map(|c| serde_json::to_string(&c.operator).unwrap())
        .collect();
    for op in [
        "=",
        "!=",
        ">",
        ">=",
        "<",
        "<=",
        "starts-with",
        "contains",
        "does-not-contain",
        "exists",
        "not-exists",
        "has-root-span",
        "matches",
        "in",
        "not-in",
    ] {
        assert!(ops.contains(&format!("\"{op}\"")), "operator {op} unused: {ops:?}");
    }
    for k in 0..rules.rules.len() {
        let name = rules.rules[k].name.clone();
        let (a, b) = (only_rule(&imported, k), only_rule(&twin, k));
        let mut hit = 0;
        for (x, y) in run_both(&a, &b, &traces, 1.0) {
            assert_eq!(x, y, "rule {name}");
            hit += usize::from(!x.keep);
        }
        if name == "default" {
            assert_eq!(hit, traces.len(), "a rule without conditions always matches");
        } else {
            assert!(
                hit > 0 && hit < traces.len(),
                "rule {name}: matched {hit} of {}",
                traces.len()
            );
        }
    }
}

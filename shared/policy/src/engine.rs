//! Compilation of a [`PolicyDocument`] and per-trace evaluation.

use std::collections::HashSet;

use regex::RegexSet;

use crate::consistent::{self, probability_for_threshold, threshold_for};
use crate::document::{
    AttributeScope, BudgetScope, CompositePolicy, DecisionOptions, MatchFilter, NamedPolicy, OttlConditionPolicy,
    OttlErrorMode, PolicyDocument, PolicyKind, Semantics, StringMatch,
};
use crate::error::{Issue, PolicyError};
use crate::model::{AttrValue, Requirements, SpanData, TraceData, SERVICE_NAME_KEY};
use crate::otel_hash;
use crate::ottl;
use crate::sampler::{self, SamplerInput, SamplerNode};

/// The outcome of [`PolicyEngine::decide`] for one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Keep (forward) the trace?
    pub keep: bool,
    /// The policy that decided: the keeping policy, the matching drop
    /// policy, or (OTel semantics) the policy whose inverted match vetoed
    /// the trace. `None` when no policy kept the trace.
    pub policy: Option<String>,
    /// Probability with which a kept trace was kept: 1.0 for deterministic
    /// keeps (errors, latency, attributes, rate limits), `p` for probabilistic
    /// keeps (the smallest one along an `and`). 0.0 when `keep` is false.
    pub sampling_probability: f64,
    /// The OpenTelemetry rejection threshold (56 bits) when the trace was
    /// kept by consistent probabilistic sampling; `None` otherwise.
    pub threshold: Option<u64>,
    /// The trace's 56-bit randomness `R` when `threshold` is set.
    pub randomness: Option<u64>,
}

impl Decision {
    /// A "not kept" decision.
    pub fn dropped(policy: Option<String>) -> Self {
        Decision {
            keep: false,
            policy,
            sampling_probability: 0.0,
            threshold: None,
            randomness: None,
        }
    }

    /// `1 / sampling_probability` for kept traces, 0.0 otherwise.
    pub fn adjusted_count(&self) -> f64 {
        if self.keep {
            consistent::adjusted_count(self.sampling_probability)
        } else {
            0.0
        }
    }

    /// The `ot` tracestate value (`th:...;rv:...`) to attach to kept spans,
    /// when the trace was kept by consistent probabilistic sampling.
    pub fn ot_tracestate(&self) -> Option<String> {
        match (self.keep, self.threshold, self.randomness) {
            (true, Some(t), Some(r)) => Some(consistent::ot_tracestate(t, r)),
            _ => None,
        }
    }
}

/// The policy name reported by [`stress_decision`].
pub const STRESS_POLICY: &str = "tailsift.stress";

/// Stateless fallback used under stress (e.g. when traces must be decided
/// without buffering them whole): consistent probabilistic sampling at
/// probability `p` with the given seed. Kept decisions carry the threshold
/// and randomness for the `ot` tracestate; the policy is [`STRESS_POLICY`].
pub fn stress_decision(trace_id: [u8; 16], seed: u64, p: f64) -> Decision {
    let threshold = threshold_for(p);
    let r = consistent::randomness(trace_id, seed);
    if r >= threshold {
        Decision {
            keep: true,
            policy: Some(STRESS_POLICY.to_string()),
            sampling_probability: probability_for_threshold(threshold),
            threshold: Some(threshold),
            randomness: Some(r),
        }
    } else {
        Decision::dropped(Some(STRESS_POLICY.to_string()))
    }
}

// ---------------------------------------------------------------------------
// Compiled form

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Sampled,
    NotSampled,
    /// OTel semantics only: an `invert_match` rule found no match.
    InvertSampled,
    /// OTel semantics only: an `invert_match` rule found a match (vetoes).
    InvertNotSampled,
    /// The policy could not be evaluated (an OTTL condition with
    /// `error_mode: propagate`): as upstream, it neither samples nor counts
    /// as "not sampled", and it fails the `and`/`drop`/`composite` around it.
    Error,
}

impl Verdict {
    fn sampled_like(self) -> bool {
        matches!(self, Verdict::Sampled | Verdict::InvertSampled)
    }
}

#[derive(Clone, Copy, Debug)]
struct Outcome {
    verdict: Verdict,
    prob: f64,
    threshold: Option<u64>,
}

impl Outcome {
    const SAMPLED: Outcome = Outcome {
        verdict: Verdict::Sampled,
        prob: 1.0,
        threshold: None,
    };
    const NOT_SAMPLED: Outcome = Outcome {
        verdict: Verdict::NotSampled,
        prob: 1.0,
        threshold: None,
    };

    fn from_bool(b: bool) -> Outcome {
        if b {
            Outcome::SAMPLED
        } else {
            Outcome::NOT_SAMPLED
        }
    }

    fn verdict(verdict: Verdict) -> Outcome {
        Outcome {
            verdict,
            prob: 1.0,
            threshold: None,
        }
    }
}

struct Ctx<'t, 'a> {
    trace: &'t TraceData<'a>,
    randomness: u64,
    now: u64,
    duration: u64,
    span_count: u64,
    /// Number of the `decide` call (samplers count a trace once per call).
    seq: u64,
    size_bytes: u64,
}

/// A set of strings to match: sorted exact values or a regex set.
#[derive(Debug, Clone)]
enum StrSet {
    Exact(Vec<Box<str>>),
    Regex(RegexSet),
}

impl StrSet {
    fn exact<I: IntoIterator<Item = String>>(values: I) -> StrSet {
        let mut v: Vec<Box<str>> = values.into_iter().map(String::into_boxed_str).collect();
        v.sort();
        v.dedup();
        StrSet::Exact(v)
    }

    #[inline]
    fn matches(&self, s: &str) -> bool {
        match self {
            StrSet::Exact(v) => {
                if v.len() <= 8 {
                    v.iter().any(|x| &**x == s)
                } else {
                    v.binary_search_by(|x| (**x).cmp(s)).is_ok()
                }
            }
            StrSet::Regex(r) => r.is_match(s),
        }
    }
}

#[derive(Debug, Clone)]
enum AttrTest {
    Str(StrSet),
    Num { min: f64, max: f64 },
    Bool(bool),
}

#[derive(Debug, Clone)]
struct AttrCond {
    key: Box<str>,
    span: bool,
    resource: bool,
    test: AttrTest,
    invert: bool,
    otel: bool,
}

impl AttrCond {
    #[inline]
    fn test_value(&self, v: AttrValue<'_>, is_resource: bool) -> bool {
        match &self.test {
            AttrTest::Str(set) => {
                if self.otel {
                    // Collector quirks: non-string values read as "", and
                    // empty span values are never matched.
                    let s = match v {
                        AttrValue::Str(s) => s,
                        _ => "",
                    };
                    if !is_resource && s.is_empty() {
                        return false;
                    }
                    set.matches(s)
                } else {
                    matches!(v, AttrValue::Str(s) if set.matches(s))
                }
            }
            AttrTest::Num { min, max } => {
                let x = match v {
                    AttrValue::Int(i) => i as f64,
                    AttrValue::Double(d) if !self.otel => d,
                    _ if self.otel => 0.0, // collector: Int() of a non-int is 0
                    _ => return false,
                };
                x >= *min && x <= *max
            }
            AttrTest::Bool(want) => match v {
                AttrValue::Bool(b) => b == *want,
                _ => self.otel && !*want, // collector: Bool() of a non-bool is false
            },
        }
    }

    fn exists(&self, trace: &TraceData<'_>) -> bool {
        let mut prev: Option<(&[(&str, AttrValue<'_>)], &str)> = None;
        for span in &trace.spans {
            if self.resource {
                let same = matches!(prev, Some((r, s)) if std::ptr::eq(r, span.resource_attributes) && std::ptr::eq(s, span.service));
                if !same {
                    prev = Some((span.resource_attributes, span.service));
                    if let Some(v) = span.resource_attribute(&self.key) {
                        if self.test_value(v, true) {
                            return true;
                        }
                    }
                }
            }
            if self.span {
                if let Some(v) = span.attribute(&self.key) {
                    if self.test_value(v, false) {
                        return true;
                    }
                }
            }
        }
        false
    }

    fn eval(&self, trace: &TraceData<'_>) -> Outcome {
        let found = self.exists(trace);
        let verdict = match (self.otel, self.invert, found) {
            (true, true, true) => Verdict::InvertNotSampled,
            (true, true, false) => Verdict::InvertSampled,
            (_, invert, found) => {
                if found != invert {
                    Verdict::Sampled
                } else {
                    Verdict::NotSampled
                }
            }
        };
        Outcome::verdict(verdict)
    }
}

#[derive(Debug, Clone)]
struct FilterCond {
    service: Option<StrSet>,
    span_name: Option<StrSet>,
    root_only: bool,
}

impl FilterCond {
    fn span_matches(&self, s: &SpanData<'_>) -> bool {
        (!self.root_only || s.is_root())
            && self.service.as_ref().is_none_or(|m| m.matches(s.service))
            && self.span_name.as_ref().is_none_or(|m| m.matches(s.name))
    }
}

#[derive(Debug, Clone)]
struct TraceStateCond {
    key: Box<str>,
    values: StrSet,
}

impl TraceStateCond {
    fn span_matches(&self, s: &SpanData<'_>) -> bool {
        s.trace_state.split(',').any(|member| {
            let member = member.trim_matches(|c| c == ' ' || c == '\t');
            match member.split_once('=') {
                Some((k, v)) => k == &*self.key && self.values.matches(v),
                None => false,
            }
        })
    }
}

/// 1 token = 10^12 pico-tokens; rates are kept in milli-tokens per second so
/// that a refill of `elapsed_ns` adds exactly `elapsed_ns * rate_milli`
/// pico-tokens (integer arithmetic, no drift).
const PICO: u128 = 1_000_000_000_000;

#[derive(Debug, Clone)]
struct Bucket {
    /// The configured budget per second, before the worker's share.
    per_second: f64,
    rate_milli: u128,
    burst_ns: u128,
    capacity: u128,
    tokens: u128,
    last_ns: Option<u64>,
}

impl Bucket {
    fn new(per_second: f64, burst_seconds: f64) -> Bucket {
        let rate_milli = ((per_second * 1000.0).round() as u128).max(1);
        let burst_ns = ((burst_seconds * 1e9).round() as u128).max(1);
        let capacity = burst_ns * rate_milli;
        Bucket {
            per_second,
            rate_milli,
            burst_ns,
            capacity,
            tokens: capacity,
            last_ns: None,
        }
    }

    /// Enforces `share` of the configured rate from now on (tokens beyond
    /// the new capacity are dropped).
    fn set_share(&mut self, share: f64) {
        self.rate_milli = ((self.per_second * share * 1000.0).round() as u128).max(1);
        self.capacity = self.burst_ns * self.rate_milli;
        self.tokens = self.tokens.min(self.capacity);
    }

    /// A bucket holding exactly `capacity` tokens when full (the collector's
    /// `burst_capacity`), refilled at `per_second`.
    fn with_capacity(per_second: f64, capacity: f64) -> Bucket {
        let rate_milli = ((per_second * 1000.0).round() as u128).max(1);
        let capacity = ((capacity * PICO as f64).round() as u128).max(1);
        let burst_ns = capacity.div_ceil(rate_milli).max(1);
        Bucket {
            per_second,
            rate_milli,
            burst_ns,
            capacity,
            tokens: capacity,
            last_ns: None,
        }
    }

    /// Takes `cost` tokens if available (after refilling to `now`); with
    /// `commit == false` only looks.
    fn take(&mut self, now: u64, cost: u128, commit: bool) -> bool {
        self.refill(now);
        let ok = self.tokens >= cost;
        if ok && commit {
            self.tokens -= cost;
        }
        ok
    }

    fn refill(&mut self, now: u64) {
        match self.last_ns {
            None => {
                self.tokens = self.capacity;
                self.last_ns = Some(now);
            }
            Some(last) if now > last => {
                let elapsed = u128::from(now - last).min(self.burst_ns);
                self.tokens = (self.tokens + elapsed * self.rate_milli).min(self.capacity);
                self.last_ns = Some(now);
            }
            Some(_) => {} // clock did not advance (or went back): no refill
        }
    }
}

#[derive(Debug, Clone)]
struct RateLimiter {
    spans: Option<Bucket>,
    traces: Option<Bucket>,
}

impl RateLimiter {
    fn eval(&mut self, cx: &Ctx<'_, '_>, commit: bool) -> Outcome {
        let span_cost = u128::from(cx.span_count) * PICO;
        let mut ok = true;
        if let Some(b) = &mut self.spans {
            b.refill(cx.now);
            ok &= b.tokens >= span_cost;
        }
        if let Some(b) = &mut self.traces {
            b.refill(cx.now);
            ok &= b.tokens >= PICO;
        }
        if ok && commit {
            if let Some(b) = &mut self.spans {
                b.tokens -= span_cost;
            }
            if let Some(b) = &mut self.traces {
                b.tokens -= PICO;
            }
        }
        Outcome::from_bool(ok)
    }
}

#[derive(Debug, Clone)]
struct CompositeSub {
    node: Node,
    /// The configured allocation, before the worker's share.
    configured: f64,
    allocated: f64,
    sampled: u64,
}

#[derive(Debug, Clone)]
struct CompositeNode {
    subs: Vec<CompositeSub>,
    /// The configured total, before the worker's share.
    configured_total: f64,
    max_total: f64,
    otel: bool,
    second: Option<u64>,
    total: u64,
}

impl CompositeNode {
    fn eval(&mut self, cx: &Ctx<'_, '_>, commit: bool) -> Outcome {
        let second = cx.now / 1_000_000_000;
        if self.second != Some(second) {
            self.second = Some(second);
            self.total = 0;
            for s in &mut self.subs {
                s.sampled = 0;
            }
        }
        let n = cx.span_count;
        for sub in &mut self.subs {
            let o = sub.node.eval(cx, commit);
            if o.verdict == Verdict::Error {
                return o;
            }
            if !o.verdict.sampled_like() {
                continue;
            }
            let sub_after = sub.sampled.saturating_add(n);
            let total_after = self.total.saturating_add(n);
            let within_total = if self.otel {
                sub_after as f64
            } else {
                total_after as f64
            } <= self.max_total;
            if sub_after as f64 <= sub.allocated && within_total {
                if commit {
                    sub.sampled = sub_after;
                    self.total = total_after;
                }
                return Outcome {
                    verdict: Verdict::Sampled,
                    prob: o.prob,
                    threshold: o.threshold,
                };
            }
            // The first matching sub-policy decides, even when over budget.
            return Outcome::NOT_SAMPLED;
        }
        Outcome::NOT_SAMPLED
    }
}

#[derive(Debug, Clone)]
enum Node {
    Always,
    StatusCode(u8),
    /// Inclusive bounds on the trace duration in nanoseconds.
    Latency {
        min_ns: u64,
        max_ns: u64,
    },
    SpanCount {
        min: u64,
        max: u64,
    },
    Probabilistic {
        threshold: u64,
        prob: f64,
    },
    OtelProbabilistic {
        salted_state: u64,
        threshold: u64,
        prob: f64,
    },
    RateLimit(Box<RateLimiter>),
    Attr(Box<AttrCond>),
    TraceState(Box<TraceStateCond>),
    Filter(Box<FilterCond>),
    And(Vec<Node>),
    Not(Box<Node>),
    Composite(Box<CompositeNode>),
    Sampler(Box<SamplerNode>),
    Ottl(Box<ottl::ConditionSet>),
    BytesLimit(Box<Bucket>),
    TraceFlags,
}

impl Node {
    /// Scales every budget in this node to `share` of its configured value.
    fn set_share(&mut self, share: f64) {
        match self {
            Node::RateLimit(rl) => {
                for b in [&mut rl.spans, &mut rl.traces].into_iter().flatten() {
                    b.set_share(share);
                }
            }
            Node::Composite(c) => {
                c.max_total = c.configured_total * share;
                for sub in &mut c.subs {
                    sub.allocated = sub.configured * share;
                    sub.node.set_share(share);
                }
            }
            Node::BytesLimit(b) => b.set_share(share),
            Node::And(children) => children.iter_mut().for_each(|c| c.set_share(share)),
            Node::Not(n) => n.set_share(share),
            Node::Sampler(s) => s.set_share(share),
            _ => {}
        }
    }

    /// Whether the node reads only trace-level facts (see [`Requirements::trace_level`]).
    /// Every variant is named: a new one must say what it reads.
    fn trace_level(&self) -> bool {
        match self {
            Node::Always
            | Node::StatusCode(_)
            | Node::Latency { .. }
            | Node::SpanCount { .. }
            | Node::Probabilistic { .. }
            | Node::OtelProbabilistic { .. }
            | Node::RateLimit(_)
            | Node::BytesLimit(_)
            | Node::TraceFlags
            // Attribute rules: does some span (or its resource) carry a matching value.
            | Node::Attr(_) => true,
            Node::And(children) => children.iter().all(Node::trace_level),
            Node::Not(n) => n.trace_level(),
            Node::Composite(c) => c.subs.iter().all(|s| s.node.trace_level()),
            // Span names, root spans, trace state, arbitrary span fields (OTTL), sampler keys.
            Node::Filter(_) | Node::TraceState(_) | Node::Ottl(_) | Node::Sampler(_) => false,
        }
    }

    fn is_stateful(&self) -> bool {
        match self {
            Node::RateLimit(_) | Node::Composite(_) | Node::BytesLimit(_) => true,
            Node::And(v) => v.iter().any(Node::is_stateful),
            Node::Not(n) => n.is_stateful(),
            _ => false,
        }
    }

    /// Evaluates the node. With `commit == false` stateful nodes only look at
    /// their budget; with `commit == true` they also consume it when they
    /// sample. Both passes return the same outcome for the same input.
    fn eval(&mut self, cx: &Ctx<'_, '_>, commit: bool) -> Outcome {
        match self {
            Node::Always => Outcome::SAMPLED,
            Node::StatusCode(mask) => {
                let mask = *mask;
                Outcome::from_bool(cx.trace.spans.iter().any(|s| s.status.bit() & mask != 0))
            }
            Node::Latency { min_ns, max_ns } => Outcome::from_bool(cx.duration >= *min_ns && cx.duration <= *max_ns),
            Node::SpanCount { min, max } => Outcome::from_bool(cx.span_count >= *min && cx.span_count <= *max),
            Node::Probabilistic { threshold, prob } => Outcome {
                verdict: if cx.randomness >= *threshold {
                    Verdict::Sampled
                } else {
                    Verdict::NotSampled
                },
                prob: *prob,
                threshold: Some(*threshold),
            },
            Node::OtelProbabilistic {
                salted_state,
                threshold,
                prob,
            } => {
                let h = otel_hash::fnv1a64_continue(*salted_state, &cx.trace.trace_id);
                Outcome {
                    verdict: if h <= *threshold {
                        Verdict::Sampled
                    } else {
                        Verdict::NotSampled
                    },
                    prob: *prob,
                    threshold: None,
                }
            }
            Node::RateLimit(rl) => rl.eval(cx, commit),
            Node::Attr(a) => a.eval(cx.trace),
            Node::TraceState(t) => Outcome::from_bool(cx.trace.spans.iter().any(|s| t.span_matches(s))),
            Node::Filter(f) => Outcome::from_bool(cx.trace.spans.iter().any(|s| f.span_matches(s))),
            Node::And(children) => {
                let mut out = Outcome::SAMPLED;
                for child in children.iter_mut() {
                    let o = child.eval(cx, commit);
                    if o.verdict == Verdict::Error {
                        return o;
                    }
                    if !o.verdict.sampled_like() {
                        return Outcome::NOT_SAMPLED;
                    }
                    out.prob = out.prob.min(o.prob);
                    out.threshold = match (out.threshold, o.threshold) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    };
                }
                out
            }
            Node::Not(child) => {
                let o = child.eval(cx, commit);
                let verdict = match o.verdict {
                    Verdict::Sampled => Verdict::NotSampled,
                    Verdict::NotSampled => Verdict::Sampled,
                    other => other, // inverted decisions pass through (as in the collector)
                };
                let prob = if o.threshold.is_some() { 1.0 - o.prob } else { 1.0 };
                Outcome {
                    verdict,
                    prob,
                    threshold: None,
                }
            }
            Node::Composite(c) => c.eval(cx, commit),
            Node::Sampler(s) => {
                let o = s.eval(&SamplerInput {
                    trace: cx.trace,
                    randomness: cx.randomness,
                    now: cx.now,
                    seq: cx.seq,
                });
                Outcome {
                    verdict: if o.keep { Verdict::Sampled } else { Verdict::NotSampled },
                    prob: o.prob,
                    threshold: o.threshold,
                }
            }
            Node::Ottl(set) => match set.matches(cx.trace) {
                Ok(b) => Outcome::from_bool(b),
                Err(_) => Outcome::verdict(Verdict::Error),
            },
            Node::BytesLimit(b) => Outcome::from_bool(b.take(cx.now, u128::from(cx.size_bytes) * PICO, commit)),
            Node::TraceFlags => Outcome::from_bool(cx.trace.spans.iter().any(SpanData::is_sampled_flag)),
        }
    }
}

#[derive(Debug, Clone)]
struct CompiledPolicy {
    name: String,
    is_drop: bool,
    stateful: bool,
    node: Node,
}

/// A compiled policy set, ready to decide traces.
///
/// Compile once per document ([`PolicyEngine::compile`]); all regexes are
/// compiled and all names validated up front, so [`PolicyEngine::decide`]
/// does no parsing and allocates only the decided policy's name.
/// Rate limiters and composite budgets live inside the engine (hence
/// `&mut self`); a clone carries an independent copy of that state.
#[derive(Debug, Clone)]
pub struct PolicyEngine {
    version: u64,
    decision: DecisionOptions,
    semantics: Semantics,
    budget_scope: BudgetScope,
    budget_share: f64,
    sample_on_first_match: bool,
    policies: Vec<CompiledPolicy>,
    drop_order: Vec<usize>,
    keep_order: Vec<usize>,
    requirements: Requirements,
    needs_randomness: bool,
    needs_duration: bool,
    decisions: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Top,
    Nested,
}

struct Builder {
    semantics: Semantics,
    issues: Vec<Issue>,
    requirements: Requirements,
    needs_randomness: bool,
    needs_duration: bool,
}

fn valid_percentage(p: f64) -> bool {
    (0.0..=100.0).contains(&p)
}

impl Builder {
    fn otel(&self) -> bool {
        self.semantics == Semantics::OtelTailSampling
    }

    fn issue(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.issues.push(Issue::new(path, message));
    }

    fn require_key(&mut self, key: &str, path: &str, scope: AttributeScope) -> (bool, bool) {
        if key.is_empty() {
            self.issue(format!("{path}.key"), "must not be empty");
        }
        let (span, resource) = match scope {
            AttributeScope::Span => (true, false),
            AttributeScope::Resource => (false, true),
            AttributeScope::Any => (true, true),
        };
        if span {
            self.requirements.span_attributes.insert(key.to_string());
        }
        if resource && key != SERVICE_NAME_KEY {
            self.requirements.resource_attributes.insert(key.to_string());
        }
        (span, resource)
    }

    fn regex_set(&mut self, patterns: &[String], path: &str, index_paths: bool) -> StrSet {
        let mut ok = true;
        for (i, p) in patterns.iter().enumerate() {
            if let Err(e) = regex::Regex::new(p) {
                ok = false;
                let at = if index_paths {
                    format!("{path}[{i}]")
                } else {
                    path.to_string()
                };
                self.issue(at, format!("invalid regex: {e}"));
            }
        }
        if !ok {
            return StrSet::Exact(Vec::new());
        }
        match RegexSet::new(patterns) {
            Ok(set) => StrSet::Regex(set),
            Err(e) => {
                self.issue(path, format!("invalid regex set: {e}"));
                StrSet::Exact(Vec::new())
            }
        }
    }

    fn string_match(&mut self, m: &StringMatch, path: &str) -> StrSet {
        match m {
            StringMatch::Exact(s) => StrSet::exact([s.clone()]),
            StringMatch::OneOf(v) => {
                if v.is_empty() {
                    self.issue(path, "must not be empty");
                }
                StrSet::exact(v.iter().cloned())
            }
            StringMatch::Regex(r) => self.regex_set(std::slice::from_ref(r), &format!("{path}.regex"), false),
        }
    }

    fn filter(&mut self, f: &MatchFilter, path: &str) -> Node {
        if f.service.is_none() && f.span_name.is_none() && !f.root_only {
            self.issue(path, "must set at least one of service, span_name, root_only");
        }
        let service = f
            .service
            .as_ref()
            .map(|m| self.string_match(m, &format!("{path}.service")));
        let span_name = f
            .span_name
            .as_ref()
            .map(|m| self.string_match(m, &format!("{path}.span_name")));
        Node::Filter(Box::new(FilterCond {
            service,
            span_name,
            root_only: f.root_only,
        }))
    }

    fn policy(&mut self, p: &NamedPolicy, path: &str, level: Level) -> Node {
        let kind = self.kind(&p.kind, path, level, p.filter.is_some());
        match &p.filter {
            Some(f) => {
                let filter = self.filter(f, &format!("{path}.match"));
                Node::And(vec![filter, kind])
            }
            None => kind,
        }
    }

    fn subs(&mut self, subs: &[NamedPolicy], path: &str) -> Vec<Node> {
        subs.iter()
            .enumerate()
            .map(|(i, s)| self.policy(s, &format!("{path}[{i}]"), Level::Nested))
            .collect()
    }

    fn kind(&mut self, kind: &PolicyKind, path: &str, level: Level, has_filter: bool) -> Node {
        let otel = self.otel();
        match kind {
            PolicyKind::Always => Node::Always,
            PolicyKind::Drop(d) => {
                let at = format!("{path}.drop");
                if level != Level::Top {
                    self.issue(&at, "drop policies are only allowed at the top level");
                }
                if d.policies.is_empty() && !has_filter {
                    self.issue(&at, "a drop policy needs a `match` filter or at least one sub-policy");
                }
                Node::And(self.subs(&d.policies, &format!("{at}.policies")))
            }
            PolicyKind::StatusCode(s) => {
                if s.codes.is_empty() {
                    self.issue(format!("{path}.status_code.codes"), "must not be empty");
                }
                Node::StatusCode(s.codes.iter().fold(0u8, |m, c| m | c.bit()))
            }
            PolicyKind::Latency(l) => {
                self.needs_duration = true;
                const MS: u64 = 1_000_000;
                let upper = if otel {
                    l.upper_threshold_ms.filter(|u| *u != 0)
                } else {
                    l.upper_threshold_ms
                };
                if let Some(u) = upper {
                    if u < l.threshold_ms {
                        self.issue(
                            format!("{path}.latency.upper_threshold_ms"),
                            format!("must be >= threshold_ms ({})", l.threshold_ms),
                        );
                    }
                }
                let (min_ns, max_ns) = match (otel, upper) {
                    // Collector: whole milliseconds, `>= threshold` without an
                    // upper bound, `threshold < d <= upper` with one.
                    (true, None) => (l.threshold_ms.saturating_mul(MS), u64::MAX),
                    (true, Some(u)) => (
                        l.threshold_ms.saturating_add(1).saturating_mul(MS),
                        u.saturating_add(1).saturating_mul(MS).saturating_sub(1),
                    ),
                    (false, u) => (
                        l.threshold_ms.saturating_mul(MS),
                        u.map_or(u64::MAX, |u| u.saturating_mul(MS)),
                    ),
                };
                Node::Latency { min_ns, max_ns }
            }
            PolicyKind::Probabilistic(p) => {
                if !valid_percentage(p.percentage) {
                    self.issue(
                        format!("{path}.probabilistic.percentage"),
                        format!("must be between 0 and 100, got {}", p.percentage),
                    );
                }
                self.needs_randomness = true;
                let threshold = threshold_for(p.percentage / 100.0);
                Node::Probabilistic {
                    threshold,
                    prob: probability_for_threshold(threshold),
                }
            }
            PolicyKind::OtelProbabilistic(p) => {
                if !valid_percentage(p.sampling_percentage) {
                    self.issue(
                        format!("{path}.otel_probabilistic.sampling_percentage"),
                        format!("must be between 0 and 100, got {}", p.sampling_percentage),
                    );
                }
                let salt = if p.hash_salt.is_empty() {
                    otel_hash::DEFAULT_HASH_SALT
                } else {
                    p.hash_salt.as_str()
                };
                let ratio = p.sampling_percentage / 100.0;
                Node::OtelProbabilistic {
                    salted_state: otel_hash::fnv1a64_continue(otel_hash::FNV_OFFSET_BASIS, salt.as_bytes()),
                    threshold: otel_hash::otel_probabilistic_threshold(ratio),
                    prob: ratio.clamp(0.0, 1.0),
                }
            }
            PolicyKind::RateLimiting(r) => {
                let at = format!("{path}.rate_limiting");
                if r.spans_per_second.is_none() && r.traces_per_second.is_none() {
                    self.issue(&at, "at least one of spans_per_second or traces_per_second must be set");
                }
                let burst = r.burst_seconds.unwrap_or(1.0);
                if !(burst.is_finite() && burst > 0.0 && burst <= 86_400.0) {
                    self.issue(
                        format!("{at}.burst_seconds"),
                        format!("must be > 0 and <= 86400, got {burst}"),
                    );
                }
                let mut bucket = |name: &str, v: Option<f64>| -> Option<Bucket> {
                    let v = v?;
                    if !(v.is_finite() && (0.001..=1e12).contains(&v)) {
                        self.issue(
                            format!("{at}.{name}"),
                            format!("must be between 0.001 and 1e12, got {v}"),
                        );
                        return None;
                    }
                    Some(Bucket::new(v, burst.clamp(1e-9, 86_400.0)))
                };
                let spans = bucket("spans_per_second", r.spans_per_second);
                let traces = bucket("traces_per_second", r.traces_per_second);
                Node::RateLimit(Box::new(RateLimiter { spans, traces }))
            }
            PolicyKind::StringAttribute(s) => {
                let at = format!("{path}.string_attribute");
                let (span, resource) = self.require_key(&s.key, &at, s.scope);
                if s.values.is_empty() {
                    self.issue(format!("{at}.values"), "must not be empty");
                }
                let set = if s.regex {
                    self.regex_set(&s.values, &format!("{at}.values"), true)
                } else if otel {
                    StrSet::exact(s.values.iter().filter(|v| !v.is_empty()).cloned())
                } else {
                    StrSet::exact(s.values.iter().cloned())
                };
                Node::Attr(Box::new(AttrCond {
                    key: s.key.clone().into_boxed_str(),
                    span,
                    resource,
                    test: AttrTest::Str(set),
                    invert: s.invert,
                    otel,
                }))
            }
            PolicyKind::NumericAttribute(n) => {
                let at = format!("{path}.numeric_attribute");
                let (span, resource) = self.require_key(&n.key, &at, n.scope);
                if n.min.is_none() && n.max.is_none() {
                    self.issue(&at, "at least one of min or max must be set");
                }
                for (name, v) in [("min", n.min), ("max", n.max)] {
                    if v.is_some_and(f64::is_nan) {
                        self.issue(format!("{at}.{name}"), "must be a number");
                    }
                }
                if let (Some(lo), Some(hi)) = (n.min, n.max) {
                    if lo > hi {
                        self.issue(format!("{at}.max"), format!("must be >= min ({lo})"));
                    }
                }
                Node::Attr(Box::new(AttrCond {
                    key: n.key.clone().into_boxed_str(),
                    span,
                    resource,
                    test: AttrTest::Num {
                        min: n.min.unwrap_or(f64::NEG_INFINITY),
                        max: n.max.unwrap_or(f64::INFINITY),
                    },
                    invert: n.invert,
                    otel,
                }))
            }
            PolicyKind::BooleanAttribute(b) => {
                let (span, resource) = self.require_key(&b.key, &format!("{path}.boolean_attribute"), b.scope);
                Node::Attr(Box::new(AttrCond {
                    key: b.key.clone().into_boxed_str(),
                    span,
                    resource,
                    test: AttrTest::Bool(b.value),
                    invert: b.invert,
                    otel,
                }))
            }
            PolicyKind::SpanCount(s) => {
                if let Some(max) = s.max {
                    if max < s.min {
                        self.issue(format!("{path}.span_count.max"), format!("must be >= min ({})", s.min));
                    }
                }
                Node::SpanCount {
                    min: s.min,
                    max: s.max.unwrap_or(u64::MAX),
                }
            }
            PolicyKind::TraceState(t) => {
                let at = format!("{path}.trace_state");
                if t.key.is_empty() {
                    self.issue(format!("{at}.key"), "must not be empty");
                }
                if t.values.is_empty() {
                    self.issue(format!("{at}.values"), "must not be empty");
                }
                let key_len = t.key.len();
                let values = if otel {
                    // Collector: empty values and members over 256 bytes never match.
                    StrSet::exact(
                        t.values
                            .iter()
                            .filter(|v| !v.is_empty() && key_len + v.len() < 256)
                            .cloned(),
                    )
                } else {
                    StrSet::exact(t.values.iter().cloned())
                };
                Node::TraceState(Box::new(TraceStateCond {
                    key: t.key.clone().into_boxed_str(),
                    values,
                }))
            }
            PolicyKind::And(a) => {
                let at = format!("{path}.and.policies");
                if a.policies.is_empty() {
                    self.issue(&at, "must not be empty");
                }
                Node::And(self.subs(&a.policies, &at))
            }
            PolicyKind::Not(n) => Node::Not(Box::new(self.policy(
                &n.policy,
                &format!("{path}.not.policy"),
                Level::Nested,
            ))),
            PolicyKind::Composite(c) => self.composite(c, &format!("{path}.composite")),
            PolicyKind::Sampler(s) => {
                self.needs_randomness = true;
                Node::Sampler(Box::new(sampler::compile(
                    s,
                    path,
                    &mut self.issues,
                    &mut self.requirements,
                )))
            }
            PolicyKind::OttlCondition(o) => self.ottl(o, &format!("{path}.ottl_condition")),
            PolicyKind::BytesLimiting(b) => {
                let at = format!("{path}.bytes_limiting");
                let rate = b.bytes_per_second;
                let rate_ok = rate.is_finite() && (1.0..=1e12).contains(&rate);
                if !rate_ok {
                    self.issue(
                        format!("{at}.bytes_per_second"),
                        format!("must be between 1 and 1e12, got {rate}"),
                    );
                }
                let burst = b.burst_capacity.unwrap_or(2.0 * rate);
                if b.burst_capacity.is_some() && !(burst.is_finite() && (1.0..=1e15).contains(&burst)) {
                    self.issue(
                        format!("{at}.burst_capacity"),
                        format!("must be between 1 and 1e15, got {burst}"),
                    );
                }
                let (rate, burst) = if rate_ok {
                    (rate, burst.clamp(1.0, 1e15))
                } else {
                    (1.0, 2.0)
                };
                Node::BytesLimit(Box::new(Bucket::with_capacity(rate, burst)))
            }
            PolicyKind::TraceFlags => Node::TraceFlags,
        }
    }

    fn ottl(&mut self, o: &OttlConditionPolicy, at: &str) -> Node {
        if o.span.is_empty() && o.spanevent.is_empty() {
            self.issue(at, "expected at least one OTTL condition in `span` or `spanevent`");
        }
        let compile_all = |b: &mut Self, list: &[String], key: &str, context: ottl::Context| {
            let mut out = Vec::with_capacity(list.len());
            for (i, text) in list.iter().enumerate() {
                match ottl::compile(text, context, &mut b.requirements) {
                    Ok(c) => out.push(c),
                    Err(e) => b.issue(
                        format!("{at}.{key}[{i}]"),
                        format!("column {}: {}", e.column, e.message),
                    ),
                }
            }
            out
        };
        let span = compile_all(self, &o.span, "span", ottl::Context::Span);
        let span_event = compile_all(self, &o.spanevent, "spanevent", ottl::Context::SpanEvent);
        if !o.spanevent.is_empty() {
            self.requirements.span_events = true;
        }
        Node::Ottl(Box::new(ottl::ConditionSet {
            span,
            span_event,
            error_mode: match o.error_mode {
                OttlErrorMode::Propagate => ottl::ErrorMode::Propagate,
                OttlErrorMode::Ignore => ottl::ErrorMode::Ignore,
                OttlErrorMode::Silent => ottl::ErrorMode::Silent,
            },
        }))
    }

    fn composite(&mut self, c: &CompositePolicy, at: &str) -> Node {
        let otel = self.otel();
        let max = c.max_total_spans_per_second;
        if !(max.is_finite() && max > 0.0) {
            self.issue(
                format!("{at}.max_total_spans_per_second"),
                format!("must be > 0, got {max}"),
            );
        }
        if c.policies.is_empty() {
            self.issue(format!("{at}.policies"), "must not be empty");
        }
        let mut names: HashSet<&str> = HashSet::new();
        for (i, p) in c.policies.iter().enumerate() {
            if p.name.is_empty() {
                self.issue(format!("{at}.policies[{i}].name"), "must not be empty");
            } else if !names.insert(p.name.as_str()) {
                self.issue(
                    format!("{at}.policies[{i}].name"),
                    format!("duplicate name \"{}\"", p.name),
                );
            }
        }
        let mut allocated_pct: Vec<Option<f64>> = vec![None; c.policies.len()];
        let mut sum = 0.0;
        for (k, ra) in c.rate_allocation.iter().enumerate() {
            let ra_at = format!("{at}.rate_allocation[{k}]");
            if !valid_percentage(ra.percent) {
                self.issue(
                    format!("{ra_at}.percent"),
                    format!("must be between 0 and 100, got {}", ra.percent),
                );
            } else {
                sum += ra.percent;
            }
            match c.policies.iter().position(|p| p.name == ra.policy) {
                None => self.issue(
                    format!("{ra_at}.policy"),
                    format!("unknown sub-policy \"{}\"", ra.policy),
                ),
                Some(j) if allocated_pct[j].is_some() => self.issue(
                    format!("{ra_at}.policy"),
                    format!("duplicate allocation for \"{}\"", ra.policy),
                ),
                Some(j) => allocated_pct[j] = Some(ra.percent),
            }
        }
        if sum > 100.0 + 1e-9 {
            self.issue(
                format!("{at}.rate_allocation"),
                format!("percentages sum to {sum}, must be <= 100"),
            );
        }
        let n = c.policies.len().max(1) as f64;
        let unallocated = allocated_pct.iter().filter(|a| a.is_none()).count();
        let share_rest = if unallocated > 0 {
            (100.0 - sum).max(0.0) / unallocated as f64
        } else {
            0.0
        };
        let subs = c
            .policies
            .iter()
            .enumerate()
            .map(|(j, p)| {
                let node = self.policy(p, &format!("{at}.policies[{j}]"), Level::Nested);
                let allocated = if otel {
                    // Collector: percent > 0 gets percent of the total, an
                    // entry with percent <= 0 an equal share, no entry nothing;
                    // budgets are truncated to whole spans.
                    match allocated_pct[j] {
                        Some(pct) if pct > 0.0 => (pct / 100.0 * max).trunc(),
                        Some(_) => (max / n).trunc(),
                        None => 0.0,
                    }
                } else {
                    allocated_pct[j].unwrap_or(share_rest) / 100.0 * max
                };
                CompositeSub {
                    node,
                    configured: allocated,
                    allocated,
                    sampled: 0,
                }
            })
            .collect();
        let max_total = if otel { max.trunc() } else { max };
        Node::Composite(Box::new(CompositeNode {
            subs,
            configured_total: max_total,
            max_total,
            otel,
            second: None,
            total: 0,
        }))
    }
}

impl PolicyEngine {
    /// Validates and compiles a document. Every problem found is reported
    /// (with its path) in [`PolicyError::Invalid`].
    pub fn compile(doc: &PolicyDocument) -> Result<Self, PolicyError> {
        let mut b = Builder {
            semantics: doc.semantics,
            issues: Vec::new(),
            requirements: Requirements::default(),
            needs_randomness: false,
            needs_duration: false,
        };
        if doc.sample_on_first_match && doc.semantics == Semantics::Native {
            b.issue(
                "sample_on_first_match",
                "only supported with `semantics: otel_tail_sampling` (native semantics are always first-match)",
            );
        }
        if doc.policies.is_empty() {
            b.issue("policies", "must contain at least one policy");
        }
        const DAY_MS: u64 = 24 * 3600 * 1000;
        let d = &doc.decision;
        for (key, value, max) in [
            ("decision.wait_ms", d.wait_ms, DAY_MS),
            ("decision.wait_after_root_ms", d.wait_after_root_ms, DAY_MS),
            ("decision.max_traces", d.max_traces, 1 << 32),
            ("decision.max_trace_bytes", d.max_trace_bytes, 1 << 40),
            ("decision.cache_traces", d.cache_traces, 1 << 32),
        ] {
            match value {
                Some(0) if key != "decision.wait_after_root_ms" => b.issue(key, "must be greater than 0"),
                Some(v) if v > max => b.issue(key, format!("must be at most {max}")),
                _ => {}
            }
        }
        let mut seen: HashSet<&str> = HashSet::new();
        let mut policies = Vec::with_capacity(doc.policies.len());
        for (i, p) in doc.policies.iter().enumerate() {
            let path = format!("policies[{i}]");
            if p.name.is_empty() {
                b.issue(format!("{path}.name"), "must not be empty");
            } else if !seen.insert(p.name.as_str()) {
                b.issue(format!("{path}.name"), format!("duplicate name \"{}\"", p.name));
            }
            let node = b.policy(p, &path, Level::Top);
            policies.push(CompiledPolicy {
                name: p.name.clone(),
                is_drop: matches!(p.kind, PolicyKind::Drop(_)),
                stateful: node.is_stateful(),
                node,
            });
        }
        if !b.issues.is_empty() {
            return Err(PolicyError::Invalid(b.issues));
        }
        b.requirements.trace_level = policies.iter().all(|p| p.node.trace_level());
        let drop_order = (0..policies.len()).filter(|&i| policies[i].is_drop).collect();
        let keep_order = (0..policies.len()).filter(|&i| !policies[i].is_drop).collect();
        Ok(PolicyEngine {
            version: doc.version,
            decision: doc.decision,
            semantics: doc.semantics,
            budget_scope: doc.budget_scope,
            budget_share: 1.0,
            sample_on_first_match: doc.sample_on_first_match,
            policies,
            drop_order,
            keep_order,
            requirements: b.requirements,
            needs_randomness: b.needs_randomness,
            needs_duration: b.needs_duration,
            decisions: 0,
        })
    }

    /// Same as the free function [`stress_decision`]: the stateless
    /// consistent-probability fallback used under stress.
    pub fn stress_decision(trace_id: [u8; 16], seed: u64, p: f64) -> Decision {
        stress_decision(trace_id, seed, p)
    }

    /// The decision timing and buffering options the document carries (see
    /// [`DecisionOptions`]); unset values keep the worker's configuration.
    pub fn decision_options(&self) -> DecisionOptions {
        self.decision
    }

    /// The attribute keys the sampler must extract for this policy set.
    pub fn requirements(&self) -> &Requirements {
        &self.requirements
    }

    /// The document's `version`.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Sets the fraction of the cluster's traffic this worker decides
    /// (`partitions owned / partitions`, clamped to 0..=1). With
    /// `budget_scope: cluster` every rate limit and composite budget is
    /// scaled to that share, so all workers together keep the configured
    /// rate; with `budget_scope: worker` it is ignored.
    pub fn set_budget_share(&mut self, share: f64) {
        let share = if share.is_finite() { share.clamp(0.0, 1.0) } else { 1.0 };
        let share = match self.budget_scope {
            BudgetScope::Cluster => share,
            BudgetScope::Worker => 1.0,
        };
        if share == self.budget_share {
            return;
        }
        self.budget_share = share;
        for p in &mut self.policies {
            p.node.set_share(share);
        }
    }

    /// The budget share in force (1.0 unless set).
    pub fn budget_share(&self) -> f64 {
        self.budget_share
    }

    /// The document's semantics.
    pub fn semantics(&self) -> Semantics {
        self.semantics
    }

    /// Top-level policy names, in document order.
    pub fn policy_names(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|p| p.name.as_str())
    }

    /// Decides one whole trace.
    ///
    /// `seed` keys the consistent probabilistic sampler (the same seed on
    /// every worker gives the same decisions); `now_unix_nano` drives rate
    /// limiters and composite budgets (no clock is read).
    pub fn decide(&mut self, trace: &TraceData<'_>, seed: u64, now_unix_nano: u64) -> Decision {
        self.decisions = self.decisions.wrapping_add(1);
        let cx = Ctx {
            trace,
            randomness: if self.needs_randomness {
                consistent::randomness(trace.trace_id, seed)
            } else {
                0
            },
            now: now_unix_nano,
            duration: if self.needs_duration { trace.duration_nanos() } else { 0 },
            span_count: trace.span_count(),
            seq: self.decisions,
            size_bytes: trace.size_bytes,
        };
        match self.semantics {
            Semantics::Native => self.decide_native(&cx),
            Semantics::OtelTailSampling => self.decide_otel(&cx),
        }
    }

    fn kept(&self, i: usize, o: Outcome, cx: &Ctx<'_, '_>) -> Decision {
        Decision {
            keep: true,
            policy: Some(self.policies[i].name.clone()),
            sampling_probability: o.prob,
            threshold: o.threshold,
            randomness: o.threshold.map(|_| cx.randomness),
        }
    }

    /// Peek, then commit stateful policies only when they decide.
    fn eval_deciding(&mut self, i: usize, cx: &Ctx<'_, '_>) -> Option<Outcome> {
        let p = &mut self.policies[i];
        let o = p.node.eval(cx, !p.stateful);
        if !o.verdict.sampled_like() {
            return None;
        }
        if p.stateful {
            let committed = p.node.eval(cx, true);
            return committed.verdict.sampled_like().then_some(committed);
        }
        Some(o)
    }

    fn decide_native(&mut self, cx: &Ctx<'_, '_>) -> Decision {
        for k in 0..self.drop_order.len() {
            let i = self.drop_order[k];
            if self.eval_deciding(i, cx).is_some() {
                return Decision::dropped(Some(self.policies[i].name.clone()));
            }
        }
        for k in 0..self.keep_order.len() {
            let i = self.keep_order[k];
            if let Some(o) = self.eval_deciding(i, cx) {
                return self.kept(i, o, cx);
            }
        }
        Decision::dropped(None)
    }

    fn decide_otel(&mut self, cx: &Ctx<'_, '_>) -> Decision {
        let mut sampled: Option<(usize, Outcome)> = None;
        let mut invert_sampled: Option<(usize, Outcome)> = None;
        let mut invert_not_sampled: Option<usize> = None;
        let mut any_not_sampled = false;
        for i in 0..self.policies.len() {
            let p = &mut self.policies[i];
            let o = p.node.eval(cx, true);
            if o.verdict == Verdict::Error {
                // Upstream: an erroring policy records no decision at all.
                continue;
            }
            if p.is_drop {
                if o.verdict.sampled_like() {
                    // Dropped wins and stops the evaluation.
                    return Decision::dropped(Some(p.name.clone()));
                }
                any_not_sampled = true;
                continue;
            }
            match o.verdict {
                Verdict::Sampled => {
                    sampled.get_or_insert((i, o));
                    if self.sample_on_first_match {
                        break;
                    }
                }
                Verdict::NotSampled => any_not_sampled = true,
                Verdict::InvertSampled => {
                    invert_sampled.get_or_insert((i, o));
                }
                Verdict::InvertNotSampled => {
                    invert_not_sampled.get_or_insert(i);
                }
                Verdict::Error => {}
            }
        }
        if let Some(i) = invert_not_sampled {
            return Decision::dropped(Some(self.policies[i].name.clone()));
        }
        if let Some((i, o)) = sampled {
            return self.kept(i, o, cx);
        }
        if let Some((i, o)) = invert_sampled {
            if !any_not_sampled {
                return self.kept(i, o, cx);
            }
        }
        Decision::dropped(None)
    }
}

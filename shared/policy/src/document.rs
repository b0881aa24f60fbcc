//! The native policy document format (YAML or JSON, same schema).

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::error::PolicyError;
use crate::model::StatusCode;
use crate::sampler_policy::{
    DeterministicPolicy, DynamicPolicy, EmaDynamicPolicy, EmaThroughputPolicy, RulesPolicy, SamplerPolicy,
    TotalThroughputPolicy, WindowedThroughputPolicy,
};

/// A complete policy set: what a sampling worker evaluates for every trace.
///
/// ```yaml
/// version: 3                 # optional, default 0
/// semantics: native          # optional: native (default) | otel_tail_sampling
/// budget_scope: cluster      # optional: cluster (default) | worker
/// policies:
///   - name: errors
///     status_code: { codes: [ERROR] }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// Free-form version number of the document (for rollout tracking).
    #[serde(default)]
    pub version: u64,
    /// How policy outcomes are combined into a decision; see the crate docs.
    #[serde(default, skip_serializing_if = "Semantics::is_native")]
    pub semantics: Semantics,
    /// OTel semantics only: stop at the first policy that samples (the
    /// collector's `sample_on_first_match`). Must be false for native
    /// semantics (which are always first-match).
    #[serde(default, skip_serializing_if = "is_false")]
    pub sample_on_first_match: bool,
    /// Whether rate limits and composite budgets are for the whole cluster
    /// (each worker enforces its share) or for each worker.
    #[serde(default, skip_serializing_if = "BudgetScope::is_cluster")]
    pub budget_scope: BudgetScope,
    /// When traces are decided and how many are held: carried with the policy so that every
    /// worker applies them (an imported OTel `tail_sampling` config's `decision_wait`,
    /// `num_traces`, ... land here). Unset values keep the sampler's configuration.
    #[serde(default, skip_serializing_if = "DecisionOptions::is_empty")]
    pub decision: DecisionOptions,
    /// The policies, in evaluation order. Top-level names are unique.
    pub policies: Vec<NamedPolicy>,
}

/// Decision timing and buffering options carried by a policy document (all optional).
///
/// Precedence on a worker: live cluster settings (`PUT /v1/settings`) over these over the
/// worker's own configuration (`decision.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionOptions {
    /// Longest wait after a trace's first span (`decision.decision_wait`), milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
    /// Wait after the root span arrived (`decision.send_delay`), milliseconds. A trace is never
    /// decided later than `wait_ms` after its first span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_after_root_ms: Option<u64>,
    /// Most traces buffered per worker; past it the oldest are decided early (as under memory
    /// pressure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_traces: Option<u64>,
    /// A trace larger than this (encoded span bytes) is decided at once
    /// (`decision.max_trace_bytes`), see `oversized`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_trace_bytes: Option<u64>,
    /// What happens to a trace over `max_trace_bytes`: `decide` (default: the policy decides on
    /// what has arrived; later spans follow) or `drop` (not sampled, as the OTel collector's
    /// `maximum_trace_size_bytes` does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oversized: Option<Oversized>,
    /// Decisions remembered for late spans, kept and dropped each (`decision.cache_max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_traces: Option<u64>,
}

impl DecisionOptions {
    /// True when no option is set.
    pub fn is_empty(&self) -> bool {
        *self == DecisionOptions::default()
    }
}

/// What happens to a trace over [`DecisionOptions::max_trace_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Oversized {
    /// The policy decides on what has arrived; later spans follow that decision.
    Decide,
    /// Not sampled; later spans are dropped too.
    Drop,
}

/// What `rate_limiting` budgets and `composite` `max_total_spans_per_second`
/// limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetScope {
    /// The whole cluster: a worker that owns `k` of the `n` partitions of
    /// the spans topic enforces `k / n` of each budget (traces are spread
    /// over partitions by trace ID), so the cluster keeps the configured
    /// rate however many workers run. See `PolicyEngine::set_budget_share`.
    #[default]
    Cluster,
    /// Each worker enforces the whole budget (the OpenTelemetry Collector's
    /// per-instance behaviour): the cluster keeps up to workers x budget.
    Worker,
}

impl BudgetScope {
    fn is_cluster(&self) -> bool {
        *self == BudgetScope::Cluster
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Decision semantics of a [`PolicyDocument`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Semantics {
    /// Tailsift semantics: drop policies win, then the first keeping policy
    /// in document order decides.
    #[default]
    Native,
    /// Faithful emulation of the OpenTelemetry Collector `tail_sampling`
    /// processor (all policies evaluated, inverted decisions, ...). Set by
    /// [`PolicyDocument::from_otel_tail_sampling_yaml`].
    OtelTailSampling,
}

impl Semantics {
    fn is_native(&self) -> bool {
        *self == Semantics::Native
    }
}

impl PolicyDocument {
    /// A native-semantics document with the given policies and version 0.
    pub fn new(policies: Vec<NamedPolicy>) -> Self {
        PolicyDocument {
            version: 0,
            semantics: Semantics::Native,
            sample_on_first_match: false,
            budget_scope: BudgetScope::Cluster,
            decision: DecisionOptions::default(),
            policies,
        }
    }

    /// Serializes to native YAML (round-trips through [`Self::from_yaml`]).
    pub fn to_yaml(&self) -> Result<String, PolicyError> {
        serde_yaml::to_string(self).map_err(|e| PolicyError::parse(".", e.to_string()))
    }

    /// Serializes to native JSON (round-trips through [`Self::from_json`]).
    pub fn to_json(&self) -> Result<String, PolicyError> {
        serde_json::to_string_pretty(self).map_err(|e| PolicyError::parse(".", e.to_string()))
    }
}

/// A policy with a name and an optional span filter.
///
/// Serialized as a map with `name`, optional `match` and exactly one policy
/// type key:
///
/// ```yaml
/// - name: checkout-half
///   match: { service: checkout }
///   probabilistic: { percentage: 50 }
/// ```
///
/// Top-level policy names must be non-empty and unique; composite
/// sub-policies need unique names too (rate allocations refer to them);
/// other nested names are optional labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawPolicy", into = "RawPolicy")]
pub struct NamedPolicy {
    /// The policy name, reported in [`crate::Decision::policy`].
    pub name: String,
    /// Optional `match` filter: the policy only applies to traces having at
    /// least one span that satisfies it (see [`MatchFilter`]).
    pub filter: Option<MatchFilter>,
    /// What the policy does.
    pub kind: PolicyKind,
}

impl NamedPolicy {
    /// A policy without a filter.
    pub fn new(name: impl Into<String>, kind: PolicyKind) -> Self {
        NamedPolicy {
            name: name.into(),
            filter: None,
            kind,
        }
    }

    /// Adds a `match` filter.
    pub fn with_filter(mut self, filter: MatchFilter) -> Self {
        self.filter = Some(filter);
        self
    }
}

/// The policy types. Each variant is written as its snake_case key
/// (`status_code: {...}`) in the native format.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyKind {
    /// `always: {}` — matches every trace.
    Always,
    /// `drop: { policies: [...] }` — top level only. When the filter and all
    /// sub-policies match, the trace is dropped whatever other policies say.
    Drop(DropPolicy),
    /// `status_code: { codes: [ERROR, ...] }` — some span has one of the codes.
    StatusCode(StatusCodePolicy),
    /// `latency: { threshold_ms, upper_threshold_ms }` — trace duration.
    Latency(LatencyPolicy),
    /// `probabilistic: { percentage }` — consistent, seeded sampling.
    Probabilistic(ProbabilisticPolicy),
    /// `otel_probabilistic: { hash_salt, sampling_percentage }` — the OTel
    /// collector's FNV-based probabilistic policy.
    OtelProbabilistic(OtelProbabilisticPolicy),
    /// `rate_limiting: { spans_per_second, traces_per_second, burst_seconds }`.
    RateLimiting(RateLimitingPolicy),
    /// `string_attribute: { key, values, regex, invert, scope }`.
    StringAttribute(StringAttributePolicy),
    /// `numeric_attribute: { key, min, max, invert, scope }`.
    NumericAttribute(NumericAttributePolicy),
    /// `boolean_attribute: { key, value, invert, scope }`.
    BooleanAttribute(BooleanAttributePolicy),
    /// `span_count: { min, max }`.
    SpanCount(SpanCountPolicy),
    /// `trace_state: { key, values }`.
    TraceState(TraceStatePolicy),
    /// `and: { policies: [...] }` — all sub-policies match.
    And(AndPolicy),
    /// `not: { policy: {...} }` — inverts one sub-policy.
    Not(NotPolicy),
    /// `composite: { max_total_spans_per_second, policies, rate_allocation }`.
    Composite(CompositePolicy),
    /// A Refinery-style sampler, written under its own key:
    /// `deterministic`, `dynamic`, `ema_dynamic`, `ema_throughput`,
    /// `windowed_throughput`, `total_throughput` or `rules`.
    Sampler(SamplerPolicy),
    /// `ottl_condition: { error_mode, span: [..], spanevent: [..] }` — some
    /// span (span event) satisfies one of the OTTL conditions.
    OttlCondition(OttlConditionPolicy),
    /// `bytes_limiting: { bytes_per_second, burst_capacity }` — token bucket
    /// on the traces' encoded size.
    BytesLimiting(BytesLimitingPolicy),
    /// `trace_flags: {}` — some span has the W3C `sampled` trace flag.
    TraceFlags,
}

impl PolicyKind {
    /// The native key of this policy type (`status_code`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            PolicyKind::Always => "always",
            PolicyKind::Drop(_) => "drop",
            PolicyKind::StatusCode(_) => "status_code",
            PolicyKind::Latency(_) => "latency",
            PolicyKind::Probabilistic(_) => "probabilistic",
            PolicyKind::OtelProbabilistic(_) => "otel_probabilistic",
            PolicyKind::RateLimiting(_) => "rate_limiting",
            PolicyKind::StringAttribute(_) => "string_attribute",
            PolicyKind::NumericAttribute(_) => "numeric_attribute",
            PolicyKind::BooleanAttribute(_) => "boolean_attribute",
            PolicyKind::SpanCount(_) => "span_count",
            PolicyKind::TraceState(_) => "trace_state",
            PolicyKind::And(_) => "and",
            PolicyKind::Not(_) => "not",
            PolicyKind::Composite(_) => "composite",
            PolicyKind::Sampler(s) => s.type_name(),
            PolicyKind::OttlCondition(_) => "ottl_condition",
            PolicyKind::BytesLimiting(_) => "bytes_limiting",
            PolicyKind::TraceFlags => "trace_flags",
        }
    }
}

/// `match:` — restricts a policy to traces containing a span that satisfies
/// every given criterion (all on the same span).
///
/// ```yaml
/// match:
///   service: checkout                 # exact
///   span_name: { regex: "^GET /cart" } # or a list of exact names
///   root_only: true                   # only consider root spans
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchFilter {
    /// Matches the span's resource `service.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<StringMatch>,
    /// Matches the span name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_name: Option<StringMatch>,
    /// Only root spans (no parent) are considered.
    #[serde(default, skip_serializing_if = "is_false")]
    pub root_only: bool,
}

/// A string matcher: `"exact"`, `[one, of, these]` or `{regex: "..."}`.
///
/// Regexes use the `regex` crate syntax (RE2-like) and are unanchored, like
/// the OTel collector's: write `^...$` for a full match.
#[derive(Debug, Clone, PartialEq)]
pub enum StringMatch {
    /// Equal to this string.
    Exact(String),
    /// Equal to any of these strings.
    OneOf(Vec<String>),
    /// The regex matches somewhere in the string.
    Regex(String),
}

impl Serialize for StringMatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            StringMatch::Exact(v) => s.serialize_str(v),
            StringMatch::OneOf(v) => v.serialize(s),
            StringMatch::Regex(r) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("regex", r)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for StringMatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringMatch;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, a list of strings, or a map {regex: \"...\"}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StringMatch, E> {
                Ok(StringMatch::Exact(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringMatch, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<String>()? {
                    out.push(v);
                }
                Ok(StringMatch::OneOf(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StringMatch, A::Error> {
                let mut regex: Option<String> = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "regex" => {
                            if regex.is_some() {
                                return Err(de::Error::duplicate_field("regex"));
                            }
                            regex = Some(map.next_value()?);
                        }
                        other => return Err(de::Error::unknown_field(other, &["regex"])),
                    }
                }
                regex
                    .map(StringMatch::Regex)
                    .ok_or_else(|| de::Error::missing_field("regex"))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for StatusCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for StatusCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        StatusCode::parse(&s)
            .ok_or_else(|| de::Error::custom(format!("unknown status code `{s}`, expected ERROR, OK or UNSET")))
    }
}

/// Which attributes an attribute rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributeScope {
    /// Span attributes (default).
    #[default]
    Span,
    /// Resource attributes (`service.name` reads [`crate::SpanData::service`]).
    Resource,
    /// Either: a resource or a span attribute (what the OTel collector does).
    Any,
}

impl AttributeScope {
    fn is_default(&self) -> bool {
        *self == AttributeScope::Span
    }
}

/// Settings of `drop`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropPolicy {
    /// All must match (and the `match` filter, if any) for the trace to be
    /// dropped. May be empty when the policy has a `match` filter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<NamedPolicy>,
}

/// Settings of `status_code`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusCodePolicy {
    /// Matches when some span's status is one of these (non-empty).
    pub codes: Vec<StatusCode>,
}

/// Settings of `latency`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyPolicy {
    /// Minimum trace duration in milliseconds (inclusive).
    pub threshold_ms: u64,
    /// Optional maximum trace duration in milliseconds (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper_threshold_ms: Option<u64>,
}

/// Settings of `probabilistic` (consistent, seeded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbabilisticPolicy {
    /// Percentage of traces to keep, `0..=100`.
    pub percentage: f64,
}

/// Settings of `otel_probabilistic` (OTel collector compatible hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtelProbabilisticPolicy {
    /// Hash salt; empty means the collector's default `default-hash-seed`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash_salt: String,
    /// Percentage of traces to keep, `0..=100`.
    pub sampling_percentage: f64,
}

/// Settings of `rate_limiting` (token buckets, time passed in).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitingPolicy {
    /// Span budget per second (a trace costs its span count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spans_per_second: Option<f64>,
    /// Trace budget per second (a trace costs 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traces_per_second: Option<f64>,
    /// Bucket capacity in seconds of budget (default 1: at most one second
    /// worth of traffic can be let through at once). The buckets start full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_seconds: Option<f64>,
}

/// Settings of `string_attribute`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringAttributePolicy {
    /// Attribute key.
    pub key: String,
    /// Exact values, or regexes when `regex` is true (non-empty).
    pub values: Vec<String>,
    /// Treat `values` as (unanchored) regexes.
    #[serde(default, skip_serializing_if = "is_false")]
    pub regex: bool,
    /// Match traces where NO span (resource) has a matching value.
    #[serde(default, skip_serializing_if = "is_false")]
    pub invert: bool,
    /// Span, resource or any attributes (default span).
    #[serde(default, skip_serializing_if = "AttributeScope::is_default")]
    pub scope: AttributeScope,
}

/// Settings of `numeric_attribute` (int or double values, compared as
/// `f64`, i.e. exactly up to 2^53).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumericAttributePolicy {
    /// Attribute key.
    pub key: String,
    /// Inclusive lower bound (at least one of `min`/`max` is required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Inclusive upper bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Match traces where no value is in range.
    #[serde(default, skip_serializing_if = "is_false")]
    pub invert: bool,
    /// Span, resource or any attributes (default span).
    #[serde(default, skip_serializing_if = "AttributeScope::is_default")]
    pub scope: AttributeScope,
}

/// Settings of `boolean_attribute`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BooleanAttributePolicy {
    /// Attribute key.
    pub key: String,
    /// The value to look for.
    pub value: bool,
    /// Match traces where no span (resource) has the value.
    #[serde(default, skip_serializing_if = "is_false")]
    pub invert: bool,
    /// Span, resource or any attributes (default span).
    #[serde(default, skip_serializing_if = "AttributeScope::is_default")]
    pub scope: AttributeScope,
}

/// Settings of `span_count`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanCountPolicy {
    /// Minimum number of spans (inclusive, default 0).
    #[serde(default)]
    pub min: u64,
    /// Maximum number of spans (inclusive, default unbounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

/// Settings of `trace_state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceStatePolicy {
    /// The tracestate list-member key.
    pub key: String,
    /// Matches when some span's tracestate has `key=<one of values>`.
    pub values: Vec<String>,
}

/// Settings of `and`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AndPolicy {
    /// All must match (non-empty), evaluated in order with short-circuit.
    pub policies: Vec<NamedPolicy>,
}

/// Settings of `not`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotPolicy {
    /// The inverted policy.
    pub policy: Box<NamedPolicy>,
}

/// Settings of `composite`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompositePolicy {
    /// Total span budget per second.
    pub max_total_spans_per_second: f64,
    /// Ordered sub-policies (named, unique). The first one that matches
    /// decides: kept if its budget for the current second allows.
    pub policies: Vec<NamedPolicy>,
    /// Percent of the total budget per sub-policy (sum <= 100). Native
    /// semantics: sub-policies without an entry share the unallocated rest
    /// equally. OTel semantics: they get no budget (as in the collector).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_allocation: Vec<RateAllocation>,
}

/// One `rate_allocation` entry of a composite policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateAllocation {
    /// Sub-policy name.
    pub policy: String,
    /// Percent of `max_total_spans_per_second`.
    pub percent: f64,
}

/// Settings of `ottl_condition` (the collector's keys).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OttlConditionPolicy {
    /// What an evaluation error does (default `propagate`, as upstream).
    #[serde(default, skip_serializing_if = "OttlErrorMode::is_default")]
    pub error_mode: OttlErrorMode,
    /// Conditions evaluated against every span (OTTL span context).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub span: Vec<String>,
    /// Conditions evaluated against every span event (OTTL span event context).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spanevent: Vec<String>,
}

/// `ottl_condition.error_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OttlErrorMode {
    /// An evaluation error makes the policy fail: it neither samples nor
    /// counts as "not sampled" (OTel semantics), it does not match (native).
    #[default]
    Propagate,
    /// A condition that fails to evaluate counts as false (upstream logs it).
    Ignore,
    /// Same as `ignore` (upstream does not log).
    Silent,
}

impl OttlErrorMode {
    fn is_default(&self) -> bool {
        *self == OttlErrorMode::Propagate
    }
}

/// Settings of `bytes_limiting` (token bucket on trace bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BytesLimitingPolicy {
    /// Byte budget per second (a trace costs [`crate::TraceData::size_bytes`]).
    pub bytes_per_second: f64,
    /// Bucket capacity in bytes (default 2 × `bytes_per_second`, as
    /// upstream). The bucket starts full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_capacity: Option<f64>,
}

// ---------------------------------------------------------------------------
// Raw (wire) form of NamedPolicy: one optional field per policy type.

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

fn present_default<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

fn present_required<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    match Option::<T>::deserialize(d)? {
        Some(v) => Ok(Some(v)),
        None => Err(de::Error::custom("expected the policy settings, found null")),
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    filter: Option<MatchFilter>,
    #[serde(
        default,
        deserialize_with = "present_default",
        skip_serializing_if = "Option::is_none"
    )]
    always: Option<Empty>,
    #[serde(
        default,
        deserialize_with = "present_default",
        skip_serializing_if = "Option::is_none"
    )]
    drop: Option<DropPolicy>,
    #[serde(
        default,
        deserialize_with = "present_required",
        skip_serializing_if = "Option::is_none"
    )]
    status_code: Option<StatusCodePolicy>,
    #[serde(
        default,
        deserialize_with = "present_required",
        skip_serializing_if = "Option::is_none"
    )]
    latency: Option<LatencyPolicy>,
    #[serde(
        default,
        deserialize_with = "present_required",
        skip_serializing_if = "Option::is_none"
    )]
    probabilistic: Option<ProbabilisticPolicy>,
    #[serde(
        default,
        deserialize_with = "present_required",
        skip_serializing_if = "Option::is_none"
    )]
    otel_probabilistic: Option<OtelProbabilisticPolicy>,
    #[serde(
        default,
        deserialize_with = "present_required",
        skip_serializing_if = "Option::is_none"
    )]
    rate_limiting: Option<RateLimitingPolicy>,
    #[serde(
        default,
        deserialize_with = "present_required",
        skip_serializing_if = "Option::is_none"
    )]
    string_attribute: Option<StringAttributePolicy>,
    #[serde(
        default,
        deserialize_with = "present_required",
        skip_serializing_if = "Option::is_none"
    )]
    numeric_attribute: Option<NumericAttributePolicy>,
    #[serde(
        default,
        deserialize_with = "present_required",
        skip_serializing_if = "Option::is_none"
    )]
    boolean_attribute: Option<BooleanAttributePolicy>,
    #[serde(
        default,
        deserialize_with = "present_default",
        skip_serializing_if = "Option::is_none"
    )]
    span_count: Option<SpanCountPolicy>,
    #[serde(
        default,
        deserialize_with = "present_required",
        skip_serializing_if = "Option::is_none"
    )]
    trace_state: Option<TraceStatePolicy>,
    #[serde(
        default,
        deserialize_with = "present_required",
        skip_serializing_if = "Option::is_none"
    )]
    and: Option<AndPolicy>,
    #[serde(
        default,
        deserialize_with = "present_required",
        skip_serializing_if = "Option::is_none"
    )]
    not: Option<NotPolicy>,
    #[serde(
        default,
        deserialize_with = "present_required",
        skip_serializing_if = "Option::is_none"
    )]
    composite: Option<CompositePolicy>,
    #[serde(
        default,
        deserialize_with = "present_required",
        skip_serializing_if = "Option::is_none"
    )]
    deterministic: Option<DeterministicPolicy>,
    #[serde(
        default,
        deserialize_with = "present_required",
        skip_serializing_if = "Option::is_none"
    )]
    ottl_condition: Option<OttlConditionPolicy>,
    #[serde(
        default,
        deserialize_with = "present_required",
        skip_serializing_if = "Option::is_none"
    )]
    dynamic: Option<DynamicPolicy>,
    #[serde(
        default,
        deserialize_with = "present_required",
        skip_serializing_if = "Option::is_none"
    )]
    ema_dynamic: Option<EmaDynamicPolicy>,
    #[serde(
        default,
        deserialize_with = "present_required",
        skip_serializing_if = "Option::is_none"
    )]
    ema_throughput: Option<EmaThroughputPolicy>,
    #[serde(
        default,
        deserialize_with = "present_required",
        skip_serializing_if = "Option::is_none"
    )]
    windowed_throughput: Option<WindowedThroughputPolicy>,
    #[serde(
        default,
        deserialize_with = "present_required",
        skip_serializing_if = "Option::is_none"
    )]
    total_throughput: Option<TotalThroughputPolicy>,
    #[serde(
        default,
        deserialize_with = "present_required",
        skip_serializing_if = "Option::is_none"
    )]
    rules: Option<RulesPolicy>,
    #[serde(
        default,
        deserialize_with = "present_required",
        skip_serializing_if = "Option::is_none"
    )]
    bytes_limiting: Option<BytesLimitingPolicy>,
    #[serde(
        default,
        deserialize_with = "present_default",
        skip_serializing_if = "Option::is_none"
    )]
    trace_flags: Option<Empty>,
}

const POLICY_TYPES: &str = "always, drop, status_code, latency, probabilistic, otel_probabilistic, \
rate_limiting, string_attribute, numeric_attribute, boolean_attribute, span_count, trace_state, and, not, composite, \
ottl_condition, bytes_limiting, trace_flags, deterministic, dynamic, ema_dynamic, ema_throughput, windowed_throughput, \
total_throughput, rules";

/// Why a policy entry does not have exactly one type (a serde error message,
/// located by `serde_path_to_error`). `label` is `policy "name": ` or empty.
#[derive(Debug, thiserror::Error)]
enum PolicyTypeError {
    #[error("{label}exactly one policy type must be given, found {found}")]
    Several { label: String, found: String },
    #[error("{label}missing policy type, expected one of: {POLICY_TYPES}")]
    Missing { label: String },
}

impl TryFrom<RawPolicy> for NamedPolicy {
    type Error = PolicyTypeError;

    fn try_from(raw: RawPolicy) -> Result<Self, PolicyTypeError> {
        let mut kinds: Vec<PolicyKind> = Vec::with_capacity(1);
        if raw.always.is_some() {
            kinds.push(PolicyKind::Always);
        }
        if let Some(v) = raw.drop {
            kinds.push(PolicyKind::Drop(v));
        }
        if let Some(v) = raw.status_code {
            kinds.push(PolicyKind::StatusCode(v));
        }
        if let Some(v) = raw.latency {
            kinds.push(PolicyKind::Latency(v));
        }
        if let Some(v) = raw.probabilistic {
            kinds.push(PolicyKind::Probabilistic(v));
        }
        if let Some(v) = raw.otel_probabilistic {
            kinds.push(PolicyKind::OtelProbabilistic(v));
        }
        if let Some(v) = raw.rate_limiting {
            kinds.push(PolicyKind::RateLimiting(v));
        }
        if let Some(v) = raw.string_attribute {
            kinds.push(PolicyKind::StringAttribute(v));
        }
        if let Some(v) = raw.numeric_attribute {
            kinds.push(PolicyKind::NumericAttribute(v));
        }
        if let Some(v) = raw.boolean_attribute {
            kinds.push(PolicyKind::BooleanAttribute(v));
        }
        if let Some(v) = raw.span_count {
            kinds.push(PolicyKind::SpanCount(v));
        }
        if let Some(v) = raw.trace_state {
            kinds.push(PolicyKind::TraceState(v));
        }
        if let Some(v) = raw.and {
            kinds.push(PolicyKind::And(v));
        }
        if let Some(v) = raw.not {
            kinds.push(PolicyKind::Not(v));
        }
        if let Some(v) = raw.composite {
            kinds.push(PolicyKind::Composite(v));
        }
        if let Some(v) = raw.deterministic {
            kinds.push(PolicyKind::Sampler(SamplerPolicy::Deterministic(v)));
        }
        if let Some(v) = raw.dynamic {
            kinds.push(PolicyKind::Sampler(SamplerPolicy::Dynamic(v)));
        }
        if let Some(v) = raw.ema_dynamic {
            kinds.push(PolicyKind::Sampler(SamplerPolicy::EmaDynamic(v)));
        }
        if let Some(v) = raw.ema_throughput {
            kinds.push(PolicyKind::Sampler(SamplerPolicy::EmaThroughput(v)));
        }
        if let Some(v) = raw.windowed_throughput {
            kinds.push(PolicyKind::Sampler(SamplerPolicy::WindowedThroughput(v)));
        }
        if let Some(v) = raw.total_throughput {
            kinds.push(PolicyKind::Sampler(SamplerPolicy::TotalThroughput(v)));
        }
        if let Some(v) = raw.rules {
            kinds.push(PolicyKind::Sampler(SamplerPolicy::Rules(v)));
        }
        if let Some(v) = raw.ottl_condition {
            kinds.push(PolicyKind::OttlCondition(v));
        }
        if let Some(v) = raw.bytes_limiting {
            kinds.push(PolicyKind::BytesLimiting(v));
        }
        if raw.trace_flags.is_some() {
            kinds.push(PolicyKind::TraceFlags);
        }
        let label = if raw.name.is_empty() {
            String::new()
        } else {
            format!("policy \"{}\": ", raw.name)
        };
        if kinds.len() > 1 {
            let names: Vec<&str> = kinds.iter().map(PolicyKind::type_name).collect();
            return Err(PolicyTypeError::Several {
                label,
                found: names.join(", "),
            });
        }
        match kinds.pop() {
            Some(kind) => Ok(NamedPolicy {
                name: raw.name,
                filter: raw.filter,
                kind,
            }),
            None => Err(PolicyTypeError::Missing { label }),
        }
    }
}

impl From<NamedPolicy> for RawPolicy {
    fn from(p: NamedPolicy) -> RawPolicy {
        let mut raw = RawPolicy {
            name: p.name,
            filter: p.filter,
            ..RawPolicy::default()
        };
        match p.kind {
            PolicyKind::Always => raw.always = Some(Empty {}),
            PolicyKind::Drop(v) => raw.drop = Some(v),
            PolicyKind::StatusCode(v) => raw.status_code = Some(v),
            PolicyKind::Latency(v) => raw.latency = Some(v),
            PolicyKind::Probabilistic(v) => raw.probabilistic = Some(v),
            PolicyKind::OtelProbabilistic(v) => raw.otel_probabilistic = Some(v),
            PolicyKind::RateLimiting(v) => raw.rate_limiting = Some(v),
            PolicyKind::StringAttribute(v) => raw.string_attribute = Some(v),
            PolicyKind::NumericAttribute(v) => raw.numeric_attribute = Some(v),
            PolicyKind::BooleanAttribute(v) => raw.boolean_attribute = Some(v),
            PolicyKind::SpanCount(v) => raw.span_count = Some(v),
            PolicyKind::TraceState(v) => raw.trace_state = Some(v),
            PolicyKind::And(v) => raw.and = Some(v),
            PolicyKind::Not(v) => raw.not = Some(v),
            PolicyKind::Composite(v) => raw.composite = Some(v),
            PolicyKind::Sampler(SamplerPolicy::Deterministic(v)) => raw.deterministic = Some(v),
            PolicyKind::Sampler(SamplerPolicy::Dynamic(v)) => raw.dynamic = Some(v),
            PolicyKind::Sampler(SamplerPolicy::EmaDynamic(v)) => raw.ema_dynamic = Some(v),
            PolicyKind::Sampler(SamplerPolicy::EmaThroughput(v)) => raw.ema_throughput = Some(v),
            PolicyKind::Sampler(SamplerPolicy::WindowedThroughput(v)) => raw.windowed_throughput = Some(v),
            PolicyKind::Sampler(SamplerPolicy::TotalThroughput(v)) => raw.total_throughput = Some(v),
            PolicyKind::Sampler(SamplerPolicy::Rules(v)) => raw.rules = Some(v),
            PolicyKind::OttlCondition(v) => raw.ottl_condition = Some(v),
            PolicyKind::BytesLimiting(v) => raw.bytes_limiting = Some(v),
            PolicyKind::TraceFlags => raw.trace_flags = Some(Empty {}),
        }
        raw
    }
}

//! Document model of the Refinery-style samplers: `deterministic`, the
//! dynamic per-key samplers (`dynamic`, `ema_dynamic`, `ema_throughput`,
//! `windowed_throughput`, `total_throughput`) and the rules-based sampler
//! (`rules`). They appear in a policy document as
//! [`PolicyKind::Sampler`](crate::PolicyKind::Sampler); see the crate
//! documentation for their semantics.
//!
//! Depends on nothing else in the crate (the document model refers to it).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// One of the Refinery-style samplers. Written as its snake_case key
/// (`dynamic: {...}`) in a policy, or in a rule's `sampler: {dynamic: {...}}`.
#[derive(Debug, Clone, PartialEq)]
pub enum SamplerPolicy {
    /// `deterministic: { sample_rate, hash }` — keep 1 in `sample_rate` by trace ID.
    Deterministic(DeterministicPolicy),
    /// `dynamic: {...}` — Refinery's `DynamicSampler` (dynsampler `AvgSampleRate`).
    Dynamic(DynamicPolicy),
    /// `ema_dynamic: {...}` — Refinery's `EMADynamicSampler`.
    EmaDynamic(EmaDynamicPolicy),
    /// `ema_throughput: {...}` — Refinery's `EMAThroughputSampler`.
    EmaThroughput(EmaThroughputPolicy),
    /// `windowed_throughput: {...}` — Refinery's `WindowedThroughputSampler`.
    WindowedThroughput(WindowedThroughputPolicy),
    /// `total_throughput: {...}` — Refinery's `TotalThroughputSampler`.
    TotalThroughput(TotalThroughputPolicy),
    /// `rules: {...}` — Refinery's `RulesBasedSampler`.
    Rules(RulesPolicy),
}

impl SamplerPolicy {
    /// The native key of this sampler type (`dynamic`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            SamplerPolicy::Deterministic(_) => "deterministic",
            SamplerPolicy::Dynamic(_) => "dynamic",
            SamplerPolicy::EmaDynamic(_) => "ema_dynamic",
            SamplerPolicy::EmaThroughput(_) => "ema_throughput",
            SamplerPolicy::WindowedThroughput(_) => "windowed_throughput",
            SamplerPolicy::TotalThroughput(_) => "total_throughput",
            SamplerPolicy::Rules(_) => "rules",
        }
    }
}

/// A duration: a number of seconds (`30`, `0.5`) or a Go duration string
/// (`"30s"`, `"1m0s"`, `"500ms"`, `"1h30m"`), as in Refinery's files.
/// Serialized as a Go duration string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    /// Nanoseconds.
    pub nanos: u64,
}

impl Interval {
    /// `secs` seconds.
    pub fn from_secs(secs: u64) -> Self {
        Interval {
            nanos: secs.saturating_mul(1_000_000_000),
        }
    }

    /// Parses a Go duration string (`time.ParseDuration`): decimal numbers
    /// with optional fraction, each followed by `ns`, `us`/`µs`, `ms`, `s`,
    /// `m` or `h`; `"0"` alone is zero. Negative durations are rejected.
    pub fn parse_go(s: &str) -> Result<Self, String> {
        crate::go_duration::parse_go_duration(s)
            .and_then(|ns| u64::try_from(ns).ok())
            .map(|nanos| Interval { nanos })
            .ok_or_else(|| format!("invalid duration \"{s}\" (expected e.g. \"30s\", \"1m30s\", \"500ms\")"))
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.nanos;
        if n == 0 {
            write!(f, "0s")
        } else if n.is_multiple_of(1_000_000_000) {
            write!(f, "{}s", n / 1_000_000_000)
        } else if n.is_multiple_of(1_000_000) {
            write!(f, "{}ms", n / 1_000_000)
        } else if n.is_multiple_of(1_000) {
            write!(f, "{}us", n / 1_000)
        } else {
            write!(f, "{n}ns")
        }
    }
}

impl Serialize for Interval {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Interval;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration: seconds or a string like \"30s\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Interval, E> {
                Ok(Interval::from_secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Interval, E> {
                u64::try_from(v)
                    .map(Interval::from_secs)
                    .map_err(|_| E::custom("a duration must not be negative"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Interval, E> {
                if (0.0..1.8e10).contains(&v) {
                    Ok(Interval {
                        nanos: (v * 1e9).round() as u64,
                    })
                } else {
                    Err(E::custom(format!("invalid duration {v}")))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Interval, E> {
                Interval::parse_go(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// How `deterministic` hashes the trace ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeterministicHash {
    /// The crate's consistent sampling (seeded SipHash randomness, OTel
    /// threshold): kept traces carry `th`/`rv`.
    #[default]
    Consistent,
    /// Refinery's own rule (first 4 bytes of SHA-1 of the hex trace ID plus
    /// a fixed salt): the same traces as a Refinery cluster, no `th`.
    RefinerySha1,
}

impl DeterministicHash {
    fn is_default(&self) -> bool {
        *self == DeterministicHash::Consistent
    }
}

/// What one trace counts for in the per-key counts of the dynamic samplers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountUnit {
    /// Its span count (Refinery: throughput goals are events per second).
    #[default]
    Spans,
    /// 1 (throughput goals are traces per second).
    Traces,
}

impl CountUnit {
    fn is_default(&self) -> bool {
        *self == CountUnit::Spans
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Settings of `deterministic`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeterministicPolicy {
    /// Keep 1 in `sample_rate` traces (>= 1).
    pub sample_rate: u64,
    /// `consistent` (default) or `refinery_sha1`.
    #[serde(default, skip_serializing_if = "DeterministicHash::is_default")]
    pub hash: DeterministicHash,
}

/// Settings of `dynamic` (dynsampler `AvgSampleRate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicPolicy {
    /// Goal sample rate (>= 1).
    pub sample_rate: u64,
    /// Interval over which counts are collected (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_frequency: Option<Interval>,
    /// Fields making up the key (non-empty).
    pub field_list: Vec<String>,
    /// Append the trace's span count to the key.
    #[serde(default, skip_serializing_if = "is_false")]
    pub use_trace_length: bool,
    /// Keys tracked per interval (default 500); the rest share one key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<u64>,
    /// What a trace counts for (default `spans`).
    #[serde(default, skip_serializing_if = "CountUnit::is_default")]
    pub unit: CountUnit,
}

/// Settings of `ema_dynamic` (dynsampler `EMASampleRate`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmaDynamicPolicy {
    /// Goal sample rate (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal_sample_rate: Option<u64>,
    /// How often rates are recomputed (default 15s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjustment_interval: Option<Interval>,
    /// EMA weight of the newest interval, in (0, 1] (default 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// Keys whose average falls below this are forgotten (default: `weight`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_out_value: Option<f64>,
    /// Burst when an interval's count reaches this multiple of the average
    /// total (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_multiple: Option<f64>,
    /// Intervals before burst detection starts (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_detection_delay: Option<u64>,
    /// Fields making up the key (non-empty).
    pub field_list: Vec<String>,
    /// Append the trace's span count to the key.
    #[serde(default, skip_serializing_if = "is_false")]
    pub use_trace_length: bool,
    /// Keys tracked (default 500); the rest share one key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<u64>,
    /// What a trace counts for (default `spans`).
    #[serde(default, skip_serializing_if = "CountUnit::is_default")]
    pub unit: CountUnit,
}

/// Settings of `ema_throughput` (dynsampler `EMAThroughput`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmaThroughputPolicy {
    /// Cluster-wide goal (spans or traces per second, see `unit`; default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal_throughput_per_sec: Option<f64>,
    /// Sample rate before the first adjustment (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_sample_rate: Option<u64>,
    /// How often rates are recomputed (default 15s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjustment_interval: Option<Interval>,
    /// EMA weight of the newest interval, in (0, 1] (default 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// Keys whose average falls below this are forgotten (default: `weight`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_out_value: Option<f64>,
    /// Burst multiple (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_multiple: Option<f64>,
    /// Intervals before burst detection starts (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_detection_delay: Option<u64>,
    /// Fields making up the key (may be empty: one key for all traces).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub field_list: Vec<String>,
    /// Append the trace's span count to the key.
    #[serde(default, skip_serializing_if = "is_false")]
    pub use_trace_length: bool,
    /// Keys tracked (default 500); the rest share one key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<u64>,
    /// What a trace counts for (default `spans`).
    #[serde(default, skip_serializing_if = "CountUnit::is_default")]
    pub unit: CountUnit,
}

/// Settings of `windowed_throughput` (dynsampler `WindowedThroughput`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowedThroughputPolicy {
    /// Cluster-wide goal (spans or traces per second; default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal_throughput_per_sec: Option<f64>,
    /// How often rates are recomputed (default 1s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_frequency: Option<Interval>,
    /// How far back counts are looked at (default 30 × `update_frequency`;
    /// rounded down to a multiple of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookback_frequency: Option<Interval>,
    /// Fields making up the key (may be empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub field_list: Vec<String>,
    /// Append the trace's span count to the key.
    #[serde(default, skip_serializing_if = "is_false")]
    pub use_trace_length: bool,
    /// Distinct keys tracked over the window (default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<u64>,
    /// What a trace counts for (default `spans`).
    #[serde(default, skip_serializing_if = "CountUnit::is_default")]
    pub unit: CountUnit,
}

/// Settings of `total_throughput` (dynsampler `TotalThroughput`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotalThroughputPolicy {
    /// Cluster-wide goal (spans or traces per second; default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal_throughput_per_sec: Option<f64>,
    /// Interval over which counts are collected (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_frequency: Option<Interval>,
    /// Fields making up the key (non-empty).
    pub field_list: Vec<String>,
    /// Append the trace's span count to the key.
    #[serde(default, skip_serializing_if = "is_false")]
    pub use_trace_length: bool,
    /// Keys tracked per interval (default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<u64>,
    /// What a trace counts for (default `spans`).
    #[serde(default, skip_serializing_if = "CountUnit::is_default")]
    pub unit: CountUnit,
}

/// What a `rules` sampler does with a trace no rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmatched {
    /// Keep it at rate 1 (Refinery's behaviour).
    #[default]
    Keep,
    /// The `rules` policy does not match: later policies decide.
    Pass,
}

impl Unmatched {
    fn is_default(&self) -> bool {
        *self == Unmatched::Keep
    }
}

/// Settings of `rules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesPolicy {
    /// Ordered rules; the first matching one decides.
    pub rules: Vec<SamplingRule>,
    /// No rule matched: `keep` (default) or `pass`.
    #[serde(default, skip_serializing_if = "Unmatched::is_default")]
    pub unmatched: Unmatched,
}

/// How a rule's conditions are applied to the spans of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleScope {
    /// Each condition may be satisfied by a different span.
    #[default]
    Trace,
    /// All conditions must hold on the same span.
    Span,
}

impl RuleScope {
    fn is_default(&self) -> bool {
        *self == RuleScope::Trace
    }
}

/// One rule of a `rules` sampler: conditions and exactly one action
/// (`drop: true`, `sample_rate: N` or `sampler: {...}`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingRule {
    /// Rule name (for humans; need not be unique).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `trace` (default) or `span`.
    #[serde(default, skip_serializing_if = "RuleScope::is_default")]
    pub scope: RuleScope,
    /// All must hold; none means the rule always matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<RuleCondition>,
    /// Drop matching traces.
    #[serde(default, skip_serializing_if = "is_false")]
    pub drop: bool,
    /// Keep 1 in N matching traces (consistently).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u64>,
    /// Let a nested sampler decide matching traces (any sampler type except `rules`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<Box<SamplerPolicy>>,
}

/// A rule condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleCondition {
    /// The field to read (see the crate docs for field names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Alternatively, fields tried in order: the first present one is used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// The comparison.
    pub operator: RuleOperator,
    /// The value to compare with (a list for `in`/`not-in`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<ConditionValue>,
    /// Convert both sides to this type before comparing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datatype: Option<RuleDatatype>,
}

/// Rule condition operators (Refinery's spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleOperator {
    /// `=`
    #[serde(rename = "=")]
    Eq,
    /// `!=`
    #[serde(rename = "!=")]
    Ne,
    /// `>`
    #[serde(rename = ">")]
    Gt,
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `<=`
    #[serde(rename = "<=")]
    Le,
    /// `starts-with`
    #[serde(rename = "starts-with")]
    StartsWith,
    /// `contains`
    #[serde(rename = "contains")]
    Contains,
    /// `does-not-contain`
    #[serde(rename = "does-not-contain")]
    DoesNotContain,
    /// `exists`
    #[serde(rename = "exists")]
    Exists,
    /// `not-exists`
    #[serde(rename = "not-exists")]
    NotExists,
    /// `has-root-span` (value true/false; trace scope only)
    #[serde(rename = "has-root-span")]
    HasRootSpan,
    /// `matches` (regex)
    #[serde(rename = "matches")]
    Matches,
    /// `in`
    #[serde(rename = "in")]
    In,
    /// `not-in`
    #[serde(rename = "not-in")]
    NotIn,
}

/// Datatype coercion of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleDatatype {
    /// Compare as strings.
    String,
    /// Compare as integers.
    Int,
    /// Compare as floats.
    Float,
    /// Compare as booleans (`=`/`!=` only).
    Bool,
}

/// A scalar condition value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConditionScalar {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
}

/// A condition value: a scalar or a list of scalars.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConditionValue {
    /// One value.
    Scalar(ConditionScalar),
    /// A list (for `in` / `not-in`).
    List(Vec<ConditionScalar>),
}

// ---------------------------------------------------------------------------
// `sampler: { <type>: {...} }` inside a rule.

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSampler {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deterministic: Option<DeterministicPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dynamic: Option<DynamicPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ema_dynamic: Option<EmaDynamicPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ema_throughput: Option<EmaThroughputPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    windowed_throughput: Option<WindowedThroughputPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    total_throughput: Option<TotalThroughputPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rules: Option<RulesPolicy>,
}

impl Serialize for SamplerPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut raw = RawSampler::default();
        match self.clone() {
            SamplerPolicy::Deterministic(v) => raw.deterministic = Some(v),
            SamplerPolicy::Dynamic(v) => raw.dynamic = Some(v),
            SamplerPolicy::EmaDynamic(v) => raw.ema_dynamic = Some(v),
            SamplerPolicy::EmaThroughput(v) => raw.ema_throughput = Some(v),
            SamplerPolicy::WindowedThroughput(v) => raw.windowed_throughput = Some(v),
            SamplerPolicy::TotalThroughput(v) => raw.total_throughput = Some(v),
            SamplerPolicy::Rules(v) => raw.rules = Some(v),
        }
        raw.serialize(s)
    }
}

impl<'de> Deserialize<'de> for SamplerPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawSampler::deserialize(d)?;
        let mut found: Vec<SamplerPolicy> = Vec::new();
        found.extend(raw.deterministic.map(SamplerPolicy::Deterministic));
        found.extend(raw.dynamic.map(SamplerPolicy::Dynamic));
        found.extend(raw.ema_dynamic.map(SamplerPolicy::EmaDynamic));
        found.extend(raw.ema_throughput.map(SamplerPolicy::EmaThroughput));
        found.extend(raw.windowed_throughput.map(SamplerPolicy::WindowedThroughput));
        found.extend(raw.total_throughput.map(SamplerPolicy::TotalThroughput));
        found.extend(raw.rules.map(SamplerPolicy::Rules));
        if found.len() != 1 {
            let names: Vec<&str> = found.iter().map(SamplerPolicy::type_name).collect();
            return Err(de::Error::custom(format!(
                "exactly one sampler type must be given (deterministic, dynamic, ema_dynamic, \
                 ema_throughput, windowed_throughput, total_throughput), found [{}]",
                names.join(", ")
            )));
        }
        Ok(found.remove(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ns = |s: &str| Interval::parse_go(s).map(|i| i.nanos);
        assert_eq!(ns("30s"), Ok(30_000_000_000));
        assert_eq!(ns("1m0s"), Ok(60_000_000_000));
        assert_eq!(ns("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(ns("500ms"), Ok(500_000_000));
        assert_eq!(ns("1.5s"), Ok(1_500_000_000));
        assert_eq!(ns("0"), Ok(0));
        assert!(ns("30").is_err());
        assert!(ns("-1s").is_err());
        assert!(ns("5x").is_err());
        assert_eq!(Interval { nanos: 1_500_000_000 }.to_string(), "1500ms");
        assert_eq!(Interval::from_secs(30).to_string(), "30s");
    }
}

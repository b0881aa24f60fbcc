//! Import of the OpenTelemetry Collector `tail_sampling` processor
//! configuration into a [`PolicyDocument`] with
//! [`Semantics::OtelTailSampling`]. Depends on the document model only: the
//! result is not validated here (`PolicyDocument::from_otel_tail_sampling_yaml`
//! in `load.rs` validates it by compiling it).

use serde::Deserialize;
use serde_yaml::Value;

use crate::document::{
    AndPolicy, AttributeScope, BooleanAttributePolicy, BudgetScope, BytesLimitingPolicy, CompositePolicy,
    DecisionOptions, DropPolicy, LatencyPolicy, NamedPolicy, NotPolicy, NumericAttributePolicy,
    OtelProbabilisticPolicy, OttlConditionPolicy, OttlErrorMode, Oversized, PolicyDocument, PolicyKind, RateAllocation,
    RateLimitingPolicy, Semantics, SpanCountPolicy, StatusCodePolicy, StringAttributePolicy, TraceStatePolicy,
};
use crate::error::{Issue, PolicyError};
use crate::model::StatusCode;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtelPolicy {
    #[serde(default)]
    name: String,
    #[serde(rename = "type", default)]
    policy_type: String,
    #[serde(default)]
    latency: Option<OtelLatency>,
    #[serde(default)]
    numeric_attribute: Option<OtelNumeric>,
    #[serde(default)]
    probabilistic: Option<OtelProbabilistic>,
    #[serde(default)]
    status_code: Option<OtelStatusCode>,
    #[serde(default)]
    string_attribute: Option<OtelString>,
    #[serde(default)]
    rate_limiting: Option<OtelRateLimiting>,
    #[serde(default)]
    span_count: Option<OtelSpanCount>,
    #[serde(default)]
    trace_state: Option<OtelTraceState>,
    #[serde(default)]
    boolean_attribute: Option<OtelBoolean>,
    #[serde(default)]
    and: Option<OtelAnd>,
    #[serde(default)]
    not: Option<OtelNot>,
    #[serde(default)]
    drop: Option<OtelDrop>,
    #[serde(default)]
    composite: Option<OtelComposite>,
    #[serde(default)]
    ottl_condition: Option<OtelOttlCondition>,
    #[serde(default)]
    bytes_limiting: Option<OtelBytesLimiting>,
    // `trace_flags` has no settings upstream; anything given is ignored.
    #[serde(default)]
    #[allow(dead_code)]
    trace_flags: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtelOttlCondition {
    #[serde(default)]
    error_mode: String,
    #[serde(default)]
    span: Vec<String>,
    #[serde(default)]
    spanevent: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtelBytesLimiting {
    #[serde(default)]
    bytes_per_second: i64,
    #[serde(default)]
    burst_capacity: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtelLatency {
    #[serde(default)]
    threshold_ms: u64,
    #[serde(default)]
    upper_threshold_ms: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtelNumeric {
    #[serde(default)]
    key: String,
    #[serde(default)]
    min_value: Option<i64>,
    #[serde(default)]
    max_value: Option<i64>,
    #[serde(default)]
    invert_match: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtelProbabilistic {
    #[serde(default)]
    hash_salt: String,
    #[serde(default)]
    sampling_percentage: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtelStatusCode {
    #[serde(default)]
    status_codes: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtelString {
    #[serde(default)]
    key: String,
    #[serde(default)]
    values: Vec<String>,
    #[serde(default)]
    enabled_regex_matching: bool,
    #[serde(default)]
    #[allow(dead_code)]
    cache_max_size: i64,
    #[serde(default)]
    invert_match: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtelRateLimiting {
    #[serde(default)]
    spans_per_second: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtelSpanCount {
    #[serde(default)]
    min_spans: u64,
    #[serde(default)]
    max_spans: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtelTraceState {
    #[serde(default)]
    key: String,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtelBoolean {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: bool,
    #[serde(default)]
    invert_match: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtelAnd {
    #[serde(default)]
    and_sub_policy: Vec<OtelPolicy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtelNot {
    #[serde(default)]
    not_sub_policy: Option<Box<OtelPolicy>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtelDrop {
    #[serde(default)]
    drop_sub_policy: Vec<OtelPolicy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtelComposite {
    #[serde(default)]
    max_total_spans_per_second: i64,
    #[serde(default)]
    #[allow(dead_code)]
    policy_order: Vec<String>,
    #[serde(default)]
    composite_sub_policy: Vec<OtelPolicy>,
    #[serde(default)]
    rate_allocation: Vec<OtelRateAllocation>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtelRateAllocation {
    #[serde(default)]
    policy: String,
    #[serde(default)]
    percent: i64,
}

fn convert(p: OtelPolicy, path: &str, issues: &mut Vec<Issue>) -> NamedPolicy {
    let kind = match p.policy_type.as_str() {
        "always_sample" => PolicyKind::Always,
        "latency" => {
            let c = p.latency.unwrap_or_default();
            PolicyKind::Latency(LatencyPolicy {
                threshold_ms: c.threshold_ms,
                upper_threshold_ms: (c.upper_threshold_ms != 0).then_some(c.upper_threshold_ms),
            })
        }
        "numeric_attribute" => {
            let c = p.numeric_attribute.unwrap_or_default();
            PolicyKind::NumericAttribute(NumericAttributePolicy {
                key: c.key,
                min: c.min_value.map(|v| v as f64),
                max: c.max_value.map(|v| v as f64),
                invert: c.invert_match,
                scope: AttributeScope::Any,
            })
        }
        "probabilistic" => {
            let c = p.probabilistic.unwrap_or_default();
            PolicyKind::OtelProbabilistic(OtelProbabilisticPolicy {
                hash_salt: c.hash_salt,
                sampling_percentage: c.sampling_percentage,
            })
        }
        "status_code" => {
            let c = p.status_code.unwrap_or_default();
            let mut codes = Vec::with_capacity(c.status_codes.len());
            for (i, s) in c.status_codes.iter().enumerate() {
                match s.as_str() {
                    "OK" => codes.push(StatusCode::Ok),
                    "ERROR" => codes.push(StatusCode::Error),
                    "UNSET" => codes.push(StatusCode::Unset),
                    other => issues.push(Issue::new(
                        format!("{path}.status_code.status_codes[{i}]"),
                        format!("unknown status code \"{other}\", supported: OK, ERROR, UNSET"),
                    )),
                }
            }
            if c.status_codes.is_empty() {
                issues.push(Issue::new(
                    format!("{path}.status_code.status_codes"),
                    "must not be empty",
                ));
                codes.push(StatusCode::Error); // placeholder, the issue fails the import
            }
            PolicyKind::StatusCode(StatusCodePolicy { codes })
        }
        "string_attribute" => {
            let c = p.string_attribute.unwrap_or_default();
            PolicyKind::StringAttribute(StringAttributePolicy {
                key: c.key,
                values: c.values,
                regex: c.enabled_regex_matching,
                invert: c.invert_match,
                scope: AttributeScope::Any,
            })
        }
        "rate_limiting" => {
            let c = p.rate_limiting.unwrap_or_default();
            PolicyKind::RateLimiting(RateLimitingPolicy {
                spans_per_second: Some(c.spans_per_second as f64),
                traces_per_second: None,
                burst_seconds: Some(2.0),
            })
        }
        "span_count" => {
            let c = p.span_count.unwrap_or_default();
            PolicyKind::SpanCount(SpanCountPolicy {
                min: c.min_spans,
                max: (c.max_spans != 0).then_some(c.max_spans),
            })
        }
        "trace_state" => {
            let c = p.trace_state.unwrap_or_default();
            PolicyKind::TraceState(TraceStatePolicy {
                key: c.key,
                values: c.values,
            })
        }
        "boolean_attribute" => {
            let c = p.boolean_attribute.unwrap_or_default();
            PolicyKind::BooleanAttribute(BooleanAttributePolicy {
                key: c.key,
                value: c.value,
                invert: c.invert_match,
                scope: AttributeScope::Any,
            })
        }
        "and" => {
            let c = p.and.unwrap_or_default();
            let at = format!("{path}.and.and_sub_policy");
            let policies = convert_all(c.and_sub_policy, &at, issues);
            PolicyKind::And(AndPolicy { policies })
        }
        "not" => {
            let c = p.not.unwrap_or_default();
            match c.not_sub_policy {
                Some(sub) => {
                    let policy = convert(*sub, &format!("{path}.not.not_sub_policy"), issues);
                    PolicyKind::Not(NotPolicy {
                        policy: Box::new(policy),
                    })
                }
                None => {
                    issues.push(Issue::new(format!("{path}.not.not_sub_policy"), "must be set"));
                    PolicyKind::Always
                }
            }
        }
        "drop" => {
            let c = p.drop.unwrap_or_default();
            let at = format!("{path}.drop.drop_sub_policy");
            if c.drop_sub_policy.is_empty() {
                issues.push(Issue::new(&at, "must not be empty"));
            }
            let policies = convert_all(c.drop_sub_policy, &at, issues);
            PolicyKind::Drop(DropPolicy { policies })
        }
        "composite" => {
            let c = p.composite.unwrap_or_default();
            let at = format!("{path}.composite");
            let policies = convert_all(c.composite_sub_policy, &format!("{at}.composite_sub_policy"), issues);
            let rate_allocation = c
                .rate_allocation
                .into_iter()
                .map(|r| RateAllocation {
                    policy: r.policy,
                    percent: r.percent as f64,
                })
                .collect();
            PolicyKind::Composite(CompositePolicy {
                max_total_spans_per_second: c.max_total_spans_per_second as f64,
                policies,
                rate_allocation,
            })
        }
        "ottl_condition" => {
            let c = p.ottl_condition.unwrap_or_default();
            let error_mode = match c.error_mode.as_str() {
                // Upstream's default while its `defaultOTTLErrorModeIgnore`
                // feature gate is off (the default).
                "" | "propagate" => OttlErrorMode::Propagate,
                "ignore" => OttlErrorMode::Ignore,
                "silent" => OttlErrorMode::Silent,
                other => {
                    issues.push(Issue::new(
                        format!("{path}.ottl_condition.error_mode"),
                        format!("unknown error mode \"{other}\", supported: propagate, ignore, silent"),
                    ));
                    OttlErrorMode::Propagate
                }
            };
            PolicyKind::OttlCondition(OttlConditionPolicy {
                error_mode,
                span: c.span,
                spanevent: c.spanevent,
            })
        }
        "bytes_limiting" => {
            let c = p.bytes_limiting.unwrap_or_default();
            PolicyKind::BytesLimiting(BytesLimitingPolicy {
                bytes_per_second: c.bytes_per_second as f64,
                // Upstream: burst_capacity <= 0 means 2 x bytes_per_second.
                burst_capacity: (c.burst_capacity > 0).then_some(c.burst_capacity as f64),
            })
        }
        "trace_flags" => PolicyKind::TraceFlags,
        "" => {
            issues.push(Issue::new(format!("{path}.type"), "must be set"));
            PolicyKind::Always
        }
        other => {
            issues.push(Issue::new(
                format!("{path}.type"),
                format!(
                    "unknown policy type \"{other}\", supported: always_sample, latency, numeric_attribute, \
                     probabilistic, status_code, string_attribute, rate_limiting, span_count, trace_state, \
                     boolean_attribute, and, not, drop, composite, ottl_condition, bytes_limiting, trace_flags"
                ),
            ));
            PolicyKind::Always
        }
    };
    NamedPolicy {
        name: p.name,
        filter: None,
        kind,
    }
}

fn convert_all(ps: Vec<OtelPolicy>, path: &str, issues: &mut Vec<Issue>) -> Vec<NamedPolicy> {
    ps.into_iter()
        .enumerate()
        .map(|(i, p)| convert(p, &format!("{path}[{i}]"), issues))
        .collect()
}

fn get<'v>(map: &'v serde_yaml::Mapping, key: &str) -> Option<&'v Value> {
    map.get(key)
}

/// Locates the mapping holding `policies`: the mapping itself, its
/// `tail_sampling` (or `tail_sampling/<name>`) entry, or the same under
/// `processors`. Returns the path prefix and the mapping.
fn locate(root: &Value) -> Result<(String, &serde_yaml::Mapping), PolicyError> {
    let map = match root {
        Value::Mapping(m) => m,
        Value::Tagged(t) => match &t.value {
            Value::Mapping(m) => m,
            _ => return Err(PolicyError::parse(".", "expected a mapping")),
        },
        _ => return Err(PolicyError::parse(".", "expected a mapping with a `policies` list")),
    };
    if get(map, "policies").is_some() {
        return Ok((String::new(), map));
    }
    let mut prefix = String::new();
    let mut scope = map;
    if let Some(Value::Mapping(p)) = get(map, "processors") {
        prefix.push_str("processors.");
        scope = p;
    }
    let candidates: Vec<(&str, &serde_yaml::Mapping)> = scope
        .iter()
        .filter_map(|(k, v)| match (k.as_str(), v) {
            (Some(k), Value::Mapping(m)) if k == "tail_sampling" || k.starts_with("tail_sampling/") => Some((k, m)),
            _ => None,
        })
        .collect();
    match candidates.as_slice() {
        [(k, m)] if get(m, "policies").is_some() => Ok((format!("{prefix}{k}."), m)),
        [] | [_] => Err(PolicyError::parse(
            ".",
            "no `policies` list found (expected a `policies:` key, a tail_sampling processor config, or a collector config with processors.tail_sampling)",
        )),
        _ => Err(PolicyError::parse(
            prefix.trim_end_matches('.').to_string(),
            "several tail_sampling processors found; pass one processor config",
        )),
    }
}

/// Converts the collector configuration `text` (see
/// `PolicyDocument::from_otel_tail_sampling_yaml`) without validating the
/// result.
pub(crate) fn import_tail_sampling(text: &str) -> Result<PolicyDocument, PolicyError> {
    let root: Value = serde_yaml::from_str(text).map_err(|e| PolicyError::parse(".", e.to_string()))?;
    // A bare policy list (what sits under `policies:`), or a mapping that holds one.
    let (prefix, policies_value, map) = match &root {
        Value::Sequence(_) => (String::new(), root.clone(), None),
        _ => {
            let (prefix, map) = locate(&root)?;
            (prefix, get(map, "policies").cloned().unwrap_or(Value::Null), Some(map))
        }
    };
    let options = match map {
        Some(m) => options(m, &prefix)?,
        None => Options::default(),
    };
    let policies_path = format!("{prefix}policies");
    let raw: Vec<OtelPolicy> = serde_path_to_error::deserialize(policies_value)
        .map_err(|e| PolicyError::from_path_error(e, &policies_path))?;
    let mut issues = Vec::new();
    let policies = convert_all(raw, &policies_path, &mut issues);
    if !issues.is_empty() {
        return Err(PolicyError::Invalid(issues));
    }
    Ok(PolicyDocument {
        version: 0,
        semantics: Semantics::OtelTailSampling,
        sample_on_first_match: options.sample_on_first_match,
        budget_scope: BudgetScope::Cluster,
        decision: options.decision,
        policies,
    })
}

/// The processor's top-level options, mapped onto Tailsift's.
#[derive(Debug, Default)]
struct Options {
    sample_on_first_match: bool,
    decision: DecisionOptions,
}

/// Every top-level key of the collector's `tail_sampling` configuration (current upstream).
const PROCESSOR_KEYS: &[&str] = &[
    "policies",
    "decision_wait",
    "decision_wait_after_root_received",
    "num_traces",
    "expected_new_traces_per_sec",
    "decision_cache",
    "sample_on_first_match",
    "drop_pending_traces_on_shutdown",
    "maximum_trace_size_bytes",
    "block_on_overflow",
];

/// Reads the processor's options. Upstream semantics and their Tailsift equivalents:
///
/// * `decision_wait` (default 30s, also when absent) -> `decision.wait_ms`.
/// * `decision_wait_after_root_received` (default 0: off) -> `decision.wait_after_root_ms`;
///   when absent or 0 the root span does not bring the decision forward, so the wait after the
///   root is the whole `decision_wait` (upstream only moves a decision earlier, never later).
/// * `num_traces` (default 50000) -> `decision.max_traces`: upstream evicts the oldest trace
///   undecided; Tailsift decides it early instead (nothing is lost).
/// * `maximum_trace_size_bytes` (default 0: off) -> `decision.max_trace_bytes` with
///   `oversized: drop`: a larger trace is not sampled, as upstream.
/// * `decision_cache` (`sampled_cache_size`, `non_sampled_cache_size`) -> `decision.cache_traces`
///   (the larger of the two; Tailsift sizes both caches alike).
/// * `sample_on_first_match` -> honoured (evaluation stops at the first sampling policy).
/// * `expected_new_traces_per_sec` (an allocation hint), `block_on_overflow` (Kafka is the
///   backpressure here: nothing is evicted) and `drop_pending_traces_on_shutdown` (pending
///   traces are handed over to the partitions' next owner, never dropped) are accepted and need
///   nothing.
fn options(map: &serde_yaml::Mapping, prefix: &str) -> Result<Options, PolicyError> {
    let mut issues = Vec::new();
    for k in map.keys() {
        let key = k.as_str().unwrap_or("");
        if !PROCESSOR_KEYS.contains(&key) {
            issues.push(Issue::new(
                format!("{prefix}{key}"),
                format!("unknown field `{key}`, expected one of {}", PROCESSOR_KEYS.join(", ")),
            ));
        }
    }
    let path = |k: &str| format!("{prefix}{k}");
    let mut o = Options::default();
    let bool_of = |k: &str, issues: &mut Vec<Issue>| match get(map, k) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            issues.push(Issue::new(path(k), "expected a boolean"));
            false
        }
    };
    o.sample_on_first_match = bool_of("sample_on_first_match", &mut issues);
    bool_of("drop_pending_traces_on_shutdown", &mut issues);
    bool_of("block_on_overflow", &mut issues);
    let uint_of = |k: &str, issues: &mut Vec<Issue>, m: &serde_yaml::Mapping, p: &str| match get(m, k) {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) => Some(n),
            None => {
                issues.push(Issue::new(format!("{p}{k}"), "expected a non-negative integer"));
                None
            }
        },
    };
    let duration_of = |k: &str, issues: &mut Vec<Issue>| match get(map, k) {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_str().map(parse_go_duration_ms) {
            Some(Ok(ms)) => Some(ms),
            Some(Err(e)) => {
                issues.push(Issue::new(path(k), e));
                None
            }
            None => {
                issues.push(Issue::new(path(k), "expected a duration such as \"10s\" or \"1m30s\""));
                None
            }
        },
    };
    // Upstream's default decision_wait (30s) applies to a processor config that does not set it.
    let wait = duration_of("decision_wait", &mut issues).unwrap_or(30_000);
    o.decision.wait_ms = Some(wait);
    let after_root = duration_of("decision_wait_after_root_received", &mut issues).filter(|ms| *ms > 0);
    o.decision.wait_after_root_ms = Some(after_root.unwrap_or(wait));
    o.decision.max_traces = uint_of("num_traces", &mut issues, map, prefix).filter(|n| *n > 0);
    uint_of("expected_new_traces_per_sec", &mut issues, map, prefix);
    if let Some(n) = uint_of("maximum_trace_size_bytes", &mut issues, map, prefix).filter(|n| *n > 0) {
        o.decision.max_trace_bytes = Some(n);
        o.decision.oversized = Some(Oversized::Drop);
    }
    match get(map, "decision_cache") {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(c)) => {
            let p = path("decision_cache.");
            for k in c.keys() {
                let key = k.as_str().unwrap_or("");
                if !["sampled_cache_size", "non_sampled_cache_size"].contains(&key) {
                    issues.push(Issue::new(
                        format!("{p}{key}"),
                        format!("unknown field `{key}`, expected sampled_cache_size or non_sampled_cache_size"),
                    ));
                }
            }
            let sampled = uint_of("sampled_cache_size", &mut issues, c, &p);
            let non_sampled = uint_of("non_sampled_cache_size", &mut issues, c, &p);
            o.decision.cache_traces = sampled.max(non_sampled).filter(|n| *n > 0);
        }
        Some(_) => issues.push(Issue::new(path("decision_cache"), "expected a mapping")),
    }
    if issues.is_empty() {
        Ok(o)
    } else {
        Err(PolicyError::Invalid(issues))
    }
}

/// Parses a Go `time.Duration` string (`300ms`, `10s`, `1m30s`, `1.5h`; units ns, us, µs, ms, s,
/// m, h) into whole milliseconds; negative durations are refused.
fn parse_go_duration_ms(text: &str) -> Result<u64, String> {
    crate::go_duration::parse_go_duration(text.trim())
        .and_then(|ns| u64::try_from(ns).ok())
        .map(|ns| (ns + 500_000) / 1_000_000)
        .ok_or_else(|| format!("invalid duration {text:?}: expected e.g. \"10s\", \"500ms\" or \"1m30s\""))
}

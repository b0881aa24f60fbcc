//! Compatibility with the OpenTelemetry Collector `tail_sampling` processor:
//! its probabilistic hash and its `policies:` configuration.

use serde::Deserialize;
use serde_yaml::Value;

use crate::document::{
    AndPolicy, AttributeScope, BooleanAttributePolicy, CompositePolicy, DropPolicy, LatencyPolicy, NamedPolicy,
    NotPolicy, NumericAttributePolicy, OtelProbabilisticPolicy, PolicyDocument, PolicyKind, RateAllocation,
    RateLimitingPolicy, Semantics, SpanCountPolicy, StatusCodePolicy, StringAttributePolicy, TraceStatePolicy,
};
use crate::error::{Issue, PolicyError};
use crate::model::StatusCode;

/// The salt the collector uses when `hash_salt` is empty.
pub const DEFAULT_HASH_SALT: &str = "default-hash-seed";

/// FNV-1a 64-bit offset basis.
pub const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Continues an FNV-1a 64 hash from `state` over `bytes`
/// (`state = (state ^ byte) * 0x100000001b3` per byte).
pub fn fnv1a64_continue(mut state: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        state ^= u64::from(b);
        state = state.wrapping_mul(FNV_PRIME);
    }
    state
}

/// FNV-1a 64 of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_continue(FNV_OFFSET_BASIS, bytes)
}

/// The collector's probabilistic hash: FNV-1a 64 over the salt bytes
/// followed by the 16 trace-ID bytes (empty salt = [`DEFAULT_HASH_SALT`]).
pub fn otel_trace_hash(hash_salt: &str, trace_id: [u8; 16]) -> u64 {
    let salt = if hash_salt.is_empty() {
        DEFAULT_HASH_SALT
    } else {
        hash_salt
    };
    fnv1a64_continue(fnv1a64(salt.as_bytes()), &trace_id)
}

/// The collector's probabilistic threshold for `ratio = percentage / 100`:
/// `(2^64 - 1) * ratio` computed with 64-bit-mantissa round-to-nearest-even
/// (Go `big.Float` with precision 64) and truncated toward zero; ratios
/// `<= 0` give 0 and ratios `>= 1` give `u64::MAX`.
pub fn otel_probabilistic_threshold(ratio: f64) -> u64 {
    if ratio.is_nan() || ratio <= 0.0 {
        return 0;
    }
    if ratio >= 1.0 {
        return u64::MAX;
    }
    // ratio = mant * 2^exp exactly.
    let bits = ratio.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    let (mant, exp) = if biased == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), biased - 1075)
    };
    // Exact product (< 2^117), then round to 64 significant bits.
    let product = u128::from(u64::MAX) * u128::from(mant);
    let bit_len = 128 - product.leading_zeros() as i32;
    let (rounded, shift) = if bit_len > 64 {
        let s = (bit_len - 64) as u32;
        let q = product >> s;
        let rem = product & ((1u128 << s) - 1);
        let half = 1u128 << (s - 1);
        let q = if rem > half || (rem == half && q & 1 == 1) {
            q + 1
        } else {
            q
        };
        (q, s as i32)
    } else {
        (product, 0)
    };
    let total = shift + exp;
    if total >= 0 {
        // Cannot happen for ratio < 1, kept for completeness.
        u64::try_from(rounded << total.min(127)).unwrap_or(u64::MAX)
    } else if -total >= 128 {
        0
    } else {
        u64::try_from(rounded >> (-total)).unwrap_or(u64::MAX)
    }
}

/// The collector's probabilistic decision: `otel_trace_hash(salt, id) <= threshold`.
pub fn otel_probabilistic_keep(hash_salt: &str, trace_id: [u8; 16], sampling_percentage: f64) -> bool {
    otel_trace_hash(hash_salt, trace_id) <= otel_probabilistic_threshold(sampling_percentage / 100.0)
}

// ---------------------------------------------------------------------------
// Configuration import

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
    // Known to the collector but not supported here (accepted so that the
    // error names the policy type rather than an unknown field).
    #[serde(default)]
    #[allow(dead_code)]
    ottl_condition: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    bytes_limiting: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    trace_flags: Option<Value>,
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
        "ottl_condition" | "bytes_limiting" | "trace_flags" => {
            issues.push(Issue::new(
                format!("{path}.type"),
                format!("policy type \"{}\" is not supported by tailsift", p.policy_type),
            ));
            PolicyKind::Always
        }
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
                     boolean_attribute, and, not, drop, composite"
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

impl PolicyDocument {
    /// Imports the OpenTelemetry Collector `tail_sampling` processor
    /// configuration, unchanged: a mapping with a `policies:` list (other
    /// keys such as `decision_wait`, `num_traces`,
    /// `expected_new_traces_per_sec` or `decision_cache` are ignored;
    /// `sample_on_first_match` is honoured), or a collector config whose
    /// `processors` contain exactly one `tail_sampling` processor.
    ///
    /// The result has [`Semantics::OtelTailSampling`] and is validated.
    /// Unsupported upstream policy types (`ottl_condition`,
    /// `bytes_limiting`, `trace_flags`) are errors.
    pub fn from_otel_tail_sampling_yaml(text: &str) -> Result<Self, PolicyError> {
        let root: Value = serde_yaml::from_str(text).map_err(|e| PolicyError::parse(".", e.to_string()))?;
        let (prefix, map) = locate(&root)?;
        let policies_value = get(map, "policies").cloned().unwrap_or(Value::Null);
        let sample_on_first_match = match get(map, "sample_on_first_match") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(PolicyError::parse(
                    format!("{prefix}sample_on_first_match"),
                    "expected a boolean",
                ));
            }
        };
        let policies_path = format!("{prefix}policies");
        let raw: Vec<OtelPolicy> = serde_path_to_error::deserialize(policies_value)
            .map_err(|e| PolicyError::from_path_error(e, &policies_path))?;
        let mut issues = Vec::new();
        let policies = convert_all(raw, &policies_path, &mut issues);
        if !issues.is_empty() {
            return Err(PolicyError::Invalid(issues));
        }
        let doc = PolicyDocument {
            version: 0,
            semantics: Semantics::OtelTailSampling,
            sample_on_first_match,
            budget_scope: crate::document::BudgetScope::Cluster,
            policies,
        };
        doc.validate()?;
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn go_big_float_threshold() {
        // (2^64-1) * 0.5 = 2^63 - 0.5 -> truncated.
        assert_eq!(otel_probabilistic_threshold(0.5), 0x7fff_ffff_ffff_ffff);
        assert_eq!(otel_probabilistic_threshold(0.25), 0x3fff_ffff_ffff_ffff);
        assert_eq!(otel_probabilistic_threshold(1.0), u64::MAX);
        assert_eq!(otel_probabilistic_threshold(1.5), u64::MAX);
        assert_eq!(otel_probabilistic_threshold(0.0), 0);
        assert_eq!(otel_probabilistic_threshold(-0.5), 0);
        // Values checked against an exact rational computation (round the
        // product to 64 significant bits, nearest even, then truncate).
        assert_eq!(otel_probabilistic_threshold(0.1), 1_844_674_407_370_955_263);
        assert_eq!(otel_probabilistic_threshold(0.33), 6_087_425_544_324_152_319);
        assert_eq!(otel_probabilistic_threshold(0.001), 18_446_744_073_709_551);
        assert_eq!(otel_probabilistic_threshold(0.123456789), 2_277_375_790_844_960_511);
        assert_eq!(otel_probabilistic_threshold(1e-10), 1_844_674_407);
        assert_eq!(otel_probabilistic_threshold(0.9999999), 18_446_742_229_035_145_215);
    }
}

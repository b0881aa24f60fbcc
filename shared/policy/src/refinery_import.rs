//! Import of Honeycomb Refinery's v2 sampling rules file (`rules.yaml`)
//! into a [`PolicyDocument`] holding one sampler policy. Depends on the
//! document model only: the result is validated by
//! `PolicyDocument::from_refinery_rules_yaml` in `load.rs`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::document::{BudgetScope, NamedPolicy, PolicyDocument, PolicyKind};
use crate::error::{Issue, PolicyError};
use crate::sampler_policy::{
    ConditionValue, DeterministicHash, DeterministicPolicy, DynamicPolicy, EmaDynamicPolicy, EmaThroughputPolicy,
    Interval, RuleCondition, RuleDatatype, RuleOperator, RuleScope, RulesPolicy, SamplerPolicy, SamplingRule,
    TotalThroughputPolicy, Unmatched, WindowedThroughputPolicy,
};

/// The environment Refinery uses when no other one matches.
pub(crate) const DEFAULT_ENVIRONMENT: &str = "__default__";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(rename = "RulesVersion", default)]
    rules_version: Option<i64>,
    #[serde(rename = "Samplers", default)]
    samplers: BTreeMap<String, Choice>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Choice {
    #[serde(rename = "DeterministicSampler", default)]
    deterministic: Option<Deterministic>,
    #[serde(rename = "RulesBasedSampler", default)]
    rules: Option<RulesBased>,
    #[serde(rename = "DynamicSampler", default)]
    dynamic: Option<Dynamic>,
    #[serde(rename = "EMADynamicSampler", default)]
    ema_dynamic: Option<EmaDynamic>,
    #[serde(rename = "EMAThroughputSampler", default)]
    ema_throughput: Option<EmaThroughput>,
    #[serde(rename = "WindowedThroughputSampler", default)]
    windowed: Option<Windowed>,
    #[serde(rename = "TotalThroughputSampler", default)]
    total: Option<Total>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct Deterministic {
    #[serde(default)]
    sample_rate: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct Dynamic {
    #[serde(default)]
    sample_rate: i64,
    #[serde(default)]
    clear_frequency: Option<Interval>,
    #[serde(default)]
    field_list: Vec<String>,
    #[serde(default)]
    max_keys: i64,
    #[serde(default)]
    use_trace_length: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct EmaDynamic {
    #[serde(default)]
    goal_sample_rate: i64,
    #[serde(default)]
    adjustment_interval: Option<Interval>,
    #[serde(default)]
    weight: f64,
    #[serde(default)]
    age_out_value: f64,
    #[serde(default)]
    burst_multiple: f64,
    #[serde(default)]
    burst_detection_delay: u64,
    #[serde(default)]
    field_list: Vec<String>,
    #[serde(default)]
    max_keys: i64,
    #[serde(default)]
    use_trace_length: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct EmaThroughput {
    #[serde(default)]
    goal_throughput_per_sec: i64,
    #[serde(default)]
    use_cluster_size: bool,
    #[serde(default)]
    initial_sample_rate: i64,
    #[serde(default)]
    adjustment_interval: Option<Interval>,
    #[serde(default)]
    weight: f64,
    #[serde(default)]
    age_out_value: f64,
    #[serde(default)]
    burst_multiple: f64,
    #[serde(default)]
    burst_detection_delay: u64,
    #[serde(default)]
    field_list: Vec<String>,
    #[serde(default)]
    max_keys: i64,
    #[serde(default)]
    use_trace_length: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct Windowed {
    #[serde(default)]
    update_frequency: Option<Interval>,
    #[serde(default)]
    lookback_frequency: Option<Interval>,
    #[serde(default)]
    goal_throughput_per_sec: i64,
    #[serde(default)]
    use_cluster_size: bool,
    #[serde(default)]
    field_list: Vec<String>,
    #[serde(default)]
    max_keys: i64,
    #[serde(default)]
    use_trace_length: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct Total {
    #[serde(default)]
    goal_throughput_per_sec: i64,
    #[serde(default)]
    use_cluster_size: bool,
    #[serde(default)]
    clear_frequency: Option<Interval>,
    #[serde(default)]
    field_list: Vec<String>,
    #[serde(default)]
    max_keys: i64,
    #[serde(default)]
    use_trace_length: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RulesBased {
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    check_nested_fields: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct Rule {
    #[serde(default)]
    name: String,
    #[serde(default)]
    sample_rate: i64,
    #[serde(default)]
    drop: bool,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    conditions: Vec<Condition>,
    #[serde(default)]
    sampler: Option<Downstream>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct Condition {
    #[serde(default)]
    field: String,
    #[serde(default)]
    fields: Vec<String>,
    operator: RuleOperator,
    #[serde(default)]
    value: Option<ConditionValue>,
    #[serde(default)]
    datatype: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Downstream {
    #[serde(rename = "DynamicSampler", default)]
    dynamic: Option<Dynamic>,
    #[serde(rename = "EMADynamicSampler", default)]
    ema_dynamic: Option<EmaDynamic>,
    #[serde(rename = "EMAThroughputSampler", default)]
    ema_throughput: Option<EmaThroughput>,
    #[serde(rename = "WindowedThroughputSampler", default)]
    windowed: Option<Windowed>,
    #[serde(rename = "TotalThroughputSampler", default)]
    total: Option<Total>,
    #[serde(rename = "DeterministicSampler", default)]
    deterministic: Option<Deterministic>,
}

/// The samplers an environment (`Choice`) or a rule's `Sampler` (`Downstream`) may name.
struct Samplers<'a> {
    deterministic: Option<&'a Deterministic>,
    rules: Option<&'a RulesBased>,
    dynamic: Option<&'a Dynamic>,
    ema_dynamic: Option<&'a EmaDynamic>,
    ema_throughput: Option<&'a EmaThroughput>,
    windowed: Option<&'a Windowed>,
    total: Option<&'a Total>,
}

struct Importer {
    issues: Vec<Issue>,
    /// `(path, UseClusterSize)` of every throughput sampler.
    cluster_size: Vec<(String, bool)>,
}

fn positive(v: i64) -> Option<u64> {
    u64::try_from(v).ok().filter(|v| *v > 0)
}

fn nonzero(v: f64) -> Option<f64> {
    (v != 0.0).then_some(v)
}

impl Importer {
    fn issue(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.issues.push(Issue::new(path, message));
    }

    fn not_negative(&mut self, v: i64, path: &str) {
        if v < 0 {
            self.issue(path, format!("must not be negative, got {v}"));
        }
    }

    fn deterministic(&mut self, d: &Deterministic, at: &str) -> SamplerPolicy {
        self.not_negative(d.sample_rate, &format!("{at}.SampleRate"));
        SamplerPolicy::Deterministic(DeterministicPolicy {
            // Refinery's default for a missing (zero) rate is 1.
            sample_rate: positive(d.sample_rate).unwrap_or(1),
            hash: DeterministicHash::RefinerySha1,
        })
    }

    fn dynamic(&mut self, d: &Dynamic, at: &str) -> SamplerPolicy {
        if d.sample_rate < 1 {
            self.issue(
                format!("{at}.SampleRate"),
                format!("must be >= 1, got {}", d.sample_rate),
            );
        }
        self.not_negative(d.max_keys, &format!("{at}.MaxKeys"));
        SamplerPolicy::Dynamic(DynamicPolicy {
            sample_rate: positive(d.sample_rate).unwrap_or(1),
            clear_frequency: d.clear_frequency.filter(|i| i.nanos > 0),
            field_list: d.field_list.clone(),
            use_trace_length: d.use_trace_length,
            max_keys: positive(d.max_keys),
            unit: Default::default(),
        })
    }

    fn ema_dynamic(&mut self, d: &EmaDynamic, at: &str) -> SamplerPolicy {
        self.not_negative(d.goal_sample_rate, &format!("{at}.GoalSampleRate"));
        self.not_negative(d.max_keys, &format!("{at}.MaxKeys"));
        SamplerPolicy::EmaDynamic(EmaDynamicPolicy {
            goal_sample_rate: positive(d.goal_sample_rate),
            adjustment_interval: d.adjustment_interval.filter(|i| i.nanos > 0),
            weight: nonzero(d.weight),
            age_out_value: nonzero(d.age_out_value),
            burst_multiple: nonzero(d.burst_multiple),
            burst_detection_delay: (d.burst_detection_delay > 0).then_some(d.burst_detection_delay),
            field_list: d.field_list.clone(),
            use_trace_length: d.use_trace_length,
            max_keys: positive(d.max_keys),
            unit: Default::default(),
        })
    }

    fn ema_throughput(&mut self, d: &EmaThroughput, at: &str) -> SamplerPolicy {
        self.not_negative(d.goal_throughput_per_sec, &format!("{at}.GoalThroughputPerSec"));
        self.not_negative(d.initial_sample_rate, &format!("{at}.InitialSampleRate"));
        self.not_negative(d.max_keys, &format!("{at}.MaxKeys"));
        self.cluster_size
            .push((format!("{at}.UseClusterSize"), d.use_cluster_size));
        SamplerPolicy::EmaThroughput(EmaThroughputPolicy {
            goal_throughput_per_sec: positive(d.goal_throughput_per_sec).map(|g| g as f64),
            initial_sample_rate: positive(d.initial_sample_rate),
            adjustment_interval: d.adjustment_interval.filter(|i| i.nanos > 0),
            weight: nonzero(d.weight),
            age_out_value: nonzero(d.age_out_value),
            burst_multiple: nonzero(d.burst_multiple),
            burst_detection_delay: (d.burst_detection_delay > 0).then_some(d.burst_detection_delay),
            field_list: d.field_list.clone(),
            use_trace_length: d.use_trace_length,
            max_keys: positive(d.max_keys),
            unit: Default::default(),
        })
    }

    fn windowed(&mut self, d: &Windowed, at: &str) -> SamplerPolicy {
        self.not_negative(d.goal_throughput_per_sec, &format!("{at}.GoalThroughputPerSec"));
        self.not_negative(d.max_keys, &format!("{at}.MaxKeys"));
        self.cluster_size
            .push((format!("{at}.UseClusterSize"), d.use_cluster_size));
        SamplerPolicy::WindowedThroughput(WindowedThroughputPolicy {
            goal_throughput_per_sec: positive(d.goal_throughput_per_sec).map(|g| g as f64),
            update_frequency: d.update_frequency.filter(|i| i.nanos > 0),
            lookback_frequency: d.lookback_frequency.filter(|i| i.nanos > 0),
            field_list: d.field_list.clone(),
            use_trace_length: d.use_trace_length,
            max_keys: positive(d.max_keys),
            unit: Default::default(),
        })
    }

    fn total(&mut self, d: &Total, at: &str) -> SamplerPolicy {
        self.not_negative(d.goal_throughput_per_sec, &format!("{at}.GoalThroughputPerSec"));
        self.not_negative(d.max_keys, &format!("{at}.MaxKeys"));
        self.cluster_size
            .push((format!("{at}.UseClusterSize"), d.use_cluster_size));
        SamplerPolicy::TotalThroughput(TotalThroughputPolicy {
            goal_throughput_per_sec: positive(d.goal_throughput_per_sec).map(|g| g as f64),
            clear_frequency: d.clear_frequency.filter(|i| i.nanos > 0),
            field_list: d.field_list.clone(),
            use_trace_length: d.use_trace_length,
            max_keys: positive(d.max_keys),
            unit: Default::default(),
        })
    }

    fn rules(&mut self, r: &RulesBased, at: &str) -> SamplerPolicy {
        if r.check_nested_fields {
            self.issue(
                format!("{at}.CheckNestedFields"),
                "not supported: Tailsift reads flat OTLP attributes (nested JSON values are not expanded)",
            );
        }
        let rules = r
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| self.rule(rule, &format!("{at}.Rules[{i}]")))
            .collect();
        SamplerPolicy::Rules(RulesPolicy {
            rules,
            unmatched: Unmatched::Keep,
        })
    }

    fn rule(&mut self, r: &Rule, at: &str) -> SamplingRule {
        let scope = match r.scope.as_str() {
            "" | "trace" => RuleScope::Trace,
            "span" => RuleScope::Span,
            other => {
                self.issue(
                    format!("{at}.Scope"),
                    format!("must be `trace` or `span`, got `{other}`"),
                );
                RuleScope::Trace
            }
        };
        let conditions = r
            .conditions
            .iter()
            .enumerate()
            .map(|(i, c)| self.condition(c, &format!("{at}.Conditions[{i}]")))
            .collect();
        let mut rule = SamplingRule {
            name: r.name.clone(),
            scope,
            conditions,
            ..SamplingRule::default()
        };
        // Refinery: a downstream sampler wins over Drop and SampleRate; then
        // Drop; then the rate, where a rate below 1 keeps nothing.
        if let Some(s) = &r.sampler {
            rule.sampler = self.downstream(s, &format!("{at}.Sampler")).map(Box::new);
        } else if r.drop || r.sample_rate < 1 {
            rule.drop = true;
        } else {
            rule.sample_rate = positive(r.sample_rate);
        }
        rule
    }

    fn condition(&mut self, c: &Condition, at: &str) -> RuleCondition {
        let datatype = match c.datatype.as_str() {
            "" => None,
            "string" => Some(RuleDatatype::String),
            "int" => Some(RuleDatatype::Int),
            "float" => Some(RuleDatatype::Float),
            "bool" => Some(RuleDatatype::Bool),
            other => {
                self.issue(
                    format!("{at}.Datatype"),
                    format!("must be string, int, float or bool, got `{other}`"),
                );
                None
            }
        };
        RuleCondition {
            field: (!c.field.is_empty()).then(|| c.field.clone()),
            fields: c.fields.clone(),
            operator: c.operator,
            value: c.value.clone(),
            datatype,
        }
    }

    fn downstream(&mut self, d: &Downstream, at: &str) -> Option<SamplerPolicy> {
        self.exactly_one(
            Samplers {
                deterministic: d.deterministic.as_ref(),
                rules: None,
                dynamic: d.dynamic.as_ref(),
                ema_dynamic: d.ema_dynamic.as_ref(),
                ema_throughput: d.ema_throughput.as_ref(),
                windowed: d.windowed.as_ref(),
                total: d.total.as_ref(),
            },
            at,
        )
    }

    fn choice(&mut self, c: &Choice, at: &str) -> Option<SamplerPolicy> {
        self.exactly_one(
            Samplers {
                deterministic: c.deterministic.as_ref(),
                rules: c.rules.as_ref(),
                dynamic: c.dynamic.as_ref(),
                ema_dynamic: c.ema_dynamic.as_ref(),
                ema_throughput: c.ema_throughput.as_ref(),
                windowed: c.windowed.as_ref(),
                total: c.total.as_ref(),
            },
            at,
        )
    }

    /// The one sampler given (an environment's, or a rule's downstream one); none or several is
    /// an issue at `at`.
    fn exactly_one(&mut self, s: Samplers<'_>, at: &str) -> Option<SamplerPolicy> {
        let mut found = Vec::new();
        if let Some(d) = s.deterministic {
            found.push(self.deterministic(d, &format!("{at}.DeterministicSampler")));
        }
        if let Some(r) = s.rules {
            found.push(self.rules(r, &format!("{at}.RulesBasedSampler")));
        }
        if let Some(d) = s.dynamic {
            found.push(self.dynamic(d, &format!("{at}.DynamicSampler")));
        }
        if let Some(d) = s.ema_dynamic {
            found.push(self.ema_dynamic(d, &format!("{at}.EMADynamicSampler")));
        }
        if let Some(d) = s.ema_throughput {
            found.push(self.ema_throughput(d, &format!("{at}.EMAThroughputSampler")));
        }
        if let Some(d) = s.windowed {
            found.push(self.windowed(d, &format!("{at}.WindowedThroughputSampler")));
        }
        if let Some(d) = s.total {
            found.push(self.total(d, &format!("{at}.TotalThroughputSampler")));
        }
        if found.len() != 1 {
            self.issue(at, format!("exactly one sampler must be given, found {}", found.len()));
        }
        found.into_iter().next()
    }
}

/// Parses a Refinery v2 rules file and converts the sampler of
/// `environment` (`__default__` when `None`) into a native document.
pub(crate) fn import_refinery_rules(text: &str, environment: Option<&str>) -> Result<PolicyDocument, PolicyError> {
    let de = serde_yaml::Deserializer::from_str(text);
    let file: RulesFile = serde_path_to_error::deserialize(de).map_err(|e| PolicyError::from_path_error(e, ""))?;
    match file.rules_version {
        Some(2) => {}
        Some(v) => {
            return Err(PolicyError::Invalid(vec![Issue::new(
                "RulesVersion",
                format!("unsupported rules version {v}: only Refinery v2 rules files (RulesVersion: 2) are supported"),
            )]))
        }
        None => {
            return Err(PolicyError::Invalid(vec![Issue::new(
                "RulesVersion",
                "missing: a Refinery v2 rules file starts with `RulesVersion: 2`",
            )]))
        }
    }
    let env = environment.unwrap_or(DEFAULT_ENVIRONMENT);
    let Some(choice) = file.samplers.get(env) else {
        let present: Vec<&str> = file.samplers.keys().map(String::as_str).collect();
        let message = if present.is_empty() {
            "no samplers are defined".to_string()
        } else if environment.is_none() {
            format!(
                "no `{DEFAULT_ENVIRONMENT}` sampler; Tailsift runs one policy per cluster, so choose one of the \
                 environments present ({}) with `PolicyDocument::from_refinery_rules_yaml_env`",
                present.join(", ")
            )
        } else {
            format!("no sampler for environment `{env}`; present: {}", present.join(", "))
        };
        return Err(PolicyError::Invalid(vec![Issue::new("Samplers", message)]));
    };
    let mut imp = Importer {
        issues: Vec::new(),
        cluster_size: Vec::new(),
    };
    let sampler = imp.choice(choice, &format!("Samplers.{env}"));
    // Refinery's throughput goals are per instance unless UseClusterSize is
    // set; Tailsift has one budget scope per document.
    let cluster = imp.cluster_size.iter().filter(|(_, c)| *c).count();
    let budget_scope = if cluster == imp.cluster_size.len() {
        BudgetScope::Cluster
    } else if cluster == 0 {
        BudgetScope::Worker
    } else {
        let paths: Vec<String> = imp.cluster_size.iter().map(|(p, _)| p.clone()).collect();
        imp.issue(
            paths[0].clone(),
            format!(
                "all throughput samplers must agree on UseClusterSize (one budget scope per policy): {}",
                paths.join(", ")
            ),
        );
        BudgetScope::Cluster
    };
    if !imp.issues.is_empty() {
        return Err(PolicyError::Invalid(imp.issues));
    }
    let Some(sampler) = sampler else {
        return Err(PolicyError::Invalid(vec![Issue::new("Samplers", "no sampler")]));
    };
    let mut doc = PolicyDocument::new(vec![NamedPolicy::new(
        format!("refinery/{env}"),
        PolicyKind::Sampler(sampler),
    )]);
    doc.budget_scope = budget_scope;
    Ok(doc)
}

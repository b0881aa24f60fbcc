//! Which format a policy document is written in, told from its content, so that a user can
//! bring a native document, an OpenTelemetry Collector `tail_sampling` configuration or Refinery
//! rules without saying which.
//!
//! Depends on the error type only; `load.rs` parses with the detected format.

use std::fmt;

use serde_yaml::Value;

use crate::error::PolicyError;

/// A policy document format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyFormat {
    /// Tailsift's native document, YAML or JSON.
    Native,
    /// The OpenTelemetry Collector's `tail_sampling` processor: a bare policy list, the
    /// processor's configuration, or a whole collector configuration holding it.
    OtelTailSampling,
    /// Honeycomb Refinery's rules file (`rules.yaml`, `RulesVersion: 2`).
    RefineryRules,
}

impl PolicyFormat {
    /// Every format, in the order detection reports them.
    pub const ALL: [PolicyFormat; 3] = [
        PolicyFormat::Native,
        PolicyFormat::OtelTailSampling,
        PolicyFormat::RefineryRules,
    ];

    /// The canonical name: `native`, `otel_tail_sampling`, `refinery_rules`.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyFormat::Native => "native",
            PolicyFormat::OtelTailSampling => "otel_tail_sampling",
            PolicyFormat::RefineryRules => "refinery_rules",
        }
    }

    /// Parses a format name: the canonical names and the short forms `yaml`, `json` (native),
    /// `otel`, `refinery`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "native" | "yaml" | "json" => Some(PolicyFormat::Native),
            "otel" | "otel_tail_sampling" | "tail_sampling" => Some(PolicyFormat::OtelTailSampling),
            "refinery" | "refinery_rules" | "rules" => Some(PolicyFormat::RefineryRules),
            _ => None,
        }
    }
}

impl fmt::Display for PolicyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Top-level keys only the collector's `tail_sampling` configuration (or a collector config) has.
const OTEL_KEYS: &[&str] = &[
    "decision_wait",
    "decision_wait_after_root_received",
    "num_traces",
    "expected_new_traces_per_sec",
    "decision_cache",
    "drop_pending_traces_on_shutdown",
    "maximum_trace_size_bytes",
    "block_on_overflow",
    "processors",
    "receivers",
    "exporters",
    "service",
    "connectors",
    "extensions",
];

/// Top-level keys only a native document has.
const NATIVE_KEYS: &[&str] = &["version", "semantics", "budget_scope", "decision"];

/// Top-level keys of Refinery's rules file.
const REFINERY_KEYS: &[&str] = &["RulesVersion", "Samplers"];

/// Tells the format of `text` from its shape. A document that fits several formats is an error
/// naming them (pass the format explicitly then); one that fits none says what each looks like.
pub fn detect(text: &str) -> Result<PolicyFormat, PolicyError> {
    let root: Value = serde_yaml::from_str(text).map_err(|e| PolicyError::parse(".", e.to_string()))?;
    let root = match root {
        Value::Tagged(t) => t.value,
        v => v,
    };
    let mut could = std::collections::BTreeSet::new();
    let mut why = Vec::new();
    match &root {
        Value::Sequence(items) => {
            // Only the collector's policy list is a bare list.
            if items.iter().all(|i| i.get("type").is_some()) {
                could.insert(PolicyFormat::OtelTailSampling);
            } else {
                why.push("a bare list is an OTel policy list, whose entries each need `type`");
            }
        }
        Value::Mapping(m) => {
            for (k, _) in m {
                let Some(key) = k.as_str() else { continue };
                if REFINERY_KEYS.contains(&key) {
                    could.insert(PolicyFormat::RefineryRules);
                    why.push("Refinery keys (RulesVersion/Samplers)");
                }
                if OTEL_KEYS.contains(&key) || key == "tail_sampling" || key.starts_with("tail_sampling/") {
                    could.insert(PolicyFormat::OtelTailSampling);
                    why.push("collector keys (decision_wait, processors, tail_sampling, ...)");
                }
                if NATIVE_KEYS.contains(&key) {
                    could.insert(PolicyFormat::Native);
                    why.push("native keys (version, semantics, budget_scope, decision)");
                }
            }
            if let Some(Value::Sequence(policies)) = m.get("policies") {
                let typed = policies.iter().filter(|p| p.get("type").is_some()).count();
                if typed > 0 {
                    could.insert(PolicyFormat::OtelTailSampling);
                    why.push("policies with `type:` (OTel)");
                }
                if typed < policies.len() {
                    could.insert(PolicyFormat::Native);
                    why.push("policies without `type:` (native)");
                }
                if policies.is_empty() && could.is_empty() {
                    could.insert(PolicyFormat::Native);
                    could.insert(PolicyFormat::OtelTailSampling);
                }
            }
        }
        Value::Null => return Err(PolicyError::parse(".", "the policy document is empty")),
        _ => {}
    }
    why.dedup();
    let could: Vec<PolicyFormat> = could.into_iter().collect();
    match could.as_slice() {
        [one] => Ok(*one),
        [] => Err(PolicyError::parse(
            ".",
            "not a policy document in any known format: expected a native document (`policies:` \
             whose entries name a rule type such as `status_code:`), an OTel tail_sampling \
             configuration (a policy list with `type:`, `policies:` with `type:` entries, or a \
             collector config with processors.tail_sampling) or Refinery rules (`RulesVersion`, \
             `Samplers`)",
        )),
        many => Err(PolicyError::parse(
            ".",
            format!(
                "ambiguous policy document: it could be {} ({}); set the format explicitly",
                many.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(" or "),
                if why.is_empty() {
                    "nothing tells them apart".to_string()
                } else {
                    why.join(", ")
                }
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Result<PolicyFormat, String> {
        detect(text).map_err(|e| e.to_string())
    }

    #[test]
    fn native_documents() {
        assert_eq!(
            d("policies:\n  - name: e\n    status_code: {codes: [ERROR]}\n"),
            Ok(PolicyFormat::Native)
        );
        assert_eq!(d("version: 2\npolicies: []\n"), Ok(PolicyFormat::Native));
        assert_eq!(
            d(r#"{"policies": [{"name": "a", "always": {}}]}"#),
            Ok(PolicyFormat::Native)
        );
    }

    #[test]
    fn otel_documents() {
        let list = "- name: e\n  type: status_code\n  status_code: {status_codes: [ERROR]}\n";
        assert_eq!(d(list), Ok(PolicyFormat::OtelTailSampling));
        assert_eq!(
            d("policies:\n  - name: e\n    type: status_code\n    status_code: {status_codes: [ERROR]}\n"),
            Ok(PolicyFormat::OtelTailSampling)
        );
        assert_eq!(
            d("decision_wait: 10s\npolicies: []\n"),
            Ok(PolicyFormat::OtelTailSampling)
        );
        assert_eq!(
            d("processors:\n  tail_sampling:\n    policies: []\nservice: {}\n"),
            Ok(PolicyFormat::OtelTailSampling)
        );
        assert_eq!(
            d("tail_sampling:\n  policies: []\n"),
            Ok(PolicyFormat::OtelTailSampling)
        );
    }

    #[test]
    fn refinery_rules() {
        assert_eq!(
            d("RulesVersion: 2\nSamplers:\n  __default__:\n    DeterministicSampler:\n      SampleRate: 1\n"),
            Ok(PolicyFormat::RefineryRules)
        );
    }

    #[test]
    fn ambiguous_and_unknown_documents_name_the_formats() {
        let e = d("policies: []\n").unwrap_err();
        assert!(
            e.contains("ambiguous") && e.contains("native") && e.contains("otel_tail_sampling"),
            "{e}"
        );
        let e = d("version: 1\ndecision_wait: 5s\npolicies: []\n").unwrap_err();
        assert!(e.contains("native or otel_tail_sampling"), "{e}");
        let e = d("hello: world\n").unwrap_err();
        assert!(e.contains("not a policy document"), "{e}");
        assert!(d("").unwrap_err().contains("empty"));
        assert!(d("[1, 2]").unwrap_err().contains("not a policy document"));
        assert!(d("{{{").is_err());
    }

    #[test]
    fn names() {
        for f in PolicyFormat::ALL {
            assert_eq!(PolicyFormat::from_name(f.as_str()), Some(f));
        }
        assert_eq!(PolicyFormat::from_name("otel"), Some(PolicyFormat::OtelTailSampling));
        assert_eq!(PolicyFormat::from_name("yaml"), Some(PolicyFormat::Native));
        assert_eq!(PolicyFormat::from_name("xml"), None);
    }
}

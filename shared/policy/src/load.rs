//! Loading a policy document: parse (native YAML/JSON or the collector's
//! `tail_sampling` configuration), then validate by compiling it. This is
//! the one module that sees the document model, the importer and the
//! engine together, so that none of those depends on another's caller.

use crate::document::PolicyDocument;
use crate::engine::PolicyEngine;
use crate::error::PolicyError;
use crate::otel_import::import_tail_sampling;

impl PolicyDocument {
    /// Parses a native YAML document and validates it.
    ///
    /// Errors carry the path of the problem (`policies[1].latency: missing
    /// field `threshold_ms` at line 4 column 5`).
    pub fn from_yaml(text: &str) -> Result<Self, PolicyError> {
        let de = serde_yaml::Deserializer::from_str(text);
        let doc: PolicyDocument =
            serde_path_to_error::deserialize(de).map_err(|e| PolicyError::from_path_error(e, ""))?;
        doc.validate()?;
        Ok(doc)
    }

    /// Parses a native JSON document and validates it.
    pub fn from_json(text: &str) -> Result<Self, PolicyError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let doc: PolicyDocument =
            serde_path_to_error::deserialize(&mut de).map_err(|e| PolicyError::from_path_error(e, ""))?;
        de.end().map_err(|e| PolicyError::parse(".", e.to_string()))?;
        doc.validate()?;
        Ok(doc)
    }

    /// Checks everything that compilation checks (names, ranges, regexes,
    /// allocations, nesting) and reports every problem with its path.
    pub fn validate(&self) -> Result<(), PolicyError> {
        PolicyEngine::compile(self).map(|_| ())
    }

    /// Imports the OpenTelemetry Collector `tail_sampling` processor
    /// configuration, unchanged: a mapping with a `policies:` list (other
    /// keys such as `decision_wait`, `num_traces`,
    /// `expected_new_traces_per_sec` or `decision_cache` are ignored;
    /// `sample_on_first_match` is honoured), or a collector config whose
    /// `processors` contain exactly one `tail_sampling` processor.
    ///
    /// The result has [`Semantics::OtelTailSampling`](crate::Semantics::OtelTailSampling) and is validated
    /// (OTTL conditions are compiled: errors name the condition and column).
    pub fn from_otel_tail_sampling_yaml(text: &str) -> Result<Self, PolicyError> {
        let doc = import_tail_sampling(text)?;
        doc.validate()?;
        Ok(doc)
    }
}

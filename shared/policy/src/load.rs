//! Loading a policy document: parse (native YAML/JSON or the collector's
//! `tail_sampling` configuration), then validate by compiling it. This is
//! the one module that sees the document model, the importer and the
//! engine together, so that none of those depends on another's caller.

use crate::document::PolicyDocument;
use crate::engine::PolicyEngine;
use crate::error::PolicyError;
use crate::format::{detect, PolicyFormat};
use crate::otel_import::import_tail_sampling;
use crate::refinery_import::import_refinery_rules;

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
    /// configuration, unchanged: a bare policy list, a mapping with a
    /// `policies:` list and the processor's options (mapped onto
    /// [`DecisionOptions`](crate::DecisionOptions), see the crate docs;
    /// unknown options are errors), or a collector config whose
    /// `processors` contain exactly one `tail_sampling` processor.
    ///
    /// The result has [`Semantics::OtelTailSampling`](crate::Semantics::OtelTailSampling) and is validated
    /// (OTTL conditions are compiled: errors name the condition and column).
    pub fn from_otel_tail_sampling_yaml(text: &str) -> Result<Self, PolicyError> {
        let doc = import_tail_sampling(text)?;
        doc.validate()?;
        Ok(doc)
    }

    /// Imports a Honeycomb Refinery v2 rules file (`rules.yaml`:
    /// `RulesVersion: 2`, `Samplers: {__default__: {...}, <env>: {...}}`),
    /// using the `__default__` sampler. Errors name the environments present
    /// when there is no `__default__`; see
    /// [`Self::from_refinery_rules_yaml_env`].
    ///
    /// The result is a native document with one policy
    /// (`refinery/__default__`) of the corresponding sampler type, and is
    /// validated. Unknown keys are errors with their path.
    pub fn from_refinery_rules_yaml(text: &str) -> Result<Self, PolicyError> {
        let doc = import_refinery_rules(text, None)?;
        doc.validate()?;
        Ok(doc)
    }

    /// Like [`Self::from_refinery_rules_yaml`], for the sampler of
    /// `environment` (a key of `Samplers`).
    pub fn from_refinery_rules_yaml_env(text: &str, environment: &str) -> Result<Self, PolicyError> {
        let doc = import_refinery_rules(text, Some(environment))?;
        doc.validate()?;
        Ok(doc)
    }

    /// Parses and validates a document in `format`, or in the format [`detect`] tells from its
    /// content when `format` is `None`; returns the document and the format it was read as.
    /// Native documents are read as JSON when they start with `{` (JSON error positions), as
    /// YAML otherwise.
    pub fn parse(text: &str, format: Option<PolicyFormat>) -> Result<(Self, PolicyFormat), PolicyError> {
        let format = match format {
            Some(f) => f,
            None => detect(text)?,
        };
        let doc = match format {
            PolicyFormat::Native if text.trim_start().starts_with('{') => Self::from_json(text)?,
            PolicyFormat::Native => Self::from_yaml(text)?,
            PolicyFormat::OtelTailSampling => Self::from_otel_tail_sampling_yaml(text)?,
            PolicyFormat::RefineryRules => Self::from_refinery_rules_yaml(text)?,
        };
        Ok((doc, format))
    }
}

//! Values carried inside `PolicyUpdate` fields as text: the document formats and the live
//! sampler settings (JSON).

use serde::{Deserialize, Serialize};

use crate::v1::PolicyUpdate;

/// How a policy document is written (`PolicyUpdate.format`, `PolicyUpdate.shadow_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentFormat {
    /// `yaml`: Tailsift's native policy format in YAML.
    Yaml,
    /// `json`: the native format in JSON.
    Json,
    /// `otel_tail_sampling`: an OpenTelemetry Collector `tail_sampling` processor configuration.
    OtelTailSampling,
    /// `refinery_rules`: Honeycomb Refinery's rules file.
    RefineryRules,
}

/// A format name this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown policy format `{0}`")]
pub struct UnknownFormat(pub String);

impl DocumentFormat {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentFormat::Yaml => "yaml",
            DocumentFormat::Json => "json",
            DocumentFormat::OtelTailSampling => "otel_tail_sampling",
            DocumentFormat::RefineryRules => "refinery_rules",
        }
    }
}

impl std::str::FromStr for DocumentFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        match s {
            "yaml" => Ok(DocumentFormat::Yaml),
            "json" => Ok(DocumentFormat::Json),
            "otel_tail_sampling" => Ok(DocumentFormat::OtelTailSampling),
            "refinery_rules" => Ok(DocumentFormat::RefineryRules),
            other => Err(UnknownFormat(other.to_string())),
        }
    }
}

impl std::fmt::Display for DocumentFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sampler settings that are safe to change while workers run, set on the coordinators and
/// streamed to every worker (`PolicyUpdate.settings_json`). `None` (the default): each worker
/// keeps the value from its own configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SamplerSettings {
    /// `decision.decision_wait`: the longest a trace is buffered after its first span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_wait_ms: Option<u64>,
    /// `decision.send_delay`: the wait after the root span before deciding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_delay_ms: Option<u64>,
    /// `memory.soft_limit_bytes`: above it the oldest traces are decided early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_limit_bytes: Option<u64>,
    /// `memory.hard_limit_bytes`: above it stress relief decides span by span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_limit_bytes: Option<u64>,
    /// `memory.stress_probability`: the fraction kept under stress relief, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stress_probability: Option<f64>,
}

// `stress_probability` is validated (by the coordinator) to be a finite number in 0..=1, so
// equality is total.
impl Eq for SamplerSettings {}

/// `PolicyUpdate.settings_json` is not valid settings JSON.
#[derive(Debug, thiserror::Error)]
#[error("settings: {0}")]
pub struct SettingsError(#[from] serde_json::Error);

impl PolicyUpdate {
    /// The live sampler settings carried by this update (`None`: never set).
    pub fn sampler_settings(&self) -> Result<Option<SamplerSettings>, SettingsError> {
        if self.settings_json.is_empty() {
            return Ok(None);
        }
        Ok(Some(serde_json::from_str(&self.settings_json)?))
    }

    /// The format of `document`.
    pub fn policy_format(&self) -> Result<DocumentFormat, UnknownFormat> {
        self.format.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip_and_settings_parse() {
        for f in [
            DocumentFormat::Yaml,
            DocumentFormat::Json,
            DocumentFormat::OtelTailSampling,
            DocumentFormat::RefineryRules,
        ] {
            assert_eq!(f.as_str().parse::<DocumentFormat>().unwrap(), f);
        }
        assert!("toml".parse::<DocumentFormat>().is_err());
        let mut u = PolicyUpdate::default();
        assert_eq!(u.sampler_settings().unwrap(), None);
        u.settings_json = r#"{"send_delay_ms":250}"#.into();
        assert_eq!(u.sampler_settings().unwrap().unwrap().send_delay_ms, Some(250));
        u.settings_json = r#"{"unknown":1}"#.into();
        assert!(u.sampler_settings().is_err());
    }
}

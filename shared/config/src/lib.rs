//! Layered configuration (defaults, YAML file, `TAILSIFT_*` environment, `--set` flags) with errors
//! that name the key.
//!
//! Precedence, lowest to highest:
//! 1. the defaults of the config struct (`#[serde(default)]` everywhere, documented on each field);
//! 2. the YAML file given with `--config`;
//! 3. environment variables `TAILSIFT_<SECTION>__<KEY>[__<KEY>...]`, e.g.
//!    `TAILSIFT_KAFKA__BROKERS=k1:9092,k2:9092` sets `kafka.brokers` (the value is read as YAML, so
//!    numbers, booleans and durations such as `30s` work);
//! 4. flags: dedicated ones (`--kafka-brokers`) and the generic `--set kafka.brokers=...`.
//!
//! Unknown keys are errors that name the full path of the key (`kafka.brokerz`), and so are values
//! of the wrong type. After loading, [`Validate::validate`] checks ranges and cross-field rules;
//! its errors also name the key.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};

/// Everything that can go wrong while loading configuration. Every variant names where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{origin}: not valid YAML: {source}")]
    Yaml { origin: String, source: serde_yaml::Error },
    #[error("{origin}: key `{key}`: {reason}")]
    Key {
        origin: String,
        key: String,
        reason: String,
    },
    #[error("invalid config: key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    /// A validation error for `key`.
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Cross-field and range checks run after loading.
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError>;
}

/// The environment variable prefix.
pub const ENV_PREFIX: &str = "TAILSIFT_";

/// Layers of configuration, applied in order onto the struct's defaults.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// YAML text and where it came from.
    pub file: Option<(String, String)>,
    /// `(variable, value)` pairs; only `TAILSIFT_*` variables containing `__` are used.
    pub env: Vec<(String, String)>,
    /// `key.path=value` overrides (flags).
    pub sets: Vec<(String, String)>,
}

impl Sources {
    /// Reads the file (if any) and the process environment.
    pub fn from_process(file: Option<&Path>, sets: Vec<(String, String)>) -> Result<Self, ConfigError> {
        let file = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                Some((p.display().to_string(), text))
            }
            None => None,
        };
        Ok(Sources {
            file,
            env: std::env::vars().collect(),
            sets,
        })
    }

    /// Loads `T`, applying every layer, and validates it.
    pub fn load<T: DeserializeOwned + Validate>(&self) -> Result<T, ConfigError> {
        let t: T = self.load_unvalidated()?;
        t.validate()?;
        Ok(t)
    }

    /// Loads `T` without running [`Validate`].
    pub fn load_unvalidated<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let mut root = Value::Mapping(Mapping::new());
        let mut origin = "defaults".to_string();
        if let Some((name, text)) = &self.file {
            origin = name.clone();
            let v: Value = serde_yaml::from_str(text).map_err(|source| ConfigError::Yaml {
                origin: name.clone(),
                source,
            })?;
            match v {
                Value::Null => {}
                Value::Mapping(_) => root = v,
                _ => {
                    return Err(ConfigError::Key {
                        origin: name.clone(),
                        key: "<root>".into(),
                        reason: "the config file must be a YAML mapping".into(),
                    })
                }
            }
        }
        // Validate the file on its own first, so an error names the file rather than a later layer.
        if self.file.is_some() {
            deserialize::<T>(root.clone(), &origin)?;
        }
        for (var, raw) in &self.env {
            let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if !rest.contains("__") {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            let origin = format!("environment variable {var}");
            set_path(&mut root, &path, parse_scalar(raw), &origin)?;
            deserialize::<T>(root.clone(), &origin)?;
        }
        for (key, raw) in &self.sets {
            let origin = format!("flag `--set {key}=...`");
            let (path, entry) = split_key(key).map_err(|reason| ConfigError::Key {
                origin: origin.clone(),
                key: key.clone(),
                reason: reason.to_string(),
            })?;
            // A `[map key]` names an entry of a string map (librdkafka properties, headers):
            // its value is taken as written.
            let value = if entry {
                Value::String(raw.clone())
            } else {
                parse_scalar(raw)
            };
            set_path(&mut root, &path, value, &origin)?;
            deserialize::<T>(root.clone(), &origin)?;
        }
        deserialize(root, &origin)
    }
}

/// Splits a `--set` key on `.`; a last segment in brackets is taken whole, so map entries whose
/// keys contain dots can be set: `kafka.properties[fetch.wait.max.ms]`. Returns the path and
/// whether it ends in such an entry.
fn split_key(key: &str) -> Result<(Vec<String>, bool), &'static str> {
    match key.split_once('[') {
        None => Ok((key.split('.').map(str::to_string).collect(), false)),
        Some((section, rest)) => {
            let entry = rest
                .strip_suffix(']')
                .filter(|e| !e.is_empty() && !e.contains(['[', ']']))
                .ok_or("expected `section.map[entry key]` with the brackets last")?;
            let mut path: Vec<String> = section.split('.').map(str::to_string).collect();
            path.push(entry.to_string());
            Ok((path, true))
        }
    }
}

/// Why a `--set` argument is not `KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetArgError {
    /// No `=` in the argument.
    #[error("expected KEY=VALUE, got `{0}`")]
    NoEquals(String),
    /// Nothing before the `=`.
    #[error("empty key in `{0}`")]
    EmptyKey(String),
}

/// Parses `key=value` as given to `--set`.
pub fn parse_set(s: &str) -> Result<(String, String), SetArgError> {
    let (k, v) = s.split_once('=').ok_or_else(|| SetArgError::NoEquals(s.to_string()))?;
    if k.is_empty() {
        return Err(SetArgError::EmptyKey(s.to_string()));
    }
    Ok((k.trim().to_string(), v.to_string()))
}

fn parse_scalar(raw: &str) -> Value {
    // Read as YAML so numbers, booleans and lists work; fall back to the literal string.
    match serde_yaml::from_str::<Value>(raw) {
        Ok(Value::Mapping(_)) | Err(_) => Value::String(raw.to_string()),
        Ok(Value::Null) if !raw.trim().is_empty() && raw.trim() != "null" && raw.trim() != "~" => {
            Value::String(raw.to_string())
        }
        Ok(v) => v,
    }
}

fn set_path(root: &mut Value, path: &[String], value: Value, origin: &str) -> Result<(), ConfigError> {
    let mut cur = root;
    for (i, seg) in path.iter().enumerate() {
        if seg.is_empty() {
            return Err(ConfigError::Key {
                origin: origin.into(),
                key: path.join("."),
                reason: "empty path segment".into(),
            });
        }
        let map = match cur {
            Value::Mapping(m) => m,
            Value::Null => {
                *cur = Value::Mapping(Mapping::new());
                match cur {
                    Value::Mapping(m) => m,
                    _ => unreachable!(),
                }
            }
            _ => {
                return Err(ConfigError::Key {
                    origin: origin.into(),
                    key: path[..i].join("."),
                    reason: "is not a section, cannot set a key inside it".into(),
                })
            }
        };
        let k = Value::String(seg.clone());
        if i + 1 == path.len() {
            map.insert(k, value);
            return Ok(());
        }
        cur = map.entry(k).or_insert(Value::Null);
    }
    Ok(())
}

fn deserialize<T: DeserializeOwned>(v: Value, origin: &str) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::Key {
            origin: origin.to_string(),
            key,
            reason: e.into_inner().to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::time::Duration;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Kafka {
        brokers: String,
        partitions: u32,
        #[serde(with = "humantime_serde")]
        timeout: Duration,
    }
    impl Default for Kafka {
        fn default() -> Self {
            Kafka {
                brokers: "localhost:9092".into(),
                partitions: 12,
                timeout: Duration::from_secs(5),
            }
        }
    }
    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(default, deny_unknown_fields)]
    struct Cfg {
        kafka: Kafka,
    }
    impl Validate for Cfg {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.kafka.partitions == 0 {
                return Err(ConfigError::invalid("kafka.partitions", "must be at least 1"));
            }
            Ok(())
        }
    }

    fn src(file: Option<&str>, env: &[(&str, &str)], sets: &[(&str, &str)]) -> Sources {
        Sources {
            file: file.map(|f| ("test.yaml".to_string(), f.to_string())),
            env: env.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            sets: sets.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
        }
    }

    #[test]
    fn defaults_file_env_flags_in_order() {
        let c: Cfg = src(None, &[], &[]).load().unwrap();
        assert_eq!(c, Cfg::default());
        let c: Cfg = src(Some("kafka:\n  brokers: file:1\n  partitions: 3\n"), &[], &[])
            .load()
            .unwrap();
        assert_eq!(c.kafka.brokers, "file:1");
        assert_eq!(c.kafka.partitions, 3);
        let c: Cfg = src(
            Some("kafka:\n  brokers: file:1\n  partitions: 3\n"),
            &[
                ("TAILSIFT_KAFKA__BROKERS", "env:1"),
                ("TAILSIFT_KAFKA__TIMEOUT", "30s"),
                ("HOME", "/root"),
                ("TAILSIFT_LOG_LEVEL", "x"),
            ],
            &[],
        )
        .load()
        .unwrap();
        assert_eq!(c.kafka.brokers, "env:1");
        assert_eq!(c.kafka.timeout, Duration::from_secs(30));
        assert_eq!(c.kafka.partitions, 3);
        let c: Cfg = src(
            Some("kafka:\n  brokers: file:1\n"),
            &[("TAILSIFT_KAFKA__BROKERS", "env:1")],
            &[("kafka.brokers", "flag:1"), ("kafka.partitions", "7")],
        )
        .load()
        .unwrap();
        assert_eq!(c.kafka.brokers, "flag:1");
        assert_eq!(c.kafka.partitions, 7);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = src(Some("kafka:\n  brokerz: x\n"), &[], &[])
            .load::<Cfg>()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("test.yaml") && e.contains("kafka") && e.contains("brokerz"),
            "{e}"
        );
        let e = src(Some("kafka:\n  partitions: many\n"), &[], &[])
            .load::<Cfg>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("kafka.partitions"), "{e}");
        let e = src(None, &[("TAILSIFT_KAFKA__NOPE", "1")], &[])
            .load::<Cfg>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("TAILSIFT_KAFKA__NOPE") && e.contains("nope"), "{e}");
        let e = src(None, &[], &[("kafka.partitions", "0")])
            .load::<Cfg>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("kafka.partitions") && e.contains("at least 1"), "{e}");
        let e = src(None, &[], &[("kafka.brokers.deeper", "0")])
            .load::<Cfg>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("kafka.brokers"), "{e}");
        let e = src(Some("- a\n- b\n"), &[], &[]).load::<Cfg>().unwrap_err().to_string();
        assert!(e.contains("mapping"), "{e}");
        let e = src(Some("kafka: [\n"), &[], &[]).load::<Cfg>().unwrap_err().to_string();
        assert!(e.contains("not valid YAML"), "{e}");
    }

    #[test]
    fn bracketed_keys_set_map_entries_whose_keys_have_dots() {
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        struct Kafka {
            properties: std::collections::BTreeMap<String, String>,
        }
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        struct Root {
            kafka: Kafka,
        }
        let load = |sets: Vec<(String, String)>| {
            Sources {
                sets,
                ..Default::default()
            }
            .load_unvalidated::<Root>()
        };
        let r = load(vec![
            ("kafka.properties[fetch.wait.max.ms]".into(), "20".into()),
            ("kafka.properties[client.rack]".into(), "eu-1a".into()),
        ])
        .unwrap();
        assert_eq!(
            r.kafka.properties.get("fetch.wait.max.ms").map(String::as_str),
            Some("20")
        );
        assert_eq!(r.kafka.properties.get("client.rack").map(String::as_str), Some("eu-1a"));
        for bad in [
            "kafka.properties[a]b",
            "kafka.properties[]",
            "kafka.properties[a",
            "k[a][b]",
        ] {
            let e = load(vec![(bad.into(), "1".into())]).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn parse_set_splits_on_first_equals() {
        assert_eq!(parse_set("a.b=c=d").unwrap(), ("a.b".to_string(), "c=d".to_string()));
        assert_eq!(
            parse_set("nothing").unwrap_err().to_string(),
            "expected KEY=VALUE, got `nothing`"
        );
        assert_eq!(parse_set("=x").unwrap_err().to_string(), "empty key in `=x`");
    }

    #[test]
    fn empty_file_means_defaults() {
        let c: Cfg = src(Some(""), &[], &[]).load().unwrap();
        assert_eq!(c, Cfg::default());
    }
}

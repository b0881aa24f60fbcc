//! `tailsift standalone` configuration. Every field has a documented default; the receiver,
//! limit, decision, memory and policy sections are the ingest node's and the sampler's own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tailsift_config::{ConfigError, Validate};
use tailsift_ingest::config as ingest;
use tailsift_sampler::config as sampler;

/// `tailsift standalone` configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct StandaloneConfig {
    pub standalone: Settings,
    /// OTLP receivers (the ingest node's section). Defaults `0.0.0.0:4317` and `0.0.0.0:4318`.
    pub otlp: ingest::OtlpConfig,
    /// The Zipkin receiver (the ingest node's section). Default `0.0.0.0:9411`.
    pub zipkin: ingest::ZipkinConfig,
    /// The Jaeger receivers (the ingest node's section). Defaults UDP `6831`/`6832`, HTTP
    /// `14268`, gRPC `14250`.
    pub jaeger: ingest::JaegerConfig,
    /// `/metrics` (every role's metrics: one process, one registry), `/healthz`, `/readyz`.
    /// Default `0.0.0.0:9464`.
    pub admin: ingest::AdminConfig,
    /// Request limits (the ingest node's section).
    pub limits: ingest::Limits,
    pub coordinator: CoordinatorSection,
    /// When traces are decided (the sampler's section).
    pub decision: sampler::DecisionConfig,
    /// Buffer limits (the sampler's section).
    pub memory: sampler::MemoryConfig,
    /// The policy published as the first version when the coordinator has none (the sampler's
    /// section). Default: keep errors, traces slower than 1 s and 10% of the rest.
    pub policy: sampler::PolicyConfig,
    pub export: ExportSection,
}

/// What only standalone has.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The coordinator's Raft state and the admin token file.
    /// Default `.tailsift/standalone`.
    pub data_dir: PathBuf,
    /// Partitions of the in-process log (traces are spread over them by trace ID, as over the
    /// Kafka topic's). Default `4`.
    pub partitions: i32,
    /// Capacity of the in-process log: bytes of records not yet committed by the sampler. When
    /// full, receivers answer with retryable errors (gRPC `UNAVAILABLE`, HTTP 503), as when
    /// Kafka is full. Default `268435456` (256 MiB).
    pub log_max_bytes: usize,
    /// Bearer token (role admin) of the admin API. Default: generated at the first start and
    /// kept in `<data_dir>/admin-token`.
    pub admin_token: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from(".tailsift/standalone"),
            partitions: 4,
            log_max_bytes: 256 << 20,
            admin_token: None,
        }
    }
}

/// The single-node coordinator.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoordinatorSection {
    /// Its Raft and policy Watch gRPC port (the sampler watches it). Default `127.0.0.1:9700`.
    pub raft_listen: SocketAddr,
    /// The admin API (`tailsift policy ...`, `curl`). Default `127.0.0.1:9710` (loopback only).
    pub admin_listen: SocketAddr,
}

impl Default for CoordinatorSection {
    fn default() -> Self {
        CoordinatorSection {
            raft_listen: "127.0.0.1:9700".parse().unwrap(),
            admin_listen: "127.0.0.1:9710".parse().unwrap(),
        }
    }
}

/// Where kept traces go.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportSection {
    /// An OTLP endpoint (`http://host:4317` for `otlp_grpc`, `http://host:4318` for `otlp_http`).
    /// Default none: kept traces are written as OTLP/JSON lines to `output`.
    pub endpoint: Option<String>,
    /// `otlp_grpc` or `otlp_http`, with `endpoint`. Default `otlp_grpc`.
    pub kind: sampler::ExportKind,
    /// Extra headers sent to `endpoint`.
    pub headers: BTreeMap<String, String>,
    /// Without `endpoint`: one OTLP/JSON `ExportTraceServiceRequest` per kept trace per line,
    /// appended to this file; `-` for stdout. Default `-`.
    pub output: String,
}

impl Default for ExportSection {
    fn default() -> Self {
        ExportSection {
            endpoint: None,
            kind: sampler::ExportKind::OtlpGrpc,
            headers: BTreeMap::new(),
            output: "-".into(),
        }
    }
}

impl StandaloneConfig {
    /// The ingest node's configuration (`kafka.*` is not used on the in-process log, except the
    /// record size limit).
    pub fn ingest_config(&self) -> ingest::IngestConfig {
        ingest::IngestConfig {
            otlp: self.otlp.clone(),
            zipkin: self.zipkin.clone(),
            jaeger: self.jaeger.clone(),
            admin: self.admin.clone(),
            kafka: ingest::KafkaConfig::default(),
            limits: self.limits.clone(),
        }
    }

    /// The sampler's configuration, watching the coordinator at `coordinator` (`http://host:port`).
    pub fn sampler_config(&self, coordinator: &str) -> sampler::SamplerConfig {
        let export = match &self.export.endpoint {
            Some(endpoint) => sampler::ExportConfig {
                kind: self.export.kind,
                endpoint: endpoint.clone(),
                headers: self.export.headers.clone(),
                ..Default::default()
            },
            None => sampler::ExportConfig {
                kind: sampler::ExportKind::JsonLines,
                output: self.export.output.clone(),
                // Show kept traces promptly.
                batch_timeout: Duration::from_millis(50),
                ..Default::default()
            },
        };
        sampler::SamplerConfig {
            admin: sampler::AdminConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
            },
            kafka: sampler::KafkaConfig::default(),
            decision: self.decision.clone(),
            memory: self.memory.clone(),
            export,
            policy: self.policy.clone(),
            coordinator: sampler::CoordinatorConfig {
                endpoints: vec![coordinator.to_string()],
                // The coordinator lives and dies with this process: its current version is the
                // one to apply at start, no copy of an older one.
                state_file: None,
                worker_id: Some("standalone".into()),
                ..Default::default()
            },
        }
    }
}

impl Validate for StandaloneConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.standalone;
        if s.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("standalone.data_dir", "must not be empty"));
        }
        if !(1..=1024).contains(&s.partitions) {
            return Err(ConfigError::invalid(
                "standalone.partitions",
                "must be between 1 and 1024",
            ));
        }
        let record = ingest::KafkaConfig::default().max_record_bytes;
        if s.log_max_bytes < 2 * record {
            return Err(ConfigError::invalid(
                "standalone.log_max_bytes",
                format!("must be at least {} (two records of the largest size)", 2 * record),
            ));
        }
        if s.admin_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError::invalid(
                "standalone.admin_token",
                "must be at least 16 characters",
            ));
        }
        let e = &self.export;
        if let Some(endpoint) = &e.endpoint {
            if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
                return Err(ConfigError::invalid(
                    "export.endpoint",
                    "must start with http:// or https://",
                ));
            }
            if !matches!(e.kind, sampler::ExportKind::OtlpGrpc | sampler::ExportKind::OtlpHttp) {
                return Err(ConfigError::invalid(
                    "export.kind",
                    "must be otlp_grpc or otlp_http (without export.endpoint kept traces are written as JSON lines)",
                ));
            }
        }
        if e.output.is_empty() {
            return Err(ConfigError::invalid(
                "export.output",
                "must be `-` (stdout) or a file path",
            ));
        }
        // The roles' own rules, on the sections they share.
        self.ingest_config().validate()?;
        self.sampler_config("http://127.0.0.1:9700").validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tailsift_config::Sources;

    fn load(yaml: &str, sets: &[(&str, &str)]) -> Result<StandaloneConfig, ConfigError> {
        Sources {
            file: Some(("s.yaml".into(), yaml.into())),
            sets: sets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }
        .load()
    }

    #[test]
    fn defaults_write_json_lines_to_stdout_and_an_endpoint_switches_to_otlp() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.standalone.data_dir, PathBuf::from(".tailsift/standalone"));
        assert_eq!(c.coordinator.admin_listen, "127.0.0.1:9710".parse().unwrap());
        let s = c.sampler_config("http://127.0.0.1:9700");
        assert_eq!(s.export.kind, sampler::ExportKind::JsonLines);
        assert_eq!(s.export.output, "-");
        assert_eq!(s.coordinator.endpoints, vec!["http://127.0.0.1:9700".to_string()]);
        assert_eq!(s.coordinator.state_file, None);

        let c = load(
            "export:\n  endpoint: http://jaeger:4318\n  kind: otlp_http\n",
            &[("standalone.partitions", "8")],
        )
        .unwrap();
        assert_eq!(c.standalone.partitions, 8);
        let s = c.sampler_config("http://127.0.0.1:9700");
        assert_eq!(
            (s.export.kind, s.export.endpoint.as_str()),
            (sampler::ExportKind::OtlpHttp, "http://jaeger:4318")
        );
        assert_eq!(c.ingest_config().otlp.grpc_listen, "0.0.0.0:4317".parse().unwrap());
    }

    #[test]
    fn errors_name_the_key() {
        let e = load("standalone:\n  partitionz: 3\n", &[]).unwrap_err().to_string();
        assert!(e.contains("partitionz"), "{e}");
        let e = load("standalone:\n  partitions: 0\n", &[]).unwrap_err().to_string();
        assert!(e.contains("standalone.partitions"), "{e}");
        let e = load("standalone:\n  log_max_bytes: 1000\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("standalone.log_max_bytes"), "{e}");
        let e = load("standalone:\n  admin_token: short\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("standalone.admin_token"), "{e}");
        let e = load("export:\n  endpoint: jaeger:4317\n", &[]).unwrap_err().to_string();
        assert!(e.contains("export.endpoint"), "{e}");
        let e = load("export:\n  endpoint: http://j:4317\n  kind: kafka\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("export.kind"), "{e}");
        // The sampler's own rules apply to its sections.
        let e = load("decision:\n  send_delay: 1m\n  decision_wait: 10s\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("decision.send_delay"), "{e}");
        let e = load("", &[("export.output", "")]).unwrap_err().to_string();
        assert!(e.contains("export.output"), "{e}");
    }
}

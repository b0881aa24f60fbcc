//! Sampler configuration. Every field has a documented default.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use tailsift_config::{ConfigError, Validate};
use tailsift_kafka::{Connection, TopicSpec};

/// `tailsift sampler` configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SamplerConfig {
    pub admin: AdminConfig,
    pub kafka: KafkaConfig,
    pub decision: DecisionConfig,
    pub memory: MemoryConfig,
    pub export: ExportConfig,
    pub policy: PolicyConfig,
    pub coordinator: CoordinatorConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// `/metrics`, `/healthz`, `/readyz`. Default `0.0.0.0:9465`.
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "0.0.0.0:9465".parse().unwrap(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Default `127.0.0.1:9092`.
    pub brokers: String,
    /// Default `tailsift-sampler`.
    pub client_id: String,
    /// Consumer group shared by all samplers. Default `tailsift-samplers`.
    pub group_id: String,
    /// The spans topic written by ingest nodes. Default `tailsift-spans`.
    pub topic: String,
    /// Topic of decisions: lets the next owner of a partition skip traces already decided (no
    /// duplicates after a rebalance or crash) and route late spans. Created with the spans
    /// topic's partition count. Default `tailsift-decisions`.
    pub decisions_topic: String,
    /// Decisions read back when a partition is assigned. Default `200000`.
    pub decisions_replay: i64,
    /// How often committable offsets are committed. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Start this many records before the committed offset when a partition is assigned (the
    /// records before the committed offset are ignored). `0` for Apache Kafka; set it to at least
    /// the producers' records per batch on brokers whose fetch skips the rest of a batch when
    /// asked for an offset inside it (tansu 0.6). Default `0`.
    pub resume_lookback_records: i64,
    /// Extra librdkafka properties, applied last.
    pub properties: std::collections::BTreeMap<String, String>,
    /// How the topics this sampler creates (the decisions topic, the `kafka` export topic) are
    /// created when missing; their partition count is the spans topic's.
    pub topic_spec: CreatedTopicSpec,
}

/// Settings of the topics a sampler creates (`kafka.topic_spec`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CreatedTopicSpec {
    /// Replication factor. Default `1`; use 3 on a production cluster (with `configs`
    /// `min.insync.replicas: "2"`).
    pub replication_factor: i32,
    /// Topic-level configs (e.g. `min.insync.replicas`, `retention.ms`). Default none.
    pub configs: std::collections::BTreeMap<String, String>,
}

impl Default for CreatedTopicSpec {
    fn default() -> Self {
        CreatedTopicSpec {
            replication_factor: 1,
            configs: Default::default(),
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            client_id: "tailsift-sampler".into(),
            group_id: "tailsift-samplers".into(),
            topic: "tailsift-spans".into(),
            decisions_topic: "tailsift-decisions".into(),
            decisions_replay: 200_000,
            commit_interval: Duration::from_secs(1),
            resume_lookback_records: 0,
            properties: Default::default(),
            topic_spec: CreatedTopicSpec::default(),
        }
    }
}

impl KafkaConfig {
    pub fn connection(&self) -> Connection {
        Connection {
            brokers: self.brokers.clone(),
            client_id: self.client_id.clone(),
            properties: self.properties.clone(),
        }
    }

    /// The spec of a topic this sampler creates, with `partitions` (the spans topic's count).
    /// Every topic a sampler creates uses it.
    pub fn created_topic_spec(&self, partitions: i32) -> TopicSpec {
        TopicSpec {
            create: true,
            partitions,
            replication_factor: self.topic_spec.replication_factor,
            configs: self.topic_spec.configs.clone(),
        }
    }
}

/// When a trace is decided.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecisionConfig {
    /// Wait after the root span arrived, for stragglers. Default `2s`.
    #[serde(with = "humantime_serde")]
    pub send_delay: Duration,
    /// Longest wait after the first span. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub decision_wait: Duration,
    /// A trace with more spans is decided at once on what has arrived; later spans follow that
    /// decision as late spans. Default `10000`. (`max_spans_per_trace` is accepted too.)
    #[serde(alias = "max_spans_per_trace")]
    pub max_trace_spans: usize,
    /// Same, in encoded bytes. Default `16777216` (16 MiB).
    pub max_trace_bytes: usize,
    /// Record timestamps later than the worker's wall clock + this are clamped to it (counted in
    /// `tailsift_sampler_clock_skewed_records_total`). Default `30s`.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// How long decisions are remembered for late spans. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// Most decisions remembered (kept and dropped each). Default `1000000`.
    pub cache_max: usize,
    /// Decision timer resolution. Default `100ms`.
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
}

impl Default for DecisionConfig {
    fn default() -> Self {
        DecisionConfig {
            send_delay: Duration::from_secs(2),
            decision_wait: Duration::from_secs(30),
            max_trace_spans: 10_000,
            max_trace_bytes: 16 << 20,
            max_clock_skew: Duration::from_secs(30),
            cache_ttl: Duration::from_secs(300),
            cache_max: 1_000_000,
            tick: Duration::from_millis(100),
        }
    }
}

/// Buffer limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Buffered span bytes at which the oldest traces are decided early. Default `536870912`.
    pub soft_limit_bytes: usize,
    /// Buffered span bytes at which stress relief starts: each arriving span is decided by the
    /// consistent probabilistic function alone, without buffering. Default `805306368`.
    pub hard_limit_bytes: usize,
    /// Keep probability used during stress relief. Default `0.1`.
    pub stress_probability: f64,
    /// How a buffered trace holds its spans: `memory` (the span bytes themselves), `index` (a
    /// compact summary every policy is evaluated on, and where its records are in the spans log:
    /// kept traces are read back from the log to be exported) or `hybrid` (span bytes up to
    /// `span_bytes_budget`, then new and growing traces as an index). The limits above count
    /// what is held either way. Default `hybrid`.
    pub mode: BufferMode,
    /// `hybrid` mode: span bytes held in memory before traces switch to an index. Must be
    /// below `soft_limit_bytes`. Default: half of `soft_limit_bytes`.
    pub span_bytes_budget: Option<usize>,
}

impl MemoryConfig {
    /// `span_bytes_budget`, or its default.
    pub fn span_bytes_budget(&self) -> usize {
        self.span_bytes_budget.unwrap_or(self.soft_limit_bytes / 2)
    }
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            soft_limit_bytes: 512 << 20,
            hard_limit_bytes: 768 << 20,
            stress_probability: 0.1,
            mode: BufferMode::Hybrid,
            span_bytes_budget: None,
        }
    }
}

/// How buffered traces hold their spans (`memory.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BufferMode {
    Memory,
    Index,
    Hybrid,
}

/// Exporter kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportKind {
    OtlpGrpc,
    OtlpHttp,
    Kafka,
    /// One OTLP/JSON `ExportTraceServiceRequest` per line, to `export.output` (`-`: stdout).
    JsonLines,
}

/// Where kept traces go.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportConfig {
    /// `otlp_grpc`, `otlp_http`, `kafka` or `json_lines`. Default `otlp_grpc`.
    pub kind: ExportKind,
    /// OTLP endpoint: `http://host:4317` for gRPC, `http://host:4318` for HTTP (`/v1/traces` is
    /// appended). Default `http://127.0.0.1:4317`.
    pub endpoint: String,
    /// Extra headers (e.g. authorization, X-Scope-OrgID for Tempo).
    pub headers: std::collections::BTreeMap<String, String>,
    /// Compress requests. Default `true`.
    pub gzip: bool,
    /// Per-request timeout. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Spans per export request (at least one whole trace). Default `2000`.
    pub batch_spans: usize,
    /// Longest wait to fill a batch. Default `200ms`.
    #[serde(with = "humantime_serde")]
    pub batch_timeout: Duration,
    /// Traces waiting for export; when full, consumption pauses. Default `10000`.
    pub queue_traces: usize,
    /// Retry backoff on retryable failures, doubling up to the max. Defaults `100ms` and `10s`.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Largest encoded (uncompressed) export request. Traces are packed whole while they fit; a
    /// larger trace is sent in several requests. Keep it under the backend's message limit (gRPC
    /// servers usually accept 4 MiB). Default `3145728` (3 MiB).
    pub max_request_bytes: usize,
    /// After retryable failures of one request for this long, the backend is probed: if it
    /// accepts other data the request is poison and goes to the dead-letter path (reason
    /// `retries_exhausted`); if it accepts nothing it is an outage and retries go on (nothing is
    /// dropped). Default `5m`.
    #[serde(with = "humantime_serde")]
    pub max_retry_time: Duration,
    /// Kafka topic for spans the backend refuses for good (same record format as the spans topic,
    /// with `tailsift.dead_letter.reason` and `tailsift.dead_letter.error` headers). Created at
    /// start like the decisions topic. Default none: refused spans are dropped (and counted).
    pub dead_letter_topic: Option<String>,
    /// With `kind: kafka`: the topic for kept traces (same record format as the spans topic).
    /// Default `tailsift-sampled`.
    pub kafka_topic: String,
    /// Largest record written to `kafka_topic` and to `dead_letter_topic` (a trace is split into
    /// several records with the same key); the producers' `message.max.bytes` is set above it.
    /// Default `900000`, as the ingest's `kafka.max_record_bytes`.
    pub kafka_max_record_bytes: usize,
    /// With `kind: json_lines`: the file kept traces are appended to, `-` for stdout. Default `-`.
    pub output: String,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            kind: ExportKind::OtlpGrpc,
            endpoint: "http://127.0.0.1:4317".into(),
            headers: Default::default(),
            gzip: true,
            timeout: Duration::from_secs(10),
            batch_spans: 2000,
            batch_timeout: Duration::from_millis(200),
            queue_traces: 10_000,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            max_request_bytes: 3 << 20,
            max_retry_time: Duration::from_secs(300),
            dead_letter_topic: None,
            kafka_topic: "tailsift-sampled".into(),
            kafka_max_record_bytes: 900_000,
            output: "-".into(),
        }
    }
}

/// Policy and hash seed (until the coordinator distributes them).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Policy file: native YAML/JSON, an OpenTelemetry Collector `tail_sampling` config (policy
    /// list, processor or collector config) or Refinery rules; the format is told from the content
    /// (see `format`). None: keep errors, keep traces slower than 1s, keep 10% of the rest.
    pub file: Option<std::path::PathBuf>,
    /// `auto` (told from the content), `native`, `otel` (an OpenTelemetry Collector
    /// `tail_sampling` policy list, processor config or collector config) or `refinery`
    /// (Refinery rules). Default `auto`.
    pub format: PolicyFormat,
    /// Cluster-wide hash seed for consistent probabilistic sampling. Default `0`.
    pub hash_seed: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            file: None,
            format: PolicyFormat::Auto,
            hash_seed: 0,
        }
    }
}

/// Policy versions from the coordinators. With no `endpoints` the worker uses `policy` only.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Coordinators' gRPC addresses (their `raft.listen`), `http://host:port`, or
    /// `https://host:port` for coordinators with `raft.tls` (then `tls.ca_file` is needed). The
    /// worker watches one and moves to the next when it fails. Default none (policy from `policy`
    /// only).
    pub endpoints: Vec<String>,
    /// Bearer token for the coordinators' Watch service: any token of their `admin.tokens`
    /// (a `read_only` one is enough). Also `TAILSIFT_COORDINATOR__TOKEN`. Default none (the
    /// coordinators refuse the watch with UNAUTHENTICATED).
    pub token: Option<String>,
    /// TLS for `https://` endpoints. Default none.
    pub tls: Option<CoordinatorTls>,
    /// Where the last applied version is kept, so a restart applies it with no coordinator
    /// reachable. Default none (a restart uses `policy` until a coordinator answers).
    pub state_file: Option<std::path::PathBuf>,
    /// How this worker names itself when it reports its applied version to the coordinators
    /// (`GET /v1/workers`). Default `<hostname>:<admin port>`.
    pub worker_id: Option<String>,
    /// Connect timeout per coordinator. Default `2s`.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Pause after every endpoint failed once, before trying them again. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub retry_interval: Duration,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            endpoints: Vec::new(),
            token: None,
            tls: None,
            state_file: None,
            worker_id: None,
            connect_timeout: Duration::from_secs(2),
            retry_interval: Duration::from_secs(1),
        }
    }
}

/// How `https://` coordinator endpoints are verified.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorTls {
    /// PEM CA certificate(s) the coordinators' `raft.tls` certificates are verified against.
    pub ca_file: std::path::PathBuf,
}

impl CoordinatorConfig {
    /// The gRPC client options (CA, token) of the coordinator watch.
    pub fn client_options(&self) -> Result<tailsift_proto::ClientOptions, ConfigError> {
        let ca = self
            .tls
            .as_ref()
            .map(|t| tailsift_proto::tls::read_ca("coordinator.tls.ca_file", &t.ca_file))
            .transpose()?;
        tailsift_proto::ClientOptions::new(ca, self.token.as_deref())
            .map_err(|e| ConfigError::invalid("coordinator.token", e.to_string()))
    }
}

/// The format of `policy.file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyFormat {
    /// Told from the content (`tailsift_policy::detect`).
    Auto,
    /// Tailsift's native document, YAML or JSON.
    Native,
    /// An OpenTelemetry Collector `tail_sampling` configuration (policy list, processor config
    /// or whole collector config).
    #[serde(alias = "otel_tail_sampling")]
    Otel,
    /// Honeycomb Refinery rules (`rules.yaml`).
    #[serde(alias = "refinery_rules")]
    Refinery,
}

impl PolicyFormat {
    /// The policy crate's format (`None`: detect).
    pub fn policy_format(self) -> Option<tailsift_policy::PolicyFormat> {
        match self {
            PolicyFormat::Auto => None,
            PolicyFormat::Native => Some(tailsift_policy::PolicyFormat::Native),
            PolicyFormat::Otel => Some(tailsift_policy::PolicyFormat::OtelTailSampling),
            PolicyFormat::Refinery => Some(tailsift_policy::PolicyFormat::RefineryRules),
        }
    }
}

impl Validate for SamplerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let k = &self.kafka;
        if k.brokers.trim().is_empty() {
            return Err(ConfigError::invalid("kafka.brokers", "must name at least one broker"));
        }
        for (key, v) in [
            ("kafka.group_id", &k.group_id),
            ("kafka.topic", &k.topic),
            ("kafka.decisions_topic", &k.decisions_topic),
        ] {
            if v.is_empty() {
                return Err(ConfigError::invalid(key, "must not be empty"));
            }
        }
        if k.decisions_topic == k.topic {
            return Err(ConfigError::invalid(
                "kafka.decisions_topic",
                "must differ from kafka.topic",
            ));
        }
        if k.resume_lookback_records < 0 {
            return Err(ConfigError::invalid(
                "kafka.resume_lookback_records",
                "must not be negative",
            ));
        }
        if k.decisions_replay < 0 {
            return Err(ConfigError::invalid("kafka.decisions_replay", "must not be negative"));
        }
        if k.topic_spec.replication_factor < 1 {
            return Err(ConfigError::invalid(
                "kafka.topic_spec.replication_factor",
                "must be at least 1",
            ));
        }
        if k.topic_spec.configs.keys().any(|c| c.trim().is_empty()) {
            return Err(ConfigError::invalid(
                "kafka.topic_spec.configs",
                "topic config names must not be empty",
            ));
        }
        let d = &self.decision;
        if d.decision_wait.is_zero() || d.send_delay > d.decision_wait {
            return Err(ConfigError::invalid(
                "decision.send_delay",
                "must be at most decision.decision_wait, which must be positive",
            ));
        }
        for (key, value) in [
            ("decision.max_trace_spans", d.max_trace_spans),
            ("decision.max_trace_bytes", d.max_trace_bytes),
            ("decision.cache_max", d.cache_max),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be positive"));
            }
        }
        if d.tick.is_zero() {
            return Err(ConfigError::invalid("decision.tick", "must be positive"));
        }
        let m = &self.memory;
        if m.soft_limit_bytes == 0 || m.hard_limit_bytes < m.soft_limit_bytes {
            return Err(ConfigError::invalid(
                "memory.hard_limit_bytes",
                "must be at least memory.soft_limit_bytes, which must be positive",
            ));
        }
        if m.mode == BufferMode::Hybrid && m.span_bytes_budget.is_some_and(|b| b >= m.soft_limit_bytes) {
            return Err(ConfigError::invalid(
                "memory.span_bytes_budget",
                "must be below memory.soft_limit_bytes in hybrid mode (past the soft limit the oldest traces are decided early, so a budget at or above it never switches a trace to an index)",
            ));
        }
        if !(0.0..=1.0).contains(&m.stress_probability) {
            return Err(ConfigError::invalid(
                "memory.stress_probability",
                "must be between 0 and 1",
            ));
        }
        let e = &self.export;
        let needs_endpoint = matches!(e.kind, ExportKind::OtlpGrpc | ExportKind::OtlpHttp);
        if !e.endpoint.starts_with("http://") && !e.endpoint.starts_with("https://") && needs_endpoint {
            return Err(ConfigError::invalid(
                "export.endpoint",
                "must start with http:// or https://",
            ));
        }
        if e.kind == ExportKind::JsonLines && e.output.is_empty() {
            return Err(ConfigError::invalid(
                "export.output",
                "must be `-` (stdout) or a file path",
            ));
        }
        if e.batch_spans == 0 || e.queue_traces == 0 {
            return Err(ConfigError::invalid(
                "export.batch_spans",
                "batch and queue sizes must be positive",
            ));
        }
        if e.kind == ExportKind::Kafka && (e.kafka_topic.is_empty() || e.kafka_topic == k.topic) {
            return Err(ConfigError::invalid(
                "export.kafka_topic",
                "must be set and differ from kafka.topic",
            ));
        }
        if e.initial_backoff.is_zero() || e.max_backoff < e.initial_backoff {
            return Err(ConfigError::invalid(
                "export.max_backoff",
                "must be at least export.initial_backoff, which must be positive",
            ));
        }
        if e.max_request_bytes < 1024 {
            return Err(ConfigError::invalid(
                "export.max_request_bytes",
                "must be at least 1024",
            ));
        }
        if e.kafka_max_record_bytes < 1024 {
            return Err(ConfigError::invalid(
                "export.kafka_max_record_bytes",
                "must be at least 1024",
            ));
        }
        if e.max_retry_time.is_zero() {
            return Err(ConfigError::invalid("export.max_retry_time", "must be positive"));
        }
        if let Some(t) = &e.dead_letter_topic {
            let taken =
                [&k.topic, &k.decisions_topic].contains(&t) || (e.kind == ExportKind::Kafka && t == &e.kafka_topic);
            if t.is_empty() || taken {
                return Err(ConfigError::invalid(
                    "export.dead_letter_topic",
                    "must be a topic of its own (not the spans, decisions or export topic)",
                ));
            }
        }
        let c = &self.coordinator;
        for (i, ep) in c.endpoints.iter().enumerate() {
            if !ep.starts_with("http://") && !ep.starts_with("https://") {
                return Err(ConfigError::invalid(
                    format!("coordinator.endpoints[{i}]"),
                    format!("`{ep}` must start with http:// or https://"),
                ));
            }
        }
        if c.worker_id.as_ref().is_some_and(|w| w.is_empty() || w.len() > 256) {
            return Err(ConfigError::invalid("coordinator.worker_id", "must be 1 to 256 bytes"));
        }
        if c.tls.is_none() {
            if let Some(i) = c.endpoints.iter().position(|e| e.starts_with("https://")) {
                return Err(ConfigError::invalid(
                    "coordinator.tls.ca_file",
                    format!("is required for the https endpoint coordinator.endpoints[{i}]"),
                ));
            }
        }
        if c.token.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::invalid("coordinator.token", "must not be empty"));
        }
        c.client_options()?;
        if c.connect_timeout.is_zero() {
            return Err(ConfigError::invalid("coordinator.connect_timeout", "must be positive"));
        }
        if c.retry_interval.is_zero() {
            return Err(ConfigError::invalid("coordinator.retry_interval", "must be positive"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod coordinator_tls_tests {
    use tailsift_config::Sources;

    fn load(sets: &[(&str, &str)]) -> Result<crate::SamplerConfig, tailsift_config::ConfigError> {
        Sources {
            sets: sets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            env: vec![("TAILSIFT_COORDINATOR__TOKEN".into(), "reader-token-0123456789".into())],
            ..Default::default()
        }
        .load()
    }

    #[test]
    fn https_endpoints_need_a_readable_ca_and_the_token_comes_from_the_environment() {
        let c = load(&[("coordinator.endpoints", "[http://c1:9700]")]).unwrap();
        assert_eq!(c.coordinator.token.as_deref(), Some("reader-token-0123456789"));
        let e = load(&[("coordinator.endpoints", "[http://c1:9700, https://c2:9700]")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("coordinator.tls.ca_file") && e.contains("endpoints[1]"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ca.pem").display().to_string();
        let e = load(&[
            ("coordinator.endpoints", "[https://c2:9700]"),
            ("coordinator.tls.ca_file", missing.as_str()),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("coordinator.tls.ca_file") && e.contains("cannot read"),
            "{e}"
        );
        std::fs::write(dir.path().join("ca.pem"), "not a certificate").unwrap();
        let e = load(&[
            ("coordinator.endpoints", "[https://c2:9700]"),
            ("coordinator.tls.ca_file", missing.as_str()),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("coordinator.tls.ca_file"), "{e}");
        let e = load(&[("coordinator.tls.ca_fil", "x")]).unwrap_err().to_string();
        assert!(e.contains("ca_fil"), "{e}");
    }
}

#[cfg(test)]
mod topic_spec_tests {
    use tailsift_config::Sources;

    fn load(yaml: &str) -> Result<crate::SamplerConfig, tailsift_config::ConfigError> {
        Sources {
            file: Some(("sampler.yaml".into(), yaml.into())),
            ..Default::default()
        }
        .load()
    }

    #[test]
    fn created_topics_take_the_replication_factor_and_configs() {
        let c = load("").unwrap();
        let spec = c.kafka.created_topic_spec(6);
        assert_eq!((spec.partitions, spec.replication_factor), (6, 1));
        assert!(spec.configs.is_empty() && spec.create);

        let c = load("kafka:\n  topic_spec:\n    replication_factor: 3\n    configs: {min.insync.replicas: \"2\", retention.ms: \"3600000\"}\n").unwrap();
        let spec = c.kafka.created_topic_spec(12);
        assert_eq!((spec.partitions, spec.replication_factor), (12, 3));
        assert_eq!(spec.configs["min.insync.replicas"], "2");
        assert_eq!(spec.configs["retention.ms"], "3600000");

        for (yaml, key) in [
            (
                "kafka: {topic_spec: {replication_factor: 0}}",
                "kafka.topic_spec.replication_factor",
            ),
            (
                "kafka: {topic_spec: {replication_factor: -1}}",
                "kafka.topic_spec.replication_factor",
            ),
            ("kafka: {topic_spec: {configs: {'': x}}}", "kafka.topic_spec.configs"),
            // The partition count is the spans topic's, not a setting.
            ("kafka: {topic_spec: {partitions: 3}}", "partitions"),
        ] {
            let e = load(yaml).unwrap_err().to_string();
            assert!(e.contains(key), "{yaml}: {e}");
        }
    }

    #[test]
    fn buffer_modes_and_the_hybrid_budget() {
        let c = load("").unwrap();
        assert_eq!(c.memory.mode, super::BufferMode::Hybrid);
        assert_eq!(
            c.memory.span_bytes_budget(),
            c.memory.soft_limit_bytes / 2,
            "half the soft limit"
        );
        let c = load("memory: {soft_limit_bytes: 1000, hard_limit_bytes: 2000}").unwrap();
        assert_eq!(c.memory.span_bytes_budget(), 500, "follows a lower soft limit");
        let c = load("memory: {mode: index}").unwrap();
        assert_eq!(c.memory.mode, super::BufferMode::Index);
        for (yaml, key) in [
            (
                "memory: {mode: hybrid, soft_limit_bytes: 1000, hard_limit_bytes: 2000, span_bytes_budget: 1000}",
                "memory.span_bytes_budget",
            ),
            ("memory: {mode: disk}", "mode"),
        ] {
            let e = load(yaml).unwrap_err().to_string();
            assert!(e.contains(key), "{yaml}: {e}");
        }
    }
}

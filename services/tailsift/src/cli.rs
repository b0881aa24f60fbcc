//! The command line: every subcommand and flag (clap), and how flags become config sources.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use tailsift_config::{parse_set, Sources};
use tailsift_telemetry::LogFormat;

/// Tailsift: a distributed tail-sampling cluster for distributed tracing.
///
/// Configuration precedence, lowest to highest: built-in defaults, the YAML file given with
/// --config, TAILSIFT_<SECTION>__<KEY> environment variables (e.g. TAILSIFT_KAFKA__BROKERS), and
/// flags (--set section.key=value and the dedicated flags). Unknown keys are errors.
#[derive(Parser, Debug)]
#[command(name = "tailsift", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run every role in one process, no external service: ingest (OTLP :4317/:4318, Zipkin
    /// :9411, Jaeger) on an in-process log, a sampler, a single-node coordinator with the admin API
    /// (127.0.0.1:9710; token printed at start, kept in <data dir>/admin-token), metrics (:9464).
    /// Kept traces go to --export-endpoint, or as OTLP/JSON lines to --output (stdout).
    Standalone(StandaloneArgs),
    /// Run an ingest node: OTLP/gRPC (:4317), OTLP/HTTP (:4318), Zipkin (:9411) and Jaeger (UDP
    /// :6831/:6832, HTTP :14268, gRPC :14250) in, Kafka out, one record per trace keyed by trace ID.
    Ingest(IngestArgs),
    /// Run a sampling worker: consume the spans topic in a consumer group, buffer whole traces,
    /// decide by policy, export kept traces (OTLP or Kafka), commit only past decided traces.
    Sampler(SamplerArgs),
    /// Run a coordinator node: Raft-replicated policy versions and hash seeds (on disk in
    /// --data-dir), the policy Watch stream for samplers and Raft on --raft-listen, the
    /// authenticated admin API on --admin-listen.
    Coordinator(CoordinatorArgs),
    /// Read, validate, publish and roll back the sampling policy through the admin API.
    Policy(AdminCommand<PolicyCommand>),
    /// Hash seed operations through the admin API.
    Seed(AdminCommand<SeedCommand>),
    /// Coordinator cluster state through the admin API.
    Cluster(AdminCommand<ClusterCommand>),
    /// Retroactive capture: export every trace of a past window that matches a condition, read
    /// back from Kafka (`tailsift capture --match COND --since 20m`; `list`, `status ID`,
    /// `cancel ID`).
    Capture(Box<CaptureArgs>),
    /// Capacity plan (docs/scaling.md): ingest nodes, samplers, partitions, brokers, memory,
    /// Kafka bandwidth and retention for a span rate, each figure with its formula. Offline: the
    /// per-core figures are the measured ones of docs/benchmarks.md unless given.
    Plan(Box<PlanArgs>),
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// S: spans per second at peak, over the whole cluster.
    #[arg(long)]
    pub spans_per_second: f64,
    /// W: decision.decision_wait, the longest a trace is buffered (30s, 500ms, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub decision_wait: std::time::Duration,
    /// T: average seconds a trace stays buffered (most traces: send_delay after their root span).
    /// [default: min(decision-wait, 10)]
    #[arg(long)]
    pub buffered_seconds: Option<f64>,
    /// B: average encoded (OTLP protobuf) span size, bytes.
    #[arg(long, default_value_t = 350.0)]
    pub avg_span_bytes: f64,
    /// N: average spans per trace.
    #[arg(long, default_value_t = 20.0)]
    pub spans_per_trace: f64,
    /// q: average spans per request the ingest nodes receive (SDK batches; 100 is where r_i was
    /// measured; the ingest cost curve scales r_i for others).
    #[arg(long, default_value_t = tailsift_capacity::curves::INGEST_REFERENCE_SPANS_PER_REQUEST)]
    pub spans_per_request: f64,
    /// R: rules in the sampling policy (3 is where r_s was measured; the engine's cost curve
    /// scales r_s for others).
    #[arg(long, default_value_t = tailsift_capacity::curves::SAMPLER_REFERENCE_POLICY_RULES)]
    pub policy_rules: f64,
    /// k: fraction of spans kept.
    #[arg(long, default_value_t = 0.1)]
    pub keep_fraction: f64,
    /// RF: replication factor of the spans topic.
    #[arg(long, default_value_t = 3)]
    pub replication_factor: u32,
    /// H: retention of the spans topic, hours.
    #[arg(long, default_value_t = 24.0)]
    pub retention_hours: f64,
    /// r_i: ingest spans per CPU-second (docs/benchmarks.md, at saturation).
    #[arg(long, default_value_t = tailsift_capacity::DEFAULT_INGEST_SPANS_PER_CPU_SECOND)]
    pub ingest_spans_per_cpu_second: f64,
    /// r_s: sampler spans per CPU-second (docs/benchmarks.md, at saturation).
    #[arg(long, default_value_t = tailsift_capacity::DEFAULT_SAMPLER_SPANS_PER_CPU_SECOND)]
    pub sampler_spans_per_cpu_second: f64,
    /// u: target CPU and broker bandwidth utilisation at peak.
    #[arg(long, default_value_t = 0.6)]
    pub target_utilisation: f64,
    /// m: resident bytes per encoded byte buffered by a sampler (docs/benchmarks.md).
    #[arg(long, default_value_t = tailsift_capacity::DEFAULT_MEMORY_RATIO)]
    pub memory_ratio: f64,
    /// c: compressed / uncompressed size on the brokers (lz4 on OTLP).
    #[arg(long, default_value_t = 0.5)]
    pub compression_ratio: f64,
    /// bw: write bandwidth of one broker, bytes per second (100MB, 1GB, or a number).
    #[arg(long, default_value = "100MB", value_parser = parse_bytes)]
    pub broker_write_bytes_per_second: f64,
    /// Cores per ingest node.
    #[arg(long, default_value_t = 2.0)]
    pub ingest_cores_per_node: f64,
    /// Cores per sampler (the production overlay gives 4).
    #[arg(long, default_value_t = 4.0)]
    pub sampler_cores: f64,
    /// M: largest container memory limit of a sampler (8GiB, 4096MiB, or bytes).
    #[arg(long, default_value = "8GiB", value_parser = parse_bytes)]
    pub sampler_max_memory: f64,
    /// Print the plan as JSON (every figure with its value, unit, formula and working).
    #[arg(long)]
    pub json: bool,
}

impl PlanArgs {
    pub fn inputs(&self) -> tailsift_capacity::Inputs {
        tailsift_capacity::Inputs {
            spans_per_second: self.spans_per_second,
            avg_span_bytes: self.avg_span_bytes,
            spans_per_trace: self.spans_per_trace,
            spans_per_request: self.spans_per_request,
            policy_rules: self.policy_rules,
            decision_wait_seconds: self.decision_wait.as_secs_f64(),
            buffered_seconds: self.buffered_seconds,
            keep_fraction: self.keep_fraction,
            replication_factor: self.replication_factor,
            retention_hours: self.retention_hours,
            ingest_spans_per_cpu_second: self.ingest_spans_per_cpu_second,
            sampler_spans_per_cpu_second: self.sampler_spans_per_cpu_second,
            target_utilisation: self.target_utilisation,
            memory_ratio: self.memory_ratio,
            compression_ratio: self.compression_ratio,
            broker_write_bytes_per_second: self.broker_write_bytes_per_second,
            ingest_cores_per_node: self.ingest_cores_per_node,
            sampler_cores: self.sampler_cores,
            sampler_max_memory_bytes: self.sampler_max_memory,
        }
    }
}

/// A byte count: a number, or a number with B, kB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB,
/// TiB (powers of 1024).
pub fn parse_bytes(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size such as 100MB or 8GiB"))?;
    let k: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024f64.powi(2),
        "GiB" => 1024f64.powi(3),
        "TiB" => 1024f64.powi(4),
        _ => return Err(format!("`{s}` is not a size such as 100MB or 8GiB")),
    };
    Ok(n * k)
}

#[derive(Args, Debug)]
pub struct StandaloneArgs {
    #[command(flatten)]
    pub common: Common,
    /// Coordinator state and admin token (standalone.data_dir). [default: .tailsift/standalone]
    #[arg(long)]
    pub data_dir: Option<String>,
    /// Kept traces as OTLP/JSON lines: `-` (stdout) or a file (export.output). [default: -]
    #[arg(long)]
    pub output: Option<String>,
    /// OTLP endpoint for kept traces instead of JSON lines (export.endpoint). [default: none]
    #[arg(long)]
    pub export_endpoint: Option<String>,
    /// Policy published as the first version (policy.file). [default: errors, slow > 1s, 10% of the rest]
    #[arg(long)]
    pub policy: Option<String>,
    /// OTLP/gRPC listen address (otlp.grpc_listen). [default: 0.0.0.0:4317]
    #[arg(long)]
    pub grpc_listen: Option<String>,
    /// OTLP/HTTP listen address (otlp.http_listen). [default: 0.0.0.0:4318]
    #[arg(long)]
    pub http_listen: Option<String>,
    /// Zipkin listen address (zipkin.listen). [default: 0.0.0.0:9411]
    #[arg(long)]
    pub zipkin_listen: Option<String>,
    /// /metrics, /healthz, /readyz listen address (admin.listen). [default: 0.0.0.0:9464]
    #[arg(long)]
    pub admin_listen: Option<String>,
    /// Admin API listen address (coordinator.admin_listen). [default: 127.0.0.1:9710]
    #[arg(long)]
    pub coordinator_listen: Option<String>,
}

#[derive(Args, Debug)]
pub struct CoordinatorArgs {
    #[command(flatten)]
    pub common: Common,
    /// Raft log, vote and snapshots (data_dir). [default: ./tailsift-coordinator]
    #[arg(long)]
    pub data_dir: Option<String>,
    /// This node's id, never reused (node_id). [default: 1]
    #[arg(long)]
    pub node_id: Option<String>,
    /// Raft and policy Watch gRPC listen address (raft.listen). [default: 0.0.0.0:9700]
    #[arg(long)]
    pub raft_listen: Option<String>,
    /// Admin API, /metrics, /healthz, /readyz listen address (admin.listen). [default: 0.0.0.0:9710]
    #[arg(long)]
    pub admin_listen: Option<String>,
    /// A member of the initial cluster, `ID=RAFT_HOST:PORT,ADMIN_HOST:PORT`; repeat for each
    /// (cluster.members, used only to bootstrap an empty data directory). [default: none]
    #[arg(long = "member", value_name = "ID=RAFT_ADDR,ADMIN_ADDR", value_parser = parse_member)]
    pub members: Vec<String>,
}

/// One `--member` flag as a YAML flow mapping.
pub fn parse_member(s: &str) -> Result<String, String> {
    let bad = || format!("expected ID=RAFT_HOST:PORT,ADMIN_HOST:PORT, got `{s}`");
    let (id, addrs) = s.split_once('=').ok_or_else(bad)?;
    let id: u64 = id.trim().parse().map_err(|_| bad())?;
    let (raft, admin) = addrs.split_once(',').ok_or_else(bad)?;
    let q = |v: &str| serde_json::to_string(v.trim()).unwrap_or_default();
    Ok(format!(
        "{{id: {id}, raft_addr: {}, admin_addr: {}}}",
        q(raft),
        q(admin)
    ))
}

/// Connection to a coordinator's admin API.
#[derive(Args, Debug)]
pub struct AdminConnection {
    /// Admin API base URL of any coordinator (writes are forwarded to the leader); https:// for
    /// coordinators with admin.tls. [default: http://127.0.0.1:9710] (`policy validate` and
    /// `policy test` work offline unless it is given.)
    #[arg(long, env = "TAILSIFT_ADMIN_URL", global = true)]
    pub admin: Option<String>,
    /// Bearer token (role admin for writes, read_only is enough for reads).
    #[arg(long, env = "TAILSIFT_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// PEM CA certificate to verify an https:// admin API with, in addition to the system's roots.
    #[arg(long, env = "TAILSIFT_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// Request timeout.
    #[arg(long, default_value = "30s", value_parser = parse_duration, global = true)]
    pub timeout: std::time::Duration,
}

/// Connection to a coordinator's admin API, then the command.
#[derive(Args, Debug)]
pub struct AdminCommand<C: Subcommand> {
    #[command(flatten)]
    pub conn: AdminConnection,
    #[command(subcommand)]
    pub command: C,
}

/// `tailsift capture --match COND --since 20m` starts a capture; `list`, `status ID`, `cancel ID`.
#[derive(Args, Debug)]
pub struct CaptureArgs {
    #[command(flatten)]
    pub conn: AdminConnection,
    #[command(flatten)]
    pub start: CaptureStart,
    #[command(subcommand)]
    pub command: Option<CaptureCommand>,
}

/// Start a capture (POST /v1/captures).
#[derive(Args, Debug)]
pub struct CaptureStart {
    /// An OTTL span condition: a trace matches when any of its spans does, e.g.
    /// 'resource.attributes["service.name"] == "checkout"'.
    #[arg(long = "match", value_name = "CONDITION", conflicts_with = "policy")]
    pub condition: Option<String>,
    /// Instead of --match: a policy file (any format); a trace matches when the policy keeps it.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The policy file's format (default: told from its content).
    #[arg(long, requires = "policy")]
    pub format: Option<String>,
    /// Where the window starts: a duration ago (20m, 2h) or @UNIX_MILLISECONDS.
    #[arg(long, value_parser = parse_time_ago)]
    pub since: Option<TimeAgo>,
    /// Where the window ends (default: now): a duration ago or @UNIX_MILLISECONDS.
    #[arg(long, value_parser = parse_time_ago)]
    pub until: Option<TimeAgo>,
    /// A note shown with the capture.
    #[arg(long)]
    pub description: Option<String>,
    /// Wait until the capture completed (printing progress on stderr), then print it.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Subcommand, Debug)]
pub enum CaptureCommand {
    /// Running and recent captures with their progress (GET /v1/captures).
    List,
    /// One capture (GET /v1/captures/ID); --wait: until it completed.
    Status {
        #[arg(value_name = "ID")]
        id: u64,
        #[arg(long)]
        wait: bool,
    },
    /// Cancel a running capture (DELETE /v1/captures/ID).
    Cancel {
        #[arg(value_name = "ID")]
        id: u64,
    },
}

pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration such as 30s"))?;
    match unit {
        "ms" => Ok(std::time::Duration::from_millis(n)),
        "s" | "" => Ok(std::time::Duration::from_secs(n)),
        "m" => Ok(std::time::Duration::from_secs(n * 60)),
        _ => Err(format!("`{s}` is not a duration such as 30s, 500ms or 2m")),
    }
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Print the current policy version (GET /v1/policy).
    Get,
    /// Validate FILE and publish it as a new version (PUT /v1/policy).
    Apply(PolicyFile),
    /// Validate FILE offline (parse and compile it as a sampler would), or with --admin on a
    /// running cluster (POST /v1/policy/validate). Exits non-zero when invalid.
    Validate(PolicyFile),
    /// Run test cases against FILE offline, like `promtool test rules`: each case names an
    /// OTLP/JSON traces file and the expected decision (keep, and the rule that decided). Exits
    /// non-zero when a case fails. See `tailsift_sampler::policy_test` for the cases format.
    Test {
        /// Policy document (any format).
        file: PathBuf,
        /// Cases file (YAML).
        cases: PathBuf,
        /// native, otel_tail_sampling or refinery_rules. [default: told from the content]
        #[arg(long)]
        format: Option<String>,
    },
    /// Replay a recorded window of the spans topic through FILE and the live policy, without
    /// exporting or committing anything, and print per rule the traces, spans and bytes each
    /// keeps and the difference (JSON). The live policy and seed come from the admin API
    /// (GET /v1/policy) unless --live (and --seed) are given.
    Whatif(Box<WhatifArgs>),
    /// Print the versions kept for rollback (GET /v1/policy/history).
    History,
    /// Publish an earlier VERSION again as a new version (POST /v1/policy/rollback).
    Rollback {
        /// The version to publish again (see `policy history`).
        #[arg(value_name = "VERSION")]
        target: u64,
    },
    /// Shadow policy: with FILE, validate it and set it as the shadow evaluated beside the live
    /// policy (PUT /v1/policy/shadow); with --clear, remove it (DELETE); with neither, print it
    /// and what it would keep, per worker and per rule (GET).
    Shadow {
        /// Candidate policy document.
        file: Option<PathBuf>,
        /// yaml, json, otel_tail_sampling or refinery_rules. [default: told from the content]
        #[arg(long, requires = "file")]
        format: Option<String>,
        /// Remove the shadow policy.
        #[arg(long, conflicts_with = "file")]
        clear: bool,
        /// Publish the shadow policy as the new live version and remove it, in one step
        /// (POST /v1/policy/shadow/promote, with the shadow revision read just before).
        #[arg(long, conflicts_with_all = ["file", "clear"])]
        promote: bool,
    },
}

#[derive(Args, Debug)]
pub struct PolicyFile {
    /// Policy document.
    pub file: PathBuf,
    /// yaml, json (native), otel_tail_sampling (an OpenTelemetry Collector tail_sampling policy
    /// list, processor or collector config) or refinery_rules (Refinery rules.yaml).
    /// [default: told from the content]
    #[arg(long)]
    pub format: Option<String>,
    /// `policy apply`: a note kept with the version (why it changed), shown in the history.
    #[arg(long)]
    pub note: Option<String>,
}

#[derive(Args, Debug)]
pub struct WhatifArgs {
    /// Candidate policy document (any format).
    pub file: PathBuf,
    /// The candidate's format: native, otel_tail_sampling or refinery_rules. [default: told from
    /// the content]
    #[arg(long)]
    pub format: Option<String>,
    /// Start of the window: a duration ago (30m, 90s) or `@UNIX_MS`.
    #[arg(long, value_parser = parse_time_ago)]
    pub since: TimeAgo,
    /// End of the window: a duration ago or `@UNIX_MS`. [default: now]
    #[arg(long, value_parser = parse_time_ago)]
    pub until: Option<TimeAgo>,
    /// Run the replay on the sampling workers (POST /v1/policy/whatif: each replays the
    /// partitions it owns, with the live policy and seed in force) instead of reading Kafka from
    /// here; waits up to --max-time for every partition's report.
    #[arg(long, conflicts_with_all = ["live", "seed"])]
    pub on_workers: bool,
    /// Kafka bootstrap brokers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    /// Spans topic.
    #[arg(long, default_value = "tailsift-spans")]
    pub topic: String,
    /// A librdkafka property for the reader (security.protocol, sasl.*, ssl.*); repeatable.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = parse_set)]
    pub kafka_properties: Vec<(String, String)>,
    /// The live policy to compare with, from a file instead of the admin API.
    #[arg(long)]
    pub live: Option<PathBuf>,
    /// The --live file's format. [default: told from the content]
    #[arg(long, requires = "live")]
    pub live_format: Option<String>,
    /// Cluster hash seed. [default: the admin API's current seed; 0 with --live]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Most traces held undecided; past it the oldest are decided early (counted).
    #[arg(long, default_value_t = 200_000)]
    pub max_traces: usize,
    /// Most record bytes held undecided; past it the oldest traces are decided early.
    #[arg(long, default_value_t = 256 << 20)]
    pub max_bytes: usize,
    /// Start this many records before each partition's first offset and skip them: 10000 for
    /// tansu 0.6 (see kafka.resume_lookback_records), 0 for Apache Kafka.
    #[arg(long, default_value_t = 0)]
    pub resume_lookback_records: i64,
    /// After every partition reached its end, read on until the topic was quiet this long.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub quiet: std::time::Duration,
    /// Stop reading after this long (the report then says `complete: false`).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub max_time: std::time::Duration,
}

/// A point in time given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeAgo {
    Ago(std::time::Duration),
    UnixMs(i64),
}

impl TimeAgo {
    pub fn unix_ms(self, now_ms: i64) -> i64 {
        match self {
            TimeAgo::Ago(d) => now_ms - d.as_millis() as i64,
            TimeAgo::UnixMs(ms) => ms,
        }
    }
}

pub fn parse_time_ago(s: &str) -> Result<TimeAgo, String> {
    match s.trim().strip_prefix('@') {
        Some(ms) => ms
            .parse()
            .map(TimeAgo::UnixMs)
            .map_err(|_| format!("`{s}` is not @UNIX_MILLISECONDS")),
        None => {
            let s = s.trim();
            match s.strip_suffix('h').and_then(|h| h.parse::<u64>().ok()) {
                Some(h) => Ok(TimeAgo::Ago(std::time::Duration::from_secs(h * 3600))),
                None => parse_duration(s).map(TimeAgo::Ago),
            }
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum SeedCommand {
    /// Schedule a new random hash seed, in force from the next policy version (POST /v1/seed/rotate).
    Rotate,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Members, leader, term, log and applied indexes (GET /v1/cluster/status).
    Status,
    /// Add a coordinator: it catches up as a learner, then becomes a voter (POST /v1/cluster/members).
    Add {
        /// The new node's id (its node_id; never reused).
        #[arg(long)]
        id: u64,
        /// Its Raft gRPC address, host:port.
        #[arg(long)]
        raft_addr: String,
        /// Its admin HTTP address, host:port.
        #[arg(long)]
        admin_addr: String,
    },
    /// Remove a coordinator from the membership (DELETE /v1/cluster/members/ID).
    Remove {
        #[arg(value_name = "ID")]
        node: u64,
    },
    /// Live cluster settings: print them (GET /v1/settings), or with FILE (YAML or JSON, e.g.
    /// `{history_limit: 20, sampler: {send_delay_ms: 1000}}`) replace them (PUT /v1/settings).
    Settings { file: Option<PathBuf> },
}

#[derive(Args, Debug)]
pub struct Common {
    /// YAML config file (none: built-in defaults).
    #[arg(long, env = "TAILSIFT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log filter: a level (error, warn, info, debug, trace) or per-module directives such as
    /// `tailsift_ingest=debug,info`.
    #[arg(long, env = "TAILSIFT_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log format: text or json.
    #[arg(long, env = "TAILSIFT_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// Override any config key, e.g. `--set kafka.compression=zstd`; repeatable; wins over the
    /// file and the environment.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
    pub sets: Vec<(String, String)>,
}

/// The Kafka flags of the roles that use the spans topic.
#[derive(Args, Debug)]
pub struct KafkaArgs {
    /// Kafka bootstrap brokers (kafka.brokers). [default: 127.0.0.1:9092]
    #[arg(long)]
    pub kafka_brokers: Option<String>,
    /// Spans topic (kafka.topic). [default: tailsift-spans]
    #[arg(long)]
    pub topic: Option<String>,
}

impl KafkaArgs {
    pub fn dedicated(&self) -> [(&'static str, Option<&String>); 2] {
        [
            ("kafka.brokers", self.kafka_brokers.as_ref()),
            ("kafka.topic", self.topic.as_ref()),
        ]
    }
}

#[derive(Args, Debug)]
pub struct IngestArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// OTLP/gRPC listen address (otlp.grpc_listen). [default: 0.0.0.0:4317]
    #[arg(long)]
    pub grpc_listen: Option<String>,
    /// OTLP/HTTP listen address (otlp.http_listen). [default: 0.0.0.0:4318]
    #[arg(long)]
    pub http_listen: Option<String>,
    /// Admin listen address for /metrics, /healthz, /readyz (admin.listen). [default: 0.0.0.0:9464]
    #[arg(long)]
    pub admin_listen: Option<String>,
    /// Zipkin listen address, /api/v2/spans and /api/v1/spans (zipkin.listen). [default: 0.0.0.0:9411]
    #[arg(long)]
    pub zipkin_listen: Option<String>,
}

#[derive(Args, Debug)]
pub struct SamplerArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Consumer group shared by all samplers (kafka.group_id). [default: tailsift-samplers]
    #[arg(long)]
    pub group_id: Option<String>,
    /// Policy file (policy.file): native YAML/JSON, an OpenTelemetry Collector tail_sampling
    /// config or Refinery rules (the format is told from the content; policy.format forces one). [default: keep errors, slow > 1s, 10% of the rest]
    #[arg(long)]
    pub policy: Option<String>,
    /// Cluster-wide hash seed for consistent probabilistic sampling (policy.hash_seed). [default: 0]
    #[arg(long)]
    pub hash_seed: Option<String>,
    /// Exporter: otlp_grpc, otlp_http or kafka (export.kind). [default: otlp_grpc]
    #[arg(long)]
    pub export_kind: Option<String>,
    /// OTLP endpoint for kept traces (export.endpoint). [default: http://127.0.0.1:4317]
    #[arg(long)]
    pub export_endpoint: Option<String>,
    /// Admin listen address for /metrics, /healthz, /readyz (admin.listen). [default: 0.0.0.0:9465]
    #[arg(long)]
    pub admin_listen: Option<String>,
}

impl Common {
    pub fn sources(&self, dedicated: Vec<(&str, Option<&String>)>) -> anyhow::Result<Sources> {
        let mut sets: Vec<(String, String)> = self.sets.clone();
        // Dedicated flags are the most specific: they win over --set.
        sets.extend(
            dedicated
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k.to_string(), v.clone()))),
        );
        Ok(Sources::from_process(self.config.as_deref(), sets)?)
    }

    /// Sets up logging, then loads and validates the role's config from every layer.
    pub fn init_and_load<T: serde::de::DeserializeOwned + tailsift_config::Validate>(
        &self,
        dedicated: Vec<(&str, Option<&String>)>,
    ) -> anyhow::Result<T> {
        tailsift_telemetry::init_logging(&self.log_level, self.log_format).map_err(anyhow::Error::msg)?;
        Ok(self.sources(dedicated)?.load()?)
    }
}

//! `tailsift`: one binary, one subcommand per role.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tailsift_config::{parse_set, Sources};
use tailsift_telemetry::LogFormat;
use tokio_util::sync::CancellationToken;

/// Tailsift: a distributed tail-sampling cluster for distributed tracing.
///
/// Configuration precedence, lowest to highest: built-in defaults, the YAML file given with
/// --config, TAILSIFT_<SECTION>__<KEY> environment variables (e.g. TAILSIFT_KAFKA__BROKERS), and
/// flags (--set section.key=value and the dedicated flags). Unknown keys are errors.
#[derive(Parser, Debug)]
#[command(name = "tailsift", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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
}

#[derive(Args, Debug)]
struct StandaloneArgs {
    #[command(flatten)]
    common: Common,
    /// Coordinator state and admin token (standalone.data_dir). [default: .tailsift/standalone]
    #[arg(long)]
    data_dir: Option<String>,
    /// Kept traces as OTLP/JSON lines: `-` (stdout) or a file (export.output). [default: -]
    #[arg(long)]
    output: Option<String>,
    /// OTLP endpoint for kept traces instead of JSON lines (export.endpoint). [default: none]
    #[arg(long)]
    export_endpoint: Option<String>,
    /// Policy published as the first version (policy.file). [default: errors, slow > 1s, 10% of the rest]
    #[arg(long)]
    policy: Option<String>,
    /// OTLP/gRPC listen address (otlp.grpc_listen). [default: 0.0.0.0:4317]
    #[arg(long)]
    grpc_listen: Option<String>,
    /// OTLP/HTTP listen address (otlp.http_listen). [default: 0.0.0.0:4318]
    #[arg(long)]
    http_listen: Option<String>,
    /// Zipkin listen address (zipkin.listen). [default: 0.0.0.0:9411]
    #[arg(long)]
    zipkin_listen: Option<String>,
    /// /metrics, /healthz, /readyz listen address (admin.listen). [default: 0.0.0.0:9464]
    #[arg(long)]
    admin_listen: Option<String>,
    /// Admin API listen address (coordinator.admin_listen). [default: 127.0.0.1:9710]
    #[arg(long)]
    coordinator_listen: Option<String>,
}

#[derive(Args, Debug)]
struct CoordinatorArgs {
    #[command(flatten)]
    common: Common,
    /// Raft log, vote and snapshots (data_dir). [default: ./tailsift-coordinator]
    #[arg(long)]
    data_dir: Option<String>,
    /// This node's id, never reused (node_id). [default: 1]
    #[arg(long)]
    node_id: Option<String>,
    /// Raft and policy Watch gRPC listen address (raft.listen). [default: 0.0.0.0:9700]
    #[arg(long)]
    raft_listen: Option<String>,
    /// Admin API, /metrics, /healthz, /readyz listen address (admin.listen). [default: 0.0.0.0:9710]
    #[arg(long)]
    admin_listen: Option<String>,
    /// A member of the initial cluster, `ID=RAFT_HOST:PORT,ADMIN_HOST:PORT`; repeat for each
    /// (cluster.members, used only to bootstrap an empty data directory). [default: none]
    #[arg(long = "member", value_name = "ID=RAFT_ADDR,ADMIN_ADDR", value_parser = parse_member)]
    members: Vec<String>,
}

/// One `--member` flag as a YAML flow mapping.
fn parse_member(s: &str) -> Result<String, String> {
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

/// Connection to a coordinator's admin API, then the command.
#[derive(Args, Debug)]
struct AdminCommand<C: Subcommand> {
    /// Admin API base URL of any coordinator (writes are forwarded to the leader); https:// for
    /// coordinators with admin.tls.
    #[arg(
        long,
        env = "TAILSIFT_ADMIN_URL",
        default_value = "http://127.0.0.1:9710",
        global = true
    )]
    admin: String,
    /// Bearer token (role admin for writes, read_only is enough for reads).
    #[arg(long, env = "TAILSIFT_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// PEM CA certificate to verify an https:// admin API with, in addition to the system's roots.
    #[arg(long, env = "TAILSIFT_CA_FILE", global = true)]
    ca_file: Option<PathBuf>,
    /// Request timeout.
    #[arg(long, default_value = "30s", value_parser = parse_duration, global = true)]
    timeout: std::time::Duration,
    #[command(subcommand)]
    command: C,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
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
enum PolicyCommand {
    /// Print the current policy version (GET /v1/policy).
    Get,
    /// Validate FILE and publish it as a new version (PUT /v1/policy).
    Apply(PolicyFile),
    /// Validate FILE without publishing (POST /v1/policy/validate).
    Validate(PolicyFile),
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
        /// yaml, json or otel_tail_sampling. [default: json for *.json, yaml otherwise]
        #[arg(long, requires = "file")]
        format: Option<String>,
        /// Remove the shadow policy.
        #[arg(long, conflicts_with = "file")]
        clear: bool,
    },
}

#[derive(Args, Debug)]
struct PolicyFile {
    /// Policy document.
    file: PathBuf,
    /// yaml, json or otel_tail_sampling (an OpenTelemetry Collector tail_sampling config).
    /// [default: json for *.json, yaml otherwise]
    #[arg(long)]
    format: Option<String>,
}

#[derive(Subcommand, Debug)]
enum SeedCommand {
    /// Schedule a new random hash seed, in force from the next policy version (POST /v1/seed/rotate).
    Rotate,
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
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
struct Common {
    /// YAML config file (none: built-in defaults).
    #[arg(long, env = "TAILSIFT_CONFIG")]
    config: Option<PathBuf>,
    /// Log filter: a level (error, warn, info, debug, trace) or per-module directives such as
    /// `tailsift_ingest=debug,info`.
    #[arg(long, env = "TAILSIFT_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Log format: text or json.
    #[arg(long, env = "TAILSIFT_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// Override any config key, e.g. `--set kafka.compression=zstd`; repeatable; wins over the
    /// file and the environment.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
    sets: Vec<(String, String)>,
}

/// The Kafka flags of the roles that use the spans topic.
#[derive(Args, Debug)]
struct KafkaArgs {
    /// Kafka bootstrap brokers (kafka.brokers). [default: 127.0.0.1:9092]
    #[arg(long)]
    kafka_brokers: Option<String>,
    /// Spans topic (kafka.topic). [default: tailsift-spans]
    #[arg(long)]
    topic: Option<String>,
}

impl KafkaArgs {
    fn dedicated(&self) -> [(&'static str, Option<&String>); 2] {
        [
            ("kafka.brokers", self.kafka_brokers.as_ref()),
            ("kafka.topic", self.topic.as_ref()),
        ]
    }
}

#[derive(Args, Debug)]
struct IngestArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    kafka: KafkaArgs,
    /// OTLP/gRPC listen address (otlp.grpc_listen). [default: 0.0.0.0:4317]
    #[arg(long)]
    grpc_listen: Option<String>,
    /// OTLP/HTTP listen address (otlp.http_listen). [default: 0.0.0.0:4318]
    #[arg(long)]
    http_listen: Option<String>,
    /// Admin listen address for /metrics, /healthz, /readyz (admin.listen). [default: 0.0.0.0:9464]
    #[arg(long)]
    admin_listen: Option<String>,
    /// Zipkin listen address, /api/v2/spans and /api/v1/spans (zipkin.listen). [default: 0.0.0.0:9411]
    #[arg(long)]
    zipkin_listen: Option<String>,
}

#[derive(Args, Debug)]
struct SamplerArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Consumer group shared by all samplers (kafka.group_id). [default: tailsift-samplers]
    #[arg(long)]
    group_id: Option<String>,
    /// Policy file (policy.file): native YAML/JSON, or an OpenTelemetry Collector tail_sampling
    /// config with --set policy.format=otel. [default: keep errors, slow > 1s, 10% of the rest]
    #[arg(long)]
    policy: Option<String>,
    /// Cluster-wide hash seed for consistent probabilistic sampling (policy.hash_seed). [default: 0]
    #[arg(long)]
    hash_seed: Option<String>,
    /// Exporter: otlp_grpc, otlp_http or kafka (export.kind). [default: otlp_grpc]
    #[arg(long)]
    export_kind: Option<String>,
    /// OTLP endpoint for kept traces (export.endpoint). [default: http://127.0.0.1:4317]
    #[arg(long)]
    export_endpoint: Option<String>,
    /// Admin listen address for /metrics, /healthz, /readyz (admin.listen). [default: 0.0.0.0:9465]
    #[arg(long)]
    admin_listen: Option<String>,
}

impl Common {
    fn sources(&self, dedicated: Vec<(&str, Option<&String>)>) -> anyhow::Result<Sources> {
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
    fn init_and_load<T: serde::de::DeserializeOwned + tailsift_config::Validate>(
        &self,
        dedicated: Vec<(&str, Option<&String>)>,
    ) -> anyhow::Result<T> {
        tailsift_telemetry::init_logging(&self.log_level, self.log_format).map_err(anyhow::Error::msg)?;
        Ok(self.sources(dedicated)?.load()?)
    }
}

fn main() {
    if let Err(e) = real_main() {
        // `{:#}` prints the whole cause chain on one line, without a backtrace.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Ingest(args) => {
            let mut dedicated = args.kafka.dedicated().to_vec();
            dedicated.extend([
                ("otlp.grpc_listen", args.grpc_listen.as_ref()),
                ("otlp.http_listen", args.http_listen.as_ref()),
                ("admin.listen", args.admin_listen.as_ref()),
                ("zipkin.listen", args.zipkin_listen.as_ref()),
            ]);
            let cfg: tailsift_ingest::IngestConfig = args.common.init_and_load(dedicated)?;
            runtime()?.block_on(async move {
                let listeners = tailsift_ingest::Listeners::bind(&cfg).await?;
                let shutdown = shutdown_on_signal();
                tailsift_ingest::run(cfg, listeners, shutdown)
                    .await
                    .context("ingest node failed")
            })
        }
        Command::Sampler(args) => run_sampler(args),
        Command::Standalone(args) => run_standalone(args),
        Command::Coordinator(args) => run_coordinator(args),
        Command::Policy(a) => {
            let req = match &a.command {
                PolicyCommand::Get => AdminRequest::get("/v1/policy"),
                PolicyCommand::History => AdminRequest::get("/v1/policy/history"),
                PolicyCommand::Apply(f) => AdminRequest::body(reqwest::Method::PUT, "/v1/policy", policy_body(f)?),
                PolicyCommand::Validate(f) => {
                    AdminRequest::body(reqwest::Method::POST, "/v1/policy/validate", policy_body(f)?)
                }
                PolicyCommand::Rollback { target } => AdminRequest::body(
                    reqwest::Method::POST,
                    "/v1/policy/rollback",
                    serde_json::json!({ "version": target }),
                ),
                PolicyCommand::Shadow {
                    file: Some(file),
                    format,
                    ..
                } => {
                    let f = PolicyFile {
                        file: file.clone(),
                        format: format.clone(),
                    };
                    AdminRequest::body(reqwest::Method::PUT, "/v1/policy/shadow", policy_body(&f)?)
                }
                PolicyCommand::Shadow { clear: true, .. } => AdminRequest {
                    method: reqwest::Method::DELETE,
                    path: "/v1/policy/shadow".into(),
                    body: None,
                },
                PolicyCommand::Shadow { .. } => AdminRequest::get("/v1/policy/shadow"),
            };
            admin_call(&a.conn(), req)
        }
        Command::Seed(a) => match a.command {
            SeedCommand::Rotate => admin_call(
                &a.conn(),
                AdminRequest {
                    method: reqwest::Method::POST,
                    path: "/v1/seed/rotate".into(),
                    body: None,
                },
            ),
        },
        Command::Cluster(a) => {
            let req = match &a.command {
                ClusterCommand::Status => AdminRequest::get("/v1/cluster/status"),
                ClusterCommand::Add {
                    id,
                    raft_addr,
                    admin_addr,
                } => AdminRequest::body(
                    reqwest::Method::POST,
                    "/v1/cluster/members",
                    serde_json::json!({ "id": id, "raft_addr": raft_addr, "admin_addr": admin_addr }),
                ),
                ClusterCommand::Remove { node } => AdminRequest {
                    method: reqwest::Method::DELETE,
                    path: format!("/v1/cluster/members/{node}"),
                    body: None,
                },
                ClusterCommand::Settings { file: None } => AdminRequest::get("/v1/settings"),
                ClusterCommand::Settings { file: Some(f) } => {
                    let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
                    let settings: serde_json::Value =
                        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", f.display()))?;
                    AdminRequest::body(
                        reqwest::Method::PUT,
                        "/v1/settings",
                        serde_json::json!({ "settings": settings }),
                    )
                }
            };
            admin_call(&a.conn(), req)
        }
    }
}

fn run_coordinator(args: CoordinatorArgs) -> anyhow::Result<()> {
    let members = (!args.members.is_empty()).then(|| format!("[{}]", args.members.join(", ")));
    let cfg: tailsift_coordinator::CoordinatorConfig = args.common.init_and_load(vec![
        ("data_dir", args.data_dir.as_ref()),
        ("node_id", args.node_id.as_ref()),
        ("raft.listen", args.raft_listen.as_ref()),
        ("admin.listen", args.admin_listen.as_ref()),
        ("cluster.members", members.as_ref()),
    ])?;
    runtime()?.block_on(async move {
        let listeners = tailsift_coordinator::Listeners::bind(&cfg).await?;
        let shutdown = shutdown_on_signal();
        tailsift_coordinator::run(cfg, listeners, shutdown)
            .await
            .context("coordinator failed")
    })
}

/// Where and how the admin API is called.
struct AdminConn<'a> {
    base: &'a str,
    token: Option<&'a str>,
    ca_file: Option<&'a std::path::Path>,
    timeout: std::time::Duration,
}

impl<C: Subcommand> AdminCommand<C> {
    fn conn(&self) -> AdminConn<'_> {
        AdminConn {
            base: &self.admin,
            token: self.token.as_deref(),
            ca_file: self.ca_file.as_deref(),
            timeout: self.timeout,
        }
    }
}

/// One admin API request.
struct AdminRequest {
    method: reqwest::Method,
    path: String,
    body: Option<serde_json::Value>,
}

impl AdminRequest {
    fn get(path: &str) -> Self {
        AdminRequest {
            method: reqwest::Method::GET,
            path: path.into(),
            body: None,
        }
    }
    fn body(method: reqwest::Method, path: &str, body: serde_json::Value) -> Self {
        AdminRequest {
            method,
            path: path.into(),
            body: Some(body),
        }
    }
}

fn policy_body(f: &PolicyFile) -> anyhow::Result<serde_json::Value> {
    let document = std::fs::read_to_string(&f.file).with_context(|| format!("reading {}", f.file.display()))?;
    let format = match &f.format {
        Some(x) => x.clone(),
        None if f.file.extension().is_some_and(|e| e == "json") => "json".into(),
        None => "yaml".into(),
    };
    Ok(serde_json::json!({ "document": document, "format": format }))
}

/// Sends the request, prints the JSON answer on stdout; an error status is an error carrying
/// the server's message (and the answer is printed on stderr).
fn admin_call(conn: &AdminConn<'_>, req: AdminRequest) -> anyhow::Result<()> {
    let (base, token) = (conn.base, conn.token);
    let url = format!("{}{}", base.trim_end_matches('/'), req.path);
    let mut builder = reqwest::Client::builder().timeout(conn.timeout);
    if let Some(path) = conn.ca_file {
        let pem = std::fs::read(path).with_context(|| format!("reading --ca-file {}", path.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("--ca-file {}: not PEM certificates", path.display()))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    // The leader is reached with the scheme the user gave (its admin port has the same TLS).
    let scheme = if base.starts_with("https://") { "https" } else { "http" };
    runtime()?.block_on(async move {
        let client = builder.build()?;
        let mut r = client.request(req.method.clone(), &url);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = &req.body {
            r = r.json(b);
        }
        let resp = r.send().await.with_context(|| format!("{} {url}", req.method))?;
        let mut status = resp.status();
        let mut text = resp
            .text()
            .await
            .with_context(|| format!("reading the answer of {url}"))?;
        let mut body: Option<serde_json::Value> = serde_json::from_str(&text).ok();
        // 421: the request must go to the leader, whose admin address is named; follow once.
        if status == reqwest::StatusCode::MISDIRECTED_REQUEST {
            if let Some(leader) = body
                .as_ref()
                .and_then(|b| b["leader_admin_addr"].as_str())
                .map(str::to_string)
            {
                let url = format!("{scheme}://{leader}{}", req.path);
                let mut r = client.request(req.method.clone(), &url);
                if let Some(t) = token {
                    r = r.bearer_auth(t);
                }
                if let Some(b) = &req.body {
                    r = r.json(b);
                }
                let resp = r
                    .send()
                    .await
                    .with_context(|| format!("{} {url} (the leader)", req.method))?;
                status = resp.status();
                text = resp
                    .text()
                    .await
                    .with_context(|| format!("reading the answer of {url}"))?;
                body = serde_json::from_str(&text).ok();
            }
        }
        let pretty = body
            .as_ref()
            .and_then(|b| serde_json::to_string_pretty(b).ok())
            .unwrap_or_else(|| text.clone());
        if status.is_success() {
            println!("{pretty}");
            return Ok(());
        }
        let message = body
            .as_ref()
            .and_then(|b| b["error"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| text.trim().to_string());
        if body.as_ref().is_some_and(|b| b.get("issues").is_some()) {
            eprintln!("{pretty}");
        }
        anyhow::bail!("{} {url}: {status}: {message}", req.method)
    })
}

fn run_sampler(args: SamplerArgs) -> anyhow::Result<()> {
    let mut dedicated = args.kafka.dedicated().to_vec();
    dedicated.extend([
        ("kafka.group_id", args.group_id.as_ref()),
        ("policy.file", args.policy.as_ref()),
        ("policy.hash_seed", args.hash_seed.as_ref()),
        ("export.kind", args.export_kind.as_ref()),
        ("export.endpoint", args.export_endpoint.as_ref()),
        ("admin.listen", args.admin_listen.as_ref()),
    ]);
    let cfg: tailsift_sampler::SamplerConfig = args.common.init_and_load(dedicated)?;
    // Fail fast on a bad policy, before touching Kafka.
    tailsift_sampler::load_policy(&cfg.policy)?;
    runtime()?.block_on(async move {
        let listeners = tailsift_sampler::Listeners::bind(&cfg).await?;
        let shutdown = shutdown_on_signal();
        tailsift_sampler::run(cfg, listeners, shutdown)
            .await
            .context("sampler failed")
    })
}

fn run_standalone(mut args: StandaloneArgs) -> anyhow::Result<()> {
    // One process, one log: the Raft library's per-step info lines would drown the rest.
    if args.common.log_level == "info" {
        args.common.log_level = "info,openraft=warn".into();
    }
    let cfg: tailsift_standalone::StandaloneConfig = args.common.init_and_load(vec![
        ("standalone.data_dir", args.data_dir.as_ref()),
        ("export.output", args.output.as_ref()),
        ("export.endpoint", args.export_endpoint.as_ref()),
        ("policy.file", args.policy.as_ref()),
        ("otlp.grpc_listen", args.grpc_listen.as_ref()),
        ("otlp.http_listen", args.http_listen.as_ref()),
        ("zipkin.listen", args.zipkin_listen.as_ref()),
        ("admin.listen", args.admin_listen.as_ref()),
        ("coordinator.admin_listen", args.coordinator_listen.as_ref()),
    ])?;
    runtime()?.block_on(async move {
        let listeners = tailsift_standalone::Listeners::bind(&cfg).await?;
        tailsift_standalone::run(cfg, listeners, shutdown_on_signal())
            .await
            .context("standalone failed")
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// A token cancelled on SIGTERM or SIGINT.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        tailsift_telemetry::shutdown_signal().await;
        t.cancel();
    });
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        assert_eq!(
            parse_member("2=10.0.0.2:9700, 10.0.0.2:9710").unwrap(),
            r#"{id: 2, raft_addr: "10.0.0.2:9700", admin_addr: "10.0.0.2:9710"}"#
        );
        assert!(parse_member("x=a:1,b:2").is_err());
        assert!(parse_member("1=a:1").is_err());
        assert_eq!(parse_duration("500ms").unwrap(), std::time::Duration::from_millis(500));
        assert!(parse_duration("5h").is_err());
    }
}

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
    /// Run an ingest node: OTLP/gRPC (:4317), OTLP/HTTP (:4318), Zipkin (:9411) and Jaeger (UDP
    /// :6831/:6832, HTTP :14268, gRPC :14250) in, Kafka out, one record per trace keyed by trace ID.
    Ingest(IngestArgs),
    /// Run a sampling worker: consume the spans topic in a consumer group, buffer whole traces,
    /// decide by policy, export kept traces (OTLP or Kafka), commit only past decided traces.
    Sampler(SamplerArgs),
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

#[derive(Args, Debug)]
struct IngestArgs {
    #[command(flatten)]
    common: Common,
    /// Kafka bootstrap brokers (kafka.brokers). [default: 127.0.0.1:9092]
    #[arg(long)]
    kafka_brokers: Option<String>,
    /// Spans topic (kafka.topic). [default: tailsift-spans]
    #[arg(long)]
    topic: Option<String>,
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
    /// Kafka bootstrap brokers (kafka.brokers). [default: 127.0.0.1:9092]
    #[arg(long)]
    kafka_brokers: Option<String>,
    /// Spans topic (kafka.topic). [default: tailsift-spans]
    #[arg(long)]
    topic: Option<String>,
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
        sets.extend(dedicated.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), v.clone()))));
        Ok(Sources::from_process(self.config.as_deref(), sets)?)
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
            tailsift_telemetry::init_logging(&args.common.log_level, args.common.log_format).map_err(anyhow::Error::msg)?;
            let cfg: tailsift_ingest::IngestConfig = args
                .common
                .sources(vec![
                    ("kafka.brokers", args.kafka_brokers.as_ref()),
                    ("kafka.topic", args.topic.as_ref()),
                    ("otlp.grpc_listen", args.grpc_listen.as_ref()),
                    ("otlp.http_listen", args.http_listen.as_ref()),
                    ("admin.listen", args.admin_listen.as_ref()),
                    ("zipkin.listen", args.zipkin_listen.as_ref()),
                ])?
                .load()?;
            runtime()?.block_on(async move {
                let listeners = tailsift_ingest::Listeners::bind(&cfg).await?;
                let shutdown = shutdown_on_signal();
                tailsift_ingest::run(cfg, listeners, shutdown).await.context("ingest node failed")
            })
        }
        Command::Sampler(args) => run_sampler(args),
    }
}

fn run_sampler(args: SamplerArgs) -> anyhow::Result<()> {
    tailsift_telemetry::init_logging(&args.common.log_level, args.common.log_format).map_err(anyhow::Error::msg)?;
    let cfg: tailsift_sampler::SamplerConfig = args
        .common
        .sources(vec![
            ("kafka.brokers", args.kafka_brokers.as_ref()),
            ("kafka.topic", args.topic.as_ref()),
            ("kafka.group_id", args.group_id.as_ref()),
            ("policy.file", args.policy.as_ref()),
            ("policy.hash_seed", args.hash_seed.as_ref()),
            ("export.kind", args.export_kind.as_ref()),
            ("export.endpoint", args.export_endpoint.as_ref()),
            ("admin.listen", args.admin_listen.as_ref()),
        ])?
        .load()?;
    // Fail fast on a bad policy, before touching Kafka.
    tailsift_sampler::load_policy(&cfg.policy)?;
    runtime()?.block_on(async move {
        let listeners = tailsift_sampler::Listeners::bind(&cfg).await?;
        let shutdown = shutdown_on_signal();
        tailsift_sampler::run(cfg, listeners, shutdown).await.context("sampler failed")
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

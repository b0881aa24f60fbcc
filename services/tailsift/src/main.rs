//! The one binary: parses flags and calls the libraries, one subcommand per role, plus the admin
//! CLI.
//!
//! `tailsift`: one binary, one subcommand per role. Flags are defined in [`cli`]; the roles are
//! libraries (`tailsift-ingest`, `-sampler`, `-coordinator`, `-standalone`) and the admin
//! subcommands call the admin API through `tailsift-admin-client` ([`admin`]).

mod admin;
mod cli;

use anyhow::Context;
use clap::Parser;
use cli::{Cli, Command, CoordinatorArgs, SamplerArgs, StandaloneArgs};
use tokio_util::sync::CancellationToken;

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
        Command::Policy(a) => admin::policy(a),
        Command::Seed(a) => admin::seed(a),
        Command::Cluster(a) => admin::cluster(a),
        Command::Capture(a) => admin::capture(*a),
        Command::Plan(args) => {
            let plan = tailsift_capacity::plan(&args.inputs())?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                print!("{}", tailsift_capacity::render_table(&plan));
            }
            Ok(())
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
    pin_malloc_thresholds();
    trim_malloc_periodically();
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

/// A sampler holds what it buffers for minutes while large, short-lived buffers (fetch responses,
/// export requests, read-back passes) come and go. glibc's malloc raises its mmap threshold each
/// time such a block is freed (up to 32 MiB), after which they come from the heaps instead and
/// leave them fragmented around the long-lived buffer. Pinning both thresholds at glibc's initial
/// 128 KiB keeps large blocks in their own mappings, returned when freed: in `bench-sampler.sh`
/// index mode 46-48 B of RSS per buffered span against 52 B, at the same CPU
/// (docs/benchmarks.md). An operator who tunes malloc through `GLIBC_TUNABLES` keeps their
/// settings.
fn pin_malloc_thresholds() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var("GLIBC_TUNABLES").is_ok_and(|v| v.contains("glibc.malloc.")) {
            return;
        }
        const THRESHOLD: libc::c_int = 128 * 1024;
        // SAFETY: mallopt takes the allocator's own locks and changes only its parameters.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD);
        }
    }
}

/// Memory freed by one thread stays in the malloc arena of the thread that allocated it: the
/// records the consumer thread copies and the engine frees after indexing them leave megabytes
/// free in the middle of the consumer's arena after a burst, which glibc returns only from the
/// top of a heap. `malloc_trim` returns free pages from anywhere in every arena (a walk of the free
/// lists, microseconds); once a second, resident memory follows what the buffer holds
/// (docs/benchmarks.md: ~8 MB of a 43 MB sampler were free arena pages before).
fn trim_malloc_periodically() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new().name("tailsift-trim".into()).spawn(|| loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
            // SAFETY: malloc_trim takes each arena's lock; it only releases free pages.
            unsafe {
                libc::malloc_trim(0);
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "malloc trimming thread not started");
        }
    }
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    // The runtime's worker threads (default: the CPUs this process may use). Fewer threads mean
    // fewer cross-thread wake-ups per request at low load, at the cost of peak throughput.
    if let Ok(v) = std::env::var("TAILSIFT_WORKER_THREADS") {
        let n: usize = v
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=1024).contains(n))
            .with_context(|| format!("TAILSIFT_WORKER_THREADS: `{v}` is not a number of threads from 1 to 1024"))?;
        b.worker_threads(n);
    }
    Ok(b.enable_all().build()?)
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
    use crate::cli::*;

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
        assert_eq!(
            parse_time_ago("30m").unwrap(),
            TimeAgo::Ago(std::time::Duration::from_secs(1800))
        );
        assert_eq!(
            parse_time_ago("2h").unwrap(),
            TimeAgo::Ago(std::time::Duration::from_secs(7200))
        );
        assert_eq!(
            parse_time_ago("@1700000000000").unwrap(),
            TimeAgo::UnixMs(1_700_000_000_000)
        );
        assert_eq!(TimeAgo::Ago(std::time::Duration::from_secs(1)).unix_ms(5000), 4000);
        assert!(parse_time_ago("@x").is_err());
        assert_eq!(parse_bytes("100MB").unwrap(), 100e6);
        assert_eq!(parse_bytes("8GiB").unwrap(), 8.0 * 1024.0 * 1024.0 * 1024.0);
        assert_eq!(parse_bytes("1500").unwrap(), 1500.0);
        assert!(parse_bytes("8 parsecs").is_err());
    }
}

//! Every role in one process on an in-process log, to try Tailsift with nothing else running.
//!
//! * The ingest node ([`tailsift_ingest::run_on`]) with all its receivers (OTLP gRPC/HTTP,
//!   Zipkin, Jaeger) writes to an in-process partitioned log ([`tailsift_kafka::memlog`]) instead
//!   of Kafka: same keys, partitioner, limits and retryable answers when full.
//! * The sampler ([`tailsift_sampler::run_on`]) runs its usual loop and engine over that log,
//!   committing to it (committed records are trimmed); it exports kept traces to an OTLP endpoint,
//!   or as OTLP/JSON lines to stdout or a file.
//! * A single-node coordinator ([`tailsift_coordinator::run`], bootstrapped as its only member,
//!   Raft state in `<data_dir>/coordinator`) serves the admin API; the sampler watches it like any
//!   coordinator, so a policy published there (`tailsift policy apply`, `curl -X PUT`) changes
//!   decisions live. At the first start the configured policy is published as version 1.
//! * `/metrics` on `admin.listen` shows every role's metrics.
//!
//! On shutdown the receivers stop first; the sampler keeps deciding for `decision.send_delay` plus
//! a second, so traces whose root span arrived are still decided and written, then the sampler
//! and the coordinator stop. The log lives in memory: traces still undecided then are not kept.

pub mod config;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tailsift_kafka::memlog::MemLog;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::StandaloneConfig;

/// Errors that stop standalone.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ingest: {0}")]
    Ingest(#[from] tailsift_ingest::Error),
    #[error("sampler: {0}")]
    Sampler(#[from] tailsift_sampler::Error),
    #[error("coordinator: {0}")]
    Coordinator(#[from] tailsift_coordinator::Error),
    #[error("admin token file {path}: {message}")]
    Token { path: PathBuf, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{role} task: {message}")]
    Join { role: &'static str, message: String },
}

/// Every socket standalone serves on. Tests bind port 0 and read the addresses back.
pub struct Listeners {
    pub ingest: tailsift_ingest::Listeners,
    pub coordinator: tailsift_coordinator::Listeners,
    /// The sampler's own health endpoint (loopback, ephemeral port; `/metrics` is the same
    /// registry as on `admin.listen`).
    pub sampler: tailsift_sampler::Listeners,
}

impl Listeners {
    pub async fn bind(cfg: &StandaloneConfig) -> std::io::Result<Self> {
        Ok(Listeners {
            ingest: tailsift_ingest::Listeners::bind(&cfg.ingest_config()).await?,
            coordinator: tailsift_coordinator::Listeners {
                raft: tailsift_telemetry::bind("coordinator raft", cfg.coordinator.raft_listen).await?,
                admin: tailsift_telemetry::bind("coordinator admin", cfg.coordinator.admin_listen).await?,
            },
            sampler: tailsift_sampler::Listeners {
                admin: TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?,
            },
        })
    }

    /// The admin API's base URL, `http://host:port`, reachable from this machine.
    pub fn admin_url(&self) -> std::io::Result<String> {
        Ok(format!("http://{}", reachable(self.coordinator.admin.local_addr()?)))
    }
}

/// An address to connect to for a listener bound to `addr` (loopback for a wildcard bind).
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    }
}

/// The admin token: `standalone.admin_token`, else the one in `<data_dir>/admin-token`, generated
/// (32 hex characters, file mode 0600) when the file does not exist.
pub fn admin_token(cfg: &config::Settings) -> Result<String, Error> {
    if let Some(t) = &cfg.admin_token {
        return Ok(t.clone());
    }
    let path = token_path(&cfg.data_dir);
    let err = |message: String| Error::Token {
        path: path.clone(),
        message,
    };
    match std::fs::read_to_string(&path) {
        Ok(t) if t.trim().len() >= 16 => return Ok(t.trim().to_string()),
        Ok(_) => {
            return Err(err(
                "holds fewer than 16 characters; delete it to generate a new token".into()
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e.to_string())),
    }
    let token = hex::encode(rand::random::<[u8; 16]>());
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| err(e.to_string()))?;
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let mut f = o.open(&path)?;
        f.write_all(format!("{token}\n").as_bytes())
    };
    write().map_err(|e| err(e.to_string()))?;
    Ok(token)
}

/// Where the generated admin token is kept.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin-token")
}

/// Runs every role until `shutdown` is cancelled, then stops them (ingest drains its requests;
/// the sampler decides what it can for `decision.send_delay` + 1 s and exports what it decided)
/// and returns.
pub async fn run(cfg: StandaloneConfig, listeners: Listeners, shutdown: CancellationToken) -> Result<(), Error> {
    // Fail fast on a bad policy file, before anything listens.
    tailsift_sampler::load_policy(&cfg.policy)?;
    // A role that fails stops the others (the process is useless without any of them). The
    // receivers stop first; the sampler and the coordinator a grace period later.
    let shutdown = shutdown.child_token();
    let late_stop = CancellationToken::new();
    let grace = cfg.decision.send_delay + Duration::from_secs(1);
    let data_dir = cfg.standalone.data_dir.clone();
    std::fs::create_dir_all(&data_dir)?;
    let token = admin_token(&cfg.standalone)?;
    let raft_addr = listeners.coordinator.raft.local_addr()?;
    let admin_addr = listeners.coordinator.admin.local_addr()?;
    let admin_url = listeners.admin_url()?;
    let (grpc, http, metrics) = listeners.ingest.addrs()?;
    let receivers = listeners.ingest.receiver_addrs()?;

    let coordinator_cfg = tailsift_coordinator::CoordinatorConfig {
        node_id: 1,
        data_dir: data_dir.join("coordinator"),
        raft: tailsift_coordinator::config::RaftConfig {
            listen: raft_addr,
            // One voter: elections only happen at start; keep them short.
            heartbeat_interval: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(300),
            election_timeout_max: Duration::from_millis(600),
            // No peers, but the Raft port is open on loopback: authenticate it too.
            cluster_token: Some(hex::encode(rand::random::<[u8; 16]>())),
            ..Default::default()
        },
        cluster: tailsift_coordinator::config::ClusterConfig {
            members: vec![tailsift_coordinator::config::Member {
                id: 1,
                raft_addr: reachable(raft_addr).to_string(),
                admin_addr: reachable(admin_addr).to_string(),
            }],
        },
        admin: tailsift_coordinator::config::AdminConfig {
            listen: admin_addr,
            tokens: vec![tailsift_coordinator::config::Token {
                name: "standalone".into(),
                token: token.clone(),
                role: tailsift_coordinator::config::Role::Admin,
            }],
            ..Default::default()
        },
    };
    let mut sampler_cfg = cfg.sampler_config(&format!("http://{}", reachable(raft_addr)));
    // The coordinator's Watch service needs a token: the in-process sampler uses the admin one.
    sampler_cfg.coordinator.token = Some(token.clone());
    let kept_to = match &cfg.export.endpoint {
        Some(e) => format!("{e} ({:?})", cfg.export.kind),
        None if cfg.export.output == "-" => "stdout, as OTLP/JSON lines".to_string(),
        None => format!("{}, as OTLP/JSON lines", cfg.export.output),
    };
    let log = Arc::new(MemLog::new(cfg.standalone.partitions, cfg.standalone.log_max_bytes));

    let coordinator = supervised(
        &shutdown,
        tailsift_coordinator::run(coordinator_cfg, listeners.coordinator, late_stop.clone()),
    );
    let sampler = supervised(
        &shutdown,
        tailsift_sampler::run_on(
            sampler_cfg,
            tailsift_sampler::Transport::InProcess(log.clone()),
            listeners.sampler,
            late_stop.clone(),
        ),
    );
    let drain = tokio::spawn({
        let (shutdown, late_stop) = (shutdown.clone(), late_stop.clone());
        async move {
            shutdown.cancelled().await;
            tracing::info!(
                ?grace,
                "receivers stopping; deciding what was received before stopping the sampler"
            );
            tokio::time::sleep(grace).await;
            late_stop.cancel();
        }
    });
    let ingest = supervised(
        &shutdown,
        tailsift_ingest::run_on(
            cfg.ingest_config(),
            tailsift_ingest::Transport::InProcess(log),
            listeners.ingest,
            shutdown.clone(),
        ),
    );
    let first_policy = tokio::spawn(publish_first_policy(
        admin_url.clone(),
        token.clone(),
        cfg.policy.clone(),
        shutdown.clone(),
    ));
    tracing::info!(
        otlp_grpc = %grpc, otlp_http = %http, zipkin = ?receivers.zipkin, jaeger_http = ?receivers.jaeger_http,
        jaeger_grpc = ?receivers.jaeger_grpc, jaeger_compact_udp = ?receivers.jaeger_compact_udp,
        jaeger_binary_udp = ?receivers.jaeger_binary_udp, "standalone: receivers"
    );
    tracing::info!(
        metrics = %format!("http://{}/metrics", reachable(metrics)),
        admin_api = %admin_url,
        admin_token = %token,
        token_from = %match cfg.standalone.admin_token {
            Some(_) => "standalone.admin_token".to_string(),
            None => token_path(&data_dir).display().to_string(),
        },
        kept_traces = %kept_to,
        "standalone: all roles running (TAILSIFT_TOKEN=<admin_token> tailsift policy get)"
    );

    let ingest = ingest.await;
    let sampler = sampler.await;
    let coordinator = coordinator.await;
    let _ = first_policy.await;
    let _ = drain.await;
    let join = |role: &'static str| {
        move |e: tokio::task::JoinError| Error::Join {
            role,
            message: e.to_string(),
        }
    };
    ingest.map_err(join("ingest"))??;
    sampler.map_err(join("sampler"))??;
    coordinator.map_err(join("coordinator"))??;
    Ok(())
}

/// Spawns a role; when it fails, `stop` is cancelled so the other roles stop too.
fn supervised<E: std::fmt::Display + Send + 'static>(
    stop: &CancellationToken,
    role: impl Future<Output = Result<(), E>> + Send + 'static,
) -> tokio::task::JoinHandle<Result<(), E>> {
    let stop = stop.clone();
    tokio::spawn(async move {
        let r = role.await;
        if let Err(e) = &r {
            tracing::error!(error = %e, "a role failed; stopping standalone");
            stop.cancel();
        }
        r
    })
}

/// When the coordinator holds no policy yet (first start with this data directory), publishes the
/// configured one (`policy.file`, or the default) as version 1 through the admin API, so
/// `tailsift policy get` and the stamped `tailsift.sampling.policy_version` show it. With a
/// version already there, that version stays in force.
async fn publish_first_policy(
    admin_url: String,
    token: String,
    policy: tailsift_sampler::config::PolicyConfig,
    shutdown: CancellationToken,
) {
    let (document, format) = match &policy.file {
        None => (tailsift_sampler::DEFAULT_POLICY.to_string(), Some("yaml")),
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => {
                // `auto`: the coordinator tells the format from the content, as the sampler does.
                let format = match policy.format {
                    tailsift_sampler::config::PolicyFormat::Auto => None,
                    tailsift_sampler::config::PolicyFormat::Otel => Some("otel_tail_sampling"),
                    tailsift_sampler::config::PolicyFormat::Refinery => Some("refinery_rules"),
                    tailsift_sampler::config::PolicyFormat::Native if text.trim_start().starts_with('{') => {
                        Some("json")
                    }
                    tailsift_sampler::config::PolicyFormat::Native => Some("yaml"),
                };
                (text, format)
            }
            Err(e) => {
                tracing::error!(error = %e, file = %path.display(), "policy file not published");
                return;
            }
        },
    };
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(10)).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client: policy not published");
            return;
        }
    };
    let url = format!("{admin_url}/v1/policy");
    let body = match format {
        Some(f) => serde_json::json!({ "document": document, "format": f }),
        None => serde_json::json!({ "document": document }),
    };
    loop {
        let attempt = async {
            let current: serde_json::Value = client
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            let version = current["version"].as_u64().unwrap_or(0);
            if version > 0 {
                if policy.file.is_some() {
                    tracing::warn!(
                        version,
                        "the coordinator already holds a policy (from an earlier run with this data directory): \
                         policy.file is not published; use `tailsift policy apply FILE`"
                    );
                }
                return Ok(version);
            }
            let r = client
                .put(&url)
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = r.status();
            let answer = r.text().await.unwrap_or_default();
            if !status.is_success() {
                return Err(format!("PUT {url}: {status}: {answer}"));
            }
            tracing::info!(%answer, "first policy version published");
            Ok(1)
        };
        match attempt.await {
            Ok(_) => return,
            Err(e) if e.contains("400 Bad Request") => {
                tracing::error!(error = %e, "the configured policy was refused; the sampler keeps it but the coordinator holds none");
                return;
            }
            Err(e) => tracing::debug!(error = %e, "coordinator not ready yet"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_token_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let settings = config::Settings {
            data_dir: dir.path().join("data"),
            ..Default::default()
        };
        let first = admin_token(&settings).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(admin_token(&settings).unwrap(), first, "read back, not regenerated");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(token_path(&settings.data_dir))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "only the owner may read the token file");
        }
        let configured = config::Settings {
            admin_token: Some("0123456789abcdef-configured".into()),
            ..settings.clone()
        };
        assert_eq!(admin_token(&configured).unwrap(), "0123456789abcdef-configured");
        std::fs::write(token_path(&settings.data_dir), "short\n").unwrap();
        assert!(admin_token(&settings).is_err());
        assert_eq!(
            reachable("0.0.0.0:9710".parse().unwrap()),
            "127.0.0.1:9710".parse::<SocketAddr>().unwrap()
        );
    }
}

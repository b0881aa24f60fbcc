//! The Raft group that replicates policy, seeds and settings, its Watch stream and its admin HTTP
//! API.
//!
//! The Tailsift coordinator: a Raft group (openraft) replicating the sampling policy (versioned,
//! with history for rollback), the hash seeds (current and next, with the policy version at which
//! the next one takes effect) and cluster settings; and an authenticated admin HTTP/JSON API.
//!
//! * Raft log, vote and snapshots are kept on disk in `data_dir` ([`store`]); a node restarted
//!   with its data directory rejoins from it and never bootstraps again.
//! * Raft RPCs travel over gRPC ([`network`]; the services and messages are defined in `proto/`
//!   and generated into `tailsift-proto`); writes sent to a follower are forwarded to the
//!   leader over the same service.
//! * The admin API ([`admin`]) validates policies with the policy crate before anything is
//!   proposed, so an invalid document never reaches the log.
//! * Both ports can be served over TLS (`admin.tls`, `raft.tls`, [`tls`]); the Watch service
//!   needs an admin token and the Raft service the cluster token when one is set ([`grpc`]).

pub mod admin;
pub mod config;
pub mod grpc;
pub mod metrics;
pub mod network;
pub mod state;
pub mod store;
pub mod tls;
pub mod types;
pub mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{ServerState, SnapshotPolicy};
use tailsift_telemetry::Readiness;
use tokio::net::TcpListener;
use tokio::sync::watch::Receiver;
use tokio_util::sync::CancellationToken;

pub use config::CoordinatorConfig;
use network::{ForwardReply, Network, Peer, RaftService};
use state::{Applied, Command, CommandError, Registry};
use store::{LogStore, StateMachineStore, View};
use types::{Node, NodeId, Raft};

/// Errors that stop a coordinator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("raft storage in {dir}: {message}")]
    Storage { dir: String, message: String },
    #[error("raft: {0}")]
    Raft(String),
    #[error("raft gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Config(#[from] tailsift_config::ConfigError),
}

/// How long a write's answer may wait for this node to apply it, even past the write timeout.
const MIN_APPLY_WAIT: Duration = Duration::from_secs(1);

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The command was committed but refused by the state machine (nothing changed).
    #[error("{0}")]
    Rejected(CommandError),
    /// No leader could be reached in time; the write may be retried.
    #[error("no leader available: {0}")]
    Unavailable(String),
}

/// Sockets a coordinator serves on.
pub struct Listeners {
    pub raft: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(cfg: &CoordinatorConfig) -> std::io::Result<Self> {
        Ok(Listeners {
            raft: tailsift_telemetry::bind("raft", cfg.raft.listen).await?,
            admin: tailsift_telemetry::bind("admin", cfg.admin.listen).await?,
        })
    }
}

/// A running coordinator node: the Raft handle and the applied state.
pub struct Coordinator {
    pub node_id: NodeId,
    pub raft: Raft,
    view: Receiver<Arc<View>>,
    write_timeout: Duration,
    /// How this node dials the other coordinators (TLS, cluster token).
    peers: grpc::ClientOptions,
    /// The workers that reported to this node (`GET /v1/workers`).
    pub workers: watch::Workers,
}

impl Coordinator {
    /// The state this node has applied.
    pub fn view(&self) -> Arc<View> {
        self.view.borrow().clone()
    }

    /// Commits `cmd` through the leader: directly when this node leads, otherwise forwarded to
    /// the leader over gRPC. Retries while a leader is being elected, up to the write timeout.
    /// Returns the result and the log index of the entry, once this node applied it too (see
    /// [`Coordinator::await_applied`]).
    pub async fn write(&self, cmd: Command) -> Result<(Applied, u64), WriteError> {
        let deadline = tokio::time::Instant::now() + self.write_timeout;
        let (applied, index) = self.commit(cmd, deadline).await?;
        self.await_applied(index, deadline).await;
        Ok((applied, index))
    }

    /// Waits until this node has applied the entry at `index`, so that a read from this node
    /// after a write through it sees the write (the console reloads what it just changed from
    /// the node it talks to; a follower applies a forwarded write a moment after the leader).
    /// Bounded by `deadline`, and at least [`MIN_APPLY_WAIT`]: the write happened either way,
    /// and its answer names the log index.
    async fn await_applied(&self, index: u64, deadline: tokio::time::Instant) {
        let mut view = self.view.clone();
        let until = deadline.max(tokio::time::Instant::now() + MIN_APPLY_WAIT);
        let applied = tokio::time::timeout_at(
            until,
            view.wait_for(|v| v.last_applied.is_some_and(|l| l.index >= index)),
        )
        .await;
        if !matches!(applied, Ok(Ok(_))) {
            tracing::warn!(index, "answering a write this node has not applied yet");
        }
    }

    async fn commit(&self, cmd: Command, deadline: tokio::time::Instant) -> Result<(Applied, u64), WriteError> {
        loop {
            // A leader that lost its majority never answers: bound the wait (the entry may still
            // commit later, once a majority is back).
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let written = match tokio::time::timeout(remaining, self.raft.client_write(cmd.clone())).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(WriteError::Unavailable(format!(
                        "not committed within {:?}; a majority of voters may be unreachable",
                        self.write_timeout
                    )))
                }
            };
            let leader = match written {
                Ok(r) => match r.data.0 {
                    Some(Ok(a)) => return Ok((a, r.log_id.index)),
                    Some(Err(e)) => return Err(WriteError::Rejected(e)),
                    None => return Err(WriteError::Unavailable("the entry produced no result".into())),
                },
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => f.leader_id.zip(f.leader_node),
                Err(e) => return Err(WriteError::Unavailable(e.to_string())),
            };
            let last = if let Some((id, node)) = leader {
                ::metrics::counter!(metrics::FORWARDED_WRITES, "node" => self.node_id.to_string()).increment(1);
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                match Peer::new(&node.raft_addr, &self.peers) {
                    Ok(peer) => match peer.forward(&cmd, remaining.max(Duration::from_millis(100))).await {
                        Ok(ForwardReply::Applied { log_index, result }) => {
                            return result.map(|a| (a, log_index)).map_err(WriteError::Rejected)
                        }
                        Ok(ForwardReply::NotLeader { .. }) => format!("node {id} is no longer the leader"),
                        Ok(ForwardReply::Failed { message }) => format!("leader {id}: {message}"),
                        Err(e) => format!("forwarding to leader {id} at {}: {e}", node.raft_addr),
                    },
                    Err(e) => format!("leader {id} address {}: {e}", node.raft_addr),
                }
            } else {
                "no leader is known".to_string()
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(WriteError::Unavailable(last));
            }
            // A write may have been committed by a leader that failed to answer; commands are
            // not idempotent, so only retry when it surely did not reach a leader.
            if last.starts_with("forwarding") {
                return Err(WriteError::Unavailable(last));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn storage_error(dir: &std::path::Path, e: impl std::fmt::Display) -> Error {
    Error::Storage {
        dir: dir.display().to_string(),
        message: e.to_string(),
    }
}

/// Runs a coordinator until `shutdown` is cancelled.
pub async fn run(cfg: CoordinatorConfig, listeners: Listeners, shutdown: CancellationToken) -> Result<(), Error> {
    tailsift_telemetry::prometheus();
    metrics::describe();
    let readiness = Readiness::new();
    let dir = cfg.data_dir.clone();
    let log = LogStore::open(&dir).map_err(|e| storage_error(&dir, e))?;
    let sm = StateMachineStore::open(&dir, Registry::default()).map_err(|e| storage_error(&dir, e))?;
    let view = sm.subscribe();

    let r = &cfg.raft;
    let raft_config = openraft::Config {
        cluster_name: "tailsift-coordinator".into(),
        heartbeat_interval: r.heartbeat_interval.as_millis() as u64,
        election_timeout_min: r.election_timeout_min.as_millis() as u64,
        election_timeout_max: r.election_timeout_max.as_millis() as u64,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(r.snapshot_after_entries),
        max_in_snapshot_log_to_keep: r.snapshot_after_entries,
        ..Default::default()
    }
    .validate()
    .map_err(|e| Error::Raft(e.to_string()))?;
    let ca = r
        .tls
        .as_ref()
        .map(|t| tls::read_ca("raft.tls.ca_file", &t.ca_file))
        .transpose()?;
    let peers = grpc::ClientOptions::new(ca, r.cluster_token.as_deref())
        .map_err(|e| tailsift_config::ConfigError::invalid("raft.cluster_token", e.to_string()))?;
    let admin_tls = cfg.admin.tls.as_ref().map(tls::admin_server_config).transpose()?;
    if r.cluster_token.is_none() {
        tracing::warn!(
            listen = %r.listen,
            "raft.cluster_token is not set: Raft RPCs are not authenticated; keep raft.listen on a private network"
        );
    }
    let mut server = tonic::transport::Server::builder();
    if let Some(t) = &r.tls {
        server = server.tls_config(tls::raft_server_tls(t)?)?;
    }
    let raft = Raft::new(
        cfg.node_id,
        Arc::new(raft_config),
        Network::new(cfg.node_id, peers.clone()),
        log,
        sm,
    )
    .await
    .map_err(|e| Error::Raft(e.to_string()))?;

    let sd = shutdown.clone();
    let workers = watch::Workers::default();
    let grpc = tokio::spawn(
        server
            .add_service(grpc::Guarded::raft(
                RaftService::new(raft.clone()).server(),
                r.cluster_token.clone(),
                cfg.node_id,
            ))
            .add_service(grpc::Guarded::watch(
                watch::server(watch::WatchService::with_workers(view.clone(), workers.clone())),
                cfg.admin.tokens.clone(),
                cfg.node_id,
                workers.clone(),
            ))
            .serve_with_incoming_shutdown(
                // Without TCP_NODELAY (tonic sets it only on listeners it binds itself) a small
                // write that follows another unacknowledged one (an append's answer, an update to
                // a worker) waits for the peer's delayed ACK, 40 ms or more on Linux.
                tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listeners.raft), |s| {
                    s.inspect(|s| {
                        if let Err(e) = s.set_nodelay(true) {
                            tracing::debug!(error = %e, "TCP_NODELAY not set");
                        }
                    })
                }),
                async move { sd.cancelled().await },
            ),
    );

    // Bootstrap exactly once: only a listed member whose storage holds no Raft state.
    let initialized = raft.is_initialized().await.map_err(|e| Error::Raft(e.to_string()))?;
    let members: BTreeMap<NodeId, Node> = cfg
        .cluster
        .members
        .iter()
        .map(|m| {
            (
                m.id,
                Node {
                    raft_addr: m.raft_addr.clone(),
                    admin_addr: m.admin_addr.clone(),
                },
            )
        })
        .collect();
    if initialized {
        tracing::info!(node = cfg.node_id, "raft state found on disk; rejoining");
    } else if members.contains_key(&cfg.node_id) {
        match raft.initialize(members.clone()).await {
            Ok(()) => {
                tracing::info!(node = cfg.node_id, members = ?members.keys().collect::<Vec<_>>(), "cluster bootstrapped")
            }
            // Another member's log reached us first: that is the same bootstrap.
            Err(RaftError::APIError(e)) => tracing::info!(node = cfg.node_id, reason = %e, "not bootstrapping"),
            Err(e) => return Err(Error::Raft(e.to_string())),
        }
    } else {
        tracing::info!(
            node = cfg.node_id,
            "not in cluster.members and no state on disk: waiting to be added"
        );
    }

    let coordinator = Arc::new(Coordinator {
        node_id: cfg.node_id,
        raft: raft.clone(),
        view: view.clone(),
        write_timeout: cfg.raft.election_timeout_max * 5,
        peers,
        workers,
    });
    let watcher = tokio::spawn(watch_metrics(coordinator.clone(), readiness.clone(), shutdown.clone()));
    let recorder = tokio::spawn(record_captures(coordinator.clone(), shutdown.clone()));
    let router =
        admin::router(coordinator.clone(), cfg.admin.tokens.clone()).merge(tailsift_telemetry::admin_router(readiness));
    let admin = match admin_tls {
        None => tokio::spawn(tailsift_telemetry::serve_http(
            listeners.admin,
            router,
            shutdown.clone(),
        )),
        Some(tls_config) => {
            let listener = tls::TlsListener::new(listeners.admin, tls_config)?;
            let sd = shutdown.clone();
            tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move { sd.cancelled().await })
                    .await
            })
        }
    };

    shutdown.cancelled().await;
    tracing::info!(node = cfg.node_id, "coordinator shutting down");
    let _ = raft.shutdown().await;
    let _ = watcher.await;
    let _ = recorder.await;
    let grpc_result = grpc.await.map_err(|e| Error::Raft(e.to_string()))?;
    let admin_result = admin.await.map_err(|e| Error::Raft(e.to_string()))?;
    grpc_result?;
    admin_result?;
    Ok(())
}

/// Mirrors Raft and state-machine progress into gauges and readiness (ready while a leader is
/// known).
async fn watch_metrics(c: Arc<Coordinator>, readiness: Readiness, shutdown: CancellationToken) {
    let mut rm = c.raft.metrics();
    let mut view = c.view.clone();
    let node = c.node_id.to_string();
    loop {
        {
            let m = rm.borrow_and_update().clone();
            let v = view.borrow_and_update().clone();
            ::metrics::gauge!(metrics::TERM, "node" => node.clone()).set(m.current_term as f64);
            ::metrics::gauge!(metrics::IS_LEADER, "node" => node.clone()).set(if m.state == ServerState::Leader {
                1.0
            } else {
                0.0
            });
            ::metrics::gauge!(metrics::LEADER_ID, "node" => node.clone()).set(m.current_leader.unwrap_or(0) as f64);
            ::metrics::gauge!(metrics::LAST_LOG_INDEX, "node" => node.clone())
                .set(m.last_log_index.unwrap_or(0) as f64);
            ::metrics::gauge!(metrics::APPLIED_INDEX, "node" => node.clone())
                .set(m.last_applied.map_or(0, |l| l.index) as f64);
            ::metrics::gauge!(metrics::COMMIT_INDEX, "node" => node.clone()).set(commit_index(&m) as f64);
            ::metrics::gauge!(metrics::LEARNERS, "node" => node.clone())
                .set(m.membership_config.membership().learner_ids().count() as f64);
            ::metrics::gauge!(metrics::MEMBERS, "node" => node.clone())
                .set(m.membership_config.membership().voter_ids().count() as f64);
            ::metrics::gauge!(metrics::POLICY_VERSION, "node" => node.clone()).set(v.registry.policy_version() as f64);
            ::metrics::gauge!(metrics::SEED_EPOCH, "node" => node.clone()).set(v.registry.seeds.current.epoch as f64);
            ::metrics::gauge!(metrics::SHADOW_REVISION, "node" => node.clone()).set(v.registry.shadow_revision as f64);
            ::metrics::gauge!(metrics::SETTINGS_REVISION, "node" => node.clone())
                .set(v.registry.settings_revision as f64);
            match m.current_leader {
                Some(_) => readiness.set(true, "leader known"),
                None => readiness.set(false, "no raft leader known"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = rm.changed() => if r.is_err() { return },
            r = view.changed() => if r.is_err() { return },
        }
    }
}

/// The commit index as far as this node can tell. openraft 0.9 does not report it, so on the
/// leader it is computed from the replication progress (the highest index matched by a majority
/// of every configuration of a joint membership, the leader counting its own log); on other nodes
/// it is the applied index, which trails the commit index by the entries still being applied.
pub fn commit_index(m: &openraft::RaftMetrics<NodeId, Node>) -> u64 {
    let applied = m.last_applied.map_or(0, |l| l.index);
    let Some(repl) = m.replication.as_ref() else {
        return applied;
    };
    let matched = |id: &NodeId| -> u64 {
        match repl.get(id) {
            Some(l) => l.map_or(0, |l| l.index),
            None if *id == m.id => m.last_log_index.unwrap_or(0),
            None => 0,
        }
    };
    let mut commit = u64::MAX;
    for config in m.membership_config.membership().get_joint_config() {
        if config.is_empty() {
            continue;
        }
        let mut idx: Vec<u64> = config.iter().map(matched).collect();
        idx.sort_unstable_by(|a, b| b.cmp(a));
        commit = commit.min(idx[idx.len() / 2]);
    }
    if commit == u64::MAX {
        applied
    } else {
        commit.max(applied)
    }
}

/// Records in the replicated state the capture partitions workers report finished (done or
/// failed), so that no worker runs them again and every coordinator shows them. Reports repeat
/// every few seconds and reach every coordinator: a partition already recorded is skipped, and a
/// second record of the same partition changes nothing.
async fn record_captures(c: Arc<Coordinator>, shutdown: CancellationToken) {
    use crate::state::{CapturePartition, CaptureState};
    use crate::watch::capture_progress::State;
    let Some(mut rx) = c.workers.take_finished() else {
        return;
    };
    loop {
        let f = tokio::select! {
            _ = shutdown.cancelled() => return,
            f = rx.recv() => match f { Some(f) => f, None => return },
        };
        let p = &f.progress;
        let wanted = c
            .view()
            .registry
            .captures
            .get(&p.capture_id)
            .is_some_and(|cap| cap.state == CaptureState::Running && !cap.done.contains_key(&p.partition));
        if !wanted {
            continue;
        }
        let failed = p.state() == State::Failed;
        let cmd = Command::RecordCapturePartition {
            id: p.capture_id,
            partition: p.partition,
            partitions: p.partitions,
            time_unix_ms: admin::now_ms(),
            result: CapturePartition {
                worker_id: f.worker_id.clone(),
                error: failed.then(|| p.error.chars().take(1000).collect()),
                records_read: p.records_read,
                traces_matched: p.traces_matched,
                traces_already_kept: p.traces_already_kept,
                traces_exported: p.traces_exported,
                spans_exported: p.spans_exported,
                bytes_exported: p.bytes_exported,
                first_record_unix_ms: p.first_record_unix_ms,
                truncated_by_retention: p.truncated_by_retention,
                report_json: (!p.report_json.is_empty() && p.report_json.len() <= 256 << 10)
                    .then(|| p.report_json.clone()),
            },
        };
        let (id, partition) = (p.capture_id, p.partition);
        match c.write(cmd).await {
            Ok(_) => {
                tracing::info!(capture = id, partition, worker = %f.worker_id, failed, "capture partition recorded")
            }
            Err(e) => {
                tracing::debug!(capture = id, partition, error = %e, "capture partition not recorded; the worker reports it again")
            }
        }
    }
}

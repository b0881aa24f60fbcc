//! Policy versions from the coordinators (`coordinator.endpoints`).
//!
//! The worker watches one coordinator (`tailsift.coordinator.v1.Watch`, see
//! `tailsift_coordinator::watch`) from the version it has; when the stream fails or ends it moves
//! to the next endpoint, round robin, pausing `coordinator.retry_interval` after a full round.
//! Each version received is compiled with the policy crate (native YAML/JSON or the OTel
//! `tail_sampling` format, as stored by the coordinator) and swapped in with
//! [`Engine::set_policy`](crate::engine::Engine::set_policy) between traces; an invalid document
//! (the coordinators validate, so only a version mismatch could cause it) is logged, counted and
//! skipped: the worker keeps the version it has. The last applied version is written to
//! `coordinator.state_file` (atomically), and a restarted worker starts from it, with or without a
//! reachable coordinator. While no coordinator is reachable the worker keeps sampling with the
//! version it has. After each applied version and on each new watch, the worker reports the
//! version it runs to every coordinator (`ReportApplied`, best effort; `GET /v1/workers`).
//! Every call carries `coordinator.token`; `https://` endpoints are verified against
//! `coordinator.tls.ca_file`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tailsift_coordinator::grpc::ClientOptions;
use tailsift_coordinator::watch::PolicyUpdate;
use tokio_util::sync::CancellationToken;

use crate::config::CoordinatorConfig;
use crate::engine::ActivePolicy;
use crate::metrics as m;

/// Why a policy version could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CoordinationError {
    #[error("policy version {version}: {message}")]
    Invalid { version: u64, message: String },
    #[error("state file {path}: {message}")]
    State { path: PathBuf, message: String },
}

/// A policy version as kept in `coordinator.state_file` (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredPolicy {
    pub version: u64,
    /// `yaml`, `json` or `otel_tail_sampling`.
    pub format: String,
    pub document: String,
    pub seed: u64,
    pub seed_epoch: u64,
}

impl From<&PolicyUpdate> for StoredPolicy {
    fn from(u: &PolicyUpdate) -> Self {
        StoredPolicy {
            version: u.version,
            format: u.format.clone(),
            document: u.document.clone(),
            seed: u.seed,
            seed_epoch: u.seed_epoch,
        }
    }
}

impl StoredPolicy {
    /// Parses, validates and compiles the document.
    pub fn compile(&self) -> Result<ActivePolicy, CoordinationError> {
        let invalid = |message: String| CoordinationError::Invalid {
            version: self.version,
            message,
        };
        let update = PolicyUpdate {
            format: self.format.clone(),
            ..Default::default()
        };
        let format = update.policy_format().map_err(invalid)?;
        let doc = format.check(&self.document).map_err(|e| invalid(e.to_string()))?;
        let engine = tailsift_policy::PolicyEngine::compile(&doc).map_err(|e| invalid(e.to_string()))?;
        Ok(ActivePolicy {
            version: self.version,
            seed: self.seed,
            engine,
        })
    }
}

/// Reads the state file; `None` when it does not exist.
pub fn load_state(path: &Path) -> Result<Option<StoredPolicy>, CoordinationError> {
    let err = |message: String| CoordinationError::State {
        path: path.to_path_buf(),
        message,
    };
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| err(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(e.to_string())),
    }
}

/// Writes the state file atomically (temporary file, fsync, rename).
pub fn save_state(path: &Path, p: &StoredPolicy) -> Result<(), CoordinationError> {
    let err = |message: String| CoordinationError::State {
        path: path.to_path_buf(),
        message,
    };
    let bytes = serde_json::to_vec_pretty(p).map_err(|e| err(e.to_string()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| err(e.to_string()))
}

/// The policy persisted by an earlier run, compiled; `None` (logged) when there is none or it
/// cannot be used.
pub fn initial(cfg: &CoordinatorConfig) -> Option<ActivePolicy> {
    let path = cfg.state_file.as_ref()?;
    match load_state(path).and_then(|s| s.map(|s| s.compile()).transpose()) {
        Ok(Some(p)) => {
            tracing::info!(version = p.version, file = %path.display(), "policy version from the state file");
            Some(p)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "state file not used");
            None
        }
    }
}

/// Watches the coordinators until `shutdown`; calls `apply` with every new version, in order.
/// `have` is the version the worker already runs (0: none from a coordinator).
/// Applied versions are reported again this often, so every coordinator's registry converges
/// after a lost report or a coordinator restart.
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(3);

/// Reports `version` to every coordinator, in the background (best effort).
fn report(cfg: &CoordinatorConfig, options: &ClientOptions, worker_id: &str, version: u64) {
    for endpoint in cfg.endpoints.clone() {
        let (worker_id, timeout, options) = (worker_id.to_string(), cfg.connect_timeout, options.clone());
        tokio::spawn(async move {
            if let Err(e) =
                tailsift_coordinator::watch::report_applied(&endpoint, &options, &worker_id, version, timeout).await
            {
                tracing::debug!(error = %e, "applied version not reported");
            }
        });
    }
}

/// This worker's id: `coordinator.worker_id`, or `<hostname>:<admin port>`.
pub fn worker_id(cfg: &CoordinatorConfig, admin_port: u16) -> String {
    cfg.worker_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "sampler".into());
        format!("{host}:{admin_port}")
    })
}

pub async fn run<F: FnMut(ActivePolicy) + Send>(
    cfg: CoordinatorConfig,
    worker_id: String,
    mut have: u64,
    mut apply: F,
    shutdown: CancellationToken,
) {
    if cfg.endpoints.is_empty() {
        return;
    }
    // Validated with the config; only a CA file changed since could fail here.
    let options = match cfg.client_options() {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "coordinator client options; not watching the coordinators");
            return;
        }
    };
    let mut next = 0usize;
    let mut failures_in_round = 0usize;
    loop {
        let endpoint = cfg.endpoints[next % cfg.endpoints.len()].clone();
        next += 1;
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            s = tailsift_coordinator::watch::watch(&endpoint, &options, have, cfg.connect_timeout) => s,
        };
        match stream {
            Ok(mut stream) => {
                tracing::info!(%endpoint, from_version = have, "watching coordinator");
                if have > 0 {
                    report(&cfg, &options, &worker_id, have);
                }
                ::metrics::gauge!(m::COORDINATOR_CONNECTED).set(1.0);
                let mut received = false;
                let mut rereport = tokio::time::interval(REPORT_EVERY);
                rereport.tick().await;
                loop {
                    let item = tokio::select! {
                        _ = shutdown.cancelled() => {
                            ::metrics::gauge!(m::COORDINATOR_CONNECTED).set(0.0);
                            return;
                        }
                        _ = rereport.tick() => {
                            if have > 0 {
                                report(&cfg, &options, &worker_id, have);
                            }
                            continue;
                        }
                        item = stream.next() => item,
                    };
                    match item {
                        Some(Ok(update)) => {
                            received = true;
                            if update.version <= have {
                                continue;
                            }
                            let stored = StoredPolicy::from(&update);
                            match stored.compile() {
                                Ok(policy) => {
                                    apply(policy);
                                    have = update.version;
                                    ::metrics::counter!(m::POLICY_UPDATES, "outcome" => "applied").increment(1);
                                    report(&cfg, &options, &worker_id, have);
                                    if let Some(path) = &cfg.state_file {
                                        if let Err(e) = save_state(path, &stored) {
                                            ::metrics::counter!(m::POLICY_UPDATES, "outcome" => "persist_failed")
                                                .increment(1);
                                            tracing::warn!(error = %e, "applied policy version not persisted");
                                        }
                                    }
                                }
                                Err(e) => {
                                    ::metrics::counter!(m::POLICY_UPDATES, "outcome" => "invalid").increment(1);
                                    tracing::error!(error = %e, %endpoint, "policy version skipped; keeping version {have}");
                                }
                            }
                        }
                        Some(Err(status)) => {
                            tracing::warn!(%endpoint, error = %status, "coordinator watch failed; trying the next one");
                            break;
                        }
                        None => {
                            tracing::warn!(%endpoint, "coordinator closed the watch; trying the next one");
                            break;
                        }
                    }
                }
                ::metrics::gauge!(m::COORDINATOR_CONNECTED).set(0.0);
                // A stream that delivered something counts as a success for this round.
                failures_in_round = if received { 0 } else { failures_in_round + 1 };
            }
            Err(e) => {
                tracing::debug!(error = %e, "coordinator unreachable");
                failures_in_round += 1;
            }
        }
        if failures_in_round >= cfg.endpoints.len() {
            failures_in_round = 0;
            tracing::warn!(
                version = have,
                "no coordinator reachable; sampling with the version in force"
            );
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(cfg.retry_interval) => {}
            }
        } else {
            // Never spin, even when a coordinator accepts and closes at once.
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_round_trip_and_otel_documents_compile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        assert_eq!(load_state(&path).unwrap(), None);
        let p = StoredPolicy {
            version: 7,
            format: "yaml".into(),
            document: "policies:\n  - name: all\n    always: {}\n".into(),
            seed: 5,
            seed_epoch: 1,
        };
        save_state(&path, &p).unwrap();
        assert_eq!(load_state(&path).unwrap(), Some(p.clone()));
        let a = p.compile().unwrap();
        assert_eq!((a.version, a.seed), (7, 5));

        let otel = StoredPolicy {
            format: "otel_tail_sampling".into(),
            document:
                "policies:\n  - name: errors\n    type: status_code\n    status_code: { status_codes: [ERROR] }\n"
                    .into(),
            ..p.clone()
        };
        otel.compile().unwrap();
        let bad = StoredPolicy {
            document: "policies:\n  - name: x\n    probabilistic: { percentage: 200 }\n".into(),
            ..p.clone()
        };
        assert!(matches!(
            bad.compile(),
            Err(CoordinationError::Invalid { version: 7, .. })
        ));
        let unknown = StoredPolicy {
            format: "toml".into(),
            ..p
        };
        assert!(unknown.compile().is_err());
        std::fs::write(&path, b"{not json").unwrap();
        assert!(load_state(&path).is_err());
    }
}

#[cfg(test)]
mod config_tests {
    use tailsift_config::Sources;

    #[test]
    fn coordinator_section_is_validated_by_key() {
        let load = |yaml: &str| {
            Sources {
                file: Some(("s.yaml".into(), yaml.into())),
                ..Default::default()
            }
            .load::<crate::SamplerConfig>()
        };
        let c = load("coordinator:\n  endpoints: [http://c1:9700]\n  state_file: /tmp/x.json\n").unwrap();
        assert_eq!(c.coordinator.endpoints, vec!["http://c1:9700".to_string()]);
        let e = load("coordinator:\n  endpoints: [c1:9700]\n").unwrap_err().to_string();
        assert!(e.contains("coordinator.endpoints[0]"), "{e}");
        let e = load("coordinator:\n  endpointz: []\n").unwrap_err().to_string();
        assert!(e.contains("endpointz"), "{e}");
    }
}

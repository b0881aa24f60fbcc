//! Policy versions from the coordinators (`coordinator.endpoints`).
//!
//! The worker watches one coordinator (`tailsift.coordinator.v1.Watch`, defined in
//! `proto/tailsift/coordinator/v1/watch.proto`; client in `tailsift_proto::client`) from the
//! version it has, starting at an endpoint picked per worker (so many workers spread over the
//! coordinators); when a stream that delivered ends it moves to one of the other endpoints at
//! random (so a lost coordinator's workers spread over the survivors), otherwise to the next one,
//! round robin, after a jittered pause (50 ms + up to 500 ms; `coordinator.retry_interval` ±50%
//! after a full round), so the workers of a lost coordinator do not all reconnect at once.
//! Each version received is compiled with the policy crate (native YAML/JSON or the OTel
//! `tail_sampling` format, as stored by the coordinator) and swapped in with
//! [`Engine::set_policy`](crate::engine::Engine::set_policy) between traces; an invalid document
//! (the coordinators validate, so only a version mismatch could cause it) is logged, counted and
//! skipped: the worker keeps the version it has. The last applied version is written to
//! `coordinator.state_file` (atomically), and a restarted worker starts from it, with or without a
//! reachable coordinator. While no coordinator is reachable the worker keeps sampling with the
//! version it has. On each new watch, and within a second of each applied version (at a moment
//! of its own, so a thousand workers do not all report at once), the worker reports the
//! version it runs to every coordinator (`ReportApplied`, best effort; `GET /v1/workers`), again
//! every 3 s, with its throughput since it started (spans in and kept, traces decided and kept,
//! keeps per rule) and the partitions it owns: the coordinators turn them into the rates of the
//! admin console's overview.
//! Every call carries `coordinator.token`; `https://` endpoints are verified against
//! `coordinator.tls.ca_file`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tailsift_proto::v1::{AppliedReport, PolicyUpdate, RuleCount};
use tailsift_proto::{ClientOptions, DocumentFormat, SamplerSettings};
use tokio_util::sync::CancellationToken;

use crate::config::CoordinatorConfig;
use crate::engine::{ActivePolicy, Engine, LiveSettings, ShadowPolicy};
use crate::metrics as m;

/// Why a policy version could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CoordinationError {
    #[error("policy version {version}: {message}")]
    Invalid { version: u64, message: String },
    #[error("state file {path}: {message}")]
    State { path: PathBuf, message: String },
}

/// A policy version as kept in `coordinator.state_file` (JSON), with the shadow policy and live
/// settings received with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredPolicy {
    pub version: u64,
    /// `yaml`, `json` or `otel_tail_sampling`.
    pub format: String,
    pub document: String,
    pub seed: u64,
    pub seed_epoch: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<StoredShadow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<StoredSettings>,
}

/// The shadow policy as last received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredShadow {
    pub revision: u64,
    pub format: String,
    pub document: String,
}

/// The live settings as last received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredSettings {
    pub revision: u64,
    pub sampler: SamplerSettings,
}

impl From<&PolicyUpdate> for StoredPolicy {
    fn from(u: &PolicyUpdate) -> Self {
        StoredPolicy {
            version: u.version,
            format: u.format.clone(),
            document: u.document.clone(),
            seed: u.seed,
            seed_epoch: u.seed_epoch,
            shadow: None,
            settings: None,
        }
    }
}

impl StoredShadow {
    pub fn compile(&self) -> Result<ShadowPolicy, CoordinationError> {
        let engine = compile_document(&self.format, &self.document).map_err(|message| CoordinationError::Invalid {
            version: self.revision,
            message: format!("shadow: {message}"),
        })?;
        Ok(ShadowPolicy {
            revision: self.revision,
            engine,
        })
    }
}

/// Why a document from the coordinators could not be used.
#[derive(Debug, thiserror::Error)]
enum DocumentError {
    #[error(transparent)]
    Format(#[from] tailsift_proto::UnknownFormat),
    #[error(transparent)]
    Policy(#[from] tailsift_policy::PolicyError),
}

/// Parses, validates and compiles a document stored by the coordinators in `format`.
fn compile_document(format: &str, document: &str) -> Result<tailsift_policy::PolicyEngine, DocumentError> {
    use tailsift_policy::PolicyDocument;
    let format: DocumentFormat = format.parse()?;
    let doc = match format {
        DocumentFormat::Yaml => PolicyDocument::from_yaml(document),
        DocumentFormat::Json => PolicyDocument::from_json(document),
        DocumentFormat::OtelTailSampling => {
            PolicyDocument::parse(document, Some(tailsift_policy::PolicyFormat::OtelTailSampling)).map(|(d, _)| d)
        }
        DocumentFormat::RefineryRules => {
            PolicyDocument::parse(document, Some(tailsift_policy::PolicyFormat::RefineryRules)).map(|(d, _)| d)
        }
    }?;
    doc.validate()?;
    Ok(tailsift_policy::PolicyEngine::compile(&doc)?)
}

/// The engine's view of the coordinators' sampler settings.
pub fn live_settings(s: &SamplerSettings) -> LiveSettings {
    LiveSettings {
        decision_wait: s.decision_wait_ms.map(Duration::from_millis),
        send_delay: s.send_delay_ms.map(Duration::from_millis),
        soft_limit_bytes: s.soft_limit_bytes.map(|b| b as usize),
        hard_limit_bytes: s.hard_limit_bytes.map(|b| b as usize),
        stress_probability: s.stress_probability,
    }
}

impl StoredPolicy {
    /// Parses, validates and compiles the document.
    pub fn compile(&self) -> Result<ActivePolicy, CoordinationError> {
        let engine = compile_document(&self.format, &self.document).map_err(|message| CoordinationError::Invalid {
            version: self.version,
            message: message.to_string(),
        })?;
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
    let stored = load_state(path).map(|s| s.filter(|s| s.version > 0));
    match stored.and_then(|s| s.map(|s| s.compile()).transpose()) {
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

/// The most partitions one report lists (the coordinators accept 10000).
const MAX_REPORTED_PARTITIONS: usize = 10_000;

/// Applied versions are reported again this often, so every coordinator's registry converges
/// after a lost report or a coordinator restart.
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(3);

/// A newly applied update is reported after a delay drawn per worker from `[0, REPORT_SPREAD)`:
/// every worker applies a version within the same few milliseconds, and a thousand of them
/// reporting it at once, each to every coordinator, made the coordinators answer thousands of
/// calls while they were still sending that version to the other workers.
const REPORT_SPREAD: Duration = Duration::from_secs(1);

/// Reports `report` to every coordinator, in the background (best effort).
/// Starts one reporter per coordinator: each sends the latest report (`ReportApplied`) over a
/// connection it keeps (reconnecting after a failure), so a report costs one call per
/// coordinator, not a connection; reports that come faster than a coordinator answers are
/// collapsed to the newest.
fn reporters(
    cfg: &CoordinatorConfig,
    options: &ClientOptions,
    shutdown: &CancellationToken,
) -> tokio::sync::watch::Sender<Option<AppliedReport>> {
    let (tx, rx) = tokio::sync::watch::channel(None::<AppliedReport>);
    for endpoint in cfg.endpoints.clone() {
        let (mut rx, options, timeout, shutdown) = (rx.clone(), options.clone(), cfg.connect_timeout, shutdown.clone());
        tokio::spawn(async move {
            let mut client: Option<tailsift_proto::client::CoordinatorClient> = None;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    changed = rx.changed() => if changed.is_err() { return },
                }
                let Some(report) = rx.borrow_and_update().clone() else {
                    continue;
                };
                if client.is_none() {
                    match tailsift_proto::client::CoordinatorClient::connect(&endpoint, &options, timeout).await {
                        Ok(c) => client = Some(c),
                        Err(e) => {
                            tracing::debug!(error = %e, "applied version not reported");
                            continue;
                        }
                    }
                }
                if let Some(c) = client.as_mut() {
                    if let Err(e) = c.report_applied(report).await {
                        tracing::debug!(error = %e, "applied version not reported");
                        client = None;
                    }
                }
            }
        });
    }
    tx
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

/// What this worker has received and applies, persisted in `coordinator.state_file`.
struct Applied<W> {
    cfg: CoordinatorConfig,
    worker_id: String,
    with_engine: W,
    stored: StoredPolicy,
    /// The latest report, sent to every coordinator by [`reporters`].
    reports: tokio::sync::watch::Sender<Option<AppliedReport>>,
    /// Captures sent by the coordinators, and this worker's progress on them.
    captures: Arc<crate::capture::Captures>,
    captures_revision: u64,
}

impl<W: Fn(&mut dyn FnMut(&mut Engine))> Applied<W> {
    fn report(&self) {
        let mut r = AppliedReport {
            worker_id: self.worker_id.clone(),
            version: self.stored.version,
            settings_revision: self.stored.settings.as_ref().map_or(0, |s| s.revision),
            ..Default::default()
        };
        let counts = |m: &std::collections::BTreeMap<String, u64>| -> Vec<RuleCount> {
            m.iter()
                .map(|(policy, kept)| RuleCount {
                    policy: policy.clone(),
                    kept: *kept,
                })
                .collect()
        };
        (self.with_engine)(&mut |e: &mut Engine| {
            r.spans_in = e.stats.spans;
            r.spans_kept = e.stats.kept_spans;
            r.traces_kept = e.stats.kept_traces;
            r.traces_decided = e.stats.kept_traces + e.stats.dropped_traces;
            r.live_by_policy = counts(&e.stats.kept_by_policy);
            let mut partitions = e.partitions();
            partitions.sort_unstable();
            partitions.truncate(MAX_REPORTED_PARTITIONS);
            r.partitions = partitions;
            if let Some(t) = e.shadow_tally() {
                r.shadow_revision = t.revision;
                r.shadow_traces = t.traces;
                r.shadow_kept = t.shadow_kept;
                r.live_kept = t.live_kept;
                r.both_kept = t.both_kept;
                r.shadow_by_policy = counts(&t.by_policy);
                r.shadow_live_by_policy = counts(&t.live_by_policy);
            }
        });
        r.captures = self.captures.progress();
        if r.version > 0 || r.shadow_revision > 0 || r.settings_revision > 0 || !r.captures.is_empty() {
            self.reports.send_replace(Some(r));
        }
    }

    fn persist(&self) {
        if let Some(path) = &self.cfg.state_file {
            if let Err(e) = save_state(path, &self.stored) {
                ::metrics::counter!(m::POLICY_UPDATES, "outcome" => "persist_failed").increment(1);
                tracing::warn!(error = %e, "applied state not persisted");
            }
        }
    }

    fn apply_shadow(&mut self, shadow: Option<StoredShadow>) -> Result<(), CoordinationError> {
        let compiled = shadow.as_ref().map(StoredShadow::compile).transpose()?;
        let mut compiled = Some(compiled);
        (self.with_engine)(&mut |e: &mut Engine| e.set_shadow(compiled.take().flatten()));
        self.stored.shadow = shadow;
        Ok(())
    }

    fn apply_settings(&mut self, settings: StoredSettings) {
        let live = live_settings(&settings.sampler);
        (self.with_engine)(&mut |e: &mut Engine| e.set_live_settings(&live));
        ::metrics::gauge!(m::SETTINGS_REVISION).set(settings.revision as f64);
        self.stored.settings = Some(settings);
    }

    /// Applies what in `update` is new. Returns whether anything changed.
    fn update(&mut self, update: &PolicyUpdate, endpoint: &str) -> bool {
        let mut changed = false;
        if update.version > self.stored.version {
            let stored = StoredPolicy::from(update);
            match stored.compile() {
                Ok(policy) => {
                    let mut policy = Some(policy);
                    (self.with_engine)(&mut |e: &mut Engine| {
                        if let Some(p) = policy.take() {
                            e.set_policy(p)
                        }
                    });
                    let now_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    if update.time_unix_ms > 0 {
                        let lag = now_ms.saturating_sub(update.time_unix_ms) as f64 / 1000.0;
                        ::metrics::histogram!(m::POLICY_PROPAGATION).record(lag);
                    }
                    self.stored = StoredPolicy {
                        shadow: self.stored.shadow.take(),
                        settings: self.stored.settings.take(),
                        ..stored
                    };
                    ::metrics::counter!(m::POLICY_UPDATES, "outcome" => "applied").increment(1);
                    changed = true;
                }
                Err(e) => {
                    ::metrics::counter!(m::POLICY_UPDATES, "outcome" => "invalid").increment(1);
                    tracing::error!(error = %e, %endpoint, "policy version skipped; keeping version {}", self.stored.version);
                }
            }
        }
        let have_shadow = self.stored.shadow.as_ref().map_or(0, |s| s.revision);
        if update.shadow_revision != have_shadow {
            let shadow = (!update.shadow_document.is_empty()).then(|| StoredShadow {
                revision: update.shadow_revision,
                format: update.shadow_format.clone(),
                document: update.shadow_document.clone(),
            });
            match self.apply_shadow(shadow) {
                Ok(()) => changed = true,
                Err(e) => tracing::error!(error = %e, %endpoint, "shadow policy skipped"),
            }
        }
        let have_settings = self.stored.settings.as_ref().map_or(0, |s| s.revision);
        if update.settings_revision != have_settings {
            match update.sampler_settings() {
                Ok(s) => {
                    self.apply_settings(StoredSettings {
                        revision: update.settings_revision,
                        sampler: s.unwrap_or_default(),
                    });
                    changed = true;
                }
                Err(e) => tracing::error!(error = %e, %endpoint, "live settings skipped"),
            }
        }
        if update.captures_revision != self.captures_revision {
            self.captures_revision = update.captures_revision;
            self.captures.set_specs(update.captures.clone());
            changed = true;
        }
        changed
    }
}

/// Watches the coordinators until `shutdown`, applying every new policy version, shadow policy
/// and live settings through `with_engine` (which runs a closure on the worker's engine).
/// `have` is the policy version the worker already runs (0: none from a coordinator); the shadow
/// policy and settings persisted in the state file are applied first.
pub async fn run<W: Fn(&mut dyn FnMut(&mut Engine)) + Send>(
    cfg: CoordinatorConfig,
    worker_id: String,
    have: u64,
    with_engine: W,
    captures: Arc<crate::capture::Captures>,
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
    let persisted = cfg.state_file.as_deref().and_then(|p| load_state(p).ok().flatten());
    let mut state = Applied {
        cfg: cfg.clone(),
        worker_id,
        with_engine,
        reports: reporters(&cfg, &options, &shutdown),
        captures,
        captures_revision: 0,
        stored: StoredPolicy {
            version: 0,
            format: "yaml".into(),
            document: String::new(),
            seed: 0,
            seed_epoch: 0,
            shadow: None,
            settings: None,
        },
    };
    if let Some(p) = persisted.filter(|p| p.version == have) {
        state.stored = StoredPolicy {
            shadow: None,
            settings: None,
            ..p.clone()
        };
        if let Some(s) = p.settings {
            state.apply_settings(s);
        }
        if let Err(e) = state.apply_shadow(p.shadow) {
            tracing::warn!(error = %e, "persisted shadow policy not used");
        }
    }
    state.stored.version = have;
    // Workers start at different endpoints (by worker id) so that a thousand of them spread over
    // the coordinators instead of all watching the first; after a failure each waits a jittered
    // delay, so the workers of a lost coordinator do not reconnect in one burst.
    let mut jitter = Jitter::new(&state.worker_id);
    let mut next = jitter.start(cfg.endpoints.len());
    let mut failures_in_round = 0usize;
    loop {
        let endpoint = cfg.endpoints[next % cfg.endpoints.len()].clone();
        next += 1;
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            s = tailsift_proto::client::watch(&endpoint, &options, state.stored.version, cfg.connect_timeout) => s,
        };
        match stream {
            Ok(mut stream) => {
                tracing::info!(%endpoint, from_version = state.stored.version, "watching coordinator");
                state.report();
                ::metrics::gauge!(m::COORDINATOR_CONNECTED).set(1.0);
                let mut received = false;
                // Every `REPORT_EVERY`, from a phase of this worker's own: workers that connected
                // together (all of them after a coordinator restart) do not report together.
                let mut rereport = tokio::time::interval_at(
                    tokio::time::Instant::now() + REPORT_EVERY / 2 + jitter.upto(REPORT_EVERY),
                    REPORT_EVERY,
                );
                // When the report of a newly applied update is due (see `REPORT_SPREAD`).
                let mut report_at: Option<tokio::time::Instant> = None;
                loop {
                    let due = report_at;
                    let item = tokio::select! {
                        _ = shutdown.cancelled() => {
                            ::metrics::gauge!(m::COORDINATOR_CONNECTED).set(0.0);
                            return;
                        }
                        _ = rereport.tick() => {
                            state.report();
                            continue;
                        }
                        _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                            report_at = None;
                            state.report();
                            continue;
                        }
                        item = stream.next() => item,
                    };
                    match item {
                        Some(Ok(update)) => {
                            received = true;
                            if state.update(&update, &endpoint) {
                                state.persist();
                                let spread = jitter.upto(REPORT_SPREAD);
                                report_at.get_or_insert_with(|| tokio::time::Instant::now() + spread);
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
                if report_at.is_some() {
                    state.report();
                }
                // A stream that delivered something counts as a success for this round.
                failures_in_round = if received { 0 } else { failures_in_round + 1 };
                if received {
                    // That coordinator was serving and is gone: its workers all had the same next
                    // endpoint, so going round robin would put every one of them on one survivor.
                    // Each goes to one of the others at random instead; from there on round robin
                    // again, so a round still tries every endpoint once.
                    next = after_lost(next, cfg.endpoints.len(), &mut jitter);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "coordinator unreachable");
                failures_in_round += 1;
            }
        }
        if failures_in_round >= cfg.endpoints.len() {
            failures_in_round = 0;
            tracing::warn!(
                version = state.stored.version,
                "no coordinator reachable; sampling with the version in force"
            );
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(jitter.spread(cfg.retry_interval)) => {}
            }
        } else {
            // Never spin, even when a coordinator accepts and closes at once: 50 ms plus up to
            // `RECONNECT_JITTER`, different for every worker.
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(50) + jitter.upto(RECONNECT_JITTER)) => {}
            }
        }
    }
}

/// The next endpoint index after the stream from `next - 1` (mod `n`) delivered and ended: one of
/// the other `n - 1` endpoints, chosen at random, so the workers of a lost coordinator spread
/// over the survivors.
fn after_lost(next: usize, n: usize, jitter: &mut Jitter) -> usize {
    next + jitter.start(n.saturating_sub(1))
}

/// Longest extra wait before moving to the next coordinator after a stream ended.
const RECONNECT_JITTER: Duration = Duration::from_millis(500);

/// Per-worker pseudo-random delays (xorshift seeded from the worker id and the start time): no
/// coordination needed for a thousand workers to reconnect at different times.
struct Jitter(u64);

impl Jitter {
    fn new(worker_id: &str) -> Self {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        worker_id.hash(&mut h);
        std::time::SystemTime::now().hash(&mut h);
        Jitter(h.finish() | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// The first endpoint to try, of `n`.
    fn start(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// A duration in `[0, max)`.
    fn upto(&mut self, max: Duration) -> Duration {
        let ms = max.as_millis().max(1) as u64;
        Duration::from_millis(self.next() % ms)
    }

    /// `d` spread over `[d/2, 3d/2)`.
    fn spread(&mut self, d: Duration) -> Duration {
        d / 2 + self.upto(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_of_a_lost_coordinator_spread_over_the_others() {
        // 3 endpoints; 3,000 workers all served by endpoint 0 (so `next` is 1) lose it.
        let mut on = [0usize; 3];
        for w in 0..3000 {
            let mut jitter = Jitter::new(&format!("worker-{w}"));
            on[after_lost(1, 3, &mut jitter) % 3] += 1;
        }
        assert_eq!(on[0], 0, "{on:?}: back to the lost one");
        // Round robin would put all 3,000 on endpoint 1; at random each gets ~1,500.
        assert!(on[1] > 1200 && on[2] > 1200, "{on:?}");
        // One endpoint: no random offset (the next attempt is the one due); two: always the
        // other one.
        for w in 0..100 {
            assert_eq!(after_lost(5, 1, &mut Jitter::new(&format!("w{w}"))), 5);
        }
        for _ in 0..100 {
            assert_eq!(after_lost(1, 2, &mut Jitter::new("w")) % 2, 1);
        }
        // From there on round robin: the next n attempts try every endpoint once.
        let start = after_lost(1, 3, &mut Jitter::new("w"));
        let tried: std::collections::BTreeSet<usize> = (start..start + 3).map(|i| i % 3).collect();
        assert_eq!(tried.len(), 3);
    }

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
            shadow: Some(StoredShadow {
                revision: 2,
                format: "yaml".into(),
                document: "policies:\n  - name: none\n    always: {}\n".into(),
            }),
            settings: None,
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

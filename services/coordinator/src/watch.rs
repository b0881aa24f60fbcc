//! Policy distribution: gRPC service `tailsift.coordinator.v1.Watch`, served by every coordinator
//! next to the Raft service (same listener, `raft.listen`), from the node's own applied state
//! (followers included), so samplers keep receiving versions while any one node is up.
//!
//! `Watch(WatchRequest { from_version })` is server streaming: the node first sends its current
//! policy version when it is newer than `from_version`, then every later version as it applies
//! it. Versions only grow; a node that is behind the client sends nothing until it catches up.
//! When several versions are applied in quick succession a watcher may only see the newest one
//! (each message is a whole policy, not a delta).
//!
//! `ReportApplied(AppliedReport { worker_id, version })` (unary) records which version a worker
//! runs, in this node's memory only ([`Workers`], shown by `GET /v1/workers`); samplers report to
//! every coordinator after each version they apply and on every new watch.
//!
//! The service and its messages are defined in `proto/tailsift/coordinator/v1/watch.proto` and
//! generated into the `tailsift-proto` crate; [`WatchService`] implements the generated server
//! trait. The Rust client the samplers use is [`tailsift_proto::client`] (re-exported here as
//! [`watch`] and [`report_applied`]).

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::state::PolicyFormat;
use crate::store::View;
use tailsift_proto::DocumentFormat;

pub use tailsift_proto::client::{report_applied, watch, WatchError};
pub use tailsift_proto::v1::{
    capture_progress, AppliedReport, Capture as CaptureSpec, CaptureProgress, PolicyUpdate, ReportAck, RuleCount,
    WatchRequest,
};
pub use tailsift_proto::WATCH_SERVICE as SERVICE;

/// Workers remembered per node; the least recently reporting is forgotten beyond this.
pub const MAX_WORKERS: usize = 10_000;

/// What a shadow policy would have done on one worker.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Default)]
pub struct ShadowCounts {
    pub revision: u64,
    /// Traces evaluated (decided by the live policy while the shadow was applied).
    pub traces: u64,
    /// Traces the shadow would keep.
    pub shadow_kept: u64,
    /// Traces the live policy kept.
    pub live_kept: u64,
    /// Traces both kept.
    pub both_kept: u64,
    /// Shadow keeps by rule.
    pub by_policy: Vec<RuleCount>,
}

/// What a worker last reported to this node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkerReport {
    pub worker_id: String,
    pub version: u64,
    pub settings_revision: u64,
    pub reported_unix_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowCounts>,
    /// Capture progress per partition, as last reported.
    #[serde(skip)]
    pub captures: Vec<CaptureProgress>,
}

/// A capture partition a worker reported finished (done or failed), for the replicated state.
#[derive(Debug, Clone)]
pub struct FinishedPartition {
    pub worker_id: String,
    pub progress: CaptureProgress,
}

/// Finished partitions waiting to be recorded, at most (more are dropped: workers report again
/// every few seconds).
const FINISHED_QUEUE: usize = 1024;

impl WorkerReport {
    fn from_report(r: &AppliedReport, now: u64) -> Self {
        WorkerReport {
            worker_id: r.worker_id.clone(),
            version: r.version,
            settings_revision: r.settings_revision,
            reported_unix_ms: now,
            shadow: (r.shadow_revision > 0).then(|| ShadowCounts {
                revision: r.shadow_revision,
                traces: r.shadow_traces,
                shadow_kept: r.shadow_kept,
                live_kept: r.live_kept,
                both_kept: r.both_kept,
                by_policy: r.shadow_by_policy.clone(),
            }),
            captures: r.captures.clone(),
        }
    }
}

/// The workers that reported to this node (in memory, not replicated), and the capture
/// partitions they finished, queued for [`Workers::take_finished`]. Cheap to clone.
#[derive(Clone)]
pub struct Workers {
    reports: Arc<std::sync::Mutex<std::collections::BTreeMap<String, WorkerReport>>>,
    finished_tx: tokio::sync::mpsc::Sender<FinishedPartition>,
    finished_rx: Arc<std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<FinishedPartition>>>>,
}

impl Default for Workers {
    fn default() -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(FINISHED_QUEUE);
        Workers {
            reports: Default::default(),
            finished_tx: tx,
            finished_rx: Arc::new(std::sync::Mutex::new(Some(rx))),
        }
    }
}

impl Workers {
    /// The finished capture partitions workers report (once: the recorder owns the receiver).
    pub fn take_finished(&self) -> Option<tokio::sync::mpsc::Receiver<FinishedPartition>> {
        self.finished_rx.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Records a worker's version (no shadow counts).
    pub fn record(&self, worker_id: &str, version: u64) {
        self.record_report(&AppliedReport {
            worker_id: worker_id.to_string(),
            version,
            ..Default::default()
        });
    }

    pub fn record_report(&self, r: &AppliedReport) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        for c in &r.captures {
            use capture_progress::State;
            if matches!(c.state(), State::Done | State::Failed) {
                // Full: dropped; the worker reports it again in a few seconds.
                let _ = self.finished_tx.try_send(FinishedPartition {
                    worker_id: r.worker_id.clone(),
                    progress: c.clone(),
                });
            }
        }
        let mut g = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        g.insert(r.worker_id.clone(), WorkerReport::from_report(r, now));
        while g.len() > MAX_WORKERS {
            let oldest = g
                .values()
                .min_by_key(|w| w.reported_unix_ms)
                .map(|w| w.worker_id.clone());
            match oldest {
                Some(id) => g.remove(&id),
                None => break,
            };
        }
    }

    /// How many workers are remembered.
    pub fn len(&self) -> usize {
        self.reports.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every worker, by id.
    pub fn list(&self) -> Vec<WorkerReport> {
        self.reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// The update for the view's current state: policy version (0 and an empty document before the
/// first one), shadow policy and live settings; `None` while nothing is set.
pub fn current_update(view: &View) -> Option<PolicyUpdate> {
    let r = &view.registry;
    let mut u = match r.current() {
        Some(_) => policy_update(view)?,
        None if r.shadow_revision == 0 && r.settings_revision == 0 && r.captures_revision == 0 => return None,
        None => PolicyUpdate {
            format: format_name(PolicyFormat::Yaml).to_string(),
            applied_index: view.last_applied.map_or(0, |l| l.index),
            ..Default::default()
        },
    };
    u.shadow_revision = r.shadow_revision;
    if let Some(s) = &r.shadow {
        u.shadow_format = format_name(s.format).to_string();
        u.shadow_document = s.document.clone();
    }
    u.settings_revision = r.settings_revision;
    if r.settings_revision > 0 {
        u.settings_json = serde_json::to_string(&r.settings.sampler).unwrap_or_default();
    }
    u.captures_revision = r.captures_revision;
    u.captures = r
        .running_captures()
        .map(|c| CaptureSpec {
            id: c.id,
            match_format: format_name(c.match_format).to_string(),
            match_document: c.match_document.clone(),
            since_unix_ms: c.since_unix_ms,
            until_unix_ms: c.until_unix_ms,
            read_until_unix_ms: c.read_until_unix_ms,
            done_partitions: c.done.keys().copied().collect(),
            kind: match c.kind {
                crate::state::JobKind::Capture => "capture",
                crate::state::JobKind::Whatif => "whatif",
            }
            .into(),
            live_format: c.live.as_ref().map_or("", |l| format_name(l.format)).into(),
            live_document: c.live.as_ref().map_or(String::new(), |l| l.document.clone()),
            seed: c.live.as_ref().map_or(0, |l| l.seed),
        })
        .collect();
    Some(u)
}

/// What the watcher compares to tell a new update from one it has.
fn revision(u: &PolicyUpdate) -> (u64, u64, u64, u64) {
    (u.version, u.shadow_revision, u.settings_revision, u.captures_revision)
}

fn policy_update(view: &View) -> Option<PolicyUpdate> {
    let p = view.registry.current()?;
    let seeds = &view.registry.seeds;
    // A version always carries the seed epoch in force when it was published: the current one.
    let seed = if seeds.current.epoch == p.seed_epoch {
        seeds.current.seed
    } else {
        seeds
            .next
            .filter(|n| n.epoch == p.seed_epoch)
            .map_or(seeds.current.seed, |n| n.seed)
    };
    Some(PolicyUpdate {
        version: p.version,
        format: format_name(p.format).to_string(),
        document: p.document.clone(),
        seed,
        seed_epoch: p.seed_epoch,
        applied_index: view.last_applied.map_or(0, |l| l.index),
        time_unix_ms: p.time_unix_ms,
        ..Default::default()
    })
}

/// The stored format of an update's document.
pub fn policy_format(u: &PolicyUpdate) -> Result<PolicyFormat, tailsift_proto::UnknownFormat> {
    Ok(match u.policy_format()? {
        DocumentFormat::Yaml => PolicyFormat::Yaml,
        DocumentFormat::Json => PolicyFormat::Json,
        DocumentFormat::OtelTailSampling => PolicyFormat::OtelTailSampling,
        DocumentFormat::RefineryRules => PolicyFormat::RefineryRules,
    })
}

/// The wire name of a stored format.
pub fn format_name(f: PolicyFormat) -> &'static str {
    match f {
        PolicyFormat::Yaml => DocumentFormat::Yaml,
        PolicyFormat::Json => DocumentFormat::Json,
        PolicyFormat::OtelTailSampling => DocumentFormat::OtelTailSampling,
        PolicyFormat::RefineryRules => DocumentFormat::RefineryRules,
    }
    .as_str()
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<PolicyUpdate, Status>> + Send>>;

/// The updates for a watcher that has policy version `from_version`: first the current state if
/// its policy version is newer or a shadow policy or live settings are set (the watcher cannot
/// say which of those it has), then the state again each time the policy version, the shadow
/// policy or the settings change.
pub fn updates(view: watch::Receiver<Arc<View>>, from_version: u64) -> impl Stream<Item = PolicyUpdate> + Send {
    let sent = (from_version, 0, 0, 0);
    futures::stream::unfold((view, sent, true), |(mut rx, mut sent, mut first)| async move {
        loop {
            if !first && rx.changed().await.is_err() {
                return None;
            }
            let update = current_update(&rx.borrow_and_update());
            if let Some(u) = update {
                let r = revision(&u);
                let new = if first {
                    r.0 > sent.0 || r.1 > 0 || r.2 > 0 || r.3 > 0
                } else {
                    r.0 >= sent.0 && r != sent
                };
                if new {
                    sent = (r.0.max(sent.0), r.1, r.2, r.3);
                    return Some((u, (rx, sent, false)));
                }
            }
            first = false;
        }
    })
}

/// The tonic service. Cheap to clone.
#[derive(Clone)]
pub struct WatchService {
    view: watch::Receiver<Arc<View>>,
    workers: Workers,
}

impl WatchService {
    pub fn new(view: watch::Receiver<Arc<View>>) -> Self {
        Self::with_workers(view, Workers::default())
    }

    /// Records `ReportApplied` calls in `workers`.
    pub fn with_workers(view: watch::Receiver<Arc<View>>, workers: Workers) -> Self {
        WatchService { view, workers }
    }
}

#[tonic::async_trait]
impl tailsift_proto::v1::watch_server::Watch for WatchService {
    type WatchStream = UpdateStream;

    async fn watch(&self, request: Request<WatchRequest>) -> Result<Response<UpdateStream>, Status> {
        let from = request.get_ref().from_version;
        let s: UpdateStream = Box::pin(updates(self.view.clone(), from).map(Ok));
        Ok(Response::new(s))
    }

    async fn report_applied(&self, request: Request<AppliedReport>) -> Result<Response<ReportAck>, Status> {
        let r = request.into_inner();
        if r.worker_id.is_empty() || r.worker_id.len() > 256 {
            return Err(Status::invalid_argument("worker_id must be 1 to 256 bytes"));
        }
        if r.shadow_by_policy.len() > 1000 {
            return Err(Status::invalid_argument("at most 1000 shadow rule counts"));
        }
        if r.captures.len() > 10_000 {
            return Err(Status::invalid_argument("at most 10000 capture progress entries"));
        }
        self.workers.record_report(&r);
        Ok(Response::new(ReportAck {}))
    }
}

/// The gRPC server for `service` as mounted on `raft.listen`: requests of at most 1 MiB, updates
/// of up to 64 MiB.
pub fn server(service: WatchService) -> tailsift_proto::v1::watch_server::WatchServer<WatchService> {
    tailsift_proto::v1::watch_server::WatchServer::new(service)
        .max_decoding_message_size(1 << 20)
        .max_encoding_message_size(64 << 20)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::state::{Command, Registry};

    fn put(r: &mut Registry, doc: &str) {
        r.apply(&Command::PutPolicy {
            author: "a".into(),
            time_unix_ms: 1,
            format: PolicyFormat::Yaml,
            document: doc.into(),
        })
        .unwrap();
    }

    fn channel(reg: &Registry) -> (watch::Sender<Arc<View>>, watch::Receiver<Arc<View>>) {
        watch::channel(Arc::new(View {
            last_applied: None,
            registry: reg.clone(),
        }))
    }

    fn publish(tx: &watch::Sender<Arc<View>>, reg: &Registry) {
        tx.send_replace(Arc::new(View {
            last_applied: None,
            registry: reg.clone(),
        }));
    }

    #[tokio::test]
    async fn sends_the_current_version_then_each_newer_one() {
        let mut reg = Registry::default();
        put(&mut reg, "d1");
        let (tx, rx) = channel(&reg);
        let mut s = Box::pin(updates(rx.clone(), 0));
        let first = s.next().await.unwrap();
        assert_eq!(
            (first.version, first.document.as_str(), first.format.as_str()),
            (1, "d1", "yaml")
        );
        reg.apply(&Command::RotateSeed {
            author: "a".into(),
            time_unix_ms: 1,
            seed: 77,
        })
        .unwrap();
        publish(&tx, &reg);
        put(&mut reg, "d2");
        publish(&tx, &reg);
        let second = tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (second.version, second.document.as_str(), second.seed, second.seed_epoch),
            (2, "d2", 77, 1)
        );

        // A watcher that already has version 2 gets nothing until version 3.
        let mut s2 = Box::pin(updates(rx, 2));
        assert!(tokio::time::timeout(Duration::from_millis(200), s2.next())
            .await
            .is_err());
        put(&mut reg, "d3");
        publish(&tx, &reg);
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), s2.next())
                .await
                .unwrap()
                .unwrap()
                .version,
            3
        );
    }

    #[tokio::test]
    async fn shadow_and_settings_changes_are_streamed_without_a_new_version() {
        let mut reg = Registry::default();
        put(&mut reg, "d1");
        let (tx, rx) = channel(&reg);
        // A watcher with version 1 and nothing else set gets nothing.
        let mut s = Box::pin(updates(rx.clone(), 1));
        assert!(tokio::time::timeout(Duration::from_millis(200), s.next())
            .await
            .is_err());
        reg.apply(&Command::SetShadow {
            author: "a".into(),
            time_unix_ms: 1,
            format: PolicyFormat::Yaml,
            document: "s1".into(),
        })
        .unwrap();
        publish(&tx, &reg);
        let u = tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                u.version,
                u.shadow_revision,
                u.shadow_document.as_str(),
                u.settings_revision
            ),
            (1, 1, "s1", 0)
        );
        let mut settings = reg.settings;
        settings.sampler.send_delay_ms = Some(250);
        reg.apply(&Command::SetSettings { settings }).unwrap();
        publish(&tx, &reg);
        let u = tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(u.settings_revision, 1);
        assert_eq!(u.sampler_settings().unwrap().unwrap().send_delay_ms, Some(250));
        // A new watcher (any version) gets the shadow and settings at once.
        let mut s2 = Box::pin(updates(rx, 1));
        let u = tokio::time::timeout(Duration::from_secs(5), s2.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((u.shadow_revision, u.settings_revision), (1, 1));
    }

    #[test]
    fn workers_keep_the_last_report_per_id() {
        let w = Workers::default();
        w.record("a", 1);
        w.record("b", 1);
        w.record("a", 3);
        let l = w.list();
        assert_eq!(
            l.iter().map(|r| (r.worker_id.as_str(), r.version)).collect::<Vec<_>>(),
            vec![("a", 3), ("b", 1)]
        );
    }
}

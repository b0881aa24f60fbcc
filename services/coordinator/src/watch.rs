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
//! `ReportApplied(AppliedReport { worker_id, version, ... })` (unary) records which version a
//! worker runs, in this node's memory only ([`Workers`], shown by `GET /v1/workers`); samplers
//! report to every coordinator within a second of each version they apply, on every new watch and
//! every 3 s.
//! Reports carry cumulative counts (spans in and kept, traces decided and kept, keeps per rule,
//! and the shadow policy's tally); [`Workers`] turns two reports of a worker at least
//! [`MIN_RATE_WINDOW_MS`] apart into per-second [`Rates`] (the admin console's overview and
//! shadow pages), starting over when the counts go down (the worker restarted).
//!
//! The service and its messages are defined in `proto/tailsift/coordinator/v1/watch.proto` and
//! generated into the `tailsift-proto` crate; [`WatchService`] implements the generated server
//! trait. The Rust client the samplers use is [`tailsift_proto::client`] (re-exported here as
//! [`watch`] and [`report_applied`]).

use std::collections::BTreeMap;
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
    /// Live keeps of the same traces by rule.
    pub live_by_policy: Vec<RuleCount>,
}

/// What a worker last reported to this node.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WorkerReport {
    pub worker_id: String,
    pub version: u64,
    pub settings_revision: u64,
    pub reported_unix_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowCounts>,
    /// The spans-topic partitions it owns (sorted).
    pub partitions: Vec<i32>,
    /// Its throughput between two of its reports; `None` until a second report with counts
    /// (or after it restarted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rates: Option<Rates>,
    /// The counts rates are computed from (the report that started the current window).
    #[serde(skip)]
    baseline: Counts,
    /// Capture progress per partition, as last reported.
    #[serde(skip)]
    pub captures: Vec<CaptureProgress>,
}

/// The most rule names kept per worker and per count (further names add up under
/// [`OTHER_RULES`]): 10,000 workers with several rule maps each stay within memory.
pub const MAX_RULES_PER_WORKER: usize = 256;
/// Where rules beyond [`MAX_RULES_PER_WORKER`] are counted.
pub const OTHER_RULES: &str = "(other rules)";
/// Workers that reported within this many milliseconds count in cluster totals (they report
/// every 3 s); older reports are shown as stale.
pub const FRESH_MS: u64 = 15_000;
/// Rates are computed over windows of at least this long (reports closer together, e.g. after
/// each applied update, extend the window instead of giving noisy rates).
pub const MIN_RATE_WINDOW_MS: u64 = 2_000;

/// The cumulative counts of one report.
#[derive(Debug, Clone, Default, PartialEq)]
struct Counts {
    at_ms: u64,
    spans_in: u64,
    spans_kept: u64,
    traces_decided: u64,
    traces_kept: u64,
    by_policy: BTreeMap<String, u64>,
    shadow_revision: u64,
    shadow_traces: u64,
    shadow_kept: u64,
    shadow_live_kept: u64,
    shadow_by_policy: BTreeMap<String, u64>,
    shadow_live_by_policy: BTreeMap<String, u64>,
}

/// At most [`MAX_RULES_PER_WORKER`] rule counts by name; the rest under [`OTHER_RULES`].
fn rule_map(counts: &[RuleCount]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for c in counts {
        if m.len() < MAX_RULES_PER_WORKER || m.contains_key(&c.policy) {
            *m.entry(c.policy.clone()).or_default() += c.kept;
        } else {
            *m.entry(OTHER_RULES.to_string()).or_default() += c.kept;
        }
    }
    m
}

impl Counts {
    fn of(r: &AppliedReport, at_ms: u64) -> Self {
        Counts {
            at_ms,
            spans_in: r.spans_in,
            spans_kept: r.spans_kept,
            traces_decided: r.traces_decided,
            traces_kept: r.traces_kept,
            by_policy: rule_map(&r.live_by_policy),
            shadow_revision: r.shadow_revision,
            shadow_traces: r.shadow_traces,
            shadow_kept: r.shadow_kept,
            shadow_live_kept: r.live_kept,
            shadow_by_policy: rule_map(&r.shadow_by_policy),
            shadow_live_by_policy: rule_map(&r.shadow_live_by_policy),
        }
    }

    /// No throughput reported (a worker that predates the fields, or has consumed nothing).
    fn is_empty(&self) -> bool {
        self.spans_in == 0 && self.traces_decided == 0
    }

    /// Whether every count of `self` is at least the one in `base` (no restart in between).
    fn follows(&self, base: &Counts) -> bool {
        self.spans_in >= base.spans_in
            && self.spans_kept >= base.spans_kept
            && self.traces_decided >= base.traces_decided
            && self.traces_kept >= base.traces_kept
    }
}

/// Per-second throughput of one worker (or, added up, of the cluster).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Rates {
    /// The window the rates are measured over, in milliseconds (0 in a sum).
    pub window_ms: u64,
    pub spans_in_per_s: f64,
    pub spans_kept_per_s: f64,
    /// Traces decided by the live policy, kept or dropped.
    pub traces_per_s: f64,
    pub traces_kept_per_s: f64,
    /// Kept traces per second by the live rule that kept.
    pub by_policy: BTreeMap<String, f64>,
    /// While a shadow policy is evaluated: both policies on the same traces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowRates>,
}

/// Per-second keeps of the live and the shadow policy on the traces the shadow evaluated.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ShadowRates {
    pub revision: u64,
    pub traces_per_s: f64,
    pub shadow_kept_per_s: f64,
    pub live_kept_per_s: f64,
    /// Shadow keeps per second by shadow rule.
    pub by_policy: BTreeMap<String, f64>,
    /// Live keeps per second by live rule.
    pub live_by_policy: BTreeMap<String, f64>,
}

fn per_s(cur: u64, base: u64, secs: f64) -> f64 {
    cur.saturating_sub(base) as f64 / secs
}

fn map_per_s(cur: &BTreeMap<String, u64>, base: &BTreeMap<String, u64>, secs: f64) -> BTreeMap<String, f64> {
    cur.iter()
        .map(|(k, v)| (k.clone(), per_s(*v, base.get(k).copied().unwrap_or(0), secs)))
        .collect()
}

impl Rates {
    /// The rates from `base` to `cur` (`cur` follows `base`, at least [`MIN_RATE_WINDOW_MS`] later).
    fn between(base: &Counts, cur: &Counts) -> Self {
        let window_ms = cur.at_ms - base.at_ms;
        let secs = window_ms as f64 / 1000.0;
        let shadow = (cur.shadow_revision > 0
            && cur.shadow_revision == base.shadow_revision
            && cur.shadow_traces >= base.shadow_traces)
            .then(|| ShadowRates {
                revision: cur.shadow_revision,
                traces_per_s: per_s(cur.shadow_traces, base.shadow_traces, secs),
                shadow_kept_per_s: per_s(cur.shadow_kept, base.shadow_kept, secs),
                live_kept_per_s: per_s(cur.shadow_live_kept, base.shadow_live_kept, secs),
                by_policy: map_per_s(&cur.shadow_by_policy, &base.shadow_by_policy, secs),
                live_by_policy: map_per_s(&cur.shadow_live_by_policy, &base.shadow_live_by_policy, secs),
            });
        Rates {
            window_ms,
            spans_in_per_s: per_s(cur.spans_in, base.spans_in, secs),
            spans_kept_per_s: per_s(cur.spans_kept, base.spans_kept, secs),
            traces_per_s: per_s(cur.traces_decided, base.traces_decided, secs),
            traces_kept_per_s: per_s(cur.traces_kept, base.traces_kept, secs),
            by_policy: map_per_s(&cur.by_policy, &base.by_policy, secs),
            shadow,
        }
    }

    /// Adds `other` to `self` (a cluster total; `window_ms` stays 0).
    pub fn add(&mut self, other: &Rates) {
        self.spans_in_per_s += other.spans_in_per_s;
        self.spans_kept_per_s += other.spans_kept_per_s;
        self.traces_per_s += other.traces_per_s;
        self.traces_kept_per_s += other.traces_kept_per_s;
        for (k, v) in &other.by_policy {
            *self.by_policy.entry(k.clone()).or_default() += v;
        }
    }
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
    /// The report `r` received at `now`, after `prev` (the same worker's previous report).
    fn from_report(r: &AppliedReport, now: u64, prev: Option<&WorkerReport>) -> Self {
        let cur = Counts::of(r, now);
        let (baseline, rates) = match prev {
            _ if cur.is_empty() => (cur, None),
            Some(p) if !p.baseline.is_empty() && cur.follows(&p.baseline) => {
                if now.saturating_sub(p.baseline.at_ms) >= MIN_RATE_WINDOW_MS {
                    let rates = Rates::between(&p.baseline, &cur);
                    (cur, Some(rates))
                } else {
                    (p.baseline.clone(), p.rates.clone())
                }
            }
            // The first report with counts, or the worker restarted: a new window starts.
            _ => (cur, None),
        };
        let mut partitions = r.partitions.clone();
        partitions.sort_unstable();
        partitions.dedup();
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
                by_policy: r.shadow_by_policy.iter().take(MAX_RULES_PER_WORKER).cloned().collect(),
                live_by_policy: r
                    .shadow_live_by_policy
                    .iter()
                    .take(MAX_RULES_PER_WORKER)
                    .cloned()
                    .collect(),
            }),
            partitions,
            rates,
            baseline,
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
        self.record_report_at(r, now);
    }

    /// [`Self::record_report`] received at `now` (Unix milliseconds).
    pub fn record_report_at(&self, r: &AppliedReport, now: u64) {
        let mut g = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        let report = WorkerReport::from_report(r, now, g.get(&r.worker_id));
        g.insert(r.worker_id.clone(), report);
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
    let seed = view.registry.seed_of(p);
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
        if r.shadow_by_policy.len() > 1000 || r.live_by_policy.len() > 1000 || r.shadow_live_by_policy.len() > 1000 {
            return Err(Status::invalid_argument("at most 1000 rule counts per list"));
        }
        if r.partitions.len() > 10_000 {
            return Err(Status::invalid_argument("at most 10000 partitions"));
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
            note: String::new(),
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
    async fn a_watcher_that_does_not_read_holds_back_no_other_and_gets_only_the_newest() {
        let mut reg = Registry::default();
        put(&mut reg, "d1");
        let (tx, rx) = channel(&reg);
        let mut slow = Box::pin(updates(rx.clone(), 0));
        let mut fast = Box::pin(updates(rx, 0));
        assert_eq!(slow.next().await.unwrap().version, 1);
        assert_eq!(fast.next().await.unwrap().version, 1);
        // Nothing is queued for the watcher that does not read: the others get every version.
        for v in 2..=50 {
            put(&mut reg, &format!("d{v}"));
            publish(&tx, &reg);
            let u = tokio::time::timeout(Duration::from_secs(5), fast.next())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(u.version, v);
        }
        // When it reads again it gets the newest version, once.
        let u = tokio::time::timeout(Duration::from_secs(5), slow.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((u.version, u.document.as_str()), (50, "d50"));
        assert!(tokio::time::timeout(Duration::from_millis(100), slow.next())
            .await
            .is_err());
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

    #[test]
    fn rates_come_from_two_reports_a_window_apart_and_restart_with_the_worker() {
        let w = Workers::default();
        let report = |spans: u64, kept: u64, rule: u64| AppliedReport {
            worker_id: "w".into(),
            version: 1,
            spans_in: spans,
            spans_kept: spans / 2,
            traces_decided: kept * 4,
            traces_kept: kept,
            live_by_policy: vec![RuleCount {
                policy: "errors".into(),
                kept: rule,
            }],
            partitions: vec![3, 1, 3],
            ..Default::default()
        };
        w.record_report_at(&report(1000, 10, 10), 10_000);
        assert_eq!(w.list()[0].rates, None);
        assert_eq!(w.list()[0].partitions, vec![1, 3]);
        // Too soon after the first: still no window.
        w.record_report_at(&report(1100, 11, 11), 10_500);
        assert_eq!(w.list()[0].rates, None);
        w.record_report_at(&report(3000, 30, 20), 14_000);
        let r = w.list()[0].rates.clone().unwrap();
        assert_eq!(r.window_ms, 4_000);
        assert_eq!((r.spans_in_per_s, r.spans_kept_per_s), (500.0, 250.0));
        assert_eq!((r.traces_per_s, r.traces_kept_per_s), (20.0, 5.0));
        assert_eq!(r.by_policy["errors"], 2.5);
        // Lower counts: the worker restarted; no rates until the next window.
        w.record_report_at(&report(100, 1, 1), 17_000);
        assert_eq!(w.list()[0].rates, None);
        w.record_report_at(&report(2100, 21, 11), 19_000);
        assert_eq!(w.list()[0].rates.clone().unwrap().spans_in_per_s, 1000.0);
    }
}

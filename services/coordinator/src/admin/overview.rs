//! `GET /v1/overview` (any valid token): the cluster's throughput and the workers' state as this
//! coordinator knows them from the workers' reports (`ReportApplied`, see [`crate::watch`]); no
//! Prometheus needed. What the admin console's overview page shows, refreshed every few seconds.
//!
//! Rates are per second over each worker's last report window (about 3 s); the cluster total
//! adds up the workers that reported in the last [`FRESH_MS`](crate::watch::FRESH_MS) milliseconds, so a stopped worker
//! drops out of the total instead of freezing it. A worker is *behind* while the policy version
//! (or settings revision) it applies is older than this node's.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::{now_ms, version_headers, AdminState, Answer, Reflects};
use crate::watch::Rates;

use crate::watch::FRESH_MS;

/// Kept traces of one live rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleRate {
    pub policy: String,
    pub kept_per_s: f64,
    /// `kept_per_s` over all traces decided per second (0 to 1); `null` while none were decided.
    pub share: Option<f64>,
}

/// One worker in the overview.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerOverview {
    pub worker_id: String,
    pub version: u64,
    /// It applies an older policy version than this node's current one.
    pub behind: bool,
    pub settings_revision: u64,
    /// It applies an older settings revision than this node's.
    pub settings_behind: bool,
    pub partitions: Vec<i32>,
    pub reported_unix_ms: u64,
    pub report_age_ms: u64,
    /// No report for more than [`FRESH_MS`]: left out of the totals.
    pub stale: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rates: Option<Rates>,
}

/// `GET /v1/overview`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    pub node: u64,
    pub now_unix_ms: u64,
    pub policy_version: u64,
    pub settings_revision: u64,
    /// `null` without a shadow policy.
    pub shadow_revision: Option<u64>,
    pub fresh_ms: u64,
    /// The fresh workers' rates added up (`window_ms` 0).
    pub total: Rates,
    /// Kept over decided traces (0 to 1); `null` while none were decided.
    pub keep_rate: Option<f64>,
    /// Kept over consumed spans (0 to 1); `null` while none were consumed.
    pub span_keep_rate: Option<f64>,
    /// Live rules by kept traces per second, highest first.
    pub rules: Vec<RuleRate>,
    pub workers: Vec<WorkerOverview>,
    /// How many workers apply an older policy version.
    pub workers_behind: usize,
    pub reflects: Reflects,
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| (a / b).min(1.0))
}

#[utoipa::path(get, path = "/v1/overview",
    summary = "Cluster throughput (spans and traces in and kept per second, per live rule) and every worker's applied version, partitions and last report, from the workers' reports to this node",
    responses((status = 200, description = "total, keep_rate, rules, workers", body = Overview)))]
pub async fn get_overview(State(s): State<AdminState>) -> Answer<Overview> {
    let v = s.c.view();
    let now = now_ms();
    let version = v.registry.policy_version();
    let settings_revision = v.registry.settings_revision;
    let mut total = Rates::default();
    let mut workers = Vec::new();
    for w in s.c.workers.list() {
        let age = now.saturating_sub(w.reported_unix_ms);
        let stale = age > FRESH_MS;
        if let (false, Some(r)) = (stale, w.rates.as_ref()) {
            total.add(r);
        }
        workers.push(WorkerOverview {
            behind: w.version < version,
            settings_behind: w.settings_revision < settings_revision,
            worker_id: w.worker_id,
            version: w.version,
            settings_revision: w.settings_revision,
            partitions: w.partitions,
            reported_unix_ms: w.reported_unix_ms,
            report_age_ms: age,
            stale,
            rates: w.rates,
        });
    }
    let mut rules: Vec<RuleRate> = total
        .by_policy
        .iter()
        .map(|(k, v)| RuleRate {
            policy: k.clone(),
            kept_per_s: *v,
            share: ratio(*v, total.traces_per_s),
        })
        .collect();
    rules.sort_by(|a, b| {
        b.kept_per_s
            .total_cmp(&a.kept_per_s)
            .then_with(|| a.policy.cmp(&b.policy))
    });
    let body = Overview {
        node: s.c.node_id,
        now_unix_ms: now,
        policy_version: version,
        settings_revision,
        shadow_revision: v.registry.shadow.as_ref().map(|sh| sh.revision),
        fresh_ms: FRESH_MS,
        keep_rate: ratio(total.traces_kept_per_s, total.traces_per_s),
        span_keep_rate: ratio(total.spans_kept_per_s, total.spans_in_per_s),
        rules,
        workers_behind: workers.iter().filter(|w| w.behind).count(),
        workers,
        total,
        reflects: Reflects::of(&s.c, &v),
    };
    Ok((version_headers(&v), Json(body)))
}

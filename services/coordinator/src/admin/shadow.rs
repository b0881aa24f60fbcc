//! The shadow policy (`/v1/policy/shadow`): a candidate evaluated by every worker beside the live
//! policy, on the same traces, without affecting decisions. Replicated through Raft and streamed
//! to every worker by [`crate::watch`]; workers report what it would keep (in total and per rule)
//! with their applied-version reports, and `GET /v1/policy/shadow` adds them up. Counts restart
//! when a new shadow revision is set.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    now_ms, version_headers, write, AdminState, Answer, Body, Caller, ErrorBody, PolicyBody, Reflects, ShadowCounts,
    Written,
};
use crate::state::{Command, ShadowPolicy};
use crate::watch::ShadowRates;

/// One worker's counts for the current shadow revision.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShadowWorker {
    pub worker_id: String,
    pub version: u64,
    pub reported_unix_ms: u64,
    pub counts: ShadowCounts,
}

/// The counts of every worker added up.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ShadowTotal {
    pub traces: u64,
    pub shadow_kept: u64,
    pub live_kept: u64,
    pub both_kept: u64,
    pub only_shadow_kept: u64,
    pub only_live_kept: u64,
    /// Shadow keeps by rule name.
    pub by_policy: BTreeMap<String, u64>,
    /// Live keeps of the same traces by rule name.
    pub live_by_policy: BTreeMap<String, u64>,
    /// Per second, over the workers' last report windows (workers that reported in the last
    /// [`FRESH_MS`](crate::watch::FRESH_MS) ms and have a window for this shadow revision).
    pub rates: ShadowRates,
}

/// `GET /v1/policy/shadow`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShadowStatus {
    /// `null` when no shadow policy is set.
    pub shadow: Option<ShadowPolicy>,
    pub live_version: u64,
    pub workers: Vec<ShadowWorker>,
    pub total: ShadowTotal,
    pub reflects: Reflects,
}

#[utoipa::path(get, path = "/v1/policy/shadow",
    summary = "The shadow policy and what it would keep beside the live one: per worker, in total and per rule",
    responses((status = 200, description = "shadow, live_version, workers, total", body = ShadowStatus)))]
pub async fn get_shadow(State(s): State<AdminState>) -> Answer<ShadowStatus> {
    let v = s.c.view();
    let shadow = v.registry.shadow.clone();
    let revision = shadow.as_ref().map_or(0, |sh| sh.revision);
    let mut workers = Vec::new();
    let mut total = ShadowTotal::default();
    for w in s.c.workers.list() {
        let Some(c) = w.shadow.as_ref().filter(|c| revision > 0 && c.revision == revision) else {
            continue;
        };
        total.traces += c.traces;
        total.shadow_kept += c.shadow_kept;
        total.live_kept += c.live_kept;
        total.both_kept += c.both_kept;
        for r in &c.by_policy {
            *total.by_policy.entry(r.policy.clone()).or_default() += r.kept;
        }
        for r in &c.live_by_policy {
            *total.live_by_policy.entry(r.policy.clone()).or_default() += r.kept;
        }
        let fresh = now_ms().saturating_sub(w.reported_unix_ms) <= crate::watch::FRESH_MS;
        if let Some(r) = w
            .rates
            .as_ref()
            .and_then(|r| r.shadow.as_ref())
            .filter(|r| fresh && r.revision == revision)
        {
            let t = &mut total.rates;
            t.revision = revision;
            t.traces_per_s += r.traces_per_s;
            t.shadow_kept_per_s += r.shadow_kept_per_s;
            t.live_kept_per_s += r.live_kept_per_s;
            for (k, v) in &r.by_policy {
                *t.by_policy.entry(k.clone()).or_default() += v;
            }
            for (k, v) in &r.live_by_policy {
                *t.live_by_policy.entry(k.clone()).or_default() += v;
            }
        }
        workers.push(ShadowWorker {
            worker_id: w.worker_id.clone(),
            version: w.version,
            reported_unix_ms: w.reported_unix_ms,
            counts: ShadowCounts::from(c),
        });
    }
    total.only_shadow_kept = total.shadow_kept - total.both_kept.min(total.shadow_kept);
    total.only_live_kept = total.live_kept - total.both_kept.min(total.live_kept);
    let body = ShadowStatus {
        shadow,
        live_version: v.registry.policy_version(),
        workers,
        total,
        reflects: Reflects::of(&s.c, &v),
    };
    Ok((version_headers(&v), Json(body)))
}

#[utoipa::path(put, path = "/v1/policy/shadow",
    summary = "Validate and set a candidate policy as shadow (evaluated by every worker, decisions unchanged)",
    request_body = PolicyBody,
    responses((status = 200, description = "set: shadow_revision, log_index", body = Written),
        (status = 400, description = "invalid body or policy (issues: [{path, message}])", body = ErrorBody),
        (status = 503, description = "no leader reachable", body = ErrorBody)))]
pub async fn put_shadow(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Body(b): Body<PolicyBody>,
) -> Answer<Written> {
    let (_, format) = b.check()?;
    let (h, w) = write(
        &s,
        Command::SetShadow {
            author: caller.name,
            time_unix_ms: now_ms(),
            format,
            document: b.document,
        },
    )
    .await?;
    Ok((h, Json(w)))
}

#[utoipa::path(delete, path = "/v1/policy/shadow", summary = "Remove the shadow policy",
    responses((status = 200, description = "removed", body = Written),
        (status = 503, description = "no leader reachable", body = ErrorBody)))]
pub async fn clear_shadow(State(s): State<AdminState>, Extension(caller): Extension<Caller>) -> Answer<Written> {
    let cmd = Command::ClearShadow {
        author: caller.name,
        time_unix_ms: now_ms(),
    };
    let (h, w) = write(&s, cmd).await?;
    Ok((h, Json(w)))
}

/// `POST /v1/policy/shadow/promote` body.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteBody {
    /// The shadow revision the operator looked at; refused (409) when the shadow changed since.
    pub revision: u64,
}

#[utoipa::path(post, path = "/v1/policy/shadow/promote",
    summary = "Publish the shadow policy as the new live version and remove the shadow, in one step",
    request_body = PromoteBody,
    responses((status = 200, description = "promoted: the new version", body = Written),
        (status = 400, description = "invalid body", body = ErrorBody),
        (status = 409, description = "the shadow is not that revision (changed or removed)", body = ErrorBody),
        (status = 503, description = "no leader reachable", body = ErrorBody)))]
pub async fn promote_shadow(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Body(b): Body<PromoteBody>,
) -> Answer<Written> {
    let cmd = Command::PromoteShadow {
        author: caller.name,
        time_unix_ms: now_ms(),
        revision: b.revision,
    };
    let (h, w) = write(&s, cmd).await?;
    Ok((h, Json(w)))
}

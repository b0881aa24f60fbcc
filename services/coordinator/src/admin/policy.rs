//! The live policy: `GET`/`PUT /v1/policy`, `POST /v1/policy/validate`,
//! `GET /v1/policy/history`, `POST /v1/policy/rollback`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    now_ms, version_headers, write, AdminState, Answer, Body, Caller, ErrorBody, PolicyBody, Reflects, Written,
};
use crate::state::{Command, PolicyVersion, Seeds};

/// `GET /v1/policy`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CurrentPolicy {
    /// 0 before the first version.
    pub version: u64,
    /// `null` before the first version.
    pub policy: Option<PolicyVersion>,
    pub seeds: Seeds,
    pub reflects: Reflects,
}

#[utoipa::path(get, path = "/v1/policy", summary = "Current policy version, seeds and the applied index it reflects",
    responses((status = 200, description = "the current policy", body = CurrentPolicy)))]
pub async fn get_policy(State(s): State<AdminState>) -> Answer<CurrentPolicy> {
    let v = s.c.view();
    let body = CurrentPolicy {
        version: v.registry.policy_version(),
        policy: v.registry.current().cloned(),
        seeds: v.registry.seeds,
        reflects: Reflects::of(&s.c, &v),
    };
    Ok((version_headers(&v), Json(body)))
}

#[utoipa::path(put, path = "/v1/policy", summary = "Validate and publish a new policy version", request_body = PolicyBody,
    responses((status = 200, description = "published", body = Written),
        (status = 400, description = "invalid body or policy (issues: [{path, message}])", body = ErrorBody),
        (status = 503, description = "no leader reachable", body = ErrorBody)))]
pub async fn put_policy(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Body(b): Body<PolicyBody>,
) -> Answer<Written> {
    let (_, format) = b.check()?;
    let (h, w) = write(
        &s,
        Command::PutPolicy {
            author: caller.name,
            time_unix_ms: now_ms(),
            format,
            document: b.document,
            note: b.note.unwrap_or_default(),
        },
    )
    .await?;
    Ok((h, Json(w)))
}

/// `POST /v1/policy/validate`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Validated {
    pub valid: bool,
    /// The names of the top-level policies.
    pub policies: Vec<String>,
}

#[utoipa::path(post, path = "/v1/policy/validate", summary = "Validate a policy without publishing it", request_body = PolicyBody,
    responses((status = 200, description = "valid: the policy names", body = Validated),
        (status = 400, description = "invalid body or policy", body = ErrorBody)))]
pub async fn validate_policy(Body(b): Body<PolicyBody>) -> Answer<Validated> {
    let (doc, _) = b.check()?;
    let policies = doc.policies.iter().map(|p| p.name.clone()).collect();
    Ok((HeaderMap::new(), Json(Validated { valid: true, policies })))
}

/// `GET /v1/policy/history`.
#[derive(Debug, Serialize, ToSchema)]
pub struct History {
    pub version: u64,
    pub history_limit: usize,
    /// Newest first.
    pub versions: Vec<PolicyVersion>,
    pub reflects: Reflects,
}

#[utoipa::path(get, path = "/v1/policy/history", summary = "The versions kept for rollback, newest first",
    responses((status = 200, description = "history", body = History)))]
pub async fn history(State(s): State<AdminState>) -> Answer<History> {
    let v = s.c.view();
    let body = History {
        version: v.registry.policy_version(),
        history_limit: v.registry.settings.history_limit,
        versions: v.registry.history.iter().rev().cloned().collect(),
        reflects: Reflects::of(&s.c, &v),
    };
    Ok((version_headers(&v), Json(body)))
}

/// `POST /v1/policy/rollback` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    pub version: u64,
}

#[utoipa::path(post, path = "/v1/policy/rollback", summary = "Publish an earlier version again as a new version", request_body = RollbackBody,
    responses((status = 200, description = "published", body = Written),
        (status = 400, description = "invalid body", body = ErrorBody),
        (status = 404, description = "version not kept (kept: the versions kept)", body = ErrorBody),
        (status = 503, description = "no leader reachable", body = ErrorBody)))]
pub async fn rollback(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Body(b): Body<RollbackBody>,
) -> Answer<Written> {
    let (h, w) = write(
        &s,
        Command::Rollback {
            author: caller.name,
            time_unix_ms: now_ms(),
            version: b.version,
        },
    )
    .await?;
    Ok((h, Json(w)))
}

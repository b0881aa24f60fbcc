//! Admin routes for what changes while the cluster runs without a new policy version: the shadow
//! policy (`/v1/policy/shadow`) and the live cluster settings (`/v1/settings`). Both are
//! replicated through Raft and streamed to every worker by [`crate::watch`].
//!
//! A shadow policy is evaluated by every worker beside the live policy, on the same traces,
//! without affecting decisions; workers report what it would keep (in total and per rule) with
//! their applied-version reports, and `GET /v1/policy/shadow` adds them up. Counts restart when
//! a new shadow revision is set.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::admin::{
    authorize, done, error, now_ms, parse_body, put_document, reflects, version_headers, written, AdminState,
};
use crate::config::Role;
use crate::state::{ClusterSettings, Command};

pub(crate) async fn get_shadow(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    done(
        "/v1/policy/shadow",
        async {
            authorize(&s, &headers, Role::ReadOnly)?;
            let v = s.c.view();
            let shadow = v.registry.shadow.clone();
            let revision = shadow.as_ref().map_or(0, |sh| sh.revision);
            let mut workers = Vec::new();
            let (mut traces, mut shadow_kept, mut live_kept, mut both_kept) = (0u64, 0u64, 0u64, 0u64);
            let mut by_policy: BTreeMap<String, u64> = BTreeMap::new();
            for w in s.c.workers.list() {
                let Some(c) = w.shadow.as_ref().filter(|c| revision > 0 && c.revision == revision) else {
                    continue;
                };
                traces += c.traces;
                shadow_kept += c.shadow_kept;
                live_kept += c.live_kept;
                both_kept += c.both_kept;
                for r in &c.by_policy {
                    *by_policy.entry(r.policy.clone()).or_default() += r.kept;
                }
                workers.push(json!({
                    "worker_id": w.worker_id,
                    "version": w.version,
                    "reported_unix_ms": w.reported_unix_ms,
                    "counts": c,
                }));
            }
            let body = json!({
                "shadow": shadow,
                "live_version": v.registry.policy_version(),
                "workers": workers,
                "total": {
                    "traces": traces,
                    "shadow_kept": shadow_kept,
                    "live_kept": live_kept,
                    "both_kept": both_kept,
                    "only_shadow_kept": shadow_kept - both_kept.min(shadow_kept),
                    "only_live_kept": live_kept - both_kept.min(live_kept),
                    "by_policy": by_policy,
                },
                "reflects": reflects(&s.c, &v),
            });
            Ok((StatusCode::OK, version_headers(&v), Json(body)))
        }
        .await,
    )
}

pub(crate) async fn put_shadow(State(s): State<AdminState>, headers: HeaderMap, body: Bytes) -> Response {
    done(
        "/v1/policy/shadow",
        async {
            put_document(&s, &headers, &body, |author, time_unix_ms, format, document| {
                Command::SetShadow {
                    author,
                    time_unix_ms,
                    format,
                    document,
                }
            })
            .await
        }
        .await,
    )
}

pub(crate) async fn clear_shadow(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    done(
        "/v1/policy/shadow",
        async {
            let t = authorize(&s, &headers, Role::Admin)?;
            let cmd = Command::ClearShadow {
                author: t.name.clone(),
                time_unix_ms: now_ms(),
            };
            written(&s, cmd).await
        }
        .await,
    )
}

pub(crate) async fn get_settings(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    done(
        "/v1/settings",
        async {
            authorize(&s, &headers, Role::ReadOnly)?;
            let v = s.c.view();
            let body = json!({
                "settings": v.registry.settings,
                "revision": v.registry.settings_revision,
                "reflects": reflects(&s.c, &v),
            });
            Ok((StatusCode::OK, version_headers(&v), Json(body)))
        }
        .await,
    )
}

/// `PUT /v1/settings` body: the whole settings object (`sampler` keys left out mean "each worker
/// keeps its own configuration").
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    settings: ClusterSettings,
}

pub(crate) async fn put_settings(State(s): State<AdminState>, headers: HeaderMap, body: Bytes) -> Response {
    done(
        "/v1/settings",
        async {
            authorize(&s, &headers, Role::Admin)?;
            let b: SettingsBody = parse_body(&body)?;
            b.settings
                .validate()
                .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid settings: settings.{e}")))?;
            // What was written and its revision (this node may not have applied it yet).
            let (status, h, Json(mut out)) = written(&s, Command::SetSettings { settings: b.settings }).await?;
            out["settings"] = json!(b.settings);
            out["revision"] = out["settings_revision"].clone();
            Ok((status, h, Json(out)))
        }
        .await,
    )
}

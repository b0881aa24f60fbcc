//! The live cluster settings (`/v1/settings`): replicated through Raft and streamed to every
//! worker by [`crate::watch`], which applies `sampler.*` at once.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{version_headers, write, AdminError, AdminState, Answer, Body, ErrorBody, Reflects};
use crate::state::{ClusterSettings, Command, Seeds};

/// `GET /v1/settings`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CurrentSettings {
    pub settings: ClusterSettings,
    pub revision: u64,
    pub reflects: Reflects,
}

#[utoipa::path(get, path = "/v1/settings", summary = "Live cluster settings and their revision",
    responses((status = 200, description = "settings, revision", body = CurrentSettings)))]
pub async fn get_settings(State(s): State<AdminState>) -> Answer<CurrentSettings> {
    let v = s.c.view();
    let body = CurrentSettings {
        settings: v.registry.settings,
        revision: v.registry.settings_revision,
        reflects: Reflects::of(&s.c, &v),
    };
    Ok((version_headers(&v), Json(body)))
}

/// `PUT /v1/settings` body: the whole settings object (`sampler` keys left out mean "each worker
/// keeps its own configuration").
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    pub settings: ClusterSettings,
}

/// `PUT /v1/settings`: what was written and its revision (this node may not have applied it yet).
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsWritten {
    pub settings: ClusterSettings,
    pub revision: u64,
    pub version: u64,
    pub seeds: Seeds,
    pub shadow_revision: u64,
    pub settings_revision: u64,
    pub log_index: u64,
}

#[utoipa::path(put, path = "/v1/settings", summary = "Replace the live cluster settings; every worker applies the sampler settings at once",
    request_body = SettingsBody,
    responses((status = 200, description = "settings, revision, log_index", body = SettingsWritten),
        (status = 400, description = "invalid body or setting (the error names the key)", body = ErrorBody),
        (status = 503, description = "no leader reachable", body = ErrorBody)))]
pub async fn put_settings(State(s): State<AdminState>, Body(b): Body<SettingsBody>) -> Answer<SettingsWritten> {
    b.settings.validate().map_err(|e| AdminError::InvalidSettings(e.0))?;
    let (h, w) = write(&s, Command::SetSettings { settings: b.settings }).await?;
    let body = SettingsWritten {
        settings: b.settings,
        revision: w.settings_revision,
        version: w.version,
        seeds: w.seeds,
        shadow_revision: w.shadow_revision,
        settings_revision: w.settings_revision,
        log_index: w.log_index,
    };
    Ok((h, Json(body)))
}

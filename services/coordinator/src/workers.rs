//! `GET /v1/workers` (any valid admin token): the sampling workers that reported the policy
//! version they apply to **this** coordinator (`ReportApplied`, see [`crate::watch`]), from its
//! memory: `{"node": 1, "workers": [{"worker_id", "version", "reported_unix_ms"}]}`. Samplers
//! report to every coordinator they know, so each node normally lists all of them; a restarted
//! node lists a worker again after its next report (each new watch or applied version). Served
//! from the admin route table ([`crate::admin`]), so it is in the OpenAPI document.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde_json::json;

use crate::admin::{authorize, done, AdminState};
use crate::config::Role;

pub(crate) async fn list(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    done(
        "/v1/workers",
        async {
            authorize(&s, &headers, Role::ReadOnly)?;
            let workers = s.c.workers.list();
            ::metrics::gauge!(crate::metrics::WORKERS_REPORTED, "node" => s.c.node_id.to_string())
                .set(workers.len() as f64);
            Ok((
                StatusCode::OK,
                HeaderMap::new(),
                Json(json!({ "node": s.c.node_id, "workers": workers })),
            ))
        }
        .await,
    )
}

//! `GET /v1/workers` (any valid admin token): the sampling workers that reported the policy
//! version they apply to **this** coordinator (`ReportApplied`, see [`crate::watch`]), from its
//! memory. Samplers report to every coordinator they know, so each node normally lists all of
//! them; a restarted node lists a worker again after its next report (each new watch or applied
//! version).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::{worker_entries, AdminState, Answer, WorkerEntry};

/// `GET /v1/workers`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerList {
    /// This node.
    pub node: u64,
    pub workers: Vec<WorkerEntry>,
}

#[utoipa::path(get, path = "/v1/workers", operation_id = "list_workers",
    summary = "The sampling workers that reported the policy version they apply to this coordinator (its memory, not replicated)",
    responses((status = 200, description = "node, and workers: [{worker_id, version, reported_unix_ms}]", body = WorkerList)))]
pub async fn list(State(s): State<AdminState>) -> Answer<WorkerList> {
    let workers = worker_entries(&s);
    ::metrics::gauge!(crate::metrics::WORKERS_REPORTED, "node" => s.c.node_id.to_string()).set(workers.len() as f64);
    Ok((
        HeaderMap::new(),
        Json(WorkerList {
            node: s.c.node_id,
            workers,
        }),
    ))
}

//! `GET /v1/workers` (any valid admin token): the sampling workers that reported the policy
//! version they apply to **this** coordinator (`ReportApplied`, see [`crate::watch`]), from its
//! memory: `{"node": 1, "workers": [{"worker_id", "version", "reported_unix_ms"}]}`. Samplers
//! report to every coordinator they know, so each node normally lists all of them; a restarted
//! node lists a worker again after its next report (each new watch or applied version).

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::config::Token;
use crate::types::NodeId;
use crate::watch::Workers;

#[derive(Clone)]
struct WorkersState {
    node: NodeId,
    workers: Workers,
    tokens: std::sync::Arc<Vec<Token>>,
}

/// The `/v1/workers` route.
pub fn router(node: NodeId, workers: Workers, tokens: Vec<Token>) -> Router {
    Router::new().route("/v1/workers", get(list)).with_state(WorkersState {
        node,
        workers,
        tokens: std::sync::Arc::new(tokens),
    })
}

/// Any configured token, compared in constant time against each.
fn authorized(s: &WorkersState, headers: &HeaderMap) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    let mut ok = false;
    for t in s.tokens.iter() {
        let eq: bool = given.as_bytes().ct_eq(t.token.as_bytes()).into();
        ok |= eq && !given.is_empty();
    }
    ok
}

async fn list(State(s): State<WorkersState>, headers: HeaderMap) -> Response {
    let (status, body) = if authorized(&s, &headers) {
        (StatusCode::OK, json!({ "node": s.node, "workers": s.workers.list() }))
    } else {
        (
            StatusCode::UNAUTHORIZED,
            json!({ "error": "missing or unknown bearer token" }),
        )
    };
    ::metrics::counter!(crate::metrics::ADMIN_REQUESTS, "route" => "/v1/workers", "status" => status.as_u16().to_string()).increment(1);
    (status, Json(body)).into_response()
}

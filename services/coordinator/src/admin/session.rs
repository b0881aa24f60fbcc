//! `GET /v1/whoami` (any valid token): the calling token's name and role, and the node answering.
//! The admin console signs in with it (a wrong token gets the guard's 401) and disables every
//! write control for a read-only token.

use axum::http::HeaderMap;
use axum::{extract::State, Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::{AdminState, Answer, Caller};

/// `GET /v1/whoami`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Whoami {
    /// The token's name (recorded as the author of its writes).
    pub name: String,
    /// `admin` or `read_only`.
    pub role: String,
    /// The coordinator answering (its node id).
    pub node: u64,
}

#[utoipa::path(get, path = "/v1/whoami", summary = "The calling token's name and role, and the node answering",
    responses((status = 200, description = "name, role, node", body = Whoami)))]
pub async fn whoami(State(s): State<AdminState>, Extension(caller): Extension<Caller>) -> Answer<Whoami> {
    let role = if caller.admin { "admin" } else { "read_only" };
    Ok((
        HeaderMap::new(),
        Json(Whoami {
            name: caller.name,
            role: role.into(),
            node: s.c.node_id,
        }),
    ))
}

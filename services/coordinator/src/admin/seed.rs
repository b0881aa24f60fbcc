//! `POST /v1/seed/rotate`: schedule a new random hash seed, in force from the next policy version.

use axum::extract::State;
use axum::{Extension, Json};

use super::{now_ms, write, AdminState, Answer, Caller, ErrorBody, Written};
use crate::state::Command;

#[utoipa::path(post, path = "/v1/seed/rotate", summary = "Schedule a new random hash seed for the next policy version",
    responses((status = 200, description = "scheduled", body = Written),
        (status = 503, description = "no leader reachable", body = ErrorBody)))]
pub async fn rotate_seed(State(s): State<AdminState>, Extension(caller): Extension<Caller>) -> Answer<Written> {
    let seed: u64 = rand::random();
    let (h, w) = write(
        &s,
        Command::RotateSeed {
            author: caller.name,
            time_unix_ms: now_ms(),
            seed,
        },
    )
    .await?;
    Ok((h, Json(w)))
}

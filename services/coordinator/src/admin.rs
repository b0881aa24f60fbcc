//! Admin HTTP/JSON API (`/v1` routes need a bearer token; writes need role `admin`):
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/policy` | current policy version (document, author, time), seeds, and the applied log index it reflects |
//! | `PUT /v1/policy` | `{"document": "...", "format": "yaml"|"json"|"otel_tail_sampling"}`: validate, then publish as a new version |
//! | `POST /v1/policy/validate` | same body: validate only |
//! | `GET /v1/policy/history` | the versions kept for rollback |
//! | `POST /v1/policy/rollback` | `{"version": N}`: publish version N again as a new version |
//! | `GET /v1/policy/shadow` | the shadow policy and, per worker and in total, what it would keep (per rule) beside the live policy |
//! | `PUT /v1/policy/shadow` | same body as `PUT /v1/policy`: validate, then set as the shadow policy (decisions unchanged) |
//! | `DELETE /v1/policy/shadow` | remove the shadow policy |
//! | `GET /v1/settings` | the live cluster settings (`history_limit`, `sampler.*`) and their revision |
//! | `PUT /v1/settings` | replace the live cluster settings; every worker applies `sampler.*` |
//! | `POST /v1/seed/rotate` | schedule a new random hash seed for the next policy version |
//! | `GET /v1/cluster/status` | members, leader, term, log, commit and applied indexes |
//! | `POST /v1/cluster/members` | admin, leader only: add a node as learner, then promote it ([`crate::membership`]) |
//! | `DELETE /v1/cluster/members/{id}` | admin, leader only: remove a member |
//! | `GET /v1/workers` | the sampling workers that reported their applied version to this node ([`crate::workers`]) |
//!
//! Unauthenticated on the same port: `GET /openapi.json` (this API as OpenAPI 3,
//! [`crate::openapi`]), `GET /api/sampling?service=NAME` and `GET /sampling?service=NAME` (Jaeger remote sampling,
//! [`crate::jaeger_sampling`]), and `/metrics`, `/healthz`, `/readyz`.
//!
//! Errors are JSON `{"error": "...", ...}`: 400 with `issues: [{path, message}]` for an invalid
//! policy (nothing is applied), 401 without a valid token, 403 for a read-only token on a write,
//! 404 for an unknown rollback version, 503 when no leader can be reached. Writes sent to a
//! follower are forwarded to the leader. Every read names the policy version and the applied log
//! index it reflects (also as `x-tailsift-policy-version` / `x-tailsift-applied-index` headers).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::Method;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::{Role, Token};
use crate::state::{Command, CommandError, PolicyFormat, PolicyVersion};
use crate::store::View;
use crate::{Coordinator, WriteError};

#[derive(Clone)]
pub(crate) struct AdminState {
    pub(crate) c: Arc<Coordinator>,
    tokens: Arc<Vec<Token>>,
    pub(crate) sampling: Arc<crate::jaeger_sampling::SamplingCache>,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed (`/openapi.json`, the Jaeger sampling endpoint).
    Public,
    /// Any valid bearer token.
    Read,
    /// A bearer token with role `admin`.
    Admin,
}

/// Every route this module serves: path template, method, access, handler. The router and
/// [`served_routes`] are both built from this one table, so the OpenAPI test sees exactly what
/// is served.
fn table() -> Vec<(&'static str, Method, Access, MethodRouter<AdminState>)> {
    vec![
        ("/v1/policy", Method::GET, Access::Read, get(get_policy)),
        ("/v1/policy", Method::PUT, Access::Admin, put(put_policy)),
        ("/v1/policy/validate", Method::POST, Access::Read, post(validate_policy)),
        ("/v1/policy/history", Method::GET, Access::Read, get(history)),
        ("/v1/policy/rollback", Method::POST, Access::Admin, post(rollback)),
        (
            "/v1/policy/shadow",
            Method::GET,
            Access::Read,
            get(crate::live::get_shadow),
        ),
        (
            "/v1/policy/shadow",
            Method::PUT,
            Access::Admin,
            put(crate::live::put_shadow),
        ),
        (
            "/v1/policy/shadow",
            Method::DELETE,
            Access::Admin,
            delete(crate::live::clear_shadow),
        ),
        (
            "/v1/settings",
            Method::GET,
            Access::Read,
            get(crate::live::get_settings),
        ),
        (
            "/v1/settings",
            Method::PUT,
            Access::Admin,
            put(crate::live::put_settings),
        ),
        ("/v1/seed/rotate", Method::POST, Access::Admin, post(rotate_seed)),
        ("/v1/cluster/status", Method::GET, Access::Read, get(cluster_status)),
        (
            "/v1/cluster/members",
            Method::POST,
            Access::Admin,
            post(crate::membership::add_member),
        ),
        (
            "/v1/cluster/members/{id}",
            Method::DELETE,
            Access::Admin,
            delete(crate::membership::remove_member),
        ),
        ("/v1/workers", Method::GET, Access::Read, get(crate::workers::list)),
        ("/openapi.json", Method::GET, Access::Public, get(crate::openapi::serve)),
        (
            "/api/sampling",
            Method::GET,
            Access::Public,
            get(crate::jaeger_sampling::serve),
        ),
        (
            "/sampling",
            Method::GET,
            Access::Public,
            get(crate::jaeger_sampling::serve_agent_path),
        ),
    ]
}

/// `(path template, method, access)` of every route [`router`] serves.
pub fn served_routes() -> Vec<(&'static str, Method, Access)> {
    table().into_iter().map(|(p, m, a, _)| (p, m, a)).collect()
}

/// The admin routes (see the module documentation).
pub fn router(c: Arc<Coordinator>, tokens: Vec<Token>) -> Router {
    let state = AdminState {
        sampling: Arc::new(crate::jaeger_sampling::SamplingCache::new(c.node_id.to_string())),
        c,
        tokens: Arc::new(tokens),
    };
    let mut r = Router::new();
    for (path, _, _, handler) in table() {
        r = r.route(path, handler);
    }
    r.with_state(state)
}

pub(crate) type Reply = (StatusCode, HeaderMap, Json<Value>);

pub(crate) fn reply(status: StatusCode, body: Value) -> Reply {
    (status, HeaderMap::new(), Json(body))
}

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Reply {
    reply(status, json!({ "error": message.into() }))
}

/// Counts the request and turns the reply into a response.
pub(crate) fn done(route: &'static str, r: Result<Reply, Reply>) -> Response {
    let (status, headers, body) = r.unwrap_or_else(|e| e);
    ::metrics::counter!(crate::metrics::ADMIN_REQUESTS, "route" => route, "status" => status.as_u16().to_string())
        .increment(1);
    (status, headers, body).into_response()
}

/// Checks the bearer token in constant time (per configured token) and the role.
pub(crate) fn authorize<'a>(s: &'a AdminState, headers: &HeaderMap, need: Role) -> Result<&'a Token, Reply> {
    let Some(t) = crate::grpc::find_token(&s.tokens, crate::grpc::bearer(headers)) else {
        let mut h = HeaderMap::new();
        h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Err((
            StatusCode::UNAUTHORIZED,
            h,
            Json(json!({ "error": "a valid bearer token is required" })),
        ));
    };
    if need == Role::Admin && t.role != Role::Admin {
        return Err(error(
            StatusCode::FORBIDDEN,
            format!("token `{}` is read-only; this request needs an admin token", t.name),
        ));
    }
    Ok(t)
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn version_headers(v: &View) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "x-tailsift-policy-version",
        HeaderValue::from(v.registry.policy_version()),
    );
    h.insert(
        "x-tailsift-applied-index",
        HeaderValue::from(v.last_applied.map_or(0, |l| l.index)),
    );
    h
}

pub(crate) fn reflects(c: &Coordinator, v: &View) -> Value {
    json!({ "node": c.node_id, "applied_index": v.last_applied.map_or(0, |l| l.index) })
}

fn policy_json(p: &PolicyVersion) -> Value {
    serde_json::to_value(p).unwrap_or(Value::Null)
}

async fn get_policy(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    done(
        "/v1/policy",
        async {
            authorize(&s, &headers, Role::ReadOnly)?;
            let v = s.c.view();
            let body = json!({
                "version": v.registry.policy_version(),
                "policy": v.registry.current().map(policy_json),
                "seeds": v.registry.seeds,
                "reflects": reflects(&s.c, &v),
            });
            Ok((StatusCode::OK, version_headers(&v), Json(body)))
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyBody {
    pub(crate) document: String,
    #[serde(default)]
    pub(crate) format: PolicyFormat,
}

pub(crate) fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Reply> {
    serde_json::from_slice(body).map_err(|e| error(StatusCode::BAD_REQUEST, format!("request body: {e}")))
}

/// Parses and compiles the document; an invalid one is a 400 listing every problem by path.
pub(crate) fn check(b: &PolicyBody) -> Result<tailsift_policy::PolicyDocument, Reply> {
    b.format.check(&b.document).map_err(|e| {
        let issues: Vec<Value> = e
            .issues()
            .iter()
            .map(|i| json!({ "path": i.path, "message": i.message }))
            .collect();
        reply(
            StatusCode::BAD_REQUEST,
            json!({ "error": format!("invalid policy: {e}"), "issues": issues }),
        )
    })
}

fn write_error(e: WriteError) -> Reply {
    match e {
        WriteError::Rejected(CommandError::UnknownVersion { version, kept }) => reply(
            StatusCode::NOT_FOUND,
            json!({ "error": format!("policy version {version} is not kept"), "kept": kept }),
        ),
        WriteError::Unavailable(m) => error(StatusCode::SERVICE_UNAVAILABLE, format!("no leader available: {m}")),
    }
}

pub(crate) async fn written(s: &AdminState, cmd: Command) -> Result<Reply, Reply> {
    let (applied, log_index) = s.c.write(cmd).await.map_err(write_error)?;
    let mut h = HeaderMap::new();
    h.insert("x-tailsift-policy-version", HeaderValue::from(applied.policy_version));
    Ok((
        StatusCode::OK,
        h,
        Json(json!({
            "version": applied.policy_version,
            "seeds": applied.seeds,
            "shadow_revision": applied.shadow_revision,
            "settings_revision": applied.settings_revision,
            "log_index": log_index,
        })),
    ))
}

async fn put_policy(State(s): State<AdminState>, headers: HeaderMap, body: Bytes) -> Response {
    done(
        "/v1/policy",
        async {
            put_document(&s, &headers, &body, |author, time_unix_ms, format, document| {
                Command::PutPolicy {
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

/// A write of a policy document (live or shadow): admin token, body, validation, then `make`'s
/// command with the token's name and the time.
pub(crate) async fn put_document(
    s: &AdminState,
    headers: &HeaderMap,
    body: &Bytes,
    make: fn(String, u64, PolicyFormat, String) -> Command,
) -> Result<Reply, Reply> {
    let t = authorize(s, headers, Role::Admin)?;
    let b: PolicyBody = parse_body(body)?;
    check(&b)?;
    written(s, make(t.name.clone(), now_ms(), b.format, b.document)).await
}

async fn validate_policy(State(s): State<AdminState>, headers: HeaderMap, body: Bytes) -> Response {
    done(
        "/v1/policy/validate",
        async {
            authorize(&s, &headers, Role::ReadOnly)?;
            let b: PolicyBody = parse_body(&body)?;
            let doc = check(&b)?;
            let names: Vec<&str> = doc.policies.iter().map(|p| p.name.as_str()).collect();
            Ok(reply(StatusCode::OK, json!({ "valid": true, "policies": names })))
        }
        .await,
    )
}

async fn history(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    done(
        "/v1/policy/history",
        async {
            authorize(&s, &headers, Role::ReadOnly)?;
            let v = s.c.view();
            let versions: Vec<Value> = v.registry.history.iter().rev().map(policy_json).collect();
            let body = json!({
                "version": v.registry.policy_version(),
                "history_limit": v.registry.settings.history_limit,
                "versions": versions,
                "reflects": reflects(&s.c, &v),
            });
            Ok((StatusCode::OK, version_headers(&v), Json(body)))
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    version: u64,
}

async fn rollback(State(s): State<AdminState>, headers: HeaderMap, body: Bytes) -> Response {
    done(
        "/v1/policy/rollback",
        async {
            let t = authorize(&s, &headers, Role::Admin)?;
            let b: RollbackBody = parse_body(&body)?;
            written(
                &s,
                Command::Rollback {
                    author: t.name.clone(),
                    time_unix_ms: now_ms(),
                    version: b.version,
                },
            )
            .await
        }
        .await,
    )
}

async fn rotate_seed(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    done(
        "/v1/seed/rotate",
        async {
            let t = authorize(&s, &headers, Role::Admin)?;
            let seed: u64 = rand::random();
            written(
                &s,
                Command::RotateSeed {
                    author: t.name.clone(),
                    time_unix_ms: now_ms(),
                    seed,
                },
            )
            .await
        }
        .await,
    )
}

async fn cluster_status(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    done("/v1/cluster/status", async {
        authorize(&s, &headers, Role::ReadOnly)?;
        let m = s.c.raft.metrics().borrow().clone();
        let v = s.c.view();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        let members: Vec<Value> = membership
            .nodes()
            .map(|(id, n)| {
                let matched = m.replication.as_ref().and_then(|r| r.get(id).cloned().flatten()).map(|l| l.index);
                json!({ "id": id, "raft_addr": n.raft_addr, "admin_addr": n.admin_addr, "voter": voters.contains(id), "matched_index": matched })
            })
            .collect();
        let body = json!({
            "node": m.id,
            "state": format!("{:?}", m.state),
            "leader": m.current_leader,
            "term": m.current_term,
            "last_log_index": m.last_log_index,
            "commit_index": crate::membership::commit_index(&m),
            "applied_index": m.last_applied.map(|l| l.index),
            "snapshot_index": m.snapshot.map(|l| l.index),
            "members": members,
            "policy_version": v.registry.policy_version(),
            "seed_epoch": v.registry.seeds.current.epoch,
            "shadow_revision": v.registry.shadow.as_ref().map(|sh| sh.revision),
            "settings_revision": v.registry.settings_revision,
            "workers": s.c.workers.list(),
        });
        Ok((StatusCode::OK, version_headers(&v), Json(body)))
    }.await)
}

//! Admin HTTP/JSON API (`/v1` routes need a bearer token; writes need role `admin`):
//!
//! | route | what | module |
//! |---|---|---|
//! | `GET /v1/policy` | current policy version (document, author, time), seeds, and the applied log index it reflects | [`policy`] |
//! | `PUT /v1/policy` | `{"document": "...", "format": "yaml"|"json"|"otel_tail_sampling"|"refinery_rules"}` (format optional: told from the content): validate, then publish as a new version | [`policy`] |
//! | `POST /v1/policy/validate` | same body: validate only | [`policy`] |
//! | `GET /v1/policy/history` | the versions kept for rollback | [`policy`] |
//! | `POST /v1/policy/rollback` | `{"version": N}`: publish version N again as a new version | [`policy`] |
//! | `GET /v1/policy/shadow` | the shadow policy and, per worker and in total, what it would keep (per rule) beside the live policy | [`shadow`] |
//! | `PUT /v1/policy/shadow` | same body as `PUT /v1/policy`: validate, then set as the shadow policy (decisions unchanged) | [`shadow`] |
//! | `DELETE /v1/policy/shadow` | remove the shadow policy | [`shadow`] |
//! | `POST /v1/policy/shadow/promote` | `{"revision": N}`: publish shadow revision N as the live policy and remove the shadow, in one replicated entry | [`shadow`] |
//! | `GET /v1/settings` | the live cluster settings (`history_limit`, `sampler.*`) and their revision | [`settings`] |
//! | `PUT /v1/settings` | replace the live cluster settings; every worker applies `sampler.*` | [`settings`] |
//! | `POST /v1/seed/rotate` | schedule a new random hash seed for the next policy version | [`seed`] |
//! | `GET /v1/cluster/status` | members, leader, term, log, commit and applied indexes | [`membership`] |
//! | `GET /v1/cluster/nodes` | every member's own state, term, commit and applied index (asked over the Raft port) | [`membership`] |
//! | `POST /v1/cluster/members` | admin, leader only: add a node as learner, then promote it | [`membership`] |
//! | `DELETE /v1/cluster/members/{id}` | admin, leader only: remove a member | [`membership`] |
//! | `GET /v1/whoami` | the calling token's name and role (the admin console's sign-in) | [`session`] |
//! | `GET /v1/workers` | the sampling workers that reported their applied version to this node | [`workers`] |
//! | `GET /v1/overview` | cluster throughput and keep rate (total and per live rule) and every worker's version, partitions and report age, from the workers' reports | [`overview`] |
//! | `POST /v1/captures` | `{"match": "<OTTL span condition>" or "policy": {document, format}, "since": "20m"}`: start a retroactive capture | [`captures`] |
//! | `GET /v1/captures` | running and recent captures with their progress | [`captures`] |
//! | `GET /v1/captures/{id}` | one capture: window, state, per-partition results, retention note | [`captures`] |
//! | `DELETE /v1/captures/{id}` | cancel a running capture | [`captures`] |
//! | `POST /v1/policy/whatif` | `{"document": "...", "format": ..., "since": "30m"}`: the workers replay the window with the candidate beside the live policy | [`captures`] |
//! | `GET /v1/policy/whatif/{id}` | the what-if job and its report, summed over partitions | [`captures`] |
//!
//! Unauthenticated on the same port: the admin console at `/ui/` (a page that calls the routes
//! above with the token it signs in with, [`console`]), `GET /openapi.json` (this API as OpenAPI 3.1, generated
//! from the handlers and their types, [`openapi`]), `GET /api/sampling?service=NAME` and
//! `GET /sampling?service=NAME` (Jaeger remote sampling, [`sampling`]), and `/metrics`,
//! `/healthz`, `/readyz`.
//!
//! How it fits together: [`table`] lists every route once with its access level; the one
//! function [`assemble`] builds from it both the router, where each route gets a guard layer
//! that checks the bearer token against the declared level and counts the request, and the
//! OpenAPI document (each handler's `#[utoipa::path]` gives path, method and typed responses;
//! the level gives `security`, `x-tailsift-role` and the 401/403 answers). A route missing from
//! the table is neither served nor documented. Resource modules use only this module's shared
//! types ([`AdminState`], [`Caller`], [`AdminError`], [`Body`], ...), never each other.
//!
//! Errors are JSON `{"error": "...", ...}` ([`AdminError`], the one place statuses are chosen):
//! 400 with `issues: [{path, message, line, column, key}]` for an invalid policy (nothing is applied), 401 without
//! a valid token, 403 for a read-only token on a write, 404 for an unknown rollback version, 503
//! when no leader can be reached. Writes sent to a follower are forwarded to the leader, and
//! answered once this node applied them too (a read from it right after sees the write). Every
//! read names the policy version and the applied log index it reflects (also as
//! `x-tailsift-policy-version` / `x-tailsift-applied-index` headers).

pub mod captures;
pub mod console;
pub mod locate;
pub mod membership;
pub mod openapi;
pub mod overview;
pub mod policy;
pub mod sampling;
pub mod seed;
pub mod session;
pub mod settings;
pub mod shadow;
pub mod workers;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::SecurityRequirement;
use utoipa::ToSchema;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::config::{Role, Token};
use crate::state::{Applied, Command, CommandError, PolicyFormat, Seeds};
use crate::store::View;
use crate::{Coordinator, WriteError};

/// What every handler gets.
#[derive(Clone)]
pub struct AdminState {
    pub(crate) c: Arc<Coordinator>,
    pub(crate) sampling: Arc<sampling::SamplingCache>,
    /// Channels to the members, by Raft address, for `GET /v1/cluster/nodes` (kept for the
    /// current members only).
    pub(crate) peers: membership::PeerCache,
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

impl Access {
    /// The `x-tailsift-role` of a secured operation in the OpenAPI document.
    pub fn role_name(self) -> Option<&'static str> {
        match self {
            Access::Public => None,
            Access::Read => Some("read_only"),
            Access::Admin => Some("admin"),
        }
    }
}

/// Every route of the admin port with its access level: the single source of the router, of
/// the authorization applied to each route, and of the OpenAPI document.
pub fn table() -> Vec<(Access, UtoipaMethodRouter<AdminState>)> {
    vec![
        (Access::Read, routes!(policy::get_policy)),
        (Access::Admin, routes!(policy::put_policy)),
        (Access::Read, routes!(policy::validate_policy)),
        (Access::Read, routes!(policy::history)),
        (Access::Admin, routes!(policy::rollback)),
        (Access::Read, routes!(shadow::get_shadow)),
        (Access::Admin, routes!(shadow::put_shadow)),
        (Access::Admin, routes!(shadow::clear_shadow)),
        (Access::Admin, routes!(shadow::promote_shadow)),
        (Access::Read, routes!(settings::get_settings)),
        (Access::Admin, routes!(settings::put_settings)),
        (Access::Admin, routes!(seed::rotate_seed)),
        (Access::Read, routes!(membership::cluster_status)),
        (Access::Read, routes!(membership::cluster_nodes)),
        (Access::Admin, routes!(membership::add_member)),
        (Access::Admin, routes!(membership::remove_member)),
        (Access::Read, routes!(workers::list)),
        (Access::Read, routes!(session::whoami)),
        (Access::Read, routes!(overview::get_overview)),
        (Access::Admin, routes!(captures::start)),
        (Access::Read, routes!(captures::list)),
        (Access::Read, routes!(captures::get)),
        (Access::Admin, routes!(captures::cancel)),
        (Access::Admin, routes!(captures::start_whatif)),
        (Access::Read, routes!(captures::get_whatif)),
        (Access::Public, routes!(openapi::serve)),
        (Access::Public, routes!(sampling::serve)),
        (Access::Public, routes!(sampling::serve_agent_path)),
    ]
}

/// The one operation of a table entry: its path, method and OpenAPI operation.
fn single_operation(paths: &mut utoipa::openapi::path::Paths) -> (String, Method, &mut Operation) {
    let (path, item) = paths.paths.iter_mut().next().expect("a table entry has one path");
    let ops = [
        (Method::GET, &mut item.get),
        (Method::PUT, &mut item.put),
        (Method::POST, &mut item.post),
        (Method::DELETE, &mut item.delete),
    ];
    for (method, op) in ops {
        if let Some(op) = op.as_mut() {
            return (path.clone(), method, op);
        }
    }
    panic!("table entry {path}: no GET, PUT, POST or DELETE operation")
}

/// Adds what the access level means to the operation: `security`, `x-tailsift-role`, 401/403.
fn document_access(op: &mut Operation, access: Access) {
    let Some(role) = access.role_name() else {
        op.security = Some(Vec::new());
        return;
    };
    op.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
    let mut ext = utoipa::openapi::extensions::Extensions::default();
    ext.insert("x-tailsift-role".into(), serde_json::json!(role));
    op.extensions = Some(ext);
    let err = |d: &str| {
        utoipa::openapi::ResponseBuilder::new()
            .description(d)
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    op.responses
        .responses
        .insert("401".into(), err("no valid bearer token").into());
    if access == Access::Admin {
        op.responses
            .responses
            .insert("403".into(), err("the token is read-only; role admin is needed").into());
    }
}

/// Builds the router (each route behind its guard) and the OpenAPI document from [`table`].
fn assemble(tokens: Arc<Vec<Token>>) -> (Router<AdminState>, utoipa::openapi::OpenApi) {
    let mut r = OpenApiRouter::with_openapi(openapi::base());
    for (access, (schemas, mut paths, handler)) in table() {
        let (path, _, op) = single_operation(&mut paths);
        document_access(op, access);
        let guard = Guard {
            route: Arc::from(path.as_str()),
            access,
            tokens: tokens.clone(),
        };
        r = r.routes((schemas, paths, handler).map(|h| h.route_layer(from_fn_with_state(guard, guarded))));
    }
    let (router, mut doc) = r.split_for_parts();
    openapi::finish(&mut doc);
    (router, doc)
}

/// `(path template, method, access)` of every route [`router`] serves.
pub fn served_routes() -> Vec<(String, Method, Access)> {
    table()
        .into_iter()
        .map(|(access, (_, mut paths, _))| {
            let (path, method, _) = single_operation(&mut paths);
            (path, method, access)
        })
        .collect()
}

/// The OpenAPI document of the admin port (what `GET /openapi.json` serves).
pub fn document() -> utoipa::openapi::OpenApi {
    assemble(Arc::new(Vec::new())).1
}

/// The admin routes (see the module documentation).
pub fn router(c: Arc<Coordinator>, tokens: Vec<Token>) -> Router {
    let (router, doc) = assemble(Arc::new(tokens));
    let state = AdminState {
        peers: Default::default(),
        sampling: Arc::new(sampling::SamplingCache::new(c.node_id.to_string())),
        c,
    };
    router
        .merge(console::router())
        .layer(axum::Extension(Arc::new(doc)))
        .with_state(state)
}

/// Per-route guard: the route's access level and the tokens.
#[derive(Clone)]
struct Guard {
    route: Arc<str>,
    access: Access,
    tokens: Arc<Vec<Token>>,
}

/// The token that called a `read` or `admin` route (a request extension set by the guard).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's name, recorded as the author of writes.
    pub name: String,
    /// Whether the token may write.
    pub admin: bool,
}

impl Guard {
    /// Checks the bearer token in constant time (per configured token) against the level.
    fn check(&self, headers: &HeaderMap) -> Result<Option<Caller>, AdminError> {
        let need = match self.access {
            Access::Public => return Ok(None),
            Access::Read => Role::ReadOnly,
            Access::Admin => Role::Admin,
        };
        let t = crate::grpc::find_token(&self.tokens, crate::grpc::bearer(headers)).ok_or(AdminError::Unauthorized)?;
        if need == Role::Admin && t.role != Role::Admin {
            return Err(AdminError::Forbidden { token: t.name.clone() });
        }
        Ok(Some(Caller {
            name: t.name.clone(),
            admin: t.role == Role::Admin,
        }))
    }
}

/// The route layer: authorization by the declared level, then the handler; every answer is
/// counted by route and status.
async fn guarded(State(g): State<Guard>, mut req: Request, next: Next) -> Response {
    let resp = match g.check(req.headers()) {
        Ok(caller) => {
            if let Some(c) = caller {
                req.extensions_mut().insert(c);
            }
            next.run(req).await
        }
        Err(e) => e.into_response(),
    };
    ::metrics::counter!(crate::metrics::ADMIN_REQUESTS, "route" => g.route.to_string(), "status" => resp.status().as_u16().to_string())
        .increment(1);
    resp
}

/// One problem of an invalid policy document.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Issue {
    pub path: String,
    pub message: String,
    /// The 1-based line of the document the problem is on, where it could be found
    /// ([`locate`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The column, when the parser gave one (syntax errors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// The last key of `path` (`threshold_ms` for `policies[1].latency.threshold_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Every error answer: `error` always, the other fields where they apply.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    /// An invalid policy: every problem by path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issues: Option<Vec<Issue>>,
    /// An unknown rollback version: the versions kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<Vec<u64>>,
    /// An unknown member: the members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<u64>>,
    /// A membership change on a follower: the leader's id and admin address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_admin_addr: Option<String>,
}

/// Every way an admin request fails, mapped to its HTTP status in one place.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("token `{token}` is read-only; this request needs an admin token")]
    Forbidden { token: String },
    /// The body is not the JSON the route takes.
    #[error("request body: {0}")]
    Body(String),
    #[error("invalid policy: {message}")]
    InvalidPolicy { message: String, issues: Vec<Issue> },
    #[error("invalid settings: settings.{0}")]
    InvalidSettings(String),
    /// Another invalid request (a path or body value).
    #[error("{0}")]
    BadRequest(String),
    #[error("policy version {version} is not kept")]
    UnknownVersion { version: u64, kept: Vec<u64> },
    #[error("node {id} is not a member")]
    NotMember { id: u64, members: Vec<u64> },
    /// Another unknown resource (a capture id).
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("membership changes are made on the leader")]
    NotLeader {
        leader: Option<u64>,
        leader_admin_addr: Option<String>,
    },
    #[error("{0}")]
    Unavailable(String),
    /// A bad Jaeger sampling query: plain text, as Jaeger answers.
    #[error("{0}")]
    PlainBadRequest(String),
}

impl AdminError {
    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::Unauthorized => StatusCode::UNAUTHORIZED,
            AdminError::Forbidden { .. } => StatusCode::FORBIDDEN,
            AdminError::Body(_)
            | AdminError::InvalidPolicy { .. }
            | AdminError::InvalidSettings(_)
            | AdminError::BadRequest(_)
            | AdminError::PlainBadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::UnknownVersion { .. } | AdminError::NotMember { .. } | AdminError::NotFound(_) => {
                StatusCode::NOT_FOUND
            }
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::NotLeader { .. } => StatusCode::MISDIRECTED_REQUEST,
            AdminError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = ErrorBody {
            error: self.to_string(),
            issues: None,
            kept: None,
            members: None,
            leader: None,
            leader_admin_addr: None,
        };
        match self {
            AdminError::Unauthorized => {
                return (
                    status,
                    [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
                    Json(body),
                )
                    .into_response()
            }
            AdminError::PlainBadRequest(m) => {
                return (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], m).into_response()
            }
            AdminError::InvalidPolicy { issues, .. } => body.issues = Some(issues),
            AdminError::UnknownVersion { kept, .. } => body.kept = Some(kept),
            AdminError::NotMember { members, .. } => body.members = Some(members),
            AdminError::NotLeader {
                leader,
                leader_admin_addr,
            } => {
                body.leader = leader;
                body.leader_admin_addr = leader_admin_addr;
            }
            _ => {}
        }
        (status, Json(body)).into_response()
    }
}

impl From<WriteError> for AdminError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Rejected(CommandError::UnknownVersion { version, kept }) => {
                AdminError::UnknownVersion { version, kept }
            }
            WriteError::Rejected(e @ CommandError::UnknownCapture { .. }) => AdminError::NotFound(e.to_string()),
            WriteError::Rejected(e @ CommandError::TooManyCaptures { .. }) => AdminError::Conflict(e.to_string()),
            WriteError::Rejected(e @ CommandError::ShadowChanged { .. }) => AdminError::Conflict(e.to_string()),
            WriteError::Unavailable(m) => AdminError::Unavailable(format!("no leader available: {m}")),
        }
    }
}

/// A JSON request body; anything else is a 400 `request body: ...` (not axum's 415/422).
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: for<'de> Deserialize<'de>> FromRequest<S> for Body<T> {
    type Rejection = AdminError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| AdminError::Body(e.to_string()))?;
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| AdminError::Body(e.to_string()))
    }
}

/// `PUT /v1/policy`, `POST /v1/policy/validate` and `PUT /v1/policy/shadow` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    pub document: String,
    /// `yaml`, `json` (native), `otel_tail_sampling` or `refinery_rules`. Absent: told from the
    /// document's content (an ambiguous document is refused with the formats it could be).
    #[serde(default)]
    pub format: Option<PolicyFormat>,
    /// `PUT /v1/policy` only: the author's note, kept with the version (at most
    /// [`MAX_NOTE_BYTES`] bytes).
    #[serde(default)]
    pub note: Option<String>,
}

/// The longest author note.
pub const MAX_NOTE_BYTES: usize = 1024;

impl PolicyBody {
    /// Parses and compiles the document (in its format, or the detected one); an invalid one
    /// lists every problem by path. Returns the document and the format to store it with.
    pub fn check(&self) -> Result<(tailsift_policy::PolicyDocument, PolicyFormat), AdminError> {
        let invalid = |e: tailsift_policy::PolicyError| AdminError::InvalidPolicy {
            message: e.to_string(),
            issues: e
                .issues()
                .iter()
                .map(|i| {
                    let place = locate::locate(&self.document, &i.path, &i.message);
                    Issue {
                        line: place.as_ref().map(|p| p.line),
                        column: place.as_ref().and_then(|p| p.column),
                        key: place.and_then(|p| p.key),
                        path: i.path.to_string(),
                        message: i.message.to_string(),
                    }
                })
                .collect(),
        };
        if self.note.as_ref().is_some_and(|n| n.len() > MAX_NOTE_BYTES) {
            return Err(AdminError::BadRequest(format!("note: at most {MAX_NOTE_BYTES} bytes")));
        }
        let format = match self.format {
            Some(f) => f,
            None => PolicyFormat::detect(&self.document).map_err(invalid)?,
        };
        let doc = format.check(&self.document).map_err(invalid)?;
        Ok((doc, format))
    }
}

/// The node and applied log index a read reflects.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Reflects {
    pub node: u64,
    pub applied_index: u64,
}

impl Reflects {
    pub fn of(c: &Coordinator, v: &View) -> Self {
        Reflects {
            node: c.node_id,
            applied_index: v.last_applied.map_or(0, |l| l.index),
        }
    }
}

/// `x-tailsift-policy-version` and `x-tailsift-applied-index` of a read.
pub fn version_headers(v: &View) -> HeaderMap {
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

/// The answer to a replicated write.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Written {
    /// The policy version after the write.
    pub version: u64,
    pub seeds: Seeds,
    pub shadow_revision: u64,
    pub settings_revision: u64,
    pub captures_revision: u64,
    /// The capture the write started or changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_id: Option<u64>,
    /// The Raft log index of the entry.
    pub log_index: u64,
}

/// Commits `cmd` (through the leader) and answers with what was applied and the
/// `x-tailsift-policy-version` header.
pub async fn write(s: &AdminState, cmd: Command) -> Result<(HeaderMap, Written), AdminError> {
    let (applied, log_index): (Applied, u64) = s.c.write(cmd).await?;
    let mut h = HeaderMap::new();
    h.insert("x-tailsift-policy-version", HeaderValue::from(applied.policy_version));
    Ok((
        h,
        Written {
            version: applied.policy_version,
            seeds: applied.seeds,
            shadow_revision: applied.shadow_revision,
            settings_revision: applied.settings_revision,
            captures_revision: applied.captures_revision,
            capture_id: applied.capture_id,
            log_index,
        },
    ))
}

/// Shadow keeps of one rule.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RuleKept {
    pub policy: String,
    pub kept: u64,
}

/// What a shadow policy would have done on one worker.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShadowCounts {
    pub revision: u64,
    /// Traces evaluated (decided by the live policy while the shadow was applied).
    pub traces: u64,
    /// Traces the shadow would keep.
    pub shadow_kept: u64,
    /// Traces the live policy kept.
    pub live_kept: u64,
    /// Traces both kept.
    pub both_kept: u64,
    /// Shadow keeps by rule.
    pub by_policy: Vec<RuleKept>,
    /// Live keeps of the same traces by rule.
    pub live_by_policy: Vec<RuleKept>,
}

fn rule_kept(counts: &[crate::watch::RuleCount]) -> Vec<RuleKept> {
    counts
        .iter()
        .map(|r| RuleKept {
            policy: r.policy.clone(),
            kept: r.kept,
        })
        .collect()
}

impl From<&crate::watch::ShadowCounts> for ShadowCounts {
    fn from(c: &crate::watch::ShadowCounts) -> Self {
        ShadowCounts {
            revision: c.revision,
            traces: c.traces,
            shadow_kept: c.shadow_kept,
            live_kept: c.live_kept,
            both_kept: c.both_kept,
            by_policy: rule_kept(&c.by_policy),
            live_by_policy: rule_kept(&c.live_by_policy),
        }
    }
}

/// What a sampling worker last reported to this node.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkerEntry {
    pub worker_id: String,
    /// The policy version it applies.
    pub version: u64,
    pub settings_revision: u64,
    pub reported_unix_ms: u64,
    /// Present while it evaluates a shadow policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowCounts>,
    /// The spans-topic partitions it owns.
    pub partitions: Vec<i32>,
    /// Its throughput over its last report window; absent until two reports with counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rates: Option<crate::watch::Rates>,
}

impl From<&crate::watch::WorkerReport> for WorkerEntry {
    fn from(w: &crate::watch::WorkerReport) -> Self {
        WorkerEntry {
            worker_id: w.worker_id.clone(),
            version: w.version,
            settings_revision: w.settings_revision,
            reported_unix_ms: w.reported_unix_ms,
            shadow: w.shadow.as_ref().map(ShadowCounts::from),
            partitions: w.partitions.clone(),
            rates: w.rates.clone(),
        }
    }
}

/// The workers that reported to this node.
pub fn worker_entries(s: &AdminState) -> Vec<WorkerEntry> {
    s.c.workers.list().iter().map(WorkerEntry::from).collect()
}

/// Unix milliseconds, recorded with writes.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The result of a handler answering JSON with headers.
pub type Answer<T> = Result<(HeaderMap, Json<T>), AdminError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn issues_of(document: &str, format: Option<PolicyFormat>) -> Vec<Issue> {
        let body = PolicyBody {
            document: document.into(),
            format,
            note: None,
        };
        match body.check() {
            Err(AdminError::InvalidPolicy { issues, .. }) => issues,
            other => panic!("not an invalid policy: {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn invalid_documents_of_every_format_name_the_line_and_key() {
        let native = "policies:\n  - name: errors\n    status_code: { codes: [ERROR] }\n  - name: sample\n    probabilistic:\n      percentage: 200\n";
        let i = &issues_of(native, None)[0];
        assert_eq!((i.line, i.key.as_deref()), (Some(6), Some("percentage")), "{i:?}");
        let otel = "processors:\n  tail_sampling:\n    decision_wait: 10s\n    policies:\n      - name: errors\n        type: status_code\n        status_code: { status_codes: [ERROR] }\n      - name: sample\n        type: probabilistic\n        probabilistic:\n          sampling_percentage: 250\n";
        let i = &issues_of(otel, Some(PolicyFormat::OtelTailSampling))[0];
        assert_eq!(
            (i.line, i.key.as_deref()),
            (Some(11), Some("sampling_percentage")),
            "{i:?}"
        );
        let syntax = "policies:\n  - name: [unclosed\n";
        let i = &issues_of(syntax, Some(PolicyFormat::Yaml))[0];
        assert!(i.line.is_some() && i.column.is_some(), "{i:?}");
    }

    #[test]
    fn every_table_route_is_documented_with_its_access_and_nothing_else() {
        let doc = serde_json::to_value(document()).unwrap();
        if let Some(out) = std::env::var_os("TAILSIFT_WRITE_OPENAPI") {
            std::fs::write(out, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        }
        let mut served = std::collections::BTreeSet::new();
        for (path, method, access) in served_routes() {
            let op = &doc["paths"][&path][method.as_str().to_lowercase()];
            assert!(op.is_object(), "{method} {path}");
            assert_eq!(op["x-tailsift-role"].as_str(), access.role_name(), "{method} {path}");
            assert!(served.insert((path, method)), "a route is in the table twice");
        }
        let documented: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|i| i.as_object().unwrap().len())
            .sum();
        assert_eq!(documented, served.len() + openapi::TELEMETRY_ROUTES.len());
    }
}

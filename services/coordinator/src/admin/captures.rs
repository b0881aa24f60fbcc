//! Retroactive captures (`/v1/captures`): "keep every trace of service `checkout` from the last
//! 20 minutes", asked after the fact. Kafka holds every span for the topic's retention, so the
//! workers read the window back from the spans topic (offsets-for-times), each on the partitions
//! it owns, and export the traces the match policy keeps that were not kept already (the
//! decisions topic says which were), stamped `tailsift.sampling.policy = capture:<id>`.
//!
//! The capture is replicated through Raft and streamed to every worker with the policy
//! ([`crate::watch`]); workers report progress per partition with their applied-version reports,
//! and each finished partition is recorded in the replicated state, so a restarted or new owner
//! of a partition does not run it again, and every coordinator answers the same. A capture is
//! `completed` when every partition of the spans topic is recorded.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    now_ms, version_headers, write, AdminError, AdminState, Answer, Body, Caller, ErrorBody, PolicyBody, Reflects,
};
use crate::state::{Capture, CaptureState, Command, JobKind, PolicyFormat, WhatifLive};
use crate::watch::capture_progress::State as ProgressState;

/// Longest window a capture may ask for (the topic's retention limits it anyway).
pub const MAX_WINDOW: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
/// The wait after `until` before workers read, when the cluster settings do not set a decision
/// wait: traces still running at `until` get their later spans.
pub const DEFAULT_READ_WAIT_MS: i64 = 30_000;

/// `POST /v1/captures` body: what to match (`match` or `policy`) and the window.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureRequest {
    /// An OTTL span condition; a trace matches when any of its spans does, e.g.
    /// `resource.attributes["service.name"] == "checkout"`.
    #[serde(default, rename = "match")]
    pub match_condition: Option<String>,
    /// Instead of `match`: a policy document in any format the admin API takes; a trace matches
    /// when the policy keeps it.
    #[serde(default)]
    pub policy: Option<PolicyBody>,
    /// How far back the window starts, as a duration (`20m`, `1h30m`); or `since_unix_ms`.
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub since_unix_ms: Option<i64>,
    /// When the window ends, Unix milliseconds (default: now).
    #[serde(default)]
    pub until_unix_ms: Option<i64>,
    /// A note shown with the capture.
    #[serde(default)]
    pub description: Option<String>,
}

/// A capture with its progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaptureStatus {
    #[serde(flatten)]
    pub capture: Capture,
    /// The recorded partitions added up.
    pub total: CaptureTotal,
    /// Partitions workers are running now (from their reports to this coordinator).
    pub in_progress: Vec<PartitionProgress>,
    /// What the window is limited by: the spans topic's retention. Set when a partition's
    /// records of the window's start were already deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
}

/// Everything recorded so far, added up.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct CaptureTotal {
    pub partitions_done: usize,
    pub partitions_failed: usize,
    pub records_read: u64,
    pub traces_matched: u64,
    pub traces_already_kept: u64,
    pub traces_exported: u64,
    pub spans_exported: u64,
    pub bytes_exported: u64,
    /// The earliest record read in any partition, Unix milliseconds (0: none).
    pub first_record_unix_ms: i64,
    pub truncated_by_retention: bool,
}

/// A partition a worker is running.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartitionProgress {
    pub partition: i32,
    pub worker_id: String,
    /// `waiting` (for the window's end) or `reading`.
    pub state: String,
    pub records_read: u64,
    pub traces_matched: u64,
    pub traces_exported: u64,
    pub reported_unix_ms: u64,
}

/// `GET /v1/captures`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaptureList {
    pub captures: Vec<CaptureStatus>,
    pub reflects: Reflects,
}

/// `POST /v1/captures` and `DELETE /v1/captures/{id}` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaptureStarted {
    pub id: u64,
    pub since_unix_ms: i64,
    pub until_unix_ms: i64,
    /// Workers read once this time has passed.
    pub read_until_unix_ms: i64,
    pub log_index: u64,
    /// How the window is limited, for the operator.
    pub note: String,
}

fn status_of(s: &AdminState, c: &Capture) -> CaptureStatus {
    let mut total = CaptureTotal::default();
    for p in c.done.values() {
        if p.error.is_some() {
            total.partitions_failed += 1;
        } else {
            total.partitions_done += 1;
        }
        total.records_read += p.records_read;
        total.traces_matched += p.traces_matched;
        total.traces_already_kept += p.traces_already_kept;
        total.traces_exported += p.traces_exported;
        total.spans_exported += p.spans_exported;
        total.bytes_exported += p.bytes_exported;
        if p.first_record_unix_ms > 0
            && (total.first_record_unix_ms == 0 || p.first_record_unix_ms < total.first_record_unix_ms)
        {
            total.first_record_unix_ms = p.first_record_unix_ms;
        }
        total.truncated_by_retention |= p.truncated_by_retention;
    }
    let mut in_progress: BTreeMap<i32, PartitionProgress> = BTreeMap::new();
    if c.state == CaptureState::Running {
        for w in s.c.workers.list() {
            for p in w.captures.iter().filter(|p| p.capture_id == c.id) {
                let state = match p.state() {
                    ProgressState::Waiting => "waiting",
                    ProgressState::Reading => "reading",
                    _ => continue,
                };
                if c.done.contains_key(&p.partition) {
                    continue;
                }
                let newer = in_progress
                    .get(&p.partition)
                    .is_none_or(|e| e.reported_unix_ms < w.reported_unix_ms);
                if newer {
                    in_progress.insert(
                        p.partition,
                        PartitionProgress {
                            partition: p.partition,
                            worker_id: w.worker_id.clone(),
                            state: state.into(),
                            records_read: p.records_read,
                            traces_matched: p.traces_matched,
                            traces_exported: p.traces_exported,
                            reported_unix_ms: w.reported_unix_ms,
                        },
                    );
                }
            }
        }
    }
    let retention = total.truncated_by_retention.then(|| {
        format!(
            "the spans topic's retention had deleted the start of the window: the earliest record read is from {} ms after its start",
            total.first_record_unix_ms.saturating_sub(c.since_unix_ms).max(0)
        )
    });
    CaptureStatus {
        capture: c.clone(),
        total,
        in_progress: in_progress.into_values().collect(),
        retention,
    }
}

impl CaptureRequest {
    /// The match policy (format and document) and a description.
    fn match_policy(&self) -> Result<(PolicyFormat, String, String), AdminError> {
        match (&self.match_condition, &self.policy) {
            (Some(_), Some(_)) => Err(AdminError::BadRequest(
                "give either `match` or `policy`, not both".into(),
            )),
            (None, None) => Err(AdminError::BadRequest(
                "`match` (an OTTL span condition) or `policy` (a policy document) is required".into(),
            )),
            (Some(cond), None) => {
                let cond = cond.trim();
                if cond.is_empty() {
                    return Err(AdminError::BadRequest("match: empty condition".into()));
                }
                let document = serde_json::json!({
                    "policies": [{"name": "capture", "ottl_condition": {"error_mode": "ignore", "span": [cond]}}]
                })
                .to_string();
                let body = PolicyBody {
                    document,
                    format: Some(PolicyFormat::Json),
                    note: None,
                };
                let (_, format) = body.check().map_err(|e| match e {
                    AdminError::InvalidPolicy { message, issues } => AdminError::InvalidPolicy {
                        message: format!("match: {message}"),
                        issues,
                    },
                    e => e,
                })?;
                Ok((format, body.document, cond.to_string()))
            }
            (None, Some(p)) => {
                let (_, format) = p.check()?;
                Ok((format, p.document.clone(), String::new()))
            }
        }
    }

    /// `(since, until)`, Unix milliseconds.
    fn window(&self, now: i64) -> Result<(i64, i64), AdminError> {
        let until = self.until_unix_ms.unwrap_or(now);
        if until > now + 60_000 {
            return Err(AdminError::BadRequest("until_unix_ms: is in the future".into()));
        }
        let since = match (&self.since, self.since_unix_ms) {
            (Some(_), Some(_)) => {
                return Err(AdminError::BadRequest(
                    "give either `since` (a duration) or `since_unix_ms`, not both".into(),
                ))
            }
            (None, None) => return Err(AdminError::BadRequest("`since` (e.g. \"20m\") is required".into())),
            (Some(d), None) => {
                let d = humantime_serde::re::humantime::parse_duration(d.trim())
                    .map_err(|e| AdminError::BadRequest(format!("since: {e} (write e.g. \"20m\" or \"1h30m\")")))?;
                if d > MAX_WINDOW {
                    return Err(AdminError::BadRequest(format!(
                        "since: at most {}",
                        humantime_serde::re::humantime::format_duration(MAX_WINDOW)
                    )));
                }
                until - d.as_millis() as i64
            }
            (None, Some(ms)) => ms,
        };
        if since >= until {
            return Err(AdminError::BadRequest("since: must be before until".into()));
        }
        if until - since > MAX_WINDOW.as_millis() as i64 {
            return Err(AdminError::BadRequest("since: the window is longer than 7 days".into()));
        }
        Ok((since, until))
    }
}

#[utoipa::path(post, path = "/v1/captures",
    summary = "Start a retroactive capture: export every trace of a past window that a match condition or policy keeps",
    request_body = CaptureRequest,
    responses((status = 200, description = "started: id, window", body = CaptureStarted),
        (status = 400, description = "invalid match, policy or window", body = ErrorBody),
        (status = 409, description = "too many captures running", body = ErrorBody),
        (status = 503, description = "no leader reachable", body = ErrorBody)))]
pub async fn start(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Body(b): Body<CaptureRequest>,
) -> Answer<CaptureStarted> {
    let (match_format, match_document, condition) = b.match_policy()?;
    let now = now_ms() as i64;
    let (since, until) = b.window(now)?;
    let wait =
        s.c.view()
            .registry
            .settings
            .sampler
            .decision_wait_ms
            .map_or(DEFAULT_READ_WAIT_MS, |w| w as i64);
    let read_until = until + wait;
    let description = b.description.clone().unwrap_or(condition).chars().take(1000).collect();
    let (h, w) = write(
        &s,
        Command::StartCapture {
            kind: JobKind::Capture,
            live: None,
            author: caller.name,
            time_unix_ms: now as u64,
            description,
            match_format,
            match_document,
            since_unix_ms: since,
            until_unix_ms: until,
            read_until_unix_ms: read_until,
        },
    )
    .await?;
    let id = w.capture_id.unwrap_or_default();
    Ok((
        h,
        Json(CaptureStarted {
            id,
            since_unix_ms: since,
            until_unix_ms: until,
            read_until_unix_ms: read_until,
            log_index: w.log_index,
            note: format!(
                "workers read the spans topic from {since} once {read_until} has passed (the decision wait after the window, so running traces are complete); \
                 records the topic's retention already deleted cannot be captured: GET /v1/captures/{id} says if the window was cut"
            ),
        }),
    ))
}

#[utoipa::path(get, path = "/v1/captures", operation_id = "list_captures",
    summary = "The running captures and the latest finished ones, with progress",
    responses((status = 200, description = "captures", body = CaptureList)))]
pub async fn list(State(s): State<AdminState>) -> Answer<CaptureList> {
    let v = s.c.view();
    let captures = v
        .registry
        .captures
        .values()
        .rev()
        .filter(|c| c.kind == JobKind::Capture)
        .map(|c| status_of(&s, c))
        .collect();
    Ok((
        version_headers(&v),
        Json(CaptureList {
            captures,
            reflects: Reflects::of(&s.c, &v),
        }),
    ))
}

#[utoipa::path(get, path = "/v1/captures/{id}", operation_id = "get_capture",
    summary = "One capture: its window, state, per-partition results and progress",
    params(("id" = u64, Path, description = "capture id")),
    responses((status = 200, description = "the capture", body = CaptureStatus),
        (status = 404, description = "unknown capture", body = ErrorBody)))]
pub async fn get(State(s): State<AdminState>, Path(id): Path<u64>) -> Answer<CaptureStatus> {
    let v = s.c.view();
    let c = find(&v, id, JobKind::Capture)?;
    Ok((version_headers(&v), Json(status_of(&s, c))))
}

#[utoipa::path(delete, path = "/v1/captures/{id}", operation_id = "cancel_capture",
    summary = "Cancel a running capture (partitions already exported stay exported)",
    params(("id" = u64, Path, description = "capture id")),
    responses((status = 200, description = "cancelled", body = CaptureStatus),
        (status = 404, description = "unknown capture", body = ErrorBody),
        (status = 503, description = "no leader reachable", body = ErrorBody)))]
pub async fn cancel(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
) -> Answer<CaptureStatus> {
    find(&s.c.view(), id, JobKind::Capture)?;
    let (h, _) = write(
        &s,
        Command::CancelCapture {
            author: caller.name,
            time_unix_ms: now_ms(),
            id,
        },
    )
    .await?;
    let v = s.c.view();
    let c = find(&v, id, JobKind::Capture)?;
    Ok((h, Json(status_of(&s, c))))
}

/// The job `id` of `kind`.
fn find(v: &crate::store::View, id: u64, kind: JobKind) -> Result<&Capture, AdminError> {
    let what = match kind {
        JobKind::Capture => "capture",
        JobKind::Whatif => "what-if job",
    };
    v.registry.captures.get(&id).filter(|c| c.kind == kind).ok_or_else(|| {
        AdminError::NotFound(format!(
            "{what} {id} is not known (finished ones are kept up to the latest 50)"
        ))
    })
}

/// `POST /v1/policy/whatif` body: the candidate policy and the window.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WhatifRequest {
    /// The candidate policy, in any format the admin API takes.
    pub document: String,
    #[serde(default)]
    pub format: Option<PolicyFormat>,
    /// How far back the window starts (`30m`); or `since_unix_ms`.
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub since_unix_ms: Option<i64>,
    /// When the window ends, Unix milliseconds (default: now).
    #[serde(default)]
    pub until_unix_ms: Option<i64>,
}

/// A what-if job: its window, state and (once every partition reported) the report.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhatifStatus {
    pub id: u64,
    /// `running`, `completed` or `cancelled`.
    pub state: CaptureState,
    pub author: String,
    pub time_unix_ms: u64,
    pub since_unix_ms: i64,
    pub until_unix_ms: i64,
    /// The candidate policy.
    pub format: PolicyFormat,
    pub document: String,
    /// The live policy version and seed it is compared with.
    pub live_version: u64,
    pub seed: u64,
    /// The spans topic's partitions, and how many reported.
    pub partitions: Option<i32>,
    pub partitions_done: usize,
    /// Partitions that could not be replayed, with the reason.
    pub failed: BTreeMap<i32, String>,
    /// The report over every partition that reported (the same fields as `tailsift policy
    /// whatif`: `total`, `candidate`, `live`, `both_kept`, `candidate_only`, `live_only`,
    /// `difference`, `difference_by_rule`, ...): counts summed, `complete` only when every
    /// partition was read to its end. `null` until a partition reported.
    #[schema(value_type = Option<Object>)]
    pub report: Option<serde_json::Value>,
}

/// Adds `b` into `a`: numbers are summed, objects merged key by key, arrays concatenated,
/// booleans and-ed (`complete`); other values keep `a`'s. What-if reports of several partitions
/// add up this way, since every count in them is a sum over traces.
fn merge(a: &mut serde_json::Value, b: &serde_json::Value) {
    use serde_json::Value as V;
    match (a, b) {
        (V::Object(a), V::Object(b)) => {
            for (k, bv) in b {
                match a.get_mut(k) {
                    Some(av) => merge(av, bv),
                    None => {
                        a.insert(k.clone(), bv.clone());
                    }
                }
            }
        }
        (V::Array(a), V::Array(b)) => a.extend(b.iter().cloned()),
        (V::Bool(a), V::Bool(b)) => *a = *a && *b,
        (a @ V::Number(_), V::Number(b)) => {
            let sum = match (a.as_i64(), b.as_i64()) {
                (Some(x), Some(y)) => serde_json::json!(x.saturating_add(y)),
                _ => serde_json::json!(a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0)),
            };
            *a = sum;
        }
        _ => {}
    }
}

fn whatif_status(c: &Capture) -> WhatifStatus {
    let mut report: Option<serde_json::Value> = None;
    let mut failed = BTreeMap::new();
    for (p, r) in &c.done {
        if let Some(e) = &r.error {
            failed.insert(*p, e.clone());
            continue;
        }
        let Some(part) = r.report_json.as_deref().and_then(|j| serde_json::from_str(j).ok()) else {
            failed.insert(*p, "no report".into());
            continue;
        };
        match report.as_mut() {
            Some(total) => merge(total, &part),
            None => report = Some(part),
        }
    }
    if let Some(serde_json::Value::Object(r)) = report.as_mut() {
        // Window and seed are the job's, not sums; complete only with every partition.
        r.insert("since_unix_ms".into(), c.since_unix_ms.into());
        r.insert("until_unix_ms".into(), c.until_unix_ms.into());
        r.insert("seed".into(), c.live.as_ref().map_or(0, |l| l.seed).into());
        let all = c.state == CaptureState::Completed && failed.is_empty();
        let complete = r.get("complete").and_then(|v| v.as_bool()).unwrap_or(false) && all;
        r.insert("complete".into(), complete.into());
    }
    WhatifStatus {
        id: c.id,
        state: c.state,
        author: c.author.clone(),
        time_unix_ms: c.time_unix_ms,
        since_unix_ms: c.since_unix_ms,
        until_unix_ms: c.until_unix_ms,
        format: c.match_format,
        document: c.match_document.clone(),
        live_version: c.live.as_ref().map_or(0, |l| l.version),
        seed: c.live.as_ref().map_or(0, |l| l.seed),
        partitions: c.partitions,
        partitions_done: c.done.len(),
        failed,
        report,
    }
}

#[utoipa::path(post, path = "/v1/policy/whatif",
    summary = "Start a what-if replay: the workers run a candidate policy beside the live one over a recorded window, without exporting",
    request_body = WhatifRequest,
    responses((status = 200, description = "started: id, window", body = CaptureStarted),
        (status = 400, description = "invalid policy or window, or no live policy yet", body = ErrorBody),
        (status = 409, description = "too many jobs running", body = ErrorBody),
        (status = 503, description = "no leader reachable", body = ErrorBody)))]
pub async fn start_whatif(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Body(b): Body<WhatifRequest>,
) -> Answer<CaptureStarted> {
    let candidate = PolicyBody {
        document: b.document.clone(),
        format: b.format,
        note: None,
    };
    let (_, format) = candidate.check()?;
    let window = CaptureRequest {
        match_condition: None,
        policy: None,
        since: b.since.clone(),
        since_unix_ms: b.since_unix_ms,
        until_unix_ms: b.until_unix_ms,
        description: None,
    };
    let now = now_ms() as i64;
    let (since, until) = window.window(now)?;
    let v = s.c.view();
    let live = v
        .registry
        .current()
        .ok_or_else(|| AdminError::BadRequest("the cluster has no live policy version to compare with yet".into()))?;
    let seed = v.registry.seed_of(live);
    let live = WhatifLive {
        version: live.version,
        format: live.format,
        document: live.document.clone(),
        seed,
    };
    let (h, w) = write(
        &s,
        Command::StartCapture {
            kind: JobKind::Whatif,
            live: Some(live),
            author: caller.name,
            time_unix_ms: now as u64,
            description: "what-if".into(),
            match_format: format,
            match_document: b.document,
            since_unix_ms: since,
            until_unix_ms: until,
            read_until_unix_ms: until,
        },
    )
    .await?;
    let id = w.capture_id.unwrap_or_default();
    Ok((
        h,
        Json(CaptureStarted {
            id,
            since_unix_ms: since,
            until_unix_ms: until,
            read_until_unix_ms: until,
            log_index: w.log_index,
            note: format!(
                "every worker replays the partitions it owns; GET /v1/policy/whatif/{id} has the report once every partition reported. \
                 Records the topic's retention already deleted are not replayed"
            ),
        }),
    ))
}

#[utoipa::path(get, path = "/v1/policy/whatif/{id}", operation_id = "get_whatif",
    summary = "A what-if job: state and, summed over the partitions that reported, what the candidate and the live policy keep, per rule",
    params(("id" = u64, Path, description = "what-if job id")),
    responses((status = 200, description = "the job and its report", body = WhatifStatus),
        (status = 404, description = "unknown job", body = ErrorBody)))]
pub async fn get_whatif(State(s): State<AdminState>, Path(id): Path<u64>) -> Answer<WhatifStatus> {
    let v = s.c.view();
    let c = find(&v, id, JobKind::Whatif)?;
    Ok((version_headers(&v), Json(whatif_status(c))))
}

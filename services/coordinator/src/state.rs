//! The replicated state: policy document with history, hash seeds, cluster settings; and the
//! commands that change it. `apply` is deterministic: everything random or time-dependent (seeds,
//! timestamps) is chosen by the node that proposes the command and carried inside it.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// How a stored policy document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyFormat {
    /// Native YAML (JSON is YAML too, but `json` gives JSON error positions). Also `native`.
    #[default]
    #[serde(alias = "native")]
    Yaml,
    /// Native JSON.
    Json,
    /// An OpenTelemetry Collector `tail_sampling` configuration: a policy list, the processor's
    /// configuration or a whole collector configuration. Also `otel`.
    #[serde(alias = "otel")]
    OtelTailSampling,
    /// Honeycomb Refinery's rules file. Also `refinery`.
    #[serde(alias = "refinery")]
    RefineryRules,
}

impl PolicyFormat {
    /// Parses, validates and compiles `text`; errors carry the path of every problem.
    pub fn check(self, text: &str) -> Result<tailsift_policy::PolicyDocument, tailsift_policy::PolicyError> {
        use tailsift_policy::{PolicyDocument, PolicyFormat as F};
        let doc = match self {
            PolicyFormat::Yaml => PolicyDocument::from_yaml(text)?,
            PolicyFormat::Json => PolicyDocument::from_json(text)?,
            PolicyFormat::OtelTailSampling => PolicyDocument::parse(text, Some(F::OtelTailSampling))?.0,
            PolicyFormat::RefineryRules => PolicyDocument::parse(text, Some(F::RefineryRules))?.0,
        };
        doc.validate()?;
        tailsift_policy::PolicyEngine::compile(&doc)?;
        Ok(doc)
    }

    /// The format `text` is written in, told from its content (`tailsift_policy::detect`); a
    /// native document is `json` when it starts with `{`.
    pub fn detect(text: &str) -> Result<Self, tailsift_policy::PolicyError> {
        Ok(match tailsift_policy::detect(text)? {
            tailsift_policy::PolicyFormat::Native if text.trim_start().starts_with('{') => PolicyFormat::Json,
            tailsift_policy::PolicyFormat::Native => PolicyFormat::Yaml,
            tailsift_policy::PolicyFormat::OtelTailSampling => PolicyFormat::OtelTailSampling,
            tailsift_policy::PolicyFormat::RefineryRules => PolicyFormat::RefineryRules,
        })
    }
}

/// One version of the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyVersion {
    /// Cluster-assigned, strictly increasing from 1.
    pub version: u64,
    /// Name of the admin token that wrote it.
    pub author: String,
    /// When the proposing node accepted it, Unix milliseconds.
    pub time_unix_ms: u64,
    pub format: PolicyFormat,
    /// The document exactly as submitted.
    pub document: String,
    /// Set when this version re-publishes an earlier one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<u64>,
    /// The author's note on the change (empty: none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// The hash seed epoch in force from this version on.
    pub seed_epoch: u64,
}

/// A hash seed and the policy version from which it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub struct SeedEpoch {
    /// 0 for the initial seed, +1 per rotation.
    pub epoch: u64,
    pub seed: u64,
    /// The policy version at which this seed takes effect.
    pub effective_version: u64,
}

/// Current seed and, after a rotation, the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub struct Seeds {
    pub current: SeedEpoch,
    pub next: Option<SeedEpoch>,
}

/// Settings that can change while the cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// How many policy versions are kept for rollback (including the current one). Default 20.
    pub history_limit: usize,
    /// Sampler settings applied live by every worker, overriding its local configuration.
    #[serde(default)]
    pub sampler: SamplerSettings,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            history_limit: 20,
            sampler: SamplerSettings::default(),
        }
    }
}

/// Sampler settings that are safe to change while workers run (streamed to the workers as JSON,
/// so the type is part of the contract in `tailsift-proto`).
pub use tailsift_proto::SamplerSettings;

/// An invalid cluster setting; the message starts with the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

impl ClusterSettings {
    /// Checks every value; the error names the key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if !(1..=1000).contains(&self.history_limit) {
            return Err(SettingsError(format!(
                "history_limit: must be 1 to 1000, got {}",
                self.history_limit
            )));
        }
        let s = &self.sampler;
        if let Some(w) = s.decision_wait_ms {
            if !(100..=3_600_000).contains(&w) {
                return Err(SettingsError(format!(
                    "sampler.decision_wait_ms: must be 100 to 3600000, got {w}"
                )));
            }
        }
        if let Some(d) = s.send_delay_ms {
            if d > 600_000 {
                return Err(SettingsError(format!(
                    "sampler.send_delay_ms: must be at most 600000, got {d}"
                )));
            }
            if let Some(w) = s.decision_wait_ms.filter(|w| d > *w) {
                return Err(SettingsError(format!(
                    "sampler.send_delay_ms: {d} exceeds sampler.decision_wait_ms {w}"
                )));
            }
        }
        if let Some(b) = s.soft_limit_bytes {
            if b < 1 << 20 {
                return Err(SettingsError(format!(
                    "sampler.soft_limit_bytes: must be at least 1048576, got {b}"
                )));
            }
        }
        if let (Some(soft), Some(hard)) = (s.soft_limit_bytes, s.hard_limit_bytes) {
            if hard < soft {
                return Err(SettingsError(format!(
                    "sampler.hard_limit_bytes: {hard} is below sampler.soft_limit_bytes {soft}"
                )));
            }
        }
        if let Some(p) = s.stress_probability {
            if !(0.0..=1.0).contains(&p) {
                return Err(SettingsError(format!(
                    "sampler.stress_probability: must be 0 to 1, got {p}"
                )));
            }
        }
        Ok(())
    }
}

/// A candidate policy evaluated by every worker beside the live one, without affecting
/// decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShadowPolicy {
    /// Cluster-assigned, +1 each time a shadow is set (0: never).
    pub revision: u64,
    pub author: String,
    pub time_unix_ms: u64,
    pub format: PolicyFormat,
    pub document: String,
}

/// Everything the coordinators replicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Registry {
    /// Newest last; the last element is the current policy.
    pub history: VecDeque<PolicyVersion>,
    pub seeds: Seeds,
    pub settings: ClusterSettings,
    /// +1 per settings change: lets watchers tell a new setting from one they have.
    #[serde(default)]
    pub settings_revision: u64,
    /// The shadow policy, if one is set.
    #[serde(default)]
    pub shadow: Option<ShadowPolicy>,
    /// +1 per shadow set or clear.
    #[serde(default)]
    pub shadow_revision: u64,
    /// Retroactive captures by id: the running ones and the latest finished ones.
    #[serde(default)]
    pub captures: BTreeMap<u64, Capture>,
    /// +1 per capture started, cancelled or partition recorded.
    #[serde(default)]
    pub captures_revision: u64,
    /// The last capture id handed out (ids are never reused).
    #[serde(default)]
    pub last_capture_id: u64,
}

/// Captures running at once, at most.
pub const MAX_RUNNING_CAPTURES: usize = 8;
/// Finished (completed or cancelled) captures kept for their results.
pub const KEPT_FINISHED_CAPTURES: usize = 50;
/// Partitions a capture can have (the spans topic's partition count), at most.
pub const MAX_CAPTURE_PARTITIONS: i32 = 10_000;

/// Where a capture is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaptureState {
    /// Workers run it on the partitions they own.
    Running,
    /// Every partition was recorded (done or failed).
    Completed,
    /// Cancelled by an operator; partitions not yet run are not run.
    Cancelled,
}

/// What a capture job does with the traces it reads back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Export the traces the match policy keeps (`POST /v1/captures`).
    #[default]
    Capture,
    /// Count what a candidate policy would keep beside the live one (`POST /v1/policy/whatif`).
    Whatif,
}

/// The live policy a what-if job compares with: the one in force when it was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WhatifLive {
    pub version: u64,
    pub format: PolicyFormat,
    pub document: String,
    pub seed: u64,
}

/// What one partition of a capture did, as its worker reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CapturePartition {
    pub worker_id: String,
    /// Set when the partition could not be run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub records_read: u64,
    pub traces_matched: u64,
    pub traces_already_kept: u64,
    pub traces_exported: u64,
    pub spans_exported: u64,
    pub bytes_exported: u64,
    /// The time of the first record read (0: none in the window).
    pub first_record_unix_ms: i64,
    /// The topic's retention had deleted part of the window.
    pub truncated_by_retention: bool,
    /// A what-if job's report for the partition, as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_json: Option<String>,
}

/// A retroactive capture: keep every trace of a past window the match policy keeps, read back
/// from the spans topic by the workers (see `Capture` in `proto/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Capture {
    pub id: u64,
    #[serde(default)]
    pub kind: JobKind,
    /// For a what-if job: the live policy it compares with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<WhatifLive>,
    pub author: String,
    pub time_unix_ms: u64,
    /// What the operator wrote (the CLI's `--match`, or the document), for display.
    pub description: String,
    pub match_format: PolicyFormat,
    pub match_document: String,
    pub since_unix_ms: i64,
    pub until_unix_ms: i64,
    pub read_until_unix_ms: i64,
    pub state: CaptureState,
    /// The spans topic's partition count, from the first worker report (`null` before).
    pub partitions: Option<i32>,
    /// The partitions recorded, by partition.
    pub done: BTreeMap<i32, CapturePartition>,
    /// When it completed or was cancelled, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_unix_ms: Option<u64>,
}

impl Registry {
    /// The current policy version (0 before the first one).
    pub fn policy_version(&self) -> u64 {
        self.history.back().map_or(0, |p| p.version)
    }

    pub fn current(&self) -> Option<&PolicyVersion> {
        self.history.back()
    }

    /// The hash seed of `p`: the seed of the epoch in force when it was published (the current
    /// one, or the scheduled next one while it has not taken over).
    pub fn seed_of(&self, p: &PolicyVersion) -> u64 {
        let seeds = &self.seeds;
        if seeds.current.epoch == p.seed_epoch {
            seeds.current.seed
        } else {
            seeds
                .next
                .filter(|n| n.epoch == p.seed_epoch)
                .map_or(seeds.current.seed, |n| n.seed)
        }
    }

    pub fn find(&self, version: u64) -> Option<&PolicyVersion> {
        self.history.iter().find(|p| p.version == version)
    }

    /// Applies one command. Never fails: a command that cannot apply (rollback to a version no
    /// longer kept) yields an error response and leaves the state unchanged.
    pub fn apply(&mut self, cmd: &Command) -> CommandResult {
        match cmd {
            Command::PutPolicy {
                author,
                time_unix_ms,
                format,
                document,
                note,
            } => Ok(self.publish(author, *time_unix_ms, *format, document.clone(), None, note)),
            Command::Rollback {
                author,
                time_unix_ms,
                version,
            } => {
                let Some(old) = self.find(*version).cloned() else {
                    return Err(CommandError::UnknownVersion {
                        version: *version,
                        kept: self.history.iter().map(|p| p.version).collect(),
                    });
                };
                let note = format!("rollback to version {version}");
                Ok(self.publish(author, *time_unix_ms, old.format, old.document, Some(*version), &note))
            }
            Command::RotateSeed { seed, .. } => {
                let v = self.policy_version();
                let epoch = self.seeds.next.unwrap_or(self.seeds.current).epoch + 1;
                let next = SeedEpoch {
                    epoch,
                    seed: *seed,
                    effective_version: v + 1,
                };
                self.seeds.next = Some(next);
                Ok(self.applied())
            }
            Command::SetSettings { settings } => {
                self.settings = *settings;
                self.settings_revision += 1;
                self.trim();
                Ok(self.applied())
            }
            Command::SetShadow {
                author,
                time_unix_ms,
                format,
                document,
            } => {
                self.shadow_revision += 1;
                self.shadow = Some(ShadowPolicy {
                    revision: self.shadow_revision,
                    author: author.clone(),
                    time_unix_ms: *time_unix_ms,
                    format: *format,
                    document: document.clone(),
                });
                Ok(self.applied())
            }
            Command::ClearShadow { .. } => {
                if self.shadow.take().is_some() {
                    self.shadow_revision += 1;
                }
                Ok(self.applied())
            }
            Command::PromoteShadow {
                author,
                time_unix_ms,
                revision,
            } => {
                let Some(shadow) = self.shadow.clone().filter(|sh| sh.revision == *revision) else {
                    return Err(CommandError::ShadowChanged {
                        expected: *revision,
                        current: self.shadow.as_ref().map(|sh| sh.revision),
                    });
                };
                let note = format!("promoted shadow revision {revision}");
                self.publish(author, *time_unix_ms, shadow.format, shadow.document, None, &note);
                self.shadow = None;
                self.shadow_revision += 1;
                Ok(self.applied())
            }
            Command::StartCapture {
                kind,
                live,
                author,
                time_unix_ms,
                description,
                match_format,
                match_document,
                since_unix_ms,
                until_unix_ms,
                read_until_unix_ms,
            } => {
                let running = self.running_captures().count();
                if running >= MAX_RUNNING_CAPTURES {
                    return Err(CommandError::TooManyCaptures {
                        running,
                        max: MAX_RUNNING_CAPTURES,
                    });
                }
                self.last_capture_id += 1;
                let id = self.last_capture_id;
                self.captures.insert(
                    id,
                    Capture {
                        id,
                        kind: *kind,
                        live: live.clone(),
                        author: author.clone(),
                        time_unix_ms: *time_unix_ms,
                        description: description.clone(),
                        match_format: *match_format,
                        match_document: match_document.clone(),
                        since_unix_ms: *since_unix_ms,
                        until_unix_ms: *until_unix_ms,
                        read_until_unix_ms: *read_until_unix_ms,
                        state: CaptureState::Running,
                        partitions: None,
                        done: BTreeMap::new(),
                        finished_unix_ms: None,
                    },
                );
                self.captures_revision += 1;
                self.trim_captures();
                Ok(Applied {
                    capture_id: Some(id),
                    ..self.applied()
                })
            }
            Command::CancelCapture { id, time_unix_ms, .. } => {
                let Some(c) = self.captures.get_mut(id) else {
                    return Err(CommandError::UnknownCapture { id: *id });
                };
                if c.state == CaptureState::Running {
                    c.state = CaptureState::Cancelled;
                    c.finished_unix_ms = Some(*time_unix_ms);
                    self.captures_revision += 1;
                    self.trim_captures();
                }
                Ok(Applied {
                    capture_id: Some(*id),
                    ..self.applied()
                })
            }
            Command::RecordCapturePartition {
                id,
                partition,
                partitions,
                time_unix_ms,
                result,
            } => {
                let Some(c) = self.captures.get_mut(id) else {
                    return Err(CommandError::UnknownCapture { id: *id });
                };
                let valid = (1..=MAX_CAPTURE_PARTITIONS).contains(partitions) && (0..*partitions).contains(partition);
                if c.state == CaptureState::Running && valid && !c.done.contains_key(partition) {
                    // The first report fixes the partition count; a later different count (the
                    // topic grew) raises it, so the new partitions are captured too.
                    c.partitions = Some(c.partitions.map_or(*partitions, |n| n.max(*partitions)));
                    c.done.insert(*partition, result.clone());
                    if c.done.len() as i32 >= c.partitions.unwrap_or(i32::MAX) {
                        c.state = CaptureState::Completed;
                        c.finished_unix_ms = Some(*time_unix_ms);
                    }
                    self.captures_revision += 1;
                    self.trim_captures();
                }
                Ok(Applied {
                    capture_id: Some(*id),
                    ..self.applied()
                })
            }
        }
    }

    /// The captures workers run.
    pub fn running_captures(&self) -> impl Iterator<Item = &Capture> {
        self.captures.values().filter(|c| c.state == CaptureState::Running)
    }

    /// Forgets the oldest finished captures beyond [`KEPT_FINISHED_CAPTURES`].
    fn trim_captures(&mut self) {
        let finished: Vec<u64> = self
            .captures
            .values()
            .filter(|c| c.state != CaptureState::Running)
            .map(|c| c.id)
            .collect();
        for id in finished
            .iter()
            .take(finished.len().saturating_sub(KEPT_FINISHED_CAPTURES))
        {
            self.captures.remove(id);
        }
    }

    fn applied(&self) -> Applied {
        Applied {
            policy_version: self.policy_version(),
            seeds: self.seeds,
            shadow_revision: self.shadow_revision,
            settings_revision: self.settings_revision,
            captures_revision: self.captures_revision,
            capture_id: None,
        }
    }

    fn publish(
        &mut self,
        author: &str,
        time_unix_ms: u64,
        format: PolicyFormat,
        document: String,
        rollback_of: Option<u64>,
        note: &str,
    ) -> Applied {
        let version = self.policy_version() + 1;
        if let Some(next) = self.seeds.next {
            if next.effective_version <= version {
                self.seeds.current = next;
                self.seeds.next = None;
            }
        }
        self.history.push_back(PolicyVersion {
            version,
            author: author.to_string(),
            time_unix_ms,
            format,
            document,
            rollback_of,
            note: note.to_string(),
            seed_epoch: self.seeds.current.epoch,
        });
        self.trim();
        self.applied()
    }

    fn trim(&mut self) {
        let keep = self.settings.history_limit.max(1);
        while self.history.len() > keep {
            self.history.pop_front();
        }
    }
}

/// A change to the replicated state (the Raft log's application data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Publish a new policy version. The document was validated by the node that accepted it.
    PutPolicy {
        author: String,
        time_unix_ms: u64,
        format: PolicyFormat,
        document: String,
        /// The author's note (absent in entries written before notes existed).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        note: String,
    },
    /// Publish a copy of an earlier version as a new version.
    Rollback {
        author: String,
        time_unix_ms: u64,
        version: u64,
    },
    /// Schedule a new hash seed for the next policy version.
    RotateSeed {
        author: String,
        time_unix_ms: u64,
        seed: u64,
    },
    SetSettings {
        settings: ClusterSettings,
    },
    /// Set (or replace) the shadow policy. The document was validated by the node that accepted it.
    SetShadow {
        author: String,
        time_unix_ms: u64,
        format: PolicyFormat,
        document: String,
    },
    /// Remove the shadow policy.
    ClearShadow {
        author: String,
        time_unix_ms: u64,
    },
    /// Publish the shadow policy of `revision` as a new live version and remove the shadow, in one
    /// entry (refused when the shadow changed since the operator looked at it).
    PromoteShadow {
        author: String,
        time_unix_ms: u64,
        revision: u64,
    },
    /// Start a retroactive capture or a what-if job. The match document was validated by the node
    /// that accepted it.
    StartCapture {
        #[serde(default)]
        kind: JobKind,
        #[serde(default)]
        live: Option<WhatifLive>,
        author: String,
        time_unix_ms: u64,
        description: String,
        match_format: PolicyFormat,
        match_document: String,
        since_unix_ms: i64,
        until_unix_ms: i64,
        read_until_unix_ms: i64,
    },
    /// Stop a running capture (partitions already recorded stay recorded).
    CancelCapture {
        author: String,
        time_unix_ms: u64,
        id: u64,
    },
    /// Record one partition of a capture as finished, from a worker's report (idempotent: the
    /// first record of a partition wins).
    RecordCapturePartition {
        id: u64,
        partition: i32,
        /// The spans topic's partition count the worker saw.
        partitions: i32,
        time_unix_ms: u64,
        result: CapturePartition,
    },
}

/// What a command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The policy version after the command.
    pub policy_version: u64,
    pub seeds: Seeds,
    /// The shadow policy revision after the command.
    #[serde(default)]
    pub shadow_revision: u64,
    /// The cluster settings revision after the command.
    #[serde(default)]
    pub settings_revision: u64,
    /// The captures revision after the command.
    #[serde(default)]
    pub captures_revision: u64,
    /// The capture a capture command started or changed.
    #[serde(default)]
    pub capture_id: Option<u64>,
}

/// Why a command did not change anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum CommandError {
    #[error("policy version {version} is not kept (kept: {kept:?})")]
    UnknownVersion { version: u64, kept: Vec<u64> },
    #[error("capture {id} is not known (finished captures are kept up to the latest 50)")]
    UnknownCapture { id: u64 },
    #[error("the shadow policy is revision {current:?}, not {expected}: look at it again before promoting")]
    ShadowChanged { expected: u64, current: Option<u64> },
    #[error("{running} captures are running; at most {max} run at once (wait for one to finish, or cancel one)")]
    TooManyCaptures { running: usize, max: usize },
}

pub type CommandResult = Result<Applied, CommandError>;

/// The Raft response type: the result of applying an entry (`None` for membership/blank entries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Response(pub Option<CommandResult>);

#[cfg(test)]
mod tests {
    use super::*;

    fn put(doc: &str) -> Command {
        Command::PutPolicy {
            author: "a".into(),
            time_unix_ms: 1,
            format: PolicyFormat::Yaml,
            document: doc.into(),
            note: String::new(),
        }
    }

    #[test]
    fn versions_are_monotonic_and_history_is_bounded() {
        let mut r = Registry {
            settings: ClusterSettings {
                history_limit: 3,
                ..Default::default()
            },
            ..Default::default()
        };
        for i in 1..=5 {
            let a = r.apply(&put(&format!("d{i}"))).unwrap();
            assert_eq!(a.policy_version, i);
        }
        assert_eq!(r.history.iter().map(|p| p.version).collect::<Vec<_>>(), vec![3, 4, 5]);
        let e = r
            .apply(&Command::Rollback {
                author: "b".into(),
                time_unix_ms: 2,
                version: 1,
            })
            .unwrap_err();
        assert_eq!(
            e,
            CommandError::UnknownVersion {
                version: 1,
                kept: vec![3, 4, 5]
            }
        );
        assert_eq!(r.policy_version(), 5);
        let a = r
            .apply(&Command::Rollback {
                author: "b".into(),
                time_unix_ms: 2,
                version: 3,
            })
            .unwrap();
        assert_eq!(a.policy_version, 6);
        let cur = r.current().unwrap();
        assert_eq!(
            (cur.document.as_str(), cur.rollback_of, cur.author.as_str()),
            ("d3", Some(3), "b")
        );
    }

    #[test]
    fn rotated_seed_takes_effect_with_the_next_policy_version() {
        let mut r = Registry::default();
        r.apply(&put("d1")).unwrap();
        let a = r
            .apply(&Command::RotateSeed {
                author: "a".into(),
                time_unix_ms: 1,
                seed: 99,
            })
            .unwrap();
        assert_eq!(
            a.seeds.next,
            Some(SeedEpoch {
                epoch: 1,
                seed: 99,
                effective_version: 2
            })
        );
        assert_eq!(a.seeds.current.epoch, 0);
        assert_eq!(r.current().unwrap().seed_epoch, 0);
        r.apply(&put("d2")).unwrap();
        assert_eq!(
            r.seeds.current,
            SeedEpoch {
                epoch: 1,
                seed: 99,
                effective_version: 2
            }
        );
        assert_eq!(r.seeds.next, None);
        assert_eq!(r.current().unwrap().seed_epoch, 1);
    }

    #[test]
    fn invalid_documents_report_the_path() {
        let e = PolicyFormat::Yaml
            .check("policies:\n  - name: x\n    probabilistic: { percentage: 200 }\n")
            .unwrap_err();
        assert!(e.issues()[0].path.starts_with("policies[0].probabilistic"), "{e}");
        assert!(PolicyFormat::Yaml
            .check("policies:\n  - name: x\n    always: {}\n")
            .is_ok());
    }

    #[test]
    fn shadow_and_settings_change_revisions_not_the_policy_version() {
        let mut r = Registry::default();
        r.apply(&put("d1")).unwrap();
        let set = |doc: &str| Command::SetShadow {
            author: "a".into(),
            time_unix_ms: 1,
            format: PolicyFormat::Yaml,
            document: doc.into(),
        };
        assert_eq!(r.apply(&set("s1")).unwrap().policy_version, 1);
        assert_eq!((r.shadow_revision, r.shadow.as_ref().unwrap().revision), (1, 1));
        r.apply(&set("s2")).unwrap();
        assert_eq!(r.shadow.as_ref().unwrap().document, "s2");
        let clear = Command::ClearShadow {
            author: "a".into(),
            time_unix_ms: 2,
        };
        r.apply(&clear).unwrap();
        assert_eq!((r.shadow.is_none(), r.shadow_revision), (true, 3));
        r.apply(&clear).unwrap();
        assert_eq!(r.shadow_revision, 3, "clearing nothing changes nothing");
        let settings = ClusterSettings {
            history_limit: 5,
            sampler: SamplerSettings {
                send_delay_ms: Some(500),
                ..Default::default()
            },
        };
        r.apply(&Command::SetSettings { settings }).unwrap();
        assert_eq!((r.settings, r.settings_revision, r.policy_version()), (settings, 1, 1));
    }

    #[test]
    fn captures_run_until_every_partition_is_recorded_and_are_bounded() {
        let mut r = Registry::default();
        let start = |r: &mut Registry| {
            r.apply(&Command::StartCapture {
                kind: JobKind::Capture,
                live: None,
                author: "a".into(),
                time_unix_ms: 1,
                description: "checkout".into(),
                match_format: PolicyFormat::Json,
                match_document: "{}".into(),
                since_unix_ms: 0,
                until_unix_ms: 10,
                read_until_unix_ms: 20,
            })
        };
        let id = start(&mut r).unwrap().capture_id.unwrap();
        assert_eq!((id, r.captures_revision), (1, 1));
        let record = |r: &mut Registry, id: u64, partition: i32, partitions: i32| {
            r.apply(&Command::RecordCapturePartition {
                id,
                partition,
                partitions,
                time_unix_ms: 5,
                result: CapturePartition {
                    traces_exported: 3,
                    ..Default::default()
                },
            })
        };
        record(&mut r, id, 0, 2).unwrap();
        // The same partition twice, or one outside the topic, changes nothing.
        record(&mut r, id, 0, 2).unwrap();
        record(&mut r, id, 7, 2).unwrap();
        record(&mut r, id, -1, 2).unwrap();
        let c = &r.captures[&id];
        assert_eq!(
            (c.state, c.done.len(), c.partitions, r.captures_revision),
            (CaptureState::Running, 1, Some(2), 2)
        );
        record(&mut r, id, 1, 2).unwrap();
        let c = &r.captures[&id];
        assert_eq!((c.state, c.finished_unix_ms), (CaptureState::Completed, Some(5)));
        assert_eq!(r.running_captures().count(), 0);
        assert_eq!(
            record(&mut r, 99, 0, 2).unwrap_err(),
            CommandError::UnknownCapture { id: 99 }
        );

        // At most MAX_RUNNING_CAPTURES run; cancelling one makes room; finished ones are trimmed.
        let ids: Vec<u64> = (0..MAX_RUNNING_CAPTURES)
            .map(|_| start(&mut r).unwrap().capture_id.unwrap())
            .collect();
        assert!(matches!(start(&mut r), Err(CommandError::TooManyCaptures { .. })));
        r.apply(&Command::CancelCapture {
            author: "a".into(),
            time_unix_ms: 9,
            id: ids[0],
        })
        .unwrap();
        assert_eq!(r.captures[&ids[0]].state, CaptureState::Cancelled);
        // Recording a partition of a cancelled capture changes nothing.
        record(&mut r, ids[0], 0, 1).unwrap();
        assert!(r.captures[&ids[0]].done.is_empty());
        start(&mut r).unwrap();
        for _ in 0..KEPT_FINISHED_CAPTURES + 5 {
            let running: Vec<u64> = r.running_captures().map(|c| c.id).collect();
            r.apply(&Command::CancelCapture {
                author: "a".into(),
                time_unix_ms: 9,
                id: running[0],
            })
            .unwrap();
            start(&mut r).unwrap();
        }
        let finished = r.captures.values().filter(|c| c.state != CaptureState::Running).count();
        assert_eq!(finished, KEPT_FINISHED_CAPTURES);
        // Ids are never reused, even after the oldest were forgotten.
        assert_eq!(r.last_capture_id, r.captures.keys().copied().max().unwrap());
        assert!(!r.captures.contains_key(&1));
    }

    #[test]
    fn promoting_the_shadow_publishes_it_and_removes_it_in_one_entry() {
        let mut r = Registry::default();
        r.apply(&put("live")).unwrap();
        r.apply(&Command::SetShadow {
            author: "a".into(),
            time_unix_ms: 1,
            format: PolicyFormat::Json,
            document: "{}".into(),
        })
        .unwrap();
        let promote = |revision| Command::PromoteShadow {
            author: "b".into(),
            time_unix_ms: 2,
            revision,
        };
        assert_eq!(
            r.apply(&promote(7)).unwrap_err(),
            CommandError::ShadowChanged {
                expected: 7,
                current: Some(1)
            }
        );
        let a = r.apply(&promote(1)).unwrap();
        assert_eq!((a.policy_version, a.shadow_revision), (2, 2));
        let cur = r.current().unwrap();
        assert_eq!(
            (cur.document.as_str(), cur.format, cur.author.as_str()),
            ("{}", PolicyFormat::Json, "b")
        );
        assert!(r.shadow.is_none());
        assert!(matches!(
            r.apply(&promote(1)),
            Err(CommandError::ShadowChanged { current: None, .. })
        ));
    }

    #[test]
    fn settings_validation_names_the_key() {
        let ok = ClusterSettings::default();
        ok.validate().unwrap();
        let bad = |f: fn(&mut ClusterSettings)| {
            let mut s = ClusterSettings::default();
            f(&mut s);
            s.validate().unwrap_err().0
        };
        assert!(bad(|s| s.history_limit = 0).starts_with("history_limit"));
        assert!(bad(|s| s.sampler.decision_wait_ms = Some(5)).starts_with("sampler.decision_wait_ms"));
        assert!(bad(|s| {
            s.sampler.decision_wait_ms = Some(1000);
            s.sampler.send_delay_ms = Some(2000)
        })
        .starts_with("sampler.send_delay_ms"));
        assert!(bad(|s| {
            s.sampler.soft_limit_bytes = Some(1 << 30);
            s.sampler.hard_limit_bytes = Some(1 << 29)
        })
        .starts_with("sampler.hard_limit_bytes"));
        assert!(bad(|s| s.sampler.stress_probability = Some(1.5)).starts_with("sampler.stress_probability"));
        assert!(bad(|s| s.sampler.stress_probability = Some(f64::NAN)).starts_with("sampler.stress_probability"));
    }
}

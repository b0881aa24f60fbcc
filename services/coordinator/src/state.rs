//! The replicated state: policy document with history, hash seeds, cluster settings; and the
//! commands that change it. `apply` is deterministic: everything random or time-dependent (seeds,
//! timestamps) is chosen by the node that proposes the command and carried inside it.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// How a stored policy document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PolicyFormat {
    /// Native YAML (JSON is YAML too, but `json` gives JSON error positions).
    #[default]
    Yaml,
    /// Native JSON.
    Json,
    /// An OpenTelemetry Collector `tail_sampling` processor configuration.
    OtelTailSampling,
}

impl PolicyFormat {
    /// Parses, validates and compiles `text`; errors carry the path of every problem.
    pub fn check(self, text: &str) -> Result<tailsift_policy::PolicyDocument, tailsift_policy::PolicyError> {
        let doc = match self {
            PolicyFormat::Yaml => tailsift_policy::PolicyDocument::from_yaml(text)?,
            PolicyFormat::Json => tailsift_policy::PolicyDocument::from_json(text)?,
            PolicyFormat::OtelTailSampling => tailsift_policy::PolicyDocument::from_otel_tail_sampling_yaml(text)?,
        };
        doc.validate()?;
        tailsift_policy::PolicyEngine::compile(&doc)?;
        Ok(doc)
    }
}

/// One version of the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The hash seed epoch in force from this version on.
    pub seed_epoch: u64,
}

/// A hash seed and the policy version from which it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SeedEpoch {
    /// 0 for the initial seed, +1 per rotation.
    pub epoch: u64,
    pub seed: u64,
    /// The policy version at which this seed takes effect.
    pub effective_version: u64,
}

/// Current seed and, after a rotation, the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Seeds {
    pub current: SeedEpoch,
    pub next: Option<SeedEpoch>,
}

/// Settings that can change while the cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSettings {
    /// How many policy versions are kept for rollback (including the current one).
    pub history_limit: usize,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings { history_limit: 20 }
    }
}

/// Everything the coordinators replicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Registry {
    /// Newest last; the last element is the current policy.
    pub history: VecDeque<PolicyVersion>,
    pub seeds: Seeds,
    pub settings: ClusterSettings,
}

impl Registry {
    /// The current policy version (0 before the first one).
    pub fn policy_version(&self) -> u64 {
        self.history.back().map_or(0, |p| p.version)
    }

    pub fn current(&self) -> Option<&PolicyVersion> {
        self.history.back()
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
            } => Ok(self.publish(author, *time_unix_ms, *format, document.clone(), None)),
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
                Ok(self.publish(author, *time_unix_ms, old.format, old.document, Some(*version)))
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
                Ok(Applied {
                    policy_version: v,
                    seeds: self.seeds,
                })
            }
            Command::SetSettings { settings } => {
                self.settings = *settings;
                self.trim();
                Ok(Applied {
                    policy_version: self.policy_version(),
                    seeds: self.seeds,
                })
            }
        }
    }

    fn publish(
        &mut self,
        author: &str,
        time_unix_ms: u64,
        format: PolicyFormat,
        document: String,
        rollback_of: Option<u64>,
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
            seed_epoch: self.seeds.current.epoch,
        });
        self.trim();
        Applied {
            policy_version: version,
            seeds: self.seeds,
        }
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
}

/// What a command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The policy version after the command.
    pub policy_version: u64,
    pub seeds: Seeds,
}

/// Why a command did not change anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum CommandError {
    #[error("policy version {version} is not kept (kept: {kept:?})")]
    UnknownVersion { version: u64, kept: Vec<u64> },
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
        }
    }

    #[test]
    fn versions_are_monotonic_and_history_is_bounded() {
        let mut r = Registry {
            settings: ClusterSettings { history_limit: 3 },
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
}

//! Coordinator configuration. Every field has a documented default.

pub use crate::tls::{AdminTls, RaftTls};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tailsift_config::{ConfigError, Validate};

/// `tailsift coordinator` configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// This node's id; must appear in `cluster.members` when bootstrapping. Default `1`.
    pub node_id: u64,
    /// Raft log, vote and snapshots. Default `./tailsift-coordinator`.
    pub data_dir: PathBuf,
    pub raft: RaftConfig,
    pub cluster: ClusterConfig,
    pub admin: AdminConfig,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            node_id: 1,
            data_dir: PathBuf::from("tailsift-coordinator"),
            raft: RaftConfig::default(),
            cluster: ClusterConfig::default(),
            admin: AdminConfig::default(),
        }
    }
}

/// Raft transport and timing.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    /// Raft gRPC listen address. Default `0.0.0.0:9700`.
    pub listen: SocketAddr,
    /// Leader heartbeat interval. Default `250ms`.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Election timeout, chosen at random between min and max. Defaults `1s` and `2s`.
    #[serde(with = "humantime_serde")]
    pub election_timeout_min: Duration,
    #[serde(with = "humantime_serde")]
    pub election_timeout_max: Duration,
    /// Take a snapshot (and purge the log before it) after this many entries. Default `1000`.
    pub snapshot_after_entries: u64,
    /// Shared secret of the coordinators: sent by every node on its Raft RPCs
    /// (`authorization: Bearer <cluster_token>`), and required on incoming Raft RPCs when set
    /// (16 UNAUTHENTICATED otherwise). Every member must have the same value. Default none: Raft
    /// RPCs are not authenticated, so `raft.listen` must then only be reachable on a private
    /// network (the Watch service on the same port always needs an `admin.tokens` token).
    pub cluster_token: Option<String>,
    /// TLS for the gRPC port (Raft and Watch) and for this node's Raft client. Default none
    /// (plaintext HTTP/2).
    pub tls: Option<RaftTls>,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            listen: "0.0.0.0:9700".parse().unwrap(),
            heartbeat_interval: Duration::from_millis(250),
            election_timeout_min: Duration::from_secs(1),
            election_timeout_max: Duration::from_secs(2),
            snapshot_after_entries: 1000,
            cluster_token: None,
            tls: None,
        }
    }
}

/// Initial membership.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The members the cluster is bootstrapped with, the first time a listed node starts with an
    /// empty data directory; a node with Raft state on disk never bootstraps again. Default none
    /// (the node waits to be added by an existing cluster).
    pub members: Vec<Member>,
}

/// One coordinator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub id: u64,
    /// Raft gRPC address other coordinators use, `host:port`.
    pub raft_addr: String,
    /// Admin HTTP address, `host:port`.
    pub admin_addr: String,
}

/// The admin HTTP/JSON API.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Admin API, `/metrics`, `/healthz`, `/readyz`. Default `0.0.0.0:9710`.
    pub listen: SocketAddr,
    /// Bearer tokens. Every `/v1` route needs one; writes need role `admin`. Default none (then
    /// every `/v1` request is refused with 401). The same tokens (any role) authorize the
    /// policy Watch service on `raft.listen`.
    pub tokens: Vec<Token>,
    /// Serve the admin port over TLS (HTTPS) with this certificate. Default none (plain HTTP).
    pub tls: Option<AdminTls>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "0.0.0.0:9710".parse().unwrap(),
            tokens: Vec::new(),
            tls: None,
        }
    }
}

/// A bearer token.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    /// Recorded as the author of the changes made with it.
    pub name: String,
    pub token: String,
    pub role: Role,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .field("role", &self.role)
            .finish()
    }
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    ReadOnly,
    Admin,
}

impl Validate for CoordinatorConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let r = &self.raft;
        if r.heartbeat_interval.is_zero() {
            return Err(ConfigError::invalid("raft.heartbeat_interval", "must be positive"));
        }
        if r.election_timeout_min <= r.heartbeat_interval {
            return Err(ConfigError::invalid(
                "raft.election_timeout_min",
                "must be longer than raft.heartbeat_interval",
            ));
        }
        if r.election_timeout_max <= r.election_timeout_min {
            return Err(ConfigError::invalid(
                "raft.election_timeout_max",
                "must be longer than raft.election_timeout_min",
            ));
        }
        if r.snapshot_after_entries == 0 {
            return Err(ConfigError::invalid(
                "raft.snapshot_after_entries",
                "must be at least 1",
            ));
        }
        if let Some(t) = &r.cluster_token {
            if t.len() < 16 {
                return Err(ConfigError::invalid(
                    "raft.cluster_token",
                    "must be at least 16 characters",
                ));
            }
        }
        if let Some(t) = &r.tls {
            crate::tls::check_server_files("raft.tls", &t.cert_file, &t.key_file)?;
            crate::tls::read_ca("raft.tls.ca_file", &t.ca_file)?;
        }
        if let Some(t) = &self.admin.tls {
            crate::tls::check_server_files("admin.tls", &t.cert_file, &t.key_file)?;
        }
        let mut ids = BTreeSet::new();
        for (i, m) in self.cluster.members.iter().enumerate() {
            if !ids.insert(m.id) {
                return Err(ConfigError::invalid(
                    format!("cluster.members[{i}].id"),
                    format!("duplicate id {}", m.id),
                ));
            }
            for (key, addr) in [("raft_addr", &m.raft_addr), ("admin_addr", &m.admin_addr)] {
                if addr
                    .rsplit_once(':')
                    .and_then(|(h, p)| (!h.is_empty()).then_some(p))
                    .and_then(|p| p.parse::<u16>().ok())
                    .is_none()
                {
                    return Err(ConfigError::invalid(
                        format!("cluster.members[{i}].{key}"),
                        format!("`{addr}` is not host:port"),
                    ));
                }
            }
        }
        let mut names = BTreeSet::new();
        let mut secrets = BTreeSet::new();
        for (i, t) in self.admin.tokens.iter().enumerate() {
            if t.name.is_empty() || !names.insert(t.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("admin.tokens[{i}].name"),
                    "must be non-empty and unique",
                ));
            }
            if t.token.len() < 16 {
                return Err(ConfigError::invalid(
                    format!("admin.tokens[{i}].token"),
                    "must be at least 16 characters",
                ));
            }
            if !secrets.insert(t.token.as_str()) {
                return Err(ConfigError::invalid(
                    format!("admin.tokens[{i}].token"),
                    "the same token is listed twice",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tailsift_config::Sources;

    fn load(yaml: &str) -> Result<CoordinatorConfig, ConfigError> {
        Sources {
            file: Some(("c.yaml".into(), yaml.into())),
            ..Default::default()
        }
        .load()
    }

    #[test]
    fn defaults_are_valid_and_errors_name_the_key() {
        load("").unwrap();
        let e = load("raft:\n  snapshot_after_entriez: 3\n").unwrap_err().to_string();
        assert!(e.contains("snapshot_after_entriez"), "{e}");
        let e = load("admin:\n  tokens:\n    - {name: a, token: short, role: admin}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("admin.tokens[0].token"), "{e}");
        let e = load("admin:\n  tokens:\n    - {name: a, token: 0123456789abcdef, role: root}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("role"), "{e}");
        let e = load("cluster:\n  members:\n    - {id: 1, raft_addr: 'a:1', admin_addr: 'a:2'}\n    - {id: 1, raft_addr: 'b:1', admin_addr: 'b:2'}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cluster.members[1].id"), "{e}");
        let e = load("raft:\n  election_timeout_max: 500ms\n").unwrap_err().to_string();
        assert!(e.contains("raft.election_timeout_max"), "{e}");
    }

    #[test]
    fn tls_and_cluster_token_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        let a = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = write("a.pem", &a.cert.pem());
        let key = write("a.key", &a.signing_key.serialize_pem());
        let other_key = write("b.key", &b.signing_key.serialize_pem());
        let missing = dir.path().join("nothing.pem").display().to_string();

        let c = load(&format!(
            "admin:\n  tls: {{cert_file: {cert}, key_file: {key}}}\nraft:\n  cluster_token: 0123456789abcdef\n  tls: {{cert_file: {cert}, key_file: {key}, ca_file: {cert}}}\n"
        ))
        .unwrap();
        assert!(c.admin.tls.is_some() && c.raft.tls.is_some());
        let d = load("").unwrap();
        assert!(d.admin.tls.is_none() && d.raft.tls.is_none() && d.raft.cluster_token.is_none());

        let err = |yaml: String| load(&yaml).unwrap_err().to_string();
        let e = err(format!("admin:\n  tls: {{cert_file: {missing}, key_file: {key}}}\n"));
        assert!(e.contains("admin.tls.cert_file") && e.contains("cannot read"), "{e}");
        let e = err(format!("admin:\n  tls: {{cert_file: {key}, key_file: {key}}}\n"));
        assert!(e.contains("admin.tls.cert_file"), "{e}");
        let e = err(format!("admin:\n  tls: {{cert_file: {cert}, key_file: {cert}}}\n"));
        assert!(e.contains("admin.tls.key_file"), "{e}");
        let e = err(format!("admin:\n  tls: {{cert_file: {cert}, key_file: {other_key}}}\n"));
        assert!(e.contains("admin.tls.key_file"), "a key of another certificate: {e}");
        let e = err(format!(
            "admin:\n  tls: {{cert_file: {cert}, key_file: {key}, ca_file: {cert}}}\n"
        ));
        assert!(e.contains("ca_file"), "{e}");
        let e = err(format!("raft:\n  tls: {{cert_file: {cert}, key_file: {key}}}\n"));
        assert!(e.contains("ca_file"), "{e}");
        let e = err(format!(
            "raft:\n  tls: {{cert_file: {cert}, key_file: {key}, ca_file: {key}}}\n"
        ));
        assert!(e.contains("raft.tls.ca_file"), "{e}");
        let e = err(format!(
            "raft:\n  tls: {{cert_file: {missing}, key_file: {key}, ca_file: {cert}}}\n"
        ));
        assert!(e.contains("raft.tls.cert_file"), "{e}");
        let e = err("raft:\n  cluster_token: short\n".into());
        assert!(e.contains("raft.cluster_token"), "{e}");
    }
}

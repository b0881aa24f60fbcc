//! The Raft cluster: `GET /v1/cluster/status` (this node), `GET /v1/cluster/nodes` (every
//! member's own state, asked over the Raft port), and runtime membership changes (role `admin`, on
//! the leader):
//!
//! * `POST /v1/cluster/members` `{"id": 4, "raft_addr": "host:port", "admin_addr": "host:port"}`:
//!   adds the node as a learner, waits until it has caught up with the leader's log
//!   (openraft `add_learner`, blocking), then promotes it to voter (`change_membership`, joint
//!   consensus). The new node must be running with an empty data directory and not listed in its
//!   own `cluster.members` (it then waits to be added).
//! * `DELETE /v1/cluster/members/{id}`: removes a voter (or learner) from the membership; the
//!   removed node stops receiving the log and can be shut down.
//!
//! Answers: 200 with the new membership; 400 for a bad body; 404 removing an unknown node; 409
//! adding an id that is already a member, removing the last voter, or when openraft refuses the
//! change (e.g. another change in progress); 421 on a follower, with `leader` and
//! `leader_admin_addr` to send the request to; 503 when the change is not committed within the
//! bound (a minority cannot change membership).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{version_headers, worker_entries, AdminError, AdminState, Answer, Body, ErrorBody, WorkerEntry};
use crate::types::{Node, NodeId};

/// One member in `GET /v1/cluster/status`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberStatus {
    pub id: u64,
    pub raft_addr: String,
    pub admin_addr: String,
    pub voter: bool,
    /// The last log index replicated to it (known on the leader only).
    pub matched_index: Option<u64>,
}

/// `GET /v1/cluster/status`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterStatus {
    pub node: u64,
    /// Leader, Follower, Candidate or Learner.
    pub state: String,
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub commit_index: u64,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub members: Vec<MemberStatus>,
    pub policy_version: u64,
    pub seed_epoch: u64,
    pub shadow_revision: Option<u64>,
    pub settings_revision: u64,
    pub workers: Vec<WorkerEntry>,
}

#[utoipa::path(get, path = "/v1/cluster/status", summary = "Members, leader, term, log and applied indexes",
    responses((status = 200, description = "status", body = ClusterStatus)))]
pub async fn cluster_status(State(s): State<AdminState>) -> Answer<ClusterStatus> {
    let m = s.c.raft.metrics().borrow().clone();
    let v = s.c.view();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let members = membership
        .nodes()
        .map(|(id, n)| MemberStatus {
            id: *id,
            raft_addr: n.raft_addr.clone(),
            admin_addr: n.admin_addr.clone(),
            voter: voters.contains(id),
            matched_index: m
                .replication
                .as_ref()
                .and_then(|r| r.get(id).cloned().flatten())
                .map(|l| l.index),
        })
        .collect();
    let body = ClusterStatus {
        node: m.id,
        state: format!("{:?}", m.state),
        leader: m.current_leader,
        term: m.current_term,
        last_log_index: m.last_log_index,
        commit_index: crate::commit_index(&m),
        applied_index: m.last_applied.map(|l| l.index),
        snapshot_index: m.snapshot.map(|l| l.index),
        members,
        policy_version: v.registry.policy_version(),
        seed_epoch: v.registry.seeds.current.epoch,
        shadow_revision: v.registry.shadow.as_ref().map(|sh| sh.revision),
        settings_revision: v.registry.settings_revision,
        workers: worker_entries(&s),
    };
    Ok((version_headers(&v), Json(body)))
}

/// Channels to the members by Raft address, reused across `GET /v1/cluster/nodes` calls (the
/// console asks every 2 s) instead of a new connection per call; pruned to the current members
/// on every call, so it holds at most one entry per member.
#[derive(Clone, Default)]
pub struct PeerCache(std::sync::Arc<std::sync::Mutex<BTreeMap<String, crate::network::Peer>>>);

impl PeerCache {
    /// The channel to `raft_addr` (lazily connected), after dropping those not in `members`.
    fn get(
        &self,
        raft_addr: &str,
        members: &BTreeSet<String>,
        options: &crate::grpc::ClientOptions,
    ) -> Result<crate::network::Peer, String> {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.retain(|addr, _| members.contains(addr));
        if let Some(p) = g.get(raft_addr) {
            return Ok(p.clone());
        }
        let p = crate::network::Peer::new(raft_addr, options).map_err(|e| e.to_string())?;
        g.insert(raft_addr.to_string(), p.clone());
        Ok(p)
    }
}

/// The longest a member is waited for by `GET /v1/cluster/nodes`.
pub const NODE_STATUS_TIMEOUT: Duration = Duration::from_millis(1500);

/// One member in `GET /v1/cluster/nodes`.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeView {
    pub id: u64,
    pub raft_addr: String,
    pub admin_addr: String,
    pub voter: bool,
    /// The node answering this request.
    pub this_node: bool,
    /// The member's own Raft state; `null` when it did not answer (see `error`).
    pub status: Option<crate::network::NodeStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/cluster/nodes`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterNodes {
    /// The node answering.
    pub node: u64,
    pub nodes: Vec<NodeView>,
}

#[utoipa::path(get, path = "/v1/cluster/nodes",
    summary = "Every member's own Raft state (state, leader, term, log, commit and applied indexes), asked over the Raft port in parallel",
    responses((status = 200, description = "node, nodes: [{id, addresses, status or error}]", body = ClusterNodes)))]
pub async fn cluster_nodes(State(s): State<AdminState>) -> Answer<ClusterNodes> {
    let m = s.c.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let me = s.c.node_id;
    let addrs: BTreeSet<String> = membership.nodes().map(|(_, n)| n.raft_addr.clone()).collect();
    let asks = membership.nodes().map(|(id, n)| {
        let (id, n, voter) = (*id, n.clone(), voters.contains(id));
        let local = (id == me).then(|| crate::network::NodeStatus::of(&m));
        let peer = match local {
            Some(_) => None,
            None => Some(s.peers.get(&n.raft_addr, &addrs, &s.c.peers)),
        };
        async move {
            let answer = match (local, peer) {
                (Some(st), _) => Ok(st),
                (None, Some(Ok(p))) => p.status(NODE_STATUS_TIMEOUT).await.map_err(|e| e.to_string()),
                (None, Some(Err(e))) => Err(e),
                (None, None) => Err("no channel to the member".to_string()),
            };
            NodeView {
                id,
                raft_addr: n.raft_addr,
                admin_addr: n.admin_addr,
                voter,
                this_node: id == me,
                error: answer.as_ref().err().cloned(),
                status: answer.ok(),
            }
        }
    });
    let nodes = futures::future::join_all(asks).await;
    Ok((
        HeaderMap::new(),
        Json(ClusterNodes {
            node: s.c.node_id,
            nodes,
        }),
    ))
}

/// `POST /v1/cluster/members` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    pub id: NodeId,
    /// host:port
    pub raft_addr: String,
    /// host:port
    pub admin_addr: String,
}

/// One member of the membership.
#[derive(Debug, Serialize, ToSchema)]
pub struct Member {
    pub id: u64,
    pub raft_addr: String,
    pub admin_addr: String,
    pub voter: bool,
}

/// The membership after a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct Membership {
    pub members: Vec<Member>,
    pub voters: BTreeSet<u64>,
    /// The log index of the membership change.
    pub log_index: u64,
    /// The node added (`POST`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added: Option<u64>,
    /// The node removed (`DELETE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<u64>,
}

fn is_host_port(addr: &str) -> bool {
    addr.rsplit_once(':')
        .and_then(|(h, p)| (!h.is_empty()).then_some(p))
        .and_then(|p| p.parse::<u16>().ok())
        .is_some()
}

/// The membership: voters and learners with their addresses.
fn membership(s: &AdminState, log_index: u64) -> Membership {
    let m = s.c.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let members = membership
        .nodes()
        .map(|(id, n)| Member {
            id: *id,
            raft_addr: n.raft_addr.clone(),
            admin_addr: n.admin_addr.clone(),
            voter: voters.contains(id),
        })
        .collect();
    Membership {
        members,
        voters,
        log_index,
        added: None,
        removed: None,
    }
}

impl From<RaftError<NodeId, ClientWriteError<NodeId, Node>>> for AdminError {
    fn from(e: RaftError<NodeId, ClientWriteError<NodeId, Node>>) -> Self {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => AdminError::NotLeader {
                leader: f.leader_id,
                leader_admin_addr: f.leader_node.map(|n| n.admin_addr),
            },
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => AdminError::Conflict(e.to_string()),
            RaftError::Fatal(e) => AdminError::Unavailable(format!("raft stopped: {e}")),
        }
    }
}

/// Runs one membership step with a bound; a step still pending at the bound is a 503.
async fn bounded<T>(
    what: &str,
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, RaftError<NodeId, ClientWriteError<NodeId, Node>>>>,
) -> Result<T, AdminError> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(AdminError::Unavailable(format!(
            "{what} was not committed within {limit:?}; a majority of voters may be unreachable"
        ))),
    }
}

#[utoipa::path(post, path = "/v1/cluster/members",
    summary = "Add a node: as learner until caught up, then promoted to voter (leader only)",
    request_body = NewMember,
    responses((status = 200, description = "the new membership", body = Membership),
        (status = 400, description = "invalid body", body = ErrorBody),
        (status = 409, description = "already a voter, or the change was refused", body = ErrorBody),
        (status = 421, description = "not the leader: leader and leader_admin_addr", body = ErrorBody),
        (status = 503, description = "not committed in time (no majority)", body = ErrorBody)))]
pub async fn add_member(State(s): State<AdminState>, Body(b): Body<NewMember>) -> Answer<Membership> {
    for (key, addr) in [("raft_addr", &b.raft_addr), ("admin_addr", &b.admin_addr)] {
        if !is_host_port(addr) {
            return Err(AdminError::BadRequest(format!(
                "request body: {key} `{addr}` is not host:port"
            )));
        }
    }
    let voters: BTreeSet<NodeId> =
        s.c.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
    if voters.contains(&b.id) {
        return Err(AdminError::Conflict(format!("node {} is already a voter", b.id)));
    }
    let node = Node {
        raft_addr: b.raft_addr,
        admin_addr: b.admin_addr,
    };
    // Catching up may take a snapshot transfer: allow more than one write's bound.
    let limit = s.c.write_timeout * 4;
    tracing::info!(node = b.id, %node, "adding learner");
    bounded("adding the learner", limit, s.c.raft.add_learner(b.id, node, true)).await?;
    tracing::info!(node = b.id, "promoting learner to voter");
    let ids: BTreeSet<NodeId> = [b.id].into();
    let r = bounded(
        "promoting the learner",
        limit,
        s.c.raft.change_membership(ChangeMembers::AddVoterIds(ids), true),
    )
    .await?;
    let mut body = membership(&s, r.log_id.index);
    body.added = Some(b.id);
    Ok((HeaderMap::new(), Json(body)))
}

#[utoipa::path(delete, path = "/v1/cluster/members/{id}", summary = "Remove a voter or learner (leader only)",
    params(("id" = u64, Path, description = "the node id")),
    responses((status = 200, description = "the new membership", body = Membership),
        (status = 400, description = "id not an integer", body = ErrorBody),
        (status = 404, description = "not a member", body = ErrorBody),
        (status = 409, description = "last voter, or the change was refused", body = ErrorBody),
        (status = 421, description = "not the leader", body = ErrorBody),
        (status = 503, description = "not committed in time (no majority)", body = ErrorBody)))]
pub async fn remove_member(State(s): State<AdminState>, Path(id): Path<String>) -> Answer<Membership> {
    let id: NodeId = id
        .parse()
        .map_err(|_| AdminError::BadRequest(format!("node id `{id}` is not a non-negative integer")))?;
    let (voters, nodes): (BTreeSet<NodeId>, BTreeMap<NodeId, Node>) = {
        let m = s.c.raft.metrics().borrow().clone();
        let ms = m.membership_config.membership();
        (
            ms.voter_ids().collect(),
            ms.nodes().map(|(i, n)| (*i, n.clone())).collect(),
        )
    };
    if !nodes.contains_key(&id) {
        return Err(AdminError::NotMember {
            id,
            members: nodes.keys().copied().collect(),
        });
    }
    let ids: BTreeSet<NodeId> = [id].into();
    let change = if voters.contains(&id) {
        if voters.len() == 1 {
            return Err(AdminError::Conflict(format!("node {id} is the last voter")));
        }
        ChangeMembers::RemoveVoters(ids)
    } else {
        ChangeMembers::RemoveNodes(ids)
    };
    tracing::info!(node = id, "removing member");
    // retain = false: a removed voter is removed from the node list too (no longer replicated to).
    let r = bounded(
        "removing the member",
        s.c.write_timeout * 2,
        s.c.raft.change_membership(change, false),
    )
    .await?;
    let mut body = membership(&s, r.log_id.index);
    body.removed = Some(id);
    Ok((HeaderMap::new(), Json(body)))
}

#[cfg(test)]
mod tests {
    use super::is_host_port;

    #[test]
    fn addresses_must_be_host_port() {
        assert!(is_host_port("127.0.0.1:9700"));
        assert!(is_host_port("coord-4.internal:1"));
        assert!(!is_host_port(":9700"));
        assert!(!is_host_port("host"));
        assert!(!is_host_port("host:99999"));
    }
}

//! Runtime membership changes through the admin API (role `admin`, on the leader):
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

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::admin::{authorize, done, error, parse_body, reply, AdminState, Reply};
use crate::config::Role;
use crate::types::{Node, NodeId};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    id: NodeId,
    raft_addr: String,
    admin_addr: String,
}

fn is_host_port(addr: &str) -> bool {
    addr.rsplit_once(':')
        .and_then(|(h, p)| (!h.is_empty()).then_some(p))
        .and_then(|p| p.parse::<u16>().ok())
        .is_some()
}

/// The membership as JSON: voters and learners with their addresses.
fn members_json(s: &AdminState) -> Value {
    let m = s.c.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let nodes: Vec<Value> = membership
        .nodes()
        .map(|(id, n)| json!({ "id": id, "raft_addr": n.raft_addr, "admin_addr": n.admin_addr, "voter": voters.contains(id) }))
        .collect();
    json!({ "members": nodes, "voters": voters, "log_index": m.membership_config.log_id().map(|l| l.index) })
}

fn raft_error(e: RaftError<NodeId, ClientWriteError<NodeId, Node>>) -> Reply {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => reply(
            StatusCode::MISDIRECTED_REQUEST,
            json!({
                "error": "membership changes are made on the leader",
                "leader": f.leader_id,
                "leader_admin_addr": f.leader_node.map(|n| n.admin_addr),
            }),
        ),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => error(StatusCode::CONFLICT, e.to_string()),
        RaftError::Fatal(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("raft stopped: {e}")),
    }
}

/// Runs one membership step with a bound; a step still pending at the bound is a 503.
async fn bounded<T>(
    what: &str,
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, RaftError<NodeId, ClientWriteError<NodeId, Node>>>>,
) -> Result<T, Reply> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r.map_err(raft_error),
        Err(_) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what} was not committed within {limit:?}; a majority of voters may be unreachable"),
        )),
    }
}

pub(crate) async fn add_member(State(s): State<AdminState>, headers: HeaderMap, body: Bytes) -> Response {
    done(
        "/v1/cluster/members",
        async {
            authorize(&s, &headers, Role::Admin)?;
            let b: AddBody = parse_body(&body)?;
            for (key, addr) in [("raft_addr", &b.raft_addr), ("admin_addr", &b.admin_addr)] {
                if !is_host_port(addr) {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        format!("request body: {key} `{addr}` is not host:port"),
                    ));
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
                return Err(error(StatusCode::CONFLICT, format!("node {} is already a voter", b.id)));
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
            let mut body = members_json(&s);
            body["added"] = json!(b.id);
            body["log_index"] = json!(r.log_id.index);
            Ok(reply(StatusCode::OK, body))
        }
        .await,
    )
}

pub(crate) async fn remove_member(State(s): State<AdminState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    done("/v1/cluster/members/{id}", async {
        authorize(&s, &headers, Role::Admin)?;
        let id: NodeId = id
            .parse()
            .map_err(|_| error(StatusCode::BAD_REQUEST, format!("node id `{id}` is not a non-negative integer")))?;
        let (voters, nodes): (BTreeSet<NodeId>, BTreeMap<NodeId, Node>) = {
            let m = s.c.raft.metrics().borrow().clone();
            let ms = m.membership_config.membership();
            (ms.voter_ids().collect(), ms.nodes().map(|(i, n)| (*i, n.clone())).collect())
        };
        if !nodes.contains_key(&id) {
            return Err(reply(StatusCode::NOT_FOUND, json!({ "error": format!("node {id} is not a member"), "members": nodes.keys().collect::<Vec<_>>() })));
        }
        let ids: BTreeSet<NodeId> = [id].into();
        let change = if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(error(StatusCode::CONFLICT, format!("node {id} is the last voter")));
            }
            ChangeMembers::RemoveVoters(ids)
        } else {
            ChangeMembers::RemoveNodes(ids)
        };
        tracing::info!(node = id, "removing member");
        // retain = false: a removed voter is removed from the node list too (no longer replicated to).
        let r = bounded("removing the member", s.c.write_timeout * 2, s.c.raft.change_membership(change, false)).await?;
        let mut body = members_json(&s);
        body["removed"] = json!(id);
        body["log_index"] = json!(r.log_id.index);
        Ok(reply(StatusCode::OK, body))
    }
    .await)
}

/// The commit index as far as this node can tell. openraft 0.9 does not report it, so on the
/// leader it is computed from the replication progress (the highest index matched by a majority
/// of every configuration of a joint membership, the leader counting its own log); on other nodes
/// it is the applied index, which trails the commit index by the entries still being applied.
pub fn commit_index(m: &openraft::RaftMetrics<NodeId, Node>) -> u64 {
    let applied = m.last_applied.map_or(0, |l| l.index);
    let Some(repl) = m.replication.as_ref() else {
        return applied;
    };
    let matched = |id: &NodeId| -> u64 {
        match repl.get(id) {
            Some(l) => l.map_or(0, |l| l.index),
            None if *id == m.id => m.last_log_index.unwrap_or(0),
            None => 0,
        }
    };
    let mut commit = u64::MAX;
    for config in m.membership_config.membership().get_joint_config() {
        if config.is_empty() {
            continue;
        }
        let mut idx: Vec<u64> = config.iter().map(matched).collect();
        idx.sort_unstable_by(|a, b| b.cmp(a));
        commit = commit.min(idx[idx.len() / 2]);
    }
    if commit == u64::MAX {
        applied
    } else {
        commit.max(applied)
    }
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

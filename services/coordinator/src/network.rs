//! Raft RPCs over gRPC: service `tailsift.coordinator.v1.Raft`, defined in
//! `proto/tailsift/coordinator/v1/raft.proto` and generated into `tailsift-proto`. Each method
//! carries an openraft request or response as JSON in a `bytes` field, so the wire format follows
//! openraft's own serde types exactly.
//! `Forward` lets a follower hand a client write to the leader; `Status` tells a node's own Raft
//! state ([`NodeStatus`]) to any member that asks (the admin API's cluster view).
//!
//! Peers are dialed with [`ClientOptions`]: `https://` and the `raft.tls.ca_file` CA when
//! `raft.tls` is set, and `raft.cluster_token` on every call when set (checked by
//! [`crate::grpc::Guarded`] on the receiving side).

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tailsift_proto::v1::raft_client::RaftClient;
use tailsift_proto::v1::raft_server::RaftServer;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::grpc::ClientOptions;
use crate::state::{Command, CommandResult};
use crate::types::{Node, NodeId, Raft, TypeConfig};

/// The single message type of the Raft service: a JSON-encoded openraft value.
pub use tailsift_proto::v1::RaftMessage;
pub use tailsift_proto::RAFT_SERVICE as SERVICE;

/// The methods of the service.
#[derive(Debug, Clone, Copy)]
enum Method {
    Append,
    Vote,
    Snapshot,
    Forward,
    Status,
}

/// One node's Raft state, as it sees it (the answer to `Status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeStatus {
    pub id: NodeId,
    /// Leader, Follower, Candidate or Learner.
    pub state: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub commit_index: u64,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
}

impl NodeStatus {
    pub fn of(m: &openraft::RaftMetrics<NodeId, Node>) -> Self {
        NodeStatus {
            id: m.id,
            state: format!("{:?}", m.state),
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            commit_index: crate::commit_index(m),
            applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
        }
    }
}

/// The leader's answer to a forwarded write.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ForwardReply {
    Applied { log_index: u64, result: CommandResult },
    NotLeader { leader: Option<(NodeId, Node)> },
    Failed { message: String },
}

fn encode<T: Serialize>(v: &T) -> Result<RaftMessage, Status> {
    serde_json::to_vec(v)
        .map(|data| RaftMessage { data })
        .map_err(|e| Status::internal(format!("encoding: {e}")))
}

fn decode<T: DeserializeOwned>(m: &RaftMessage) -> Result<T, Status> {
    serde_json::from_slice(&m.data).map_err(|e| Status::invalid_argument(format!("decoding: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Server

/// The server side of the service (the generated trait). Cheap to clone.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft,
}

impl RaftService {
    pub fn new(raft: Raft) -> Self {
        RaftService { raft }
    }

    /// The gRPC server as mounted on `raft.listen`: messages of up to 64 MiB both ways.
    pub fn server(self) -> RaftServer<RaftService> {
        RaftServer::new(self)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }
}

#[tonic::async_trait]
impl tailsift_proto::v1::raft_server::Raft for RaftService {
    async fn append_entries(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let m = request.into_inner();
        let r = self
            .raft
            .append_entries(decode::<AppendEntriesRequest<TypeConfig>>(&m)?)
            .await;
        Ok(Response::new(encode(&r)?))
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let m = request.into_inner();
        let r = self.raft.vote(decode::<VoteRequest<NodeId>>(&m)?).await;
        Ok(Response::new(encode(&r)?))
    }

    async fn install_snapshot(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let m = request.into_inner();
        let r = self
            .raft
            .install_snapshot(decode::<InstallSnapshotRequest<TypeConfig>>(&m)?)
            .await;
        Ok(Response::new(encode(&r)?))
    }

    async fn forward(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let m = request.into_inner();
        let r = forwarded_write(&self.raft, decode::<Command>(&m)?).await;
        Ok(Response::new(encode(&r)?))
    }

    async fn status(&self, _request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let s = NodeStatus::of(&self.raft.metrics().borrow());
        Ok(Response::new(encode(&s)?))
    }
}

/// Applies a write forwarded by a follower; never forwards again (no loops).
async fn forwarded_write(raft: &Raft, cmd: Command) -> ForwardReply {
    match raft.client_write(cmd).await {
        Ok(r) => match r.data.0 {
            Some(result) => ForwardReply::Applied {
                log_index: r.log_id.index,
                result,
            },
            None => ForwardReply::Failed {
                message: "the entry produced no result".into(),
            },
        },
        Err(RaftError::APIError(openraft::error::ClientWriteError::ForwardToLeader(f))) => ForwardReply::NotLeader {
            leader: f.leader_id.zip(f.leader_node),
        },
        Err(e) => ForwardReply::Failed { message: e.to_string() },
    }
}

// ---------------------------------------------------------------------------------------------
// Client

/// A lazily connected channel to one coordinator.
#[derive(Clone)]
pub struct Peer {
    channel: Channel,
    options: ClientOptions,
}

impl Peer {
    /// `addr` is a member's `raft_addr` (`host:port`).
    pub fn new(addr: &str, options: &ClientOptions) -> Result<Self, tonic::transport::Error> {
        let channel = options
            .endpoint(&options.url(addr))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Peer {
            channel,
            options: options.clone(),
        })
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: Method,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RpcFailure> {
        let msg = self.options.request(encode(req).map_err(RpcFailure::Local)?);
        let mut client = RaftClient::new(self.channel.clone());
        let fut = async {
            let resp = match method {
                Method::Append => client.append_entries(msg).await,
                Method::Vote => client.vote(msg).await,
                Method::Snapshot => client.install_snapshot(msg).await,
                Method::Forward => client.forward(msg).await,
                Method::Status => client.status(msg).await,
            }
            .map_err(|s| {
                if matches!(
                    s.code(),
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
                ) {
                    RpcFailure::Unreachable(s.to_string())
                } else {
                    RpcFailure::Local(s)
                }
            })?;
            decode::<Resp>(resp.get_ref()).map_err(RpcFailure::Local)
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| RpcFailure::Timeout(timeout))?
    }

    /// Sends a write to the leader.
    pub async fn forward(&self, cmd: &Command, timeout: Duration) -> Result<ForwardReply, RpcFailure> {
        self.call(Method::Forward, cmd, timeout).await
    }

    /// Asks the peer for its own Raft state.
    pub async fn status(&self, timeout: Duration) -> Result<NodeStatus, RpcFailure> {
        self.call(Method::Status, &(), timeout).await
    }
}

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcFailure {
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The peer answered nothing in time: it may be alive but slow (busy, or a long fsync).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Local(Status),
}

/// The openraft error for a failed call of `action` from `id` to `target`.
///
/// A call that timed out is a [`Timeout`], not [`Unreachable`]: openraft pauses replication to
/// an unreachable peer for [`RaftNetwork::backoff`] (500 ms), while after a timeout it sends
/// again at once. A follower that answers an append a little later than the heartbeat interval
/// (a busy node) is not down, and pausing its replication for half a second delayed the commit
/// of the next write (or its delivery to the workers that follower serves) by as much.
fn rpc_error<E: std::error::Error>(
    f: RpcFailure,
    action: RPCTypes,
    id: NodeId,
    target: NodeId,
) -> RPCError<NodeId, Node, E> {
    match f {
        RpcFailure::Unreachable(m) => RPCError::Unreachable(Unreachable::new(&std::io::Error::other(m))),
        RpcFailure::Timeout(timeout) => RPCError::Timeout(Timeout {
            action,
            id,
            target,
            timeout,
        }),
        RpcFailure::Local(s) => RPCError::Network(NetworkError::new(&s)),
    }
}

/// Creates [`Connection`]s for openraft.
#[derive(Clone, Default)]
pub struct Network {
    /// This node's id (in the errors openraft is given).
    id: NodeId,
    options: Arc<ClientOptions>,
}

impl Network {
    /// The network of node `id`.
    pub fn new(id: NodeId, options: ClientOptions) -> Self {
        Network {
            id,
            options: Arc::new(options),
        }
    }
}

/// Openraft's client to one peer.
pub struct Connection {
    id: NodeId,
    target: NodeId,
    peer: Result<Peer, String>,
}

impl Connection {
    async fn send<Req, Resp, E>(
        &self,
        method: Method,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let action = match method {
            Method::Vote => RPCTypes::Vote,
            Method::Snapshot => RPCTypes::InstallSnapshot,
            _ => RPCTypes::AppendEntries,
        };
        let peer = self
            .peer
            .as_ref()
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e.clone()))))?;
        let r = peer.call(method, req, option.hard_ttl()).await;
        let r: Result<Resp, RaftError<NodeId, E>> = r.map_err(|f| rpc_error(f, action, self.id, self.target))?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Connection {
        Connection {
            id: self.id,
            target,
            peer: Peer::new(&node.raft_addr, &self.options).map_err(|e| format!("{}: {e}", node.raft_addr)),
        }
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.send(Method::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>> {
        self.send(Method::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.send(Method::Vote, &rpc, &option).await
    }
}

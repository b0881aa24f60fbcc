//! Raft RPCs over gRPC: service `tailsift.coordinator.v1.Raft` (see `proto/coordinator.proto`),
//! written by hand with prost messages. Each method carries an openraft request or response as
//! JSON in a `bytes` field, so the wire format follows openraft's own serde types exactly.
//! `Forward` lets a follower hand a client write to the leader.
//!
//! Peers are dialed with [`ClientOptions`]: `https://` and the `raft.tls.ca_file` CA when
//! `raft.tls` is set, and `raft.cluster_token` on every call when set (checked by
//! [`crate::grpc::Guarded`] on the receiving side).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use crate::grpc::ClientOptions;
use crate::state::{Command, CommandResult};
use crate::types::{Node, NodeId, Raft, TypeConfig};

/// The single message type of the Raft service: a JSON-encoded openraft value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RaftMessage {
    #[prost(bytes = "vec", tag = "1")]
    pub data: Vec<u8>,
}

pub const SERVICE: &str = "tailsift.coordinator.v1.Raft";
const APPEND: &str = "/tailsift.coordinator.v1.Raft/AppendEntries";
const VOTE: &str = "/tailsift.coordinator.v1.Raft/Vote";
const SNAPSHOT: &str = "/tailsift.coordinator.v1.Raft/InstallSnapshot";
const FORWARD: &str = "/tailsift.coordinator.v1.Raft/Forward";

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

/// The tonic service. Cheap to clone.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft,
}

impl RaftService {
    pub fn new(raft: Raft) -> Self {
        RaftService { raft }
    }
}

impl tonic::server::NamedService for RaftService {
    const NAME: &'static str = SERVICE;
}

struct Method {
    raft: Raft,
    path: &'static str,
}

impl tonic::server::UnaryService<RaftMessage> for Method {
    type Response = RaftMessage;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RaftMessage>, Status>> + Send>>;

    fn call(&mut self, request: Request<RaftMessage>) -> Self::Future {
        let raft = self.raft.clone();
        let path = self.path;
        Box::pin(async move {
            let m = request.into_inner();
            let reply = match path {
                APPEND => encode(
                    &raft
                        .append_entries(decode::<AppendEntriesRequest<TypeConfig>>(&m)?)
                        .await,
                )?,
                VOTE => encode(&raft.vote(decode::<VoteRequest<NodeId>>(&m)?).await)?,
                SNAPSHOT => encode(
                    &raft
                        .install_snapshot(decode::<InstallSnapshotRequest<TypeConfig>>(&m)?)
                        .await,
                )?,
                _ => encode(&forwarded_write(&raft, decode::<Command>(&m)?).await)?,
            };
            Ok(Response::new(reply))
        })
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

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower_service::Service<http::Request<tonic::body::Body>> for RaftService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let path = match req.uri().path() {
            APPEND => APPEND,
            VOTE => VOTE,
            SNAPSHOT => SNAPSHOT,
            FORWARD => FORWARD,
            other => {
                let msg = format!("unknown method {other}");
                return Box::pin(async move { Ok(Status::unimplemented(msg).into_http()) });
            }
        };
        let raft = self.raft.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<RaftMessage, RaftMessage>::default())
                .apply_max_message_size_config(Some(64 << 20), Some(64 << 20));
            Ok(grpc.unary(Method { raft, path }, req).await)
        })
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
        path: &'static str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RpcFailure> {
        let msg = encode(req).map_err(RpcFailure::Local)?;
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        let fut = async {
            grpc.ready().await.map_err(|e| RpcFailure::Unreachable(e.to_string()))?;
            let codec = ProstCodec::<RaftMessage, RaftMessage>::default();
            let resp = grpc
                .unary(self.options.request(msg), PathAndQuery::from_static(path), codec)
                .await
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
            .map_err(|_| RpcFailure::Unreachable(format!("no answer within {timeout:?}")))?
    }

    /// Sends a write to the leader.
    pub async fn forward(&self, cmd: &Command, timeout: Duration) -> Result<ForwardReply, String> {
        self.call(FORWARD, cmd, timeout).await.map_err(|e| e.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
enum RpcFailure {
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Local(Status),
}

fn rpc_error<E: std::error::Error>(f: RpcFailure) -> RPCError<NodeId, Node, E> {
    match f {
        RpcFailure::Unreachable(m) => RPCError::Unreachable(Unreachable::new(&std::io::Error::other(m))),
        RpcFailure::Local(s) => RPCError::Network(NetworkError::new(&s)),
    }
}

/// Creates [`Connection`]s for openraft.
#[derive(Clone, Default)]
pub struct Network {
    options: Arc<ClientOptions>,
}

impl Network {
    pub fn new(options: ClientOptions) -> Self {
        Network {
            options: Arc::new(options),
        }
    }
}

/// Openraft's client to one peer.
pub struct Connection {
    target: NodeId,
    peer: Result<Peer, String>,
}

impl Connection {
    async fn send<Req, Resp, E>(
        &self,
        path: &'static str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let peer = self
            .peer
            .as_ref()
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e.clone()))))?;
        let r: Result<Resp, RaftError<NodeId, E>> = peer.call(path, req, option.hard_ttl()).await.map_err(rpc_error)?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Connection {
        Connection {
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
        self.send(APPEND, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>> {
        self.send(SNAPSHOT, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.send(VOTE, &rpc, &option).await
    }
}

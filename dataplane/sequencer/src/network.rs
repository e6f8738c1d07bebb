//! Raft RPC between the replicas of a shard, over HTTP with MessagePack bodies.
//!
//! Each RPC is a `POST /raft/{append,vote,snapshot}` to the peer's HTTP server; the body is
//! the request and the response body the peer's `Result`, both MessagePack. Connections are
//! kept alive and shared by all peers of the process.

use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::server::Isolation;
use crate::types::{NodeId, TypeConfig};

/// The MIME type of RPC bodies.
pub const RPC_CONTENT_TYPE: &str = "application/msgpack";

/// Creates a client per peer, all sharing one connection pool.
#[derive(Clone, Debug)]
pub struct HttpNetwork {
    client: reqwest::Client,
    isolation: Isolation,
}

impl HttpNetwork {
    /// A network whose connections give up after `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        HttpNetwork { client, isolation: Isolation::default() }
    }

    /// The same network, cut off from every peer while `isolation` is set.
    pub fn with_isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        Peer {
            client: self.client.clone(),
            target,
            addr: node.addr.clone(),
            isolation: self.isolation.clone(),
        }
    }
}

/// The connection to one peer replica.
#[derive(Debug)]
pub struct Peer {
    client: reqwest::Client,
    target: NodeId,
    addr: String,
    isolation: Isolation,
}

/// Why a call to a peer failed before its answer was read.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("failed to reach replica {0}")]
    Unreachable(String, #[source] reqwest::Error),
    #[error("failed to exchange an RPC with replica {0}")]
    Network(String, #[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Peer {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Result<Resp, E>, CallError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: DeserializeOwned,
    {
        if self.isolation.is_isolated() {
            let refused = std::io::Error::other("isolated by fault injection");
            return Err(CallError::Network(self.addr.clone(), Box::new(refused)));
        }
        let body = rmp_serde::to_vec_named(request)
            .map_err(|e| CallError::Network(self.addr.clone(), Box::new(e)))?;
        let response = self
            .client
            .post(format!("http://{}/raft/{path}", self.addr))
            .header(reqwest::header::CONTENT_TYPE, RPC_CONTENT_TYPE)
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    CallError::Unreachable(self.addr.clone(), e)
                } else {
                    CallError::Network(self.addr.clone(), Box::new(e))
                }
            })?;
        if !response.status().is_success() {
            let status = response.status();
            return Err(CallError::Network(
                self.addr.clone(),
                format!("peer answered HTTP {status}").into(),
            ));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CallError::Network(self.addr.clone(), Box::new(e)))?;
        rmp_serde::from_slice(&bytes)
            .map_err(|e| CallError::Network(self.addr.clone(), Box::new(e)))
    }

    fn rpc_error<E: std::error::Error>(
        &self,
        result: Result<Result<impl Sized, E>, CallError>,
    ) -> Option<RPCError<NodeId, BasicNode, E>> {
        match result {
            Ok(Ok(_)) => None,
            Ok(Err(remote)) => Some(RPCError::RemoteError(RemoteError::new(self.target, remote))),
            Err(error @ CallError::Unreachable(..)) => {
                Some(RPCError::Unreachable(Unreachable::new(&error)))
            }
            Err(error) => Some(RPCError::Network(NetworkError::new(&error))),
        }
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let result = self.call("append", &rpc, option.hard_ttl()).await;
        finish(self, result)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let result = self.call("snapshot", &rpc, option.hard_ttl()).await;
        finish(self, result)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let result = self.call("vote", &rpc, option.hard_ttl()).await;
        finish(self, result)
    }
}

#[allow(clippy::result_large_err, reason = "openraft's RaftNetwork trait fixes this error type")]
fn finish<Resp, E: std::error::Error>(
    peer: &Peer,
    result: Result<Result<Resp, E>, CallError>,
) -> Result<Resp, RPCError<NodeId, BasicNode, E>> {
    match result {
        Ok(Ok(response)) => Ok(response),
        other => Err(peer.rpc_error(other).unwrap_or_else(|| {
            RPCError::Network(NetworkError::new(&std::io::Error::other("unexpected RPC result")))
        })),
    }
}

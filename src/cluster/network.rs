//! openraft's network: Raft RPCs (AppendEntries, Vote, InstallSnapshot) as
//! JSON POSTs to the peer's cluster listener (`server`), with openraft's
//! per-RPC deadline and an exponential backoff for unreachable peers.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::rpc::{RpcClient, RpcError};
use super::TypeConfig;

/// Path of AppendEntries on the cluster listener.
pub const APPEND_PATH: &str = "/raft/append";
/// Path of Vote on the cluster listener.
pub const VOTE_PATH: &str = "/raft/vote";
/// Path of InstallSnapshot (one chunk per call) on the cluster listener.
pub const SNAPSHOT_PATH: &str = "/raft/snapshot";

/// First wait after a peer was found unreachable; doubled up to `BACKOFF_MAX`.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// openraft's deadline for an RPC is about one heartbeat; a busy peer (a
/// follower catching up on a loaded machine) gets at least this long.
const MIN_RPC_TIMEOUT: Duration = Duration::from_millis(400);
const BACKOFF_MAX: Duration = Duration::from_millis(1_000);

/// Creates one `PeerClient` per peer the Raft core talks to.
#[derive(Debug, Clone, Default)]
pub struct HttpNetworkFactory {
    /// Signs and sends the RPCs (shared with the rest of the node).
    rpc: RpcClient,
}

impl HttpNetworkFactory {
    pub fn new(rpc: RpcClient) -> Self {
        HttpNetworkFactory { rpc }
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
            rpc: self.rpc.clone(),
        }
    }
}

/// Sends Raft RPCs to one peer.
#[derive(Debug, Clone)]
pub struct PeerClient {
    /// The peer's node id (for openraft's remote errors).
    target: u64,
    /// The peer's cluster listener, `host:port` (from the membership).
    addr: String,
    rpc: RpcClient,
}

type RpcResult<T, E> = Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

impl PeerClient {
    async fn send<Req, Resp, E>(
        &self,
        path: &str,
        request: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let timeout = option.hard_ttl().max(MIN_RPC_TIMEOUT);
        let answer: Result<Resp, RaftError<u64, E>> = self
            .rpc
            .post_json(self.target, &self.addr, path, request, timeout)
            .await
            .map_err(|e| match e {
                // Down, hanging or failing its TLS handshake: openraft backs
                // off before the next try.
                RpcError::Unreachable { .. } | RpcError::Timeout { .. } | RpcError::Tls { .. } => {
                    RPCError::Unreachable(Unreachable::new(&e))
                }
                other => RPCError::Network(NetworkError::new(&other)),
            })?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>, openraft::error::Infallible> {
        self.send(APPEND_PATH, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        self.send(SNAPSHOT_PATH, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>, openraft::error::Infallible> {
        self.send(VOTE_PATH, &rpc, &option).await
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(backoff_delays())
    }
}

/// 100 ms, 200 ms, 400 ms, 800 ms, then 1 s forever.
fn backoff_delays() -> impl Iterator<Item = Duration> + Send + 'static {
    (0u32..).map(|attempt| {
        BACKOFF_START
            .saturating_mul(1u32 << attempt.min(10))
            .min(BACKOFF_MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_one_second() {
        let delays: Vec<u128> = backoff_delays().take(6).map(|d| d.as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
    }
}

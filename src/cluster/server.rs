//! The cluster listener (`--cluster-addr`): Raft RPCs from peers, this
//! node's Raft status (probed during start-up) and metadata proposals
//! forwarded to the leader. Only peers should reach it; it serves no
//! client traffic. `serve` puts the whole router behind `auth` (the shared
//! secret) and `tls` (mutual TLS) when they are configured, so every route,
//! present and future, is authenticated.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::auth::{authenticate, PeerAuth, RequestGuard};
use super::image::{Command, CommandResponse};
use super::network::{APPEND_PATH, SNAPSHOT_PATH, VOTE_PATH};
use super::quorum::QuorumState;
use super::rpc::STATUS_PATH;
use super::{ClusterHandle, ProposeError, RaftStatus, TypeConfig};

/// Path where the leader takes a `Command` forwarded by another node.
pub const PROPOSE_PATH: &str = "/cluster/propose";

/// Path where the leader adds a voter (`AddVoter` JSON); see the README.
pub const ADD_VOTER_PATH: &str = "/cluster/add-voter";

/// A request to add a node to the voters.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AddVoter {
    /// The new node's id (its `--node-id`).
    pub node_id: u64,
    /// The new node's cluster listener, `host:port`.
    pub cluster_addr: String,
}

/// Largest request body (an AppendEntries batch or a snapshot chunk).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The cluster listener's routes.
pub fn router(handle: ClusterHandle) -> Router {
    Router::new()
        .route(APPEND_PATH, post(append))
        .route(VOTE_PATH, post(vote))
        .route(SNAPSHOT_PATH, post(snapshot))
        .route(STATUS_PATH, get(status))
        .route(PROPOSE_PATH, post(propose))
        .route(ADD_VOTER_PATH, post(add_voter))
        .route(super::quorum::QUORUM_PATH, post(quorum))
        .route(super::controller::HEARTBEAT_PATH, post(heartbeat))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(handle)
}

/// Serve the cluster listener until `shutdown` turns true, with the
/// authentication `auth` asks for.
pub async fn serve(
    listener: TcpListener,
    handle: ClusterHandle,
    auth: PeerAuth,
    mut shutdown: watch::Receiver<bool>,
) {
    let node_id = handle.node_id();
    let mut app = router(handle);
    if let Some(secret) = auth.secret {
        let guard = Arc::new(RequestGuard::new(secret, node_id));
        app = app.layer(axum::middleware::from_fn_with_state(guard, authenticate));
    }
    if let Some(tls) = auth.tls {
        return super::tls::serve(listener, tls, app, shutdown).await;
    }
    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = shutdown.wait_for(|s| *s).await;
    });
    if let Err(e) = serve.await {
        tracing::error!(error = %e, "cluster listener failed");
    }
}

async fn append(
    State(handle): State<ClusterHandle>,
    Json(request): Json<AppendEntriesRequest<TypeConfig>>,
) -> Json<Result<AppendEntriesResponse<u64>, RaftError<u64>>> {
    Json(handle.raft().append_entries(request).await)
}

async fn vote(
    State(handle): State<ClusterHandle>,
    Json(request): Json<VoteRequest<u64>>,
) -> Json<Result<VoteResponse<u64>, RaftError<u64>>> {
    Json(handle.raft().vote(request).await)
}

async fn snapshot(
    State(handle): State<ClusterHandle>,
    Json(request): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Json<Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>> {
    Json(handle.raft().install_snapshot(request).await)
}

async fn status(State(handle): State<ClusterHandle>) -> Json<RaftStatus> {
    Json(handle.status())
}

async fn propose(
    State(handle): State<ClusterHandle>,
    Json(command): Json<Command>,
) -> Json<Result<CommandResponse, ProposeError>> {
    Json(handle.propose_local(command).await)
}

async fn quorum(State(handle): State<ClusterHandle>) -> Json<Result<QuorumState, ProposeError>> {
    Json(handle.local_quorum())
}

async fn add_voter(
    State(handle): State<ClusterHandle>,
    Json(request): Json<AddVoter>,
) -> Json<Result<(), ProposeError>> {
    Json(
        handle
            .add_voter(request.node_id, request.cluster_addr)
            .await,
    )
}

async fn heartbeat(
    State(handle): State<ClusterHandle>,
    Json(beat): Json<super::controller::Heartbeat>,
) -> Json<super::controller::HeartbeatAck> {
    let accepted = handle.is_controller();
    if accepted {
        handle
            .heartbeats()
            .record(beat.broker_id, beat.shutting_down);
    }
    Json(super::controller::HeartbeatAck { accepted })
}

//! The HTTP listener: health and readiness (the `ready` flag the node sets
//! once the Kafka listener accepts), the embedded dashboard (`assets`), the
//! cluster view (`cluster_api`) and the shop's REST API and WebSocket;
//! `serve` runs the listener under its connection limits and timeouts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

pub mod assets;
pub mod cluster_api;
pub mod raft_api;
pub(crate) mod serve;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct WebState {
    /// True once the Kafka listener accepts requests.
    pub ready: Arc<AtomicBool>,
    /// The broker and group coordinator, read by `GET /api/cluster`.
    pub cluster: cluster_api::ClusterView,
    /// The shop (REST API under /api, WebSocket /ws), when it runs on this node.
    pub app: Option<crate::app::AppState>,
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<WebState>) -> (StatusCode, &'static str) {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

/// The router of the HTTP listener.
pub fn router(state: WebState) -> Router {
    let cluster = cluster_api::router(state.cluster.clone());
    let shop = state
        .app
        .clone()
        .map(crate::app::routes)
        .unwrap_or_default();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
        .merge(assets::router())
        .merge(cluster)
        .merge(shop)
}

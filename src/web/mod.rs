//! The HTTP listener: health (liveness) and readiness (each component's
//! state, from the node's `Readiness`), the embedded dashboard (`assets`),
//! the cluster view (`cluster_api`), Prometheus metrics (`metrics`), the
//! console's API under `/api/admin` (`admin`), the OpenAPI document of both
//! APIs, and the shop's REST API and WebSocket;
//! `guard` wraps them in CORS, security headers, content-type and origin
//! checks and `auth` (tokens, sessions, roles); `serve` runs the listener
//! under its connection limits and timeouts.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

pub(crate) mod admin;
pub mod assets;
pub(crate) mod auth;
pub mod cluster_api;
mod cluster_groups;
pub(crate) mod guard;
mod metrics;
pub mod raft_api;
mod refusal;
pub(crate) mod serve;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct WebState {
    /// What `/readyz` answers: the state of each part of the node.
    pub readiness: crate::readiness::Readiness,
    /// The broker and group coordinator, read by `GET /api/cluster`.
    pub cluster: cluster_api::ClusterView,
    /// The shop (REST API under /api, WebSocket /ws), when it runs on this node.
    pub app: Option<crate::app::AppState>,
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// 200 while every component is ready, else 503; the body names each
/// component and its state: `{"ready":false,"components":{"kafka":"ready",
/// "cluster":"registering"}}`.
async fn readyz(State(state): State<WebState>) -> (StatusCode, Json<Value>) {
    let snapshot = state.readiness.snapshot();
    let components: Map<String, Value> = snapshot
        .components
        .iter()
        .map(|(name, state)| ((*name).to_owned(), Value::from(*state)))
        .collect();
    let status = if snapshot.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "ready": snapshot.ready,
            "components": components,
            "node": admin::brokers_node(&state.cluster),
        })),
    )
}

/// `GET /api/openapi.json`: the shop's API (when it runs here) and the console's.
async fn openapi(State(state): State<WebState>) -> Json<Value> {
    Json(admin::openapi::document(
        state.app.as_ref().map(|_| crate::app::openapi_document()),
    ))
}

/// The router of the HTTP listener.
pub fn router(state: WebState) -> Router {
    let cluster = cluster_groups::router(state.cluster.clone());
    let console = admin::router(state.cluster.clone());
    let shop = state
        .app
        .clone()
        .map(crate::app::routes)
        .unwrap_or_default();
    let scrape = Router::new()
        .route("/metrics", get(metrics::scrape))
        .with_state(state.cluster.clone());
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/openapi.json", get(openapi))
        .with_state(state)
        .merge(assets::router())
        .merge(cluster)
        .merge(console)
        .merge(shop)
        .merge(scrape)
        .layer(axum::middleware::from_fn(metrics::count_http))
}

//! `GET /api/raft`: this node's Raft role, term and leader, the initial
//! voters and the applied metadata image, for the dashboard's cluster page.
//! A node started without `--peers` answers `{"enabled": false}`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::cluster::ClusterHandle;
use crate::partition::Partitions;

/// The `/api/raft` route; `cluster` is None on a single node without Raft.
pub fn router(cluster: Option<ClusterHandle>) -> Router {
    Router::new()
        .route("/api/raft", get(raft_status))
        .with_state(cluster)
}

async fn raft_status(State(cluster): State<Option<ClusterHandle>>) -> Json<Value> {
    match cluster {
        None => Json(json!({ "enabled": false })),
        Some(cluster) => Json(json!({
            "enabled": true,
            "status": cluster.status(),
            "peers": cluster.peers(),
            "image": cluster.image(),
        })),
    }
}

/// `GET /api/replicas` (this node's replicas: role, leader, ISR, offsets)
/// and `GET /api/replicas/digest?topic=&partition=&upto=` (a digest of the
/// stored batches below `upto`, which every in-sync replica shares).
pub fn replicas_router(partitions: Arc<Partitions>) -> Router {
    Router::new()
        .route("/api/replicas", get(replicas))
        .route("/api/replicas/digest", get(digest))
        .with_state(partitions)
}

async fn replicas(State(partitions): State<Arc<Partitions>>) -> Json<Value> {
    match partitions.replica_manager() {
        Some(rm) => Json(json!(rm.describe())),
        None => Json(json!([])),
    }
}

#[derive(Debug, serde::Deserialize)]
struct DigestQuery {
    topic: String,
    partition: i32,
    upto: i64,
}

async fn digest(
    State(partitions): State<Arc<Partitions>>,
    Query(q): Query<DigestQuery>,
) -> Result<Json<Value>, (StatusCode, String)> {
    let log = partitions
        .broker()
        .topic(&q.topic)
        .and_then(|t| t.partition(q.partition))
        .ok_or((StatusCode::NOT_FOUND, "no such partition".to_string()))?;
    let (batches, sha256) = tokio::task::spawn_blocking(move || log.digest(q.upto))
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(json!({
        "topic": q.topic,
        "partition": q.partition,
        "upto": q.upto,
        "batches": batches,
        "sha256": sha256,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    #[tokio::test]
    async fn single_node_reports_raft_disabled() {
        let response = router(None)
            .oneshot(Request::get("/api/raft").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value, json!({ "enabled": false }));
    }
}

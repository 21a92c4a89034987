//! `GET /api/raft`: this node's Raft role, term and leader, the initial
//! voters and the applied metadata image, for the dashboard's cluster page.
//! A node started without `--peers` answers `{"enabled": false}`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::cluster::ClusterHandle;

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

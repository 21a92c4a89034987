//! The console's REST API under `/api/admin/`: topics (`topics`), records
//! (`records`, `filter`), consumer groups (`groups`), brokers (`brokers`),
//! and their OpenAPI paths (`openapi`).
//!
//! Every answer comes over the Kafka protocol through `crate::client`, from
//! the cluster `--admin-bootstrap` names (default: this node's own Kafka
//! listener), so the console can administer any Kafka-compatible cluster.
//! What the protocol cannot tell (log end offsets and sizes of the replicas
//! this node holds, Raft roles, a node's version, uptime and disk use) is
//! added from this node's memory and its peers' `/readyz`, and only when
//! the target is this node's own cluster.
//!
//! The auth layer gives these routes to `admin` only (`auth`). Must never:
//! change broker state except through a Kafka request.

mod brokers;
mod filter;
mod groups;
pub(crate) mod openapi;
mod records;
mod topics;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use kafka_protocol::error::ResponseError;

use super::cluster_api::ClusterView;
use super::refusal::refuse;
use crate::client::{Client, ClientConfig, ClientError, Producer, ProducerConfig};

/// What the console's handlers share.
#[derive(Clone)]
pub(crate) struct Admin {
    inner: Arc<AdminInner>,
}

struct AdminInner {
    /// `host:port,...` of the administered cluster.
    bootstrap: String,
    /// True when that is this node's own cluster (then `view` adds what the
    /// Kafka protocol cannot tell).
    own_cluster: bool,
    /// This node's broker and coordinator.
    view: ClusterView,
    /// Connected on first use, again after a failure to connect.
    client: tokio::sync::Mutex<Option<Client>>,
    /// The producer of `POST .../records`, made on first use.
    producer: tokio::sync::Mutex<Option<Arc<Producer>>>,
    /// Last high watermark seen per partition and when, for records/s.
    rates: Mutex<HashMap<(String, i32), (Instant, i64)>>,
}

impl Admin {
    pub(crate) fn new(view: ClusterView) -> Self {
        let config = &view.partitions.broker().config;
        let (bootstrap, own_cluster) = match &config.admin_bootstrap {
            Some(b) => (b.clone(), false),
            None => {
                let (host, port) = view.partitions.broker().advertised();
                (format!("{host}:{port}"), true)
            }
        };
        Admin {
            inner: Arc::new(AdminInner {
                bootstrap,
                own_cluster,
                view,
                client: tokio::sync::Mutex::new(None),
                producer: tokio::sync::Mutex::new(None),
                rates: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The client of the administered cluster.
    async fn client(&self) -> Result<Client, AdminError> {
        let mut slot = self.inner.client.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let client = Client::connect(ClientConfig::new(&self.inner.bootstrap)).await?;
        *slot = Some(client.clone());
        Ok(client)
    }

    async fn producer(&self) -> Result<Arc<Producer>, AdminError> {
        let mut slot = self.inner.producer.lock().await;
        if let Some(p) = slot.as_ref() {
            return Ok(Arc::clone(p));
        }
        let producer =
            Arc::new(Producer::new(self.client().await?, ProducerConfig::default()).await?);
        *slot = Some(Arc::clone(&producer));
        Ok(producer)
    }

    /// This node's view, when the administered cluster is its own.
    fn local(&self) -> Option<&ClusterView> {
        self.inner.own_cluster.then_some(&self.inner.view)
    }

    /// Records per second of a partition since the previous call that saw it.
    fn rate(&self, topic: &str, partition: i32, high_watermark: i64) -> Option<f64> {
        let now = Instant::now();
        let mut rates = self.inner.rates.lock().unwrap_or_else(|p| p.into_inner());
        let previous = rates.insert((topic.to_owned(), partition), (now, high_watermark));
        let (then, before) = previous?;
        let seconds = now.duration_since(then).as_secs_f64();
        (seconds > 0.0).then(|| (high_watermark - before).max(0) as f64 / seconds)
    }
}

/// Why a console request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Kafka(#[from] ClientError),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match &self {
            AdminError::BadRequest(_) => refuse(StatusCode::BAD_REQUEST, "bad_request", &message),
            AdminError::Conflict(_) => refuse(StatusCode::CONFLICT, "conflict", &message),
            AdminError::Kafka(e) => {
                let (status, code) = kafka_status(e);
                refuse(status, code, &message)
            }
        }
    }
}

/// The HTTP status and code of a Kafka error.
fn kafka_status(e: &ClientError) -> (StatusCode, &'static str) {
    use ResponseError as E;
    match e {
        ClientError::Broker { error, .. } => match error {
            E::UnknownTopicOrPartition | E::GroupIdNotFound | E::UnknownTopicId => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            E::TopicAlreadyExists | E::NonEmptyGroup | E::GroupSubscribedToTopic => {
                (StatusCode::CONFLICT, "conflict")
            }
            E::InvalidTopicException
            | E::InvalidPartitions
            | E::InvalidReplicationFactor
            | E::InvalidConfig
            | E::InvalidRequest
            | E::PolicyViolation
            | E::InvalidReplicaAssignment => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            E::TopicAuthorizationFailed
            | E::GroupAuthorizationFailed
            | E::ClusterAuthorizationFailed => (StatusCode::FORBIDDEN, "kafka_forbidden"),
            _ => (StatusCode::BAD_GATEWAY, "kafka_error"),
        },
        ClientError::Config(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
        _ => (StatusCode::BAD_GATEWAY, "kafka_unavailable"),
    }
}

/// What `/readyz` says of this node beside readiness (`brokers`).
pub(crate) fn brokers_node(view: &ClusterView) -> serde_json::Value {
    brokers::this_node(view)
}

/// The console's routes.
pub(crate) fn router(view: ClusterView) -> Router {
    brokers::start_clock();
    let admin = Admin::new(view);
    Router::new()
        .route("/api/admin/topics", get(topics::list).post(topics::create))
        .route(
            "/api/admin/topics/{name}",
            get(topics::describe).delete(topics::delete),
        )
        .route(
            "/api/admin/topics/{name}/configs",
            get(topics::configs).patch(topics::alter_configs),
        )
        .route(
            "/api/admin/topics/{name}/partitions",
            post(topics::add_partitions),
        )
        .route(
            "/api/admin/topics/{name}/records",
            get(topics::records).post(topics::produce),
        )
        .route("/api/admin/groups", get(groups::list))
        .route(
            "/api/admin/groups/{id}",
            get(groups::describe).delete(groups::delete),
        )
        .route(
            "/api/admin/groups/{id}/reset-offsets",
            post(groups::reset_offsets),
        )
        .route(
            "/api/admin/groups/{id}/offsets/{topic}",
            delete(groups::delete_offsets),
        )
        .route("/api/admin/brokers", get(brokers::list))
        .with_state(admin)
}

//! The read-model store seam: what one generation of the CQRS read model
//! answers and how a batch of events is applied to it, whatever holds it.
//! Two stores implement it: the node's own sled database (`sled_store`, the
//! default) and a PostgreSQL database that several nodes share
//! (`postgres`, `--read-model postgres://...`).
//!
//! Every store applies a batch with the same pure rule (`rule`) in one
//! transaction that also stores, per topic-partition, the next offset to
//! apply, and skips records below the stored offset: the model is exactly
//! once, whoever applies.
//!
//! Must never: talk to Kafka, shape JSON, or hold a transaction across a
//! call into another layer.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::query::{DeliveryFilter, OrderFilter, Page, PaymentFilter};
use crate::app::domain::analytics::{Aggregates, MinuteBucket};
use crate::app::domain::error::ApiError;
use crate::app::domain::events::Event;
use crate::app::domain::order::{DeliveryStep, OrderRecord, PaymentEntry};

/// Next offset to apply, per topic-partition.
pub(crate) type Offsets = std::collections::HashMap<(String, i32), i64>;

/// Errors of the read model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("corrupt read model entry {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// Another node replaced the generation this one was writing.
    #[error("read model generation {0} is no longer current")]
    Stale(u64),
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        ApiError::internal(format!("read model: {e}"))
    }
}

/// A row of the payment index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PaymentRow {
    pub(crate) order_id: String,
    pub(crate) entry: PaymentEntry,
}

/// A notification as the list keeps it (`GET /api/notifications`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotificationRow {
    pub notification_id: String,
    pub kind: String,
    pub severity: String,
    pub message: String,
    pub order_id: String,
    /// When the notifier wrote it (ms since the epoch).
    pub timestamp: i64,
    pub source_event_id: Uuid,
}

/// One record read from a topic, as the projector hands it over.
#[derive(Debug, Clone)]
pub struct SourceRecord {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub value: Option<Bytes>,
}

/// What applying events changed, for the WebSocket push. One event may make
/// several changes (a delivery step also updates its order); each names the
/// event it came from, so a reader can tell events from changes.
#[derive(Debug, Clone)]
pub enum Change {
    /// An order was created (its state after the event, the event's id).
    NewOrder(Arc<OrderRecord>, Uuid),
    /// An existing order changed (its state after the event, the event's id).
    OrderUpdated(Arc<OrderRecord>, Uuid),
    /// A payment record was added.
    NewPayment(String, PaymentEntry),
    /// A delivery step was added.
    DeliveryUpdate(Arc<OrderRecord>, DeliveryStep),
    /// A notification arrived.
    Notification(Event),
}

/// What applying a batch did: the changes and the next offset of every
/// partition it applied records of.
pub(crate) struct Applied {
    pub(crate) changes: Vec<Change>,
    pub(crate) offsets: Offsets,
}

/// One generation of the read model in some store.
#[async_trait::async_trait]
pub(crate) trait ModelStore: Send + Sync {
    /// Apply `records` (in offset order per partition) in one transaction,
    /// together with the next offset of each partition.
    async fn apply(&self, records: Vec<SourceRecord>) -> Result<Applied, ModelError>;
    /// The next offset to apply of every partition seen so far.
    async fn stored_offsets(&self) -> Result<Offsets, ModelError>;
    /// One order by id.
    async fn order(&self, order_id: &str) -> Result<Option<OrderRecord>, ModelError>;
    /// The aggregates.
    async fn aggregates(&self) -> Result<Aggregates, ModelError>;
    /// The per-minute buckets of the last `count` minutes that have any, oldest first.
    async fn minutes(&self, count: usize) -> Result<Vec<(i64, MinuteBucket)>, ModelError>;
    /// Created orders, newest first.
    async fn orders(
        &self,
        filter: &OrderFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<OrderRecord>, ModelError>;
    /// Payment records, newest first, as `(order id, entry)`.
    async fn payments(
        &self,
        filter: &PaymentFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<(String, PaymentEntry)>, ModelError>;
    /// Orders that have a delivery, by latest step time, newest first.
    async fn deliveries(
        &self,
        filter: &DeliveryFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<OrderRecord>, ModelError>;
    /// The notifier's notifications (each once), newest first, optionally
    /// of one severity.
    async fn notifications(
        &self,
        severity: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Page<NotificationRow>, ModelError>;
}

/// The read model of one generation, in whichever store holds it.
#[derive(Clone)]
pub(crate) struct Model {
    /// The store holding it.
    pub(crate) store: Arc<dyn ModelStore>,
    /// Which generation this is (bumped by every replay).
    pub generation: u64,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("generation", &self.generation)
            .finish()
    }
}

impl std::ops::Deref for Model {
    type Target = dyn ModelStore;
    fn deref(&self) -> &Self::Target {
        &*self.store
    }
}

/// Decode a stored JSON value.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    key: &[u8],
    bytes: &[u8],
) -> Result<T, ModelError> {
    serde_json::from_slice(bytes).map_err(|e| ModelError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

/// Encode a value for storing.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising the model's own plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

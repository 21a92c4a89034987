//! The CQRS read model: orders with their status, totals, payments and
//! delivery timeline, the payment and delivery indexes, the aggregates, and
//! the offset up to which each topic-partition has been applied, all in one
//! sled tree of the node's own database (`app:model:{generation}`).
//!
//! Owns the key layout of that tree and the *pure* rule that turns events
//! into state. The rule is built so the model depends only on the sequence of
//! events of each order within each topic (which Kafka keeps in order, as
//! every event is keyed by its order id), never on how the consumer happened
//! to interleave the topics: an order's status is *derived* from its
//! creation, cancellation, payment records and delivery steps. That is what
//! makes a replay from offset 0 produce exactly the live model.
//!
//! The listings over the same tree are in `query`; the live model and its
//! generations in `super` (`ReadModel`).
//!
//! Must never: talk to Kafka, shape JSON, or hold a sled transaction across
//! an await.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use uuid::Uuid;

use crate::app::domain::analytics::{minute_of, Aggregates, MinuteBucket};
use crate::app::domain::error::ApiError;
use crate::app::domain::events::{Event, EventBody, NOTIFICATIONS_TOPIC};
use crate::app::domain::order::{CancelInfo, CreatedInfo, DeliveryStep, OrderRecord, PaymentEntry};

/// Key prefix: order id -> `OrderRecord` JSON.
pub(super) const ORDER: u8 = b'o';
/// Key prefix: creation time (u64 BE) + order id -> empty (orders, newest last).
pub(super) const ORDER_BY_TIME: u8 = b't';
/// Key prefix: time (u64 BE) + event id -> `PaymentRow` JSON.
pub(super) const PAYMENT: u8 = b'p';
/// Key prefix: latest step time (u64 BE) + order id -> empty (deliveries).
pub(super) const DELIVERY_BY_TIME: u8 = b'd';
/// Key of the `Aggregates` JSON.
const AGGREGATES: &[u8] = b"s:aggregates";
/// Key prefix: minute (u64 BE) -> `MinuteBucket` JSON.
const MINUTE: u8 = b'm';
/// Key prefix: topic + 0 + partition (i32 BE) -> next offset to apply (i64 BE).
const OFFSET: u8 = b'x';
/// Key prefix: notification time (u64 BE) + notification id -> `NotificationRow` JSON.
pub(super) const NOTIFICATION: u8 = b'n';
/// Key prefix: notification id -> empty (the notifier may deliver one twice).
const NOTIFICATION_SEEN: u8 = b'N';

/// Errors of the read model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt read model entry {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        ApiError::internal(format!("read model: {e}"))
    }
}

impl From<TransactionError<ModelError>> for ModelError {
    fn from(e: TransactionError<ModelError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => ModelError::Sled(e),
        }
    }
}

/// A row of the payment index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct PaymentRow {
    pub(super) order_id: String,
    pub(super) entry: PaymentEntry,
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
#[derive(Debug, Clone, Copy)]
pub struct SourceRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub value: Option<&'a [u8]>,
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

fn time_key(prefix: u8, at: i64, suffix: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + suffix.len());
    key.push(prefix);
    key.extend_from_slice(&(at.max(0) as u64).to_be_bytes());
    key.extend_from_slice(suffix);
    key
}

pub(super) fn prefixed(prefix: u8, suffix: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + suffix.len());
    key.push(prefix);
    key.extend_from_slice(suffix);
    key
}

fn offset_key(topic: &str, partition: i32) -> Vec<u8> {
    let mut key = prefixed(OFFSET, topic.as_bytes());
    key.push(0);
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

pub(super) fn decode<T: for<'de> Deserialize<'de>>(
    key: &[u8],
    bytes: &[u8],
) -> Result<T, ModelError> {
    serde_json::from_slice(bytes).map_err(|e| ModelError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising the model's own plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

type TxResult<T> = Result<T, ConflictableTransactionError<ModelError>>;

fn tx_decode<T: for<'de> Deserialize<'de>>(key: &[u8], bytes: &[u8]) -> TxResult<T> {
    decode(key, bytes).map_err(ConflictableTransactionError::Abort)
}

/// The read model of one generation.
#[derive(Clone)]
pub struct Model {
    /// The sled tree holding it.
    pub(super) tree: sled::Tree,
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

/// The name of the tree of generation `generation`.
pub fn tree_name(generation: u64) -> String {
    format!("app:model:{generation}")
}

impl Model {
    /// The model stored in `tree`.
    pub fn new(tree: sled::Tree, generation: u64) -> Self {
        Model { tree, generation }
    }

    /// Apply `records` (in offset order per partition) in one transaction,
    /// together with the next offset of each partition, and say what changed.
    pub fn apply(&self, records: &[SourceRecord<'_>]) -> Result<Vec<Change>, ModelError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let changes = self.tree.transaction(|tx| {
            let mut aggregates: Aggregates = match tx.get(AGGREGATES)? {
                Some(bytes) => tx_decode(AGGREGATES, &bytes)?,
                None => Aggregates::default(),
            };
            let mut minutes: BTreeMap<i64, MinuteBucket> = BTreeMap::new();
            let mut offsets: HashMap<(&str, i32), i64> = HashMap::new();
            let mut changes = Vec::new();
            for record in records {
                apply_one(tx, record, &mut aggregates, &mut minutes, &mut changes)?;
                offsets.insert((record.topic, record.partition), record.offset + 1);
            }
            for (minute, delta) in minutes {
                let key = time_key(MINUTE, minute, &[]);
                let mut bucket: MinuteBucket = match tx.get(&key)? {
                    Some(bytes) => tx_decode(&key, &bytes)?,
                    None => MinuteBucket::default(),
                };
                bucket.merge(&delta);
                tx.insert(key, encode(&bucket))?;
            }
            for ((topic, partition), next) in offsets {
                tx.insert(offset_key(topic, partition), &next.to_be_bytes())?;
            }
            tx.insert(AGGREGATES, encode(&aggregates))?;
            Ok(changes)
        })?;
        Ok(changes)
    }

    /// The next offset to apply of every partition seen so far.
    pub fn stored_offsets(&self) -> Result<HashMap<(String, i32), i64>, ModelError> {
        let mut out = HashMap::new();
        for item in self.tree.scan_prefix([OFFSET]) {
            let (key, value) = item?;
            let rest = &key[1..];
            let Some(nul) = rest.iter().position(|b| *b == 0) else {
                continue;
            };
            let topic = String::from_utf8_lossy(&rest[..nul]).into_owned();
            let (Ok(p), Ok(v)) = (
                <[u8; 4]>::try_from(&rest[nul + 1..]),
                <[u8; 8]>::try_from(value.as_ref()),
            ) else {
                continue;
            };
            out.insert((topic, i32::from_be_bytes(p)), i64::from_be_bytes(v));
        }
        Ok(out)
    }

    /// One order by id.
    pub fn order(&self, order_id: &str) -> Result<Option<OrderRecord>, ModelError> {
        let key = prefixed(ORDER, order_id.as_bytes());
        match self.tree.get(&key)? {
            Some(bytes) => Ok(Some(decode(&key, &bytes)?)),
            None => Ok(None),
        }
    }

    /// The aggregates.
    pub fn aggregates(&self) -> Result<Aggregates, ModelError> {
        match self.tree.get(AGGREGATES)? {
            Some(bytes) => decode(AGGREGATES, &bytes),
            None => Ok(Aggregates::default()),
        }
    }

    /// The per-minute buckets of the last `count` minutes that have any, oldest first.
    pub fn minutes(&self, count: usize) -> Result<Vec<(i64, MinuteBucket)>, ModelError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix([MINUTE]).rev().take(count) {
            let (key, value) = item?;
            let minute = <[u8; 8]>::try_from(&key[1..9]).map_or(0, u64::from_be_bytes) as i64;
            out.push((minute, decode(&key, &value)?));
        }
        out.reverse();
        Ok(out)
    }

    /// Drop this generation's tree.
    pub fn drop_tree(self, db: &sled::Db) -> Result<(), ModelError> {
        db.drop_tree(tree_name(self.generation))?;
        Ok(())
    }
}

/// Apply one record: the heart of the projection.
fn apply_one(
    tx: &TransactionalTree,
    record: &SourceRecord<'_>,
    aggregates: &mut Aggregates,
    minutes: &mut BTreeMap<i64, MinuteBucket>,
    changes: &mut Vec<Change>,
) -> TxResult<()> {
    let event = match record.value.map(Event::from_bytes) {
        Some(Ok(event)) if event.body.topic() == record.topic => event,
        _ => {
            aggregates.invalid_events += 1;
            return Ok(());
        }
    };
    if record.topic == NOTIFICATIONS_TOPIC {
        // Notifications are listed, not counted: the notifier delivers them
        // at least once, so each is kept (and relayed) once, by its id.
        if let EventBody::Notification(n) = &event.body {
            let seen = prefixed(NOTIFICATION_SEEN, n.notification_id.as_bytes());
            if tx.get(&seen)?.is_some() {
                return Ok(());
            }
            tx.insert(seen, &[][..])?;
            let row = NotificationRow {
                notification_id: n.notification_id.clone(),
                kind: n.kind.clone(),
                severity: n.severity.clone(),
                message: n.message.clone(),
                order_id: event.order_id.clone(),
                timestamp: event.timestamp,
                source_event_id: n.source_event_id,
            };
            tx.insert(
                time_key(NOTIFICATION, event.timestamp, n.notification_id.as_bytes()),
                encode(&row),
            )?;
        }
        changes.push(Change::Notification(event));
        return Ok(());
    }
    let key = prefixed(ORDER, event.order_id.as_bytes());
    let mut order: OrderRecord = match tx.get(&key)? {
        Some(bytes) => tx_decode(&key, &bytes)?,
        None => OrderRecord::new(&event.order_id),
    };
    if order.contains_event(event.event_id) {
        aggregates.duplicate_events += 1;
        return Ok(());
    }
    let before = order.contribution();
    let at = event.timestamp;
    let mut created_now = false;
    let mut new_payment: Option<PaymentEntry> = None;
    let mut new_step: Option<DeliveryStep> = None;
    match &event.body {
        EventBody::OrderCreated(c) => {
            if order.created.is_some() {
                // A second creation of the same id: the first one stands.
                aggregates.invalid_events += 1;
                return Ok(());
            }
            order.created = Some(CreatedInfo {
                event_id: event.event_id,
                at,
                customer: c.customer.clone(),
                items: c.items.clone(),
                currency: c.currency.clone(),
                total_cents: c.total_cents,
            });
            tx.insert(time_key(ORDER_BY_TIME, at, event.order_id.as_bytes()), &[])?;
            minutes.entry(minute_of(at)).or_default().orders += 1;
            created_now = true;
        }
        EventBody::OrderCancelled(c) => {
            if order.cancelled.is_some() {
                aggregates.invalid_events += 1;
                return Ok(());
            }
            order.cancelled = Some(CancelInfo {
                event_id: event.event_id,
                at,
                reason: c.reason.clone(),
            });
        }
        body => {
            if let Some((status, p)) = body.payment() {
                let entry = PaymentEntry {
                    event_id: event.event_id,
                    payment_id: p.payment_id.clone(),
                    status,
                    amount_cents: p.amount_cents,
                    currency: p.currency.clone(),
                    method: p.method.clone(),
                    reason: p.reason.clone(),
                    at,
                };
                let delta =
                    aggregates.record_payment(status, p.amount_cents, &p.currency, &p.method);
                if delta != 0 {
                    minutes
                        .entry(minute_of(at))
                        .or_default()
                        .add_revenue(&p.currency, delta);
                }
                let row = PaymentRow {
                    order_id: event.order_id.clone(),
                    entry: entry.clone(),
                };
                tx.insert(
                    time_key(PAYMENT, at, event.event_id.as_bytes()),
                    encode(&row),
                )?;
                order.payments.push(entry.clone());
                new_payment = Some(entry);
            } else if let Some((status, d)) = body.delivery() {
                if let Some(last) = order.timeline.last() {
                    tx.remove(time_key(
                        DELIVERY_BY_TIME,
                        last.at,
                        event.order_id.as_bytes(),
                    ))?;
                }
                tx.insert(
                    time_key(DELIVERY_BY_TIME, at, event.order_id.as_bytes()),
                    &[],
                )?;
                let step = DeliveryStep {
                    event_id: event.event_id,
                    status,
                    carrier: d.carrier.clone(),
                    location: d.location.clone(),
                    at,
                };
                order.timeline.push(step.clone());
                aggregates.delivery_events += 1;
                new_step = Some(step);
            } else {
                aggregates.invalid_events += 1;
                return Ok(());
            }
        }
    }
    order.updated_at = order.updated_at.max(at);
    aggregates.replace(before, order.contribution());
    aggregates.record_event(record.topic);
    tx.insert(key, encode(&order))?;

    let order = Arc::new(order);
    if let Some(entry) = new_payment {
        changes.push(Change::NewPayment(event.order_id.clone(), entry));
    }
    if let Some(step) = new_step {
        changes.push(Change::DeliveryUpdate(Arc::clone(&order), step));
    }
    if created_now {
        changes.push(Change::NewOrder(order, event.event_id));
    } else if order.created.is_some() {
        changes.push(Change::OrderUpdated(order, event.event_id));
    }
    Ok(())
}

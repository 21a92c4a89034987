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
//! Must never: talk to Kafka, or hold a sled transaction across an await.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use uuid::Uuid;

use super::analytics::{minute_of, money, Aggregates, Contribution, MinuteBucket};
use super::events::{
    DeliveryStatus, Event, EventBody, LineItem, PaymentStatus, NOTIFICATIONS_TOPIC,
};

/// Key prefix: order id -> `OrderRecord` JSON.
const ORDER: u8 = b'o';
/// Key prefix: creation time (u64 BE) + order id -> empty (orders, newest last).
const ORDER_BY_TIME: u8 = b't';
/// Key prefix: time (u64 BE) + event id -> `PaymentRow` JSON.
const PAYMENT: u8 = b'p';
/// Key prefix: latest step time (u64 BE) + order id -> empty (deliveries).
const DELIVERY_BY_TIME: u8 = b'd';
/// Key of the `Aggregates` JSON.
const AGGREGATES: &[u8] = b"s:aggregates";
/// Key prefix: minute (u64 BE) -> `MinuteBucket` JSON.
const MINUTE: u8 = b'm';
/// Key prefix: topic + 0 + partition (i32 BE) -> next offset to apply (i64 BE).
const OFFSET: u8 = b'x';

/// Errors of the read model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt read model entry {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

impl From<TransactionError<ModelError>> for ModelError {
    fn from(e: TransactionError<ModelError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => ModelError::Sled(e),
        }
    }
}

/// The status of an order, derived from everything that happened to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Created,
    PaymentFailed,
    Paid,
    Cancelled,
    Refunded,
    Scheduled,
    Shipped,
    InTransit,
    OutForDelivery,
    Delivered,
    DeliveryFailed,
}

impl OrderStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [OrderStatus; 11] = [
        Self::Created,
        Self::PaymentFailed,
        Self::Paid,
        Self::Cancelled,
        Self::Refunded,
        Self::Scheduled,
        Self::Shipped,
        Self::InTransit,
        Self::OutForDelivery,
        Self::Delivered,
        Self::DeliveryFailed,
    ];

    /// The name used in JSON and query strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::PaymentFailed => "payment_failed",
            Self::Paid => "paid",
            Self::Cancelled => "cancelled",
            Self::Refunded => "refunded",
            Self::Scheduled => "scheduled",
            Self::Shipped => "shipped",
            Self::InTransit => "in_transit",
            Self::OutForDelivery => "out_for_delivery",
            Self::Delivered => "delivered",
            Self::DeliveryFailed => "delivery_failed",
        }
    }

    /// Parse a query-string name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }

    fn from_delivery(status: DeliveryStatus) -> Self {
        match status {
            DeliveryStatus::Scheduled => Self::Scheduled,
            DeliveryStatus::Shipped => Self::Shipped,
            DeliveryStatus::InTransit => Self::InTransit,
            DeliveryStatus::OutForDelivery => Self::OutForDelivery,
            DeliveryStatus::Delivered => Self::Delivered,
            DeliveryStatus::Failed => Self::DeliveryFailed,
        }
    }
}

/// The creation of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedInfo {
    pub event_id: Uuid,
    pub at: i64,
    pub customer: String,
    pub items: Vec<LineItem>,
    pub currency: String,
    pub total_cents: i64,
}

/// The cancellation of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelInfo {
    pub event_id: Uuid,
    pub at: i64,
    pub reason: Option<String>,
}

/// One payment record of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentEntry {
    pub event_id: Uuid,
    pub payment_id: String,
    pub status: PaymentStatus,
    pub amount_cents: i64,
    pub currency: String,
    pub method: String,
    pub reason: Option<String>,
    pub at: i64,
}

/// One step of an order's delivery timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryStep {
    pub event_id: Uuid,
    pub status: DeliveryStatus,
    pub carrier: Option<String>,
    pub location: Option<String>,
    pub at: i64,
}

/// Everything known about one order id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub order_id: String,
    /// None while only events of other topics were seen (possible during a
    /// replay, which may read `payments` ahead of `orders`).
    pub created: Option<CreatedInfo>,
    pub cancelled: Option<CancelInfo>,
    /// In `payments` topic order.
    pub payments: Vec<PaymentEntry>,
    /// In `deliveries` topic order.
    pub timeline: Vec<DeliveryStep>,
    /// Latest event timestamp.
    pub updated_at: i64,
}

impl OrderRecord {
    fn new(order_id: &str) -> Self {
        OrderRecord {
            order_id: order_id.to_owned(),
            created: None,
            cancelled: None,
            payments: Vec::new(),
            timeline: Vec::new(),
            updated_at: 0,
        }
    }

    /// The order's status: cancelled, refunded, the latest delivery step,
    /// paid, payment failed or created, in that order of precedence.
    pub fn status(&self) -> OrderStatus {
        if self.cancelled.is_some() {
            return OrderStatus::Cancelled;
        }
        if self
            .payments
            .iter()
            .any(|p| p.status == PaymentStatus::Refunded)
        {
            return OrderStatus::Refunded;
        }
        if let Some(step) = self.timeline.last() {
            return OrderStatus::from_delivery(step.status);
        }
        if self.has_authorized_payment() {
            return OrderStatus::Paid;
        }
        match self.payments.last() {
            Some(p) if p.status == PaymentStatus::Failed => OrderStatus::PaymentFailed,
            _ => OrderStatus::Created,
        }
    }

    /// True once a payment was authorized.
    pub fn has_authorized_payment(&self) -> bool {
        self.payments
            .iter()
            .any(|p| p.status == PaymentStatus::Authorized)
    }

    /// Authorized minus refunded, in minor units.
    pub fn authorized_cents(&self) -> i64 {
        self.payments
            .iter()
            .map(|p| match p.status {
                PaymentStatus::Authorized => p.amount_cents,
                PaymentStatus::Refunded => -p.amount_cents,
                PaymentStatus::Failed => 0,
            })
            .sum()
    }

    /// The status of the latest delivery step.
    pub fn delivery_status(&self) -> Option<DeliveryStatus> {
        self.timeline.last().map(|s| s.status)
    }

    /// The latest carrier named by a delivery step.
    pub fn carrier(&self) -> Option<&str> {
        self.timeline
            .iter()
            .rev()
            .find_map(|s| s.carrier.as_deref())
    }

    /// The latest location named by a delivery step.
    pub fn location(&self) -> Option<&str> {
        self.timeline
            .iter()
            .rev()
            .find_map(|s| s.location.as_deref())
    }

    fn contains_event(&self, id: Uuid) -> bool {
        self.created.as_ref().is_some_and(|c| c.event_id == id)
            || self.cancelled.as_ref().is_some_and(|c| c.event_id == id)
            || self.payments.iter().any(|p| p.event_id == id)
            || self.timeline.iter().any(|s| s.event_id == id)
    }

    fn contribution(&self) -> Contribution {
        Contribution {
            order_status: self.created.as_ref().map(|_| self.status()),
            delivery_status: self.delivery_status(),
        }
    }

    /// The order as listed (`GET /api/orders`, `new_order`, `order_updated`).
    pub fn summary_json(&self) -> Value {
        let (customer, items, currency, total, created_at) = match &self.created {
            Some(c) => (
                json!(c.customer),
                json!(c
                    .items
                    .iter()
                    .map(|i| json!({"sku": i.sku, "quantity": i.quantity, "price": money(i.price_cents)}))
                    .collect::<Vec<_>>()),
                json!(c.currency),
                json!(money(c.total_cents)),
                json!(c.at),
            ),
            None => (Value::Null, json!([]), Value::Null, Value::Null, Value::Null),
        };
        json!({
            "order_id": self.order_id,
            "customer": customer,
            "items": items,
            "currency": currency,
            "total": total,
            "status": self.status().as_str(),
            "paid": money(self.authorized_cents()),
            "payment_status": self.payments.last().map(|p| p.status.as_str()),
            "delivery_status": self.delivery_status().map(DeliveryStatus::as_str),
            "carrier": self.carrier(),
            "cancel_reason": self.cancelled.as_ref().and_then(|c| c.reason.clone()),
            "created_at": created_at,
            "updated_at": self.updated_at,
        })
    }

    /// The order with its payments and delivery timeline (`GET /api/orders/{id}`).
    pub fn detail_json(&self) -> Value {
        let mut v = self.summary_json();
        v["payments"] = json!(self
            .payments
            .iter()
            .map(|p| payment_json(&self.order_id, p))
            .collect::<Vec<_>>());
        v["timeline"] = timeline_json(&self.timeline);
        v
    }

    /// The order's delivery (`GET /api/deliveries`, `delivery_update`).
    pub fn delivery_json(&self) -> Value {
        json!({
            "order_id": self.order_id,
            "status": self.delivery_status().map(DeliveryStatus::as_str),
            "carrier": self.carrier(),
            "location": self.location(),
            "customer": self.created.as_ref().map(|c| c.customer.clone()),
            "created_at": self.timeline.first().map(|s| s.at),
            "updated_at": self.timeline.last().map(|s| s.at),
            "steps": self.timeline.len(),
        })
    }
}

/// A delivery timeline as JSON, oldest step first.
pub fn timeline_json(timeline: &[DeliveryStep]) -> Value {
    json!(timeline
        .iter()
        .map(|s| json!({
            "status": s.status.as_str(),
            "carrier": s.carrier,
            "location": s.location,
            "timestamp": s.at,
            "event_id": s.event_id,
        }))
        .collect::<Vec<_>>())
}

/// A payment record as JSON.
pub fn payment_json(order_id: &str, p: &PaymentEntry) -> Value {
    json!({
        "payment_id": p.payment_id,
        "order_id": order_id,
        "amount": money(p.amount_cents),
        "currency": p.currency,
        "method": p.method,
        "status": p.status.as_str(),
        "reason": p.reason,
        "timestamp": p.at,
        "event_id": p.event_id,
    })
}

/// A row of the payment index.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PaymentRow {
    order_id: String,
    entry: PaymentEntry,
}

/// One record read from a topic, as the projector hands it over.
#[derive(Debug, Clone, Copy)]
pub struct SourceRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub value: Option<&'a [u8]>,
}

/// What applying events changed, for the WebSocket push.
#[derive(Debug, Clone)]
pub enum Change {
    /// An order was created (its state after the event).
    NewOrder(Arc<OrderRecord>),
    /// An existing order changed.
    OrderUpdated(Arc<OrderRecord>),
    /// A payment record was added.
    NewPayment(String, PaymentEntry),
    /// A delivery step was added.
    DeliveryUpdate(Arc<OrderRecord>, DeliveryStep),
    /// A notification arrived.
    Notification(Event),
}

/// Filters of `GET /api/orders`.
#[derive(Debug, Default, Clone)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    /// Case-insensitive substring of the customer name.
    pub customer: Option<String>,
}

/// Filters of `GET /api/payments`.
#[derive(Debug, Default, Clone)]
pub struct PaymentFilter {
    pub status: Option<PaymentStatus>,
    pub method: Option<String>,
    pub order_id: Option<String>,
}

/// Filters of `GET /api/deliveries`.
#[derive(Debug, Default, Clone)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    /// Case-insensitive carrier name.
    pub carrier: Option<String>,
    /// Latest step at or after this time (ms).
    pub from: Option<i64>,
    /// Latest step at or before this time (ms).
    pub to: Option<i64>,
}

/// One page of a listing.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// How many match the filter in all.
    pub total: usize,
}

fn time_key(prefix: u8, at: i64, suffix: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + suffix.len());
    key.push(prefix);
    key.extend_from_slice(&(at.max(0) as u64).to_be_bytes());
    key.extend_from_slice(suffix);
    key
}

fn prefixed(prefix: u8, suffix: &[u8]) -> Vec<u8> {
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

fn decode<T: for<'de> Deserialize<'de>>(key: &[u8], bytes: &[u8]) -> Result<T, ModelError> {
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
    tree: sled::Tree,
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
                bucket.orders += delta.orders;
                bucket.revenue_cents += delta.revenue_cents;
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

    /// Created orders, newest first.
    pub fn orders(
        &self,
        filter: &OrderFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<OrderRecord>, ModelError> {
        let needle = filter.customer.as_ref().map(|c| c.to_lowercase());
        let unfiltered = filter.status.is_none() && needle.is_none();
        let mut items = Vec::new();
        let mut total = 0;
        for item in self.tree.scan_prefix([ORDER_BY_TIME]).rev() {
            let (key, _) = item?;
            if unfiltered && (total < offset || items.len() >= limit) {
                total += 1;
                continue;
            }
            let Some(order) = self.order(&String::from_utf8_lossy(&key[9..]))? else {
                continue;
            };
            let keep = filter.status.is_none_or(|s| order.status() == s)
                && needle.as_ref().is_none_or(|n| {
                    order
                        .created
                        .as_ref()
                        .is_some_and(|c| c.customer.to_lowercase().contains(n.as_str()))
                });
            if keep {
                if total >= offset && items.len() < limit {
                    items.push(order);
                }
                total += 1;
            }
        }
        Ok(Page { items, total })
    }

    /// Payment records, newest first, as `(order id, entry)`.
    pub fn payments(
        &self,
        filter: &PaymentFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<(String, PaymentEntry)>, ModelError> {
        let unfiltered =
            filter.status.is_none() && filter.method.is_none() && filter.order_id.is_none();
        let mut items = Vec::new();
        let mut total = 0;
        for item in self.tree.scan_prefix([PAYMENT]).rev() {
            let (key, value) = item?;
            if unfiltered && (total < offset || items.len() >= limit) {
                total += 1;
                continue;
            }
            let row: PaymentRow = decode(&key, &value)?;
            let keep = filter.status.is_none_or(|s| row.entry.status == s)
                && filter
                    .method
                    .as_ref()
                    .is_none_or(|m| row.entry.method.eq_ignore_ascii_case(m))
                && filter.order_id.as_ref().is_none_or(|o| &row.order_id == o);
            if keep {
                if total >= offset && items.len() < limit {
                    items.push((row.order_id, row.entry));
                }
                total += 1;
            }
        }
        Ok(Page { items, total })
    }

    /// Orders that have a delivery, by latest step time, newest first.
    pub fn deliveries(
        &self,
        filter: &DeliveryFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<OrderRecord>, ModelError> {
        let unfiltered = filter.status.is_none() && filter.carrier.is_none();
        let mut items = Vec::new();
        let mut total = 0;
        for item in self.tree.scan_prefix([DELIVERY_BY_TIME]).rev() {
            let (key, _) = item?;
            let at = <[u8; 8]>::try_from(&key[1..9]).map_or(0, u64::from_be_bytes) as i64;
            if filter.to.is_some_and(|to| at > to) {
                continue;
            }
            if filter.from.is_some_and(|from| at < from) {
                break;
            }
            if unfiltered && (total < offset || items.len() >= limit) {
                total += 1;
                continue;
            }
            let Some(order) = self.order(&String::from_utf8_lossy(&key[9..]))? else {
                continue;
            };
            let keep = filter
                .status
                .is_none_or(|s| order.delivery_status() == Some(s))
                && filter
                    .carrier
                    .as_ref()
                    .is_none_or(|c| order.carrier().is_some_and(|oc| oc.eq_ignore_ascii_case(c)));
            if keep {
                if total >= offset && items.len() < limit {
                    items.push(order);
                }
                total += 1;
            }
        }
        Ok(Page { items, total })
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

    /// The `/api/stats` document.
    pub fn stats_json(&self) -> Result<Value, ModelError> {
        Ok(super::analytics::stats_json(
            &self.aggregates()?,
            &self.minutes(60)?,
        ))
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
        // Notifications are relayed, not modelled: the notifier delivers them
        // at least once, so counting them would not match the topics.
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
                    minutes.entry(minute_of(at)).or_default().revenue_cents += delta;
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
        changes.push(Change::NewOrder(order));
    } else if order.created.is_some() {
        changes.push(Change::OrderUpdated(order));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::events::{DeliveryData, OrderCancelled, OrderCreated, PaymentData};

    fn temp_model() -> (tempfile::TempDir, Model) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let model = Model::new(db.open_tree(tree_name(1)).unwrap(), 1);
        (dir, model)
    }

    fn created(order: &str, at: i64) -> Event {
        let mut e = Event::new(
            order,
            EventBody::OrderCreated(OrderCreated {
                customer: "Grace".into(),
                items: vec![LineItem {
                    sku: "S".into(),
                    quantity: 1,
                    price_cents: 500,
                }],
                currency: "EUR".into(),
                total_cents: 500,
            }),
        );
        e.timestamp = at;
        e
    }

    fn paid(order: &str, status: PaymentStatus) -> Event {
        Event::new(
            order,
            EventBody::from_payment(
                status,
                PaymentData {
                    payment_id: format!("pay-{order}"),
                    amount_cents: 500,
                    currency: "EUR".into(),
                    method: "card".into(),
                    reason: None,
                },
            ),
        )
    }

    fn delivery(order: &str, status: DeliveryStatus) -> Event {
        Event::new(
            order,
            EventBody::from_delivery(
                status,
                DeliveryData {
                    carrier: Some("DHL".into()),
                    location: None,
                },
            ),
        )
    }

    /// Apply `events` one transaction each, assigning offsets per topic.
    fn apply_all(model: &Model, events: &[Event]) {
        let mut next: HashMap<&str, i64> = HashMap::new();
        for e in events {
            let bytes = e.to_bytes();
            let topic = e.body.topic();
            let offset = next.entry(topic).or_insert(0);
            model
                .apply(&[SourceRecord {
                    topic,
                    partition: 0,
                    offset: *offset,
                    value: Some(&bytes),
                }])
                .unwrap();
            *offset += 1;
        }
    }

    #[test]
    fn status_follows_the_lifecycle() {
        let (_dir, model) = temp_model();
        apply_all(&model, &[created("a", 1_000)]);
        assert_eq!(
            model.order("a").unwrap().unwrap().status(),
            OrderStatus::Created
        );
        apply_all(&model, &[paid("a", PaymentStatus::Authorized)]);
        assert_eq!(
            model.order("a").unwrap().unwrap().status(),
            OrderStatus::Paid
        );
        for s in [
            DeliveryStatus::Scheduled,
            DeliveryStatus::Shipped,
            DeliveryStatus::InTransit,
            DeliveryStatus::OutForDelivery,
            DeliveryStatus::Delivered,
        ] {
            apply_all(&model, &[delivery("a", s)]);
        }
        let order = model.order("a").unwrap().unwrap();
        assert_eq!(order.status(), OrderStatus::Delivered);
        let steps: Vec<_> = order.timeline.iter().map(|s| s.status).collect();
        assert_eq!(steps.len(), 5);
        assert_eq!(steps[0], DeliveryStatus::Scheduled);
        let agg = model.aggregates().unwrap();
        assert_eq!(agg.orders_total, 1);
        assert_eq!(agg.orders_by_status["delivered"], 1);
        assert_eq!(agg.deliveries_by_status["delivered"], 1);
        assert_eq!(agg.revenue_cents, 500);
    }

    #[test]
    fn cancellation_wins_and_failed_payment_shows() {
        let (_dir, model) = temp_model();
        apply_all(&model, &[created("b", 1), paid("b", PaymentStatus::Failed)]);
        assert_eq!(
            model.order("b").unwrap().unwrap().status(),
            OrderStatus::PaymentFailed
        );
        apply_all(
            &model,
            &[Event::new(
                "b",
                EventBody::OrderCancelled(OrderCancelled { reason: None }),
            )],
        );
        assert_eq!(
            model.order("b").unwrap().unwrap().status(),
            OrderStatus::Cancelled
        );
    }

    #[test]
    fn the_model_does_not_depend_on_topic_interleaving() {
        let events = vec![
            created("c", 60_000),
            paid("c", PaymentStatus::Authorized),
            delivery("c", DeliveryStatus::Scheduled),
            delivery("c", DeliveryStatus::Shipped),
            created("d", 120_000),
            paid("d", PaymentStatus::Failed),
        ];
        let (_d1, live) = temp_model();
        apply_all(&live, &events);
        // Read deliveries and payments before orders, as a replay may.
        let mut reordered: Vec<Event> = events
            .iter()
            .filter(|e| e.body.topic() != "orders")
            .cloned()
            .collect();
        reordered.extend(
            events
                .iter()
                .filter(|e| e.body.topic() == "orders")
                .cloned(),
        );
        let (_d2, replayed) = temp_model();
        apply_all(&replayed, &reordered);
        for id in ["c", "d"] {
            assert_eq!(live.order(id).unwrap(), replayed.order(id).unwrap());
        }
        assert_eq!(live.aggregates().unwrap(), replayed.aggregates().unwrap());
        assert_eq!(live.minutes(10).unwrap(), replayed.minutes(10).unwrap());
    }

    #[test]
    fn duplicates_and_garbage_are_counted_not_applied() {
        let (_dir, model) = temp_model();
        let e = created("e", 5);
        apply_all(&model, &[e.clone(), e]);
        let garbage = b"{oops";
        model
            .apply(&[SourceRecord {
                topic: "orders",
                partition: 0,
                offset: 7,
                value: Some(garbage),
            }])
            .unwrap();
        let agg = model.aggregates().unwrap();
        assert_eq!(agg.orders_total, 1);
        assert_eq!(agg.duplicate_events, 1);
        assert_eq!(agg.invalid_events, 1);
        assert_eq!(
            model.stored_offsets().unwrap()[&("orders".to_owned(), 0)],
            8
        );
    }

    #[test]
    fn listings_filter_and_paginate() {
        let (_dir, model) = temp_model();
        let mut events = Vec::new();
        for i in 0..5 {
            events.push(created(&format!("o{i}"), 1_000 + i));
        }
        events.push(paid("o1", PaymentStatus::Authorized));
        apply_all(&model, &events);
        let page = model.orders(&OrderFilter::default(), 0, 2).unwrap();
        assert_eq!(page.total, 5);
        assert_eq!(page.items[0].order_id, "o4", "newest first");
        let paid_only = OrderFilter {
            status: Some(OrderStatus::Paid),
            customer: None,
        };
        let page = model.orders(&paid_only, 0, 10).unwrap();
        assert_eq!(page.total, 1);
        assert_eq!(page.items[0].order_id, "o1");
        let page = model.payments(&PaymentFilter::default(), 0, 10).unwrap();
        assert_eq!(page.total, 1);
    }
}

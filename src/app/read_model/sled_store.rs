//! The read model in the node's own database (the default): one tree per
//! generation (`app:model:{generation}`) holding orders with their status,
//! totals, payments and delivery timeline, the payment and delivery indexes,
//! the aggregates, the notifications, and the offset up to which each topic-partition has been
//! applied.
//!
//! Owns the key layout of that tree. A batch is applied in one transaction
//! of the tree (through `storage::AppTree`): the orders and notification ids
//! it touches are read,
//! the rule (`rule`) runs over them, and its outcome is written with the
//! next offsets.
//!
//! Must never: talk to Kafka, shape JSON, or hold a transaction across an await.

use std::collections::HashMap;

use super::query::{DeliveryFilter, OrderFilter, Page, PaymentFilter};
use super::rule::{self, IndexChange};
use super::store::{
    decode, encode, Applied, ModelError, ModelStore, NotificationRow, Offsets, PaymentRow,
    SourceRecord,
};
use crate::app::domain::analytics::{Aggregates, MinuteBucket};
use crate::app::domain::order::{OrderRecord, PaymentEntry};
use crate::storage::{AppTree, AppTx, TxError, TxStop};

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
/// Key prefix: notification time (u64 BE) + notification id -> `NotificationRow` JSON.
const NOTIFICATION: u8 = b'n';
/// Key prefix: notification id -> empty (the notifier may deliver one twice).
const NOTIFICATION_SEEN: u8 = b'N';

/// The name of the tree of generation `generation`.
pub(crate) fn tree_name(generation: u64) -> String {
    format!("app:model:{generation}")
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

type TxResult<T> = Result<T, TxStop<ModelError>>;

fn tx_decode<T: for<'de> serde::Deserialize<'de>>(key: &[u8], bytes: &[u8]) -> TxResult<T> {
    decode(key, bytes).map_err(TxStop::Abort)
}

/// One generation's tree.
#[derive(Clone)]
pub(crate) struct SledModel {
    pub(crate) tree: AppTree,
}

impl SledModel {
    /// Apply one batch in one transaction (blocking).
    fn apply_blocking(&self, records: &[SourceRecord]) -> Result<Applied, ModelError> {
        if records.is_empty() {
            return Ok(Applied {
                changes: Vec::new(),
                offsets: Offsets::new(),
            });
        }
        let parsed = rule::parse(records);
        let ids = rule::order_ids(&parsed);
        let notification_ids = rule::notification_ids(&parsed);
        let outcome = self
            .tree
            .transaction(|tx| {
                let mut stored = rule::Stored {
                    aggregates: match tx.get(AGGREGATES)? {
                        Some(bytes) => tx_decode(AGGREGATES, &bytes)?,
                        None => Aggregates::default(),
                    },
                    ..rule::Stored::default()
                };
                for id in &ids {
                    let key = prefixed(ORDER, id.as_bytes());
                    if let Some(bytes) = tx.get(&key)? {
                        let order = tx_decode::<OrderRecord>(&key, &bytes)?;
                        stored.orders.insert(id.clone(), order);
                    }
                }
                for id in &notification_ids {
                    let seen = prefixed(NOTIFICATION_SEEN, id.as_bytes());
                    if tx.get(&seen)?.is_some() {
                        stored.notifications.insert(id.clone());
                    }
                }
                for p in &parsed {
                    let tp = (p.record.topic.to_string(), p.record.partition);
                    if stored.offsets.contains_key(&tp) {
                        continue;
                    }
                    if let Some(v) = tx.get(&offset_key(&tp.0, tp.1))? {
                        if let Ok(v) = <[u8; 8]>::try_from(v.as_slice()) {
                            stored.offsets.insert(tp, i64::from_be_bytes(v));
                        }
                    }
                }
                let outcome = rule::project(&parsed, stored);
                write(tx, &outcome)?;
                Ok(outcome)
            })
            .map_err(|e| match e {
                TxError::Store(e) => ModelError::Storage(e),
                TxError::Abort(e) => e,
            })?;
        Ok(Applied {
            changes: outcome.changes,
            offsets: outcome.offsets,
        })
    }

    fn stored_offsets_blocking(&self) -> Result<Offsets, ModelError> {
        let mut out = HashMap::new();
        for item in self.tree.scan_prefix_rev(&[OFFSET]) {
            let (key, value) = item?;
            let rest = &key[1..];
            let Some(nul) = rest.iter().position(|b| *b == 0) else {
                continue;
            };
            let topic = String::from_utf8_lossy(&rest[..nul]).into_owned();
            let (Ok(p), Ok(v)) = (
                <[u8; 4]>::try_from(&rest[nul + 1..]),
                <[u8; 8]>::try_from(value.as_slice()),
            ) else {
                continue;
            };
            out.insert((topic, i32::from_be_bytes(p)), i64::from_be_bytes(v));
        }
        Ok(out)
    }

    fn order_blocking(&self, order_id: &str) -> Result<Option<OrderRecord>, ModelError> {
        let key = prefixed(ORDER, order_id.as_bytes());
        match self.tree.get(&key)? {
            Some(bytes) => Ok(Some(decode(&key, &bytes)?)),
            None => Ok(None),
        }
    }
}

/// Write a batch's outcome in its transaction.
fn write(tx: &AppTx<'_>, outcome: &rule::Outcome) -> TxResult<()> {
    for change in &outcome.index {
        match change {
            IndexChange::Created { at, order_id } => {
                tx.insert(&time_key(ORDER_BY_TIME, *at, order_id.as_bytes()), &[])?;
            }
            IndexChange::DeliveryMoved { from, to, order_id } => {
                if let Some(from) = from {
                    tx.remove(&time_key(DELIVERY_BY_TIME, *from, order_id.as_bytes()))?;
                }
                tx.insert(&time_key(DELIVERY_BY_TIME, *to, order_id.as_bytes()), &[])?;
            }
        }
    }
    for row in &outcome.payments {
        tx.insert(
            &time_key(PAYMENT, row.entry.at, row.entry.event_id.as_bytes()),
            &encode(row),
        )?;
    }
    for row in &outcome.notifications {
        let id = row.notification_id.as_bytes();
        tx.insert(&prefixed(NOTIFICATION_SEEN, id), &[])?;
        tx.insert(&time_key(NOTIFICATION, row.timestamp, id), &encode(row))?;
    }
    for (minute, delta) in &outcome.minutes {
        let key = time_key(MINUTE, *minute, &[]);
        let mut bucket: MinuteBucket = match tx.get(&key)? {
            Some(bytes) => tx_decode(&key, &bytes)?,
            None => MinuteBucket::default(),
        };
        bucket.merge(delta);
        tx.insert(&key, &encode(&bucket))?;
    }
    for ((topic, partition), next) in &outcome.offsets {
        tx.insert(&offset_key(topic, *partition), &next.to_be_bytes())?;
    }
    for (id, order) in &outcome.orders {
        tx.insert(&prefixed(ORDER, id.as_bytes()), &encode(order))?;
    }
    tx.insert(AGGREGATES, &encode(&outcome.aggregates))?;
    Ok(())
}

/// Keep the entries of `keys` (newest first) that `keep` accepts, one page of them.
fn page<T>(
    keys: impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), crate::storage::StorageError>>,
    unfiltered: bool,
    offset: usize,
    limit: usize,
    mut load: impl FnMut(&[u8], &[u8]) -> Result<Option<T>, ModelError>,
    mut stop: impl FnMut(&[u8]) -> Option<bool>,
) -> Result<Page<T>, ModelError> {
    let mut items = Vec::new();
    let mut total = 0;
    for item in keys {
        let (key, value) = item?;
        match stop(&key) {
            Some(true) => break,
            Some(false) => continue,
            None => {}
        }
        if unfiltered && (total < offset || items.len() >= limit) {
            total += 1;
            continue;
        }
        if let Some(found) = load(&key, &value)? {
            if total >= offset && items.len() < limit {
                items.push(found);
            }
            total += 1;
        }
    }
    Ok(Page { items, total })
}

#[async_trait::async_trait]
impl ModelStore for SledModel {
    async fn apply(&self, records: Vec<SourceRecord>) -> Result<Applied, ModelError> {
        let model = self.clone();
        match tokio::task::spawn_blocking(move || model.apply_blocking(&records)).await {
            Ok(result) => result,
            Err(e) => Err(ModelError::Corrupt {
                key: "-".to_owned(),
                reason: format!("apply task failed: {e}"),
            }),
        }
    }

    async fn stored_offsets(&self) -> Result<Offsets, ModelError> {
        self.stored_offsets_blocking()
    }

    async fn order(&self, order_id: &str) -> Result<Option<OrderRecord>, ModelError> {
        self.order_blocking(order_id)
    }

    async fn aggregates(&self) -> Result<Aggregates, ModelError> {
        match self.tree.get(AGGREGATES)? {
            Some(bytes) => decode(AGGREGATES, &bytes),
            None => Ok(Aggregates::default()),
        }
    }

    async fn minutes(&self, count: usize) -> Result<Vec<(i64, MinuteBucket)>, ModelError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix_rev(&[MINUTE]).take(count) {
            let (key, value) = item?;
            let minute = <[u8; 8]>::try_from(&key[1..9]).map_or(0, u64::from_be_bytes) as i64;
            out.push((minute, decode(&key, &value)?));
        }
        out.reverse();
        Ok(out)
    }

    async fn orders(
        &self,
        filter: &OrderFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<OrderRecord>, ModelError> {
        let needle = filter.customer.as_ref().map(|c| c.to_lowercase());
        let unfiltered = filter.status.is_none() && needle.is_none();
        page(
            self.tree.scan_prefix_rev(&[ORDER_BY_TIME]),
            unfiltered,
            offset,
            limit,
            |key, _| {
                let order = self.order_blocking(&String::from_utf8_lossy(&key[9..]))?;
                Ok(order.filter(|o| filter.matches(o, needle.as_deref())))
            },
            |_| None,
        )
    }

    async fn payments(
        &self,
        filter: &PaymentFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<(String, PaymentEntry)>, ModelError> {
        let unfiltered =
            filter.status.is_none() && filter.method.is_none() && filter.order_id.is_none();
        page(
            self.tree.scan_prefix_rev(&[PAYMENT]),
            unfiltered,
            offset,
            limit,
            |key, value| {
                let row: PaymentRow = decode(key, value)?;
                Ok(filter
                    .matches(&row.order_id, &row.entry)
                    .then_some((row.order_id, row.entry)))
            },
            |_| None,
        )
    }

    async fn deliveries(
        &self,
        filter: &DeliveryFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<OrderRecord>, ModelError> {
        let unfiltered = filter.status.is_none() && filter.carrier.is_none();
        page(
            self.tree.scan_prefix_rev(&[DELIVERY_BY_TIME]),
            unfiltered,
            offset,
            limit,
            |key, _| {
                let order = self.order_blocking(&String::from_utf8_lossy(&key[9..]))?;
                Ok(order.filter(|o| filter.matches(o)))
            },
            |key| {
                let at = <[u8; 8]>::try_from(&key[1..9]).map_or(0, u64::from_be_bytes) as i64;
                if filter.to.is_some_and(|to| at > to) {
                    return Some(false);
                }
                if filter.from.is_some_and(|from| at < from) {
                    return Some(true);
                }
                None
            },
        )
    }

    async fn notifications(
        &self,
        severity: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Page<NotificationRow>, ModelError> {
        page(
            self.tree.scan_prefix_rev(&[NOTIFICATION]),
            severity.is_none(),
            offset,
            limit,
            |key, value| {
                let row: NotificationRow = decode(key, value)?;
                Ok(severity.is_none_or(|s| row.severity == s).then_some(row))
            },
            |_| None,
        )
    }
}

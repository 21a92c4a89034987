//! The projection rule: what a batch of events does to the read model,
//! computed in memory over the orders it touches, so every store (sled,
//! PostgreSQL) applies exactly the same rule and only writes its outcome.
//!
//! The rule is built so the model depends only on the sequence of events of
//! each order within each topic (which Kafka keeps in order, as every event
//! is keyed by its order id), never on how the consumer happened to
//! interleave the topics: an order's status is *derived* from its creation,
//! cancellation, payment records and delivery steps. That is what makes a
//! replay from offset 0 produce exactly the live model.
//!
//! Notifications are listed, not counted: the notifier delivers them at
//! least once, so each is kept (and relayed) once, by its id; the store
//! says which ids of a batch it keeps already.
//!
//! Must never: read or write a store, talk to Kafka, or shape JSON.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use uuid::Uuid;

use super::store::{Change, NotificationRow, Offsets, PaymentRow, SourceRecord};
use crate::app::domain::analytics::{minute_of, Aggregates, MinuteBucket};
use crate::app::domain::events::{Event, EventBody, NOTIFICATIONS_TOPIC};
use crate::app::domain::order::{CancelInfo, CreatedInfo, DeliveryStep, OrderRecord, PaymentEntry};

/// One fetched record with its event decoded (None: not a valid event of
/// its topic).
pub(crate) struct Parsed<'a> {
    pub(crate) record: &'a SourceRecord,
    pub(crate) event: Option<Event>,
}

/// Decode the events of `records`.
pub(crate) fn parse(records: &[SourceRecord]) -> Vec<Parsed<'_>> {
    records
        .iter()
        .map(|record| Parsed {
            record,
            event: match record.value.as_deref().map(Event::from_bytes) {
                Some(Ok(event)) if event.body.topic() == &*record.topic => Some(event),
                _ => None,
            },
        })
        .collect()
}

/// The orders the modelled events of `parsed` touch (each once).
pub(crate) fn order_ids(parsed: &[Parsed<'_>]) -> Vec<String> {
    let mut ids: Vec<String> = parsed
        .iter()
        .filter(|p| &*p.record.topic != NOTIFICATIONS_TOPIC)
        .filter_map(|p| p.event.as_ref().map(|e| e.order_id.clone()))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The notification ids of `parsed` (each once).
pub(crate) fn notification_ids(parsed: &[Parsed<'_>]) -> Vec<String> {
    let mut ids: Vec<String> = parsed
        .iter()
        .filter_map(|p| match p.event.as_ref().map(|e| &e.body) {
            Some(EventBody::Notification(n)) => Some(n.notification_id.clone()),
            _ => None,
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// What a store holds of the orders and notifications a batch touches,
/// read in the batch's transaction.
#[derive(Default)]
pub(crate) struct Stored {
    /// The stored state of every order in [`order_ids`] (absent ones left out).
    pub(crate) orders: HashMap<String, OrderRecord>,
    /// The aggregates.
    pub(crate) aggregates: Aggregates,
    /// The ids among [`notification_ids`] already kept.
    pub(crate) notifications: HashSet<String>,
    /// The next offset to apply of the batch's partitions (absent: none yet).
    pub(crate) offsets: Offsets,
}

/// A change of the time indexes, in the order the rule made it.
#[derive(Debug, Clone)]
pub(crate) enum IndexChange {
    /// An order was created at `at`.
    Created { at: i64, order_id: String },
    /// An order's latest delivery step moved from `from` (None: it had none) to `to`.
    DeliveryMoved {
        from: Option<i64>,
        to: i64,
        order_id: String,
    },
}

/// What a batch does to the model: the state to write and what changed.
#[derive(Default)]
pub(crate) struct Outcome {
    /// Every order the batch changed, as it is after the batch.
    pub(crate) orders: BTreeMap<String, OrderRecord>,
    /// The aggregates after the batch.
    pub(crate) aggregates: Aggregates,
    /// Per-minute deltas to merge into the stored buckets.
    pub(crate) minutes: BTreeMap<i64, MinuteBucket>,
    /// New rows of the payment index.
    pub(crate) payments: Vec<PaymentRow>,
    /// Notifications to keep (none of them kept before).
    pub(crate) notifications: Vec<NotificationRow>,
    /// Index changes, in order.
    pub(crate) index: Vec<IndexChange>,
    /// Next offset to apply of every partition the batch had records of.
    pub(crate) offsets: Offsets,
    /// What changed, for the WebSocket push.
    pub(crate) changes: Vec<Change>,
}

/// Apply `parsed` over what the store holds. Records below the next offset
/// `stored` says for their partition were applied already and are skipped:
/// that fences a projector that lost its partition to another one in the
/// middle of a batch.
pub(crate) fn project(parsed: &[Parsed<'_>], stored: Stored) -> Outcome {
    let Stored {
        mut orders,
        aggregates,
        notifications: mut kept,
        offsets: stored,
    } = stored;
    let mut out = Outcome {
        aggregates,
        ..Outcome::default()
    };
    for p in parsed {
        let r = p.record;
        let key = (r.topic.to_string(), r.partition);
        if stored.get(&key).is_some_and(|next| r.offset < *next) {
            continue;
        }
        if &*r.topic == NOTIFICATIONS_TOPIC {
            keep_notification(p, &mut kept, &mut out);
        } else {
            apply_one(p, &mut orders, &mut out);
        }
        out.offsets.insert(key, r.offset + 1);
    }
    out
}

/// Keep one record of the notifications topic, unless its id is kept already.
fn keep_notification(p: &Parsed<'_>, kept: &mut HashSet<String>, out: &mut Outcome) {
    let Some(event) = p.event.as_ref() else {
        out.aggregates.invalid_events += 1;
        return;
    };
    if let EventBody::Notification(n) = &event.body {
        if !kept.insert(n.notification_id.clone()) {
            return;
        }
        out.notifications.push(NotificationRow {
            notification_id: n.notification_id.clone(),
            kind: n.kind.clone(),
            severity: n.severity.clone(),
            message: n.message.clone(),
            order_id: event.order_id.clone(),
            timestamp: event.timestamp,
            source_event_id: n.source_event_id,
        });
    }
    out.changes.push(Change::Notification(event.clone()));
}

/// Apply one record of the orders, payments or deliveries topics: the
/// heart of the projection.
fn apply_one(p: &Parsed<'_>, orders: &mut HashMap<String, OrderRecord>, out: &mut Outcome) {
    let aggregates = &mut out.aggregates;
    let Some(event) = p.event.as_ref() else {
        aggregates.invalid_events += 1;
        return;
    };
    let mut order = orders
        .get(&event.order_id)
        .cloned()
        .unwrap_or_else(|| OrderRecord::new(&event.order_id));
    if order.contains_event(event.event_id) {
        aggregates.duplicate_events += 1;
        return;
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
                return;
            }
            order.created = Some(CreatedInfo {
                event_id: event.event_id,
                at,
                customer: c.customer.clone(),
                items: c.items.clone(),
                currency: c.currency.clone(),
                total_cents: c.total_cents,
            });
            out.index.push(IndexChange::Created {
                at,
                order_id: event.order_id.clone(),
            });
            out.minutes.entry(minute_of(at)).or_default().orders += 1;
            created_now = true;
        }
        EventBody::OrderCancelled(c) => {
            if order.cancelled.is_some() {
                aggregates.invalid_events += 1;
                return;
            }
            order.cancelled = Some(CancelInfo {
                event_id: event.event_id,
                at,
                reason: c.reason.clone(),
            });
        }
        body => {
            if let Some((status, pay)) = body.payment() {
                let entry = PaymentEntry {
                    event_id: event.event_id,
                    payment_id: pay.payment_id.clone(),
                    status,
                    amount_cents: pay.amount_cents,
                    currency: pay.currency.clone(),
                    method: pay.method.clone(),
                    reason: pay.reason.clone(),
                    at,
                };
                let delta =
                    aggregates.record_payment(status, pay.amount_cents, &pay.currency, &pay.method);
                if delta != 0 {
                    out.minutes
                        .entry(minute_of(at))
                        .or_default()
                        .add_revenue(&pay.currency, delta);
                }
                out.payments.push(PaymentRow {
                    order_id: event.order_id.clone(),
                    entry: entry.clone(),
                });
                order.payments.push(entry.clone());
                new_payment = Some(entry);
            } else if let Some((status, d)) = body.delivery() {
                out.index.push(IndexChange::DeliveryMoved {
                    from: order.timeline.last().map(|last| last.at),
                    to: at,
                    order_id: event.order_id.clone(),
                });
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
                return;
            }
        }
    }
    order.updated_at = order.updated_at.max(at);
    aggregates.replace(before, order.contribution());
    aggregates.record_event(&p.record.topic);
    orders.insert(event.order_id.clone(), order.clone());
    out.orders.insert(event.order_id.clone(), order.clone());

    let order = Arc::new(order);
    if let Some(entry) = new_payment {
        out.changes
            .push(Change::NewPayment(event.order_id.clone(), entry));
    }
    if let Some(step) = new_step {
        out.changes
            .push(Change::DeliveryUpdate(Arc::clone(&order), step));
    }
    let event_id: Uuid = event.event_id;
    if created_now {
        out.changes.push(Change::NewOrder(order, event_id));
    } else if order.created.is_some() {
        out.changes.push(Change::OrderUpdated(order, event_id));
    }
}

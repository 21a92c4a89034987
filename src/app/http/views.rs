//! The JSON views of the shop: how orders, payments, deliveries, statistics
//! and accepted commands look in REST answers and WebSocket messages.
//!
//! Owns the JSON shapes only. Must never: read or write the read model, talk
//! to Kafka, or decide anything about an order (the domain does).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::app::commands::Accepted;
use crate::app::domain::analytics::{Aggregates, MinuteBucket};
use crate::app::domain::events::{DeliveryStatus, Event, EventBody};
use crate::app::domain::money::money;
use crate::app::domain::order::{DeliveryStep, OrderRecord, PaymentEntry};
use crate::app::read_model::{Model, ModelError};

/// The order as listed (`GET /api/orders`, `new_order`, `order_updated`).
pub(crate) fn order_summary_json(order: &OrderRecord) -> Value {
    let (customer, items, currency, total, created_at) = match &order.created {
        Some(c) => (
            json!(c.customer),
            json!(c
                .items
                .iter()
                .map(
                    |i| json!({"sku": i.sku, "quantity": i.quantity, "price": money(i.price_cents)})
                )
                .collect::<Vec<_>>()),
            json!(c.currency),
            json!(money(c.total_cents)),
            json!(c.at),
        ),
        None => (
            Value::Null,
            json!([]),
            Value::Null,
            Value::Null,
            Value::Null,
        ),
    };
    json!({
        "order_id": order.order_id,
        "customer": customer,
        "items": items,
        "currency": currency,
        "total": total,
        "status": order.status().as_str(),
        "paid": money(order.authorized_cents()),
        "payment_status": order.payments.last().map(|p| p.status.as_str()),
        "delivery_status": order.delivery_status().map(DeliveryStatus::as_str),
        "carrier": order.carrier(),
        "cancel_reason": order.cancelled.as_ref().and_then(|c| c.reason.clone()),
        "created_at": created_at,
        "updated_at": order.updated_at,
    })
}

/// The order with its payments and delivery timeline (`GET /api/orders/{id}`).
pub(crate) fn order_detail_json(order: &OrderRecord) -> Value {
    let mut v = order_summary_json(order);
    v["payments"] = json!(order
        .payments
        .iter()
        .map(|p| payment_json(&order.order_id, p))
        .collect::<Vec<_>>());
    v["timeline"] = timeline_json(&order.timeline);
    v
}

/// The order's delivery (`GET /api/deliveries`, `delivery_update`).
pub(crate) fn delivery_json(order: &OrderRecord) -> Value {
    json!({
        "order_id": order.order_id,
        "status": order.delivery_status().map(DeliveryStatus::as_str),
        "carrier": order.carrier(),
        "location": order.location(),
        "customer": order.created.as_ref().map(|c| c.customer.clone()),
        "created_at": order.timeline.first().map(|s| s.at),
        "updated_at": order.timeline.last().map(|s| s.at),
        "steps": order.timeline.len(),
    })
}

/// A delivery timeline as JSON, oldest step first.
pub(crate) fn timeline_json(timeline: &[DeliveryStep]) -> Value {
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
pub(crate) fn payment_json(order_id: &str, p: &PaymentEntry) -> Value {
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

/// Minor units by currency as decimals by currency.
fn money_by_currency(cents: &BTreeMap<String, i64>) -> BTreeMap<&str, f64> {
    cents.iter().map(|(c, v)| (c.as_str(), money(*v))).collect()
}

/// The `/api/stats` document (also pushed as the `stats` WebSocket event).
/// Revenue is reported per currency only: amounts of different currencies
/// are never added together.
pub(crate) fn stats_json(aggregates: &Aggregates, minutes: &[(i64, MinuteBucket)]) -> Value {
    let per_minute: Vec<Value> = minutes
        .iter()
        .map(|(minute, b)| {
            json!({
                "minute": minute,
                "orders": b.orders,
                "revenue": money_by_currency(&b.revenue_by_currency),
            })
        })
        .collect();
    json!({
        "orders": {
            "total": aggregates.orders_total,
            "by_status": aggregates.orders_by_status,
        },
        "revenue": money_by_currency(&aggregates.revenue_by_currency),
        "revenue_cents": aggregates.revenue_by_currency,
        "payments": {
            "total": aggregates.payments_by_status.values().sum::<u64>(),
            "by_status": aggregates.payments_by_status,
            "by_method_status": aggregates.payments_by_method_status,
            "success_rate": aggregates.payment_success_rate(),
        },
        "deliveries": {
            "total": aggregates.deliveries_by_status.values().sum::<u64>(),
            "by_status": aggregates.deliveries_by_status,
            "events": aggregates.delivery_events,
        },
        "events": {
            "by_topic": aggregates.events_by_topic,
            "duplicates": aggregates.duplicate_events,
            "invalid": aggregates.invalid_events,
        },
        "per_minute": per_minute,
    })
}

/// The `/api/stats` document of `model`.
pub(crate) async fn model_stats_json(model: &Model) -> Result<Value, ModelError> {
    Ok(stats_json(
        &model.aggregates().await?,
        &model.minutes(60).await?,
    ))
}

/// The 202 body of an accepted command.
pub(crate) fn accepted_json(accepted: &Accepted) -> Value {
    let mut v = json!({
        "event_id": accepted.event.event_id,
        "type": accepted.event.body.type_name(),
        "topic": accepted.topic,
        "partition": accepted.partition,
        "offset": accepted.offset,
        "order_id": accepted.event.order_id,
        "timestamp": accepted.event.timestamp,
    });
    if let Some((_, p)) = accepted.event.body.payment() {
        v["payment_id"] = json!(p.payment_id);
    }
    if let EventBody::PaymentRequested(p) = &accepted.event.body {
        // The processor decides; `pending` until the read model has its outcome.
        v["payment_id"] = json!(p.payment_id);
        match &accepted.outcome {
            Some((status, reason)) => {
                v["status"] = json!(status.as_str());
                if let Some(reason) = reason {
                    v["reason"] = json!(reason);
                }
            }
            None => v["status"] = json!("pending"),
        }
    }
    v
}

/// The `notification` WebSocket message of a notification event, if it is one.
pub(crate) fn notification_json(event: &Event) -> Option<Value> {
    let EventBody::Notification(n) = &event.body else {
        return None;
    };
    Some(json!({
        "notification_id": n.notification_id,
        "kind": n.kind,
        "severity": n.severity,
        "message": n.message,
        "order_id": event.order_id,
        "timestamp": event.timestamp,
        "source_event_id": n.source_event_id,
    }))
}

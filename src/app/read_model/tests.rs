//! The read model against a temporary sled database: the projection rule,
//! its independence from topic interleaving, and the listings. Must never:
//! write outside their temporary directory.

use std::collections::HashMap;

use std::sync::Arc;

use super::query::{OrderFilter, PaymentFilter};
use super::sled_store::{tree_name, SledModel};
use super::store::{Change, Model, SourceRecord};
use crate::app::domain::events::{
    DeliveryData, DeliveryStatus, Event, EventBody, LineItem, NotificationData, OrderCancelled,
    OrderCreated, PaymentData, PaymentStatus,
};
use crate::app::domain::status::OrderStatus;

fn temp_model() -> (tempfile::TempDir, Model) {
    let dir = tempfile::tempdir().unwrap();
    let storage = crate::storage::Storage::open(dir.path(), 0, 1 << 20).unwrap();
    let tree = storage.app_tree(&tree_name(1)).unwrap();
    let model = Model {
        store: Arc::new(SledModel { tree }),
        generation: 1,
    };
    (dir, model)
}

fn record(topic: &'static str, offset: i64, value: &[u8]) -> SourceRecord {
    SourceRecord {
        topic: Arc::from(topic),
        partition: 0,
        offset,
        value: Some(bytes::Bytes::copy_from_slice(value)),
    }
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

/// Apply `events` one transaction each, at the next offsets of their topics.
async fn apply_all(model: &Model, events: &[Event]) {
    let stored = model.stored_offsets().await.unwrap();
    let mut next: HashMap<&str, i64> = HashMap::new();
    for e in events {
        let bytes = e.to_bytes();
        let topic = e.body.topic();
        let offset = next
            .entry(topic)
            .or_insert_with(|| stored.get(&(topic.to_owned(), 0)).copied().unwrap_or(0));
        model
            .apply(vec![record(topic, *offset, &bytes)])
            .await
            .unwrap();
        *offset += 1;
    }
}

#[tokio::test]
async fn status_follows_the_lifecycle() {
    let (_dir, model) = temp_model();
    apply_all(&model, &[created("a", 1_000)]).await;
    assert_eq!(
        model.order("a").await.unwrap().unwrap().status(),
        OrderStatus::Created
    );
    apply_all(&model, &[paid("a", PaymentStatus::Authorized)]).await;
    assert_eq!(
        model.order("a").await.unwrap().unwrap().status(),
        OrderStatus::Paid
    );
    for s in [
        DeliveryStatus::Scheduled,
        DeliveryStatus::Shipped,
        DeliveryStatus::InTransit,
        DeliveryStatus::OutForDelivery,
        DeliveryStatus::Delivered,
    ] {
        apply_all(&model, &[delivery("a", s)]).await;
    }
    let order = model.order("a").await.unwrap().unwrap();
    assert_eq!(order.status(), OrderStatus::Delivered);
    let steps: Vec<_> = order.timeline.iter().map(|s| s.status).collect();
    assert_eq!(steps.len(), 5);
    assert_eq!(steps[0], DeliveryStatus::Scheduled);
    let agg = model.aggregates().await.unwrap();
    assert_eq!(agg.orders_total, 1);
    assert_eq!(agg.orders_by_status["delivered"], 1);
    assert_eq!(agg.deliveries_by_status["delivered"], 1);
    assert_eq!(agg.revenue_by_currency["EUR"], 500);
}

#[tokio::test]
async fn cancellation_wins_and_failed_payment_shows() {
    let (_dir, model) = temp_model();
    apply_all(&model, &[created("b", 1), paid("b", PaymentStatus::Failed)]).await;
    assert_eq!(
        model.order("b").await.unwrap().unwrap().status(),
        OrderStatus::PaymentFailed
    );
    apply_all(
        &model,
        &[Event::new(
            "b",
            EventBody::OrderCancelled(OrderCancelled { reason: None }),
        )],
    )
    .await;
    assert_eq!(
        model.order("b").await.unwrap().unwrap().status(),
        OrderStatus::Cancelled
    );
}

#[tokio::test]
async fn the_model_does_not_depend_on_topic_interleaving() {
    let events = vec![
        created("c", 60_000),
        paid("c", PaymentStatus::Authorized),
        delivery("c", DeliveryStatus::Scheduled),
        delivery("c", DeliveryStatus::Shipped),
        created("d", 120_000),
        paid("d", PaymentStatus::Failed),
    ];
    let (_d1, live) = temp_model();
    apply_all(&live, &events).await;
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
    apply_all(&replayed, &reordered).await;
    for id in ["c", "d"] {
        assert_eq!(
            live.order(id).await.unwrap(),
            replayed.order(id).await.unwrap()
        );
    }
    assert_eq!(
        live.aggregates().await.unwrap(),
        replayed.aggregates().await.unwrap()
    );
    assert_eq!(
        live.minutes(10).await.unwrap(),
        replayed.minutes(10).await.unwrap()
    );
}

#[tokio::test]
async fn duplicates_and_garbage_are_counted_not_applied() {
    let (_dir, model) = temp_model();
    let e = created("e", 5);
    apply_all(&model, &[e.clone(), e]).await;
    let garbage = b"{oops";
    model
        .apply(vec![record("orders", 7, garbage)])
        .await
        .unwrap();
    let agg = model.aggregates().await.unwrap();
    assert_eq!(agg.orders_total, 1);
    assert_eq!(agg.duplicate_events, 1);
    assert_eq!(agg.invalid_events, 1);
    assert_eq!(
        model.stored_offsets().await.unwrap()[&("orders".to_owned(), 0)],
        8
    );
}

#[tokio::test]
async fn listings_filter_and_paginate() {
    let (_dir, model) = temp_model();
    let mut events = Vec::new();
    for i in 0..5 {
        events.push(created(&format!("o{i}"), 1_000 + i));
    }
    events.push(paid("o1", PaymentStatus::Authorized));
    apply_all(&model, &events).await;
    let page = model.orders(&OrderFilter::default(), 0, 2).await.unwrap();
    assert_eq!(page.total, 5);
    assert_eq!(page.items[0].order_id, "o4", "newest first");
    let paid_only = OrderFilter {
        status: Some(OrderStatus::Paid),
        customer: None,
    };
    let page = model.orders(&paid_only, 0, 10).await.unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.items[0].order_id, "o1");
    let page = model
        .payments(&PaymentFilter::default(), 0, 10)
        .await
        .unwrap();
    assert_eq!(page.total, 1);
}

#[tokio::test]
async fn records_below_the_stored_offset_are_skipped_not_counted_again() {
    let (_dir, model) = temp_model();
    let bytes = created("f", 5).to_bytes();
    model
        .apply(vec![record("orders", 0, &bytes)])
        .await
        .unwrap();
    // A projector that lost the partition mid-batch hands the same record in again.
    let again = model
        .apply(vec![record("orders", 0, &bytes)])
        .await
        .unwrap();
    assert!(again.changes.is_empty() && again.offsets.is_empty());
    let agg = model.aggregates().await.unwrap();
    assert_eq!(agg.orders_total, 1);
    assert_eq!(agg.duplicate_events, 0);
    assert_eq!(
        model.stored_offsets().await.unwrap()[&("orders".to_owned(), 0)],
        1
    );
}

fn notification(order: &str, id: &str, severity: &str, at: i64) -> Event {
    let mut e = Event::new(
        order,
        EventBody::Notification(NotificationData {
            notification_id: id.into(),
            kind: "payment_failed".into(),
            severity: severity.into(),
            message: format!("about {order}"),
            source_event_id: uuid::Uuid::new_v4(),
        }),
    );
    e.timestamp = at;
    e
}

#[tokio::test]
async fn notifications_are_kept_once_each_and_listed_by_severity() {
    let (_dir, model) = temp_model();
    let first = notification("n1", "ntf-1", "warning", 1_000);
    // The notifier redelivers the first one (same id, a new event): in the
    // same batch and in a later one.
    let mut again = first.clone();
    again.event_id = uuid::Uuid::new_v4();
    let batch = vec![
        record("notifications", 0, &first.to_bytes()),
        record("notifications", 1, &again.to_bytes()),
        record(
            "notifications",
            2,
            &notification("n2", "ntf-2", "success", 2_000).to_bytes(),
        ),
    ];
    let applied = model.apply(batch).await.unwrap();
    let relayed = applied
        .changes
        .iter()
        .filter(|c| matches!(c, Change::Notification(_)))
        .count();
    assert_eq!(relayed, 2, "a redelivered notification is relayed once");
    let later = model
        .apply(vec![
            record("notifications", 3, &again.to_bytes()),
            record(
                "notifications",
                4,
                &notification("n3", "ntf-3", "warning", 3_000).to_bytes(),
            ),
        ])
        .await
        .unwrap();
    assert_eq!(later.changes.len(), 1);

    let all = model.notifications(None, 0, 10).await.unwrap();
    assert_eq!(all.total, 3);
    let ids: Vec<_> = all
        .items
        .iter()
        .map(|n| n.notification_id.as_str())
        .collect();
    assert_eq!(ids, ["ntf-3", "ntf-2", "ntf-1"], "newest first");
    assert_eq!(all.items[2].order_id, "n1");
    let warnings = model.notifications(Some("warning"), 1, 10).await.unwrap();
    assert_eq!(warnings.total, 2);
    assert_eq!(warnings.items.len(), 1);
    assert_eq!(warnings.items[0].notification_id, "ntf-1");
    let page = model.notifications(None, 1, 1).await.unwrap();
    assert_eq!((page.total, page.items.len()), (3, 1));
    assert_eq!(page.items[0].notification_id, "ntf-2");
    // Notifications are listed, not counted.
    let agg = model.aggregates().await.unwrap();
    assert_eq!(agg.duplicate_events + agg.invalid_events, 0);
}

//! The notifier: one consumer group shared by every node of a cluster
//! (`sluice-shop-notifier`), so each notable event is announced once, not
//! once per node. It reads `payments` and `deliveries` and produces a
//! `Notification` event to `notifications` for a failed or refunded payment,
//! a delivered parcel and a failed delivery.
//!
//! Delivery is at least once: offsets are committed after the notifications
//! of a batch are acknowledged, so a crash in between repeats them. Each
//! notification's id is derived from its source event, so readers can drop
//! the repeats. Every node's projector relays `notifications` to its
//! WebSocket clients.
//!
//! Must never: touch the read model, or import the other workers or HTTP.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use crate::app::domain::events::{
    DeliveryStatus, Event, EventBody, NotificationData, DELIVERIES_TOPIC, NOTIFICATIONS_TOPIC,
    PAYMENTS_TOPIC,
};
use crate::app::domain::money::money;
use crate::client::{Client, GroupConfig, GroupConsumer, GroupEvent, Producer};

/// The notifier's consumer group.
pub(crate) const GROUP_ID: &str = "sluice-shop-notifier";

/// The notification an event deserves, if any.
pub(crate) fn notification_for(event: &Event) -> Option<Event> {
    let (kind, severity, message) = match &event.body {
        EventBody::PaymentFailed(p) => (
            "payment_failed",
            "warning",
            format!(
                "Payment of {:.2} {} by {} for order {} failed{}",
                money(p.amount_cents),
                p.currency,
                p.method,
                event.order_id,
                p.reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
        ),
        EventBody::PaymentRefunded(p) => (
            "payment_refunded",
            "info",
            format!(
                "{:.2} {} refunded for order {}",
                money(p.amount_cents),
                p.currency,
                event.order_id
            ),
        ),
        body => match body.delivery() {
            Some((DeliveryStatus::Delivered, d)) => (
                "delivered",
                "success",
                format!(
                    "Order {} was delivered{}",
                    event.order_id,
                    d.carrier
                        .as_ref()
                        .map(|c| format!(" by {c}"))
                        .unwrap_or_default()
                ),
            ),
            Some((DeliveryStatus::Failed, d)) => (
                "delivery_failed",
                "warning",
                format!(
                    "Delivery of order {} failed{}",
                    event.order_id,
                    d.location
                        .as_ref()
                        .map(|l| format!(" at {l}"))
                        .unwrap_or_default()
                ),
            ),
            _ => return None,
        },
    };
    Some(Event::new(
        event.order_id.clone(),
        EventBody::Notification(NotificationData {
            notification_id: format!("ntf-{}", event.event_id.simple()),
            kind: kind.to_owned(),
            severity: severity.to_owned(),
            message,
            source_event_id: event.event_id,
        }),
    ))
}

/// Run the notifier until `shutdown`.
pub(crate) async fn run(client: Client, producer: Producer, mut shutdown: watch::Receiver<bool>) {
    let mut config = GroupConfig::new(GROUP_ID, &[PAYMENTS_TOPIC, DELIVERIES_TOPIC]);
    config.fetch.max_wait = Duration::from_millis(250);
    config.fetch.isolation_level = 1;
    let mut consumer = GroupConsumer::new(client, config);
    loop {
        let polled = tokio::select! {
            r = consumer.poll() => r,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let batches = match polled {
            Ok(GroupEvent::Records(b)) => b,
            Ok(GroupEvent::Assigned(_)) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "notifier poll failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
                continue;
            }
        };
        if batches.iter().all(|b| b.records.is_empty()) {
            continue;
        }
        // Where each partition of this poll started, to read it again if a
        // notification is not acknowledged.
        let starts: Vec<(String, i32, i64)> = batches
            .iter()
            .filter_map(|b| {
                b.records
                    .first()
                    .map(|r| (b.topic.to_string(), b.partition, r.offset))
            })
            .collect();
        let mut pending = Vec::new();
        for record in batches.iter().flat_map(|b| b.records.iter()) {
            let Some(Ok(event)) = record.value.as_deref().map(Event::from_bytes) else {
                continue;
            };
            let Some(notification) = notification_for(&event) else {
                continue;
            };
            let key = Bytes::from(notification.order_id.clone().into_bytes());
            match producer
                .send(
                    NOTIFICATIONS_TOPIC,
                    Some(key),
                    Some(Bytes::from(notification.to_bytes())),
                )
                .await
            {
                Ok(delivery) => pending.push(delivery),
                Err(e) => tracing::warn!(error = %e, "cannot queue a notification"),
            }
        }
        let mut all_sent = true;
        for delivery in pending {
            if let Err(e) = delivery.await {
                tracing::warn!(error = %e, "a notification was not acknowledged");
                all_sent = false;
            }
        }
        if all_sent {
            if let Err(e) = consumer.commit_positions().await {
                tracing::debug!(error = %e, "notifier commit failed");
            }
        } else {
            for (topic, partition, offset) in starts {
                consumer.seek(&topic, partition, offset);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
    }
    consumer.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::domain::events::{DeliveryData, PaymentData};

    #[test]
    fn notable_events_get_a_stable_notification_id() {
        let failed = Event::new(
            "o1",
            EventBody::PaymentFailed(PaymentData {
                payment_id: "p".into(),
                amount_cents: 1234,
                currency: "EUR".into(),
                method: "card".into(),
                reason: Some("insufficient funds".into()),
            }),
        );
        let n = notification_for(&failed).unwrap();
        let EventBody::Notification(data) = &n.body else {
            panic!("not a notification")
        };
        assert_eq!(data.kind, "payment_failed");
        assert!(data.message.contains("12.34 EUR"));
        assert_eq!(
            data.notification_id,
            format!("ntf-{}", failed.event_id.simple())
        );
        assert_eq!(n.body.topic(), NOTIFICATIONS_TOPIC);
        let shipped = Event::new(
            "o1",
            EventBody::DeliveryShipped(DeliveryData {
                carrier: None,
                location: None,
            }),
        );
        assert!(notification_for(&shipped).is_none());
    }
}

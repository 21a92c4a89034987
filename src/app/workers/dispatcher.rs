//! The notification dispatcher: the shop's `notifications` read as a queue
//! by one share group (KIP-932) shared by every node
//! (`sluice-shop-notification-dispatch`). The broker hands each notification
//! to one node at a time; the node delivers it (its outbound channel is the
//! log: one `notification dispatched` line each) and accepts it. A record
//! that is not a notification is rejected (never delivered again). A node
//! that stops with notifications in hand leaves them to the others when
//! their acquisition lock expires, and the broker counts deliveries, so a
//! notification is dispatched at least once and at most five times.
//!
//! The group's share-partitions start at the log start
//! (`share.auto.offset.reset=earliest`, set as a group config when the
//! dispatcher starts), so notifications written before its first fetch are
//! dispatched too. On a cluster every node's dispatcher is a member, and
//! each partition's leader hands its records out.
//!
//! A broker without share groups (a Kafka without `share.version`) answers
//! UNSUPPORTED_VERSION: the dispatcher says so once and stops; the rest of
//! the shop runs on.
//!
//! Must never: touch the read model, or import the other workers or HTTP.

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use tokio::sync::watch;

use crate::app::domain::events::{Event, EventBody, NOTIFICATIONS_TOPIC};
use crate::client::{Acknowledge, Client, ClientError, ConfigChange, ShareConsumer};

/// The dispatcher's share group.
pub(crate) const GROUP_ID: &str = "sluice-shop-notification-dispatch";

/// Tries at setting the group's `share.auto.offset.reset`, 500 ms apart.
const CONFIG_ATTEMPTS: u32 = 20;

/// How long a fetch waits for notifications.
const MAX_WAIT: Duration = Duration::from_millis(500);

/// Run the dispatcher until `shutdown`.
pub(crate) async fn run(client: Client, mut shutdown: watch::Receiver<bool>) {
    let earliest = [ConfigChange::Set(
        "share.auto.offset.reset".into(),
        "earliest".into(),
    )];
    // Retried while the broker is starting (a cluster forming); the share
    // group joins regardless, starting at the end if this never succeeds.
    for attempt in 1..=CONFIG_ATTEMPTS {
        match client.alter_group_configs(GROUP_ID, &earliest).await {
            Ok(()) => break,
            Err(e) if attempt == CONFIG_ATTEMPTS => {
                tracing::warn!(error = %e, "cannot make the dispatch group start at the earliest notification");
            }
            Err(e) => {
                tracing::debug!(error = %e, "dispatch group config not set yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
        }
    }
    let mut consumer = ShareConsumer::new(client, GROUP_ID, &[NOTIFICATIONS_TOPIC], MAX_WAIT);
    loop {
        let polled = tokio::select! {
            r = consumer.poll() => r,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let records = match polled {
            Ok(records) => records,
            Err(ClientError::Broker {
                error: ResponseError::UnsupportedVersion,
                ..
            }) => {
                tracing::warn!(
                    "the broker serves no share groups; notifications are not dispatched"
                );
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "notification dispatcher poll failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
                continue;
            }
        };
        for shared in &records {
            let event = shared.record.value.as_deref().map(Event::from_bytes);
            match event {
                Some(Ok(Event {
                    order_id,
                    body: EventBody::Notification(n),
                    ..
                })) => {
                    tracing::info!(
                        notification = n.notification_id.as_str(),
                        kind = n.kind.as_str(),
                        order = order_id.as_str(),
                        delivery = shared.delivery_count,
                        "notification dispatched: {}",
                        n.message
                    );
                    consumer.acknowledge(shared, Acknowledge::Accept);
                }
                _ => consumer.acknowledge(shared, Acknowledge::Reject),
            }
        }
    }
    consumer.close().await;
}

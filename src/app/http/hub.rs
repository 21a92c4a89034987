//! The broadcast side of the WebSocket push: every change the projector
//! applies becomes one `{"event": NAME, "data": {...}, "event_id"}` message, serialised
//! once into a `tokio::broadcast` channel of fixed capacity that every
//! connected browser reads (`ws`). It is the projector's `ModelListener`.
//!
//! Must never: write to the read model or talk to Kafka; it only reads the
//! model to build snapshots.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use uuid::Uuid;

use super::views::{
    delivery_json, model_stats_json, notification_json, order_summary_json, payment_json,
    timeline_json,
};
use crate::app::read_model::{
    Change, DeliveryFilter, Model, ModelError, OrderFilter, PaymentFilter,
};
use crate::app::workers::projector::ModelListener;

/// Items of each kind in a snapshot.
pub const SNAPSHOT_ITEMS: usize = 50;

/// The broadcast side of the push.
pub(crate) struct Hub {
    tx: broadcast::Sender<Utf8Bytes>,
    /// Clients connected right now.
    clients: AtomicUsize,
    /// Most clients at once (`--max-websocket-clients`).
    max_clients: usize,
}

/// Counts one connected client while it lives.
pub(crate) struct Connected(Arc<Hub>);

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
        crate::metrics::global().websocket_clients(-1);
    }
}

impl Hub {
    /// A hub buffering at most `capacity` messages for at most `max_clients`.
    pub(crate) fn new(capacity: usize, max_clients: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        Hub {
            tx,
            clients: AtomicUsize::new(0),
            max_clients,
        }
    }

    /// Count a client in until the returned guard is dropped; None when
    /// `max_clients` are connected already.
    pub(crate) fn try_connect(self: &Arc<Self>) -> Option<Connected> {
        self.clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_clients).then_some(n + 1)
            })
            .ok()?;
        crate::metrics::global().websocket_clients(1);
        Some(Connected(self.clone()))
    }

    /// The messages published from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Utf8Bytes> {
        self.tx.subscribe()
    }

    /// Send `{"event": name, "data": data}` to every client.
    pub(crate) fn publish(&self, name: &str, data: Value) {
        self.send(json!({"event": name, "data": data}));
    }

    /// Send `{"event": name, "data": data, "event_id": id}`: a message caused
    /// by the shop event `event_id` (one event may cause several messages).
    fn publish_for(&self, name: &str, data: Value, event_id: Uuid) {
        self.send(json!({"event": name, "data": data, "event_id": event_id}));
    }

    fn send(&self, message: Value) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let _ = self.tx.send(Utf8Bytes::from(message.to_string()));
    }

    /// Send what an applied batch changed.
    pub(crate) fn publish_changes(&self, changes: &[Change]) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        for change in changes {
            match change {
                Change::NewOrder(o, id) => {
                    self.publish_for("new_order", order_summary_json(o), *id)
                }
                Change::OrderUpdated(o, id) => {
                    self.publish_for("order_updated", order_summary_json(o), *id)
                }
                Change::NewPayment(order_id, p) => {
                    self.publish_for("new_payment", payment_json(order_id, p), p.event_id)
                }
                Change::DeliveryUpdate(o, step) => {
                    let mut data = delivery_json(o);
                    data["step"] = timeline_json(std::slice::from_ref(step))[0].clone();
                    self.publish_for("delivery_update", data, step.event_id)
                }
                Change::Notification(event) => {
                    if let Some(data) = notification_json(event) {
                        self.publish_for("notification", data, event.event_id)
                    }
                }
            }
        }
    }

    /// Clients connected right now.
    pub(crate) fn client_count(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }
}

#[async_trait::async_trait]
impl ModelListener for Hub {
    fn applied(&self, changes: &[Change]) {
        self.publish_changes(changes);
    }

    async fn replaced(&self, model: &Model) {
        if let Ok(snapshot) = snapshot(model).await {
            self.publish("snapshot", snapshot["data"].clone());
        }
    }
}

/// The snapshot message sent on connect (and after a client lagged).
pub(crate) async fn snapshot(model: &Model) -> Result<Value, ModelError> {
    let orders = model
        .orders(&OrderFilter::default(), 0, SNAPSHOT_ITEMS)
        .await?;
    let payments = model
        .payments(&PaymentFilter::default(), 0, SNAPSHOT_ITEMS)
        .await?;
    let deliveries = model
        .deliveries(&DeliveryFilter::default(), 0, SNAPSHOT_ITEMS)
        .await?;
    Ok(json!({
        "event": "snapshot",
        "data": {
            "stats": model_stats_json(model).await?,
            "orders": orders.items.iter().map(order_summary_json).collect::<Vec<_>>(),
            "payments": payments.items.iter().map(|(id, p)| payment_json(id, p)).collect::<Vec<_>>(),
            "deliveries": deliveries.items.iter().map(delivery_json).collect::<Vec<_>>(),
        }
    }))
}

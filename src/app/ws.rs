//! The WebSocket push (`GET /ws`): every change the projector applies goes
//! to every connected browser as `{"event": NAME, "data": {...}}`, NAME one of
//! `new_order`, `order_updated`, `new_payment`, `delivery_update`, `stats`,
//! `notification`. A client first receives
//! `{"event": "snapshot", "data": {"stats", "orders", "payments", "deliveries"}}`
//! (the 50 most recent of each), then live events.
//!
//! Memory is bounded: messages are serialised once into a `tokio::broadcast`
//! channel of fixed capacity. A client that falls behind by more than that
//! skips ahead: it gets a fresh snapshot instead of the messages it missed.
//! A client that does not take a message within `SEND_TIMEOUT`, or answers no
//! ping for `3 x PING_INTERVAL`, is disconnected.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use super::model::{
    payment_json, timeline_json, Change, DeliveryFilter, Model, OrderFilter, PaymentFilter,
};
use super::{AppState, Shop};

/// How often the server pings each client.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// How long one message may take to be written to a client.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message accepted from a client.
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Items of each kind in a snapshot.
pub const SNAPSHOT_ITEMS: usize = 50;
/// How often changed stats are pushed.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// The broadcast side of the push.
pub struct Hub {
    tx: broadcast::Sender<Utf8Bytes>,
    /// Clients connected right now.
    clients: AtomicUsize,
}

impl Hub {
    /// A hub buffering at most `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        Hub {
            tx,
            clients: AtomicUsize::new(0),
        }
    }

    /// Send `{"event": name, "data": data}` to every client.
    pub fn publish(&self, name: &str, data: Value) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let text = json!({"event": name, "data": data}).to_string();
        let _ = self.tx.send(Utf8Bytes::from(text));
    }

    /// Send what an applied batch changed.
    pub fn publish_changes(&self, changes: &[Change]) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        for change in changes {
            match change {
                Change::NewOrder(o) => self.publish("new_order", o.summary_json()),
                Change::OrderUpdated(o) => self.publish("order_updated", o.summary_json()),
                Change::NewPayment(order_id, p) => {
                    self.publish("new_payment", payment_json(order_id, p))
                }
                Change::DeliveryUpdate(o, step) => {
                    let mut data = o.delivery_json();
                    data["step"] = timeline_json(std::slice::from_ref(step))[0].clone();
                    self.publish("delivery_update", data)
                }
                Change::Notification(event) => {
                    if let super::events::EventBody::Notification(n) = &event.body {
                        self.publish(
                            "notification",
                            json!({
                                "notification_id": n.notification_id,
                                "kind": n.kind,
                                "severity": n.severity,
                                "message": n.message,
                                "order_id": event.order_id,
                                "timestamp": event.timestamp,
                                "source_event_id": n.source_event_id,
                            }),
                        )
                    }
                }
            }
        }
    }

    /// Clients connected right now.
    pub fn client_count(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }
}

/// The snapshot message sent on connect (and after a client lagged).
pub fn snapshot(model: &Model) -> Result<Value, super::model::ModelError> {
    let orders = model.orders(&OrderFilter::default(), 0, SNAPSHOT_ITEMS)?;
    let payments = model.payments(&PaymentFilter::default(), 0, SNAPSHOT_ITEMS)?;
    let deliveries = model.deliveries(&DeliveryFilter::default(), 0, SNAPSHOT_ITEMS)?;
    Ok(json!({
        "event": "snapshot",
        "data": {
            "stats": model.stats_json()?,
            "orders": orders.items.iter().map(|o| o.summary_json()).collect::<Vec<_>>(),
            "payments": payments.items.iter().map(|(id, p)| payment_json(id, p)).collect::<Vec<_>>(),
            "deliveries": deliveries.items.iter().map(|o| o.delivery_json()).collect::<Vec<_>>(),
        }
    }))
}

async fn snapshot_text(shop: &Shop) -> Option<Utf8Bytes> {
    let model = shop.model();
    match tokio::task::spawn_blocking(move || snapshot(&model)).await {
        Ok(Ok(v)) => Some(Utf8Bytes::from(v.to_string())),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot build a WebSocket snapshot");
            None
        }
        Err(_) => None,
    }
}

/// `GET /ws`.
pub async fn handler(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| session(state, socket))
}

struct Connected<'a>(&'a Hub);

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn send(socket: &mut WebSocket, message: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await,
        Ok(Ok(()))
    )
}

async fn session(state: AppState, mut socket: WebSocket) {
    let shop = &state.0;
    shop.hub.clients.fetch_add(1, Ordering::Relaxed);
    let _connected = Connected(&shop.hub);
    // Subscribe before reading the snapshot so nothing falls in between.
    let mut rx = shop.hub.tx.subscribe();
    let Some(first) = snapshot_text(shop).await else {
        return;
    };
    if !send(&mut socket, Message::Text(first)).await {
        return;
    }
    let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            message = rx.recv() => match message {
                Ok(text) => {
                    if !send(&mut socket, Message::Text(text)).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::debug!(skipped, "WebSocket client lagged; sending a fresh snapshot");
                    rx = rx.resubscribe();
                    let Some(text) = snapshot_text(shop).await else { return };
                    if !send(&mut socket, Message::Text(text)).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => last_heard = Instant::now(),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > PING_INTERVAL * 3 {
                    tracing::debug!("WebSocket client stopped answering pings");
                    return;
                }
                if !send(&mut socket, Message::Ping(Default::default())).await {
                    return;
                }
            }
        }
    }
}

/// Push `stats` once a second while the model changes.
pub async fn push_stats(shop: Arc<Shop>, mut shutdown: watch::Receiver<bool>) {
    let mut seen = u64::MAX;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(STATS_INTERVAL) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let version = shop.model_version.load(Ordering::Acquire);
        if version == seen || shop.hub.client_count() == 0 {
            continue;
        }
        seen = version;
        let model = shop.model();
        if let Ok(Ok(stats)) = tokio::task::spawn_blocking(move || model.stats_json()).await {
            shop.hub.publish("stats", stats);
        }
    }
}

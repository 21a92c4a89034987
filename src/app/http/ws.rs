//! The WebSocket push (`GET /ws`): every change the projector applies goes
//! to every connected browser as `{"event": NAME, "data": {...}}`, NAME one of
//! `new_order`, `order_updated`, `new_payment`, `delivery_update`, `stats`,
//! `notification`. A message caused by a shop event also carries that
//! event's id (`"event_id"`); one event may cause several messages (a
//! delivery step is a `delivery_update` and an `order_updated`), so a client
//! counts events and writes its feed by distinct `event_id`. A client first receives
//! `{"event": "snapshot", "data": {"stats", "orders", "payments", "deliveries"}}`
//! (the 50 most recent of each), then live events.
//!
//! Memory is bounded: messages are serialised once into a `tokio::broadcast`
//! channel of fixed capacity. A client that falls behind by more than that
//! skips ahead: it gets a fresh snapshot instead of the messages it missed.
//! A client that does not take a message within `SEND_TIMEOUT`, or answers no
//! ping for `3 x PING_INTERVAL`, is disconnected. At most
//! `--max-websocket-clients` are connected at once; another upgrade is answered 503.
//!
//! The broadcast channel and the messages are `hub`'s; this file owns the
//! sessions and the periodic `stats` push. Must never: write to the read
//! model or talk to Kafka.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use super::hub::{snapshot, Connected, Hub};
use super::state::AppState;
use super::views::model_stats_json;
use crate::app::read_model::ReadModel;

/// How often the server pings each client.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// How long one message may take to be written to a client.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message accepted from a client.
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// How often changed stats are pushed.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

async fn snapshot_text(read_model: &ReadModel) -> Option<Utf8Bytes> {
    match snapshot(&read_model.current()).await {
        Ok(v) => Some(Utf8Bytes::from(v.to_string())),
        Err(e) => {
            tracing::warn!(error = %e, "cannot build a WebSocket snapshot");
            None
        }
    }
}

/// `GET /ws`: 503 while `--max-websocket-clients` are connected.
pub(crate) async fn handler(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    let Some(connected) = state.hub.try_connect() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many WebSocket clients\n",
        )
            .into_response();
    };
    upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| session(state, socket, connected))
}

async fn send(socket: &mut WebSocket, message: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await,
        Ok(Ok(()))
    )
}

/// One client's session; `_connected` counts it until it ends.
async fn session(state: AppState, mut socket: WebSocket, _connected: Connected) {
    // Subscribe before reading the snapshot so nothing falls in between.
    let mut rx = state.hub.subscribe();
    let Some(first) = snapshot_text(&state.read_model).await else {
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
                    crate::metrics::global().websocket_dropped(skipped);
                    rx = rx.resubscribe();
                    let Some(text) = snapshot_text(&state.read_model).await else { return };
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
pub(crate) async fn push_stats(
    read_model: Arc<ReadModel>,
    hub: Arc<Hub>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut seen = u64::MAX;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(STATS_INTERVAL) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let version = read_model.version();
        if version == seen || hub.client_count() == 0 {
            continue;
        }
        seen = version;
        if let Ok(stats) = model_stats_json(&read_model.current()).await {
            hub.publish("stats", stats);
        }
    }
}

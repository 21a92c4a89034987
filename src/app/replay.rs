//! Replay (`POST /api/replay`): rebuild the read model from offset 0 of the
//! shop's topics into a fresh tree, then swap it in.
//!
//! 1. A new generation's tree (`app:model:{n+1}`) is filled by a plain
//!    partition fetcher (no group: it must read everything, whoever owns the
//!    partitions) up to the log end offsets sampled at the start, while the
//!    live projector keeps serving.
//! 2. The projector then pauses, brings the new model exactly up to the live
//!    model's offsets, writes the new generation to `app:meta`, swaps the
//!    model in, drops the old tree, repositions its consumer at the new
//!    model's offsets and pushes a fresh `snapshot` to WebSocket clients.
//!
//! A crash mid-replay leaves the old generation current; the unfinished tree
//! is dropped at the next start.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::events::SHOP_TOPICS;
use super::model::{tree_name, Model, ModelError};
use super::projector::apply_batches;
use super::time::now_ms;
use super::{Shop, META_TREE};
use crate::client::consumer::{ConsumerConfig, PartitionFetcher, StartOffset};

/// What the replay hands to the projector to finish.
pub struct SwapRequest {
    /// The model being rebuilt.
    pub model: Model,
    /// Its fetcher, positioned where phase 1 stopped.
    pub fetcher: PartitionFetcher,
    /// Counts events applied, for progress.
    pub applied: Arc<AtomicU64>,
    /// Told when the swap is done (or why not).
    pub reply: oneshot::Sender<Result<(), String>>,
}

/// The replay's state, as `GET /api/replay` reports it.
#[derive(Debug, Clone, Default)]
struct Status {
    state: &'static str,
    from_generation: u64,
    to_generation: u64,
    events_total: u64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    error: Option<String>,
}

/// Status and the hand-over channel.
pub struct Control {
    status: Mutex<Status>,
    /// Events applied by the running (or last) replay.
    applied: Arc<AtomicU64>,
    tx: mpsc::Sender<SwapRequest>,
    rx: Mutex<Option<mpsc::Receiver<SwapRequest>>>,
}

impl Default for Control {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(1);
        Control {
            status: Mutex::new(Status {
                state: "idle",
                ..Status::default()
            }),
            applied: Arc::new(AtomicU64::new(0)),
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Control {
    /// The projector's end of the hand-over channel (taken once).
    pub fn take_receiver(&self) -> Option<mpsc::Receiver<SwapRequest>> {
        lock(&self.rx).take()
    }

    /// The `/api/replay` document.
    pub fn status_json(&self) -> Value {
        let s = lock(&self.status).clone();
        let applied = self.applied.load(Ordering::Relaxed);
        let progress = match s.state {
            "done" => 1.0,
            _ if s.events_total == 0 => {
                if s.state == "idle" {
                    0.0
                } else {
                    1.0
                }
            }
            _ => (applied as f64 / s.events_total as f64).min(1.0),
        };
        json!({
            "state": s.state,
            "from_generation": s.from_generation,
            "to_generation": s.to_generation,
            "events_applied": applied,
            "events_total": s.events_total,
            "progress": progress,
            "started_at": s.started_at,
            "finished_at": s.finished_at,
            "duration_ms": s.started_at.map(|a| s.finished_at.unwrap_or_else(now_ms) - a),
            "error": s.error,
        })
    }

    /// True while a replay runs.
    pub fn running(&self) -> bool {
        matches!(lock(&self.status).state, "running" | "swapping")
    }
}

/// Make `model` the live one: record its generation, then swap it in.
pub fn install(shop: &Shop, model: Model) -> Result<(), ModelError> {
    let meta = shop.storage.db.open_tree(META_TREE)?;
    meta.insert("generation", &model.generation.to_be_bytes())?;
    meta.flush()?;
    shop.set_model(model);
    Ok(())
}

/// Start a replay; false if one is already running.
pub fn start(shop: Arc<Shop>) -> bool {
    {
        let mut s = lock(&shop.replay.status);
        if matches!(s.state, "running" | "swapping") {
            return false;
        }
        let from = shop.model().generation;
        *s = Status {
            state: "running",
            from_generation: from,
            to_generation: from + 1,
            events_total: 0,
            started_at: Some(now_ms()),
            finished_at: None,
            error: None,
        };
    }
    shop.replay.applied.store(0, Ordering::Relaxed);
    tokio::spawn(async move {
        let result = replay(&shop).await;
        let mut s = lock(&shop.replay.status);
        s.finished_at = Some(now_ms());
        match result {
            Ok(()) => s.state = "done",
            Err(e) => {
                tracing::warn!(error = %e, "replay failed");
                s.state = "failed";
                s.error = Some(e);
            }
        }
    });
    true
}

async fn replay(shop: &Arc<Shop>) -> Result<(), String> {
    if shop.client().is_none() {
        return Err("the shop is not connected to Kafka".to_owned());
    }
    // A client of its own, so its fetches do not delay the REST path's produces.
    let client = crate::client::Client::connect(shop.client_config())
        .await
        .map_err(|e| e.to_string())?;
    let generation = lock(&shop.replay.status).to_generation;
    let name = tree_name(generation);
    let db = &shop.storage.db;
    db.drop_tree(name.as_bytes()).map_err(|e| e.to_string())?;
    let model = Model::new(db.open_tree(&name).map_err(|e| e.to_string())?, generation);
    let outcome = fill(shop, &client, model.clone()).await;
    if outcome.is_err() {
        let _ = model.drop_tree(db);
    }
    outcome
}

async fn fill(
    shop: &Arc<Shop>,
    client: &crate::client::Client,
    model: Model,
) -> Result<(), String> {
    let config = ConsumerConfig {
        max_wait: Duration::from_millis(100),
        ..ConsumerConfig::default()
    };
    let mut fetcher = PartitionFetcher::new(client.clone(), config);
    let mut ends: HashMap<(String, i32), i64> = HashMap::new();
    let mut total = 0u64;
    for topic in SHOP_TOPICS {
        let info = client.topic(topic).await.map_err(|e| e.to_string())?;
        let partitions: Vec<i32> = info.partitions.iter().map(|p| p.partition).collect();
        let starts = client
            .list_offsets(topic, &partitions, -2)
            .await
            .map_err(|e| e.to_string())?;
        let latest = client
            .list_offsets(topic, &partitions, -1)
            .await
            .map_err(|e| e.to_string())?;
        for (p, end) in &latest {
            let start = starts.iter().find(|(sp, _)| sp == p).map_or(0, |(_, s)| *s);
            total += (end - start).max(0) as u64;
            ends.insert((topic.to_owned(), *p), *end);
        }
        fetcher
            .assign(topic, &partitions, StartOffset::Earliest)
            .await
            .map_err(|e| e.to_string())?;
    }
    lock(&shop.replay.status).events_total = total;
    loop {
        let behind = ends
            .iter()
            .any(|(tp, end)| fetcher.position(&tp.0, tp.1).is_some_and(|p| p < *end));
        if !behind {
            break;
        }
        let batches = fetcher.poll().await.map_err(|e| e.to_string())?;
        let (_, _, n) = apply_batches(&model, batches, None)
            .await
            .map_err(|e| e.to_string())?;
        shop.replay.applied.fetch_add(n as u64, Ordering::Relaxed);
    }
    lock(&shop.replay.status).state = "swapping";
    let (reply, done) = oneshot::channel();
    shop.replay
        .tx
        .send(SwapRequest {
            model,
            fetcher,
            applied: Arc::clone(&shop.replay.applied),
            reply,
        })
        .await
        .map_err(|_| "the projector is not running".to_owned())?;
    done.await
        .map_err(|_| "the projector stopped during the swap".to_owned())?
}

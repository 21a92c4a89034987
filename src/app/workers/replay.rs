//! Replay (`POST /api/replay`): rebuild the read model from offset 0 of the
//! shop's topics into a fresh tree, then swap it in.
//!
//! 1. A new generation (on sled the tree `app:model:{n+1}`, on PostgreSQL
//!    the rows of the sequence's next generation) is filled by a plain
//!    partition fetcher (no group: it must read everything, whoever owns the
//!    partitions) up to the log end offsets sampled at the start, while the
//!    live projector keeps serving.
//! 2. The projector then pauses, brings the new model exactly up to the live
//!    model's offsets, records the new generation as current, swaps the
//!    model in, drops the old generation, repositions its consumer at the new
//!    model's offsets and pushes a fresh `snapshot` to WebSocket clients.
//!
//! A crash mid-replay leaves the old generation current; on sled the
//! unfinished tree is dropped at the next start. On a shared PostgreSQL
//! model the other nodes move to the new generation when they see it
//! installed (`ReadModel::follow`).
//!
//! Must never: swap the model itself (the projector does, between two of its
//! polls), or import the command side or HTTP.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::apply::apply_batches;
use super::projector::SwapRequest;
use crate::app::domain::events::SHOP_TOPICS;
use crate::app::domain::time::now_ms;
use crate::app::kafka::KafkaLink;
use crate::app::read_model::{Model, ReadModel};
use crate::client::{Client, ConsumerConfig, PartitionFetcher, StartOffset};

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

/// The replay: its status, the hand-over channel to the projector, and
/// what it reads and rebuilds.
pub(crate) struct Replay {
    status: Mutex<Status>,
    /// Events applied by the running (or last) replay.
    applied: Arc<AtomicU64>,
    tx: mpsc::Sender<SwapRequest>,
    rx: Mutex<Option<mpsc::Receiver<SwapRequest>>>,
    /// The model it rebuilds a generation of.
    read_model: Arc<ReadModel>,
    /// The cluster it reads from.
    link: Arc<KafkaLink>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Replay {
    /// Idle, rebuilding `read_model` from the cluster of `link`.
    pub(crate) fn new(read_model: Arc<ReadModel>, link: Arc<KafkaLink>) -> Self {
        let (tx, rx) = mpsc::channel(1);
        Replay {
            status: Mutex::new(Status {
                state: "idle",
                ..Status::default()
            }),
            applied: Arc::new(AtomicU64::new(0)),
            tx,
            rx: Mutex::new(Some(rx)),
            read_model,
            link,
        }
    }

    /// The projector's end of the hand-over channel (taken once).
    pub(crate) fn take_receiver(&self) -> Option<mpsc::Receiver<SwapRequest>> {
        lock(&self.rx).take()
    }

    /// The `/api/replay` document.
    pub(crate) fn status_json(&self) -> Value {
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
    pub(crate) fn running(&self) -> bool {
        matches!(lock(&self.status).state, "running" | "swapping")
    }
}

/// Start a replay; false if one is already running.
pub(crate) fn start(replay: &Arc<Replay>) -> bool {
    {
        let mut s = lock(&replay.status);
        if matches!(s.state, "running" | "swapping") {
            return false;
        }
        let from = replay.read_model.current().generation;
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
    replay.applied.store(0, Ordering::Relaxed);
    let replay = Arc::clone(replay);
    tokio::spawn(async move {
        let result = rebuild(&replay).await;
        let mut s = lock(&replay.status);
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

async fn rebuild(replay: &Replay) -> Result<(), String> {
    if replay.link.client().is_none() {
        return Err("the shop is not connected to Kafka".to_owned());
    }
    // A client of its own, so its fetches do not delay the REST path's produces.
    let client = Client::connect(replay.link.client_config())
        .await
        .map_err(|e| e.to_string())?;
    let generation = lock(&replay.status).to_generation;
    let model = replay
        .read_model
        .fresh_generation(generation)
        .await
        .map_err(|e| e.to_string())?;
    lock(&replay.status).to_generation = model.generation;
    let outcome = fill(replay, &client, model.clone()).await;
    if outcome.is_err() {
        let _ = replay.read_model.discard(model).await;
    }
    outcome
}

async fn fill(replay: &Replay, client: &Client, model: Model) -> Result<(), String> {
    // read_committed, up to the last stable offsets: aborted payment
    // outcomes never reach the model.
    let config = ConsumerConfig {
        max_wait: Duration::from_millis(100),
        isolation_level: 1,
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
            .list_offsets_isolated(topic, &partitions, -1, 1)
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
    lock(&replay.status).events_total = total;
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
        replay.applied.fetch_add(n as u64, Ordering::Relaxed);
    }
    lock(&replay.status).state = "swapping";
    let (reply, done) = oneshot::channel();
    replay
        .tx
        .send(SwapRequest {
            model,
            fetcher,
            applied: Arc::clone(&replay.applied),
            reply,
        })
        .await
        .map_err(|_| "the projector is not running".to_owned())?;
    done.await
        .map_err(|_| "the projector stopped during the swap".to_owned())?
}

//! The projector: applies the shop's topics to the read model and hands
//! what changed to the WebSocket hub. On the node's own sled model it runs in
//! a consumer group of its own per node (`sluice-shop-projector-{instance}`,
//! so every node reads every partition and serves the whole read model); on
//! a shared PostgreSQL model every node joins the database's group, so the
//! partitions are split between the nodes and a dead node's partitions move
//! to the others (`ReadModel::projector_group`).
//!
//! Exactly-once into the model: each fetched batch is applied in one
//! transaction of the store that also stores, per topic-partition, the next
//! offset to apply (and skips records below it). On (re)assignment the projector resumes from those stored offsets,
//! not from the group's committed ones: the stored offset is atomic with the
//! model, so after a crash it is exactly where the model stopped, while a
//! committed offset may lag it (crash between apply and commit) or even lead
//! it (if the model's trees were lost or rebuilt). Offsets are committed to
//! the group every `COMMIT_INTERVAL`, only after sled has flushed the model
//! they describe, so the group's lag as seen by Kafka tools never claims more
//! than what is durable. When the live generation changes under it (another
//! node installed a replayed model), it repositions at that generation's
//! offsets before applying anything more.
//!
//! A replay (`super::replay`) hands a rebuilt model over through a
//! [`SwapRequest`]; the projector finishes it between two polls. What changed
//! goes out through a [`ModelListener`] registered by the layer above (the
//! WebSocket hub), never through an import of it.
//!
//! Must never: import the replay, the command side or HTTP.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::apply::apply_batches;
use crate::app::domain::events::SHOP_TOPICS;
use crate::app::read_model::{Change, Model, ModelError, ReadModel};
use crate::client::{Client, GroupConfig, GroupConsumer, GroupEvent, PartitionFetcher};

/// Next offset to apply, per topic-partition.
type Offsets = HashMap<(String, i32), i64>;

/// How often applied offsets are flushed and committed.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// Told what the projector did to the live model.
#[async_trait::async_trait]
pub(crate) trait ModelListener: Send + Sync {
    /// A batch was applied; `changes` says what changed.
    fn applied(&self, changes: &[Change]);
    /// The live model was replaced whole by `model` (after a replay).
    async fn replaced(&self, model: &Model);
}

/// What the replay hands to the projector to finish.
pub(crate) struct SwapRequest {
    /// The model being rebuilt.
    pub(crate) model: Model,
    /// Its fetcher, positioned where phase 1 stopped.
    pub(crate) fetcher: PartitionFetcher,
    /// Counts events applied, for progress.
    pub(crate) applied: Arc<AtomicU64>,
    /// Told when the swap is done (or why not).
    pub(crate) reply: oneshot::Sender<Result<(), String>>,
}

/// What the projector works on.
pub(crate) struct Projector {
    /// The live model it keeps.
    pub(crate) read_model: Arc<ReadModel>,
    /// This node's shop instance (names the group).
    pub(crate) instance_id: String,
    /// Told about every change.
    pub(crate) listener: Arc<dyn ModelListener>,
    /// Rebuilt models handed over by the replay.
    pub(crate) swaps: Option<mpsc::Receiver<SwapRequest>>,
}

/// Run the projector until `shutdown`.
pub(crate) async fn run(projector: Projector, client: Client, mut shutdown: watch::Receiver<bool>) {
    let Projector {
        read_model,
        instance_id,
        listener,
        mut swaps,
    } = projector;
    let mut config = GroupConfig::new(read_model.projector_group(&instance_id), &SHOP_TOPICS);
    config.group_instance_id = Some(format!("projector-{instance_id}"));
    config.fetch.max_wait = Duration::from_millis(250);
    // Payment outcomes are written in transactions: only committed ones count.
    config.fetch.isolation_level = 1;
    let mut consumer = GroupConsumer::new(client, config);
    let mut last_commit = Instant::now();
    let mut dirty = false;
    let mut flushing: Option<tokio::task::JoinHandle<Option<Offsets>>> = None;
    // The generation the consumer's positions belong to.
    let mut positioned = read_model.current().generation;
    loop {
        if let Some(rx) = swaps.as_mut() {
            if let Ok(request) = rx.try_recv() {
                finish_replay(&read_model, &listener, &mut consumer, request).await;
                positioned = read_model.current().generation;
            }
        }
        let polled = tokio::select! {
            r = consumer.poll() => r,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        match polled {
            Err(e) => {
                tracing::warn!(error = %e, "projector poll failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
            }
            Ok(GroupEvent::Assigned(partitions)) => {
                let model = read_model.current();
                positioned = model.generation;
                let stored = match model.stored_offsets().await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the read model's offsets");
                        HashMap::new()
                    }
                };
                for (topic, partition) in &partitions {
                    let next = stored
                        .get(&(topic.clone(), *partition))
                        .copied()
                        .unwrap_or(0);
                    consumer.seek(topic, *partition, next);
                }
                tracing::info!(
                    partitions = partitions.len(),
                    "projector assigned; resuming from the model's offsets"
                );
            }
            Ok(GroupEvent::Records(batches)) => {
                if batches.iter().all(|b| b.records.is_empty()) {
                    // Nothing new; fall through to the commit check.
                    applied_up_to_positions(&consumer, &read_model);
                } else if read_model.current().generation != positioned {
                    // Another node installed a new generation: these records
                    // were positioned for the old one.
                    let model = read_model.current();
                    positioned = model.generation;
                    if let Ok(stored) = model.stored_offsets().await {
                        seek_assigned(&mut consumer, &stored);
                    }
                } else {
                    let model = read_model.current();
                    match apply_batches(&model, batches, None).await {
                        Ok((changes, last, _)) => {
                            for (topic, partition, next) in &last {
                                read_model.progress.set_applied(topic, *partition, *next);
                            }
                            applied_up_to_positions(&consumer, &read_model);
                            read_model.progress.notify();
                            read_model.bump_version();
                            listener.applied(&changes);
                            dirty = true;
                        }
                        Err(e) => {
                            // Nothing was stored: re-read from the model's offsets.
                            tracing::error!(error = %e, "projector cannot apply a batch; retrying");
                            let model = read_model.current();
                            positioned = model.generation;
                            if let Ok(stored) = model.stored_offsets().await {
                                seek_assigned(&mut consumer, &stored);
                            }
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
            }
        }
        // The flush runs beside the loop (it can take tens of milliseconds
        // under load, and applying must not stall behind it); the commit of
        // what it made durable follows once it is done.
        if flushing.as_ref().is_some_and(|f| f.is_finished()) {
            if let Some(finished) = flushing.take() {
                // Finished already: this await returns at once.
                if let Ok(Some(durable)) = finished.await {
                    commit(&consumer, &durable).await;
                }
            }
        }
        if dirty && flushing.is_none() && last_commit.elapsed() >= COMMIT_INTERVAL {
            flushing = Some(tokio::spawn(flush(Arc::clone(&read_model))));
            dirty = false;
            last_commit = Instant::now();
        }
    }
    if let Some(f) = flushing.take() {
        let _ = f.await;
    }
    if let Some(durable) = flush(Arc::clone(&read_model)).await {
        commit(&consumer, &durable).await;
    }
    consumer.close().await;
}

/// Everything before the consumer's positions is applied: they also count
/// the transaction markers and aborted records read_committed skips, which
/// no record's offset covers.
fn applied_up_to_positions(consumer: &GroupConsumer, read_model: &ReadModel) {
    let positions = consumer.positions();
    let mut moved = false;
    for (topic, partition, position) in positions {
        if read_model
            .progress
            .applied_at(&topic, partition)
            .map_or(position > 0, |a| a < position)
        {
            read_model.progress.set_applied(&topic, partition, position);
            moved = true;
        }
    }
    if moved {
        read_model.progress.notify();
    }
}

/// Position every assigned partition at the next offset `stored` says the
/// model needs (0 for a partition it has not seen).
fn seek_assigned(consumer: &mut GroupConsumer, stored: &Offsets) {
    for (topic, partition) in consumer.assignment().to_vec() {
        let next = stored
            .get(&(topic.clone(), partition))
            .copied()
            .unwrap_or(0);
        consumer.seek(&topic, partition, next);
    }
}

/// Flush the model; returns the offsets that are now durable.
async fn flush(read_model: Arc<ReadModel>) -> Option<Offsets> {
    let applied = read_model.progress.applied();
    match read_model.flush().await {
        Ok(()) => Some(applied),
        Err(e) => {
            tracing::error!(error = %e, "cannot flush the read model; not committing");
            None
        }
    }
}

/// Commit the durable offsets of our partitions to the group.
async fn commit(consumer: &GroupConsumer, durable: &Offsets) {
    let offsets: Vec<(String, i32, i64)> = consumer
        .assignment()
        .iter()
        .filter_map(|(t, p)| durable.get(&(t.clone(), *p)).map(|o| (t.clone(), *p, *o)))
        .collect();
    if let Err(e) = consumer.commit(&offsets).await {
        tracing::debug!(error = %e, "projector offset commit failed (the model's own offsets stand)");
    }
}

/// Bring a replayed model up to the live one, swap it in, and reposition.
async fn finish_replay(
    read_model: &ReadModel,
    listener: &Arc<dyn ModelListener>,
    consumer: &mut GroupConsumer,
    mut request: SwapRequest,
) {
    let live = read_model.current();
    let outcome = async {
        let targets = live.stored_offsets().await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let behind = targets.iter().any(|(tp, &target)| {
                request
                    .fetcher
                    .position(&tp.0, tp.1)
                    .is_some_and(|p| p < target)
            });
            if !behind {
                break;
            }
            if Instant::now() > deadline {
                return Err(ModelError::Corrupt {
                    key: "-".to_owned(),
                    reason: "replay could not catch up with the live model".to_owned(),
                });
            }
            let batches = request
                .fetcher
                .poll()
                .await
                .map_err(|e| ModelError::Corrupt {
                    key: "-".to_owned(),
                    reason: format!("replay fetch failed: {e}"),
                })?;
            let (_, _, n) = apply_batches(&request.model, batches, Some(&targets)).await?;
            request.applied.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(())
    }
    .await;
    if let Err(e) = outcome {
        let _ = request.reply.send(Err(e.to_string()));
        return;
    }
    let new_model = request.model.clone();
    let stored = match new_model.stored_offsets().await {
        Ok(s) => s,
        Err(e) => {
            let _ = request.reply.send(Err(e.to_string()));
            return;
        }
    };
    if let Err(e) = read_model.install(new_model).await {
        let _ = request.reply.send(Err(e.to_string()));
        return;
    }
    seek_assigned(consumer, &stored);
    read_model.progress.reset_applied(stored);
    read_model.bump_version();
    listener.replaced(&read_model.current()).await;
    if let Err(e) = read_model.discard(live).await {
        tracing::warn!(error = %e, "cannot drop the replaced read model");
    }
    let _ = request.reply.send(Ok(()));
}

//! The projector: a consumer group of its own per node
//! (`sluice-shop-projector-{instance}`, so every node reads every partition
//! and serves the whole read model), applying the shop's topics to the read
//! model and handing what changed to the WebSocket hub.
//!
//! Exactly-once into the model: each fetched batch is applied in one sled
//! transaction that also stores, per topic-partition, the next offset to
//! apply. On (re)assignment the projector resumes from those stored offsets,
//! not from the group's committed ones: the stored offset is atomic with the
//! model, so after a crash it is exactly where the model stopped, while a
//! committed offset may lag it (crash between apply and commit) or even lead
//! it (if the model's trees were lost or rebuilt). Offsets are committed to
//! the group every `COMMIT_INTERVAL`, only after sled has flushed the model
//! they describe, so the group's lag as seen by Kafka tools never claims more
//! than what is durable.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::events::SHOP_TOPICS;
use super::model::{Change, Model, ModelError, SourceRecord};
use super::replay::SwapRequest;
use super::Shop;
use crate::client::consumer::FetchedBatch;
use crate::client::group::{GroupConfig, GroupConsumer, GroupEvent};
use crate::client::Client;

/// Next offset to apply, per topic-partition.
type Offsets = HashMap<(String, i32), i64>;

/// How often applied offsets are flushed and committed.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// The projector group of the node whose shop instance is `instance_id`.
pub fn group_id(instance_id: &str) -> String {
    format!("sluice-shop-projector-{instance_id}")
}

/// Apply fetched batches to `model` in one transaction (on a blocking thread).
pub async fn apply_batches(
    model: &Model,
    batches: Vec<FetchedBatch>,
    below: Option<&HashMap<(String, i32), i64>>,
) -> Result<(Vec<Change>, Vec<(String, i32, i64)>, usize), ModelError> {
    let model = model.clone();
    let below = below.cloned();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut records = Vec::new();
        let mut last: Vec<(String, i32, i64)> = Vec::new();
        for batch in &batches {
            let limit = below
                .as_ref()
                .map(|b| {
                    b.get(&(batch.topic.to_string(), batch.partition))
                        .copied()
                        .unwrap_or(0)
                })
                .unwrap_or(i64::MAX);
            let mut next = None;
            for r in batch.records.iter().filter(|r| r.offset < limit) {
                records.push(SourceRecord {
                    topic: &batch.topic,
                    partition: batch.partition,
                    offset: r.offset,
                    value: r.value.as_deref(),
                });
                next = Some(r.offset + 1);
            }
            if let Some(next) = next {
                last.push((batch.topic.to_string(), batch.partition, next));
            }
        }
        let count = records.len();
        model.apply(&records).map(|changes| (changes, last, count))
    })
    .await;
    match outcome {
        Ok(result) => result,
        Err(e) => Err(ModelError::Corrupt {
            key: "-".to_owned(),
            reason: format!("apply task failed: {e}"),
        }),
    }
}

/// Run the projector until `shutdown`.
pub async fn run(shop: Arc<Shop>, client: Client, mut shutdown: watch::Receiver<bool>) {
    let mut config = GroupConfig::new(group_id(shop.instance_id()), &SHOP_TOPICS);
    config.group_instance_id = Some(format!("projector-{}", shop.instance_id()));
    config.fetch.max_wait = Duration::from_millis(250);
    let mut consumer = GroupConsumer::new(client, config);
    let mut swaps = shop.replay.take_receiver();
    let mut last_commit = Instant::now();
    let mut dirty = false;
    let mut flushing: Option<tokio::task::JoinHandle<Option<Offsets>>> = None;
    loop {
        if let Some(rx) = swaps.as_mut() {
            if let Ok(request) = rx.try_recv() {
                finish_replay(&shop, &mut consumer, request).await;
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
                let stored = match shop.model().stored_offsets() {
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
                } else {
                    let model = shop.model();
                    match apply_batches(&model, batches, None).await {
                        Ok((changes, last, _)) => {
                            for (topic, partition, next) in &last {
                                shop.progress.set_applied(topic, *partition, *next);
                            }
                            shop.progress.notify();
                            shop.model_version.fetch_add(1, Ordering::AcqRel);
                            shop.hub.publish_changes(&changes);
                            dirty = true;
                        }
                        Err(e) => {
                            // Nothing was stored: re-read from the model's offsets.
                            tracing::error!(error = %e, "projector cannot apply a batch; retrying");
                            if let Ok(stored) = model.stored_offsets() {
                                for (topic, partition) in consumer.assignment().to_vec() {
                                    let next = stored
                                        .get(&(topic.clone(), partition))
                                        .copied()
                                        .unwrap_or(0);
                                    consumer.seek(&topic, partition, next);
                                }
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
            flushing = Some(tokio::spawn(flush(Arc::clone(&shop))));
            dirty = false;
            last_commit = Instant::now();
        }
    }
    if let Some(f) = flushing.take() {
        let _ = f.await;
    }
    if let Some(durable) = flush(Arc::clone(&shop)).await {
        commit(&consumer, &durable).await;
    }
    consumer.close().await;
}

/// Flush the model; returns the offsets that are now durable.
async fn flush(shop: Arc<Shop>) -> Option<Offsets> {
    let applied = shop.progress.applied();
    match shop.storage.flush().await {
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
async fn finish_replay(shop: &Shop, consumer: &mut GroupConsumer, mut request: SwapRequest) {
    let live = shop.model();
    let outcome = async {
        let targets = live.stored_offsets()?;
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
    let stored = match new_model.stored_offsets() {
        Ok(s) => s,
        Err(e) => {
            let _ = request.reply.send(Err(e.to_string()));
            return;
        }
    };
    if let Err(e) = super::replay::install(shop, new_model) {
        let _ = request.reply.send(Err(e.to_string()));
        return;
    }
    for (topic, partition) in consumer.assignment().to_vec() {
        let next = stored
            .get(&(topic.clone(), partition))
            .copied()
            .unwrap_or(0);
        consumer.seek(&topic, partition, next);
    }
    shop.progress.reset_applied(stored);
    shop.model_version.fetch_add(1, Ordering::AcqRel);
    if let Ok(Ok(snapshot)) = tokio::task::spawn_blocking({
        let model = shop.model();
        move || super::ws::snapshot(&model)
    })
    .await
    {
        shop.hub.publish("snapshot", snapshot["data"].clone());
    }
    if let Err(e) = live.drop_tree(&shop.storage.db) {
        tracing::warn!(error = %e, "cannot drop the replaced read model");
    }
    let _ = request.reply.send(Ok(()));
}

//! The sender: one background task per producer that drains ready batches
//! from the accumulator, encodes them into one Produce request per leader
//! (pipelined up to `max_in_flight_per_broker`), and settles each batch from
//! the response: acknowledged, retried after a backoff (with a metadata
//! refresh when the leader may have moved) or failed. Also obtains the
//! producer id of an idempotent producer.
//!
//! Must never: block the producer's callers (they only take the accumulator
//! lock briefly), or reorder a partition's batches on the connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, ProduceRequest, ProduceResponse, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::time::Instant;
use uuid::Uuid;

use super::accumulator::{Accumulator, Drained, ProducerBatch};
use super::config::ProducerConfig;
use super::delivery::BatchAck;
use super::encoding::ProducerIdentity;
use super::transaction::Transactions;
use crate::client::cluster::Client;
use crate::client::connection::PendingResponse;
use crate::client::error::ClientError;

/// State shared by the producer handle, its sender task and its request tasks.
pub(super) struct ProducerShared {
    pub(super) client: Client,
    pub(super) config: ProducerConfig,
    /// The producer id and epoch (a transactional producer's epoch moves
    /// with each EndTxn under KIP-890 part 2: [`ProducerShared::identity`]).
    pub(super) identity: Mutex<ProducerIdentity>,
    pub(super) accumulator: Mutex<Accumulator>,
    /// Wakes the sender: a batch became ready, a request finished, a retry is due.
    pub(super) wake: Notify,
    /// Bytes of records that may still be buffered.
    pub(super) buffer: Semaphore,
    /// Batches created and not yet completed.
    pub(super) unfinished_batches: AtomicUsize,
    /// Signalled whenever a batch completes (for `flush`).
    pub(super) batch_done: Notify,
    /// A metadata refresh is under way; do not start another.
    pub(super) refreshing: AtomicBool,
    /// Set by `close`: the sender exits once everything is sent.
    pub(super) closing: AtomicBool,
    /// The transaction manager of a transactional producer.
    pub(super) txn: Option<Transactions>,
}

impl ProducerShared {
    /// The producer id and epoch batches are sent with now.
    pub(super) fn identity(&self) -> ProducerIdentity {
        *self.identity.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A transaction ended with a new producer id or epoch: take it, and
    /// start sequence numbers again.
    pub(super) fn renew_identity(&self, producer_id: i64, producer_epoch: i16) {
        let mut identity = self.identity.lock().unwrap_or_else(|p| p.into_inner());
        if (identity.producer_id, identity.producer_epoch) != (producer_id, producer_epoch) {
            identity.producer_id = producer_id;
            identity.producer_epoch = producer_epoch;
            self.lock().restart_sequences();
        }
    }

    /// The accumulator, locked (only for appends and drains).
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Accumulator> {
        self.accumulator.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Complete a batch: resolve its deliveries, give its buffer memory back.
    pub(super) fn finish(&self, batch: ProducerBatch, result: Result<BatchAck, ClientError>) {
        if let (Some(txn), Err(error)) = (&self.txn, &result) {
            txn.note_failure(error);
        }
        batch.completion.complete(result);
        self.buffer.add_permits(batch.buffered_bytes);
        self.unfinished_batches.fetch_sub(1, Ordering::AcqRel);
        self.batch_done.notify_waiters();
    }
}

/// Ask any broker for a producer id (idempotent, non-transactional producer).
pub(super) async fn init_producer_id(
    client: &Client,
    config: &ProducerConfig,
) -> Result<ProducerIdentity, ClientError> {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id((-1).into())
        .with_producer_epoch(-1);
    let mut attempt = 0;
    loop {
        let result = async {
            let conn = client.any_broker().await?;
            let response = conn.request(&request).await?;
            match ResponseError::try_from_code(response.error_code) {
                None => Ok(ProducerIdentity {
                    producer_id: response.producer_id.0,
                    producer_epoch: response.producer_epoch,
                    transactional: false,
                }),
                Some(error) => Err(ClientError::broker(ApiKey::InitProducerId, error, None)),
            }
        }
        .await;
        match result {
            Err(e) if e.is_retriable() && attempt < config.retries => {
                attempt += 1;
                tokio::time::sleep(config.retry_backoff).await;
            }
            other => return other,
        }
    }
}

/// The sender task: drain ready batches, dispatch one Produce request per
/// leader with a free slot, sleep until the next linger deadline or wake-up.
pub(super) async fn run_sender(shared: Arc<ProducerShared>) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<i32>();
    let mut in_flight: HashMap<i32, usize> = HashMap::new();
    // Brokers we could not reach, and until when to leave them alone.
    let mut unreachable: HashMap<i32, Instant> = HashMap::new();
    loop {
        while let Ok(broker) = done_rx.try_recv() {
            if let Some(n) = in_flight.get_mut(&broker) {
                *n = n.saturating_sub(1);
            }
        }
        unreachable.retain(|_, until| *until > Instant::now());
        let Drained {
            requests,
            mut next_deadline,
            mut stale_topics,
            expired,
        } = shared
            .lock()
            .drain(&shared.config, &shared.client, &in_flight, &unreachable);
        for batch in expired {
            let error = ClientError::DeliveryTimeout {
                topic: batch.topic.to_string(),
                partition: batch.partition,
                timeout_ms: shared.config.delivery_timeout.as_millis() as u64,
            };
            shared.finish(batch, Err(error));
        }
        for (broker, mut batches) in requests {
            tracing::trace!(
                broker,
                batches = batches.len(),
                "dispatching produce request"
            );
            // Requests are queued on the connection here, one after the other,
            // so a partition's batches reach the broker in sequence order;
            // only the wait for each response runs in its own task.
            match dispatch(&shared, broker, &mut batches).await {
                Ok(Some(pending)) => {
                    *in_flight.entry(broker).or_insert(0) += 1;
                    let shared = Arc::clone(&shared);
                    let done = done_tx.clone();
                    tokio::spawn(async move {
                        let outcome = pending.wait().await.map(Some);
                        settle_response(&shared, batches, outcome);
                        let _ = done.send(broker);
                    });
                }
                Ok(None) => settle_response(&shared, batches, Ok(None)),
                Err(error) if error.is_retriable() => {
                    // Nothing reached the broker: requeue without using up an
                    // attempt (as Kafka's client does for a node that is not
                    // ready) and leave the broker alone for a backoff period.
                    // Batches still expire after `delivery_timeout`.
                    tracing::debug!(broker, %error, "cannot send to broker; backing off");
                    let until = Instant::now() + shared.config.retry_backoff;
                    unreachable.insert(broker, until);
                    next_deadline = Some(next_deadline.map_or(until, |d| d.min(until)));
                    for batch in batches {
                        if !stale_topics.iter().any(|t| **t == *batch.topic) {
                            stale_topics.push(batch.topic.to_string());
                        }
                        requeue(&shared, batch);
                    }
                }
                Err(error) => settle_response(&shared, batches, Err(error)),
            }
        }
        if !stale_topics.is_empty() {
            spawn_metadata_refresh(&shared, stale_topics);
        }
        let idle = in_flight.values().all(|&n| n == 0)
            && shared.unfinished_batches.load(Ordering::Acquire) == 0;
        if idle && shared.closing.load(Ordering::Acquire) {
            return;
        }
        if next_deadline.is_some_and(|d| d <= Instant::now()) {
            // More is sendable right now; a timer would round up to 1 ms.
            tokio::task::yield_now().await;
            continue;
        }
        let sleep = async {
            match next_deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tracing::trace!(
            ?next_deadline,
            unfinished = shared.unfinished_batches.load(Ordering::Relaxed),
            "sender waiting"
        );
        tokio::select! {
            _ = shared.wake.notified() => {}
            Some(broker) = done_rx.recv() => {
                if let Some(n) = in_flight.get_mut(&broker) {
                    *n = n.saturating_sub(1);
                }
            }
            _ = sleep => {}
        }
    }
}

fn spawn_metadata_refresh(shared: &Arc<ProducerShared>, topics: Vec<String>) {
    if shared.refreshing.swap(true, Ordering::AcqRel) {
        return;
    }
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        if let Err(e) = shared.client.refresh_metadata(&names).await {
            tracing::debug!(error = %e, "producer metadata refresh failed");
            tokio::time::sleep(shared.config.retry_backoff).await;
        }
        shared.refreshing.store(false, Ordering::Release);
        shared.wake.notify_one();
    });
}

/// Settle each batch of one Produce request from its outcome: `Ok(None)`
/// means acks=0 (nothing to wait for).
fn settle_response(
    shared: &Arc<ProducerShared>,
    batches: Vec<ProducerBatch>,
    outcome: Result<Option<ProduceResponse>, ClientError>,
) {
    let acknowledged_at = Instant::now();
    let mut stale_topics: Vec<String> = Vec::new();
    match outcome {
        Err(error) => {
            if error.needs_metadata_refresh() {
                for batch in &batches {
                    if !stale_topics.iter().any(|t| **t == *batch.topic) {
                        stale_topics.push(batch.topic.to_string());
                    }
                }
            }
            for batch in batches {
                settle_failure(shared, batch, error.clone());
            }
        }
        Ok(None) => {
            for batch in batches {
                let ack = BatchAck {
                    base_offset: -1,
                    log_append_time_ms: -1,
                    acknowledged_at,
                };
                shared.finish(batch, Ok(ack));
            }
        }
        Ok(Some(response)) => {
            for batch in batches {
                let found = response.responses.iter().find_map(|t| {
                    let same_topic = t.name.0.as_str() == &*batch.topic
                        || (!t.topic_id.is_nil()
                            && shared
                                .client
                                .cached_topic(&batch.topic)
                                .is_some_and(|i| i.topic_id == t.topic_id));
                    if !same_topic {
                        return None;
                    }
                    t.partition_responses
                        .iter()
                        .find(|p| p.index == batch.partition)
                });
                let Some(p) = found else {
                    let error = ClientError::Metadata(format!(
                        "Produce response has no result for {}-{}",
                        batch.topic, batch.partition
                    ));
                    settle_failure(shared, batch, error);
                    continue;
                };
                match ResponseError::try_from_code(p.error_code) {
                    None => {
                        let ack = BatchAck {
                            base_offset: p.base_offset,
                            log_append_time_ms: p.log_append_time_ms,
                            acknowledged_at,
                        };
                        shared.finish(batch, Ok(ack));
                    }
                    // An earlier attempt of this very batch was written.
                    Some(ResponseError::DuplicateSequenceNumber) if shared.config.idempotent => {
                        let ack = BatchAck {
                            base_offset: -1,
                            log_append_time_ms: -1,
                            acknowledged_at,
                        };
                        shared.finish(batch, Ok(ack));
                    }
                    Some(error) => {
                        let error = ClientError::partition(
                            ApiKey::Produce,
                            error,
                            &batch.topic,
                            batch.partition,
                            p.error_message.as_ref().map(|m| m.to_string()),
                        );
                        if error.needs_metadata_refresh()
                            && !stale_topics.iter().any(|t| **t == *batch.topic)
                        {
                            stale_topics.push(batch.topic.to_string());
                        }
                        settle_failure(shared, batch, error);
                    }
                }
            }
        }
    }
    if !stale_topics.is_empty() {
        spawn_metadata_refresh(shared, stale_topics);
    }
}

/// Encode the batches and queue one Produce request to `broker`.
/// `Ok(None)` means acks=0: there is no response to wait for.
async fn dispatch(
    shared: &ProducerShared,
    broker: i32,
    batches: &mut [ProducerBatch],
) -> Result<Option<PendingResponse<ProduceRequest>>, ClientError> {
    let config = &shared.config;
    let identity = shared.identity();
    if let Some(txn) = &shared.txn {
        // The coordinator must know a partition before its first batch
        // (under KIP-890 part 2 the partition's leader tells it).
        let partitions: Vec<(Arc<str>, i32)> = batches
            .iter()
            .map(|b| (Arc::clone(&b.topic), b.partition))
            .collect();
        txn.add_partitions(&shared.client, identity, &partitions)
            .await?;
    }
    let conn = shared.client.broker(broker).await?;
    // Produce v13 names topics by id; stay below it if an id is unknown.
    let mut topic_ids: HashMap<Arc<str>, Uuid> = HashMap::new();
    for batch in batches.iter() {
        if !topic_ids.contains_key(&batch.topic) {
            let id = shared
                .client
                .cached_topic(&batch.topic)
                .map_or(Uuid::nil(), |i| i.topic_id);
            topic_ids.insert(Arc::clone(&batch.topic), id);
        }
    }
    let mut cap = if topic_ids.values().any(Uuid::is_nil) {
        12
    } else {
        i16::MAX
    };
    if let Some(txn) = &shared.txn {
        // v12 asks the leader to add the partition to the transaction: only
        // when the coordinator runs KIP-890 part 2 for this producer.
        cap = cap.min(txn.produce_version_cap());
    }
    let version = conn.version_for_capped::<ProduceRequest>(cap)?;

    let mut topic_data: Vec<TopicProduceData> = Vec::new();
    for batch in batches.iter_mut() {
        let records = batch.encode(identity, config.compression)?;
        let partition = PartitionProduceData::default()
            .with_index(batch.partition)
            .with_records(Some(records));
        match topic_data
            .iter_mut()
            .find(|t| t.name.0.as_str() == &*batch.topic)
        {
            Some(t) => t.partition_data.push(partition),
            None => topic_data.push(
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(batch.topic.to_string())))
                    .with_topic_id(
                        topic_ids
                            .get(&batch.topic)
                            .copied()
                            .unwrap_or_else(Uuid::nil),
                    )
                    .with_partition_data(vec![partition]),
            ),
        }
    }
    let request = ProduceRequest::default()
        .with_transactional_id(
            shared
                .txn
                .as_ref()
                .map(|t| TransactionalId(StrBytes::from_string(t.id.clone()))),
        )
        .with_acks(config.acks)
        .with_timeout_ms(i32::try_from(config.ack_timeout.as_millis()).unwrap_or(i32::MAX))
        .with_topic_data(topic_data);
    if config.acks == 0 {
        conn.send_without_response(&request, version).await?;
        return Ok(None);
    }
    conn.send(&request, version).await.map(Some)
}

/// Retry a failed batch if the error allows it and attempts remain; else fail it.
fn settle_failure(shared: &ProducerShared, mut batch: ProducerBatch, error: ClientError) {
    let config = &shared.config;
    let retriable = error.is_retriable()
        || (config.idempotent
            && matches!(
                error,
                ClientError::Broker {
                    error: ResponseError::OutOfOrderSequenceNumber,
                    ..
                }
            ));
    if !retriable || batch.attempts >= config.retries {
        tracing::debug!(topic = %batch.topic, partition = batch.partition, %error, "batch failed");
        shared.finish(batch, Err(error));
        return;
    }
    tracing::debug!(topic = %batch.topic, partition = batch.partition, %error, attempt = batch.attempts + 1, "retrying batch");
    batch.attempts += 1;
    batch.retry_at = Some(Instant::now() + config.retry_backoff);
    requeue(shared, batch);
    shared.wake.notify_one();
}

/// Put a batch back in its partition's queue so it is sent again (or fail
/// it if the partition is gone).
fn requeue(shared: &ProducerShared, batch: ProducerBatch) {
    let refused = shared.lock().requeue(batch);
    if let Some(batch) = refused {
        shared.finish(batch, Err(ClientError::Closed));
    }
}

//! The producer: records are appended to a per-partition batch, and one
//! background *sender* task ships ready batches to partition leaders.
//!
//! - Partitioning: keyed records go to `toPositive(murmur2(key)) % partitions`
//!   (the Java client's rule, see [`partitioner`](super::partitioner));
//!   records without a key stick to one partition until its batch is full,
//!   then move to the next (sticky round robin).
//! - Batching: a batch is *ready* when it reaches `batch_size` bytes or when
//!   it is `linger` old. The sender drains ready batches into one Produce
//!   request per leader (one batch per partition per request, as Kafka
//!   requires), with up to `max_in_flight_per_broker` requests pipelined on
//!   each connection. While all slots are busy, records keep accumulating, so
//!   batches grow under load even with `linger = 0`. The sender writes the
//!   requests to the connection itself, in order (only the waits for
//!   responses run in their own tasks), so a partition's batches reach the
//!   broker in the order they were filled.
//! - Acks 0/1/-1; retriable errors (stale leader, connection loss, timeouts)
//!   are retried `retries` times after `retry_backoff`, with a metadata
//!   refresh when the leader may have moved. A retried batch goes back in
//!   front of younger batches of its partition.
//! - Idempotence (optional): a producer id from InitProducerId and a sequence
//!   number per partition, so the broker discards duplicates from retries.
//! - A record not acknowledged within `delivery_timeout` fails; a broker that
//!   cannot be reached is backed off without using up retries (Kafka's rule).
//!
//! Memory is bounded: `buffer_memory` bytes of records may wait for an
//! acknowledgement; `send` waits for room beyond that.
//!
//! Never: block the caller on the network in `send` (beyond the first
//! metadata lookup of a topic), or allocate per record beyond the record itself.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::time::Instant;
use uuid::Uuid;

use super::cluster::Client;
use super::connection::PendingResponse;
use super::error::ClientError;
use super::partitioner::partition_for_key;

/// Size of a v2 record batch header, in bytes.
const BATCH_HEADER_BYTES: usize = 61;
/// Upper bound of a record's framing overhead (length, attributes, deltas,
/// key/value lengths, header count), in bytes.
const RECORD_OVERHEAD_BYTES: usize = 21;

/// How the producer batches, acknowledges and retries.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Acknowledgements required: 0 (none, fire and forget), 1 (leader), -1 (all in-sync replicas).
    pub acks: i16,
    /// A batch is sent once it holds this many bytes.
    pub batch_size: usize,
    /// A non-full batch is sent once it is this old.
    pub linger: Duration,
    /// Produce requests pipelined per broker connection.
    pub max_in_flight_per_broker: usize,
    /// How many times a batch is retried after a retriable error.
    pub retries: u32,
    /// Pause before a retry.
    pub retry_backoff: Duration,
    /// How long the broker may wait for replication (Produce `timeout_ms`).
    pub ack_timeout: Duration,
    /// Soft cap of one Produce request; more batches wait for the next request.
    pub max_request_bytes: usize,
    /// Bytes of records that may wait for an acknowledgement before `send` waits.
    pub buffer_memory: usize,
    /// A record not acknowledged this long after it was batched fails with
    /// [`ClientError::DeliveryTimeout`] (Kafka's `delivery.timeout.ms`).
    pub delivery_timeout: Duration,
    /// Compression codec of the record batches.
    pub compression: Compression,
    /// Use a producer id and sequence numbers so retries cannot duplicate.
    pub idempotent: bool,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            acks: -1,
            batch_size: 16 * 1024,
            linger: Duration::from_millis(5),
            max_in_flight_per_broker: 5,
            retries: 10,
            retry_backoff: Duration::from_millis(100),
            ack_timeout: Duration::from_secs(30),
            max_request_bytes: 1024 * 1024,
            buffer_memory: 32 * 1024 * 1024,
            delivery_timeout: Duration::from_secs(120),
            compression: Compression::None,
            idempotent: false,
        }
    }
}

/// Where a record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The partition it went to.
    pub partition: i32,
    /// Its offset, or -1 when unknown (acks=0).
    pub offset: i64,
    /// The broker's log append time, or -1 when the topic uses create time.
    pub log_append_time_ms: i64,
    /// When the acknowledgement was received (for latency measurements).
    pub acknowledged_at: Instant,
}

/// What a completed batch resolved to.
#[derive(Debug, Clone, Copy)]
struct BatchAck {
    base_offset: i64,
    log_append_time_ms: i64,
    acknowledged_at: Instant,
}

/// The one-shot outcome of a batch, shared by the [`Delivery`] of each of its records.
#[derive(Debug, Default)]
struct BatchCompletion {
    state: Mutex<CompletionState>,
}

#[derive(Debug, Default)]
struct CompletionState {
    result: Option<Result<BatchAck, ClientError>>,
    /// Deliveries waiting for the result.
    wakers: Vec<Waker>,
}

impl BatchCompletion {
    fn complete(&self, result: Result<BatchAck, ClientError>) {
        let wakers = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.result.is_some() {
                return;
            }
            state.result = Some(result);
            std::mem::take(&mut state.wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }
}

/// A future resolving to where one record was written, once its batch is
/// acknowledged. Dropping it does not cancel the record.
#[derive(Debug)]
pub struct Delivery {
    completion: Arc<BatchCompletion>,
    partition: i32,
    /// The record's position in its batch.
    index: u32,
    /// Slot of our waker in the completion's list, once registered.
    waker_slot: Option<usize>,
}

impl Delivery {
    /// The partition the record was assigned to (known before the acknowledgement).
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The outcome if the batch is already complete.
    pub fn try_result(&self) -> Option<Result<RecordMetadata, ClientError>> {
        let state = self
            .completion
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        state.result.as_ref().map(|r| self.metadata(r))
    }

    fn metadata(
        &self,
        result: &Result<BatchAck, ClientError>,
    ) -> Result<RecordMetadata, ClientError> {
        result
            .as_ref()
            .map_err(Clone::clone)
            .map(|ack| RecordMetadata {
                partition: self.partition,
                offset: if ack.base_offset >= 0 {
                    ack.base_offset + i64::from(self.index)
                } else {
                    -1
                },
                log_append_time_ms: ack.log_append_time_ms,
                acknowledged_at: ack.acknowledged_at,
            })
    }
}

impl Future for Delivery {
    type Output = Result<RecordMetadata, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut state = this
            .completion
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(result) = state.result.as_ref() {
            return Poll::Ready(this.metadata(result));
        }
        match this.waker_slot {
            Some(slot) if slot < state.wakers.len() => {
                if !state.wakers[slot].will_wake(cx.waker()) {
                    state.wakers[slot] = cx.waker().clone();
                }
            }
            _ => {
                this.waker_slot = Some(state.wakers.len());
                state.wakers.push(cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

/// Records of one partition on their way to the broker.
struct ProducerBatch {
    topic: Arc<str>,
    partition: i32,
    /// Per-partition creation order, to put retried batches back in place.
    ordinal: u64,
    records: Vec<Record>,
    /// Estimated encoded size.
    size_bytes: usize,
    /// Buffer memory to give back once the batch is done.
    buffered_bytes: usize,
    created: Instant,
    /// Set by `flush`: ready now, whatever its age.
    force: bool,
    completion: Arc<BatchCompletion>,
    attempts: u32,
    retry_at: Option<Instant>,
    /// The first record's sequence number (idempotence), assigned on first send.
    base_sequence: Option<i32>,
    /// The encoded batch, kept so a retry resends identical bytes.
    encoded: Option<Bytes>,
}

impl ProducerBatch {
    fn new(topic: Arc<str>, partition: i32, ordinal: u64) -> Self {
        Self {
            topic,
            partition,
            ordinal,
            records: Vec::new(),
            size_bytes: BATCH_HEADER_BYTES,
            buffered_bytes: 0,
            created: Instant::now(),
            force: false,
            completion: Arc::new(BatchCompletion::default()),
            attempts: 0,
            retry_at: None,
            base_sequence: None,
            encoded: None,
        }
    }

    fn encode(
        &mut self,
        identity: ProducerIdentity,
        compression: Compression,
    ) -> Result<Bytes, ClientError> {
        if let Some(encoded) = &self.encoded {
            return Ok(encoded.clone());
        }
        let base_sequence = self.base_sequence.unwrap_or(-1);
        for (i, record) in self.records.iter_mut().enumerate() {
            record.producer_id = identity.producer_id;
            record.producer_epoch = identity.producer_epoch;
            // The encoder derives the batch's base sequence from the first
            // record and keeps records together only while offset - sequence
            // is constant, so sequences advance with offsets even without
            // idempotence (the broker ignores them for producer id -1).
            record.sequence = base_sequence.wrapping_add(i as i32);
        }
        let mut buf = BytesMut::with_capacity(self.size_bytes);
        RecordBatchEncoder::encode(
            &mut buf,
            self.records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .map_err(|e| ClientError::Codec {
            action: "encode",
            api: ApiKey::Produce,
            version: 2,
            reason: format!("record batch: {e}"),
        })?;
        let encoded = buf.freeze();
        // The records are no longer needed; free them now, keep the bytes.
        self.records = Vec::new();
        self.encoded = Some(encoded.clone());
        Ok(encoded)
    }
}

/// The producer id and epoch stamped on batches (-1/-1 without idempotence).
#[derive(Debug, Clone, Copy)]
struct ProducerIdentity {
    producer_id: i64,
    producer_epoch: i16,
}

/// Batches of one partition.
struct PartitionQueue {
    /// The batch records are appended to.
    open: Option<ProducerBatch>,
    /// Full or retrying batches, oldest first.
    ready: VecDeque<ProducerBatch>,
    /// Next batch ordinal.
    next_ordinal: u64,
    /// Next sequence number to hand out (idempotence).
    next_sequence: i32,
}

impl PartitionQueue {
    fn new() -> Self {
        Self {
            open: None,
            ready: VecDeque::new(),
            next_ordinal: 0,
            next_sequence: 0,
        }
    }
}

/// Batches of one topic, and where its keyless records currently go.
struct TopicQueues {
    name: Arc<str>,
    partitions: Vec<PartitionQueue>,
    sticky_partition: usize,
}

/// Everything waiting to be sent, under one lock held only for appends and drains.
#[derive(Default)]
struct Accumulator {
    topics: HashMap<String, TopicQueues>,
}

/// State shared by the producer handle, its sender task and its request tasks.
struct ProducerShared {
    client: Client,
    config: ProducerConfig,
    identity: ProducerIdentity,
    accumulator: Mutex<Accumulator>,
    /// Wakes the sender: a batch became ready, a request finished, a retry is due.
    wake: Notify,
    /// Bytes of records that may still be buffered.
    buffer: Semaphore,
    /// Batches created and not yet completed.
    unfinished_batches: AtomicUsize,
    /// Signalled whenever a batch completes (for `flush`).
    batch_done: Notify,
    /// A metadata refresh is under way; do not start another.
    refreshing: AtomicBool,
    /// Set by `close`: the sender exits once everything is sent.
    closing: AtomicBool,
}

impl ProducerShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Accumulator> {
        self.accumulator.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn finish(&self, batch: ProducerBatch, result: Result<BatchAck, ClientError>) {
        batch.completion.complete(result);
        self.buffer.add_permits(batch.buffered_bytes);
        self.unfinished_batches.fetch_sub(1, Ordering::AcqRel);
        self.batch_done.notify_waiters();
    }
}

/// Stops the sender task when the last [`Producer`] clone is dropped.
struct ProducerHandle {
    shared: Arc<ProducerShared>,
    sender: tokio::task::AbortHandle,
}

impl Drop for ProducerHandle {
    fn drop(&mut self) {
        self.sender.abort();
        let abandoned: Vec<ProducerBatch> = {
            let mut acc = self.shared.lock();
            acc.topics
                .values_mut()
                .flat_map(|t| t.partitions.iter_mut())
                .flat_map(|p| p.open.take().into_iter().chain(p.ready.drain(..)))
                .collect()
        };
        for batch in abandoned {
            self.shared.finish(batch, Err(ClientError::Closed));
        }
    }
}

/// A Kafka producer. Cheap to clone; clones share batches and the sender.
#[derive(Clone)]
pub struct Producer {
    handle: Arc<ProducerHandle>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("config", &self.handle.shared.config)
            .finish()
    }
}

impl Producer {
    /// Start a producer on `client`. With `idempotent`, obtains a producer id first.
    pub async fn new(client: Client, config: ProducerConfig) -> Result<Self, ClientError> {
        if !matches!(config.acks, -1..=1) {
            return Err(ClientError::Config(format!(
                "acks must be -1, 0 or 1, not {}",
                config.acks
            )));
        }
        if config.idempotent && (config.acks != -1 || config.max_in_flight_per_broker > 5) {
            return Err(ClientError::Config(
                "idempotence needs acks=-1 and at most 5 requests in flight".to_owned(),
            ));
        }
        if config.buffer_memory < config.batch_size || config.max_in_flight_per_broker == 0 {
            return Err(ClientError::Config(
                "buffer_memory must hold a batch and max_in_flight_per_broker must be positive"
                    .to_owned(),
            ));
        }
        let identity = if config.idempotent {
            init_producer_id(&client, &config).await?
        } else {
            ProducerIdentity {
                producer_id: -1,
                producer_epoch: -1,
            }
        };
        let shared = Arc::new(ProducerShared {
            client,
            identity,
            accumulator: Mutex::new(Accumulator::default()),
            wake: Notify::new(),
            buffer: Semaphore::new(config.buffer_memory.min(Semaphore::MAX_PERMITS)),
            unfinished_batches: AtomicUsize::new(0),
            batch_done: Notify::new(),
            refreshing: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            config,
        });
        let sender = tokio::spawn(run_sender(Arc::clone(&shared)));
        Ok(Self {
            handle: Arc::new(ProducerHandle {
                shared,
                sender: sender.abort_handle(),
            }),
        })
    }

    /// Queue a record. Returns once the record is in a batch; the returned
    /// [`Delivery`] resolves to its partition and offset when acknowledged.
    pub async fn send(
        &self,
        topic: &str,
        key: Option<Bytes>,
        value: Option<Bytes>,
    ) -> Result<Delivery, ClientError> {
        self.send_with_headers(topic, key, value, IndexMap::new())
            .await
    }

    /// Queue a record and wait for its acknowledgement.
    pub async fn send_and_wait(
        &self,
        topic: &str,
        key: Option<Bytes>,
        value: Option<Bytes>,
    ) -> Result<RecordMetadata, ClientError> {
        self.send(topic, key, value).await?.await
    }

    /// Like [`send`](Self::send), with record headers.
    pub async fn send_with_headers(
        &self,
        topic: &str,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: IndexMap<StrBytes, Option<Bytes>>,
    ) -> Result<Delivery, ClientError> {
        let shared = &self.handle.shared;
        if shared.closing.load(Ordering::Acquire) {
            return Err(ClientError::Closed);
        }
        let partition_count = match shared.client.cached_topic(topic) {
            Some(info) => info.partition_count(),
            None => shared.client.topic(topic).await?.partition_count(),
        };
        if partition_count == 0 {
            return Err(ClientError::Metadata(format!(
                "topic {topic} has no partitions"
            )));
        }
        let size = RECORD_OVERHEAD_BYTES
            + key.as_ref().map_or(0, Bytes::len)
            + value.as_ref().map_or(0, Bytes::len)
            + headers
                .iter()
                .map(|(k, v)| 10 + k.len() + v.as_ref().map_or(0, Bytes::len))
                .sum::<usize>();
        let permits = u32::try_from(size)
            .ok()
            .filter(|&p| p as usize <= shared.config.buffer_memory)
            .ok_or_else(|| {
                ClientError::Config(format!("a record of {size} bytes exceeds buffer_memory"))
            })?;
        shared
            .buffer
            .acquire_many(permits)
            .await
            .map_err(|_| ClientError::Closed)?
            .forget();

        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let keyed_partition = key
            .as_deref()
            .map(|k| partition_for_key(k, partition_count));
        let record = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp,
            key,
            value,
            headers,
        };

        let mut wake_sender = false;
        let delivery = {
            let mut acc = shared.lock();
            let queues = match acc.topics.get_mut(topic) {
                Some(q) => q,
                None => acc
                    .topics
                    .entry(topic.to_owned())
                    .or_insert_with(|| TopicQueues {
                        name: Arc::from(topic),
                        partitions: Vec::new(),
                        sticky_partition: rand::random::<usize>() % partition_count,
                    }),
            };
            // The partition count may have grown since the last record.
            while queues.partitions.len() < partition_count {
                queues.partitions.push(PartitionQueue::new());
            }
            let mut partition =
                keyed_partition.map_or(queues.sticky_partition % partition_count, |p| p as usize);
            let would_overflow = |q: &PartitionQueue| {
                q.open.as_ref().is_some_and(|b| {
                    !b.records.is_empty() && b.size_bytes + size > shared.config.batch_size
                })
            };
            if keyed_partition.is_none() && would_overflow(&queues.partitions[partition]) {
                // Sticky partitioning: this partition's batch is full, move on.
                close_open_batch(&mut queues.partitions[partition]);
                wake_sender = true;
                queues.sticky_partition = (partition + 1) % partition_count;
                partition = queues.sticky_partition;
            }
            let name = Arc::clone(&queues.name);
            let queue = &mut queues.partitions[partition];
            if would_overflow(queue) {
                close_open_batch(queue);
                wake_sender = true;
            }
            let batch = match &mut queue.open {
                Some(batch) => batch,
                None => {
                    let ordinal = queue.next_ordinal;
                    queue.next_ordinal += 1;
                    shared.unfinished_batches.fetch_add(1, Ordering::AcqRel);
                    wake_sender = true; // a new linger deadline to watch
                    queue
                        .open
                        .insert(ProducerBatch::new(name, partition as i32, ordinal))
                }
            };
            let index = batch.records.len() as u32;
            let mut record = record;
            record.offset = i64::from(index);
            batch.records.push(record);
            batch.size_bytes += size;
            batch.buffered_bytes += size;
            let completion = Arc::clone(&batch.completion);
            if batch.size_bytes >= shared.config.batch_size {
                close_open_batch(queue);
                wake_sender = true;
            }
            Delivery {
                completion,
                partition: partition as i32,
                index,
                waker_slot: None,
            }
        };
        if wake_sender {
            shared.wake.notify_one();
        }
        Ok(delivery)
    }

    /// Send every buffered record now and wait until all are acknowledged or failed.
    pub async fn flush(&self) {
        let shared = &self.handle.shared;
        {
            let mut acc = shared.lock();
            for queue in acc
                .topics
                .values_mut()
                .flat_map(|t| t.partitions.iter_mut())
            {
                if let Some(batch) = queue.open.as_mut() {
                    batch.force = true;
                }
            }
        }
        shared.wake.notify_one();
        loop {
            let done = shared.batch_done.notified();
            if shared.unfinished_batches.load(Ordering::Acquire) == 0 {
                return;
            }
            done.await;
        }
    }

    /// Flush, then stop the sender. Later `send`s fail with [`ClientError::Closed`].
    pub async fn close(&self) {
        self.handle.shared.closing.store(true, Ordering::Release);
        self.flush().await;
        self.handle.shared.wake.notify_one();
    }

    /// The client this producer sends through.
    pub fn client(&self) -> &Client {
        &self.handle.shared.client
    }
}

fn close_open_batch(queue: &mut PartitionQueue) {
    if let Some(batch) = queue.open.take() {
        queue.ready.push_back(batch);
    }
}

/// Ask any broker for a producer id (idempotent, non-transactional producer).
async fn init_producer_id(
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

/// What one pass over the accumulator found to do.
#[derive(Default)]
struct Drained {
    /// Batches to send, by leader: at most one per partition.
    requests: HashMap<i32, Vec<ProducerBatch>>,
    /// The earliest time another batch becomes due (linger, retry backoff).
    next_deadline: Option<Instant>,
    /// Topics with a partition whose leader is unknown.
    stale_topics: Vec<String>,
    /// Batches older than the delivery timeout, to fail.
    expired: Vec<ProducerBatch>,
}

/// The sender task: drain ready batches, dispatch one Produce request per
/// leader with a free slot, sleep until the next linger deadline or wake-up.
async fn run_sender(shared: Arc<ProducerShared>) {
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
        } = drain(&shared, &in_flight, &unreachable);
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

/// Take the batches that can be sent now. Returns them grouped by leader, the
/// earliest time something else becomes sendable, and topics whose leaders
/// are unknown.
fn drain(
    shared: &ProducerShared,
    in_flight: &HashMap<i32, usize>,
    unreachable: &HashMap<i32, Instant>,
) -> Drained {
    let config = &shared.config;
    let now = Instant::now();
    let mut expired = Vec::new();
    let mut requests: HashMap<i32, Vec<ProducerBatch>> = HashMap::new();
    let mut request_bytes: HashMap<i32, usize> = HashMap::new();
    let mut next_deadline: Option<Instant> = None;
    let mut stale_topics = Vec::new();
    let mut earliest =
        |t: Instant| next_deadline = Some(next_deadline.map_or(t, |d: Instant| d.min(t)));

    let mut acc = shared.lock();
    for (topic, queues) in acc.topics.iter_mut() {
        let info = shared.client.cached_topic(topic);
        for (partition, queue) in queues.partitions.iter_mut().enumerate() {
            // Batches that waited too long (no leader, retries that keep
            // failing) fail rather than wait forever.
            let too_old = |b: &ProducerBatch| b.created + config.delivery_timeout <= now;
            while queue.ready.front().is_some_and(too_old) {
                expired.extend(queue.ready.pop_front());
            }
            if queue.ready.is_empty() && queue.open.as_ref().is_some_and(too_old) {
                expired.extend(queue.open.take());
            }
            // Which batch would go next, and is it due?
            let candidate_due = if let Some(front) = queue.ready.front() {
                match front.retry_at {
                    Some(at) if at > now => {
                        earliest(at);
                        false
                    }
                    _ => true,
                }
            } else if let Some(open) = &queue.open {
                let due = open.created + config.linger;
                if open.force || due <= now {
                    true
                } else {
                    earliest(due);
                    false
                }
            } else {
                false
            };
            if !candidate_due {
                continue;
            }
            let Some(leader) = info.as_ref().and_then(|i| i.leader(partition as i32)) else {
                if !stale_topics.contains(topic) {
                    stale_topics.push(topic.clone());
                }
                earliest(now + config.retry_backoff);
                continue;
            };
            let busy =
                in_flight.get(&leader).copied().unwrap_or(0) >= config.max_in_flight_per_broker;
            if busy {
                continue; // a completing request wakes us
            }
            if let Some(&until) = unreachable.get(&leader) {
                earliest(until);
                continue;
            }
            let bytes = request_bytes.entry(leader).or_insert(0);
            let candidate_bytes = queue
                .ready
                .front()
                .or(queue.open.as_ref())
                .map_or(0, |b| b.size_bytes);
            if *bytes > 0 && *bytes + candidate_bytes > config.max_request_bytes {
                earliest(now);
                continue;
            }
            let batch = if queue.ready.is_empty() {
                queue.open.take()
            } else {
                queue.ready.pop_front()
            };
            let Some(mut batch) = batch else { continue };
            if config.idempotent && batch.base_sequence.is_none() {
                batch.base_sequence = Some(queue.next_sequence);
                let count = batch.records.len();
                queue.next_sequence = queue.next_sequence.wrapping_add(count as i32);
            }
            *bytes += batch.size_bytes;
            requests.entry(leader).or_default().push(batch);
            // One batch per partition per request: if another is waiting,
            // come back right away (for acks=0 no completion will wake us).
            if !queue.ready.is_empty()
                || queue
                    .open
                    .as_ref()
                    .is_some_and(|o| o.force || o.created + config.linger <= now)
            {
                earliest(now);
            }
        }
    }
    drop(acc);
    Drained {
        requests,
        next_deadline,
        stale_topics,
        expired,
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
    let cap = if topic_ids.values().any(Uuid::is_nil) {
        12
    } else {
        i16::MAX
    };
    let version = conn.version_for_capped::<ProduceRequest>(cap)?;

    let mut topic_data: Vec<TopicProduceData> = Vec::new();
    for batch in batches.iter_mut() {
        let records = batch.encode(shared.identity, config.compression)?;
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
        .with_transactional_id(None)
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

/// Put a batch back in its partition's queue, in creation order (ahead of
/// younger batches), so it is sent again.
fn requeue(shared: &ProducerShared, batch: ProducerBatch) {
    let mut acc = shared.lock();
    let queue = acc
        .topics
        .get_mut(&*batch.topic)
        .and_then(|t| t.partitions.get_mut(batch.partition as usize));
    match queue {
        Some(queue) => {
            let at = queue
                .ready
                .iter()
                .position(|b| b.ordinal > batch.ordinal)
                .unwrap_or(queue.ready.len());
            queue.ready.insert(at, batch);
        }
        None => {
            drop(acc);
            shared.finish(batch, Err(ClientError::Closed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: i64) -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: -1,
            timestamp: 1_700_000_000_000 + i,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("v{i}"))),
            headers: IndexMap::new(),
        }
    }

    #[test]
    fn batch_encodes_as_one_record_batch_with_sequences() {
        let mut batch = ProducerBatch::new(Arc::from("t"), 0, 0);
        batch.records = (0..5).map(record).collect();
        batch.base_sequence = Some(7);
        let identity = ProducerIdentity {
            producer_id: 42,
            producer_epoch: 3,
        };
        let mut encoded = batch.encode(identity, Compression::None).unwrap();
        let infos =
            kafka_protocol::records::RecordBatchDecoder::decode_batch_info(&mut encoded.clone())
                .unwrap();
        assert_eq!(infos.len(), 1, "one batch, not one per record");
        assert_eq!(infos[0].record_count, 5);
        assert_eq!(infos[0].base_sequence, 7);
        assert_eq!(infos[0].producer_id, 42);
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut encoded).unwrap();
        assert_eq!(set.records[4].value.as_deref(), Some(&b"v4"[..]));
        assert_eq!(set.records[4].offset, 4);
    }

    #[test]
    fn batch_without_idempotence_has_no_sequence() {
        let mut batch = ProducerBatch::new(Arc::from("t"), 0, 0);
        batch.records = (0..3).map(record).collect();
        let identity = ProducerIdentity {
            producer_id: -1,
            producer_epoch: -1,
        };
        let mut encoded = batch.encode(identity, Compression::None).unwrap();
        let infos =
            kafka_protocol::records::RecordBatchDecoder::decode_batch_info(&mut encoded).unwrap();
        assert_eq!(infos.len(), 1);
        assert_eq!(infos[0].base_sequence, -1);
        assert_eq!(infos[0].producer_id, -1);
    }

    #[tokio::test]
    async fn delivery_resolves_with_base_offset_plus_index() {
        let completion = Arc::new(BatchCompletion::default());
        let delivery = Delivery {
            completion: Arc::clone(&completion),
            partition: 2,
            index: 3,
            waker_slot: None,
        };
        assert!(delivery.try_result().is_none());
        let waiter = tokio::spawn(delivery);
        tokio::task::yield_now().await;
        let now = Instant::now();
        completion.complete(Ok(BatchAck {
            base_offset: 100,
            log_append_time_ms: -1,
            acknowledged_at: now,
        }));
        let md = waiter.await.unwrap().unwrap();
        assert_eq!((md.partition, md.offset), (2, 103));
    }

    /// A client whose metadata says topic `t` has `partitions` partitions led
    /// by a broker nobody listens on (nothing is ever delivered).
    fn offline_client(partitions: i32) -> Client {
        use kafka_protocol::messages::metadata_response::{
            MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
        };
        use kafka_protocol::messages::MetadataResponse;
        let client = Client::offline(super::super::ClientConfig::new("127.0.0.1:1"));
        let response = MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(1.into())
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(1)])
            .with_topics(vec![MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
                .with_partitions(
                    (0..partitions)
                        .map(|p| {
                            MetadataResponsePartition::default()
                                .with_partition_index(p)
                                .with_leader_id(1.into())
                        })
                        .collect::<Vec<MetadataResponsePartition>>(),
                )]);
        client.metadata_cache().apply(&response);
        client
    }

    #[tokio::test]
    async fn keyless_records_stick_to_a_partition_until_its_batch_is_full() {
        let config = ProducerConfig {
            batch_size: 1000,
            linger: Duration::from_secs(60),
            ..ProducerConfig::default()
        };
        let producer = Producer::new(offline_client(3), config).await.unwrap();
        let value = Bytes::from(vec![b'x'; 100]);
        // 61 + 7 * (21 + 100) = 908 bytes: seven records fill a 1000-byte batch.
        let mut partitions = Vec::new();
        for _ in 0..21 {
            let delivery = producer.send("t", None, Some(value.clone())).await.unwrap();
            partitions.push(delivery.partition());
        }
        let first = partitions[0];
        for (i, p) in partitions.iter().enumerate() {
            assert_eq!(
                *p,
                (first + (i / 7) as i32) % 3,
                "record {i} in {partitions:?}"
            );
        }
    }

    #[tokio::test]
    async fn keyed_records_follow_murmur2_and_report_their_batch_index() {
        let config = ProducerConfig {
            linger: Duration::from_secs(60),
            ..ProducerConfig::default()
        };
        let producer = Producer::new(offline_client(5), config).await.unwrap();
        let mut per_partition = [0u32; 5];
        for i in 0..50 {
            let key = Bytes::from(format!("user-{i}"));
            let delivery = producer
                .send("t", Some(key.clone()), Some(key.clone()))
                .await
                .unwrap();
            let p = partition_for_key(&key, 5);
            assert_eq!(delivery.partition(), p);
            assert_eq!(
                delivery.index, per_partition[p as usize],
                "offset within the batch"
            );
            per_partition[p as usize] += 1;
        }
    }

    #[tokio::test]
    async fn dropping_the_producer_fails_unsent_records() {
        let config = ProducerConfig {
            linger: Duration::from_secs(60),
            ..ProducerConfig::default()
        };
        let producer = Producer::new(offline_client(1), config).await.unwrap();
        let delivery = producer
            .send("t", None, Some(Bytes::from_static(b"v")))
            .await
            .unwrap();
        drop(producer);
        assert!(matches!(delivery.await, Err(ClientError::Closed)));
    }

    /// A one-partition broker that answers the first Produce with
    /// NOT_LEADER_OR_FOLLOWER and later ones with base offset 42. Returns
    /// its address and counters of (Metadata, Produce) requests.
    async fn flaky_broker() -> (String, Arc<[AtomicUsize; 2]>) {
        use crate::client::connection::read_frame;
        use bytes::BufMut;
        use kafka_protocol::messages::api_versions_response::ApiVersion;
        use kafka_protocol::messages::metadata_response::{
            MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
        };
        use kafka_protocol::messages::produce_response::{
            PartitionProduceResponse, TopicProduceResponse,
        };
        use kafka_protocol::messages::{ApiVersionsResponse, MetadataResponse, ResponseHeader};
        use kafka_protocol::protocol::{decode_request_header_from_buffer, Encodable};
        use tokio::io::AsyncWriteExt;

        fn frame<B: Encodable>(
            api: ApiKey,
            version: i16,
            correlation_id: i32,
            body: &B,
        ) -> Vec<u8> {
            let mut buf = BytesMut::new();
            buf.put_i32(0);
            ResponseHeader::default()
                .with_correlation_id(correlation_id)
                .encode(&mut buf, api.response_header_version(version))
                .unwrap();
            body.encode(&mut buf, version).unwrap();
            let size = (buf.len() - 4) as i32;
            buf[..4].copy_from_slice(&size.to_be_bytes());
            buf.to_vec()
        }

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let counters: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let seen = Arc::clone(&counters);
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    while let Ok(Some(mut request)) = read_frame(&mut socket, 1 << 20).await {
                        let header = decode_request_header_from_buffer(&mut request).unwrap();
                        let (id, version) = (header.correlation_id, header.request_api_version);
                        let out = match ApiKey::try_from(header.request_api_key).unwrap() {
                            ApiKey::ApiVersions => {
                                let keys = [
                                    (ApiKey::ApiVersions, 0, 3),
                                    (ApiKey::Metadata, 1, 12),
                                    (ApiKey::Produce, 3, 9),
                                ]
                                .iter()
                                .map(|&(k, min, max)| {
                                    ApiVersion::default()
                                        .with_api_key(k as i16)
                                        .with_min_version(min)
                                        .with_max_version(max)
                                })
                                .collect();
                                frame(
                                    ApiKey::ApiVersions,
                                    version,
                                    id,
                                    &ApiVersionsResponse::default().with_api_keys(keys),
                                )
                            }
                            ApiKey::Metadata => {
                                seen[0].fetch_add(1, Ordering::SeqCst);
                                let response = MetadataResponse::default()
                                    .with_brokers(vec![MetadataResponseBroker::default()
                                        .with_node_id(1.into())
                                        .with_host(StrBytes::from_static_str("127.0.0.1"))
                                        .with_port(i32::from(port))])
                                    .with_topics(vec![MetadataResponseTopic::default()
                                        .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
                                        .with_partitions(vec![
                                            MetadataResponsePartition::default()
                                                .with_partition_index(0)
                                                .with_leader_id(1.into()),
                                        ])]);
                                frame(ApiKey::Metadata, version, id, &response)
                            }
                            ApiKey::Produce => {
                                let attempt = seen[1].fetch_add(1, Ordering::SeqCst);
                                let partition = if attempt == 0 {
                                    PartitionProduceResponse::default()
                                        .with_error_code(ResponseError::NotLeaderOrFollower.code())
                                        .with_base_offset(-1)
                                } else {
                                    PartitionProduceResponse::default().with_base_offset(42)
                                };
                                let response = ProduceResponse::default().with_responses(vec![
                                    TopicProduceResponse::default()
                                        .with_name(TopicName(StrBytes::from_static_str("t")))
                                        .with_partition_responses(vec![partition.with_index(0)]),
                                ]);
                                frame(ApiKey::Produce, version, id, &response)
                            }
                            _ => return,
                        };
                        if socket.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (format!("127.0.0.1:{port}"), counters)
    }

    #[tokio::test]
    async fn not_leader_error_refreshes_metadata_and_retries_the_batch() {
        let (addr, counters) = flaky_broker().await;
        let client = Client::connect(super::super::ClientConfig::new(&addr))
            .await
            .unwrap();
        let config = ProducerConfig {
            linger: Duration::from_millis(1),
            retry_backoff: Duration::from_millis(10),
            ..ProducerConfig::default()
        };
        let producer = Producer::new(client, config).await.unwrap();
        let md = producer
            .send_and_wait(
                "t",
                Some(Bytes::from_static(b"k")),
                Some(Bytes::from_static(b"v")),
            )
            .await
            .unwrap();
        assert_eq!((md.partition, md.offset), (0, 42));
        assert_eq!(
            counters[1].load(Ordering::SeqCst),
            2,
            "one failed attempt, one retry"
        );
        // The bootstrap (which already lists `t`), then the refresh after
        // NOT_LEADER_OR_FOLLOWER.
        let deadline = Instant::now() + Duration::from_secs(10);
        while counters[0].load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            counters[0].load(Ordering::SeqCst),
            2,
            "metadata was refreshed"
        );
    }
}

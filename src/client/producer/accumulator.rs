//! The record accumulator: per-partition batches waiting to be sent, the
//! partitioning of each appended record (murmur2 of the key, or sticky for
//! keyless records), and the drain that picks the batches the sender may
//! ship now (one per partition per request, within linger, in-flight and
//! request-size limits), as Kafka's `RecordAccumulator` does.
//!
//! Must never: do network I/O or wait; it is called under one lock by the
//! producer handle and the sender.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::{Compression, Record};
use tokio::time::Instant;

use super::config::ProducerConfig;
use super::delivery::{BatchCompletion, Delivery};
use super::encoding::{encode_records, ProducerIdentity, BATCH_HEADER_BYTES};
use crate::client::cluster::Client;
use crate::client::error::ClientError;

/// Records of one partition on their way to the broker.
pub(super) struct ProducerBatch {
    pub(super) topic: Arc<str>,
    pub(super) partition: i32,
    /// Per-partition creation order, to put retried batches back in place.
    pub(super) ordinal: u64,
    pub(super) records: Vec<Record>,
    /// Estimated encoded size.
    pub(super) size_bytes: usize,
    /// Buffer memory to give back once the batch is done.
    pub(super) buffered_bytes: usize,
    pub(super) created: Instant,
    /// Set by `flush`: ready now, whatever its age.
    pub(super) force: bool,
    pub(super) completion: Arc<BatchCompletion>,
    pub(super) attempts: u32,
    pub(super) retry_at: Option<Instant>,
    /// The first record's sequence number (idempotence), assigned on first send.
    pub(super) base_sequence: Option<i32>,
    /// The encoded batch, kept so a retry resends identical bytes.
    pub(super) encoded: Option<Bytes>,
}

impl ProducerBatch {
    /// An empty batch, the `ordinal`-th of its partition.
    pub(super) fn new(topic: Arc<str>, partition: i32, ordinal: u64) -> Self {
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

    /// The batch as one v2 record batch; encoded once, so a retry resends
    /// identical bytes.
    pub(super) fn encode(
        &mut self,
        identity: ProducerIdentity,
        compression: Compression,
    ) -> Result<Bytes, ClientError> {
        if let Some(encoded) = &self.encoded {
            return Ok(encoded.clone());
        }
        let encoded = encode_records(
            &mut self.records,
            identity,
            self.base_sequence.unwrap_or(-1),
            compression,
            self.size_bytes,
        )?;
        // The records are no longer needed; free them now, keep the bytes.
        self.records = Vec::new();
        self.encoded = Some(encoded.clone());
        Ok(encoded)
    }
}

/// Batches of one partition.
pub(super) struct PartitionQueue {
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
pub(super) struct TopicQueues {
    name: Arc<str>,
    partitions: Vec<PartitionQueue>,
    sticky_partition: usize,
}

/// Everything waiting to be sent, under one lock held only for appends and drains.
#[derive(Default)]
pub(super) struct Accumulator {
    topics: HashMap<String, TopicQueues>,
}

fn close_open_batch(queue: &mut PartitionQueue) {
    if let Some(batch) = queue.open.take() {
        queue.ready.push_back(batch);
    }
}

/// What one pass over the accumulator found to do.
#[derive(Default)]
pub(super) struct Drained {
    /// Batches to send, by leader: at most one per partition.
    pub(super) requests: HashMap<i32, Vec<ProducerBatch>>,
    /// The earliest time another batch becomes due (linger, retry backoff).
    pub(super) next_deadline: Option<Instant>,
    /// Topics with a partition whose leader is unknown.
    pub(super) stale_topics: Vec<String>,
    /// Batches older than the delivery timeout, to fail.
    pub(super) expired: Vec<ProducerBatch>,
}

impl Accumulator {
    /// Append `record` (of `size` bytes) to the open batch of its partition:
    /// `keyed_partition` if the record has a key, else the topic's sticky
    /// partition. Returns the record's delivery and whether the sender has
    /// something new to look at (a closed batch, a new linger deadline).
    /// `unfinished_batches` counts every batch created.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn append(
        &mut self,
        topic: &str,
        partition_count: usize,
        keyed_partition: Option<i32>,
        mut record: Record,
        size: usize,
        batch_size: usize,
        unfinished_batches: &AtomicUsize,
    ) -> (Delivery, bool) {
        let mut wake_sender = false;
        let queues = match self.topics.get_mut(topic) {
            Some(q) => q,
            None => self
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
            q.open
                .as_ref()
                .is_some_and(|b| !b.records.is_empty() && b.size_bytes + size > batch_size)
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
                unfinished_batches.fetch_add(1, Ordering::AcqRel);
                wake_sender = true; // a new linger deadline to watch
                queue
                    .open
                    .insert(ProducerBatch::new(name, partition as i32, ordinal))
            }
        };
        let index = batch.records.len() as u32;
        record.offset = i64::from(index);
        batch.records.push(record);
        batch.size_bytes += size;
        batch.buffered_bytes += size;
        let completion = Arc::clone(&batch.completion);
        if batch.size_bytes >= batch_size {
            close_open_batch(queue);
            wake_sender = true;
        }
        (
            Delivery::new(completion, partition as i32, index),
            wake_sender,
        )
    }

    /// Mark every open batch ready now, whatever its age (`flush`).
    /// A new producer epoch (KIP-890 part 2: bumped by each EndTxn)
    /// starts every partition's sequence numbers at 0 again. Called between
    /// transactions, when no batch is queued or in flight.
    pub(super) fn restart_sequences(&mut self) {
        for topic in self.topics.values_mut() {
            for queue in &mut topic.partitions {
                queue.next_sequence = 0;
            }
        }
    }

    pub(super) fn force_all(&mut self) {
        for queue in self
            .topics
            .values_mut()
            .flat_map(|t| t.partitions.iter_mut())
        {
            if let Some(batch) = queue.open.as_mut() {
                batch.force = true;
            }
        }
    }

    /// Take every batch not yet sent (the producer is going away).
    pub(super) fn take_all(&mut self) -> Vec<ProducerBatch> {
        self.topics
            .values_mut()
            .flat_map(|t| t.partitions.iter_mut())
            .flat_map(|p| p.open.take().into_iter().chain(p.ready.drain(..)))
            .collect()
    }

    /// Put a batch back in its partition's queue, in creation order (ahead
    /// of younger batches), so it is sent again; gives it back if its
    /// partition is gone.
    pub(super) fn requeue(&mut self, batch: ProducerBatch) -> Option<ProducerBatch> {
        let queue = self
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
                None
            }
            None => Some(batch),
        }
    }

    /// Take the batches that can be sent now. Returns them grouped by leader, the
    /// earliest time something else becomes sendable, and topics whose leaders
    /// are unknown.
    pub(super) fn drain(
        &mut self,
        config: &ProducerConfig,
        client: &Client,
        in_flight: &HashMap<i32, usize>,
        unreachable: &HashMap<i32, Instant>,
    ) -> Drained {
        let now = Instant::now();
        let mut expired = Vec::new();
        let mut requests: HashMap<i32, Vec<ProducerBatch>> = HashMap::new();
        let mut request_bytes: HashMap<i32, usize> = HashMap::new();
        let mut next_deadline: Option<Instant> = None;
        let mut stale_topics = Vec::new();
        let mut earliest =
            |t: Instant| next_deadline = Some(next_deadline.map_or(t, |d: Instant| d.min(t)));

        for (topic, queues) in self.topics.iter_mut() {
            let info = client.cached_topic(topic);
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
        Drained {
            requests,
            next_deadline,
            stale_topics,
            expired,
        }
    }
}

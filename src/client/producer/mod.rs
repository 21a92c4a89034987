//! The producer: records are appended to a per-partition batch, and one
//! background *sender* task ships ready batches to partition leaders.
//!
//! - Partitioning: keyed records go to `toPositive(murmur2(key)) % partitions`
//!   (the Java client's rule, see `client::partitioner`);
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
//! Layers, as in Kafka's and rskafka's producers: `config`; `encoding`
//! (records and record batches as bytes); `delivery` (a batch's outcome and
//! the per-record [`Delivery`] future); `accumulator` (batches per partition,
//! partitioning, the drain); `sender` (the task that ships batches and
//! settles them). This file is the handle callers hold.
//!
//! Never: block the caller on the network in `send` (beyond the first
//! metadata lookup of a topic), or allocate per record beyond the record itself.

mod accumulator;
mod config;
mod delivery;
mod encoding;
mod sender;
#[cfg(test)]
mod tests;
mod transaction;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{Notify, Semaphore};

pub use config::ProducerConfig;
pub use delivery::{Delivery, RecordMetadata};

use accumulator::Accumulator;
use encoding::{new_record, record_size, ProducerIdentity};
use sender::{init_producer_id, run_sender, ProducerShared};
use transaction::Transactions;

use super::cluster::Client;
use super::error::ClientError;
use super::partitioner::partition_for_key;

/// Stops the sender task when the last [`Producer`] clone is dropped.
struct ProducerHandle {
    shared: Arc<ProducerShared>,
    sender: tokio::task::AbortHandle,
}

impl Drop for ProducerHandle {
    fn drop(&mut self) {
        self.sender.abort();
        let abandoned = self.shared.lock().take_all();
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
    pub async fn new(client: Client, mut config: ProducerConfig) -> Result<Self, ClientError> {
        if config.transactional_id.is_some() {
            if config.acks != -1 {
                return Err(ClientError::Config(
                    "a transactional producer needs acks=-1".to_owned(),
                ));
            }
            config.idempotent = true;
        }
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
        let txn = config
            .transactional_id
            .clone()
            .map(|id| Transactions::new(id, config.transaction_timeout));
        let identity = match &txn {
            Some(txn) => txn.init_producer_id(&client).await?,
            None if config.idempotent => init_producer_id(&client, &config).await?,
            None => ProducerIdentity {
                producer_id: -1,
                producer_epoch: -1,
                transactional: false,
            },
        };
        let shared = Arc::new(ProducerShared {
            client,
            identity: Mutex::new(identity),
            accumulator: Mutex::new(Accumulator::default()),
            wake: Notify::new(),
            buffer: Semaphore::new(config.buffer_memory.min(Semaphore::MAX_PERMITS)),
            unfinished_batches: AtomicUsize::new(0),
            batch_done: Notify::new(),
            refreshing: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            txn,
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
        self.send_to_partition(topic, None, key, value, headers)
            .await
    }

    /// Like [`send_with_headers`](Self::send_with_headers), to `partition`
    /// when one is given (else by key, or the sticky partition).
    pub async fn send_to_partition(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: IndexMap<StrBytes, Option<Bytes>>,
    ) -> Result<Delivery, ClientError> {
        let shared = &self.handle.shared;
        if shared.closing.load(Ordering::Acquire) {
            return Err(ClientError::Closed);
        }
        if let Some(txn) = &shared.txn {
            txn.check_sendable()?;
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
        if partition.is_some_and(|p| p < 0 || p as usize >= partition_count) {
            return Err(ClientError::Config(format!(
                "topic {topic} has no partition {}",
                partition.unwrap_or(-1)
            )));
        }
        let size = record_size(key.as_ref(), value.as_ref(), &headers);
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

        let keyed_partition = partition.or_else(|| {
            key.as_deref()
                .map(|k| partition_for_key(k, partition_count))
        });
        let record = new_record(key, value, headers);

        let (delivery, wake_sender) = shared.lock().append(
            topic,
            partition_count,
            keyed_partition,
            record,
            size,
            shared.config.batch_size,
            &shared.unfinished_batches,
        );
        if wake_sender {
            shared.wake.notify_one();
        }
        Ok(delivery)
    }

    /// Send every buffered record now and wait until all are acknowledged or failed.
    pub async fn flush(&self) {
        let shared = &self.handle.shared;
        shared.lock().force_all();
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

    /// The transaction manager, or a configuration error for a producer
    /// without `transactional_id`.
    fn transactions(&self) -> Result<&Transactions, ClientError> {
        self.handle
            .shared
            .txn
            .as_ref()
            .ok_or_else(|| ClientError::Config("the producer has no transactional_id".to_owned()))
    }

    /// Start a transaction: records sent from now on belong to it.
    pub fn begin_transaction(&self) -> Result<(), ClientError> {
        self.transactions()?.begin()
    }

    /// Commit consumed `offsets` (topic, partition, next offset to read) of
    /// `group_id` as part of the transaction (AddOffsetsToTxn, then
    /// TxnOffsetCommit at the group coordinator): they become the group's
    /// committed offsets only if the transaction commits.
    pub async fn send_offsets_to_transaction(
        &self,
        group_id: &str,
        offsets: &[(String, i32, i64)],
        generation_id: i32,
        member_id: &str,
    ) -> Result<(), ClientError> {
        let shared = &self.handle.shared;
        self.transactions()?
            .send_offsets(
                &shared.client,
                shared.identity(),
                group_id,
                offsets,
                generation_id,
                member_id,
            )
            .await
    }

    /// Flush, then commit the transaction (EndTxn). Fails, leaving the
    /// transaction open for [`abort_transaction`](Self::abort_transaction),
    /// if a record of it was not written; fails with
    /// [`ClientError::Fenced`] if a newer producer took over.
    pub async fn commit_transaction(&self) -> Result<(), ClientError> {
        let txn = self.transactions()?;
        self.flush().await;
        txn.commit_blocker()?;
        let shared = &self.handle.shared;
        let (id, epoch) = txn.end(&shared.client, shared.identity(), true).await?;
        shared.renew_identity(id, epoch);
        Ok(())
    }

    /// Flush, then abort the transaction (EndTxn): read_committed consumers
    /// never see its records and its offsets are not committed. After a
    /// failed batch the sequence numbers may have a gap: make a new producer
    /// (same transactional id) to continue.
    pub async fn abort_transaction(&self) -> Result<(), ClientError> {
        let txn = self.transactions()?;
        self.flush().await;
        let shared = &self.handle.shared;
        let (id, epoch) = txn.end(&shared.client, shared.identity(), false).await?;
        shared.renew_identity(id, epoch);
        Ok(())
    }

    /// The client this producer sends through.
    pub fn client(&self) -> &Client {
        &self.handle.shared.client
    }
}

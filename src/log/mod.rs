//! One partition's log: offsets, the high watermark, the leader-epoch cache
//! and the idempotent-producer table, over a `LogStore` that holds the record
//! batches (segment files by default, see `store`).
//!
//! The small state (log start offset, leader-epoch cache, high-watermark
//! checkpoint, producer table) lives in the node's sled trees, keyed by
//! partition; the record bytes never do (unless `--log-store sled`). After a
//! crash, whatever sled had not yet written of that state is rebuilt from the
//! batches themselves (producer sequences and epochs are in their headers).
//!
//! It stores and returns batches as bytes. It never speaks the wire protocol and
//! never decodes records on the append or fetch path.
//!
//! Lock order: the partition's state lock, then the store's own locks; the
//! flush lock (async) is never taken while holding the state lock.

pub mod batch;
mod cleaner;
pub mod keyed;
pub mod producers;
mod segments;
mod sled_store;
pub mod store;
pub mod txn;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use tokio::sync::watch;

use crate::storage::{self, LogStoreKind, Storage, StorageError};
use batch::{BatchError, ProducedBatch};
pub use cleaner::CleanerStats;
use producers::{ProducerEntry, ProducerTable, SequenceCheck, SequencedBatch};
pub use sled_store::CHUNK_BYTES;
pub use store::{BatchSummary, LogStore, RollPolicy};
use txn::{Marker, TxnChange, TxnIndex};

/// Why an append was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("out of order sequence from producer {producer_id}: expected {expected}, got {got}")]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    #[error("producer {producer_id} epoch {epoch} is older than {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

impl From<sled::Error> for AppendError {
    fn from(e: sled::Error) -> Self {
        AppendError::Storage(StorageError::Sled(e))
    }
}

/// Why a read was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("offset {offset} is outside [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

impl From<sled::Error> for ReadError {
    fn from(e: sled::Error) -> Self {
        ReadError::Storage(StorageError::Sled(e))
    }
}

/// The result of appending a produce request's batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The LogAppendTime stamped on the batches, or -1 for CreateTime.
    pub log_append_time: i64,
    pub log_start_offset: i64,
}

/// Batches read from the log, as stored.
#[derive(Debug, Clone, Default)]
pub struct ReadOutcome {
    pub batches: Vec<Bytes>,
    pub bytes: usize,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// The last stable offset (the high watermark when no transaction is open).
    pub last_stable_offset: i64,
    /// For a `ReadLimit::LastStable` read: the aborted transactions that
    /// overlap what was read, (producer id, first offset).
    pub aborted: Vec<(i64, i64)>,
}

/// Where a read may go up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadLimit {
    /// Consumers see only committed records.
    HighWatermark,
    /// Replicas read everything the leader has.
    LogEndOffset,
    /// `read_committed` consumers stop at the last stable offset.
    LastStable,
}

/// The topic configs a log applies itself (Kafka's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPolicy {
    /// `segment.bytes`, `segment.ms`.
    pub roll: RollPolicy,
    /// `flush.messages`: fsync before acknowledging once this many records
    /// are unflushed (`i64::MAX`: leave it to time).
    pub flush_messages: i64,
    /// `flush.ms`: fsync appends at most this old (`i64::MAX`: the node's
    /// `--flush-interval-ms` decides).
    pub flush_ms: i64,
}

impl Default for LogPolicy {
    fn default() -> Self {
        LogPolicy {
            roll: RollPolicy::default(),
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
        }
    }
}

/// The mutable part of a partition log, behind one lock so that offset
/// assignment and the producer checks are atomic.
#[derive(Debug)]
struct LogState {
    log_start_offset: i64,
    log_end_offset: i64,
    high_watermark: i64,
    leader_epoch: i32,
    producers: ProducerTable,
    /// Leader-epoch cache: (epoch, start offset), ascending by epoch.
    epochs: Vec<(i32, i64)>,
    /// In a cluster the high watermark follows the ISR (moved by the
    /// replica manager); on a single node it follows every append.
    replicated: bool,
    /// The high watermark last written by `checkpoint_high_watermark`.
    checkpointed_high_watermark: i64,
    /// Records appended since the last fsync (for `flush.messages`).
    unflushed_messages: i64,
    /// Open transactions and the aborted index.
    txns: TxnIndex,
}

impl LogState {
    /// The first offset a `read_committed` consumer may not see yet.
    fn last_stable_offset(&self) -> i64 {
        self.txns
            .first_unstable_offset()
            .map_or(self.high_watermark, |first| first.min(self.high_watermark))
    }
}

/// One partition's log.
pub struct PartitionLog {
    pub topic: String,
    pub partition: i32,
    /// Where the record batches are.
    store: Box<dyn LogStore>,
    /// The node's logmeta tree (log start offset, leader-epoch cache, checkpoints).
    logmeta: sled::Tree,
    /// The node's idempotent-producer tree (this partition's entries).
    producers_tree: sled::Tree,
    /// Key of this partition in the logmeta and producers trees.
    meta_key: Vec<u8>,
    state: Mutex<LogState>,
    /// The topic's roll and flush configs.
    policy: RwLock<LogPolicy>,
    /// The node's `--flush-interval-ms` (0: fsync before every acknowledgement).
    node_flush_interval_ms: u64,
    /// Appended since the last fsync, and since when (ms since the epoch).
    dirty: AtomicBool,
    dirty_since_ms: AtomicI64,
    /// Batches stored since the log was opened.
    appends: AtomicU64,
    /// Held while an fsync runs: requests that wait for one queue here and
    /// find their records already covered (group commit). Holds the count of
    /// `appends` the last fsync covered.
    flushed: tokio::sync::Mutex<u64>,
    /// Publishes the high watermark; fetchers waiting for data subscribe.
    high_watermark_tx: watch::Sender<i64>,
    /// Publishes the log end offset; replica fetches wait on it.
    log_end_tx: watch::Sender<i64>,
}

impl std::fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PartitionLog({}-{})", self.topic, self.partition)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The directory name of a partition: `topic-partition` as in Kafka when the
/// topic name is a plain file name, else the topic id.
fn partition_dir_name(topic: &str, topic_id: &str, partition: i32) -> String {
    let plain = !topic.is_empty()
        && topic.len() <= 200
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if plain {
        format!("{topic}-{partition}")
    } else {
        format!("{topic_id}-{partition}")
    }
}

impl PartitionLog {
    /// Open (or create) the log of `topic`-`partition` (`topic_id` names its
    /// state), recovering what a crash left.
    pub fn open(
        storage: &Storage,
        topic: &str,
        topic_id: &str,
        partition: i32,
    ) -> Result<Self, StorageError> {
        let store: Box<dyn LogStore> = match storage.logs.kind {
            LogStoreKind::Segments => Box::new(segments::SegmentStore::open(
                storage
                    .logs
                    .root
                    .join(partition_dir_name(topic, topic_id, partition)),
                storage.logs.clone(),
            )?),
            LogStoreKind::Sled => {
                Box::new(sled_store::SledStore::open(storage, topic_id, partition)?)
            }
        };
        let meta_key = format!("{topic_id}:{partition}").into_bytes();
        let logmeta = storage.tree(storage::LOGMETA_TREE)?;

        let (mut log_start_offset, epochs) = match logmeta.get(&meta_key)? {
            Some(v) => decode_logmeta(&v).ok_or_else(|| StorageError::Corrupt {
                tree: storage::LOGMETA_TREE.into(),
                what: format!("entry for {topic}-{partition}"),
            })?,
            None => (0, vec![(0, 0)]),
        };
        let log_end_offset = store
            .next_offset()
            .unwrap_or(log_start_offset)
            .max(log_start_offset);
        if let Some(first) = store.first_offset() {
            log_start_offset = log_start_offset.max(first).min(log_end_offset);
        }

        let producers_tree = storage.tree(storage::PRODUCERS_TREE)?;
        let mut producers = ProducerTable::new();
        let mut prefix = meta_key.clone();
        prefix.push(b'/');
        for item in producers_tree.scan_prefix(&prefix) {
            let (k, v) = item?;
            let pid_bytes = &k[prefix.len()..];
            if pid_bytes.len() == 8 {
                let mut a = [0u8; 8];
                a.copy_from_slice(pid_bytes);
                if let Some(entry) = ProducerEntry::decode(&v) {
                    producers.insert(i64::from_be_bytes(a), entry);
                }
            }
        }

        let txns = load_txns(&logmeta, &meta_key)?;
        let leader_epoch = epochs.last().map(|e| e.0).unwrap_or(0);
        let (high_watermark_tx, _) = watch::channel(log_end_offset);
        let (log_end_tx, _) = watch::channel(log_end_offset);
        let log = PartitionLog {
            topic: topic.to_string(),
            partition,
            store,
            logmeta,
            producers_tree,
            meta_key,
            state: Mutex::new(LogState {
                log_start_offset,
                log_end_offset,
                high_watermark: log_end_offset,
                leader_epoch,
                producers,
                epochs,
                replicated: false,
                checkpointed_high_watermark: -1,
                unflushed_messages: 0,
                txns,
            }),
            policy: RwLock::new(LogPolicy::default()),
            node_flush_interval_ms: storage.logs.flush_interval_ms,
            dirty: AtomicBool::new(false),
            dirty_since_ms: AtomicI64::new(0),
            appends: AtomicU64::new(0),
            flushed: tokio::sync::Mutex::new(0),
            high_watermark_tx,
            log_end_tx,
        };
        log.replay_tail()?;
        Ok(log)
    }

    /// Bring the producer table and the leader-epoch cache up to the log
    /// end: sled writes them a little after the batches, so a crash can
    /// leave batches they do not know of. Their headers say it all.
    fn replay_tail(&self) -> Result<(), StorageError> {
        let mut state = self.lock();
        let checkpoint = self
            .logmeta
            .get(self.state_checkpoint_key())?
            .and_then(|v| Some(i64::from_be_bytes(v.as_ref().try_into().ok()?)))
            .unwrap_or(state.log_start_offset);
        let from = checkpoint.max(state.log_start_offset);
        let end = state.log_end_offset;
        let mut replayed = 0usize;
        let mut meta_changed = false;
        let walked = for_each_batch(self.store.as_ref(), from, end, |h, bytes| {
            self.observe_txn(&mut state, h, &bytes)?;
            if state
                .epochs
                .last()
                .is_none_or(|(e, _)| h.partition_leader_epoch > *e)
            {
                state.epochs.push((h.partition_leader_epoch, h.base_offset));
                meta_changed = true;
            }
            if h.producer_id >= 0 && h.base_sequence >= 0 {
                let mut entry = state
                    .producers
                    .get(&h.producer_id)
                    .cloned()
                    .unwrap_or_default();
                let known = entry
                    .batches
                    .iter()
                    .any(|b| b.last_offset >= h.last_offset());
                if !known && entry.epoch <= h.producer_epoch {
                    entry.record(
                        h.producer_epoch,
                        SequencedBatch {
                            first_sequence: h.base_sequence,
                            last_sequence: h.last_sequence(),
                            base_offset: h.base_offset,
                            last_offset: h.last_offset(),
                        },
                    );
                    self.producers_tree
                        .insert(self.producer_key(h.producer_id), entry.encode())?;
                    state.producers.insert(h.producer_id, entry);
                    replayed += 1;
                }
            }
            Ok(true)
        });
        if let Err(e) = walked {
            // What was replayed stands; the log itself opens regardless.
            tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "producer state replay stopped");
        }
        if meta_changed {
            self.persist_meta(&state)?;
        }
        if replayed > 0 {
            tracing::info!(topic = %self.topic, partition = self.partition, batches = replayed, "producer state rebuilt from the log");
        }
        drop(state);
        self.checkpoint_state()?;
        Ok(())
    }

    fn state_checkpoint_key(&self) -> Vec<u8> {
        let mut k = self.meta_key.clone();
        k.extend_from_slice(b"/state");
        k
    }

    /// Record that the producer table and the epoch cache in sled cover the
    /// log up to its end (written after them, so sled never has the mark
    /// without them).
    fn checkpoint_state(&self) -> Result<(), StorageError> {
        let end = self.lock().log_end_offset;
        self.logmeta
            .insert(self.state_checkpoint_key(), &end.to_be_bytes())?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogState> {
        // A panic while holding the lock leaves consistent state (every write
        // to the store happens before the in-memory update), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn log_start_offset(&self) -> i64 {
        self.lock().log_start_offset
    }
    pub fn log_end_offset(&self) -> i64 {
        self.lock().log_end_offset
    }
    pub fn high_watermark(&self) -> i64 {
        self.lock().high_watermark
    }
    pub fn leader_epoch(&self) -> i32 {
        self.lock().leader_epoch
    }
    pub fn size_bytes(&self) -> u64 {
        self.store.size_bytes()
    }

    /// Apply the topic's roll and flush configs.
    pub fn set_policy(&self, policy: LogPolicy) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = policy;
    }

    fn policy(&self) -> LogPolicy {
        *self.policy.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribe to high-watermark changes (for long-polling fetches).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.high_watermark_tx.subscribe()
    }

    /// Append validated batches: check producer sequences, assign offsets,
    /// stamp LogAppendTime if asked, store, and advance the log end offset.
    pub fn append(
        &self,
        batches: Vec<ProducedBatch>,
        log_append_time: bool,
    ) -> Result<AppendOutcome, AppendError> {
        let roll = self.policy().roll;
        let mut state = self.lock();
        let append_time = if log_append_time {
            Some(now_ms())
        } else {
            None
        };
        let mut first_base: Option<i64> = None;
        let mut last_offset = state.log_end_offset - 1;
        let mut wrote = false;
        for mut produced in batches {
            let h = produced.header;
            let idempotent = h.producer_id >= 0 && h.base_sequence >= 0;
            if idempotent {
                let entry = state
                    .producers
                    .get(&h.producer_id)
                    .cloned()
                    .unwrap_or_default();
                match entry.check(h.producer_epoch, h.base_sequence, h.last_sequence()) {
                    SequenceCheck::Append => {}
                    SequenceCheck::Duplicate(dup) => {
                        first_base.get_or_insert(dup.base_offset);
                        last_offset = last_offset.max(dup.last_offset);
                        continue;
                    }
                    SequenceCheck::OutOfOrder { expected } => {
                        return Err(AppendError::OutOfOrderSequence {
                            producer_id: h.producer_id,
                            expected,
                            got: h.base_sequence,
                        })
                    }
                    SequenceCheck::StaleEpoch { current } => {
                        return Err(AppendError::InvalidProducerEpoch {
                            producer_id: h.producer_id,
                            epoch: h.producer_epoch,
                            current,
                        })
                    }
                }
            }
            let base = state.log_end_offset;
            batch::assign(&mut produced.bytes, base, state.leader_epoch, append_time);
            let summary = BatchSummary {
                base_offset: base,
                last_offset: base + h.last_offset_delta as i64,
                max_timestamp: append_time.unwrap_or(h.max_timestamp),
                size: produced.bytes.len() as u32,
                leader_epoch: state.leader_epoch,
            };
            self.store_batch(&mut state, &produced.bytes, &h, summary, roll)?;
            first_base.get_or_insert(base);
            last_offset = summary.last_offset;
            wrote = true;
        }
        if wrote {
            self.log_end_tx.send_replace(state.log_end_offset);
            if !state.replicated {
                // One node: every appended record is committed at once.
                state.high_watermark = state.log_end_offset;
                self.high_watermark_tx.send_replace(state.high_watermark);
            }
        }
        Ok(AppendOutcome {
            base_offset: first_base.unwrap_or(state.log_end_offset),
            last_offset,
            log_append_time: append_time.unwrap_or(-1),
            log_start_offset: state.log_start_offset,
        })
    }

    /// Write one batch (already given its offsets) to the store, record its
    /// producer sequence, and move the log end.
    fn store_batch(
        &self,
        state: &mut LogState,
        bytes: &[u8],
        h: &batch::BatchHeader,
        summary: BatchSummary,
        roll: RollPolicy,
    ) -> Result<(), AppendError> {
        self.store.append(&summary, bytes, roll)?;
        self.appends.fetch_add(1, Ordering::AcqRel);
        if !self.dirty.swap(true, Ordering::AcqRel) {
            self.dirty_since_ms.store(now_ms(), Ordering::Release);
        }
        state.unflushed_messages += h.record_count.max(1) as i64;
        state.log_end_offset = summary.last_offset + 1;
        if h.is_transactional() {
            // Stored: a failure to record the change in sled is repaired
            // from the log at the next start, as the producer table is.
            // The header as produced: its offsets are the log's now.
            let placed = batch::BatchHeader {
                base_offset: summary.base_offset,
                ..*h
            };
            if let Err(e) = self.observe_txn(state, &placed, bytes) {
                tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "transaction state not saved");
            }
        }
        if h.producer_id >= 0 && h.base_sequence >= 0 {
            let mut entry = state
                .producers
                .get(&h.producer_id)
                .cloned()
                .unwrap_or_default();
            entry.record(
                h.producer_epoch,
                SequencedBatch {
                    first_sequence: h.base_sequence,
                    last_sequence: h.last_sequence(),
                    base_offset: summary.base_offset,
                    last_offset: summary.last_offset,
                },
            );
            // The batch is stored: a failure to record its producer entry in
            // sled is repaired from the log at the next start.
            if let Err(e) = self
                .producers_tree
                .insert(self.producer_key(h.producer_id), entry.encode())
            {
                tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "producer state not saved");
            }
            state.producers.insert(h.producer_id, entry);
        }
        Ok(())
    }

    /// Whether the records just appended must be fsynced before they are
    /// acknowledged (`--flush-interval-ms 0`, or `flush.messages` reached).
    pub fn must_sync_before_ack(&self) -> bool {
        if self.node_flush_interval_ms == 0 {
            return true;
        }
        let flush_messages = self.policy().flush_messages;
        // The default (`i64::MAX`) leaves it to time: no state lock then.
        flush_messages != i64::MAX && self.lock().unflushed_messages >= flush_messages
    }

    /// fsync everything appended so far. Concurrent callers share one fsync:
    /// who waits while another runs finds its records covered (group commit).
    pub async fn sync(self: &Arc<Self>) -> Result<(), StorageError> {
        let target = self.appends.load(Ordering::Acquire);
        let mut flushed = self.flushed.lock().await;
        if *flushed >= target {
            return Ok(());
        }
        let log = self.clone();
        let covered = tokio::task::spawn_blocking(move || log.flush_now())
            .await
            .map_err(|e| StorageError::Io(std::io::Error::other(e.to_string())))??;
        *flushed = covered;
        Ok(())
    }

    /// fsync now (blocking); returns the count of appends it covers.
    pub fn flush_now(&self) -> Result<u64, StorageError> {
        let (end, covered) = {
            let mut state = self.lock();
            state.unflushed_messages = 0;
            (state.log_end_offset, self.appends.load(Ordering::Acquire))
        };
        self.dirty.store(false, Ordering::Release);
        if let Err(e) = self.store.flush() {
            self.dirty.store(true, Ordering::Release);
            return Err(e);
        }
        // The producer table and epochs in sled cover the log up to `end`;
        // a restart replays only what comes after.
        self.logmeta
            .insert(self.state_checkpoint_key(), &end.to_be_bytes())?;
        Ok(covered)
    }

    /// fsync if appends have waited longer than `flush.ms` or the node's
    /// `--flush-interval-ms` (the node's flusher calls this).
    pub fn flush_if_due(&self, now_ms: i64) -> Result<bool, StorageError> {
        if !self.dirty.load(Ordering::Acquire) {
            return Ok(false);
        }
        let node = if self.node_flush_interval_ms == 0 {
            0
        } else {
            self.node_flush_interval_ms as i64
        };
        let due_after = self.policy().flush_ms.min(node);
        if now_ms - self.dirty_since_ms.load(Ordering::Acquire) < due_after {
            return Ok(false);
        }
        self.flush_now()?;
        Ok(true)
    }

    /// Append batches fetched from the leader, as they are: offsets, leader
    /// epochs and producer sequences come from the leader (so a follower
    /// that becomes leader deduplicates retries as the old one did). Batches
    /// the log already holds are skipped; the first batch that does not
    /// start at the log end stops the append. Returns how many were written.
    pub fn append_replicated(&self, records: Bytes) -> Result<usize, AppendError> {
        let roll = self.policy().roll;
        let mut state = self.lock();
        let mut written = 0;
        for bytes in batch::iter_batches(records) {
            let h = batch::parse_header(&bytes)?;
            if h.last_offset() < state.log_end_offset {
                continue;
            }
            if h.base_offset != state.log_end_offset {
                break;
            }
            // As Kafka's followers do: never store what arrived damaged.
            batch::check_crc(&bytes, &h)?;
            let summary = BatchSummary {
                base_offset: h.base_offset,
                last_offset: h.last_offset(),
                max_timestamp: h.max_timestamp,
                size: bytes.len() as u32,
                leader_epoch: h.partition_leader_epoch,
            };
            if state
                .epochs
                .last()
                .is_none_or(|(e, _)| h.partition_leader_epoch > *e)
            {
                state.epochs.push((h.partition_leader_epoch, h.base_offset));
                self.persist_meta(&state)?;
            }
            self.store_batch(&mut state, &bytes, &h, summary, roll)?;
            written += 1;
        }
        if written > 0 {
            self.log_end_tx.send_replace(state.log_end_offset);
        }
        Ok(written)
    }

    /// Make the high watermark follow the ISR (cluster mode): it restarts
    /// from the last checkpoint and moves only by `set_high_watermark`.
    pub fn set_replicated(&self) -> Result<(), StorageError> {
        if self.lock().replicated {
            return Ok(());
        }
        let checkpoint = self.logmeta.get(self.hw_key())?.and_then(|v| {
            let b: [u8; 8] = v.as_ref().try_into().ok()?;
            Some(i64::from_be_bytes(b))
        });
        let mut state = self.lock();
        if !state.replicated {
            state.replicated = true;
            state.high_watermark = checkpoint
                .unwrap_or(state.log_start_offset)
                .clamp(state.log_start_offset, state.log_end_offset);
            self.high_watermark_tx.send_replace(state.high_watermark);
        }
        Ok(())
    }

    /// Move the high watermark forward to `hw` (never past the log end, never back).
    pub fn set_high_watermark(&self, hw: i64) {
        let mut state = self.lock();
        let hw = hw.min(state.log_end_offset);
        if hw > state.high_watermark {
            state.high_watermark = hw;
            self.high_watermark_tx.send_replace(hw);
        }
    }

    /// Persist the high watermark (read back by `set_replicated`) if it
    /// moved since the last checkpoint.
    pub fn checkpoint_high_watermark(&self) -> Result<(), StorageError> {
        let (hw, last) = {
            let s = self.lock();
            (s.high_watermark, s.checkpointed_high_watermark)
        };
        if hw != last {
            self.logmeta.insert(self.hw_key(), &hw.to_be_bytes())?;
            self.lock().checkpointed_high_watermark = hw;
        }
        Ok(())
    }

    fn hw_key(&self) -> Vec<u8> {
        let mut k = self.meta_key.clone();
        k.extend_from_slice(b"/hw");
        k
    }

    /// Subscribe to log-end changes (for replica fetches).
    pub fn subscribe_end(&self) -> watch::Receiver<i64> {
        self.log_end_tx.subscribe()
    }

    /// Lead with `epoch`: later appends carry it, and the epoch cache
    /// records that it starts at the current log end.
    pub fn become_leader(&self, epoch: i32) -> Result<(), StorageError> {
        let mut state = self.lock();
        if state.epochs.last().is_none_or(|(e, _)| epoch > *e) {
            let start = state.log_end_offset;
            state.epochs.push((epoch, start));
            self.persist_meta(&state)?;
        }
        state.leader_epoch = epoch;
        Ok(())
    }

    /// Follow a leader in `epoch` (what fetch requests are checked against).
    pub fn set_leader_epoch(&self, epoch: i32) {
        self.lock().leader_epoch = epoch;
    }

    /// The newest epoch in the epoch cache (what a follower asks the leader about).
    pub fn latest_epoch(&self) -> i32 {
        self.lock().epochs.last().map(|e| e.0).unwrap_or(0)
    }

    /// Remove everything from `offset` on (a follower diverged from its new
    /// leader). A batch that spans `offset` goes whole. Returns the new log end.
    pub fn truncate_to(&self, offset: i64) -> Result<i64, ReadError> {
        let mut state = self.lock();
        if offset >= state.log_end_offset {
            return Ok(state.log_end_offset);
        }
        let remaining = self.store.truncate_from(offset)?;
        let new_end = remaining
            .unwrap_or(state.log_start_offset)
            .min(offset)
            .max(state.log_start_offset);
        state.log_end_offset = new_end;
        state.high_watermark = state.high_watermark.min(new_end);
        state.epochs.retain(|(_, start)| *start < new_end);
        if state.epochs.is_empty() {
            let start = state.log_start_offset;
            state.epochs.push((0, start));
        }
        let mut emptied = Vec::new();
        for (pid, entry) in state.producers.iter_mut() {
            entry.batches.retain(|b| b.last_offset < new_end);
            if entry.batches.is_empty() {
                emptied.push(*pid);
            } else {
                self.producers_tree
                    .insert(self.producer_key(*pid), entry.encode())?;
            }
        }
        for pid in emptied {
            state.producers.remove(&pid);
            self.producers_tree.remove(self.producer_key(pid))?;
        }
        state.txns.truncate(new_end);
        self.rewrite_txns(&state)?;
        self.persist_meta(&state)?;
        self.logmeta
            .insert(self.state_checkpoint_key(), &new_end.to_be_bytes())?;
        self.log_end_tx.send_replace(new_end);
        tracing::info!(topic = %self.topic, partition = self.partition, log_end_offset = new_end, "log truncated to the leader's");
        Ok(new_end)
    }

    /// Drop the whole log and start it empty at `offset` (a follower so far
    /// behind that its leader no longer holds the records it needs).
    pub fn reset_to(&self, offset: i64) -> Result<(), ReadError> {
        let mut state = self.lock();
        self.store.clear()?;
        for (pid, _) in state.producers.drain() {
            self.producers_tree.remove(self.producer_key(pid))?;
        }
        state.txns.clear();
        self.rewrite_txns(&state)?;
        let epoch = state.epochs.last().map_or(0, |e| e.0);
        state.epochs = vec![(epoch, offset)];
        state.log_start_offset = offset;
        state.log_end_offset = offset;
        state.high_watermark = offset;
        self.persist_meta(&state)?;
        self.logmeta
            .insert(self.state_checkpoint_key(), &offset.to_be_bytes())?;
        self.log_end_tx.send_replace(offset);
        self.high_watermark_tx.send_replace(offset);
        tracing::info!(topic = %self.topic, partition = self.partition, offset, "log reset to the leader's start");
        Ok(())
    }

    /// SHA-256 of the stored bytes of every batch that ends before `upto`,
    /// and how many batches that is (replicas compare these).
    pub fn digest(&self, upto: i64) -> Result<(usize, String), ReadError> {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        let mut count = 0;
        for_each_batch(
            self.store.as_ref(),
            self.log_start_offset(),
            self.log_end_offset(),
            |h, batch| {
                if h.last_offset() >= upto {
                    return Ok(false);
                }
                hasher.update(&batch);
                count += 1;
                Ok(true)
            },
        )?;
        let hex = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok((count, hex))
    }

    /// Take a stored transactional batch into the transaction index and
    /// persist what changed; a marker from a newer producer epoch also
    /// fences that producer's older epochs.
    fn observe_txn(
        &self,
        state: &mut LogState,
        h: &batch::BatchHeader,
        bytes: &[u8],
    ) -> Result<(), StorageError> {
        let marker = txn::marker_of(h, bytes);
        if marker.is_some() && h.producer_id >= 0 {
            let current = state.producers.get(&h.producer_id).map(|e| e.epoch);
            if current.is_some_and(|epoch| h.producer_epoch > epoch) {
                let entry = ProducerEntry {
                    epoch: h.producer_epoch,
                    batches: Default::default(),
                };
                self.producers_tree
                    .insert(self.producer_key(h.producer_id), entry.encode())?;
                state.producers.insert(h.producer_id, entry);
            }
        }
        match state.txns.observe(h, marker) {
            None => {}
            Some(TxnChange::Began {
                producer_id,
                first_offset,
            }) => {
                self.logmeta.insert(
                    self.txn_key(ONGOING_TXN, &producer_id.to_be_bytes()),
                    &first_offset.to_be_bytes(),
                )?;
            }
            Some(TxnChange::Ended {
                producer_id,
                aborted,
            }) => {
                self.logmeta
                    .remove(self.txn_key(ONGOING_TXN, &producer_id.to_be_bytes()))?;
                if let Some(a) = aborted {
                    self.logmeta
                        .insert(self.aborted_key(&a), &txn::encode_aborted(&a))?;
                }
            }
        }
        Ok(())
    }

    /// Key of a transaction entry: `<meta key>/<kind>/<id>`.
    fn txn_key(&self, kind: &[u8], id: &[u8]) -> Vec<u8> {
        let mut k = self.meta_key.clone();
        k.push(b'/');
        k.extend_from_slice(kind);
        k.push(b'/');
        k.extend_from_slice(id);
        k
    }

    /// Aborted entries are keyed by marker offset, then producer id.
    fn aborted_key(&self, a: &txn::AbortedTxn) -> Vec<u8> {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&a.last_offset.to_be_bytes());
        id[8..].copy_from_slice(&a.producer_id.to_be_bytes());
        self.txn_key(ABORTED_TXN, &id)
    }

    /// Write the whole transaction index again (after a truncation or a reset).
    fn rewrite_txns(&self, state: &LogState) -> Result<(), StorageError> {
        for kind in [ONGOING_TXN, ABORTED_TXN] {
            for item in self.logmeta.scan_prefix(self.txn_key(kind, &[])) {
                self.logmeta.remove(item?.0)?;
            }
        }
        for (pid, first) in state.txns.open_transactions() {
            self.logmeta.insert(
                self.txn_key(ONGOING_TXN, &pid.to_be_bytes()),
                &first.to_be_bytes(),
            )?;
        }
        for a in state.txns.aborted() {
            self.logmeta
                .insert(self.aborted_key(a), &txn::encode_aborted(a))?;
        }
        Ok(())
    }

    /// Drop aborted entries below the new log start.
    fn trim_txns(&self, state: &mut LogState) -> Result<(), StorageError> {
        let start = state.log_start_offset;
        for a in state.txns.trim_before(start) {
            self.logmeta.remove(self.aborted_key(&a))?;
        }
        Ok(())
    }

    /// Append a COMMIT or ABORT marker for `producer_id` (written by the
    /// transaction coordinator, through WriteTxnMarkers). Refused when the
    /// producer is known here at a newer epoch.
    pub fn write_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: Marker,
        coordinator_epoch: i32,
    ) -> Result<AppendOutcome, AppendError> {
        let roll = self.policy().roll;
        let mut bytes = txn::encode_marker(
            producer_id,
            producer_epoch,
            marker,
            coordinator_epoch,
            now_ms(),
        )?;
        let mut state = self.lock();
        if let Some(current) = state.producers.get(&producer_id).map(|e| e.epoch) {
            if producer_epoch < current {
                return Err(AppendError::InvalidProducerEpoch {
                    producer_id,
                    epoch: producer_epoch,
                    current,
                });
            }
        }
        let base = state.log_end_offset;
        batch::assign(&mut bytes, base, state.leader_epoch, None);
        let h = batch::parse_header(&bytes)?;
        let summary = BatchSummary {
            base_offset: base,
            last_offset: base,
            max_timestamp: h.max_timestamp,
            size: bytes.len() as u32,
            leader_epoch: state.leader_epoch,
        };
        self.store_batch(&mut state, &bytes, &h, summary, roll)?;
        self.log_end_tx.send_replace(state.log_end_offset);
        if !state.replicated {
            state.high_watermark = state.log_end_offset;
            self.high_watermark_tx.send_replace(state.high_watermark);
        }
        Ok(AppendOutcome {
            base_offset: base,
            last_offset: base,
            log_append_time: -1,
            log_start_offset: state.log_start_offset,
        })
    }

    /// The first offset of `producer_id`'s open transaction here.
    pub fn open_transaction(&self, producer_id: i64) -> Option<i64> {
        self.lock().txns.ongoing(producer_id)
    }

    /// The last stable offset: `read_committed` consumers read below it.
    pub fn last_stable_offset(&self) -> i64 {
        self.lock().last_stable_offset()
    }

    /// The producers this partition knows (DescribeProducers).
    pub fn producers(&self) -> Vec<ProducerView> {
        let state = self.lock();
        let mut out: Vec<ProducerView> = state
            .producers
            .iter()
            .map(|(pid, entry)| {
                let last = entry.batches.back();
                ProducerView {
                    producer_id: *pid,
                    producer_epoch: entry.epoch,
                    last_sequence: last.map_or(-1, |b| b.last_sequence),
                    last_offset: last.map_or(-1, |b| b.last_offset),
                    current_txn_start_offset: state.txns.ongoing(*pid).unwrap_or(-1),
                }
            })
            .collect();
        for (pid, first) in state.txns.open_transactions() {
            if !state.producers.contains_key(&pid) {
                out.push(ProducerView {
                    producer_id: pid,
                    producer_epoch: -1,
                    last_sequence: -1,
                    last_offset: -1,
                    current_txn_start_offset: first,
                });
            }
        }
        out.sort_by_key(|p| p.producer_id);
        out
    }

    fn producer_key(&self, producer_id: i64) -> Vec<u8> {
        let mut k = self.meta_key.clone();
        k.push(b'/');
        k.extend_from_slice(&producer_id.to_be_bytes());
        k
    }

    /// Read whole batches from `fetch_offset`, up to `max_bytes` (the first
    /// batch is returned whole even when larger, if `allow_oversized_first`),
    /// one `Bytes` per batch.
    pub fn read(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        allow_oversized_first: bool,
        limit: ReadLimit,
    ) -> Result<ReadOutcome, ReadError> {
        let mut out = self.read_segments(fetch_offset, max_bytes, allow_oversized_first, limit)?;
        out.batches = join_batches(std::mem::take(&mut out.batches));
        Ok(out)
    }

    /// Read whole batches from `fetch_offset` as the store hands them over:
    /// pieces whose concatenation is the batches (what a Fetch response sends).
    pub fn read_segments(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        allow_oversized_first: bool,
        limit: ReadLimit,
    ) -> Result<ReadOutcome, ReadError> {
        let (log_start_offset, log_end_offset, high_watermark, last_stable_offset, aborted) = {
            let s = self.lock();
            let lso = s.last_stable_offset();
            let aborted = if limit == ReadLimit::LastStable && fetch_offset < lso {
                s.txns.aborted_between(fetch_offset, lso)
            } else {
                Vec::new()
            };
            (
                s.log_start_offset,
                s.log_end_offset,
                s.high_watermark,
                lso,
                aborted,
            )
        };
        if fetch_offset < log_start_offset || fetch_offset > log_end_offset {
            return Err(ReadError::OffsetOutOfRange {
                offset: fetch_offset,
                log_start_offset,
                log_end_offset,
            });
        }
        let upper = match limit {
            ReadLimit::HighWatermark => high_watermark,
            ReadLimit::LogEndOffset => log_end_offset,
            ReadLimit::LastStable => last_stable_offset,
        };
        let mut out = ReadOutcome {
            batches: Vec::new(),
            bytes: 0,
            high_watermark,
            log_start_offset,
            log_end_offset,
            last_stable_offset,
            aborted,
        };
        if fetch_offset >= upper {
            return Ok(out);
        }
        let read = self
            .store
            .read(fetch_offset, upper, max_bytes, allow_oversized_first)?;
        out.batches = read.chunks;
        out.bytes = read.bytes;
        Ok(out)
    }

    /// The stored batch holding `offset`.
    pub fn batch_at(&self, offset: i64) -> Result<Option<Bytes>, ReadError> {
        Ok(self.store.batch_at(offset)?.map(|(_, b)| b))
    }

    /// Earliest offset whose timestamp is >= `timestamp`, with that timestamp
    /// (ListOffsets by time). `None` when no record is that recent.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, ReadError> {
        let mut from = self.log_start_offset();
        let hw = self.high_watermark();
        while let Some(s) = self.store.find_by_timestamp(timestamp, from, hw)? {
            if let Some(found) = self.find_in_batch(s, |off, ts| off >= from && ts >= timestamp)? {
                return Ok(Some(found));
            }
            from = s.last_offset + 1;
        }
        Ok(None)
    }

    /// Offset and timestamp of the record with the largest timestamp (ListOffsets -3).
    pub fn max_timestamp_offset(&self) -> Result<Option<(i64, i64)>, ReadError> {
        let hw = self.high_watermark();
        match self.store.max_timestamp_batch(hw)? {
            Some(s) => {
                let max = s.max_timestamp;
                Ok(self
                    .find_in_batch(s, |_, ts| ts == max)?
                    .or(Some((s.last_offset, max))))
            }
            None => Ok(None),
        }
    }

    /// Decode one batch (off the hot path) and return the first record matching.
    fn find_in_batch(
        &self,
        s: BatchSummary,
        matches: impl Fn(i64, i64) -> bool,
    ) -> Result<Option<(i64, i64)>, ReadError> {
        let Some(bytes) = self.batch_at(s.base_offset)? else {
            return Ok(None);
        };
        let header = batch::parse_header(&bytes).ok();
        if header.map(|h| h.attributes & 0x08 != 0).unwrap_or(false) {
            // LogAppendTime: every record carries the batch's max timestamp.
            return Ok(
                matches(s.base_offset, s.max_timestamp).then_some((s.base_offset, s.max_timestamp))
            );
        }
        let mut buf = bytes;
        match kafka_protocol::records::RecordBatchDecoder::decode(&mut buf) {
            Ok(set) => Ok(set
                .records
                .iter()
                .find(|r| matches(r.offset, r.timestamp))
                .map(|r| (r.offset, r.timestamp))),
            Err(_) => {
                Ok(matches(s.base_offset, s.max_timestamp)
                    .then_some((s.base_offset, s.max_timestamp)))
            }
        }
    }

    /// Move the log start offset forward (DeleteRecords); -1 means the high
    /// watermark. Returns the new log start offset. Whole segments below it
    /// are removed; the one it falls in stays, and reads start at it.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, ReadError> {
        let mut state = self.lock();
        let target = if offset == -1 {
            state.high_watermark
        } else {
            offset
        };
        if target < 0 || target > state.high_watermark {
            return Err(ReadError::OffsetOutOfRange {
                offset,
                log_start_offset: state.log_start_offset,
                log_end_offset: state.log_end_offset,
            });
        }
        if target > state.log_start_offset {
            state.log_start_offset = target;
            self.trim_txns(&mut state)?;
            self.persist_meta(&state)?;
            self.store.delete_before(target)?;
        }
        Ok(state.log_start_offset)
    }

    /// Apply `retention.ms` and `retention.bytes` (negative = unlimited) to
    /// whole segments below the high watermark. Returns how many were removed.
    pub fn apply_retention(
        &self,
        retention_ms: i64,
        retention_bytes: i64,
    ) -> Result<usize, ReadError> {
        let now = now_ms();
        let mut state = self.lock();
        let mut new_start = state.log_start_offset;
        let mut size = self.store.size_bytes() as i64;
        let mut removed = 0;
        for s in self.store.segments() {
            if s.next_offset > state.high_watermark || s.size_bytes == 0 {
                break;
            }
            let expired = retention_ms >= 0 && s.max_timestamp < now - retention_ms;
            let oversized = retention_bytes >= 0 && size - s.size_bytes as i64 >= retention_bytes;
            if !(expired || oversized) {
                break;
            }
            size -= s.size_bytes as i64;
            new_start = s.next_offset;
            removed += 1;
        }
        if removed > 0 {
            state.log_start_offset = new_start.max(state.log_start_offset);
            self.trim_txns(&mut state)?;
            self.persist_meta(&state)?;
            self.store.delete_before(new_start)?;
        }
        Ok(removed)
    }

    /// Compact the closed segments (`cleanup.policy=compact`): keep the
    /// latest record of each key, and tombstones younger than
    /// `delete_retention_ms`.
    pub fn compact(&self, delete_retention_ms: i64) -> Result<CleanerStats, ReadError> {
        let (start, hw) = {
            let s = self.lock();
            (s.log_start_offset, s.high_watermark)
        };
        let tombstones_before = now_ms().saturating_sub(delete_retention_ms.max(0));
        let (plans, mut stats) = cleaner::plan(self.store.as_ref(), start, hw, tombstones_before)?;
        let mut swapped = 0;
        for (run, bytes) in plans {
            // Appends, truncation and retention wait for the swap.
            let _state = self.lock();
            if self.store.replace_segment(&run, bytes)? {
                swapped += 1;
            }
        }
        stats.segments_rewritten = swapped;
        if swapped > 0 {
            tracing::info!(topic = %self.topic, partition = self.partition, segments = swapped, records_removed = stats.records_removed, "log compacted");
        }
        Ok(stats)
    }

    /// The end offset of `epoch` (OffsetForLeaderEpoch): the start offset of the
    /// next larger epoch, or the log end offset for the current one. Returns
    /// (epoch, end offset), or (-1, -1) when unknown.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let state = self.lock();
        let mut found: Option<usize> = None;
        for (i, (e, _)) in state.epochs.iter().enumerate() {
            if *e <= epoch {
                found = Some(i);
            }
        }
        match found {
            None => (-1, -1),
            Some(i) if i + 1 == state.epochs.len() => (state.epochs[i].0, state.log_end_offset),
            Some(i) => (state.epochs[i].0, state.epochs[i + 1].1),
        }
    }

    fn persist_meta(&self, state: &LogState) -> Result<(), StorageError> {
        self.logmeta.insert(
            &self.meta_key,
            encode_logmeta(state.log_start_offset, &state.epochs),
        )?;
        Ok(())
    }

    /// Remove this log and everything it stored.
    pub fn destroy(&self, _topic_id: &str) -> Result<(), StorageError> {
        self.store.destroy()?;
        self.logmeta.remove(&self.meta_key)?;
        self.logmeta.remove(self.hw_key())?;
        self.logmeta.remove(self.state_checkpoint_key())?;
        for kind in [ONGOING_TXN, ABORTED_TXN] {
            for item in self.logmeta.scan_prefix(self.txn_key(kind, &[])) {
                self.logmeta.remove(item?.0)?;
            }
        }
        let mut prefix = self.meta_key.clone();
        prefix.push(b'/');
        for item in self.producers_tree.scan_prefix(&prefix) {
            let (k, _) = item?;
            self.producers_tree.remove(k)?;
        }
        Ok(())
    }
}

/// Kinds of transaction entries in the logmeta tree.
const ONGOING_TXN: &[u8] = b"txo";
const ABORTED_TXN: &[u8] = b"txa";

/// One producer as a partition knows it (DescribeProducers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerView {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub last_sequence: i32,
    /// The offset of its last batch here.
    pub last_offset: i64,
    /// The first offset of its open transaction here, or -1.
    pub current_txn_start_offset: i64,
}

/// Read a partition's transaction index from the logmeta tree.
fn load_txns(logmeta: &sled::Tree, meta_key: &[u8]) -> Result<TxnIndex, StorageError> {
    let prefix = |kind: &[u8]| {
        let mut k = meta_key.to_vec();
        k.push(b'/');
        k.extend_from_slice(kind);
        k.push(b'/');
        k
    };
    let be = |b: &[u8]| -> Option<i64> { Some(i64::from_be_bytes(b.try_into().ok()?)) };
    let mut ongoing = std::collections::HashMap::new();
    let p = prefix(ONGOING_TXN);
    for item in logmeta.scan_prefix(&p) {
        let (k, v) = item?;
        if let (Some(pid), Some(first)) = (be(&k[p.len()..]), be(&v)) {
            ongoing.insert(pid, first);
        }
    }
    let mut aborted = Vec::new();
    let p = prefix(ABORTED_TXN);
    for item in logmeta.scan_prefix(&p) {
        let (k, v) = item?;
        let id = &k[p.len()..];
        if id.len() == 16 {
            if let Some(a) = be(&id[8..]).and_then(|pid| txn::decode_aborted(pid, &v)) {
                aborted.push(a);
            }
        }
    }
    Ok(TxnIndex::from_parts(ongoing, aborted))
}

/// Call `f` with every stored batch of `[from, to)`, oldest first, whole
/// (pieces of the sled store joined), until it returns `false`. A batch
/// whose header cannot be read is an error: callers rewrite or hash what
/// they see, and must not take a cut-short log for the whole.
pub(crate) fn for_each_batch(
    store: &dyn LogStore,
    from: i64,
    to: i64,
    mut f: impl FnMut(&batch::BatchHeader, Bytes) -> Result<bool, StorageError>,
) -> Result<(), StorageError> {
    let mut offset = from;
    while offset < to {
        let read = store.read(offset, to, 4 << 20, true)?;
        if read.chunks.is_empty() {
            return Ok(());
        }
        let mut next = offset;
        for bytes in join_batches(read.chunks) {
            let h = batch::parse_header(&bytes).map_err(|e| StorageError::Corrupt {
                tree: "log".into(),
                what: format!("batch header near offset {next}: {e}"),
            })?;
            next = next.max(h.last_offset() + 1);
            if !f(&h, bytes)? {
                return Ok(());
            }
        }
        if next <= offset {
            return Ok(());
        }
        offset = next;
    }
    Ok(())
}

/// Cut pieces whose concatenation is whole batches into one `Bytes` per
/// batch (a batch split across pieces is joined: one copy).
fn join_batches(chunks: Vec<Bytes>) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(chunks.len());
    let mut partial = bytes::BytesMut::new();
    for chunk in chunks {
        let mut rest = if partial.is_empty() {
            chunk
        } else {
            partial.extend_from_slice(&chunk);
            std::mem::take(&mut partial).freeze()
        };
        loop {
            if rest.len() < batch::LOG_OVERHEAD {
                break;
            }
            let len = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]).max(0) as usize;
            let total = batch::LOG_OVERHEAD + len;
            if total > rest.len() {
                break;
            }
            out.push(rest.split_to(total));
        }
        if !rest.is_empty() {
            partial.extend_from_slice(&rest);
        }
    }
    out
}

fn encode_logmeta(log_start_offset: i64, epochs: &[(i32, i64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + epochs.len() * 12);
    out.extend_from_slice(&log_start_offset.to_be_bytes());
    for (e, start) in epochs {
        out.extend_from_slice(&e.to_be_bytes());
        out.extend_from_slice(&start.to_be_bytes());
    }
    out
}

fn decode_logmeta(b: &[u8]) -> Option<(i64, Vec<(i32, i64)>)> {
    if b.len() < 8 || !(b.len() - 8).is_multiple_of(12) {
        return None;
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[0..8]);
    let start = i64::from_be_bytes(a);
    let epochs = b[8..]
        .chunks_exact(12)
        .map(|c| {
            let mut o = [0u8; 8];
            o.copy_from_slice(&c[4..12]);
            (
                i32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                i64::from_be_bytes(o),
            )
        })
        .collect::<Vec<_>>();
    Some((
        start,
        if epochs.is_empty() {
            vec![(0, 0)]
        } else {
            epochs
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use batch::{encode_plain, split_and_validate, PlainRecord};

    fn open(dir: &std::path::Path, name: &str) -> (Storage, PartitionLog) {
        let storage = Storage::open(dir, 500, 8 * 1024 * 1024).expect("storage");
        let log = PartitionLog::open(&storage, name, name, 0).expect("log");
        (storage, log)
    }

    fn produce(log: &PartitionLog, values: &[&str]) -> AppendOutcome {
        let records: Vec<PlainRecord> = values
            .iter()
            .map(|v| PlainRecord {
                key: None,
                value: Some(Bytes::from(v.to_string())),
                timestamp: 1,
            })
            .collect();
        let bytes = encode_plain(&records, kafka_protocol::records::Compression::None).unwrap();
        let batches = split_and_validate(&bytes, 1 << 20).unwrap();
        log.append(batches, false).unwrap()
    }

    fn everything(log: &PartitionLog) -> Bytes {
        let read = log
            .read(0, usize::MAX, true, ReadLimit::LogEndOffset)
            .unwrap();
        read.batches.concat().into()
    }

    #[test]
    fn a_follower_copies_the_leaders_batches_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (_s1, leader) = open(&dir.path().join("l"), "t");
        let (_s2, follower) = open(&dir.path().join("f"), "t");
        leader.set_replicated().unwrap();
        follower.set_replicated().unwrap();
        leader.become_leader(3).unwrap();
        produce(&leader, &["a", "b"]);
        produce(&leader, &["c"]);
        // Nothing is committed until the ISR has it.
        assert_eq!(leader.high_watermark(), 0);
        let sent = everything(&leader);
        assert_eq!(follower.append_replicated(sent.clone()).unwrap(), 2);
        // Again: batches it already holds are skipped.
        assert_eq!(follower.append_replicated(sent).unwrap(), 0);
        assert_eq!(follower.log_end_offset(), 3);
        assert_eq!(follower.latest_epoch(), 3);
        assert_eq!(follower.digest(3).unwrap(), leader.digest(3).unwrap());
        // A batch damaged on the way is refused, not stored.
        produce(&leader, &["d"]);
        let mut damaged = bytes::BytesMut::from(&everything(&leader)[..]);
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        assert!(follower.append_replicated(damaged.freeze()).is_err());
        assert_eq!(follower.log_end_offset(), 3);
        leader.set_high_watermark(10);
        assert_eq!(leader.high_watermark(), 4, "capped at the log end");
    }

    #[test]
    fn truncation_removes_whole_batches_and_their_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, log) = open(dir.path(), "t");
        log.set_replicated().unwrap();
        log.become_leader(1).unwrap();
        produce(&log, &["a", "b"]);
        log.become_leader(2).unwrap();
        produce(&log, &["c", "d"]);
        produce(&log, &["e"]);
        assert_eq!(log.end_offset_for_epoch(1), (1, 2));
        // Offset 3 is inside the batch [2, 3]: the whole batch goes.
        assert_eq!(log.truncate_to(3).unwrap(), 2);
        assert_eq!(log.log_end_offset(), 2);
        assert_eq!(log.latest_epoch(), 1);
        assert_eq!(
            log.read(0, 1 << 20, true, ReadLimit::LogEndOffset)
                .unwrap()
                .batches
                .len(),
            1
        );
        // Appends continue from the cut.
        assert_eq!(produce(&log, &["x"]).base_offset, 2);
    }

    #[test]
    fn high_watermark_checkpoint_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_s, log) = open(dir.path(), "t");
            log.set_replicated().unwrap();
            produce(&log, &["a", "b", "c"]);
            log.set_high_watermark(2);
            log.checkpoint_high_watermark().unwrap();
        }
        let (_s, log) = open(dir.path(), "t");
        assert_eq!(log.high_watermark(), 3, "a single node commits everything");
        log.set_replicated().unwrap();
        assert_eq!(log.high_watermark(), 2);
        log.reset_to(10).unwrap();
        assert_eq!(
            (
                log.log_start_offset(),
                log.log_end_offset(),
                log.high_watermark()
            ),
            (10, 10, 10)
        );
    }

    // ---- The same suite against both stores -------------------------------

    fn open_kind(dir: &std::path::Path, kind: LogStoreKind) -> (Storage, PartitionLog) {
        let storage = Storage::open_with(
            dir,
            &storage::StorageOptions {
                log_store: kind,
                log_open_files: 16,
                ..storage::StorageOptions::default()
            },
        )
        .expect("storage");
        let log = PartitionLog::open(&storage, "t", "tid", 0).expect("log");
        (storage, log)
    }

    const KINDS: [LogStoreKind; 2] = [LogStoreKind::Segments, LogStoreKind::Sled];

    fn values(log: &PartitionLog, from: i64) -> Vec<String> {
        let mut out = Vec::new();
        let mut offset = from;
        loop {
            let read = log
                .read(offset, 1 << 20, true, ReadLimit::HighWatermark)
                .unwrap();
            if read.batches.is_empty() {
                return out;
            }
            for b in read.batches {
                let mut buf = b.clone();
                let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).unwrap();
                for r in set.records {
                    if r.offset >= offset {
                        let v = r.value.map(|v| String::from_utf8(v.to_vec()).unwrap());
                        out.push(v.unwrap_or_else(|| "<null>".into()));
                    }
                }
                offset = batch::parse_header(&b).unwrap().last_offset() + 1;
            }
        }
    }

    fn small_segments(log: &PartitionLog, bytes: u64) {
        log.set_policy(LogPolicy {
            roll: RollPolicy {
                segment_bytes: bytes,
                ..RollPolicy::default()
            },
            ..LogPolicy::default()
        });
    }

    #[test]
    fn every_store_serves_what_was_appended_across_restarts() {
        for kind in KINDS {
            let dir = tempfile::tempdir().unwrap();
            {
                let (_s, log) = open_kind(dir.path(), kind);
                small_segments(&log, 300);
                for i in 0..50 {
                    produce(&log, &[&format!("v{i}"), &format!("w{i}")]);
                }
                assert_eq!(log.log_end_offset(), 100);
                log.flush_now().unwrap();
            }
            let (_s, log) = open_kind(dir.path(), kind);
            assert_eq!(
                (log.log_start_offset(), log.log_end_offset()),
                (0, 100),
                "{kind:?}"
            );
            let got = values(&log, 0);
            assert_eq!(got.len(), 100, "{kind:?}");
            assert_eq!(got[99], "w49");
            // A read from the middle of a batch starts with that batch.
            let from_middle = log
                .read(7, 1 << 20, true, ReadLimit::HighWatermark)
                .unwrap();
            let first = batch::parse_header(&from_middle.batches[0]).unwrap();
            assert_eq!(first.base_offset, 6, "{kind:?}");
            // max_bytes stops at a batch boundary, but the first batch is whole.
            let tiny = log.read(0, 1, true, ReadLimit::HighWatermark).unwrap();
            assert_eq!(tiny.batches.len(), 1);
            let none = log.read(0, 1, false, ReadLimit::HighWatermark).unwrap();
            assert!(none.batches.is_empty());
            assert_eq!(produce(&log, &["after"]).base_offset, 100);
        }
    }

    #[test]
    fn both_stores_return_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (_a, seg) = open_kind(&dir.path().join("a"), LogStoreKind::Segments);
        let (_b, sled) = open_kind(&dir.path().join("b"), LogStoreKind::Sled);
        small_segments(&seg, 500);
        for i in 0..40 {
            let v = format!("record-{i}-{}", "x".repeat(i * 7));
            produce(&seg, &[&v]);
            produce(&sled, &[&v]);
        }
        for from in [0, 1, 13, 39] {
            for max in [1usize, 200, 1000, 1 << 20] {
                let a = seg.read(from, max, true, ReadLimit::HighWatermark).unwrap();
                let b = sled
                    .read(from, max, true, ReadLimit::HighWatermark)
                    .unwrap();
                assert_eq!(a.batches, b.batches, "from {from} max {max}");
                assert_eq!(a.bytes, b.bytes);
            }
        }
        assert_eq!(seg.digest(40).unwrap(), sled.digest(40).unwrap());
        assert_eq!(seg.size_bytes(), sled.size_bytes());
    }

    #[test]
    fn a_torn_tail_is_cut_at_start_and_the_rest_is_served() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_s, log) = open_kind(dir.path(), LogStoreKind::Segments);
            for i in 0..10 {
                produce(&log, &[&format!("v{i}")]);
            }
        }
        // Cut the active segment in the middle of its last batch.
        let seg_dir = dir.path().join("logs").join("t-0");
        let file = seg_dir.join(format!("{:020}.log", 0));
        let len = std::fs::metadata(&file).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        f.set_len(len - 5).unwrap();
        drop(f);
        let (_s, log) = open_kind(dir.path(), LogStoreKind::Segments);
        assert_eq!(log.log_end_offset(), 9);
        assert_eq!(
            values(&log, 0),
            (0..9).map(|i| format!("v{i}")).collect::<Vec<_>>()
        );
        assert_eq!(produce(&log, &["again"]).base_offset, 9);
        assert_eq!(values(&log, 9), vec!["again".to_string()]);
    }

    #[test]
    fn a_flipped_byte_in_the_active_segment_ends_the_log_there() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_s, log) = open_kind(dir.path(), LogStoreKind::Segments);
            for i in 0..6 {
                produce(&log, &[&format!("v{i}")]);
            }
        }
        let file = dir.path().join("logs/t-0").join(format!("{:020}.log", 0));
        let mut bytes = std::fs::read(&file).unwrap();
        let batch_len = bytes.len() / 6;
        bytes[batch_len * 4 + batch_len / 2 + 10] ^= 0xff;
        std::fs::write(&file, &bytes).unwrap();
        let (_s, log) = open_kind(dir.path(), LogStoreKind::Segments);
        assert_eq!(log.log_end_offset(), 4);
    }

    #[test]
    fn retention_removes_whole_segments_and_delete_records_moves_inside_one() {
        for kind in KINDS {
            let dir = tempfile::tempdir().unwrap();
            let (_s, log) = open_kind(dir.path(), kind);
            small_segments(&log, 250);
            for i in 0..30 {
                produce(&log, &[&format!("value-{i:02}")]);
            }
            let before = log.size_bytes();
            // Keep about 1000 bytes: whole runs from the oldest go.
            let removed = log.apply_retention(-1, 1000).unwrap();
            assert!(removed > 0, "{kind:?}");
            assert!(log.size_bytes() < before);
            assert!(
                log.size_bytes() >= 1000 - 300,
                "{kind:?}: {}",
                log.size_bytes()
            );
            let start = log.log_start_offset();
            assert!(start > 0);
            assert_eq!(values(&log, start)[0], format!("value-{start:02}"));
            // DeleteRecords may stop inside a segment: reads start there.
            assert_eq!(log.delete_records_before(start + 1).unwrap(), start + 1);
            assert!(matches!(
                log.read(start, 100, true, ReadLimit::HighWatermark),
                Err(ReadError::OffsetOutOfRange { .. })
            ));
            assert_eq!(
                values(&log, start + 1)[0],
                format!("value-{:02}", start + 1)
            );
            // Everything old: every segment goes, the log end stays.
            log.apply_retention(0, -1).unwrap();
            assert_eq!(log.log_start_offset(), 30, "{kind:?}");
            assert_eq!(log.log_end_offset(), 30);
            assert_eq!(produce(&log, &["x"]).base_offset, 30);
        }
    }

    #[test]
    fn timestamps_are_found_across_segments() {
        for kind in KINDS {
            let dir = tempfile::tempdir().unwrap();
            let (_s, log) = open_kind(dir.path(), kind);
            small_segments(&log, 200);
            for i in 0..20i64 {
                let records = vec![PlainRecord {
                    key: None,
                    value: Some(Bytes::from(format!("v{i}"))),
                    timestamp: 1000 + i * 10,
                }];
                let bytes =
                    encode_plain(&records, kafka_protocol::records::Compression::None).unwrap();
                log.append(split_and_validate(&bytes, 1 << 20).unwrap(), false)
                    .unwrap();
            }
            assert_eq!(log.offset_for_timestamp(1000).unwrap(), Some((0, 1000)));
            assert_eq!(log.offset_for_timestamp(1095).unwrap(), Some((10, 1100)));
            assert_eq!(log.offset_for_timestamp(1190).unwrap(), Some((19, 1190)));
            assert_eq!(log.offset_for_timestamp(5000).unwrap(), None);
            assert_eq!(
                log.max_timestamp_offset().unwrap(),
                Some((19, 1190)),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn producer_state_lost_by_a_crash_is_rebuilt_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let idempotent = |seq: i32, v: &str| {
            let records = vec![PlainRecord {
                key: None,
                value: Some(Bytes::from(v.to_string())),
                timestamp: 1,
            }];
            let mut bytes =
                encode_plain(&records, kafka_protocol::records::Compression::None).unwrap();
            // producer id 7, epoch 0, base sequence `seq`; then a fresh CRC.
            bytes[43..51].copy_from_slice(&7i64.to_be_bytes());
            bytes[51..53].copy_from_slice(&0i16.to_be_bytes());
            bytes[53..57].copy_from_slice(&seq.to_be_bytes());
            let crc = crc32c::crc32c(&bytes[21..]);
            bytes[17..21].copy_from_slice(&crc.to_be_bytes());
            split_and_validate(&bytes, 1 << 20).unwrap()
        };
        {
            let (storage, log) = open_kind(dir.path(), LogStoreKind::Segments);
            for seq in 0..3 {
                log.append(idempotent(seq, "a"), false).unwrap();
            }
            // What sled had not written when the process died.
            let producers = storage.tree(storage::PRODUCERS_TREE).unwrap();
            producers.clear().unwrap();
            storage
                .tree(storage::LOGMETA_TREE)
                .unwrap()
                .insert(log.state_checkpoint_key(), &0i64.to_be_bytes())
                .unwrap();
        }
        let (_s, log) = open_kind(dir.path(), LogStoreKind::Segments);
        // A retry of the last batch is a duplicate, the next one appends.
        assert_eq!(
            log.append(idempotent(2, "a"), false).unwrap().base_offset,
            2
        );
        assert_eq!(log.log_end_offset(), 3);
        assert_eq!(
            log.append(idempotent(3, "b"), false).unwrap().base_offset,
            3
        );
    }

    #[test]
    fn truncation_across_segments_keeps_the_earlier_ones() {
        for kind in KINDS {
            let dir = tempfile::tempdir().unwrap();
            {
                let (_s, log) = open_kind(dir.path(), kind);
                small_segments(&log, 200);
                for i in 0..20 {
                    produce(&log, &[&format!("v{i}")]);
                }
                assert_eq!(log.truncate_to(7).unwrap(), 7, "{kind:?}");
                let expected: Vec<String> = (0..7).map(|i| format!("v{i}")).collect();
                assert_eq!(values(&log, 0), expected);
                assert_eq!(produce(&log, &["n"]).base_offset, 7);
            }
            let (_s, log) = open_kind(dir.path(), kind);
            assert_eq!(log.log_end_offset(), 8, "{kind:?}");
        }
    }

    #[tokio::test]
    async fn concurrent_syncs_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, log) = open_kind(dir.path(), LogStoreKind::Segments);
        let log = Arc::new(log);
        produce(&log, &["a"]);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let log = log.clone();
                tokio::spawn(async move { log.sync().await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert!(!log.dirty.load(Ordering::Acquire));
    }

    #[test]
    fn compaction_keeps_the_latest_record_of_each_key_in_closed_segments() {
        for kind in KINDS {
            let dir = tempfile::tempdir().unwrap();
            let (_s, log) = open_kind(dir.path(), kind);
            small_segments(&log, 300);
            let keyed = |k: &str, v: Option<&str>, ts: i64| {
                let records = vec![PlainRecord {
                    key: Some(Bytes::from(k.to_string())),
                    value: v.map(|v| Bytes::from(v.to_string())),
                    timestamp: ts,
                }];
                let bytes =
                    encode_plain(&records, kafka_protocol::records::Compression::None).unwrap();
                split_and_validate(&bytes, 1 << 20).unwrap()
            };
            let now = now_ms();
            for round in 0..10 {
                for k in ["a", "b", "c"] {
                    log.append(keyed(k, Some(&format!("{k}{round}")), now), false)
                        .unwrap();
                }
            }
            // "b" deleted long ago: its tombstone has expired too.
            log.append(keyed("b", None, now - 10_000_000), false)
                .unwrap();
            log.append(keyed("z", Some("active"), now), false).unwrap();
            let end = log.log_end_offset();
            let stats = log.compact(86_400_000).unwrap();
            assert!(stats.segments_rewritten > 0, "{kind:?}");
            assert_eq!(log.log_end_offset(), end);
            let mut latest = std::collections::BTreeMap::new();
            let mut offset = 0;
            let read = log
                .read(0, 1 << 24, true, ReadLimit::HighWatermark)
                .unwrap();
            let mut count = 0;
            for b in read.batches {
                let mut buf = b.clone();
                for r in kafka_protocol::records::RecordBatchDecoder::decode(&mut buf)
                    .unwrap()
                    .records
                {
                    assert!(r.offset >= offset, "offsets only grow");
                    offset = r.offset;
                    count += 1;
                    latest.insert(r.key.unwrap(), r.value);
                }
            }
            assert_eq!(latest[&Bytes::from("a")], Some(Bytes::from("a9")));
            assert_eq!(latest[&Bytes::from("c")], Some(Bytes::from("c9")));
            assert!(count < 32, "{kind:?}: {count} records left");
            // Reads still find every offset that remains, and compacted
            // segments survive a restart.
            drop(log);
            drop(_s);
            let (_s, log) = open_kind(dir.path(), kind);
            assert_eq!(log.log_end_offset(), end);
            let start = log.log_start_offset();
            assert_eq!(
                values(&log, start).last().map(String::as_str),
                Some("active")
            );
        }
    }

    #[test]
    fn a_log_emptied_by_retention_keeps_its_end_even_if_sled_lost_its_state() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (storage, log) = open_kind(dir.path(), LogStoreKind::Segments);
            small_segments(&log, 200);
            for i in 0..12 {
                produce(&log, &[&format!("v{i}")]);
            }
            log.apply_retention(0, -1).unwrap();
            assert_eq!((log.log_start_offset(), log.log_end_offset()), (12, 12));
            // A crash before sled wrote the new log start.
            storage
                .tree(storage::LOGMETA_TREE)
                .unwrap()
                .remove(&log.meta_key)
                .unwrap();
        }
        let (_s, log) = open_kind(dir.path(), LogStoreKind::Segments);
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (12, 12));
        assert_eq!(produce(&log, &["next"]).base_offset, 12);
    }
}

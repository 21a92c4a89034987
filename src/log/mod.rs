//! One partition's log: batches keyed by base offset in a sled tree (each
//! batch stored as chunks of at most `CHUNK_BYTES`, see below), a small index
//! tree (base offset -> last offset, max timestamp, size, leader epoch),
//! log start/end offsets, the high watermark, the leader-epoch cache and the
//! idempotent-producer table.
//!
//! It stores and returns batches as bytes. It never speaks the wire protocol and
//! never decodes records on the append or fetch path.

pub mod batch;
pub mod producers;

use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::watch;

use crate::storage::{self, Storage, StorageError};
use batch::{BatchError, ProducedBatch};
use producers::{ProducerEntry, ProducerTable, SequenceCheck, SequencedBatch};

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
}

/// Where a read may go up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadLimit {
    /// Consumers see only committed records.
    HighWatermark,
    /// Replicas read everything the leader has.
    LogEndOffset,
}

/// Summary of one stored batch, the value of the index tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSummary {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub size: u32,
    pub leader_epoch: i32,
}

impl BatchSummary {
    fn encode(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[0..8].copy_from_slice(&self.last_offset.to_be_bytes());
        out[8..16].copy_from_slice(&self.max_timestamp.to_be_bytes());
        out[16..20].copy_from_slice(&self.size.to_be_bytes());
        out[20..24].copy_from_slice(&self.leader_epoch.to_be_bytes());
        out
    }

    fn decode(key: &[u8], value: &[u8]) -> Option<Self> {
        if key.len() != 8 || value.len() != 24 {
            return None;
        }
        let i64_of = |b: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            i64::from_be_bytes(a)
        };
        Some(BatchSummary {
            base_offset: i64_of(key),
            last_offset: i64_of(&value[0..8]),
            max_timestamp: i64_of(&value[8..16]),
            size: u32::from_be_bytes([value[16], value[17], value[18], value[19]]),
            leader_epoch: i32::from_be_bytes([value[20], value[21], value[22], value[23]]),
        })
    }
}

fn offset_key(offset: i64) -> [u8; 8] {
    (offset.max(0) as u64).to_be_bytes()
}

/// Largest value stored in the batches tree. sled 0.34 accounts a cached page
/// by its on-log size, and a large value (a "blob") counts as a pointer, so
/// storing 1 MiB batches whole lets its cache hold gigabytes. Batches are
/// therefore stored as chunks of this size, which keeps the node's memory
/// within a small multiple of `--cache-capacity-mb` (measured in
/// docs/BENCHMARKS.md). Chunks are passed to the network by reference.
pub const CHUNK_BYTES: usize = 8 * 1024;

/// Key of chunk `index` of the batch at `base_offset`.
fn chunk_key(base_offset: i64, index: u16) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..8].copy_from_slice(&offset_key(base_offset));
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

fn base_of_chunk_key(key: &[u8]) -> Option<i64> {
    let b: [u8; 8] = key.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(b) as i64)
}

/// The mutable part of a partition log, behind one lock so that offset
/// assignment and the producer checks are atomic.
#[derive(Debug)]
struct LogState {
    log_start_offset: i64,
    log_end_offset: i64,
    high_watermark: i64,
    leader_epoch: i32,
    size_bytes: u64,
    producers: ProducerTable,
    /// Leader-epoch cache: (epoch, start offset), ascending by epoch.
    epochs: Vec<(i32, i64)>,
    /// In a cluster the high watermark follows the ISR (moved by the
    /// replica manager); on a single node it follows every append.
    replicated: bool,
    /// The high watermark last written by `checkpoint_high_watermark`.
    checkpointed_high_watermark: i64,
}

/// One partition's log.
pub struct PartitionLog {
    pub topic: String,
    pub partition: i32,
    storage: Storage,
    /// base offset -> batch bytes, exactly as served.
    batches: sled::Tree,
    /// base offset -> `BatchSummary` (without reading batches).
    index: sled::Tree,
    /// The node's logmeta tree (log start offset, leader-epoch cache).
    logmeta: sled::Tree,
    /// The node's idempotent-producer tree (this partition's entries).
    producers_tree: sled::Tree,
    /// Key of this partition in the logmeta and producers trees.
    meta_key: Vec<u8>,
    state: Mutex<LogState>,
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

impl PartitionLog {
    /// Open (or create) the log of `topic`-`partition` whose trees are named by `topic_id`.
    pub fn open(
        storage: &Storage,
        topic: &str,
        topic_id: &str,
        partition: i32,
    ) -> Result<Self, StorageError> {
        let batches = storage.tree(&storage::log_tree_name(topic_id, partition))?;
        let index = storage.tree(&storage::index_tree_name(topic_id, partition))?;
        let meta_key = format!("{topic_id}:{partition}").into_bytes();
        let logmeta = storage.tree(storage::LOGMETA_TREE)?;

        let (mut log_start_offset, epochs) = match logmeta.get(&meta_key)? {
            Some(v) => decode_logmeta(&v).ok_or_else(|| StorageError::Corrupt {
                tree: storage::LOGMETA_TREE.into(),
                what: format!("entry for {topic}-{partition}"),
            })?,
            None => (0, vec![(0, 0)]),
        };

        // Chunks of a batch are written atomically (one sled batch) before its
        // index entry. After a crash, chunks past the last index entry belong to
        // an append that was never acknowledged: remove them. An index entry
        // whose chunks do not add up is dropped with them.
        loop {
            let last = index.last()?;
            let tail_start = match &last {
                Some((k, v)) => match BatchSummary::decode(k, v) {
                    Some(s) => chunk_key(s.last_offset + 1, 0).to_vec(),
                    None => k.to_vec(),
                },
                None => Vec::new(),
            };
            let unindexed: Vec<sled::IVec> = batches
                .range(tail_start.as_slice()..)
                .keys()
                .collect::<Result<_, _>>()?;
            for k in unindexed {
                batches.remove(k)?;
            }
            let Some((k, v)) = last else { break };
            let complete = match BatchSummary::decode(&k, &v) {
                Some(s) => {
                    let stored: usize = batches
                        .range(chunk_key(s.base_offset, 0)..chunk_key(s.base_offset + 1, 0))
                        .values()
                        .map(|v| v.map(|v| v.len()))
                        .sum::<Result<usize, _>>()?;
                    stored == s.size as usize
                }
                None => false,
            };
            if complete {
                break;
            }
            index.remove(&k)?;
        }

        let mut size_bytes = 0u64;
        let mut log_end_offset = log_start_offset;
        for item in index.iter() {
            let (k, v) = item?;
            let s = BatchSummary::decode(&k, &v).ok_or_else(|| StorageError::Corrupt {
                tree: storage::index_tree_name(topic_id, partition),
                what: "index entry".into(),
            })?;
            size_bytes += s.size as u64;
            log_end_offset = log_end_offset.max(s.last_offset + 1);
        }
        if let Some((k, v)) = index.first()? {
            if let Some(s) = BatchSummary::decode(&k, &v) {
                log_start_offset = log_start_offset.max(s.base_offset).min(log_end_offset);
            }
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

        let leader_epoch = epochs.last().map(|e| e.0).unwrap_or(0);
        let (high_watermark_tx, _) = watch::channel(log_end_offset);
        let (log_end_tx, _) = watch::channel(log_end_offset);
        Ok(PartitionLog {
            topic: topic.to_string(),
            partition,
            storage: storage.clone(),
            batches,
            index,
            logmeta,
            producers_tree,
            meta_key,
            state: Mutex::new(LogState {
                log_start_offset,
                log_end_offset,
                high_watermark: log_end_offset,
                leader_epoch,
                size_bytes,
                producers,
                epochs,
                replicated: false,
                checkpointed_high_watermark: -1,
            }),
            high_watermark_tx,
            log_end_tx,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogState> {
        // A panic while holding the lock leaves consistent state (every write
        // to sled happens before the in-memory update), so poisoning is ignored.
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
        self.lock().size_bytes
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
            self.store_batch(&mut state, &produced.bytes, &h, summary)?;
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

    /// Write one batch (already given its offsets) as chunks plus its index
    /// entry, record its producer sequence, and move the log end.
    fn store_batch(
        &self,
        state: &mut LogState,
        bytes: &[u8],
        h: &batch::BatchHeader,
        summary: BatchSummary,
    ) -> Result<(), AppendError> {
        let mut chunks = sled::Batch::default();
        for (i, chunk) in bytes.chunks(CHUNK_BYTES).enumerate() {
            chunks.insert(&chunk_key(summary.base_offset, i as u16), chunk);
        }
        self.batches.apply_batch(chunks)?;
        self.index
            .insert(offset_key(summary.base_offset), &summary.encode())?;
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
            self.producers_tree
                .insert(self.producer_key(h.producer_id), entry.encode())?;
            state.producers.insert(h.producer_id, entry);
        }
        state.log_end_offset = summary.last_offset + 1;
        state.size_bytes += summary.size as u64;
        Ok(())
    }

    /// Append batches fetched from the leader, as they are: offsets, leader
    /// epochs and producer sequences come from the leader (so a follower
    /// that becomes leader deduplicates retries as the old one did). Batches
    /// the log already holds are skipped; the first batch that does not
    /// start at the log end stops the append. Returns how many were written.
    pub fn append_replicated(&self, records: Bytes) -> Result<usize, AppendError> {
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
            self.store_batch(&mut state, &bytes, &h, summary)?;
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
        let doomed: Vec<BatchSummary> = self
            .index
            .iter()
            .rev()
            .filter_map(|r| r.ok())
            .filter_map(|(k, v)| BatchSummary::decode(&k, &v))
            .take_while(|s| s.last_offset >= offset)
            .collect();
        let mut new_end = offset.min(state.log_end_offset);
        for s in &doomed {
            self.remove_batch(&mut state, s)?;
            new_end = new_end.min(s.base_offset);
        }
        let new_end = new_end.max(state.log_start_offset);
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
        self.persist_meta(&state)?;
        self.log_end_tx.send_replace(new_end);
        tracing::info!(topic = %self.topic, partition = self.partition, log_end_offset = new_end, "log truncated to the leader's");
        Ok(new_end)
    }

    /// Drop the whole log and start it empty at `offset` (a follower so far
    /// behind that its leader no longer holds the records it needs).
    pub fn reset_to(&self, offset: i64) -> Result<(), ReadError> {
        let mut state = self.lock();
        let end = state.log_end_offset;
        self.remove_batches_below(&mut state, end.max(offset))?;
        for (pid, _) in state.producers.drain() {
            self.producers_tree.remove(self.producer_key(pid))?;
        }
        let epoch = state.epochs.last().map_or(0, |e| e.0);
        state.epochs = vec![(epoch, offset)];
        state.log_start_offset = offset;
        state.log_end_offset = offset;
        state.high_watermark = offset;
        state.size_bytes = 0;
        self.persist_meta(&state)?;
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
        for s in self.summaries() {
            if s.last_offset >= upto {
                break;
            }
            for chunk in self
                .batches
                .range(chunk_key(s.base_offset, 0)..chunk_key(s.base_offset + 1, 0))
                .values()
            {
                hasher.update(&chunk?);
            }
            count += 1;
        }
        let hex = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok((count, hex))
    }

    fn producer_key(&self, producer_id: i64) -> Vec<u8> {
        let mut k = self.meta_key.clone();
        k.push(b'/');
        k.extend_from_slice(&producer_id.to_be_bytes());
        k
    }

    /// Read whole batches from `fetch_offset`, up to `max_bytes` (the first
    /// batch is returned whole even when larger, if `allow_oversized_first`).
    /// A batch stored in several chunks is joined (one copy); the fetch path
    /// uses `read_segments` instead.
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

    /// Like `read`, but `batches` holds the stored chunks (in order; a batch may
    /// span several), shared with sled's cache rather than copied.
    pub fn read_segments(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        allow_oversized_first: bool,
        limit: ReadLimit,
    ) -> Result<ReadOutcome, ReadError> {
        let (log_start_offset, log_end_offset, high_watermark) = {
            let s = self.lock();
            (s.log_start_offset, s.log_end_offset, s.high_watermark)
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
        };
        let mut out = ReadOutcome {
            batches: Vec::new(),
            bytes: 0,
            high_watermark,
            log_start_offset,
            log_end_offset,
        };
        if fetch_offset >= upper {
            return Ok(out);
        }
        let start = match self.index.range(..=offset_key(fetch_offset)).next_back() {
            Some(item) => {
                let (k, v) = item?;
                match BatchSummary::decode(&k, &v) {
                    Some(s) if s.last_offset >= fetch_offset => s.base_offset,
                    _ => fetch_offset,
                }
            }
            None => fetch_offset,
        };
        // Bytes of the current batch still to come, and whether it is taken.
        let mut pending = 0usize;
        let mut taking = false;
        // Where the current batch starts in `out.batches`, and its size.
        let mut batch_start = 0usize;
        let mut batch_total = 0usize;
        for item in self.batches.range(chunk_key(start, 0)..) {
            let (k, v) = item?;
            if pending == 0 {
                // The first chunk of a batch: decide on the whole batch.
                let Ok(h) = batch::parse_header(&v) else {
                    break;
                };
                if base_of_chunk_key(&k) != Some(h.base_offset) || h.base_offset >= upper {
                    break;
                }
                let total = h.total_len();
                let first = out.bytes == 0 && allow_oversized_first;
                if out.bytes + total > max_bytes && !first {
                    break;
                }
                pending = total;
                taking = true;
                batch_start = out.batches.len();
                batch_total = total;
                out.bytes += total;
            }
            if !taking {
                break;
            }
            pending = pending.saturating_sub(v.len());
            out.batches.push(Bytes::from_owner(v));
            if pending == 0 && out.bytes >= max_bytes {
                break;
            }
        }
        if pending > 0 {
            // The last batch is missing chunks (retention is removing it, or
            // the range ended): leave it out.
            out.batches.truncate(batch_start);
            out.bytes -= batch_total;
        }
        Ok(out)
    }

    /// Summaries of all batches, oldest first (for timestamp lookups and retention).
    pub fn summaries(&self) -> impl Iterator<Item = BatchSummary> + '_ {
        self.index
            .iter()
            .filter_map(|r| r.ok())
            .filter_map(|(k, v)| BatchSummary::decode(&k, &v))
    }

    /// The stored batch with this base offset (its chunks joined).
    pub fn batch_at(&self, base_offset: i64) -> Result<Option<Bytes>, ReadError> {
        let chunks: Vec<Bytes> = self
            .batches
            .range(chunk_key(base_offset, 0)..chunk_key(base_offset + 1, 0))
            .values()
            .map(|v| v.map(Bytes::from_owner))
            .collect::<Result<_, _>>()?;
        Ok(match chunks.len() {
            0 => None,
            _ => join_batches(chunks).into_iter().next(),
        })
    }

    /// Earliest offset whose timestamp is >= `timestamp`, with that timestamp
    /// (ListOffsets by time). `None` when no record is that recent.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, ReadError> {
        let start = self.log_start_offset();
        let hw = self.high_watermark();
        for s in self.summaries() {
            if s.base_offset >= hw {
                break;
            }
            if s.max_timestamp < timestamp || s.last_offset < start {
                continue;
            }
            if let Some(found) = self.find_in_batch(s, |off, ts| off >= start && ts >= timestamp)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Offset and timestamp of the record with the largest timestamp (ListOffsets -3).
    pub fn max_timestamp_offset(&self) -> Result<Option<(i64, i64)>, ReadError> {
        let hw = self.high_watermark();
        let best = self.summaries().filter(|s| s.base_offset < hw).fold(
            None::<BatchSummary>,
            |best, s| match best {
                Some(b) if b.max_timestamp >= s.max_timestamp => Some(b),
                _ => Some(s),
            },
        );
        match best {
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
    /// watermark. Returns the new log start offset.
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
            self.remove_batches_below(&mut state, target)?;
            self.persist_meta(&state)?;
        }
        Ok(state.log_start_offset)
    }

    /// Remove whole batches that end before `offset`.
    fn remove_batches_below(&self, state: &mut LogState, offset: i64) -> Result<(), ReadError> {
        let doomed: Vec<BatchSummary> = self
            .summaries()
            .take_while(|s| s.last_offset < offset)
            .collect();
        for s in &doomed {
            self.remove_batch(state, s)?;
        }
        Ok(())
    }

    /// Remove one batch: its index entry and its chunks.
    fn remove_batch(&self, state: &mut LogState, s: &BatchSummary) -> Result<(), ReadError> {
        self.index.remove(offset_key(s.base_offset))?;
        let chunks: Vec<sled::IVec> = self
            .batches
            .range(chunk_key(s.base_offset, 0)..chunk_key(s.base_offset + 1, 0))
            .keys()
            .collect::<Result<_, _>>()?;
        for k in chunks {
            self.batches.remove(k)?;
        }
        state.size_bytes = state.size_bytes.saturating_sub(s.size as u64);
        Ok(())
    }

    /// Apply `retention.ms` and `retention.bytes` (negative = unlimited).
    /// Returns how many batches were removed.
    pub fn apply_retention(
        &self,
        retention_ms: i64,
        retention_bytes: i64,
    ) -> Result<usize, ReadError> {
        let now = now_ms();
        let mut state = self.lock();
        let mut new_start = state.log_start_offset;
        let mut size = state.size_bytes as i64;
        let mut removed = 0;
        for s in self.summaries() {
            if s.base_offset >= state.high_watermark {
                break;
            }
            let expired = retention_ms >= 0 && s.max_timestamp < now - retention_ms;
            let oversized = retention_bytes >= 0 && size - s.size as i64 >= retention_bytes;
            if !(expired || oversized) {
                break;
            }
            size -= s.size as i64;
            new_start = s.last_offset + 1;
            removed += 1;
        }
        if removed > 0 {
            state.log_start_offset = new_start.max(state.log_start_offset);
            self.remove_batches_below(&mut state, new_start)?;
            self.persist_meta(&state)?;
        }
        Ok(removed)
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
    pub fn destroy(&self, topic_id: &str) -> Result<(), StorageError> {
        self.storage
            .drop_tree(&storage::log_tree_name(topic_id, self.partition))?;
        self.storage
            .drop_tree(&storage::index_tree_name(topic_id, self.partition))?;
        self.logmeta.remove(&self.meta_key)?;
        self.logmeta.remove(self.hw_key())?;
        let mut prefix = self.meta_key.clone();
        prefix.push(b'/');
        for item in self.producers_tree.scan_prefix(&prefix) {
            let (k, _) = item?;
            self.producers_tree.remove(k)?;
        }
        Ok(())
    }
}

/// Join stored chunks back into whole batches (by their header lengths).
fn join_batches(chunks: Vec<Bytes>) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(chunks.len());
    let mut current: Option<(bytes::BytesMut, usize)> = None;
    for chunk in chunks {
        match current.take() {
            None => {
                let total = batch::parse_header(&chunk)
                    .map(|h| h.total_len())
                    .unwrap_or(chunk.len());
                if total <= chunk.len() {
                    out.push(chunk);
                } else {
                    let mut joined = bytes::BytesMut::with_capacity(total);
                    joined.extend_from_slice(&chunk);
                    current = Some((joined, total));
                }
            }
            Some((mut joined, total)) => {
                joined.extend_from_slice(&chunk);
                if joined.len() >= total {
                    out.push(joined.freeze());
                } else {
                    current = Some((joined, total));
                }
            }
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
}

//! The seam between a partition's log and the place its record bytes live.
//!
//! `PartitionLog` (offsets, watermarks, producer state, leader epochs) keeps
//! its small keyed state in the node's sled database and hands the record
//! batches to a `LogStore`. Two stores implement it:
//!
//! * `segments::SegmentStore` (the default): Kafka's layout, a directory per
//!   partition with append-only segment files named by base offset, each with
//!   a sparse offset index and a time index.
//! * `sled_store::SledStore`: every batch in sled trees of its own, kept to
//!   measure the two side by side (`--log-store sled`).
//!
//! A store never assigns offsets, never checks producers and never decides
//! what is committed: it stores batches that already carry their offsets and
//! returns them byte for byte. Calls that change the store (append, truncate,
//! delete) are serialised by the caller (the partition's state lock); reads
//! may run concurrently with them.

use bytes::Bytes;

use crate::storage::StorageError;

/// Summary of one stored batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSummary {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub size: u32,
    pub leader_epoch: i32,
}

/// A contiguous run of the log that retention removes as a whole: a segment
/// of the segment store, a single batch of the sled store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    pub base_offset: i64,
    /// One past the last offset held (the next segment's base offset or the log end).
    pub next_offset: i64,
    pub size_bytes: u64,
    /// Largest timestamp of any batch in it (-1 when empty).
    pub max_timestamp: i64,
}

/// What one read found: whole batches, back to back. A store may hand them
/// over in several pieces (`chunks`), whose concatenation is the batches.
#[derive(Debug, Clone, Default)]
pub struct StoredRead {
    pub chunks: Vec<Bytes>,
    pub bytes: usize,
}

/// How segments roll (the topic's `segment.bytes` and `segment.ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollPolicy {
    pub segment_bytes: u64,
    pub segment_ms: i64,
}

impl Default for RollPolicy {
    fn default() -> Self {
        RollPolicy {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

/// Where a partition's record batches live.
pub trait LogStore: Send + Sync {
    /// Base offset of the first stored batch; `None` when nothing is stored.
    fn first_offset(&self) -> Option<i64>;
    /// One past the last stored offset; `None` when nothing is stored.
    fn next_offset(&self) -> Option<i64>;
    /// Bytes of record batches stored.
    fn size_bytes(&self) -> u64;

    /// Store one batch whose offsets are in `summary` and in its header.
    /// When this returns `Ok`, the bytes are in the kernel (a process crash
    /// keeps them); on `Err` nothing of the batch is visible.
    fn append(
        &self,
        summary: &BatchSummary,
        bytes: &[u8],
        roll: RollPolicy,
    ) -> Result<(), StorageError>;

    /// Whole batches from the one holding `from`, stopping before the first
    /// batch whose base offset is `upper` or more, and before `max_bytes`
    /// would be exceeded (the first batch is taken whole anyway when
    /// `allow_oversized_first`).
    fn read(
        &self,
        from: i64,
        upper: i64,
        max_bytes: usize,
        allow_oversized_first: bool,
    ) -> Result<StoredRead, StorageError>;

    /// The batch holding `offset`, with its summary.
    fn batch_at(&self, offset: i64) -> Result<Option<(BatchSummary, Bytes)>, StorageError>;

    /// The first batch (base offset below `upper`, last offset at least
    /// `from`) whose max timestamp is at least `timestamp`.
    fn find_by_timestamp(
        &self,
        timestamp: i64,
        from: i64,
        upper: i64,
    ) -> Result<Option<BatchSummary>, StorageError>;

    /// The batch (base offset below `upper`) with the largest max timestamp;
    /// the first of them on a tie.
    fn max_timestamp_batch(&self, upper: i64) -> Result<Option<BatchSummary>, StorageError>;

    /// The runs retention looks at, oldest first.
    fn segments(&self) -> Vec<SegmentInfo>;

    /// Remove every run that ends at or before `offset` (a whole segment
    /// goes, never part of one).
    fn delete_before(&self, offset: i64) -> Result<(), StorageError>;

    /// Remove every batch whose last offset is `offset` or more (a batch
    /// that spans it goes whole). Returns the new next offset, `None` when
    /// nothing is left.
    fn truncate_from(&self, offset: i64) -> Result<Option<i64>, StorageError>;

    /// Replace the contents of a closed run (log compaction) with `bytes`:
    /// whole batches whose offsets lie within it. Returns `false`, changing
    /// nothing, when the run is no longer there as `run` describes it.
    fn replace_segment(&self, run: &SegmentInfo, bytes: Vec<u8>) -> Result<bool, StorageError>;

    /// Remove everything.
    fn clear(&self) -> Result<(), StorageError>;

    /// Make everything appended so far durable (fsync).
    fn flush(&self) -> Result<(), StorageError>;

    /// Remove the store and its files or trees.
    fn destroy(&self) -> Result<(), StorageError>;
}

//! Log compaction (`cleanup.policy=compact`): the closed segments of a
//! partition are rewritten keeping, for every key, only its latest record;
//! a tombstone (a record with a null value) is kept for
//! `delete.retention.ms` so that consumers catch up on the deletion, then it
//! goes too. Offsets never change: a compacted segment has gaps.
//!
//! Off the hot path: it decodes records. The new contents of a segment are
//! built without holding the partition's lock; only the swap takes it, and
//! is abandoned when the segment changed meanwhile.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};

use super::for_each_batch;
use super::store::{LogStore, SegmentInfo};
use crate::storage::StorageError;

/// What one pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanerStats {
    pub segments_rewritten: usize,
    pub records_removed: usize,
}

fn corrupt(what: String) -> StorageError {
    StorageError::Corrupt {
        tree: "log".into(),
        what,
    }
}

fn compression_of(codec: i16) -> Compression {
    match codec {
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        _ => Compression::None,
    }
}

/// The latest offset of every key in `[from, upto)`.
fn latest_offsets(
    store: &dyn LogStore,
    from: i64,
    upto: i64,
) -> Result<HashMap<Bytes, i64>, StorageError> {
    let mut latest = HashMap::new();
    for_each_batch(store, from, upto, |h, mut b| {
        if h.is_control() {
            return Ok(true);
        }
        let set = RecordBatchDecoder::decode(&mut b).map_err(|e| corrupt(e.to_string()))?;
        for r in set.records {
            if r.offset >= upto {
                break;
            }
            if let Some(key) = r.key {
                latest.insert(key, r.offset);
            }
        }
        Ok(true)
    })?;
    Ok(latest)
}

/// The new contents of one closed segment, or `None` when nothing in it
/// can go.
fn clean_segment(
    store: &dyn LogStore,
    segment: &SegmentInfo,
    latest: &HashMap<Bytes, i64>,
    tombstones_before: i64,
    stats: &mut CleanerStats,
) -> Result<Option<Vec<u8>>, StorageError> {
    let mut out = BytesMut::new();
    let mut removed = 0;
    for_each_batch(store, segment.base_offset, segment.next_offset, |h, b| {
        if h.is_control() || h.is_transactional() {
            out.extend_from_slice(&b);
            return Ok(true);
        }
        let mut buf = b.clone();
        let set = RecordBatchDecoder::decode(&mut buf).map_err(|e| corrupt(e.to_string()))?;
        let total = set.records.len();
        let kept: Vec<Record> = set
            .records
            .into_iter()
            .filter(|r| {
                let latest_of_key = match &r.key {
                    Some(k) => latest.get(k).is_none_or(|o| *o == r.offset),
                    None => true,
                };
                let expired_tombstone = r.value.is_none() && r.timestamp < tombstones_before;
                latest_of_key && !expired_tombstone
            })
            .collect();
        removed += total - kept.len();
        if kept.len() == total {
            out.extend_from_slice(&b);
        } else if !kept.is_empty() {
            let options = RecordEncodeOptions {
                version: 2,
                compression: compression_of(h.compression()),
            };
            RecordBatchEncoder::encode(&mut out, kept.iter(), &options)
                .map_err(|e| corrupt(e.to_string()))?;
        }
        Ok(true)
    })?;
    if removed == 0 {
        return Ok(None);
    }
    stats.records_removed += removed;
    Ok(Some(out.to_vec()))
}

/// A closed segment and what it becomes.
pub type Rewrite = (SegmentInfo, Vec<u8>);

/// One pass over the closed segments below `high_watermark`: returns each
/// segment to replace with its new bytes (checked and swapped by the caller).
pub fn plan(
    store: &dyn LogStore,
    log_start_offset: i64,
    high_watermark: i64,
    tombstones_before: i64,
) -> Result<(Vec<Rewrite>, CleanerStats), StorageError> {
    let segments = store.segments();
    let mut stats = CleanerStats::default();
    // The active segment is never rewritten, but its keys count.
    let closed: Vec<SegmentInfo> = match segments.split_last() {
        Some((_, closed)) => closed
            .iter()
            .filter(|s| s.next_offset <= high_watermark && s.size_bytes > 0)
            .copied()
            .collect(),
        None => Vec::new(),
    };
    if closed.is_empty() {
        return Ok((Vec::new(), stats));
    }
    let latest = latest_offsets(store, log_start_offset, high_watermark)?;
    let mut plans = Vec::new();
    for segment in closed {
        if let Some(bytes) = clean_segment(store, &segment, &latest, tombstones_before, &mut stats)?
        {
            stats.segments_rewritten += 1;
            plans.push((segment, bytes));
        }
    }
    Ok((plans, stats))
}

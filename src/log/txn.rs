//! Transactions as one partition sees them: which producers have a
//! transaction open here (and from which offset), the aborted-transaction
//! index a `read_committed` fetch returns, and the control batches (COMMIT
//! and ABORT markers) that end a transaction.
//!
//! The last stable offset (LSO) is the first offset of the oldest open
//! transaction, or the high watermark when none is open: `read_committed`
//! consumers read up to it and drop the records of the aborted
//! transactions listed beside the batches.
//!
//! Pure state: `PartitionLog` updates it under its state lock as batches are
//! stored (appended on the leader, copied on a follower, or replayed after a
//! crash) and persists each change beside the producer table.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use super::batch::{BatchError, BatchHeader};

/// A transaction that ended in an abort, as the aborted index keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// The offset of its first batch on this partition.
    pub first_offset: i64,
    /// The offset of its ABORT marker.
    pub last_offset: i64,
}

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Commit,
    Abort,
}

/// What a stored batch did to the transactions of its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnChange {
    /// A producer's first transactional batch here: its transaction is open from `first_offset`.
    Began { producer_id: i64, first_offset: i64 },
    /// A marker closed the producer's transaction (`aborted` when it was
    /// open and is now in the aborted index).
    Ended {
        producer_id: i64,
        aborted: Option<AbortedTxn>,
    },
}

/// The open transactions and the aborted index of one partition.
#[derive(Debug, Clone, Default)]
pub struct TxnIndex {
    /// Producer id -> first offset of its open transaction.
    ongoing: HashMap<i64, i64>,
    /// Aborted transactions, in the order of their markers.
    aborted: Vec<AbortedTxn>,
}

impl TxnIndex {
    /// Rebuild from persisted entries.
    pub fn from_parts(ongoing: HashMap<i64, i64>, mut aborted: Vec<AbortedTxn>) -> Self {
        aborted.sort_by_key(|a| a.last_offset);
        TxnIndex { ongoing, aborted }
    }

    /// The first offset of the oldest open transaction.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.values().copied().min()
    }

    /// The first offset of `producer_id`'s open transaction here.
    pub fn ongoing(&self, producer_id: i64) -> Option<i64> {
        self.ongoing.get(&producer_id).copied()
    }

    /// Every open transaction: (producer id, first offset).
    pub fn open_transactions(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ongoing.iter().map(|(p, o)| (*p, *o))
    }

    /// The aborted index, oldest marker first.
    pub fn aborted(&self) -> &[AbortedTxn] {
        &self.aborted
    }

    /// Take a stored batch into account; `marker` is the control type of a
    /// control batch. Returns what changed (nothing for a batch of an
    /// already open transaction, or for a non-transactional one).
    pub fn observe(&mut self, h: &BatchHeader, marker: Option<Marker>) -> Option<TxnChange> {
        if !h.is_transactional() || h.producer_id < 0 {
            return None;
        }
        match marker {
            None if h.is_control() => None,
            None => {
                if self.ongoing.contains_key(&h.producer_id) {
                    return None;
                }
                self.ongoing.insert(h.producer_id, h.base_offset);
                Some(TxnChange::Began {
                    producer_id: h.producer_id,
                    first_offset: h.base_offset,
                })
            }
            Some(marker) => {
                let first = self.ongoing.remove(&h.producer_id)?;
                // Replaying a marker the index already holds changes nothing.
                let known = self
                    .aborted
                    .iter()
                    .rev()
                    .take_while(|a| a.last_offset >= h.base_offset)
                    .any(|a| a.last_offset == h.base_offset && a.producer_id == h.producer_id);
                let aborted = (marker == Marker::Abort && !known).then(|| {
                    let entry = AbortedTxn {
                        producer_id: h.producer_id,
                        first_offset: first,
                        last_offset: h.base_offset,
                    };
                    self.aborted.push(entry);
                    entry
                });
                Some(TxnChange::Ended {
                    producer_id: h.producer_id,
                    aborted,
                })
            }
        }
    }

    /// The aborted transactions a fetch of `[from, upto)` must list:
    /// (producer id, first offset), those that overlap the range.
    pub fn aborted_between(&self, from: i64, upto: i64) -> Vec<(i64, i64)> {
        // The index is ordered by marker offset: skip those ended before `from`.
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted[start..]
            .iter()
            .filter(|a| a.first_offset < upto)
            .map(|a| (a.producer_id, a.first_offset))
            .collect()
    }

    /// Forget what lies at or after `offset` (the log was truncated there):
    /// transactions that began there are gone; an abort whose marker is gone
    /// leaves its transaction open again. Returns the aborted entries removed.
    pub fn truncate(&mut self, offset: i64) -> Vec<AbortedTxn> {
        self.ongoing.retain(|_, first| *first < offset);
        let keep = self.aborted.partition_point(|a| a.last_offset < offset);
        let removed = self.aborted.split_off(keep);
        for a in &removed {
            if a.first_offset < offset {
                self.ongoing.insert(a.producer_id, a.first_offset);
            }
        }
        removed
    }

    /// Drop aborted entries wholly below the log start (retention removed
    /// their records). Returns them.
    pub fn trim_before(&mut self, log_start_offset: i64) -> Vec<AbortedTxn> {
        let keep = self
            .aborted
            .partition_point(|a| a.last_offset < log_start_offset);
        self.aborted.drain(..keep).collect()
    }

    /// Forget everything (the log was emptied).
    pub fn clear(&mut self) -> (Vec<i64>, Vec<AbortedTxn>) {
        let ongoing = self.ongoing.drain().map(|(p, _)| p).collect();
        (ongoing, std::mem::take(&mut self.aborted))
    }
}

/// The marker of a control batch: its single record's key is
/// `version: i16, type: i16` (0 = ABORT, 1 = COMMIT). `None` for other
/// control records (or a batch that is not a control batch).
pub fn marker_of(h: &BatchHeader, batch: &[u8]) -> Option<Marker> {
    if !h.is_control() {
        return None;
    }
    let mut buf = Bytes::copy_from_slice(batch);
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).ok()?;
    let key = set.records.first()?.key.as_ref()?;
    if key.len() < 4 {
        return None;
    }
    match i16::from_be_bytes([key[2], key[3]]) {
        0 => Some(Marker::Abort),
        1 => Some(Marker::Commit),
        _ => None,
    }
}

/// Encode a COMMIT or ABORT control batch of `producer_id` at `epoch`
/// (offsets from 0: the log assigns them). Its value carries the
/// coordinator's epoch, as Kafka's does.
pub fn encode_marker(
    producer_id: i64,
    producer_epoch: i16,
    marker: Marker,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Result<BytesMut, BatchError> {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let kind: i16 = match marker {
        Marker::Abort => 0,
        Marker::Commit => 1,
    };
    let mut key = BytesMut::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = BytesMut::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id,
        producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        std::slice::from_ref(&record),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| BatchError::InvalidRecord(format!("cannot encode a marker: {e}")))?;
    Ok(buf)
}

/// Sled value forms: an open transaction is its first offset; an aborted
/// one is `first_offset, last_offset`.
pub fn encode_aborted(a: &AbortedTxn) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.first_offset.to_be_bytes());
    out[8..].copy_from_slice(&a.last_offset.to_be_bytes());
    out
}

/// Inverse of `encode_aborted`.
pub fn decode_aborted(producer_id: i64, b: &[u8]) -> Option<AbortedTxn> {
    let b: &[u8; 16] = b.try_into().ok()?;
    Some(AbortedTxn {
        producer_id,
        first_offset: i64::from_be_bytes(b[..8].try_into().ok()?),
        last_offset: i64::from_be_bytes(b[8..].try_into().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::parse_header;

    fn header(pid: i64, base: i64, transactional: bool, control: bool) -> BatchHeader {
        let mut h = parse_header(&encode_marker(pid, 0, Marker::Commit, 0, 0).unwrap()).unwrap();
        h.base_offset = base;
        h.attributes = (if transactional { 0x10 } else { 0 }) | (if control { 0x20 } else { 0 });
        h
    }

    #[test]
    fn a_marker_round_trips_and_is_a_transactional_control_batch() {
        for m in [Marker::Commit, Marker::Abort] {
            let b = encode_marker(7, 3, m, 5, 1_700_000_000_000).unwrap();
            let h = parse_header(&b).unwrap();
            assert!(h.is_control() && h.is_transactional());
            assert_eq!((h.producer_id, h.producer_epoch, h.record_count), (7, 3, 1));
            assert_eq!(marker_of(&h, &b), Some(m));
        }
    }

    #[test]
    fn the_lso_is_the_oldest_open_transaction_and_aborts_are_indexed() {
        let mut t = TxnIndex::default();
        assert_eq!(t.first_unstable_offset(), None);
        t.observe(&header(1, 10, true, false), None);
        t.observe(&header(2, 12, true, false), None);
        assert_eq!(t.observe(&header(1, 15, true, false), None), None);
        assert_eq!(t.first_unstable_offset(), Some(10));
        t.observe(&header(1, 20, true, true), Some(Marker::Abort));
        assert_eq!(t.first_unstable_offset(), Some(12));
        t.observe(&header(2, 21, true, true), Some(Marker::Commit));
        assert_eq!(t.first_unstable_offset(), None);
        assert_eq!(t.aborted_between(0, 100), vec![(1, 10)]);
        assert_eq!(t.aborted_between(21, 100), Vec::<(i64, i64)>::new());
        assert_eq!(t.aborted_between(0, 10), Vec::<(i64, i64)>::new());
        // A plain batch changes nothing.
        assert_eq!(t.observe(&header(3, 30, false, false), None), None);
    }

    #[test]
    fn truncation_reopens_a_transaction_whose_marker_it_removed() {
        let mut t = TxnIndex::default();
        t.observe(&header(1, 10, true, false), None);
        t.observe(&header(1, 20, true, true), Some(Marker::Abort));
        t.observe(&header(2, 25, true, false), None);
        let removed = t.truncate(20);
        assert_eq!(removed.len(), 1);
        assert_eq!(t.ongoing(1), Some(10));
        assert_eq!(t.ongoing(2), None);
        assert!(t.trim_before(100).is_empty());
    }
}

//! One partition of `__consumer_offsets` as the coordinator writes it: appends
//! key/value records (a missing value is a tombstone), replays the partition at
//! start, and keeps it small.
//!
//! Keeping it small is compaction by snapshot: the writer knows the latest
//! value of every live key, so when the partition holds many more records than
//! live keys it appends those values again and moves the log start offset to
//! the first of them. Replaying from the log start then gives the same state,
//! and a crash between the two steps only leaves duplicates that replay
//! resolves (latest wins). Only this writer appends to the partition.
//!
//! Transactional records (`append_transactional`, Kafka's transactional
//! offset commits) stay pending by producer id until the transaction's
//! marker reaches the partition (`complete_transaction`); replay resolves
//! them the same way from the control batches it finds, so a committed
//! transaction's records take effect at its marker and an aborted one's
//! never do. Compaction waits while any transaction is pending.
//!
//! It knows nothing of groups; its users give the bytes their meaning.
//! Lock order: `live`, then `pending`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::log::batch::{self, BatchError};
use crate::log::{AppendError, PartitionLog, ReadError, ReadLimit};

/// Compaction waits until the partition holds at least this many records.
const COMPACT_MIN_RECORDS: i64 = 4096;
/// ... and this many times as many records as live keys.
const COMPACT_RATIO: i64 = 4;
/// Records per batch when a snapshot is written.
const SNAPSHOT_BATCH_RECORDS: usize = 512;
/// Bytes read per step while replaying.
const REPLAY_READ_BYTES: usize = 4 * 1024 * 1024;
/// Batches we write are checked against this size only (they are ours).
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// Why the offsets log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot encode a batch: {0}")]
    Encode(String),
    #[error("append to {topic}-{partition} failed: {source}")]
    Append {
        topic: String,
        partition: i32,
        #[source]
        source: AppendError,
    },
    #[error("read of {topic}-{partition} failed: {source}")]
    Read {
        topic: String,
        partition: i32,
        #[source]
        source: ReadError,
    },
}

/// A key and its new value; `None` deletes the key.
pub type KeyValue = (Bytes, Option<Bytes>);

/// The writer of one partition of the offsets topic.
pub struct OffsetsLog {
    /// The partition's log in the broker.
    log: Arc<PartitionLog>,
    /// The latest value of every live key; also the lock that orders appends
    /// and compactions of this partition.
    live: Mutex<HashMap<Bytes, Bytes>>,
    /// Transactional records without a marker yet, by producer id, in the
    /// order they were written.
    pending: Mutex<HashMap<i64, Vec<KeyValue>>>,
}

impl std::fmt::Debug for OffsetsLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OffsetsLog({}-{})", self.log.topic, self.log.partition)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl OffsetsLog {
    /// Open the writer and replay the partition: returns every record from
    /// the log start, oldest first, for the coordinator to apply.
    pub fn open(log: Arc<PartitionLog>) -> Result<(Self, Vec<KeyValue>), StoreError> {
        let (records, pending) = resolve(replay(&log)?);
        let mut live = HashMap::new();
        for (k, v) in &records {
            match v {
                Some(v) => live.insert(k.clone(), v.clone()),
                None => live.remove(k),
            };
        }
        Ok((
            OffsetsLog {
                log,
                live: Mutex::new(live),
                pending: Mutex::new(pending),
            },
            records,
        ))
    }

    /// The partition's log.
    pub fn log(&self) -> &PartitionLog {
        &self.log
    }

    /// The partition index.
    pub fn partition(&self) -> i32 {
        self.log.partition
    }

    /// Append records as one batch, then compact if the partition has grown
    /// well past its live keys.
    pub fn append(&self, records: &[KeyValue]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let before = self.log.log_end_offset();
        self.append_batch(records)?;
        for (k, v) in records {
            match v {
                Some(v) => live.insert(k.clone(), v.clone()),
                None => live.remove(k),
            };
        }
        let held = self.log.log_end_offset() - self.log.log_start_offset();
        // In a cluster the log start may only move up to the high watermark:
        // compact once every record before this append is replicated, and
        // drop only those (the snapshot repeats this append's values).
        let replicated = self.log.high_watermark() >= before;
        let settled = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        if replicated
            && settled
            && held >= COMPACT_MIN_RECORDS
            && held >= COMPACT_RATIO * live.len() as i64
        {
            if let Err(e) = self.compact(&live, before) {
                // The append itself succeeded; compaction is retried on the next one.
                tracing::warn!(partition = self.partition(), error = %e, "offsets compaction failed");
            }
        }
        Ok(())
    }

    /// Append records of producer `producer_id`'s open transaction as one
    /// transactional batch; they stay pending until `complete_transaction`.
    pub fn append_transactional(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        records: &[KeyValue],
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let _live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = encode(records, now_ms(), Some((producer_id, producer_epoch)))?;
        self.append_bytes(&bytes)?;
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(producer_id)
            .or_default()
            .extend(records.iter().cloned());
        Ok(())
    }

    /// The marker of `producer_id`'s transaction reached the partition: on
    /// commit its pending records become live and are returned (oldest
    /// first), on abort they are dropped.
    pub fn complete_transaction(&self, producer_id: i64, commit: bool) -> Vec<KeyValue> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let records = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&producer_id)
            .unwrap_or_default();
        if !commit {
            return Vec::new();
        }
        for (k, v) in &records {
            match v {
                Some(v) => live.insert(k.clone(), v.clone()),
                None => live.remove(k),
            };
        }
        records
    }

    /// The pending transactional records, by producer id.
    #[cfg(test)]
    pub fn pending_transactions(&self) -> HashMap<i64, Vec<KeyValue>> {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Write every live value again and drop everything before `drop_below`
    /// (at most where the snapshot starts).
    fn compact(&self, live: &HashMap<Bytes, Bytes>, drop_below: i64) -> Result<(), StoreError> {
        let snapshot_start = self.log.log_end_offset().min(drop_below);
        let entries: Vec<KeyValue> = live
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        for chunk in entries.chunks(SNAPSHOT_BATCH_RECORDS) {
            self.append_batch(chunk)?;
        }
        let new_start = self
            .log
            .delete_records_before(snapshot_start)
            .map_err(|source| self.read_error(source))?;
        tracing::debug!(
            partition = self.partition(),
            live = live.len(),
            log_start_offset = new_start,
            "offsets partition compacted"
        );
        Ok(())
    }

    fn append_batch(&self, records: &[KeyValue]) -> Result<(), StoreError> {
        self.append_bytes(&encode_batch(records, now_ms())?)
    }

    fn append_bytes(&self, bytes: &Bytes) -> Result<(), StoreError> {
        let batches = batch::split_and_validate(bytes, MAX_BATCH_BYTES)
            .map_err(|e: BatchError| self.append_error(AppendError::Batch(e)))?;
        self.log
            .append(batches, false)
            .map_err(|source| self.append_error(source))?;
        Ok(())
    }

    fn append_error(&self, source: AppendError) -> StoreError {
        StoreError::Append {
            topic: self.log.topic.clone(),
            partition: self.log.partition,
            source,
        }
    }

    fn read_error(&self, source: ReadError) -> StoreError {
        StoreError::Read {
            topic: self.log.topic.clone(),
            partition: self.log.partition,
            source,
        }
    }
}

/// Encode key/value records as one uncompressed, non-idempotent batch.
pub fn encode_batch(records: &[KeyValue], timestamp: i64) -> Result<Bytes, StoreError> {
    encode(records, timestamp, None)
}

/// Encode key/value records as one uncompressed batch without sequence
/// numbers; with a producer id and epoch it is a transactional batch (as
/// Kafka's coordinator writes transactional offset commits).
fn encode(
    records: &[KeyValue],
    timestamp: i64,
    transaction: Option<(i64, i16)>,
) -> Result<Bytes, StoreError> {
    let Some((producer_id, producer_epoch)) = transaction else {
        let records: Vec<batch::PlainRecord> = records
            .iter()
            .map(|(k, v)| batch::PlainRecord {
                key: Some(k.clone()),
                value: v.clone(),
                timestamp,
            })
            .collect();
        return batch::encode_plain(&records, Compression::None)
            .map(BytesMut::freeze)
            .map_err(|e| StoreError::Encode(e.to_string()));
    };
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // offset - sequence constant keeps one batch, base sequence -1.
            sequence: i as i32 - 1,
            timestamp,
            key: Some(k.clone()),
            value: v.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| StoreError::Encode(e.to_string()))?;
    Ok(buf.freeze())
}

/// One entry of a replayed partition.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Replayed {
    /// A record; `producer_id` when its batch is transactional.
    Record(KeyValue, Option<i64>),
    /// A COMMIT (true) or ABORT marker of a producer's transaction.
    Marker { producer_id: i64, commit: bool },
}

/// Resolve transactions in replayed entries: the records in effect, in the
/// order they took effect (a committed transaction's at its marker), and
/// the transactional records still without a marker.
fn resolve(entries: Vec<Replayed>) -> (Vec<KeyValue>, HashMap<i64, Vec<KeyValue>>) {
    let mut out = Vec::new();
    let mut pending: HashMap<i64, Vec<KeyValue>> = HashMap::new();
    for entry in entries {
        match entry {
            Replayed::Record(kv, None) => out.push(kv),
            Replayed::Record(kv, Some(producer_id)) => {
                pending.entry(producer_id).or_default().push(kv)
            }
            Replayed::Marker {
                producer_id,
                commit,
            } => {
                let records = pending.remove(&producer_id).unwrap_or_default();
                if commit {
                    out.extend(records);
                }
            }
        }
    }
    (out, pending)
}

/// The control record's key: version, then type (0 abort, 1 commit).
fn marker_commit(key: Option<&Bytes>) -> Option<bool> {
    let key = key?;
    match key.get(2..4)? {
        [0, 0] => Some(false),
        [0, 1] => Some(true),
        _ => None,
    }
}

/// Every record of the partition from its log start, oldest first. Records
/// that cannot be decoded are skipped with a warning; one bad batch must not
/// keep the node from starting.
fn replay(log: &PartitionLog) -> Result<Vec<Replayed>, StoreError> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let read = log
            .read(offset, REPLAY_READ_BYTES, true, ReadLimit::LogEndOffset)
            .map_err(|source| StoreError::Read {
                topic: log.topic.clone(),
                partition: log.partition,
                source,
            })?;
        if read.batches.is_empty() {
            break;
        }
        for stored in read.batches {
            let Ok(header) = batch::parse_header(&stored) else {
                tracing::warn!(
                    partition = log.partition,
                    offset,
                    "unreadable batch header in the offsets topic"
                );
                offset += 1;
                continue;
            };
            let next = header.last_offset() + 1;
            let mut buf = stored.clone();
            match RecordBatchDecoder::decode(&mut buf) {
                Ok(set) => {
                    for r in set.records {
                        if r.offset < offset {
                            continue;
                        }
                        if r.control {
                            if let Some(commit) = marker_commit(r.key.as_ref()) {
                                out.push(Replayed::Marker {
                                    producer_id: r.producer_id,
                                    commit,
                                });
                            }
                            continue;
                        }
                        let transactional = r.transactional.then_some(r.producer_id);
                        if let Some(key) = r.key {
                            out.push(Replayed::Record((key, r.value), transactional));
                        }
                    }
                }
                Err(e) => tracing::warn!(
                    partition = log.partition,
                    base_offset = header.base_offset,
                    error = %e,
                    "skipping an undecodable batch of the offsets topic"
                ),
            }
            offset = offset.max(next);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Storage;

    fn open_log(dir: &std::path::Path) -> Arc<PartitionLog> {
        let storage = Storage::open(dir, 500, 8 * 1024 * 1024).expect("storage opens");
        Arc::new(
            PartitionLog::open(&storage, "__consumer_offsets", "offsetsid", 0).expect("log opens"),
        )
    }

    fn kv(k: &str, v: Option<&str>) -> KeyValue {
        (
            Bytes::copy_from_slice(k.as_bytes()),
            v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        )
    }

    #[test]
    fn appended_records_replay_in_order_with_tombstones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open_log(dir.path());
        let (store, replayed) = OffsetsLog::open(log.clone()).expect("opens");
        assert!(replayed.is_empty());
        store
            .append(&[kv("a", Some("1")), kv("b", Some("2"))])
            .expect("append");
        store
            .append(&[kv("a", None), kv("c", Some("3"))])
            .expect("append");
        drop(store);
        let (_, replayed) = OffsetsLog::open(log).expect("reopens");
        assert_eq!(
            replayed,
            vec![
                kv("a", Some("1")),
                kv("b", Some("2")),
                kv("a", None),
                kv("c", Some("3"))
            ]
        );
    }

    #[test]
    fn transactional_records_take_effect_only_at_a_commit_marker() {
        let entries = vec![
            Replayed::Record(kv("a", Some("1")), None),
            Replayed::Record(kv("b", Some("committed")), Some(7)),
            Replayed::Record(kv("c", Some("aborted")), Some(8)),
            Replayed::Record(kv("a", Some("2")), None),
            Replayed::Record(kv("d", Some("open")), Some(9)),
            Replayed::Marker {
                producer_id: 8,
                commit: false,
            },
            Replayed::Marker {
                producer_id: 7,
                commit: true,
            },
        ];
        let (records, pending) = resolve(entries);
        assert_eq!(
            records,
            vec![
                kv("a", Some("1")),
                kv("a", Some("2")),
                kv("b", Some("committed"))
            ]
        );
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[&9], vec![kv("d", Some("open"))]);
    }

    #[test]
    fn pending_transactional_records_survive_a_reopen_and_complete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open_log(dir.path());
        let (store, _) = OffsetsLog::open(log.clone()).expect("opens");
        store
            .append_transactional(42, 0, &[kv("t", Some("1"))])
            .expect("append");
        store.append(&[kv("p", Some("plain"))]).expect("append");
        drop(store);
        let (store, replayed) = OffsetsLog::open(log).expect("reopens");
        assert_eq!(replayed, vec![kv("p", Some("plain"))]);
        assert_eq!(store.pending_transactions()[&42], vec![kv("t", Some("1"))]);
        assert_eq!(
            store.complete_transaction(42, true),
            vec![kv("t", Some("1"))]
        );
        assert!(store.pending_transactions().is_empty());
        assert!(store.complete_transaction(42, true).is_empty());
    }

    #[test]
    fn compaction_keeps_latest_values_and_bounds_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open_log(dir.path());
        let (store, _) = OffsetsLog::open(log.clone()).expect("opens");
        for i in 0..3 * COMPACT_MIN_RECORDS {
            let key = format!("k{}", i % 10);
            store
                .append(&[kv(&key, Some(&i.to_string()))])
                .expect("append");
        }
        store.append(&[kv("k0", None)]).expect("tombstone");
        let held = log.log_end_offset() - log.log_start_offset();
        assert!(
            held <= COMPACT_MIN_RECORDS + 20,
            "log still holds {held} records"
        );
        let (_, replayed) = OffsetsLog::open(log).expect("reopens");
        let mut state: HashMap<Bytes, Bytes> = HashMap::new();
        for (k, v) in replayed {
            match v {
                Some(v) => state.insert(k, v),
                None => state.remove(&k),
            };
        }
        assert_eq!(state.len(), 9);
        let last_k9 = (0..3 * COMPACT_MIN_RECORDS)
            .filter(|i| i % 10 == 9)
            .max()
            .unwrap_or(0);
        assert_eq!(
            state.get(&Bytes::from_static(b"k9")),
            Some(&Bytes::from(last_k9.to_string()))
        );
        assert!(!state.contains_key(&Bytes::from_static(b"k0")));
    }
}

//! The sled store: one partition's batches in two sled trees of its own
//! (`--log-store sled`), kept beside the segment store so that both can be
//! measured and tested with the same suite.
//!
//! The batches tree holds each batch as chunks of at most `CHUNK_BYTES` keyed
//! by (base offset, chunk index); the index tree maps base offset -> summary.
//! Every batch is its own retention run. Costs that made it the second
//! choice are in docs/BENCHMARKS.md: a tree per partition (sled rewrites its
//! list of trees on each new one), sled's page cache holding what was read,
//! and acknowledged appends that wait in process memory for sled's flusher.
//!
//! Never assigns offsets. Appends, truncation and deletion are serialised by
//! the caller.

use bytes::Bytes;

use super::batch;
use super::store::{BatchSummary, LogStore, RollPolicy, SegmentInfo, StoredRead};
use crate::storage::{self, Storage, StorageError};

/// Largest value stored in the batches tree. sled 0.34 accounts a cached page
/// by its on-log size, and a large value (a "blob") counts as a pointer, so
/// storing 1 MiB batches whole lets its cache hold gigabytes. Batches are
/// therefore stored as chunks of this size.
pub const CHUNK_BYTES: usize = 8 * 1024;

fn offset_key(offset: i64) -> [u8; 8] {
    (offset.max(0) as u64).to_be_bytes()
}

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

fn encode_summary(s: &BatchSummary) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[0..8].copy_from_slice(&s.last_offset.to_be_bytes());
    out[8..16].copy_from_slice(&s.max_timestamp.to_be_bytes());
    out[16..20].copy_from_slice(&s.size.to_be_bytes());
    out[20..24].copy_from_slice(&s.leader_epoch.to_be_bytes());
    out
}

fn decode_summary(key: &[u8], value: &[u8]) -> Option<BatchSummary> {
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

/// One partition's batches in sled.
pub struct SledStore {
    storage: Storage,
    batches_name: String,
    index_name: String,
    /// base offset -> batch bytes (as chunks), exactly as served.
    batches: sled::Tree,
    /// base offset -> `BatchSummary`.
    index: sled::Tree,
}

impl SledStore {
    /// Open the trees of `topic_id`-`partition`, removing what an append cut
    /// short by a crash left behind.
    pub fn open(storage: &Storage, topic_id: &str, partition: i32) -> Result<Self, StorageError> {
        let batches_name = storage::log_tree_name(topic_id, partition);
        let index_name = storage::index_tree_name(topic_id, partition);
        let store = SledStore {
            storage: storage.clone(),
            batches: storage.tree(&batches_name)?,
            index: storage.tree(&index_name)?,
            batches_name,
            index_name,
        };
        store.recover()?;
        Ok(store)
    }

    /// Chunks of a batch are written atomically (one sled batch) before its
    /// index entry. After a crash, chunks past the last index entry belong to
    /// an append that was never acknowledged: remove them. An index entry
    /// whose chunks do not add up is dropped with them.
    fn recover(&self) -> Result<(), StorageError> {
        loop {
            let last = self.index.last()?;
            let tail_start = match &last {
                Some((k, v)) => match decode_summary(k, v) {
                    Some(s) => chunk_key(s.last_offset + 1, 0).to_vec(),
                    None => k.to_vec(),
                },
                None => Vec::new(),
            };
            let unindexed: Vec<sled::IVec> = self
                .batches
                .range(tail_start.as_slice()..)
                .keys()
                .collect::<Result<_, _>>()?;
            for k in unindexed {
                self.batches.remove(k)?;
            }
            let Some((k, v)) = last else { break };
            let complete = match decode_summary(&k, &v) {
                Some(s) => self.stored_len(s.base_offset)? == s.size as usize,
                None => false,
            };
            if complete {
                break;
            }
            self.index.remove(&k)?;
        }
        Ok(())
    }

    fn stored_len(&self, base_offset: i64) -> Result<usize, StorageError> {
        Ok(self
            .batches
            .range(chunk_key(base_offset, 0)..chunk_key(base_offset + 1, 0))
            .values()
            .map(|v| v.map(|v| v.len()))
            .sum::<Result<usize, _>>()?)
    }

    fn summaries(&self) -> impl DoubleEndedIterator<Item = BatchSummary> + '_ {
        self.index
            .iter()
            .filter_map(|r| r.ok())
            .filter_map(|(k, v)| decode_summary(&k, &v))
    }

    fn remove_batch(&self, s: &BatchSummary) -> Result<(), StorageError> {
        self.index.remove(offset_key(s.base_offset))?;
        let chunks: Vec<sled::IVec> = self
            .batches
            .range(chunk_key(s.base_offset, 0)..chunk_key(s.base_offset + 1, 0))
            .keys()
            .collect::<Result<_, _>>()?;
        for k in chunks {
            self.batches.remove(k)?;
        }
        Ok(())
    }

    fn joined(&self, base_offset: i64) -> Result<Option<Bytes>, StorageError> {
        let chunks: Vec<sled::IVec> = self
            .batches
            .range(chunk_key(base_offset, 0)..chunk_key(base_offset + 1, 0))
            .values()
            .collect::<Result<_, _>>()?;
        Ok(match chunks.len() {
            0 => None,
            1 => chunks.into_iter().next().map(Bytes::from_owner),
            _ => Some(chunks.concat().into()),
        })
    }
}

impl LogStore for SledStore {
    fn first_offset(&self) -> Option<i64> {
        self.summaries().next().map(|s| s.base_offset)
    }

    fn next_offset(&self) -> Option<i64> {
        self.summaries().next_back().map(|s| s.last_offset + 1)
    }

    fn size_bytes(&self) -> u64 {
        self.summaries().map(|s| s.size as u64).sum()
    }

    fn append(
        &self,
        summary: &BatchSummary,
        bytes: &[u8],
        _roll: RollPolicy,
    ) -> Result<(), StorageError> {
        let mut chunks = sled::Batch::default();
        for (i, chunk) in bytes.chunks(CHUNK_BYTES).enumerate() {
            chunks.insert(&chunk_key(summary.base_offset, i as u16), chunk);
        }
        self.batches.apply_batch(chunks)?;
        self.index
            .insert(offset_key(summary.base_offset), &encode_summary(summary))?;
        Ok(())
    }

    fn read(
        &self,
        from: i64,
        upper: i64,
        max_bytes: usize,
        allow_oversized_first: bool,
    ) -> Result<StoredRead, StorageError> {
        let mut out = StoredRead::default();
        let start = match self.index.range(..=offset_key(from)).next_back() {
            Some(item) => {
                let (k, v) = item?;
                match decode_summary(&k, &v) {
                    Some(s) if s.last_offset >= from => s.base_offset,
                    _ => from,
                }
            }
            None => from,
        };
        // Bytes of the current batch still to come, and whether it is taken.
        let mut pending = 0usize;
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
                batch_start = out.chunks.len();
                batch_total = total;
                out.bytes += total;
            }
            pending = pending.saturating_sub(v.len());
            out.chunks.push(Bytes::from_owner(v));
        }
        if pending > 0 {
            // The last batch is missing chunks (retention is removing it, or
            // the range ended): leave it out.
            out.chunks.truncate(batch_start);
            out.bytes -= batch_total;
        }
        Ok(out)
    }

    fn batch_at(&self, offset: i64) -> Result<Option<(BatchSummary, Bytes)>, StorageError> {
        let Some(item) = self.index.range(..=offset_key(offset)).next_back() else {
            return Ok(None);
        };
        let (k, v) = item?;
        let Some(s) = decode_summary(&k, &v).filter(|s| s.last_offset >= offset) else {
            return Ok(None);
        };
        Ok(self.joined(s.base_offset)?.map(|b| (s, b)))
    }

    fn find_by_timestamp(
        &self,
        timestamp: i64,
        from: i64,
        upper: i64,
    ) -> Result<Option<BatchSummary>, StorageError> {
        Ok(self
            .summaries()
            .take_while(|s| s.base_offset < upper)
            .find(|s| s.last_offset >= from && s.max_timestamp >= timestamp))
    }

    fn max_timestamp_batch(&self, upper: i64) -> Result<Option<BatchSummary>, StorageError> {
        Ok(self.summaries().take_while(|s| s.base_offset < upper).fold(
            None::<BatchSummary>,
            |best, s| match best {
                Some(b) if b.max_timestamp >= s.max_timestamp => Some(b),
                _ => Some(s),
            },
        ))
    }

    fn segments(&self) -> Vec<SegmentInfo> {
        self.summaries()
            .map(|s| SegmentInfo {
                base_offset: s.base_offset,
                next_offset: s.last_offset + 1,
                size_bytes: s.size as u64,
                max_timestamp: s.max_timestamp,
            })
            .collect()
    }

    fn delete_before(&self, offset: i64) -> Result<(), StorageError> {
        let doomed: Vec<BatchSummary> = self
            .summaries()
            .take_while(|s| s.last_offset < offset)
            .collect();
        for s in &doomed {
            self.remove_batch(s)?;
        }
        Ok(())
    }

    fn truncate_from(&self, offset: i64) -> Result<Option<i64>, StorageError> {
        let doomed: Vec<BatchSummary> = self
            .summaries()
            .rev()
            .take_while(|s| s.last_offset >= offset)
            .collect();
        for s in &doomed {
            self.remove_batch(s)?;
        }
        Ok(self.next_offset())
    }

    fn replace_segment(&self, run: &SegmentInfo, bytes: Vec<u8>) -> Result<bool, StorageError> {
        let current: Vec<BatchSummary> = self
            .summaries()
            .skip_while(|s| s.base_offset < run.base_offset)
            .take_while(|s| s.base_offset < run.next_offset)
            .collect();
        if current.is_empty() {
            return Ok(false);
        }
        for s in &current {
            self.remove_batch(s)?;
        }
        for b in batch::iter_batches(Bytes::from(bytes)) {
            let h = batch::parse_header(&b).map_err(|e| StorageError::Corrupt {
                tree: self.index_name.clone(),
                what: e.to_string(),
            })?;
            let summary = BatchSummary {
                base_offset: h.base_offset,
                last_offset: h.last_offset(),
                max_timestamp: h.max_timestamp,
                size: b.len() as u32,
                leader_epoch: h.partition_leader_epoch,
            };
            self.append(&summary, &b, RollPolicy::default())?;
        }
        Ok(true)
    }

    fn clear(&self) -> Result<(), StorageError> {
        self.delete_before(i64::MAX)
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.storage.flush_sync()
    }

    fn destroy(&self) -> Result<(), StorageError> {
        self.storage.drop_tree(&self.batches_name)?;
        self.storage.drop_tree(&self.index_name)?;
        Ok(())
    }
}

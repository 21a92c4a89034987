//! Raft's durable state in the node's database, as trees of bytes: the log
//! (`raft:log`: entry index as u64 big-endian -> entry), Raft's small values
//! (`raft:meta`: `vote`, `committed`, `last_purged`) and the state machine's
//! (`raft:sm`: `applied`, `snapshot`).
//!
//! Owns the tree names and the key layout; each batch of log changes is
//! applied atomically. Must never: interpret an entry or a value (the
//! cluster's store encodes them), or decide when to flush (the cluster's
//! store flushes where openraft's durability contract asks).
//! Locks: none of its own (sled's).

use std::ops::{Bound, RangeBounds};

use super::{Storage, StorageError};

/// Tree of Raft log entries: index (u64 big-endian) -> entry.
const RAFT_LOG_TREE: &str = "raft:log";
/// Tree of Raft's small durable values (vote, committed, last purged).
const RAFT_META_TREE: &str = "raft:meta";
/// Tree of the state machine: the applied state and the current snapshot.
const RAFT_SM_TREE: &str = "raft:sm";

/// One of Raft's single durable values, each under its own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaftValue {
    /// The vote (`raft:meta`, `vote`).
    Vote,
    /// The last committed log id (`raft:meta`, `committed`).
    Committed,
    /// The last purged log id (`raft:meta`, `last_purged`).
    LastPurged,
    /// The state machine's applied state (`raft:sm`, `applied`).
    Applied,
    /// The current snapshot (`raft:sm`, `snapshot`).
    Snapshot,
}

impl RaftValue {
    fn key(self) -> &'static [u8] {
        match self {
            RaftValue::Vote => b"vote",
            RaftValue::Committed => b"committed",
            RaftValue::LastPurged => b"last_purged",
            RaftValue::Applied => b"applied",
            RaftValue::Snapshot => b"snapshot",
        }
    }
}

/// The Raft trees of one node. Cloning shares them.
#[derive(Clone)]
pub struct RaftTrees {
    /// The node's database, flushed on request.
    db: sled::Db,
    /// Entries by index.
    log: sled::Tree,
    /// Vote, committed log id, last purged log id.
    meta: sled::Tree,
    /// The applied state and the snapshot.
    state_machine: sled::Tree,
}

impl Storage {
    /// Open (or create) the Raft trees.
    pub fn raft_trees(&self) -> Result<RaftTrees, StorageError> {
        Ok(RaftTrees {
            db: self.db.clone(),
            log: self.db.open_tree(RAFT_LOG_TREE)?,
            meta: self.db.open_tree(RAFT_META_TREE)?,
            state_machine: self.db.open_tree(RAFT_SM_TREE)?,
        })
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn bound_key(bound: Bound<&u64>) -> Bound<[u8; 8]> {
    match bound {
        Bound::Included(i) => Bound::Included(index_key(*i)),
        Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl RaftTrees {
    /// The entries whose index is in `range`, in index order.
    pub fn entries(&self, range: impl RangeBounds<u64>) -> Result<Vec<Vec<u8>>, StorageError> {
        let keys = (bound_key(range.start_bound()), bound_key(range.end_bound()));
        self.log
            .range::<[u8; 8], _>(keys)
            .map(|item| {
                item.map(|(_, bytes)| bytes.to_vec())
                    .map_err(StorageError::from)
            })
            .collect()
    }

    /// The entry with the highest index, if any.
    pub fn last_entry(&self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.log.last()?.map(|(_, bytes)| bytes.to_vec()))
    }

    /// Store `(index, entry)` pairs in one atomic batch.
    pub fn append_entries(
        &self,
        entries: impl IntoIterator<Item = (u64, Vec<u8>)>,
    ) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for (index, bytes) in entries {
            batch.insert(&index_key(index), bytes);
        }
        self.log.apply_batch(batch)?;
        Ok(())
    }

    /// Remove every entry at or after `index`, in one atomic batch.
    pub fn truncate_from(&self, index: u64) -> Result<(), StorageError> {
        self.remove_entries(index_key(index)..)
    }

    /// Remove every entry at or before `index`, in one atomic batch.
    pub fn purge_through(&self, index: u64) -> Result<(), StorageError> {
        self.remove_entries(..=index_key(index))
    }

    fn remove_entries(&self, keys: impl RangeBounds<[u8; 8]>) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for item in self.log.range(keys) {
            let (key, _) = item?;
            batch.remove(key);
        }
        self.log.apply_batch(batch)?;
        Ok(())
    }

    /// One of Raft's single values, if stored.
    pub fn value(&self, value: RaftValue) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.tree_of(value).get(value.key())?.map(|v| v.to_vec()))
    }

    /// Store (or replace) one of Raft's single values. Not flushed.
    pub fn put_value(&self, value: RaftValue, bytes: Vec<u8>) -> Result<(), StorageError> {
        self.tree_of(value).insert(value.key(), bytes)?;
        Ok(())
    }

    fn tree_of(&self, value: RaftValue) -> &sled::Tree {
        match value {
            RaftValue::Vote | RaftValue::Committed | RaftValue::LastPurged => &self.meta,
            RaftValue::Applied | RaftValue::Snapshot => &self.state_machine,
        }
    }

    /// Write everything stored so far to disk (the whole database).
    pub async fn flush(&self) -> Result<(), StorageError> {
        self.db.flush_async().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_truncate_and_purge_keep_the_index_order() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), 0, 1 << 20).unwrap();
        let raft = storage.raft_trees().unwrap();
        raft.append_entries((1..=300u64).map(|i| (i, i.to_string().into_bytes())))
            .unwrap();
        // Big-endian keys: 256 sorts after 255, not after 2.
        let read = raft.entries(254..258).unwrap();
        assert_eq!(
            read,
            vec![
                b"254".to_vec(),
                b"255".to_vec(),
                b"256".to_vec(),
                b"257".to_vec()
            ]
        );
        raft.truncate_from(299).unwrap();
        assert_eq!(raft.last_entry().unwrap(), Some(b"298".to_vec()));
        raft.purge_through(256).unwrap();
        assert_eq!(raft.entries(..).unwrap().first(), Some(&b"257".to_vec()));
        assert_eq!(raft.entries(..=257).unwrap().len(), 1);
    }

    #[test]
    fn values_live_in_their_own_trees_under_their_own_keys() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), 0, 1 << 20).unwrap();
        let raft = storage.raft_trees().unwrap();
        raft.put_value(RaftValue::Vote, b"v".to_vec()).unwrap();
        raft.put_value(RaftValue::Snapshot, b"s".to_vec()).unwrap();
        assert_eq!(raft.value(RaftValue::Vote).unwrap(), Some(b"v".to_vec()));
        assert_eq!(raft.value(RaftValue::Committed).unwrap(), None);
        // The layout existing data directories were written with.
        let meta = storage.tree(RAFT_META_TREE).unwrap();
        assert_eq!(meta.get(b"vote").unwrap().as_deref(), Some(&b"v"[..]));
        let sm = storage.tree(RAFT_SM_TREE).unwrap();
        assert_eq!(sm.get(b"snapshot").unwrap().as_deref(), Some(&b"s"[..]));
    }
}

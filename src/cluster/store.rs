//! Raft's durable state over the node's Raft trees (`storage::RaftTrees`):
//! the log store (entries, the vote, the committed and the last purged log
//! id) and the state machine (the applied metadata image and the current
//! snapshot), each entry and value as JSON.
//!
//! openraft's durability contract: a vote is on disk before `save_vote`
//! returns, and appended entries are on disk before their `LogFlushed`
//! callback fires. Both flush the database first. The state machine
//! is written without a flush: the database recovers a prefix of its writes
//! after a crash, so a lost tail of applied state is re-applied from the
//! flushed log; a snapshot is flushed before the log it covers can be purged.
//!
//! This module never interprets commands; `image` does. It never names the
//! database's trees or keys; `storage` does.

// openraft's storage traits fix the error type (`StorageError`, large); the
// helpers here return the same type so `?` needs no conversions.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, LogState, RaftLogReader, RaftSnapshotBuilder,
    Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};

use super::image::{CommandResponse, MetadataImage};
use super::TypeConfig;
use crate::storage::{RaftTrees, RaftValue};

type NodeId = u64;
type StorageResult<T> = Result<T, StorageError<NodeId>>;

fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read(AnyError::new(&e)).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write(AnyError::new(&e)).into()
}

fn get_json<T: for<'de> Deserialize<'de>>(
    trees: &RaftTrees,
    value: RaftValue,
) -> StorageResult<Option<T>> {
    match trees.value(value).map_err(read_err)? {
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(read_err)?)),
        None => Ok(None),
    }
}

fn put_json<T: Serialize>(trees: &RaftTrees, value: RaftValue, item: &T) -> StorageResult<()> {
    let bytes = serde_json::to_vec(item).map_err(write_err)?;
    trees.put_value(value, bytes).map_err(write_err)
}

/// The Raft log and vote. Cloning shares the trees.
#[derive(Clone)]
pub struct RaftLogStore {
    /// Entries by index, the vote, the committed and last purged log ids.
    trees: RaftTrees,
}

impl RaftLogStore {
    /// The log store over the node's Raft trees.
    pub fn new(trees: RaftTrees) -> Self {
        RaftLogStore { trees }
    }

    async fn flush(&self) -> StorageResult<()> {
        self.trees.flush().await.map_err(write_err)
    }

    fn last_purged(&self) -> StorageResult<Option<LogId<NodeId>>> {
        get_json(&self.trees, RaftValue::LastPurged)
    }
}

impl RaftLogReader<TypeConfig> for RaftLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        self.trees
            .entries(range)
            .map_err(read_err)?
            .iter()
            .map(|bytes| serde_json::from_slice(bytes).map_err(read_err))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for RaftLogStore {
    type LogReader = RaftLogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id = self.last_purged()?;
        let last_in_log = match self.trees.last_entry().map_err(read_err)? {
            Some(bytes) => {
                let entry: Entry<TypeConfig> = serde_json::from_slice(&bytes).map_err(read_err)?;
                Some(entry.log_id)
            }
            None => None,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last_in_log.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        put_json(&self.trees, RaftValue::Vote, vote)?;
        self.flush().await
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        get_json(&self.trees, RaftValue::Vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        // No flush: a lost committed id is only an optimisation lost
        // (openraft re-learns it from the leader).
        put_json(&self.trees, RaftValue::Committed, &committed)
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(get_json::<Option<LogId<NodeId>>>(&self.trees, RaftValue::Committed)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let encoded = entries
            .into_iter()
            .map(|entry| Ok((entry.log_id.index, serde_json::to_vec(&entry)?)))
            .collect::<Result<Vec<_>, serde_json::Error>>()
            .map_err(write_err)?;
        self.trees.append_entries(encoded).map_err(write_err)?;
        // The contract: report the entries done only once they are on disk.
        let result = self.trees.flush().await.map_err(std::io::Error::other);
        let failed = result
            .as_ref()
            .err()
            .map(|e| std::io::Error::other(e.to_string()));
        callback.log_io_completed(result);
        match failed {
            Some(e) => Err(write_err(e)),
            None => Ok(()),
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        // Remove every entry at or after `log_id.index` (a conflicting suffix).
        self.trees.truncate_from(log_id.index).map_err(write_err)?;
        self.flush().await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        // Record the purge point first: a crash in between leaves extra
        // entries below it, which are ignored, never a hole above it.
        put_json(&self.trees, RaftValue::LastPurged, &log_id)?;
        self.trees.purge_through(log_id.index).map_err(write_err)?;
        self.flush().await
    }
}

/// What the state machine has applied; persisted as one JSON value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AppliedState {
    /// The last log entry applied.
    pub last_applied: Option<LogId<NodeId>>,
    /// The last membership entry applied (Raft's own configuration).
    pub last_membership: StoredMembership<NodeId, BasicNode>,
    /// The metadata image after `last_applied`.
    pub image: MetadataImage,
}

/// A snapshot as stored: its metadata and its bytes.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// The metadata state machine. Cloning shares the state; the cluster handle
/// reads the image through a clone.
#[derive(Clone)]
pub struct MetadataStateMachine {
    /// The applied state and the snapshot on disk (snapshots are flushed).
    trees: RaftTrees,
    /// The applied state, kept in memory for readers.
    state: Arc<RwLock<AppliedState>>,
    /// Distinguishes snapshots built at the same log id.
    snapshot_seq: Arc<AtomicU64>,
    /// Bumped after every change of the applied state; the replica manager
    /// and the controller wait on it.
    changes: Arc<tokio::sync::watch::Sender<u64>>,
}

impl MetadataStateMachine {
    /// Open the state machine and load what was applied before.
    pub fn open(trees: RaftTrees) -> StorageResult<Self> {
        let state: AppliedState = get_json(&trees, RaftValue::Applied)?.unwrap_or_default();
        Ok(MetadataStateMachine {
            trees,
            state: Arc::new(RwLock::new(state)),
            snapshot_seq: Arc::new(AtomicU64::new(0)),
            changes: Arc::new(tokio::sync::watch::channel(0).0),
        })
    }

    /// Run `f` on the applied image without copying it.
    pub fn read_image<R>(&self, f: impl FnOnce(&super::image::MetadataImage) -> R) -> R {
        match self.state.read() {
            Ok(state) => f(&state.image),
            Err(poisoned) => f(&poisoned.into_inner().image),
        }
    }

    /// A copy of the applied state.
    pub fn applied(&self) -> AppliedState {
        match self.state.read() {
            Ok(state) => state.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Wakes on every change of the applied state.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn replace(&self, new_state: AppliedState) -> StorageResult<()> {
        put_json(&self.trees, RaftValue::Applied, &new_state)?;
        match self.state.write() {
            Ok(mut state) => *state = new_state,
            Err(poisoned) => *poisoned.into_inner() = new_state,
        }
        self.changes.send_modify(|n| *n += 1);
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for MetadataStateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let state = self.applied();
        let data = serde_json::to_vec(&state.image).map_err(write_err)?;
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match &state.last_applied {
            Some(id) => format!("{}-{}-{seq}", id.leader_id, id.index),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.last_membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        put_json(&self.trees, RaftValue::Snapshot, &stored)?;
        // Flushed before openraft may purge the log it covers.
        self.trees.flush().await.map_err(write_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for MetadataStateMachine {
    type SnapshotBuilder = MetadataStateMachine;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let state = self.applied();
        Ok((state.last_applied, state.last_membership))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<CommandResponse>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut state = self.applied();
        let mut responses = Vec::new();
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            let response = match &entry.payload {
                EntryPayload::Blank => CommandResponse::Applied,
                EntryPayload::Normal(command) => state.image.apply(command),
                EntryPayload::Membership(membership) => {
                    state.last_membership =
                        StoredMembership::new(Some(entry.log_id), membership.clone());
                    CommandResponse::Applied
                }
            };
            responses.push(response);
        }
        self.replace(state)?;
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let data = snapshot.into_inner();
        let image: MetadataImage = serde_json::from_slice(&data).map_err(read_err)?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        put_json(&self.trees, RaftValue::Snapshot, &stored)?;
        self.replace(AppliedState {
            last_applied: meta.last_log_id,
            last_membership: meta.last_membership.clone(),
            image,
        })?;
        self.trees.flush().await.map_err(write_err)?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let stored: Option<StoredSnapshot> = get_json(&self.trees, RaftValue::Snapshot)?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::image::tests::register;
    use crate::cluster::image::Command;
    use crate::storage::Storage;
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{CommittedLeaderId, Membership};

    /// A fresh node database in a temporary directory.
    fn temp_storage(dir: &std::path::Path) -> Result<RaftTrees, crate::storage::StorageError> {
        Storage::open(dir, 0, 16 * 1024 * 1024)?.raft_trees()
    }

    /// Builds stores on a fresh temporary database for each suite case.
    struct TempStoreBuilder;

    impl StoreBuilder<TypeConfig, RaftLogStore, MetadataStateMachine, tempfile::TempDir>
        for TempStoreBuilder
    {
        async fn build(
            &self,
        ) -> StorageResult<(tempfile::TempDir, RaftLogStore, MetadataStateMachine)> {
            let dir = tempfile::tempdir().map_err(write_err)?;
            let trees = temp_storage(dir.path()).map_err(write_err)?;
            let log = RaftLogStore::new(trees.clone());
            let sm = MetadataStateMachine::open(trees)?;
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn raft_store_passes_openraft_storage_suite() {
        Suite::test_all(TempStoreBuilder).expect("openraft storage suite");
    }

    fn entry(index: u64, command: Command) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(command),
        }
    }

    #[tokio::test]
    async fn snapshot_round_trip_restores_image_on_another_node() {
        let source_dir = tempfile::tempdir().unwrap();
        let source_trees = temp_storage(source_dir.path()).unwrap();
        let mut source = MetadataStateMachine::open(source_trees).unwrap();
        let membership = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
            payload: EntryPayload::Membership(Membership::new(
                vec![[1u64, 2, 3].into_iter().collect()],
                None,
            )),
        };
        let responses = source
            .apply(vec![
                membership,
                entry(2, register(1)),
                entry(3, register(2)),
            ])
            .await
            .unwrap();
        assert_eq!(
            responses[2],
            CommandResponse::BrokerRegistered { liveness_epoch: 1 }
        );
        let snapshot = source.build_snapshot().await.unwrap();
        assert_eq!(snapshot.meta.last_log_id.map(|l| l.index), Some(3));

        let target_dir = tempfile::tempdir().unwrap();
        let target_trees = temp_storage(target_dir.path()).unwrap();
        let mut target = MetadataStateMachine::open(target_trees).unwrap();
        target
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .unwrap();
        assert_eq!(target.applied().image, source.applied().image);
        assert_eq!(target.applied().image.brokers.len(), 2);
        drop(target);

        // The installed state and snapshot survive reopening the database.
        let reopened_trees = temp_storage(target_dir.path()).unwrap();
        let mut reopened = MetadataStateMachine::open(reopened_trees).unwrap();
        assert_eq!(reopened.applied().image, source.applied().image);
        let (last_applied, membership) = reopened.applied_state().await.unwrap();
        assert_eq!(last_applied.map(|l| l.index), Some(3));
        assert_eq!(membership.membership().voter_ids().count(), 3);
        let current = reopened.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.last_log_id.map(|l| l.index), Some(3));
    }
}

//! Share-partition states in a cluster: a share-partition's leader (and a
//! share group's coordinator, for administrative changes) commits them to
//! the metadata image (`cluster::share_states`), where the next leader
//! reads them.
//!
//! A leader changes a share-partition's state at every acquisition and
//! acknowledgement, so its writes are coalesced: the last state of each
//! share-partition waits in `pending`, and one task proposes everything
//! pending as one command, one proposal at a time and at most one every
//! `PACE`. A change is committed within a pace and a proposal round trip
//! of being made; a leader that fails in between leaves its successor the
//! previous state, which delivers the records of that change again (share
//! groups deliver at least once).
//!
//! Must never: decide what a state means (`group::share` does).
//! Locks: `pending` only, never across an await.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::{lock, ReplicaManager};
use crate::cluster::image::{Command, CommandResponse};
use crate::cluster::share_states::{ShareStateEntry, ShareStateWrite, ShareWriter};
use crate::cluster::PROPOSE_TIMEOUT;

/// How long a failed proposal waits before the next try.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// The least time between two proposals of one node: under a steady stream
/// of acknowledgements, a share-partition's changes in that time make one
/// write (and one copy of the image to disk, as every Raft entry does).
const PACE: Duration = Duration::from_millis(20);

type WriteKey = (String, uuid::Uuid, i32);

/// Writes waiting for the next proposal.
#[derive(Default)]
struct Pending {
    writes: BTreeMap<WriteKey, ShareStateWrite>,
    /// Bumped by every write: `flush` waits for the proposal that holds it.
    seq: u64,
}

/// The coalescing writer of one node.
pub struct ShareStateWriter {
    pending: Mutex<Pending>,
    wake: Notify,
    /// The last `seq` committed and applied on this node.
    done: watch::Sender<u64>,
}

impl Default for ShareStateWriter {
    fn default() -> Self {
        ShareStateWriter {
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
            done: watch::channel(0).0,
        }
    }
}

impl ShareStateWriter {
    /// Queue `write`: it replaces a pending leader write of the same
    /// share-partition; a pending administrative write stays ahead of a
    /// leader's (which its commit would fence anyway).
    fn queue(&self, write: ShareStateWrite) {
        let key = (write.group_id.clone(), write.topic_id, write.partition);
        let mut pending = lock(&self.pending);
        pending.seq += 1;
        let keep_admin = matches!(write.writer, ShareWriter::Leader { .. })
            && pending
                .writes
                .get(&key)
                .is_some_and(|w| w.writer == ShareWriter::Admin);
        if !keep_admin {
            pending.writes.insert(key, write);
        }
        drop(pending);
        self.wake.notify_one();
    }

    /// Everything queued up to `seq` is committed and applied here.
    fn mark_done(&self, seq: u64) {
        self.done.send_if_modified(|d| {
            let moved = *d < seq;
            *d = seq.max(*d);
            moved
        });
    }
}

/// Whether a group's stored share-partitions hold a state (not only the
/// entries its deletes leave to fence older writes).
fn holds_a_state(partitions: &std::collections::BTreeMap<String, ShareStateEntry>) -> bool {
    partitions.values().any(|e| e.state.is_some())
}

impl ReplicaManager {
    /// Queue a share-partition state for the metadata image.
    pub fn write_share_state(&self, write: ShareStateWrite) {
        self.share_writer.queue(write);
    }

    /// Wait until every share state queued before this call is committed
    /// and applied on this node; false after `timeout`.
    pub async fn flush_share_states(&self, timeout: Duration) -> bool {
        let target = lock(&self.share_writer.pending).seq;
        let mut done = self.share_writer.done.subscribe();
        let flushed = matches!(
            self.unless_stopping(tokio::time::timeout(
                timeout,
                done.wait_for(|d| *d >= target)
            ))
            .await,
            Some(Ok(Ok(_)))
        );
        flushed
    }

    /// Whether a group has a stored share-partition state.
    pub fn has_share_states(&self, group_id: &str) -> bool {
        self.cluster.read_image(|image| {
            image
                .share_states
                .groups
                .get(group_id)
                .is_some_and(holds_a_state)
        })
    }

    /// `read` of a share-partition's stored entry, as the applied image has
    /// it, under the image's read lock: a leader reads the state epoch alone
    /// on every fetch and copies the encoded state only to load it.
    pub fn read_share_state<T>(
        &self,
        group_id: &str,
        topic_id: uuid::Uuid,
        partition: i32,
        read: impl FnOnce(&ShareStateEntry) -> T,
    ) -> Option<T> {
        self.cluster.read_image(|image| {
            image
                .share_states
                .get(group_id, topic_id, partition)
                .map(read)
        })
    }

    /// Every stored share-partition of a group: (topic id, partition, entry).
    pub fn share_states_of(&self, group_id: &str) -> Vec<(uuid::Uuid, i32, ShareStateEntry)> {
        use crate::cluster::share_states::parse_partition_key;
        self.cluster.read_image(|image| {
            image
                .share_states
                .groups
                .get(group_id)
                .into_iter()
                .flatten()
                .filter_map(|(key, entry)| {
                    let (topic_id, partition) = parse_partition_key(key)?;
                    Some((topic_id, partition, entry.clone()))
                })
                .collect()
        })
    }

    /// The share groups with a stored share-partition state.
    pub fn share_groups_stored(&self) -> Vec<String> {
        self.cluster.read_image(|image| {
            image
                .share_states
                .groups
                .iter()
                .filter(|(_, g)| holds_a_state(g))
                .map(|(id, _)| id.clone())
                .collect()
        })
    }

    /// Propose what is pending, one command at a time, until shutdown.
    pub(super) async fn write_share_states(self: Arc<Self>) {
        let writer = &self.share_writer;
        loop {
            let (writes, seq) = {
                let mut pending = lock(&writer.pending);
                (std::mem::take(&mut pending.writes), pending.seq)
            };
            if writes.is_empty() {
                writer.mark_done(seq);
                if self.unless_stopping(writer.wake.notified()).await.is_none() {
                    return;
                }
                continue;
            }
            let command = Command::ShareStates {
                writes: writes.values().cloned().collect(),
            };
            let proposed = self
                .unless_stopping(self.cluster.propose(command, PROPOSE_TIMEOUT))
                .await;
            match proposed {
                None => return,
                Some(Ok(CommandResponse::ShareStatesApplied { version, fenced })) => {
                    if fenced > 0 {
                        tracing::debug!(fenced, "share-partition states fenced off");
                    }
                    self.wait_share_version(version).await;
                    writer.mark_done(seq);
                    if self
                        .unless_stopping(tokio::time::sleep(PACE))
                        .await
                        .is_none()
                    {
                        return;
                    }
                }
                Some(answer) => {
                    tracing::warn!(?answer, "share-partition states not committed; retrying");
                    // Put back what no newer write replaced.
                    {
                        let mut pending = lock(&writer.pending);
                        for (key, write) in writes {
                            pending.writes.entry(key).or_insert(write);
                        }
                    }
                    let retry = tokio::time::sleep(RETRY_AFTER);
                    if self.unless_stopping(retry).await.is_none() {
                        return;
                    }
                }
            }
        }
    }

    /// Wait (briefly) until this node applied share states `version`.
    async fn wait_share_version(&self, version: u64) {
        let deadline = Instant::now() + PROPOSE_TIMEOUT;
        let mut changes = self.cluster.subscribe();
        loop {
            let applied = self.cluster.read_image(|image| image.share_states.version);
            if applied >= version || Instant::now() >= deadline {
                return;
            }
            let wait = tokio::time::timeout_at(deadline, changes.changed());
            if !matches!(self.unless_stopping(wait).await, Some(Ok(Ok(())))) {
                return;
            }
        }
    }
}

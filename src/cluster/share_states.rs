//! The share-partition states of share groups (KIP-932) in the metadata
//! image: what a share-partition's leader persists so that another leader
//! (after a failover or a reassignment) goes on where it stopped.
//!
//! Each entry carries Kafka's two fences. The *state epoch* is bumped by
//! every administrative write (AlterShareGroupOffsets, deletes); the
//! *leader epoch* is the partition leader epoch of the leader that wrote
//! it. A leader's write is applied only with the entry's current state
//! epoch and a leader epoch not below the entry's, so a deposed leader or
//! one that missed an administrative change cannot overwrite the state.
//! The state itself is opaque here (`group::share::partition` encodes it).
//!
//! Must never: interpret a state, or do I/O.
//! Locks: none.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One share-partition's stored state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareStateEntry {
    /// Bumped by each administrative write.
    pub state_epoch: i32,
    /// The partition leader epoch of the last leader that wrote it.
    pub leader_epoch: i32,
    /// The encoded state (base64), or `None` once deleted (the entry stays
    /// to fence writes made before the delete).
    pub state: Option<String>,
}

/// Who writes a state, and so how it is fenced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShareWriter {
    /// The partition's leader, with the fences it loaded the state under.
    Leader { state_epoch: i32, leader_epoch: i32 },
    /// The group's coordinator (alter or delete of an empty group's
    /// offsets): applied whatever is stored, with the state epoch bumped.
    Admin,
}

/// One write of a share-partition's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareStateWrite {
    pub group_id: String,
    pub topic_id: uuid::Uuid,
    pub partition: i32,
    pub writer: ShareWriter,
    /// The new state (base64), or `None` to delete it.
    pub state: Option<String>,
}

/// Every share group's share-partition states, by group then by
/// `topic id:partition`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareStates {
    /// Bumped by every applied batch of writes (a writer waits for its
    /// batch's version to be applied locally).
    pub version: u64,
    pub groups: BTreeMap<String, BTreeMap<String, ShareStateEntry>>,
}

/// The key of a share-partition within its group.
pub fn partition_key(topic_id: uuid::Uuid, partition: i32) -> String {
    format!("{topic_id}:{partition}")
}

/// The topic id and partition of a key made by `partition_key`.
pub fn parse_partition_key(key: &str) -> Option<(uuid::Uuid, i32)> {
    let (topic, partition) = key.rsplit_once(':')?;
    Some((topic.parse().ok()?, partition.parse().ok()?))
}

impl ShareStates {
    pub fn is_empty(&self) -> bool {
        self.version == 0 && self.groups.is_empty()
    }

    /// One share-partition's entry.
    pub fn get(
        &self,
        group_id: &str,
        topic_id: uuid::Uuid,
        partition: i32,
    ) -> Option<&ShareStateEntry> {
        self.groups
            .get(group_id)?
            .get(&partition_key(topic_id, partition))
    }

    /// Apply a batch of writes; returns how many were fenced off.
    pub fn apply(&mut self, writes: &[ShareStateWrite]) -> usize {
        let mut fenced = 0;
        for w in writes {
            let key = partition_key(w.topic_id, w.partition);
            let group = self.groups.entry(w.group_id.clone()).or_default();
            let current = group.get(&key);
            let entry = match (&w.writer, current) {
                (ShareWriter::Admin, current) => ShareStateEntry {
                    state_epoch: current.map_or(0, |c| c.state_epoch) + 1,
                    leader_epoch: current.map_or(-1, |c| c.leader_epoch),
                    state: w.state.clone(),
                },
                (
                    ShareWriter::Leader {
                        state_epoch,
                        leader_epoch,
                    },
                    current,
                ) => {
                    let (current_state, current_leader) =
                        current.map_or((0, -1), |c| (c.state_epoch, c.leader_epoch));
                    if *state_epoch != current_state || *leader_epoch < current_leader {
                        fenced += 1;
                        continue;
                    }
                    ShareStateEntry {
                        state_epoch: *state_epoch,
                        leader_epoch: *leader_epoch,
                        state: w.state.clone(),
                    }
                }
            };
            group.insert(key, entry);
        }
        self.groups.retain(|_, g| !g.is_empty());
        self.version += 1;
        fenced
    }

    /// Forget every state of a deleted topic.
    pub fn forget_topic(&mut self, topic_id: uuid::Uuid) {
        let prefix = format!("{topic_id}:");
        for group in self.groups.values_mut() {
            group.retain(|k, _| !k.starts_with(&prefix));
        }
        self.groups.retain(|_, g| !g.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(writer: ShareWriter, state: &str) -> ShareStateWrite {
        ShareStateWrite {
            group_id: "g".into(),
            topic_id: uuid::Uuid::from_u128(7),
            partition: 2,
            writer,
            state: Some(state.into()),
        }
    }

    fn leader(state_epoch: i32, leader_epoch: i32) -> ShareWriter {
        ShareWriter::Leader {
            state_epoch,
            leader_epoch,
        }
    }

    fn state(s: &ShareStates) -> Option<String> {
        s.get("g", uuid::Uuid::from_u128(7), 2)
            .and_then(|e| e.state.clone())
    }

    #[test]
    fn a_deposed_leader_cannot_overwrite_its_successor() {
        let mut s = ShareStates::default();
        assert_eq!(s.apply(&[write(leader(0, 3), "a")]), 0);
        assert_eq!(s.apply(&[write(leader(0, 4), "b")]), 0);
        assert_eq!(s.apply(&[write(leader(0, 3), "stale")]), 1);
        assert_eq!(state(&s).as_deref(), Some("b"));
        assert_eq!(s.version, 3);
    }

    #[test]
    fn an_admin_write_fences_the_leaders_that_loaded_before_it() {
        let mut s = ShareStates::default();
        s.apply(&[write(leader(0, 1), "a")]);
        s.apply(&[write(ShareWriter::Admin, "reset")]);
        let entry = s.get("g", uuid::Uuid::from_u128(7), 2).cloned();
        assert_eq!(entry.map(|e| (e.state_epoch, e.leader_epoch)), Some((1, 1)));
        assert_eq!(s.apply(&[write(leader(0, 1), "stale")]), 1);
        assert_eq!(state(&s).as_deref(), Some("reset"));
        // A leader that loaded the reset state writes on.
        assert_eq!(s.apply(&[write(leader(1, 1), "c")]), 0);
        assert_eq!(state(&s).as_deref(), Some("c"));
        // A delete keeps the entry as a fence.
        let mut delete = write(ShareWriter::Admin, "");
        delete.state = None;
        s.apply(&[delete]);
        assert_eq!(state(&s), None);
        assert_eq!(s.apply(&[write(leader(1, 1), "stale")]), 1);
    }

    #[test]
    fn keys_read_back_and_a_deleted_topic_is_forgotten() {
        let id = uuid::Uuid::new_v4();
        assert_eq!(parse_partition_key(&partition_key(id, 11)), Some((id, 11)));
        assert_eq!(parse_partition_key("nope"), None);
        let mut s = ShareStates::default();
        s.apply(&[write(leader(0, 0), "a")]);
        s.forget_topic(uuid::Uuid::from_u128(7));
        assert!(s.groups.is_empty());
    }
}

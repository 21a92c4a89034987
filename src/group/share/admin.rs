//! The share groups' admin side (KIP-932): DescribeShareGroupOffsets,
//! AlterShareGroupOffsets, DeleteShareGroupOffsets, and DeleteGroups of a
//! share group.
//!
//! A share group's "offset" per partition is its share-partition start
//! offset: the first record not yet acknowledged (or archived). Altering
//! or deleting it needs an empty group (no member could hold records of
//! the old window); an altered share-partition starts over at the new
//! offset with nothing in flight, a deleted one starts where a new one
//! would (`share.auto.offset.reset`) at the next fetch.
//!
//! Must never: hold the share state's lock while reading the topic catalog.
//! Locks: `ShareGroups::state` only.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use uuid::Uuid;

use super::partition::SharePartition;
use super::{PartitionKey, ShareState};
use crate::group::{CoordinatorError as E, GroupCoordinator};

/// The start offset of a share-partition nobody fetched from yet.
pub const UNINITIALIZED_START_OFFSET: i64 = -1;

/// One partition of DescribeShareGroupOffsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareOffset {
    pub partition: i32,
    /// The share-partition start offset, or -1 if not initialized.
    pub start_offset: i64,
    /// The partition leader epoch of the state's last writer (cluster; -1
    /// on a single node or when there is no state).
    pub leader_epoch: i32,
    pub error: Option<E>,
}

/// One topic of DescribeShareGroupOffsets or of an alteration's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareOffsetsTopic<P> {
    pub name: String,
    /// Nil when the topic does not exist.
    pub topic_id: Uuid,
    pub partitions: Vec<P>,
}

/// One partition's outcome in AlterShareGroupOffsets: (partition, error).
pub type AlteredOffset = (i32, Option<E>);

/// A partition to alter, checked: (partition, offset, error).
type CheckedOffset = (i32, i64, Option<E>);

/// One topic's outcome in DeleteShareGroupOffsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedShareOffsets {
    pub name: String,
    pub topic_id: Uuid,
    pub error: Option<E>,
}

impl ShareState {
    /// The group, for a change that needs it empty; `stored`: the group
    /// has share-partitions stored in a cluster (so it exists even when no
    /// member joined this coordinator).
    fn empty_group(&self, group_id: &str, stored: bool) -> Result<(), E> {
        match self.groups.get(group_id) {
            None if stored => Ok(()),
            None => Err(E::GroupIdNotFound),
            Some(g) if !g.members.is_empty() => Err(E::NonEmptyGroup),
            Some(_) => Ok(()),
        }
    }
}

impl GroupCoordinator {
    /// Whether `group_id` is a share group this node knows (a group with
    /// stored share-partitions is known from the node's start on).
    pub fn is_share_group(&self, group_id: &str) -> bool {
        self.share_group_known(group_id)
    }

    /// The start offsets of a group's share-partitions, with the leader
    /// epoch of their writer: the cluster's stored ones, else this node's.
    fn share_start_offsets(
        &self,
        state: &ShareState,
        group_id: &str,
    ) -> BTreeMap<(Uuid, i32), (i64, i32)> {
        match self.share.cluster() {
            Some(rm) => rm
                .share_states_of(group_id)
                .into_iter()
                .filter_map(|(topic_id, partition, entry)| {
                    let bytes = BASE64.decode(entry.state?).ok()?;
                    let p = SharePartition::decode(&bytes)?;
                    Some((
                        (topic_id, partition),
                        (p.start_offset(), entry.leader_epoch),
                    ))
                })
                .collect(),
            None => state
                .partitions
                .iter()
                .filter(|(k, _)| k.group_id == group_id)
                .map(|(k, p)| ((k.topic_id, k.partition), (p.start_offset(), -1)))
                .collect(),
        }
    }

    /// Delete a group's share-partitions that `which` selects (by topic
    /// id): this node's, and in a cluster the stored ones.
    fn forget_share_partitions(
        &self,
        state: &mut ShareState,
        group_id: &str,
        which: impl Fn(Uuid) -> bool,
    ) {
        self.share
            .forget_partitions(state, |k| k.group_id == group_id && which(k.topic_id));
        if let Some(rm) = self.share.cluster() {
            for (topic_id, partition, entry) in rm.share_states_of(group_id) {
                if entry.state.is_some() && which(topic_id) {
                    let key = PartitionKey {
                        group_id: group_id.to_owned(),
                        topic_id,
                        partition,
                    };
                    self.share.store_admin(&key, None);
                }
            }
        }
    }

    /// DescribeShareGroupOffsets of one group: the requested topics'
    /// partitions, or (`topics` None) every partition the group has state
    /// for.
    pub fn describe_share_group_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<ShareOffsetsTopic<ShareOffset>>, E> {
        self.share_check(group_id)?;
        self.coordinator_error(group_id)?;
        let catalog = self.topic_catalog();
        if !self.share_group_known(group_id) {
            return Err(E::GroupIdNotFound);
        }
        let starts = self.share_start_offsets(&self.share.lock(), group_id);
        let topics = topics.unwrap_or_else(|| {
            catalog
                .iter()
                .filter_map(|(name, (id, _))| {
                    let partitions: Vec<i32> = starts
                        .keys()
                        .filter(|(topic_id, _)| topic_id == id)
                        .map(|(_, partition)| *partition)
                        .collect();
                    (!partitions.is_empty()).then(|| (name.clone(), partitions))
                })
                .collect()
        });
        Ok(topics
            .into_iter()
            .map(|(name, partitions)| {
                let known = catalog.get(&name).copied();
                let topic_id = known.map(|(id, _)| id).unwrap_or(Uuid::nil());
                let partitions = partitions
                    .into_iter()
                    .map(|partition| match known {
                        Some((_, count)) if (0..count).contains(&partition) => {
                            let (start_offset, leader_epoch) = starts
                                .get(&(topic_id, partition))
                                .copied()
                                .unwrap_or((UNINITIALIZED_START_OFFSET, -1));
                            ShareOffset {
                                partition,
                                start_offset,
                                leader_epoch,
                                error: None,
                            }
                        }
                        _ => ShareOffset {
                            partition,
                            start_offset: UNINITIALIZED_START_OFFSET,
                            leader_epoch: -1,
                            error: Some(E::UnknownTopicOrPartition),
                        },
                    })
                    .collect();
                ShareOffsetsTopic {
                    name,
                    topic_id,
                    partitions,
                }
            })
            .collect())
    }

    /// AlterShareGroupOffsets: each listed share-partition starts over at
    /// its new offset, which must lie between the log's start offset and
    /// its high watermark. The group must be empty.
    pub async fn alter_share_group_offsets(
        &self,
        group_id: &str,
        topics: Vec<(String, Vec<(i32, i64)>)>,
    ) -> Result<Vec<ShareOffsetsTopic<AlteredOffset>>, E> {
        let altered = self.alter_share_group_offsets_now(group_id, topics)?;
        self.share_flush().await?;
        Ok(altered)
    }

    fn alter_share_group_offsets_now(
        &self,
        group_id: &str,
        topics: Vec<(String, Vec<(i32, i64)>)>,
    ) -> Result<Vec<ShareOffsetsTopic<AlteredOffset>>, E> {
        self.share_check(group_id)?;
        self.coordinator_error(group_id)?;
        let catalog = self.topic_catalog();
        // The bounds each offset must lie within, read before the lock.
        let bounds = |name: &str, partition: i32| {
            self.broker
                .topic(name)
                .and_then(|t| t.partition(partition))
                .map(|log| (log.log_start_offset(), log.high_watermark()))
        };
        let checked: Vec<ShareOffsetsTopic<CheckedOffset>> = topics
            .into_iter()
            .map(|(name, partitions)| {
                let known = catalog.get(&name).copied();
                let partitions = partitions
                    .into_iter()
                    .map(|(partition, offset)| {
                        let error = match (known, bounds(&name, partition)) {
                            (Some((_, count)), Some((start, end)))
                                if (0..count).contains(&partition) =>
                            {
                                (!(start..=end).contains(&offset)).then_some(E::InvalidRequest)
                            }
                            _ => Some(E::UnknownTopicOrPartition),
                        };
                        (partition, offset, error)
                    })
                    .collect();
                ShareOffsetsTopic {
                    name,
                    topic_id: known.map_or(Uuid::nil(), |(id, _)| id),
                    partitions,
                }
            })
            .collect();
        let stored = self.share_group_known(group_id);
        let mut state = self.share.lock();
        state.empty_group(group_id, stored)?;
        let mut out = Vec::with_capacity(checked.len());
        for ShareOffsetsTopic {
            name,
            topic_id,
            partitions,
        } in checked
        {
            let mut answered = Vec::with_capacity(partitions.len());
            for (partition, offset, error) in partitions {
                if error.is_none() {
                    let key = PartitionKey {
                        group_id: group_id.to_owned(),
                        topic_id,
                        partition,
                    };
                    let p = SharePartition::new(offset);
                    if self.share.cluster().is_some() {
                        // The partition's leader loads it from the image.
                        self.share.store_admin(&key, Some(&p));
                        state.partitions.remove(&key);
                    } else {
                        self.share.store(&key, &p);
                        state.partitions.insert(key, p);
                    }
                }
                answered.push((partition, error));
            }
            out.push(ShareOffsetsTopic {
                name,
                topic_id,
                partitions: answered,
            });
        }
        state.groups.entry(group_id.to_owned()).or_default();
        tracing::info!(group = group_id, "share group offsets altered");
        Ok(out)
    }

    /// DeleteShareGroupOffsets: forget the group's share-partitions of each
    /// listed topic. The group must be empty.
    pub async fn delete_share_group_offsets(
        &self,
        group_id: &str,
        topics: Vec<String>,
    ) -> Result<Vec<DeletedShareOffsets>, E> {
        let deleted = self.delete_share_group_offsets_now(group_id, topics)?;
        self.share_flush().await?;
        Ok(deleted)
    }

    fn delete_share_group_offsets_now(
        &self,
        group_id: &str,
        topics: Vec<String>,
    ) -> Result<Vec<DeletedShareOffsets>, E> {
        self.share_check(group_id)?;
        self.coordinator_error(group_id)?;
        let catalog = self.topic_catalog();
        let stored = self.share_group_known(group_id);
        let mut state = self.share.lock();
        state.empty_group(group_id, stored)?;
        let out = topics
            .into_iter()
            .map(|name| match catalog.get(&name) {
                Some((topic_id, _)) => {
                    self.forget_share_partitions(&mut state, group_id, |id| id == *topic_id);
                    DeletedShareOffsets {
                        name,
                        topic_id: *topic_id,
                        error: None,
                    }
                }
                None => DeletedShareOffsets {
                    name,
                    topic_id: Uuid::nil(),
                    error: Some(E::UnknownTopicOrPartition),
                },
            })
            .collect();
        Ok(out)
    }

    /// DeleteGroups of a share group: an empty one is forgotten with its
    /// share-partitions; NON_EMPTY_GROUP while it has members.
    pub fn delete_share_group(&self, group_id: &str) -> Result<(), E> {
        self.share_check(group_id)?;
        self.coordinator_error(group_id)?;
        let stored = self.share_group_known(group_id);
        let mut state = self.share.lock();
        state.empty_group(group_id, stored)?;
        state.groups.remove(group_id);
        self.forget_share_partitions(&mut state, group_id, |_| true);
        state.sessions.retain(|(g, _), _| g != group_id);
        tracing::info!(group = group_id, "share group deleted");
        Ok(())
    }
}

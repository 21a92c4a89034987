//! Committed offsets and group administration: OffsetCommit, OffsetFetch,
//! OffsetDelete, DeleteGroups, DescribeGroups, ListGroups, retention of the
//! offsets of empty groups (`offsets.retention.minutes`) and removal of the
//! offsets of deleted topics.
//!
//! Every change is written to `__consumer_offsets` before the in-memory
//! cache changes, so what a client was told is what a restart replays.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::records::{OffsetValue, RecordKey, OFFSETS_TOPIC};
use super::state::{Group, GroupState, CONSUMER_PROTOCOL_TYPE};
use super::store::KeyValue;
use super::{lock, now_ms, GroupCoordinator};
use super::{CoordinatorError as E, Outcome};
use crate::replication::ReplicaError;

/// How long an offset commit waits for the offsets partition's ISR.
const COMMIT_REPLICATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Kafka's `offset.metadata.max.bytes`.
pub const OFFSET_METADATA_MAX_BYTES: usize = 4096;

/// One partition's offset in an OffsetCommit.
#[derive(Debug, Clone)]
pub struct PartitionCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// An OffsetCommit request, as the coordinator needs it.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub group_id: String,
    /// Empty (and generation -1) for groups that only store offsets.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
    pub partitions: Vec<PartitionCommit>,
}

/// One member in DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Metadata for the selected protocol (only while Stable, as Kafka does).
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A group in DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: &'static str,
    pub protocol_type: String,
    /// The selected protocol while Stable, else empty.
    pub protocol: String,
    pub members: Vec<MemberDescription>,
    /// "classic" or "consumer" (KIP-848).
    pub group_type: &'static str,
}

/// A group in ListGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
    /// "classic" or "consumer" (KIP-848).
    pub group_type: &'static str,
}

/// Committed offsets by topic and partition (`None`: nothing committed).
pub type TopicOffsets = Vec<(String, Vec<(i32, Option<OffsetValue>)>)>;
/// An error code by topic and partition.
pub type TopicErrors = Vec<(String, Vec<(i32, Outcome)>)>;

fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    RecordKey::Offset {
        group: group.to_owned(),
        topic: topic.to_owned(),
        partition,
    }
    .encode()
}

impl GroupCoordinator {
    /// OffsetCommit: one error code per partition, in request order.
    pub async fn commit_offsets(self: &Arc<Self>, req: CommitRequest) -> Vec<Outcome> {
        let all = |error| vec![error; req.partitions.len()];
        if let Err(coordinator) = self.coordinator_error(&req.group_id) {
            return all(Err(coordinator));
        }
        let handle = match self.group(&req.group_id) {
            Some(h) => h,
            // A group that only stores offsets is created by its first commit.
            None if req.generation_id < 0 => self.group_or_create(&req.group_id),
            None => return all(Err(E::IllegalGeneration)),
        };
        let (errors, wrote) = {
            let mut g = lock(&handle);
            let gate = self.commit_gate(&mut g, &req);
            let result = if gate.is_err() {
                (all(gate), false)
            } else {
                self.store_offsets(&mut g, &req.partitions)
            };
            self.forget_if_unused(&mut g, &handle);
            result
        };
        if wrote && self.broker.config.flush_interval_ms == 0 {
            if let Err(e) = self.broker.storage.flush().await {
                tracing::error!(error = %e, "flush of committed offsets failed");
                return all(Err(E::NotCoordinator));
            }
        }
        if wrote {
            // In a cluster a commit is acknowledged once the offsets
            // partition's ISR holds it (as acks=all), so it survives the
            // coordinator moving to another node.
            if let Err(e) = self.wait_replicated(&req.group_id).await {
                return all(Err(e));
            }
        }
        errors
    }

    /// In a cluster: wait until everything written so far to the group's
    /// offsets partition is replicated to its ISR.
    pub(super) async fn wait_replicated(&self, group_id: &str) -> Result<(), E> {
        let Some(log) = self
            .broker
            .topic(OFFSETS_TOPIC)
            .and_then(|t| t.partition(self.partition_for(group_id)))
        else {
            return Err(E::NotCoordinator);
        };
        let wait = crate::replication::CommitWait {
            target: log.log_end_offset(),
            log,
            min_insync: 1,
        };
        match self
            .partition_layer
            .wait_committed(&[wait], COMMIT_REPLICATION_TIMEOUT)
            .await[..]
        {
            [Ok(())] => Ok(()),
            [Err(ReplicaError::NotLeaderOrFollower)] => Err(E::NotCoordinator),
            _ => Err(E::RequestTimedOut),
        }
    }

    /// Kafka's checks before storing a commit (`doCommitOffsets`).
    fn commit_gate(&self, g: &mut Group, req: &CommitRequest) -> Outcome {
        if g.is(GroupState::Dead) {
            return Err(E::CoordinatorNotAvailable);
        }
        if let Some(gate) = Self::consumer_commit_gate(g, &req.member_id, req.generation_id) {
            return gate;
        }
        if g.is_static_member_fenced(req.group_instance_id.as_deref(), &req.member_id) {
            return Err(E::FencedInstanceId);
        }
        if req.generation_id < 0 && g.is(GroupState::Empty) {
            return Ok(());
        }
        if !g.has_member(&req.member_id) {
            return Err(E::UnknownMemberId);
        }
        if req.generation_id != g.generation_id {
            return Err(E::IllegalGeneration);
        }
        match g.state {
            // While preparing a rebalance commits are still accepted; the
            // heartbeat tells the member to rejoin.
            GroupState::Stable | GroupState::PreparingRebalance => {
                if let Some(m) = g.members.get_mut(&req.member_id) {
                    m.last_heartbeat = Instant::now();
                }
                Ok(())
            }
            GroupState::CompletingRebalance => Err(E::RebalanceInProgress),
            GroupState::Empty | GroupState::Dead => Err(E::UnknownMemberId),
        }
    }

    /// Validate each partition, write the valid ones as one batch, then
    /// update the cache. Returns the errors and whether anything was written.
    fn store_offsets(&self, g: &mut Group, partitions: &[PartitionCommit]) -> (Vec<Outcome>, bool) {
        let timestamp = now_ms();
        let mut errors = Vec::with_capacity(partitions.len());
        let mut records: Vec<KeyValue> = Vec::new();
        let mut accepted = Vec::new();
        for p in partitions {
            let metadata = p.metadata.clone().unwrap_or_default();
            let error = if metadata.len() > OFFSET_METADATA_MAX_BYTES {
                Err(E::OffsetMetadataTooLarge)
            } else if self
                .broker
                .topic(&p.topic)
                .and_then(|t| t.partition(p.partition))
                .is_none()
            {
                Err(E::UnknownTopicOrPartition)
            } else {
                let value = OffsetValue {
                    offset: p.offset,
                    leader_epoch: p.leader_epoch,
                    metadata,
                    commit_timestamp: timestamp,
                };
                records.push((
                    offset_key(&g.group_id, &p.topic, p.partition),
                    Some(value.encode()),
                ));
                accepted.push(((p.topic.clone(), p.partition), value));
                Ok(())
            };
            errors.push(error);
        }
        if records.is_empty() {
            return (errors, false);
        }
        if let Err(error) = self.append(&g.group_id, &records) {
            for e in errors.iter_mut().filter(|e| e.is_ok()) {
                *e = Err(error);
            }
            return (errors, false);
        }
        g.offsets.extend(accepted);
        (errors, true)
    }

    /// OffsetFetch for one group: the requested partitions (or every
    /// committed one when `topics` is `None`); `None` for no commit.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<TopicOffsets, E> {
        self.coordinator_error(group_id)?;
        let group = self.group(group_id);
        let guard = group.as_ref().map(|h| lock(h));
        let offsets = guard
            .as_ref()
            .filter(|g| !g.is(GroupState::Dead))
            .map(|g| &g.offsets);
        Ok(match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let found = partitions
                        .into_iter()
                        .map(|p| (p, offsets.and_then(|o| o.get(&(topic.clone(), p))).cloned()))
                        .collect();
                    (topic, found)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<OffsetValue>)>> =
                    BTreeMap::new();
                for ((topic, p), v) in offsets.into_iter().flatten() {
                    by_topic
                        .entry(topic.clone())
                        .or_default()
                        .push((*p, Some(v.clone())));
                }
                by_topic.into_iter().collect()
            }
        })
    }

    /// OffsetDelete: remove committed offsets of topics the group does not
    /// consume. Per partition: NONE, GROUP_SUBSCRIBED_TO_TOPIC or
    /// UNKNOWN_TOPIC_OR_PARTITION; group errors as `Err`.
    pub fn delete_offsets(
        &self,
        group_id: &str,
        topics: Vec<(String, Vec<i32>)>,
    ) -> Result<TopicErrors, E> {
        self.coordinator_error(group_id)?;
        let handle = self.group(group_id).ok_or(E::GroupIdNotFound)?;
        let mut g = lock(&handle);
        let check_subscription = match g.state {
            GroupState::Dead => return Err(E::GroupIdNotFound),
            GroupState::Empty => false,
            _ if g.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE) => true,
            _ => return Err(E::NonEmptyGroup),
        };
        let mut result = Vec::with_capacity(topics.len());
        let mut records: Vec<KeyValue> = Vec::new();
        let mut removed = Vec::new();
        for (topic, partitions) in topics {
            let exists = self.broker.topic(&topic);
            let subscribed = check_subscription && g.is_subscribed_to(&topic);
            let mut errors = Vec::with_capacity(partitions.len());
            for p in partitions {
                let error = if exists.as_ref().and_then(|t| t.partition(p)).is_none() {
                    Err(E::UnknownTopicOrPartition)
                } else if subscribed {
                    Err(E::GroupSubscribedToTopic)
                } else {
                    if g.offsets.contains_key(&(topic.clone(), p)) {
                        records.push((offset_key(group_id, &topic, p), None));
                        removed.push((topic.clone(), p));
                    }
                    Ok(())
                };
                errors.push((p, error));
            }
            result.push((topic, errors));
        }
        if !records.is_empty() {
            self.append(group_id, &records)?;
            for k in removed {
                g.offsets.remove(&k);
            }
        }
        Ok(result)
    }

    /// DeleteGroups: delete empty groups and their offsets. One error per group.
    /// A deleted share group's answer waits for its state's deletion to be
    /// committed (in a cluster).
    pub async fn delete_groups(self: &Arc<Self>, group_ids: &[String]) -> Vec<Outcome> {
        let share: Vec<bool> = group_ids.iter().map(|id| self.is_share_group(id)).collect();
        let mut out: Vec<Outcome> = group_ids.iter().map(|id| self.delete_group(id)).collect();
        if share.iter().zip(&out).any(|(s, o)| *s && o.is_ok()) {
            if let Err(e) = self.share_flush().await {
                for (s, o) in share.iter().zip(out.iter_mut()) {
                    if *s && o.is_ok() {
                        *o = Err(e);
                    }
                }
            }
        }
        out
    }

    fn delete_group(self: &Arc<Self>, group_id: &str) -> Outcome {
        self.coordinator_error(group_id)?;
        let Some(handle) = self.group(group_id) else {
            if self.is_share_group(group_id) {
                return self.delete_share_group(group_id);
            }
            return Err(E::GroupIdNotFound);
        };
        let mut g = lock(&handle);
        // A member whose session ended is gone, even if the sweeper has
        // not woken since.
        self.expire_due(&handle, &mut g);
        match g.state {
            GroupState::Dead => return Err(E::GroupIdNotFound),
            GroupState::Empty if !Self::has_consumer_members(&g) => {}
            _ => return Err(E::NonEmptyGroup),
        }
        let mut records: Vec<KeyValue> = Self::consumer_tombstones(&g);
        records.extend(
            g.offsets
                .keys()
                .map(|(topic, p)| (offset_key(group_id, topic, *p), None)),
        );
        records.push((
            RecordKey::Group {
                group: group_id.to_owned(),
            }
            .encode(),
            None,
        ));
        self.append(group_id, &records)?;
        g.offsets.clear();
        g.fail_all_waiters(E::CoordinatorNotAvailable);
        g.transition(GroupState::Dead, now_ms());
        self.forget(&g, &handle);
        tracing::info!(group = group_id, "group deleted");
        Ok(())
    }

    /// DescribeGroups for one group; an unknown group is described as Dead
    /// with no members, as Kafka does.
    pub fn describe_group(&self, group_id: &str) -> Result<GroupDescription, E> {
        self.coordinator_error(group_id)?;
        let dead = GroupDescription {
            group_id: group_id.to_owned(),
            state: GroupState::Dead.name(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
            group_type: "classic",
        };
        let Some(handle) = self.group(group_id) else {
            return Ok(dead);
        };
        let g = lock(&handle);
        if g.is(GroupState::Dead) {
            return Ok(dead);
        }
        if let Some(described) = Self::describe_consumer_group(&g) {
            return Ok(described);
        }
        let stable = g.is(GroupState::Stable);
        let protocol = if stable {
            g.protocol_name.clone().unwrap_or_default()
        } else {
            String::new()
        };
        let members = g
            .members
            .values()
            .map(|m| MemberDescription {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable {
                    m.metadata(&protocol)
                } else {
                    Bytes::new()
                },
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Bytes::new()
                },
            })
            .collect();
        Ok(GroupDescription {
            group_id: group_id.to_owned(),
            state: g.state.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol,
            members,
            group_type: "classic",
        })
    }

    /// ListGroups: every group, or those whose state is in `states`
    /// (case-insensitive), sorted by id.
    pub fn list_groups(&self, states: &[String]) -> Vec<GroupListing> {
        self.list_groups_of_types(states, &[])
    }

    /// ListGroups v5: also filtered by group type ("classic", "consumer";
    /// case-insensitive) when `types` is not empty.
    pub fn list_groups_of_types(&self, states: &[String], types: &[String]) -> Vec<GroupListing> {
        let mut out: Vec<GroupListing> = self
            .all_groups()
            .iter()
            .filter_map(|handle| {
                let g = lock(handle);
                if g.is(GroupState::Dead) {
                    return None;
                }
                let (group_type, state, protocol_type) = Self::group_type_and_state(&g);
                if !states.is_empty() && !states.iter().any(|s| s.eq_ignore_ascii_case(state)) {
                    return None;
                }
                if !types.is_empty() && !types.iter().any(|t| t.eq_ignore_ascii_case(group_type)) {
                    return None;
                }
                Some(GroupListing {
                    group_id: g.group_id.clone(),
                    protocol_type,
                    state,
                    group_type,
                })
            })
            .collect();
        for (group_id, state) in self.share_listing() {
            let listed = (states.is_empty()
                || states.iter().any(|s| s.eq_ignore_ascii_case(state)))
                && (types.is_empty() || types.iter().any(|t| t.eq_ignore_ascii_case("share")))
                && !out.iter().any(|g| g.group_id == group_id);
            if listed {
                out.push(GroupListing {
                    group_id,
                    protocol_type: "share".to_owned(),
                    state,
                    group_type: "share",
                });
            }
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// Drop the committed offsets of a deleted topic from every group.
    pub fn on_topic_deleted(&self, topic: &str) -> usize {
        let mut removed = 0;
        for handle in self.all_groups() {
            let mut g = lock(&handle);
            removed += self.remove_offsets_where(&mut g, |t, _| t == topic);
        }
        removed
    }

    /// Remove offsets of deleted topics and expired offsets (Kafka's
    /// `cleanupGroupMetadata`); empty groups left without offsets die.
    /// Returns how many offsets were removed.
    pub(super) fn cleanup_offsets(&self, now_ms: i64) -> usize {
        let retention_ms = self.settings.offsets_retention.as_millis() as i64;
        let mut removed = 0;
        for handle in self.all_groups() {
            let mut g = lock(&handle);
            if g.is(GroupState::Dead) {
                continue;
            }
            removed += self.remove_offsets_where(&mut g, |t, _| self.broker.topic(t).is_none());
            removed += self.expire_offsets(&mut g, now_ms, retention_ms);
            if g.is(GroupState::Empty)
                && g.offsets.is_empty()
                && g.members.is_empty()
                && g.pending_members.is_empty()
            {
                let tombstone = (
                    RecordKey::Group {
                        group: g.group_id.clone(),
                    }
                    .encode(),
                    None,
                );
                if self.append(&g.group_id, &[tombstone]).is_ok() {
                    g.transition(GroupState::Dead, now_ms);
                    self.forget(&g, &handle);
                    tracing::info!(group = %g.group_id, "empty group without offsets removed");
                }
            }
        }
        removed
    }

    /// Kafka's offset expiration (KIP-211): offsets of an empty group expire
    /// `retention` after the group became empty (or after their commit, for
    /// groups that only store offsets); offsets of a stable consumer group
    /// expire only for topics it no longer subscribes to.
    fn expire_offsets(&self, g: &mut Group, now_ms: i64, retention_ms: i64) -> usize {
        let state_ts = g.state_timestamp_ms;
        let expired = |base: i64| now_ms - base >= retention_ms;
        let doomed: Vec<(String, i32)> = match (&g.protocol_type, g.state) {
            // Measured from when the group became empty (from the commit for
            // groups loaded without a state timestamp).
            (Some(_), GroupState::Empty) => g
                .offsets
                .iter()
                .filter(|(_, v)| {
                    expired(if state_ts >= 0 {
                        state_ts
                    } else {
                        v.commit_timestamp
                    })
                })
                .map(|(k, _)| k.clone())
                .collect(),
            (Some(t), GroupState::Stable) if t == CONSUMER_PROTOCOL_TYPE => {
                match &g.subscribed_topics {
                    Some(subscribed) => g
                        .offsets
                        .iter()
                        .filter(|((topic, _), v)| {
                            !subscribed.contains(topic) && expired(v.commit_timestamp)
                        })
                        .map(|(k, _)| k.clone())
                        .collect(),
                    None => Vec::new(),
                }
            }
            (None, _) => g
                .offsets
                .iter()
                .filter(|(_, v)| expired(v.commit_timestamp))
                .map(|(k, _)| k.clone())
                .collect(),
            _ => Vec::new(),
        };
        let doomed: std::collections::HashSet<(String, i32)> = doomed.into_iter().collect();
        self.remove_offsets_where(g, |t, p| doomed.contains(&(t.to_owned(), p)))
    }

    /// Write tombstones for the group's offsets matching `doomed`, then drop
    /// them from the cache. Returns how many were removed.
    fn remove_offsets_where(&self, g: &mut Group, doomed: impl Fn(&str, i32) -> bool) -> usize {
        let keys: Vec<(String, i32)> = g
            .offsets
            .keys()
            .filter(|(t, p)| doomed(t, *p))
            .cloned()
            .collect();
        if keys.is_empty() {
            return 0;
        }
        let records: Vec<KeyValue> = keys
            .iter()
            .map(|(t, p)| (offset_key(&g.group_id, t, *p), None))
            .collect();
        if self.append(&g.group_id, &records).is_err() {
            return 0;
        }
        for k in &keys {
            g.offsets.remove(k);
        }
        keys.len()
    }
}

//! The coordinator's side of consumer groups (KIP-848): ConsumerGroupHeartbeat
//! and ConsumerGroupDescribe under the group's lock, the records written
//! before a changed group is kept, and the task that fences each member at
//! its own deadline (session, or rebalance timeout while it must revoke).
//!
//! Locks: the group's lock only (the groups map's is taken inside it, as
//! everywhere in the coordinator); nothing awaits while holding it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use super::assignor::Assignment;
use super::records::MemberMetadata;
use super::{HeartbeatResponse, Records, Timeouts, TopicCatalog};
use crate::group::records::OFFSETS_TOPIC;
use crate::group::state::GroupState;
use crate::group::{lock, min_instant, CoordinatorError as E, GroupCoordinator};

/// The group configs a consumer group applies.
const GROUP_SESSION_TIMEOUT: &str = "consumer.session.timeout.ms";
const GROUP_HEARTBEAT_INTERVAL: &str = "consumer.heartbeat.interval.ms";

/// A ConsumerGroupHeartbeat, as the coordinator needs it.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    /// `None`: unchanged since the last heartbeat.
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// What the member owns now (`None`: unchanged).
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
    /// Set when a classic member joins a consumer group (online migration).
    pub classic: Option<super::records::ClassicMemberMetadata>,
}

/// A known member at its current epoch, else UNKNOWN_MEMBER_ID, or for a
/// wrong epoch STALE_MEMBER_EPOCH (ILLEGAL_GENERATION for a classic member,
/// whose generation is its member epoch).
fn check_member_epoch(group: &super::ConsumerGroup, member_id: &str, epoch: i32) -> Result<(), E> {
    match group.members.get(member_id) {
        None => Err(E::UnknownMemberId),
        Some(m) if m.assignment.member_epoch == epoch => Ok(()),
        Some(m) if m.metadata.classic.is_some() => Err(E::IllegalGeneration),
        Some(_) => Err(E::StaleMemberEpoch),
    }
}

/// One member in ConsumerGroupDescribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedConsumerMember {
    pub member_id: String,
    pub metadata: MemberMetadata,
    pub member_epoch: i32,
    /// A member of the classic protocol (online migration).
    pub classic: bool,
    /// Partitions by (topic id, topic name).
    pub assignment: Vec<(Uuid, String, Vec<i32>)>,
    pub target_assignment: Vec<(Uuid, String, Vec<i32>)>,
}

/// A group in ConsumerGroupDescribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedConsumerGroup {
    pub group_id: String,
    pub state: &'static str,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<DescribedConsumerMember>,
}

fn named(a: &Assignment, names: &BTreeMap<Uuid, String>) -> Vec<(Uuid, String, Vec<i32>)> {
    a.iter()
        .map(|(id, ps)| {
            let name = names.get(id).cloned().unwrap_or_default();
            (*id, name, ps.iter().copied().collect())
        })
        .collect()
}

impl GroupCoordinator {
    /// Every topic this coordinator can assign, by name: its id and
    /// partition count (the cluster's image, or this node's topics).
    pub(crate) fn topic_catalog(&self) -> TopicCatalog {
        match self.partition_layer.replica_manager() {
            Some(rm) => rm.cluster().read_image(|image| {
                image
                    .topics
                    .iter()
                    .filter(|(name, _)| name.as_str() != OFFSETS_TOPIC)
                    .map(|(name, t)| (name.clone(), (t.topic_id, t.partitions.len() as i32)))
                    .collect()
            }),
            None => self
                .broker
                .topics()
                .iter()
                .filter(|t| !t.internal)
                .map(|t| (t.name.clone(), (t.id, t.partition_count())))
                .collect(),
        }
    }

    /// The heartbeat interval a group's members are told to keep: its
    /// `consumer.heartbeat.interval.ms` group config, else the node's flag.
    pub fn consumer_heartbeat_interval_ms(&self, group_id: &str) -> i32 {
        let interval = self
            .group_config_ms(group_id, GROUP_HEARTBEAT_INTERVAL)
            .unwrap_or(self.settings.consumer_heartbeat_interval);
        i32::try_from(interval.as_millis()).unwrap_or(i32::MAX)
    }

    /// A group's session timeout: its `consumer.session.timeout.ms` group
    /// config, else the node's flag (read at each heartbeat, so a change
    /// applies at the members' next heartbeat).
    fn consumer_session_timeout(&self, group_id: &str) -> Duration {
        self.group_config_ms(group_id, GROUP_SESSION_TIMEOUT)
            .unwrap_or(self.settings.consumer_session_timeout)
    }

    /// A duration set as a group config (IncrementalAlterConfigs on GROUP).
    fn group_config_ms(&self, group_id: &str, name: &str) -> Option<Duration> {
        let state = self.broker.security.current();
        let value = state.configs.groups.get(group_id)?.get(name)?;
        value.parse::<u64>().ok().map(Duration::from_millis)
    }

    /// ConsumerGroupHeartbeat: join, heartbeat, reconcile or leave.
    pub fn consumer_group_heartbeat(
        self: &Arc<Self>,
        req: HeartbeatRequest,
    ) -> Result<HeartbeatResponse, E> {
        if req.group_id.is_empty() {
            return Err(E::InvalidGroupId);
        }
        self.coordinator_error(&req.group_id)?;
        let catalog = self.topic_catalog();
        let handle = if req.member_epoch == 0 {
            self.group_or_create(&req.group_id)
        } else {
            self.group(&req.group_id).ok_or(E::UnknownMemberId)?
        };
        let mut g = lock(&handle);
        if g.is(GroupState::Dead) {
            return Err(E::CoordinatorNotAvailable);
        }
        // A classic group in use is converted (online migration) when a
        // member joins and the policy allows it.
        if !g.is(GroupState::Empty) || !g.members.is_empty() {
            if req.member_epoch != 0 {
                return Err(E::GroupIdNotFound);
            }
            self.upgrade_classic_group(&mut g, &catalog)?;
        }
        let mut group = g.consumer.as_deref().cloned().unwrap_or_default();
        let timeouts = Timeouts {
            session: self.consumer_session_timeout(&req.group_id),
            now: Instant::now(),
        };
        let answer = group.heartbeat(&req.group_id, &req, &catalog, timeouts);
        let (response, records) = match answer {
            Ok(a) => a,
            Err(e) => {
                self.forget_if_unused(&mut g, &handle);
                return Err(e);
            }
        };
        self.append_consumer_records(&req.group_id, records)?;
        g.consumer = Some(Box::new(group));
        if req.member_epoch == super::LEAVE_GROUP_MEMBER_EPOCH {
            self.maybe_downgrade(&mut g);
        }
        Ok(response)
    }

    pub(super) fn append_consumer_records(
        &self,
        group_id: &str,
        records: Records,
    ) -> Result<(), E> {
        if records.is_empty() {
            return Ok(());
        }
        self.append(group_id, &records)
    }

    /// ConsumerGroupDescribe of one group: GROUP_ID_NOT_FOUND for an
    /// unknown group or a classic one, as Kafka.
    pub fn consumer_group_describe(&self, group_id: &str) -> Result<DescribedConsumerGroup, E> {
        self.coordinator_error(group_id)?;
        let handle = self.group(group_id).ok_or(E::GroupIdNotFound)?;
        let g = lock(&handle);
        let group = g
            .consumer
            .as_deref()
            .filter(|_| !g.is(GroupState::Dead))
            .ok_or(E::GroupIdNotFound)?;
        let names: BTreeMap<Uuid, String> = self
            .topic_catalog()
            .into_iter()
            .map(|(name, (id, _))| (id, name))
            .collect();
        Ok(DescribedConsumerGroup {
            group_id: group_id.to_owned(),
            state: group.state_name(),
            group_epoch: group.group_epoch,
            assignment_epoch: group.assignment_epoch,
            assignor: if group.assignor.is_empty() {
                super::DEFAULT_ASSIGNOR.to_owned()
            } else {
                group.assignor.clone()
            },
            members: group
                .members
                .values()
                .map(|m| DescribedConsumerMember {
                    member_id: m.member_id.clone(),
                    metadata: m.metadata.clone(),
                    member_epoch: m.assignment.member_epoch,
                    classic: m.metadata.classic.is_some(),
                    assignment: named(&m.assignment.assigned, &names),
                    target_assignment: named(
                        &group.target.get(&m.member_id).cloned().unwrap_or_default(),
                        &names,
                    ),
                })
                .collect(),
        })
    }

    /// Fence every consumer member whose deadline passed; returns the
    /// earliest deadline still ahead.
    fn expire_consumer_members(self: &Arc<Self>, now: Instant) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        for handle in self.all_groups() {
            let mut g = lock(&handle);
            let group_id = g.group_id.clone();
            let Some(group) = g.consumer.as_deref() else {
                continue;
            };
            let expired = group.expired(now);
            if !expired.is_empty() {
                let mut changed = group.clone();
                let mut records = Records::new();
                for id in &expired {
                    changed.remove_member(&group_id, id, &mut records);
                }
                match self.append_consumer_records(&group_id, records) {
                    Ok(()) => {
                        tracing::info!(
                            group = group_id.as_str(),
                            members = ?expired,
                            "consumer group members fenced at their deadline"
                        );
                        g.consumer = Some(Box::new(changed));
                        self.maybe_downgrade(&mut g);
                    }
                    // Not the coordinator any more, or the log refused: the
                    // next owner fences them after a full session.
                    Err(_) => continue,
                }
            }
            let next = g
                .consumer
                .as_deref()
                .and_then(|c| c.members.values().map(|m| m.deadline()).min());
            earliest = min_instant(earliest, next);
        }
        earliest
    }

    /// Fence consumer members at their own deadlines until shutdown.
    pub(crate) async fn run_consumer_sessions(self: Arc<Self>) {
        self.run_at_deadlines(Self::expire_consumer_members).await
    }

    /// Deleting a group removes its consumer-group records too.
    pub(crate) fn consumer_tombstones(g: &crate::group::state::Group) -> Records {
        g.consumer
            .as_deref()
            .map(|c| c.tombstones(&g.group_id))
            .unwrap_or_default()
    }

    /// Whether the group has consumer-protocol members (it is not empty).
    pub(crate) fn has_consumer_members(g: &crate::group::state::Group) -> bool {
        g.consumer.as_deref().is_some_and(|c| !c.members.is_empty())
    }

    /// Kafka's checks of an OffsetCommit for a consumer group with members:
    /// a known member at its current epoch.
    pub(crate) fn consumer_commit_gate(
        g: &crate::group::state::Group,
        member_id: &str,
        member_epoch: i32,
    ) -> Option<Result<(), E>> {
        let group = g.consumer.as_deref()?;
        if group.members.is_empty() {
            return None;
        }
        Some(check_member_epoch(group, member_id, member_epoch))
    }

    /// Kafka's check of an OffsetFetch (v9+) for a consumer group: a
    /// request that names a member (not an admin's: no member id, epoch -1)
    /// needs a known member at its current epoch.
    pub fn offset_fetch_gate(
        &self,
        group_id: &str,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), E> {
        if member_id.is_none() && member_epoch < 0 {
            return Ok(());
        }
        let Some(handle) = self.group(group_id) else {
            return Ok(());
        };
        let g = lock(&handle);
        match g.consumer.as_deref() {
            Some(group) if g.members.is_empty() && !g.is(GroupState::Dead) => {
                check_member_epoch(group, member_id.unwrap_or_default(), member_epoch)
            }
            _ => Ok(()),
        }
    }

    /// How a group is listed: its type, state and protocol type.
    pub(crate) fn group_type_and_state(
        g: &crate::group::state::Group,
    ) -> (&'static str, &'static str, String) {
        match g.consumer.as_deref() {
            Some(c) if g.members.is_empty() => ("consumer", c.state_name(), "consumer".to_owned()),
            _ => (
                "classic",
                g.state.name(),
                g.protocol_type.clone().unwrap_or_default(),
            ),
        }
    }

    /// DescribeGroups' view of a consumer group (the wire answers Kafka's
    /// GROUP_ID_NOT_FOUND for it; the web and CLI views show it).
    pub(crate) fn describe_consumer_group(
        g: &crate::group::state::Group,
    ) -> Option<crate::group::offsets::GroupDescription> {
        let c = g.consumer.as_deref().filter(|_| g.members.is_empty())?;
        Some(crate::group::offsets::GroupDescription {
            group_id: g.group_id.clone(),
            state: c.state_name(),
            protocol_type: "consumer".to_owned(),
            protocol: c.assignor.clone(),
            members: c
                .members
                .values()
                .map(|m| crate::group::offsets::MemberDescription {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.metadata.instance_id.clone(),
                    client_id: m.metadata.client_id.clone(),
                    client_host: m.metadata.client_host.clone(),
                    metadata: bytes::Bytes::new(),
                    assignment: bytes::Bytes::new(),
                })
                .collect(),
            group_type: "consumer",
        })
    }
}

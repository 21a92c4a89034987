//! Online migration between the classic protocol and the consumer protocol
//! (KIP-848's upgrade and downgrade path, Kafka's
//! `group.consumer.migration.policy`).
//!
//! - **Upgrade**: a consumer-protocol member joining a stable classic group
//!   with members converts it to a consumer group; each classic member keeps
//!   its generation (as its member epoch), subscription and partitions.
//! - **Mixed group**: the coordinator answers the classic members' JoinGroup,
//!   SyncGroup, Heartbeat and LeaveGroup from the consumer group. A JoinGroup
//!   is a heartbeat that reconciles the member (what it says it owns in its
//!   subscription, nothing for an eager member, is what it still holds); the
//!   generation it is given is its member epoch; SyncGroup hands it the
//!   partitions the server-side assignor gave it. A Heartbeat answers
//!   REBALANCE_IN_PROGRESS when the member must rejoin: to revoke, to receive
//!   partitions now free, or to reach the group's epoch; a member that does
//!   not revoke within its rebalance timeout is fenced.
//! - **Downgrade**: when the last consumer-protocol member leaves or is
//!   fenced and classic members remain, the group becomes a classic group
//!   again with their assignments and starts a rebalance.
//!
//! Locks: the group's lock, held by the caller; nothing awaits.

use std::str::FromStr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::time::Instant;
use uuid::Uuid;

use super::assignor::Assignment;
use super::reconcile::{self as rec, MemberAssignment, MemberState};
use super::records::{self, ClassicMemberMetadata, ConsumerKey, MemberMetadata};
use super::{member_key_value, ConsumerGroup, ConsumerMember, HeartbeatRequest, Records};
use super::{Timeouts, TopicCatalog};
use crate::group::membership::{JoinRequest, SyncRequest};
use crate::group::records::RecordKey;
use crate::group::state::{
    decode_assignment, ms, Group, GroupState, JoinOutcome, Member, SyncOutcome,
    CONSUMER_PROTOCOL_TYPE,
};
use crate::group::{now_ms, CoordinatorError as E, GroupCoordinator, Outcome};

/// Kafka's `group.consumer.migration.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MigrationPolicy {
    /// Classic and consumer members never share a group.
    Disabled,
    /// Classic groups with members may become consumer groups.
    Upgrade,
    /// Consumer groups whose last consumer-protocol member left become
    /// classic groups again.
    Downgrade,
    /// Both (Kafka 4's default).
    #[default]
    Bidirectional,
}

impl MigrationPolicy {
    pub fn upgrade(self) -> bool {
        matches!(
            self,
            MigrationPolicy::Upgrade | MigrationPolicy::Bidirectional
        )
    }

    pub fn downgrade(self) -> bool {
        matches!(
            self,
            MigrationPolicy::Downgrade | MigrationPolicy::Bidirectional
        )
    }

    /// Whether classic and consumer members may share a group at all.
    pub fn mixed(self) -> bool {
        self != MigrationPolicy::Disabled
    }
}

impl FromStr for MigrationPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "disabled" => Ok(MigrationPolicy::Disabled),
            "upgrade" => Ok(MigrationPolicy::Upgrade),
            "downgrade" => Ok(MigrationPolicy::Downgrade),
            "bidirectional" => Ok(MigrationPolicy::Bidirectional),
            other => Err(format!("unknown migration policy {other:?}")),
        }
    }
}

/// A classic member's `ConsumerProtocolSubscription` (topics and, from v1,
/// the partitions it owns).
fn decode_subscription(metadata: &[u8]) -> Option<ConsumerProtocolSubscription> {
    if metadata.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([metadata[0], metadata[1]]);
    if version < 0 {
        return None;
    }
    let mut body = Bytes::copy_from_slice(&metadata[2..]);
    ConsumerProtocolSubscription::decode(&mut body, version.min(3)).ok()
}

/// Partitions named by topic, as topic ids (unknown topics and partitions
/// are left out).
fn by_id(
    parts: impl IntoIterator<Item = (String, Vec<i32>)>,
    catalog: &TopicCatalog,
) -> Assignment {
    let mut out = Assignment::new();
    for (topic, partitions) in parts {
        if let Some((id, count)) = catalog.get(&topic) {
            let valid = partitions.into_iter().filter(|p| (0..*count).contains(p));
            out.entry(*id).or_default().extend(valid);
        }
    }
    out.retain(|_, ps| !ps.is_empty());
    out
}

/// A `ConsumerProtocolAssignment` (version 0) of `a`, topics by name.
fn encode_assignment(a: &Assignment, catalog: &TopicCatalog) -> Bytes {
    let names: std::collections::HashMap<Uuid, &String> =
        catalog.iter().map(|(name, (id, _))| (*id, name)).collect();
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
        a.iter()
            .filter_map(|(id, ps)| {
                let name = names.get(id)?;
                Some(
                    TopicPartition::default()
                        .with_topic(TopicName(StrBytes::from_string((*name).clone())))
                        .with_partitions(ps.iter().copied().collect()),
                )
            })
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    if assignment.encode(&mut buf, 0).is_err() {
        return Bytes::new();
    }
    buf.freeze()
}

impl ConsumerGroup {
    /// Every record that describes the group as it is (after a conversion).
    fn snapshot_records(&self, group_id: &str) -> Records {
        let mut out = Records::new();
        out.push((
            ConsumerKey::Metadata {
                group: group_id.to_owned(),
            }
            .encode(),
            Some(records::encode_epoch(self.group_epoch)),
        ));
        for (id, m) in &self.members {
            out.push(member_key_value(group_id, id, &m.metadata));
            let member = |k: fn(String, String) -> ConsumerKey| k(group_id.to_owned(), id.clone());
            let target = self.target.get(id).cloned().unwrap_or_default();
            out.push((
                member(|group, member| ConsumerKey::TargetMember { group, member }).encode(),
                Some(records::encode_target(&target)),
            ));
            out.push((
                member(|group, member| ConsumerKey::CurrentAssignment { group, member }).encode(),
                Some(records::encode_current(&m.assignment)),
            ));
        }
        out.push((
            ConsumerKey::TargetMetadata {
                group: group_id.to_owned(),
            }
            .encode(),
            Some(records::encode_epoch(self.assignment_epoch)),
        ));
        out
    }

    /// Whether a classic member must rejoin (to revoke, to receive what is
    /// free now, or to reach the target epoch), and whether it must revoke.
    fn classic_rejoin(&self, member_id: &str) -> (bool, bool) {
        let Some(m) = self.members.get(member_id) else {
            return (false, false);
        };
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let members = &self.members;
        // A rejoining classic member holds nothing it was told to give up.
        let next = m.assignment.reconcile(
            self.assignment_epoch,
            &target,
            Some(&Assignment::new()),
            |t, p| {
                members
                    .iter()
                    .any(|(id, o)| id != member_id && o.holds(t, p))
            },
        );
        let rejoin = next.member_epoch != m.assignment.member_epoch
            || next.assigned != m.assignment.assigned;
        (rejoin, !rec::is_subset(&m.assignment.assigned, &target))
    }

    fn classic_member(&self, member_id: &str) -> Result<&ConsumerMember, E> {
        self.members
            .get(member_id)
            .filter(|m| m.metadata.classic.is_some())
            .ok_or(E::UnknownMemberId)
    }
}

impl GroupCoordinator {
    /// A consumer-protocol member joins a classic group with members:
    /// convert it (upgrade) if the policy allows and the group is stable.
    pub(super) fn upgrade_classic_group(
        &self,
        g: &mut Group,
        catalog: &TopicCatalog,
    ) -> Result<(), E> {
        if !self.settings.consumer_migration_policy.upgrade()
            || g.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE)
        {
            return Err(E::GroupIdNotFound);
        }
        if !g.is(GroupState::Stable) {
            // The client retries once the classic rebalance is over.
            return Err(E::CoordinatorNotAvailable);
        }
        let protocol = g.protocol_name.clone().unwrap_or_default();
        let mut group = ConsumerGroup {
            group_epoch: g.generation_id,
            assignment_epoch: g.generation_id,
            ..ConsumerGroup::default()
        };
        for m in g.members.values() {
            let sub = decode_subscription(&m.metadata(&protocol)).ok_or(E::GroupIdNotFound)?;
            let assigned = decode_assignment(&m.assignment).ok_or(E::GroupIdNotFound)?;
            let assigned = by_id(assigned, catalog);
            let mut topics: Vec<String> = sub.topics.iter().map(|t| t.to_string()).collect();
            topics.sort();
            topics.dedup();
            let mut member =
                ConsumerMember::new(&m.member_id, m.last_heartbeat + ms(m.session_timeout_ms));
            member.metadata = MemberMetadata {
                instance_id: m.group_instance_id.clone(),
                rack_id: None,
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                subscribed_topic_names: topics,
                subscribed_topic_regex: None,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                server_assignor: None,
                classic: Some(ClassicMemberMetadata {
                    session_timeout_ms: m.session_timeout_ms,
                    protocols: m.protocols.clone(),
                }),
            };
            member.assignment = MemberAssignment {
                member_epoch: g.generation_id,
                previous_member_epoch: g.generation_id,
                state: MemberState::Stable,
                assigned: assigned.clone(),
                pending_revocation: Assignment::new(),
            };
            group.target.insert(m.member_id.clone(), assigned);
            group.members.insert(m.member_id.clone(), member);
        }
        group.subscribed_partitions = group.subscribed_partitions_now(catalog);
        let mut records: Records = vec![(
            RecordKey::Group {
                group: g.group_id.clone(),
            }
            .encode(),
            None,
        )];
        records.extend(group.snapshot_records(&g.group_id));
        self.append(&g.group_id, &records)?;
        tracing::info!(
            group = %g.group_id,
            generation = g.generation_id,
            members = group.members.len(),
            "classic group upgraded to a consumer group"
        );
        g.members.clear();
        g.static_members.clear();
        g.pending_members.clear();
        g.pending_sync.clear();
        g.sync_deadline = None;
        g.join_phase = None;
        g.leader_id = None;
        g.timer_epoch += 1;
        g.state = GroupState::Empty;
        g.state_timestamp_ms = now_ms();
        g.consumer = Some(Box::new(group));
        Ok(())
    }

    /// JoinGroup of a classic member to a group the consumer protocol runs.
    pub(crate) fn classic_join_consumer_group(
        &self,
        g: &mut Group,
        req: &JoinRequest,
    ) -> JoinOutcome {
        let fail = |e| JoinOutcome::error(e, &req.member_id);
        let Some(group) = g.consumer.as_deref() else {
            return fail(E::UnknownMemberId);
        };
        let Some((protocol, metadata)) = req.protocols.first() else {
            return fail(E::InconsistentGroupProtocol);
        };
        if req.protocol_type != CONSUMER_PROTOCOL_TYPE {
            return fail(E::InconsistentGroupProtocol);
        }
        let Some(sub) = decode_subscription(metadata) else {
            return fail(E::InconsistentGroupProtocol);
        };
        let catalog = self.topic_catalog();
        let (member_id, member_epoch, owned) = if req.member_id.is_empty() {
            let id = format!("{}-{}", req.client_id, Uuid::new_v4());
            (id, 0, Assignment::new())
        } else {
            match group.classic_member(&req.member_id) {
                Ok(m) => {
                    let owned = sub
                        .owned_partitions
                        .iter()
                        .map(|tp| (tp.topic.to_string(), tp.partitions.clone()));
                    (
                        req.member_id.clone(),
                        m.assignment.member_epoch,
                        by_id(owned, &catalog),
                    )
                }
                Err(e) => return fail(e),
            }
        };
        let heartbeat = HeartbeatRequest {
            group_id: g.group_id.clone(),
            member_id,
            member_epoch,
            instance_id: req.group_instance_id.clone(),
            rack_id: None,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            subscribed_topic_names: Some(sub.topics.iter().map(|t| t.to_string()).collect()),
            subscribed_topic_regex: None,
            server_assignor: None,
            owned: Some(owned),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            classic: Some(ClassicMemberMetadata {
                session_timeout_ms: req.session_timeout_ms,
                protocols: req.protocols.clone(),
            }),
        };
        let mut changed = group.clone();
        let timeouts = Timeouts {
            session: ms(req.session_timeout_ms),
            now: Instant::now(),
        };
        let answer = changed
            .heartbeat(&g.group_id, &heartbeat, &catalog, timeouts)
            .and_then(|(answer, records)| {
                self.append_consumer_records(&g.group_id, records)
                    .map(|()| answer)
            });
        match answer {
            Err(e) => fail(e),
            Ok(answer) => {
                g.consumer = Some(Box::new(changed));
                JoinOutcome {
                    error: Ok(()),
                    generation_id: answer.member_epoch,
                    protocol_type: Some(CONSUMER_PROTOCOL_TYPE.to_owned()),
                    protocol_name: Some(protocol.clone()),
                    // Nobody leads: the coordinator assigns, every member
                    // syncs as a follower.
                    leader_id: String::new(),
                    skip_assignment: false,
                    member_id: answer.member_id,
                    members: Vec::new(),
                }
            }
        }
    }

    /// SyncGroup of a classic member: the partitions it may consume now.
    pub(crate) fn classic_sync_consumer_group(
        &self,
        g: &mut Group,
        req: &SyncRequest,
    ) -> SyncOutcome {
        let catalog = self.topic_catalog();
        let Some(group) = g.consumer.as_deref_mut() else {
            return SyncOutcome::error(E::UnknownMemberId);
        };
        let member = match group.classic_member(&req.member_id) {
            Ok(m) => m,
            Err(e) => return SyncOutcome::error(e),
        };
        if req.generation_id != member.assignment.member_epoch {
            return SyncOutcome::error(E::IllegalGeneration);
        }
        let protocols = member
            .metadata
            .classic
            .as_ref()
            .map(|c| c.protocols.clone())
            .unwrap_or_default();
        let known = |name: &String| protocols.iter().any(|(n, _)| n == name);
        if req
            .protocol_type
            .as_deref()
            .is_some_and(|t| t != CONSUMER_PROTOCOL_TYPE)
            || req.protocol_name.as_ref().is_some_and(|n| !known(n))
        {
            return SyncOutcome::error(E::InconsistentGroupProtocol);
        }
        let assignment = encode_assignment(&member.assignment.assigned, &catalog);
        let session = ms(member
            .metadata
            .classic
            .as_ref()
            .map_or(0, |c| c.session_timeout_ms));
        if let Some(m) = group.members.get_mut(&req.member_id) {
            m.session_deadline = Instant::now() + session;
        }
        SyncOutcome {
            error: Ok(()),
            protocol_type: Some(CONSUMER_PROTOCOL_TYPE.to_owned()),
            protocol_name: req
                .protocol_name
                .clone()
                .or_else(|| protocols.first().map(|(n, _)| n.clone())),
            assignment,
        }
    }

    /// Heartbeat of a classic member: REBALANCE_IN_PROGRESS when it must
    /// rejoin to follow the group's assignment.
    pub(crate) fn classic_heartbeat_consumer_group(
        &self,
        g: &mut Group,
        member_id: &str,
        generation_id: i32,
    ) -> Outcome {
        let group_id = g.group_id.clone();
        let Some(group) = g.consumer.as_deref() else {
            return Err(E::UnknownMemberId);
        };
        let member = group.classic_member(member_id)?;
        if generation_id != member.assignment.member_epoch {
            return Err(E::IllegalGeneration);
        }
        let catalog = self.topic_catalog();
        let mut changed = group.clone();
        let mut records = Records::new();
        changed.ensure_target(&group_id, &catalog, &mut records);
        self.append_consumer_records(&group_id, records)?;
        let (rejoin, must_revoke) = changed.classic_rejoin(member_id);
        let now = Instant::now();
        if let Some(m) = changed.members.get_mut(member_id) {
            let session = m
                .metadata
                .classic
                .as_ref()
                .map_or(0, |c| c.session_timeout_ms);
            m.session_deadline = now + ms(session);
            if must_revoke && m.revocation_deadline.is_none() {
                m.revocation_deadline = Some(now + ms(m.metadata.rebalance_timeout_ms));
            }
        }
        g.consumer = Some(Box::new(changed));
        if rejoin {
            Err(E::RebalanceInProgress)
        } else {
            Ok(())
        }
    }

    /// LeaveGroup of classic members of a consumer group.
    pub(crate) fn classic_leave_consumer_group(
        self: &Arc<Self>,
        g: &mut Group,
        leaving: &[(String, Option<String>)],
    ) -> Vec<Outcome> {
        let mut errors = Vec::with_capacity(leaving.len());
        for (member_id, instance) in leaving {
            let Some(group) = g.consumer.as_deref() else {
                errors.push(Err(E::UnknownMemberId));
                continue;
            };
            let id = if member_id.is_empty() {
                group
                    .members
                    .values()
                    .find(|m| instance.is_some() && m.metadata.instance_id == *instance)
                    .map(|m| m.member_id.clone())
            } else {
                group.members.get(member_id).map(|m| m.member_id.clone())
            };
            let Some(id) = id else {
                errors.push(Err(E::UnknownMemberId));
                continue;
            };
            let mut changed = group.clone();
            let mut records = Records::new();
            changed.remove_member(&g.group_id, &id, &mut records);
            match self.append_consumer_records(&g.group_id, records) {
                Ok(()) => {
                    tracing::info!(group = %g.group_id, member = %id, "classic member left the consumer group");
                    g.consumer = Some(Box::new(changed));
                    errors.push(Ok(()));
                }
                Err(e) => errors.push(Err(e)),
            }
        }
        self.maybe_downgrade(g);
        errors
    }

    /// Downgrade: a consumer group whose members all use the classic
    /// protocol becomes a classic group again and rebalances.
    pub(crate) fn maybe_downgrade(self: &Arc<Self>, g: &mut Group) {
        let Some(group) = g.consumer.as_deref() else {
            return;
        };
        if !self.settings.consumer_migration_policy.downgrade()
            || group.members.is_empty()
            || group.members.values().any(|m| m.metadata.classic.is_none())
        {
            return;
        }
        let catalog = self.topic_catalog();
        let now = Instant::now();
        let mut classic = Group::new(&g.group_id, now_ms());
        classic.generation_id = group
            .members
            .values()
            .map(|m| m.assignment.member_epoch)
            .max()
            .unwrap_or(group.group_epoch);
        classic.protocol_type = Some(CONSUMER_PROTOCOL_TYPE.to_owned());
        let mut members = IndexMap::new();
        for m in group.members.values() {
            let meta = m.metadata.classic.clone().unwrap_or_default();
            if let Some(instance) = &m.metadata.instance_id {
                classic
                    .static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.metadata.instance_id.clone(),
                    client_id: m.metadata.client_id.clone(),
                    client_host: m.metadata.client_host.clone(),
                    rebalance_timeout_ms: m.metadata.rebalance_timeout_ms,
                    session_timeout_ms: meta.session_timeout_ms,
                    protocol_type: CONSUMER_PROTOCOL_TYPE.to_owned(),
                    protocols: meta.protocols,
                    assignment: encode_assignment(&m.assignment.assigned, &catalog),
                    awaiting_join: None,
                    awaiting_sync: None,
                    last_heartbeat: now,
                    is_new: false,
                },
            );
        }
        classic.members = members;
        classic.leader_id = classic.members.keys().next().cloned();
        classic.protocol_name = classic.select_protocol();
        classic.state = GroupState::Stable;
        let mut records = group.tombstones(&g.group_id);
        records.push((
            RecordKey::Group {
                group: g.group_id.clone(),
            }
            .encode(),
            Some(classic.to_record().encode()),
        ));
        if let Err(error) = self.append(&g.group_id, &records) {
            tracing::warn!(group = %g.group_id, %error, "cannot downgrade the consumer group");
            return;
        }
        tracing::info!(
            group = %g.group_id,
            generation = classic.generation_id,
            members = classic.members.len(),
            "consumer group downgraded to a classic group"
        );
        classic.offsets = std::mem::take(&mut g.offsets);
        classic.timer_epoch = g.timer_epoch + 1;
        *g = classic;
        self.maybe_prepare_rebalance(g);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_allow_as_kafka() {
        assert_eq!(MigrationPolicy::default(), MigrationPolicy::Bidirectional);
        let p: MigrationPolicy = "UPGRADE".parse().expect("parses");
        assert!(p.upgrade() && !p.downgrade() && p.mixed());
        let d: MigrationPolicy = "disabled".parse().expect("parses");
        assert!(!d.upgrade() && !d.downgrade() && !d.mixed());
        assert!("sideways".parse::<MigrationPolicy>().is_err());
    }

    #[test]
    fn assignments_round_trip_by_topic_name() {
        let id = Uuid::from_bytes([3; 16]);
        let catalog = TopicCatalog::from([("orders".to_owned(), (id, 4))]);
        let a = by_id([("orders".to_owned(), vec![0, 3, 9])], &catalog);
        assert_eq!(a, Assignment::from([(id, [0, 3].into_iter().collect())]));
        let bytes = encode_assignment(&a, &catalog);
        assert_eq!(
            decode_assignment(&bytes),
            Some(vec![("orders".to_owned(), vec![0, 3])])
        );
    }
}

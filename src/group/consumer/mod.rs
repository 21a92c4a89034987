//! Consumer groups of the new protocol (KIP-848): the group epoch, each
//! member's epoch and subscription, a target assignment computed on the
//! coordinator by a server-side assignor, and members reconciling towards it
//! one heartbeat at a time (revoke first, then receive), so no member stops
//! consuming what it keeps while others join or leave.
//!
//! Owns: a group's membership, epochs, target and current assignments, and
//! the records that persist them (`records.rs`). A heartbeat is computed on a
//! copy of the group; the coordinator (`coordinator.rs`) writes the records it
//! returns to `__consumer_offsets` and only then keeps the copy.
//! Must never: do I/O, take locks, or know of the classic protocol's state.

pub mod assignor;
mod coordinator;
mod migration;
pub mod reconcile;
pub mod records;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use uuid::Uuid;

use super::CoordinatorError as E;
use assignor::{Assignment, MemberSpec, ASSIGNORS, DEFAULT_ASSIGNOR};
pub use coordinator::HeartbeatRequest;
pub use migration::MigrationPolicy;
use reconcile::{MemberAssignment, MemberState};
use records::{ConsumerKey, MemberMetadata};

/// A member that leaves the group (`member_epoch` -1 in a heartbeat).
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// A static member that leaves for now and keeps its partitions until its
/// session ends (`member_epoch` -2).
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;

/// Name of each topic the coordinator knows: id and partition count.
pub type TopicCatalog = BTreeMap<String, (Uuid, i32)>;

/// Records to append: key, value (`None`: tombstone).
pub type Records = Vec<(Bytes, Option<Bytes>)>;

/// One member of a consumer group.
#[derive(Debug, Clone)]
pub struct ConsumerMember {
    pub member_id: String,
    pub metadata: MemberMetadata,
    pub assignment: MemberAssignment,
    /// When the member is fenced unless it heartbeats (not persisted: a
    /// loaded member gets a full session).
    pub session_deadline: Instant,
    /// When a member that must revoke partitions is fenced unless it did
    /// (its rebalance timeout, counted from the revocation request).
    pub revocation_deadline: Option<Instant>,
}

impl ConsumerMember {
    fn new(member_id: &str, now: Instant) -> Self {
        ConsumerMember {
            member_id: member_id.to_owned(),
            metadata: MemberMetadata::default(),
            assignment: MemberAssignment::default(),
            session_deadline: now,
            revocation_deadline: None,
        }
    }

    fn holds(&self, topic: Uuid, partition: i32) -> bool {
        let has = |a: &Assignment| a.get(&topic).is_some_and(|ps| ps.contains(&partition));
        has(&self.assignment.assigned) || has(&self.assignment.pending_revocation)
    }

    /// The earliest of its deadlines.
    pub fn deadline(&self) -> Instant {
        match self.revocation_deadline {
            Some(r) => r.min(self.session_deadline),
            None => self.session_deadline,
        }
    }
}

/// A consumer group of the new protocol.
#[derive(Debug, Clone, Default)]
pub struct ConsumerGroup {
    /// Bumped when membership, a subscription or a subscribed topic changes.
    pub group_epoch: i32,
    /// The group epoch the target assignment was computed for.
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, ConsumerMember>,
    /// Each member's target assignment.
    pub target: BTreeMap<String, Assignment>,
    /// Partition counts of the subscribed topics when the epoch was last
    /// bumped (a change bumps it again).
    pub subscribed_partitions: BTreeMap<Uuid, i32>,
    /// The assignor that computed the target.
    pub assignor: String,
}

/// What a heartbeat answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatResponse {
    pub member_id: String,
    pub member_epoch: i32,
    /// Sent when the member joins, when its assignment changed, or when
    /// what it says it owns differs from it.
    pub assignment: Option<Assignment>,
}

/// The timeouts a heartbeat applies.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub session: Duration,
    pub now: Instant,
}

/// Whether `name` is a valid subscription pattern (RE2-like syntax of the
/// `regex` crate, as Kafka uses RE2/J).
pub fn valid_regex(pattern: &str) -> bool {
    regex::Regex::new(pattern).is_ok()
}

impl ConsumerGroup {
    /// Kafka's consumer group states.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self.members.values().any(|m| {
            m.assignment.member_epoch != self.assignment_epoch
                || m.assignment.state != MemberState::Stable
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// The topic ids `metadata` subscribes to, by name or pattern.
    fn subscribed_ids(metadata: &MemberMetadata, catalog: &TopicCatalog) -> BTreeSet<Uuid> {
        let mut ids: BTreeSet<Uuid> = metadata
            .subscribed_topic_names
            .iter()
            .filter_map(|name| catalog.get(name).map(|(id, _)| *id))
            .collect();
        if let Some(pattern) = &metadata.subscribed_topic_regex {
            if let Ok(re) = regex::Regex::new(pattern) {
                ids.extend(
                    catalog
                        .iter()
                        .filter(|(name, _)| re.is_match(name))
                        .map(|(_, (id, _))| *id),
                );
            }
        }
        ids
    }

    fn subscribed_partitions_now(&self, catalog: &TopicCatalog) -> BTreeMap<Uuid, i32> {
        let ids: BTreeSet<Uuid> = self
            .members
            .values()
            .flat_map(|m| Self::subscribed_ids(&m.metadata, catalog))
            .collect();
        catalog
            .values()
            .filter(|(id, _)| ids.contains(id))
            .map(|(id, count)| (*id, *count))
            .collect()
    }

    /// The assignor most members ask for (ties by name), else the default.
    fn preferred_assignor(&self) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = m.metadata.server_assignor.as_deref() {
                *votes.entry(a).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
            .map_or(DEFAULT_ASSIGNOR.to_owned(), |(name, _)| name.to_owned())
    }

    /// One ConsumerGroupHeartbeat; returns the answer and the records to
    /// write before the changed group is kept.
    pub fn heartbeat(
        &mut self,
        group_id: &str,
        req: &HeartbeatRequest,
        catalog: &TopicCatalog,
        timeouts: Timeouts,
    ) -> Result<(HeartbeatResponse, Records), E> {
        validate(req)?;
        let mut records = Records::new();
        if req.member_epoch == LEAVE_GROUP_MEMBER_EPOCH
            || req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH
        {
            return self
                .leave(group_id, req, &mut records)
                .map(|r| (r, records));
        }
        let member_id = if req.member_id.is_empty() {
            Uuid::new_v4().to_string()
        } else {
            req.member_id.clone()
        };
        let mut member = self.member_for(group_id, &member_id, req, timeouts.now, &mut records)?;
        let is_new = !self.members.contains_key(&member_id);

        // The member's subscription and client.
        let mut metadata = member.metadata.clone();
        if let Some(names) = &req.subscribed_topic_names {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            metadata.subscribed_topic_names = names;
        }
        if let Some(re) = &req.subscribed_topic_regex {
            metadata.subscribed_topic_regex = (!re.is_empty()).then(|| re.clone());
        }
        if req.rebalance_timeout_ms >= 0 {
            metadata.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        if req.server_assignor.is_some() {
            metadata.server_assignor = req.server_assignor.clone();
        }
        if req.rack_id.is_some() {
            metadata.rack_id = req.rack_id.clone();
        }
        metadata.instance_id = req.instance_id.clone().or(metadata.instance_id);
        metadata.client_id = req.client_id.clone();
        metadata.client_host = req.client_host.clone();
        metadata.classic = req.classic.clone();
        let mut bump = is_new
            || metadata.subscribed_topic_names != member.metadata.subscribed_topic_names
            || metadata.subscribed_topic_regex != member.metadata.subscribed_topic_regex
            || metadata.server_assignor != member.metadata.server_assignor;
        if is_new || metadata != member.metadata {
            records.push(member_key_value(group_id, &member_id, &metadata));
            member.metadata = metadata;
        }
        member.session_deadline = timeouts.now + timeouts.session;
        self.members.insert(member_id.clone(), member);

        // Topic changes (created, deleted, more partitions) bump the epoch too.
        let subscribed = self.subscribed_partitions_now(catalog);
        if subscribed != self.subscribed_partitions {
            self.subscribed_partitions = subscribed;
            bump = true;
        }
        if bump {
            self.bump_group_epoch(group_id, &mut records);
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target(group_id, catalog, &mut records);
        }

        // Reconcile the member towards its target.
        let target = self.target.get(&member_id).cloned().unwrap_or_default();
        let Some(current) = self.members.get(&member_id).map(|m| m.assignment.clone()) else {
            return Err(E::UnknownMemberId);
        };
        let members = &self.members;
        let next = current.reconcile(
            self.assignment_epoch,
            &target,
            req.owned.as_ref(),
            |t, p| {
                members
                    .iter()
                    .any(|(id, m)| *id != member_id && m.holds(t, p))
            },
        );
        let changed = next != current;
        if let Some(m) = self.members.get_mut(&member_id) {
            if changed {
                records.push((
                    ConsumerKey::CurrentAssignment {
                        group: group_id.to_owned(),
                        member: member_id.clone(),
                    }
                    .encode(),
                    Some(records::encode_current(&next)),
                ));
                m.revocation_deadline =
                    (next.state == MemberState::UnrevokedPartitions).then(|| {
                        timeouts.now
                            + Duration::from_millis(m.metadata.rebalance_timeout_ms.max(0) as u64)
                    });
                m.assignment = next;
            }
            if m.assignment.state != MemberState::UnrevokedPartitions {
                m.revocation_deadline = None;
            }
        }
        let member = self.members.get(&member_id).ok_or(E::UnknownMemberId)?;
        let send_assignment = req.member_epoch == 0
            || changed
            || req
                .owned
                .as_ref()
                .is_some_and(|o| !same_partitions(o, &member.assignment.assigned));
        Ok((
            HeartbeatResponse {
                member_id: member_id.clone(),
                member_epoch: member.assignment.member_epoch,
                assignment: send_assignment.then(|| member.assignment.assigned.clone()),
            },
            records,
        ))
    }

    /// The member a heartbeat is for, checked as Kafka does: a join (epoch 0)
    /// creates it or takes over a static member that left for now; other
    /// epochs need a known member whose epoch matches.
    fn member_for(
        &mut self,
        group_id: &str,
        member_id: &str,
        req: &HeartbeatRequest,
        now: Instant,
        records: &mut Records,
    ) -> Result<ConsumerMember, E> {
        if req.member_epoch == 0 {
            if let Some(instance) = &req.instance_id {
                let holder = self
                    .members
                    .values()
                    .find(|m| m.metadata.instance_id.as_deref() == Some(instance.as_str()))
                    .map(|m| (m.member_id.clone(), m.assignment.member_epoch));
                if let Some((old_id, old_epoch)) = holder.filter(|(id, _)| id != member_id) {
                    if old_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH {
                        return Err(E::UnreleasedInstanceId);
                    }
                    // The new incarnation takes over the old one's
                    // assignment: nothing moves.
                    let old = self.members.remove(&old_id).ok_or(E::UnknownMemberId)?;
                    let target = self.target.remove(&old_id).unwrap_or_default();
                    remove_records(group_id, &old_id, records);
                    let mut member = ConsumerMember::new(member_id, now);
                    member.metadata = old.metadata;
                    member.assignment = old.assignment;
                    records.push(member_key_value(group_id, member_id, &member.metadata));
                    records.push((
                        ConsumerKey::TargetMember {
                            group: group_id.to_owned(),
                            member: member_id.to_owned(),
                        }
                        .encode(),
                        Some(records::encode_target(&target)),
                    ));
                    records.push((
                        ConsumerKey::CurrentAssignment {
                            group: group_id.to_owned(),
                            member: member_id.to_owned(),
                        }
                        .encode(),
                        Some(records::encode_current(&member.assignment)),
                    ));
                    self.target.insert(member_id.to_owned(), target);
                    self.members.insert(member_id.to_owned(), member.clone());
                    return Ok(member);
                }
            }
            return Ok(self
                .members
                .get(member_id)
                .cloned()
                .unwrap_or_else(|| ConsumerMember::new(member_id, now)));
        }
        let member = self.members.get(member_id).ok_or(E::UnknownMemberId)?;
        if let Some(instance) = &req.instance_id {
            if member.metadata.instance_id.as_deref() != Some(instance.as_str()) {
                return Err(E::FencedInstanceId);
            }
        }
        let current = &member.assignment;
        if req.member_epoch > current.member_epoch {
            return Err(E::FencedMemberEpoch);
        }
        if req.member_epoch < current.member_epoch {
            // The answer that bumped its epoch may have been lost: the
            // previous epoch is fine while it owns nothing it should not.
            let ok = req.member_epoch == current.previous_member_epoch
                && req
                    .owned
                    .as_ref()
                    .is_some_and(|o| reconcile::is_subset(o, &current.assigned));
            if !ok {
                return Err(E::FencedMemberEpoch);
            }
        }
        Ok(member.clone())
    }

    /// A heartbeat with epoch -1 (leave) or -2 (a static member leaves for now).
    fn leave(
        &mut self,
        group_id: &str,
        req: &HeartbeatRequest,
        records: &mut Records,
    ) -> Result<HeartbeatResponse, E> {
        let member_id = match (req.member_epoch, &req.instance_id) {
            (LEAVE_GROUP_STATIC_MEMBER_EPOCH, Some(instance)) => self
                .members
                .values()
                .find(|m| m.metadata.instance_id.as_deref() == Some(instance.as_str()))
                .map(|m| m.member_id.clone())
                .ok_or(E::UnknownMemberId)?,
            _ => req.member_id.clone(),
        };
        if !self.members.contains_key(&member_id) {
            return Err(E::UnknownMemberId);
        }
        if req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            // Kept with its partitions until its session ends or it returns.
            if let Some(m) = self.members.get_mut(&member_id) {
                m.assignment.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
                records.push((
                    ConsumerKey::CurrentAssignment {
                        group: group_id.to_owned(),
                        member: member_id.clone(),
                    }
                    .encode(),
                    Some(records::encode_current(&m.assignment)),
                ));
            }
        } else {
            self.remove_member(group_id, &member_id, records);
        }
        Ok(HeartbeatResponse {
            member_id,
            member_epoch: req.member_epoch,
            assignment: None,
        })
    }

    /// Remove a member (it left, or its session or revocation ran out):
    /// its partitions become free and the group epoch is bumped.
    pub fn remove_member(&mut self, group_id: &str, member_id: &str, records: &mut Records) {
        if self.members.remove(member_id).is_none() {
            return;
        }
        self.target.remove(member_id);
        remove_records(group_id, member_id, records);
        self.bump_group_epoch(group_id, records);
    }

    fn bump_group_epoch(&mut self, group_id: &str, records: &mut Records) {
        self.group_epoch += 1;
        records.push((
            ConsumerKey::Metadata {
                group: group_id.to_owned(),
            }
            .encode(),
            Some(records::encode_epoch(self.group_epoch)),
        ));
    }

    /// Compute the target assignment if the group epoch moved past it.
    pub fn ensure_target(&mut self, group_id: &str, catalog: &TopicCatalog, records: &mut Records) {
        if self.group_epoch > self.assignment_epoch {
            self.compute_target(group_id, catalog, records);
        }
    }

    /// Compute the target assignment for the group epoch.
    fn compute_target(&mut self, group_id: &str, catalog: &TopicCatalog, records: &mut Records) {
        let partitions = self.subscribed_partitions_now(catalog);
        let specs: BTreeMap<String, MemberSpec> = self
            .members
            .iter()
            .map(|(id, m)| {
                (
                    id.clone(),
                    MemberSpec {
                        topics: Self::subscribed_ids(&m.metadata, catalog),
                        previous: self.target.get(id).cloned().unwrap_or_default(),
                    },
                )
            })
            .collect();
        let name = self.preferred_assignor();
        let target = assignor::assign(&name, &specs, &partitions);
        for (id, a) in &target {
            if self.target.get(id) != Some(a) {
                records.push((
                    ConsumerKey::TargetMember {
                        group: group_id.to_owned(),
                        member: id.clone(),
                    }
                    .encode(),
                    Some(records::encode_target(a)),
                ));
            }
        }
        self.target = target;
        self.assignor = name;
        self.assignment_epoch = self.group_epoch;
        records.push((
            ConsumerKey::TargetMetadata {
                group: group_id.to_owned(),
            }
            .encode(),
            Some(records::encode_epoch(self.assignment_epoch)),
        ));
    }

    /// Members whose session or revocation deadline passed at `now`.
    pub fn expired(&self, now: Instant) -> Vec<String> {
        self.members
            .values()
            .filter(|m| m.deadline() <= now)
            .map(|m| m.member_id.clone())
            .collect()
    }

    /// Every record that describes the group, for deleting it (tombstones).
    pub fn tombstones(&self, group_id: &str) -> Records {
        let mut records = Records::new();
        for id in self.members.keys() {
            remove_records(group_id, id, &mut records);
        }
        for key in [
            ConsumerKey::TargetMetadata {
                group: group_id.to_owned(),
            },
            ConsumerKey::Metadata {
                group: group_id.to_owned(),
            },
        ] {
            records.push((key.encode(), None));
        }
        records
    }

    /// Apply one record replayed from `__consumer_offsets`. Returns false
    /// when the record deletes the group.
    pub fn apply(
        &mut self,
        key: &ConsumerKey,
        value: Option<&[u8]>,
        session_deadline: Instant,
    ) -> Result<bool, super::records::RecordError> {
        fn member<'a>(
            me: &'a mut ConsumerGroup,
            id: &str,
            deadline: Instant,
        ) -> &'a mut ConsumerMember {
            me.members
                .entry(id.to_owned())
                .or_insert_with(|| ConsumerMember::new(id, deadline))
        }
        match (key, value) {
            (ConsumerKey::Metadata { .. }, None) => return Ok(false),
            (ConsumerKey::Metadata { .. }, Some(v)) => self.group_epoch = records::decode_epoch(v)?,
            (ConsumerKey::TargetMetadata { .. }, v) => {
                self.assignment_epoch = v.map(records::decode_epoch).transpose()?.unwrap_or(0)
            }
            (ConsumerKey::Member { member: id, .. }, None) => {
                self.members.remove(id);
            }
            (ConsumerKey::Member { member: id, .. }, Some(v)) => {
                member(self, id, session_deadline).metadata = MemberMetadata::decode(v)?
            }
            (ConsumerKey::TargetMember { member: id, .. }, None) => {
                self.target.remove(id);
            }
            (ConsumerKey::TargetMember { member: id, .. }, Some(v)) => {
                self.target.insert(id.clone(), records::decode_target(v)?);
            }
            (ConsumerKey::CurrentAssignment { .. }, None) => {}
            (ConsumerKey::CurrentAssignment { member: id, .. }, Some(v)) => {
                member(self, id, session_deadline).assignment = records::decode_current(v)?
            }
        }
        Ok(true)
    }
}

fn validate(req: &HeartbeatRequest) -> Result<(), E> {
    if req.member_epoch == 0 {
        let subscribed =
            req.subscribed_topic_names.is_some() || req.subscribed_topic_regex.is_some();
        let owns_nothing = req.owned.as_ref().is_some_and(Assignment::is_empty);
        if !subscribed || req.rebalance_timeout_ms < 0 || !owns_nothing {
            return Err(E::InvalidRequest);
        }
    } else if req.member_id.is_empty() {
        return Err(E::InvalidRequest);
    }
    if req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH && req.instance_id.is_none() {
        return Err(E::InvalidRequest);
    }
    if req.member_epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH {
        return Err(E::InvalidRequest);
    }
    if let Some(a) = req.server_assignor.as_deref() {
        if !ASSIGNORS.contains(&a) {
            return Err(E::UnsupportedAssignor);
        }
    }
    if let Some(re) = req.subscribed_topic_regex.as_deref() {
        if !re.is_empty() && !valid_regex(re) {
            return Err(E::InvalidRegularExpression);
        }
    }
    Ok(())
}

fn same_partitions(a: &Assignment, b: &Assignment) -> bool {
    reconcile::is_subset(a, b) && reconcile::is_subset(b, a)
}

fn member_key_value(group_id: &str, member_id: &str, m: &MemberMetadata) -> (Bytes, Option<Bytes>) {
    (
        ConsumerKey::Member {
            group: group_id.to_owned(),
            member: member_id.to_owned(),
        }
        .encode(),
        Some(m.encode()),
    )
}

/// Tombstones for a member's three records.
fn remove_records(group_id: &str, member_id: &str, records: &mut Records) {
    let (group, member) = (group_id.to_owned(), member_id.to_owned());
    for key in [
        ConsumerKey::CurrentAssignment {
            group: group.clone(),
            member: member.clone(),
        },
        ConsumerKey::TargetMember {
            group: group.clone(),
            member: member.clone(),
        },
        ConsumerKey::Member { group, member },
    ] {
        records.push((key.encode(), None));
    }
}

#[cfg(test)]
mod tests;

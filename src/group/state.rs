//! One consumer group's state (Kafka's `GroupMetadata`): its state machine,
//! generation, members and their protocols and assignments, static members,
//! members still to rejoin or to sync, and its committed offsets.
//!
//! Everything here is in memory and synchronous; the coordinator holds the
//! group's lock while calling it, and does the waiting, the timers and the
//! writes to `__consumer_offsets` itself.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::Decodable;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::records::{GroupValue, MemberValue, OffsetValue};
use super::{CoordinatorError, Outcome};

/// The protocol type of Kafka consumers (as opposed to Connect workers etc.).
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// The states of a classic group, with Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members; the group may still hold committed offsets.
    Empty,
    /// A rebalance started; members must rejoin.
    PreparingRebalance,
    /// Everyone rejoined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Assignment distributed; members heartbeat.
    Stable,
    /// Deleted or unloaded; a new group of the same name may be created.
    Dead,
}

impl GroupState {
    /// The state name Kafka's tools print and ListGroups filters on.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// Kafka's allowed transitions (`GroupState.validPreviousStates`).
    pub fn can_follow(self, previous: GroupState) -> bool {
        use GroupState::*;
        match self {
            Empty => matches!(previous, PreparingRebalance),
            PreparingRebalance => matches!(previous, Stable | CompletingRebalance | Empty),
            CompletingRebalance => matches!(previous, PreparingRebalance),
            Stable => matches!(previous, CompletingRebalance),
            Dead => matches!(
                previous,
                Stable | PreparingRebalance | CompletingRebalance | Empty | Dead
            ),
        }
    }
}

/// What a JoinGroup request is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOutcome {
    pub error: Outcome,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader_id: String,
    /// KIP-814: the leader keeps its assignment (a static leader rejoined).
    pub skip_assignment: bool,
    pub member_id: String,
    /// Every member with its metadata for the selected protocol (leader only).
    pub members: Vec<JoinedMember>,
}

impl JoinOutcome {
    /// An error answer for `member_id`.
    pub fn error(error: CoordinatorError, member_id: &str) -> Self {
        JoinOutcome {
            error: Err(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader_id: String::new(),
            skip_assignment: false,
            member_id: member_id.to_owned(),
            members: Vec::new(),
        }
    }
}

/// A member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

/// What a SyncGroup request is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    pub error: Outcome,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    pub fn error(error: CoordinatorError) -> Self {
        SyncOutcome {
            error: Err(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// One member of a group (Kafka's `MemberMetadata`).
#[derive(Debug)]
pub struct Member {
    pub member_id: String,
    /// KIP-345: set for static members, whose identity survives restarts.
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    /// The protocols the member supports, most preferred first, with metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// What the leader assigned it in the current generation.
    pub assignment: Bytes,
    /// The pending JoinGroup response while the member waits for a rebalance.
    pub awaiting_join: Option<oneshot::Sender<JoinOutcome>>,
    /// The pending SyncGroup response while the member waits for the leader.
    pub awaiting_sync: Option<oneshot::Sender<SyncOutcome>>,
    /// The last time the member showed it is alive (heartbeat, join, sync, commit).
    pub last_heartbeat: Instant,
    /// True from its first join until its first rebalance completes.
    pub is_new: bool,
}

impl Member {
    /// The member's metadata for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// Same protocols, same metadata, same order (a retried join changes nothing).
    pub fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    /// Whether the member's session is still alive at `now` (Kafka's `shouldKeepAlive`).
    pub fn should_keep_alive(
        &self,
        now: Instant,
        new_member_join_timeout: std::time::Duration,
    ) -> bool {
        if self.awaiting_join.is_some() {
            !self.is_new || self.last_heartbeat + new_member_join_timeout > now
        } else if self.awaiting_sync.is_some() {
            true
        } else {
            self.last_heartbeat + ms(self.session_timeout_ms) > now
        }
    }

    /// When the member's session ends unless it shows it is alive again
    /// (None while it waits for SyncGroup, or a known member for JoinGroup).
    pub fn session_deadline(
        &self,
        new_member_join_timeout: std::time::Duration,
    ) -> Option<Instant> {
        if self.awaiting_join.is_some() {
            self.is_new
                .then(|| self.last_heartbeat + new_member_join_timeout)
        } else if self.awaiting_sync.is_some() {
            None
        } else {
            Some(self.last_heartbeat + ms(self.session_timeout_ms))
        }
    }

    pub fn is_static(&self) -> bool {
        self.group_instance_id.is_some()
    }
}

/// A duration from a (non-negative) millisecond count taken from a request.
pub fn ms(value: i32) -> std::time::Duration {
    std::time::Duration::from_millis(value.max(0) as u64)
}

/// A committed offset in the cache.
pub type CommittedOffset = OffsetValue;

/// The rebalance under way while the group is PreparingRebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinPhase {
    /// The group was empty: wait `group.initial.rebalance.delay.ms`, longer
    /// while new members keep arriving, up to `remaining_ms` more.
    Initial { remaining_ms: u64 },
    /// Wait until every member rejoined, at most the rebalance timeout.
    Normal,
}

/// One group.
#[derive(Debug)]
pub struct Group {
    pub group_id: String,
    pub state: GroupState,
    /// When the group entered its state (ms since the epoch); offsets of an
    /// empty group expire relative to this.
    pub state_timestamp_ms: i64,
    pub generation_id: i32,
    /// Set by the first member ("consumer" for Kafka consumers); `None` for
    /// groups that only store offsets.
    pub protocol_type: Option<String>,
    /// The protocol selected for the current generation.
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    /// Members in join order (the first one becomes leader).
    pub members: IndexMap<String, Member>,
    /// group.instance.id -> member id.
    pub static_members: HashMap<String, String>,
    /// KIP-394: member ids handed out with MEMBER_ID_REQUIRED, by expiry.
    pub pending_members: HashMap<String, Instant>,
    /// Members of this generation that have not sent SyncGroup yet.
    pub pending_sync: HashSet<String>,
    /// When members still in `pending_sync` are removed.
    pub sync_deadline: Option<Instant>,
    /// The rebalance under way, if the group is PreparingRebalance.
    pub join_phase: Option<JoinPhase>,
    /// A member joined during the initial delay (extends it).
    pub new_member_added: bool,
    /// Bumped whenever a rebalance timer is scheduled or made obsolete, so a
    /// timer that fires late knows it has nothing to do.
    pub timer_epoch: u64,
    /// Topics the members subscribe to (consumer protocol), `None` if unknown.
    pub subscribed_topics: Option<BTreeSet<String>>,
    /// Committed offsets by (topic, partition).
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// The group's state under the consumer protocol (KIP-848), if it is
    /// such a group.
    pub consumer: Option<Box<super::consumer::ConsumerGroup>>,
}

impl Group {
    pub fn new(group_id: &str, now_ms: i64) -> Self {
        Group {
            group_id: group_id.to_owned(),
            state: GroupState::Empty,
            state_timestamp_ms: now_ms,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: IndexMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            pending_sync: HashSet::new(),
            sync_deadline: None,
            join_phase: None,
            new_member_added: false,
            timer_epoch: 0,
            subscribed_topics: None,
            offsets: BTreeMap::new(),
            consumer: None,
        }
    }

    /// Move to `state`; an invalid transition is a bug, logged and done anyway
    /// so that a group is never wedged.
    pub fn transition(&mut self, state: GroupState, now_ms: i64) {
        if !state.can_follow(self.state) {
            tracing::error!(group = %self.group_id, from = self.state.name(), to = state.name(), "invalid group state transition");
        }
        tracing::debug!(group = %self.group_id, from = self.state.name(), to = state.name(), generation = self.generation_id, "group state");
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    pub fn is(&self, state: GroupState) -> bool {
        self.state == state
    }

    pub fn has_member(&self, member_id: &str) -> bool {
        self.members.contains_key(member_id)
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    /// KIP-345: a request naming `instance_id` with a member id other than the
    /// one registered for it comes from a fenced (zombie) instance.
    pub fn is_static_member_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        match instance_id.and_then(|i| self.static_members.get(i)) {
            Some(registered) => registered != member_id,
            None => false,
        }
    }

    /// The largest rebalance timeout of the members (the join deadline).
    pub fn rebalance_timeout_ms(&self) -> i32 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
    }

    /// Kafka's `canRebalance`.
    pub fn can_rebalance(&self) -> bool {
        matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        )
    }

    /// Every member has a JoinGroup waiting and no member id handed out is
    /// still to come back.
    pub fn has_all_members_joined(&self) -> bool {
        self.members.values().all(|m| m.awaiting_join.is_some()) && self.pending_members.is_empty()
    }

    /// Protocols every member supports.
    fn candidate_protocols(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return Vec::new();
        };
        let mut candidates: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in members {
            candidates.retain(|c| m.protocols.iter().any(|(n, _)| n == c));
        }
        candidates
    }

    /// Kafka's `supportsProtocols`: can a member with these protocols join?
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidate_protocols();
        protocols.iter().any(|(n, _)| candidates.contains(n))
    }

    /// Kafka's `selectProtocol`: each member votes for its most preferred
    /// candidate; most votes wins (ties go to the protocol voted first).
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: IndexMap<&str, usize> = IndexMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (name, count) in votes {
            if best.is_none_or(|(_, c)| count > c) {
                best = Some((name, count));
            }
        }
        best.map(|(n, _)| n.to_owned())
    }

    /// Add a member; the first member of an empty group sets its protocol type
    /// and becomes leader.
    pub fn add_member(&mut self, member: Member) {
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member.member_id.clone());
        }
        if let Some(instance) = &member.group_instance_id {
            self.static_members
                .insert(instance.clone(), member.member_id.clone());
        }
        self.pending_members.remove(&member.member_id);
        self.members.insert(member.member_id.clone(), member);
    }

    /// Remove a member (and its static registration); a removed leader is
    /// replaced by the oldest remaining member. Returns the member.
    pub fn remove_member(&mut self, member_id: &str) -> Option<Member> {
        let member = self.members.shift_remove(member_id)?;
        if let Some(instance) = &member.group_instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        self.pending_sync.remove(member_id);
        if self.is_leader(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
        Some(member)
    }

    /// If the leader has not rejoined, hand leadership to a member that did.
    /// False when no member has rejoined (Kafka's `maybeElectNewJoinedLeader`).
    pub fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader_id.clone() else {
            return false;
        };
        if self
            .members
            .get(&leader)
            .is_some_and(|m| m.awaiting_join.is_some())
        {
            return true;
        }
        match self.members.iter().find(|(_, m)| m.awaiting_join.is_some()) {
            Some((id, _)) => {
                self.leader_id = Some(id.clone());
                true
            }
            None => false,
        }
    }

    /// Start the next generation: CompletingRebalance with a selected
    /// protocol, or Empty when no member is left.
    pub fn init_next_generation(&mut self, now_ms: i64) {
        self.generation_id += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition(GroupState::Empty, now_ms);
        } else {
            self.protocol_name = self.select_protocol();
            self.transition(GroupState::CompletingRebalance, now_ms);
        }
        self.subscribed_topics = self.compute_subscribed_topics();
        self.pending_sync.clear();
        self.sync_deadline = None;
    }

    /// Topics the members subscribe to, read from their consumer-protocol
    /// metadata; `None` if the group is not a consumer group or a subscription
    /// cannot be read.
    pub fn compute_subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            topics.extend(decode_subscription(&m.metadata(protocol))?);
        }
        Some(topics)
    }

    /// Whether offsets of `topic` are in use by the members (OffsetDelete).
    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        match &self.subscribed_topics {
            Some(topics) => topics.contains(topic),
            None => true,
        }
    }

    /// The members for the leader's JoinGroup response.
    pub fn member_list(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata(&protocol),
            })
            .collect()
    }

    /// The JoinGroup answer of the current generation for `member_id`.
    pub fn join_outcome(
        &self,
        member_id: &str,
        with_members: bool,
        skip_assignment: bool,
    ) -> JoinOutcome {
        JoinOutcome {
            error: Ok(()),
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader_id: self.leader_id.clone().unwrap_or_default(),
            skip_assignment,
            member_id: member_id.to_owned(),
            members: if with_members {
                self.member_list()
            } else {
                Vec::new()
            },
        }
    }

    /// Fail every waiting SyncGroup with `error` and forget the assignments
    /// (a new rebalance started before the leader's assignment arrived).
    pub fn reset_and_propagate_assignment_error(&mut self, error: CoordinatorError) {
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncOutcome::error(error));
            }
        }
    }

    /// Store the leader's assignment and answer every waiting SyncGroup.
    pub fn set_and_propagate_assignment(&mut self, mut assignment: HashMap<String, Bytes>) {
        let protocol_type = self.protocol_type.clone();
        let protocol_name = self.protocol_name.clone();
        for m in self.members.values_mut() {
            m.assignment = assignment.remove(&m.member_id).unwrap_or_default();
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncOutcome {
                    error: Ok(()),
                    protocol_type: protocol_type.clone(),
                    protocol_name: protocol_name.clone(),
                    assignment: m.assignment.clone(),
                });
            }
        }
    }

    /// Answer every waiting JoinGroup and SyncGroup with `error` (the
    /// coordinator is going away).
    pub fn fail_all_waiters(&mut self, error: CoordinatorError) {
        for m in self.members.values_mut() {
            if let Some(tx) = m.awaiting_join.take() {
                let _ = tx.send(JoinOutcome::error(error, &m.member_id));
            }
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncOutcome::error(error));
            }
        }
    }

    /// The record that persists this group's membership and generation.
    pub fn to_record(&self) -> GroupValue {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation_id,
            protocol: self.protocol_name.clone(),
            leader: self.leader_id.clone(),
            current_state_timestamp: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Restore membership from a stored record (at load): Stable with the
    /// stored members if there are any, else Empty. Every member gets a full
    /// session from `now` to come back.
    pub fn restore(&mut self, value: GroupValue, now: Instant) {
        self.generation_id = value.generation;
        self.protocol_type = (!value.protocol_type.is_empty()).then_some(value.protocol_type);
        self.protocol_name = value.protocol;
        self.leader_id = value.leader;
        self.state_timestamp_ms = value.current_state_timestamp;
        self.members.clear();
        self.static_members.clear();
        let protocol = self.protocol_name.clone().unwrap_or_default();
        for m in value.members {
            if let Some(instance) = &m.group_instance_id {
                self.static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            self.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    protocol_type: self.protocol_type.clone().unwrap_or_default(),
                    protocols: vec![(protocol.clone(), m.subscription)],
                    assignment: m.assignment,
                    awaiting_join: None,
                    awaiting_sync: None,
                    last_heartbeat: now,
                    is_new: false,
                },
            );
        }
        if self
            .leader_id
            .as_ref()
            .is_some_and(|l| !self.members.contains_key(l))
        {
            self.leader_id = self.members.keys().next().cloned();
        }
        self.state = if self.members.is_empty() || self.protocol_name.is_none() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        self.subscribed_topics = self.compute_subscribed_topics();
    }
}

/// The topics of a consumer-protocol subscription (`ConsumerProtocolSubscription`,
/// read with the highest version we know when a newer one is sent, as Kafka does).
pub fn decode_subscription(metadata: &[u8]) -> Option<Vec<String>> {
    let (version, mut body) = split_version(metadata)?;
    let sub = ConsumerProtocolSubscription::decode(&mut body, version).ok()?;
    Some(sub.topics.into_iter().map(|t| t.to_string()).collect())
}

/// The partitions of a consumer-protocol assignment, by topic.
pub fn decode_assignment(assignment: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    if assignment.is_empty() {
        return Some(Vec::new());
    }
    let (version, mut body) = split_version(assignment)?;
    let a = ConsumerProtocolAssignment::decode(&mut body, version).ok()?;
    Some(
        a.assigned_partitions
            .into_iter()
            .map(|tp| (tp.topic.to_string(), tp.partitions))
            .collect(),
    )
}

fn split_version(b: &[u8]) -> Option<(i16, Bytes)> {
    if b.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([b[0], b[1]]);
    if version < 0 {
        return None;
    }
    Some((version.min(3), Bytes::copy_from_slice(&b[2..])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, protocols: &[&str]) -> Member {
        Member {
            member_id: id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 1000,
            session_timeout_ms: 1000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::new()))
                .collect(),
            assignment: Bytes::new(),
            awaiting_join: None,
            awaiting_sync: None,
            last_heartbeat: Instant::now(),
            is_new: true,
        }
    }

    #[test]
    fn state_transitions_follow_kafka() {
        use GroupState::*;
        assert!(PreparingRebalance.can_follow(Empty));
        assert!(CompletingRebalance.can_follow(PreparingRebalance));
        assert!(Stable.can_follow(CompletingRebalance));
        assert!(PreparingRebalance.can_follow(Stable));
        assert!(Empty.can_follow(PreparingRebalance));
        assert!(!Stable.can_follow(Empty));
        assert!(!CompletingRebalance.can_follow(Stable));
        assert!(!Empty.can_follow(Stable));
        assert!(Dead.can_follow(Empty));
    }

    #[test]
    fn protocol_selection_is_common_and_voted() {
        let mut g = Group::new("g", 0);
        g.add_member(member("a", &["cooperative-sticky", "range"]));
        g.add_member(member("b", &["range", "roundrobin"]));
        g.add_member(member("c", &["range", "cooperative-sticky"]));
        // Only "range" is supported by all three.
        assert_eq!(g.select_protocol().as_deref(), Some("range"));
        assert!(g.supports_protocols("consumer", &[("range".into(), Bytes::new())]));
        assert!(!g.supports_protocols("consumer", &[("roundrobin".into(), Bytes::new())]));
        assert!(!g.supports_protocols("connect", &[("range".into(), Bytes::new())]));
        assert!(!g.supports_protocols("consumer", &[]));

        let mut g = Group::new("g", 0);
        g.add_member(member("a", &["roundrobin", "range"]));
        g.add_member(member("b", &["roundrobin", "range"]));
        g.add_member(member("c", &["range", "roundrobin"]));
        assert_eq!(g.select_protocol().as_deref(), Some("roundrobin"));
    }

    #[test]
    fn first_member_leads_and_leadership_moves_on_removal() {
        let mut g = Group::new("g", 0);
        g.add_member(member("a", &["range"]));
        g.add_member(member("b", &["range"]));
        assert_eq!(g.protocol_type.as_deref(), Some("consumer"));
        assert!(g.is_leader("a"));
        g.remove_member("a");
        assert!(g.is_leader("b"));
        g.remove_member("b");
        assert_eq!(g.leader_id, None);
    }

    #[test]
    fn leader_that_did_not_rejoin_is_replaced_by_one_that_did() {
        let mut g = Group::new("g", 0);
        g.add_member(member("a", &["range"]));
        g.add_member(member("b", &["range"]));
        assert!(!g.maybe_elect_new_joined_leader());
        let (tx, _rx) = oneshot::channel();
        g.members["b"].awaiting_join = Some(tx);
        assert!(g.maybe_elect_new_joined_leader());
        assert!(g.is_leader("b"));
    }

    #[test]
    fn static_member_fencing() {
        let mut g = Group::new("g", 0);
        let mut m = member("a", &["range"]);
        m.group_instance_id = Some("i".into());
        g.add_member(m);
        assert!(!g.is_static_member_fenced(Some("i"), "a"));
        assert!(g.is_static_member_fenced(Some("i"), "old"));
        assert!(!g.is_static_member_fenced(Some("other"), "x"));
        assert!(!g.is_static_member_fenced(None, "x"));
    }

    #[test]
    fn session_keep_alive_rules() {
        let now = Instant::now();
        let join_timeout = std::time::Duration::from_secs(300);
        let mut m = member("a", &["range"]);
        m.last_heartbeat = now;
        assert!(m.should_keep_alive(now, join_timeout));
        let later = now + std::time::Duration::from_millis(1001);
        assert!(!m.should_keep_alive(later, join_timeout));
        // A member waiting for the leader's assignment is alive.
        let (tx, _rx) = oneshot::channel();
        m.awaiting_sync = Some(tx);
        assert!(m.should_keep_alive(later, join_timeout));
    }

    #[test]
    fn subscriptions_and_assignments_decode() {
        use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
        use kafka_protocol::messages::TopicName;
        use kafka_protocol::protocol::{Encodable, StrBytes};
        let sub = ConsumerProtocolSubscription::default().with_topics(vec![
            StrBytes::from_static_str("t1"),
            StrBytes::from_static_str("t2"),
        ]);
        let mut buf = bytes::BytesMut::new();
        buf.extend_from_slice(&1i16.to_be_bytes());
        sub.encode(&mut buf, 1).expect("encodes");
        assert_eq!(
            decode_subscription(&buf),
            Some(vec!["t1".to_string(), "t2".to_string()])
        );

        let asg = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(TopicName(StrBytes::from_static_str("t1")))
                .with_partitions(vec![0, 2]),
        ]);
        let mut buf = bytes::BytesMut::new();
        buf.extend_from_slice(&0i16.to_be_bytes());
        asg.encode(&mut buf, 0).expect("encodes");
        assert_eq!(
            decode_assignment(&buf),
            Some(vec![("t1".to_string(), vec![0, 2])])
        );
        assert_eq!(decode_assignment(&[]), Some(vec![]));
        assert_eq!(decode_assignment(&[0xff]), None);
    }
}

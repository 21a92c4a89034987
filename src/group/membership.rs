//! Membership: JoinGroup, SyncGroup, Heartbeat and LeaveGroup, the rebalance
//! they drive (Kafka's `GroupCoordinator` logic: delayed joins, the initial
//! rebalance delay, leader election, pending syncs) and session expiry.
//!
//! Every function here runs with the group's lock held and never waits;
//! requests that must wait for a rebalance get a channel that the rebalance
//! completes.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::state::{ms, Group, GroupState, JoinOutcome, JoinPhase, Member, SyncOutcome};
use super::{lock, now_ms, GroupCoordinator, GroupRef};
use super::{CoordinatorError as E, Outcome};

/// A JoinGroup request, as the coordinator needs it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    /// Empty on a member's first join.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// KIP-394 (JoinGroup v4+): a new dynamic member first gets its id with
    /// MEMBER_ID_REQUIRED and must join again with it.
    pub require_known_member_id: bool,
}

/// A SyncGroup request, as the coordinator needs it.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment, by member id (empty from followers).
    pub assignments: Vec<(String, Bytes)>,
}

/// An answer now, or one a rebalance will give.
enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

impl GroupCoordinator {
    /// JoinGroup: answered when the rebalance it joins completes.
    pub async fn join_group(self: &Arc<Self>, req: JoinRequest) -> JoinOutcome {
        let member_id = req.member_id.clone();
        match self.join_group_now(req) {
            Reply::Now(outcome) => outcome,
            // The sender was dropped: the member was replaced by a newer join.
            Reply::Later(rx) => rx
                .await
                .unwrap_or_else(|_| JoinOutcome::error(E::RebalanceInProgress, &member_id)),
        }
    }

    fn join_group_now(self: &Arc<Self>, req: JoinRequest) -> Reply<JoinOutcome> {
        let fail = |error| Reply::Now(JoinOutcome::error(error, &req.member_id));
        if req.group_id.is_empty() {
            return fail(E::InvalidGroupId);
        }
        if let Err(coordinator) = self.coordinator_error(&req.group_id) {
            return fail(coordinator);
        }
        if req.session_timeout_ms < self.settings.min_session_timeout_ms
            || req.session_timeout_ms > self.settings.max_session_timeout_ms
        {
            return fail(E::InvalidSessionTimeout);
        }
        let handle = if req.member_id.is_empty() {
            self.group_or_create(&req.group_id)
        } else {
            match self.group(&req.group_id) {
                Some(g) => g,
                None => return fail(E::UnknownMemberId),
            }
        };
        let mut g = lock(&handle);
        // A consumer-protocol group in use answers classic members itself
        // (online migration), unless the policy keeps the protocols apart.
        if Self::has_consumer_members(&g) {
            if !self.settings.consumer_migration_policy.mixed() {
                return fail(E::InconsistentGroupProtocol);
            }
            return Reply::Now(self.classic_join_consumer_group(&mut g, &req));
        }
        let reply = if req.member_id.is_empty() {
            self.join_new_member(&mut g, req)
        } else {
            self.join_current_member(&mut g, req)
        };
        if g.is(GroupState::PreparingRebalance) {
            self.try_complete_join(&mut g);
        }
        self.forget_if_unused(&mut g, &handle);
        reply
    }

    fn join_new_member(self: &Arc<Self>, g: &mut Group, req: JoinRequest) -> Reply<JoinOutcome> {
        if g.is(GroupState::Dead) {
            return Reply::Now(JoinOutcome::error(E::CoordinatorNotAvailable, ""));
        }
        if !g.supports_protocols(&req.protocol_type, &req.protocols) {
            return Reply::Now(JoinOutcome::error(E::InconsistentGroupProtocol, ""));
        }
        let member_id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
        if let Some(instance) = req.group_instance_id.clone() {
            return match g.static_members.get(&instance).cloned() {
                Some(old) => self.replace_static_member(g, &old, member_id, req),
                None => Reply::Later(self.add_member_and_rebalance(g, member_id, req)),
            };
        }
        if req.require_known_member_id {
            g.pending_members.insert(
                member_id.clone(),
                Instant::now() + ms(req.session_timeout_ms),
            );
            return Reply::Now(JoinOutcome::error(E::MemberIdRequired, &member_id));
        }
        Reply::Later(self.add_member_and_rebalance(g, member_id, req))
    }

    fn join_current_member(
        self: &Arc<Self>,
        g: &mut Group,
        req: JoinRequest,
    ) -> Reply<JoinOutcome> {
        let member_id = req.member_id.clone();
        let fail = |error| Reply::Now(JoinOutcome::error(error, &member_id));
        if g.is(GroupState::Dead) {
            return fail(E::CoordinatorNotAvailable);
        }
        if !g.supports_protocols(&req.protocol_type, &req.protocols) {
            return fail(E::InconsistentGroupProtocol);
        }
        if g.pending_members.contains_key(&member_id) {
            // The second join of KIP-394, with the id we handed out.
            return Reply::Later(self.add_member_and_rebalance(g, member_id.clone(), req));
        }
        let instance = req.group_instance_id.as_deref();
        if g.is_static_member_fenced(instance, &member_id) {
            return fail(E::FencedInstanceId);
        }
        let unknown_instance = instance.is_some_and(|i| !g.static_members.contains_key(i));
        if !g.has_member(&member_id) || unknown_instance {
            return fail(E::UnknownMemberId);
        }
        let (is_leader, unchanged) = match g.members.get_mut(&member_id) {
            Some(m) => {
                m.last_heartbeat = Instant::now();
                (
                    g.leader_id.as_deref() == Some(member_id.as_str()),
                    m.matches(&req.protocols),
                )
            }
            None => return fail(E::UnknownMemberId),
        };
        match g.state {
            GroupState::PreparingRebalance => {
                Reply::Later(self.update_member_and_rebalance(g, req))
            }
            // A retried join of this generation: answer it again.
            GroupState::CompletingRebalance if unchanged => {
                Reply::Now(g.join_outcome(&member_id, is_leader, false))
            }
            GroupState::CompletingRebalance => {
                Reply::Later(self.update_member_and_rebalance(g, req))
            }
            // A follower with nothing new just gets the current generation;
            // the leader rejoining means it wants a new assignment.
            GroupState::Stable if unchanged && !is_leader => {
                Reply::Now(g.join_outcome(&member_id, false, false))
            }
            GroupState::Stable => Reply::Later(self.update_member_and_rebalance(g, req)),
            GroupState::Empty | GroupState::Dead => fail(E::UnknownMemberId),
        }
    }

    fn add_member_and_rebalance(
        self: &Arc<Self>,
        g: &mut Group,
        member_id: String,
        req: JoinRequest,
    ) -> oneshot::Receiver<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        let member = Member {
            member_id,
            group_instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            session_timeout_ms: req.session_timeout_ms,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(tx),
            awaiting_sync: None,
            last_heartbeat: Instant::now(),
            is_new: true,
        };
        if g.is(GroupState::PreparingRebalance) && g.generation_id == 0 {
            g.new_member_added = true;
        }
        tracing::debug!(group = %g.group_id, member = %member.member_id, "member joins");
        g.add_member(member);
        self.maybe_prepare_rebalance(g);
        rx
    }

    fn update_member_and_rebalance(
        self: &Arc<Self>,
        g: &mut Group,
        req: JoinRequest,
    ) -> oneshot::Receiver<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = g.members.get_mut(&req.member_id) {
            m.protocols = req.protocols;
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.session_timeout_ms = req.session_timeout_ms;
            m.awaiting_join = Some(tx);
            m.last_heartbeat = Instant::now();
        }
        self.maybe_prepare_rebalance(g);
        rx
    }

    /// KIP-345: a static member came back with a new member id. The old id is
    /// fenced; if the group is stable and its protocol unchanged, the member
    /// takes over its old assignment without a rebalance.
    fn replace_static_member(
        self: &Arc<Self>,
        g: &mut Group,
        old_id: &str,
        new_id: String,
        req: JoinRequest,
    ) -> Reply<JoinOutcome> {
        let Some(index) = g.members.get_index_of(old_id) else {
            return Reply::Later(self.add_member_and_rebalance(g, new_id, req));
        };
        let Some(mut member) = g.members.shift_remove(old_id) else {
            return Reply::Now(JoinOutcome::error(E::UnknownMemberId, ""));
        };
        if let Some(tx) = member.awaiting_join.take() {
            let _ = tx.send(JoinOutcome::error(E::FencedInstanceId, old_id));
        }
        if let Some(tx) = member.awaiting_sync.take() {
            let _ = tx.send(SyncOutcome::error(E::FencedInstanceId));
        }
        let (tx, rx) = oneshot::channel();
        member.member_id = new_id.clone();
        member.protocols = req.protocols;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.session_timeout_ms = req.session_timeout_ms;
        member.last_heartbeat = Instant::now();
        member.awaiting_join = Some(tx);
        g.members.shift_insert(index, new_id.clone(), member);
        if let Some(instance) = req.group_instance_id {
            g.static_members.insert(instance, new_id.clone());
        }
        if g.is_leader(old_id) {
            g.leader_id = Some(new_id.clone());
        }
        if g.pending_sync.remove(old_id) {
            g.pending_sync.insert(new_id.clone());
        }
        tracing::info!(group = %g.group_id, old = old_id, new = %new_id, state = g.state.name(), "static member rejoined");
        match g.state {
            GroupState::Stable if g.select_protocol() == g.protocol_name => {
                if let Some(m) = g.members.get_mut(&new_id) {
                    m.awaiting_join = None;
                }
                if let Err(error) = self.persist_group(g) {
                    return Reply::Now(JoinOutcome::error(error, ""));
                }
                // KIP-814: a static leader learns it leads but keeps the assignment.
                let is_leader = g.is_leader(&new_id);
                Reply::Now(g.join_outcome(&new_id, is_leader, is_leader))
            }
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(g);
                Reply::Later(rx)
            }
            GroupState::PreparingRebalance => Reply::Later(rx),
            GroupState::Empty | GroupState::Dead => {
                Reply::Now(JoinOutcome::error(E::UnknownMemberId, ""))
            }
        }
    }

    pub(super) fn maybe_prepare_rebalance(self: &Arc<Self>, g: &mut Group) {
        if g.can_rebalance() {
            self.prepare_rebalance(g);
        }
    }

    /// Start a rebalance: fail pending syncs, then wait for members to rejoin
    /// (after the initial delay if the group was empty).
    fn prepare_rebalance(self: &Arc<Self>, g: &mut Group) {
        if g.is(GroupState::CompletingRebalance) {
            g.reset_and_propagate_assignment_error(E::RebalanceInProgress);
        }
        g.pending_sync.clear();
        g.sync_deadline = None;
        let was_empty = g.is(GroupState::Empty);
        g.transition(GroupState::PreparingRebalance, now_ms());
        g.timer_epoch += 1;
        let rebalance_timeout = ms(g.rebalance_timeout_ms());
        tracing::info!(
            group = %g.group_id,
            generation = g.generation_id,
            members = g.members.len(),
            "preparing to rebalance"
        );
        if was_empty {
            let delay = self.settings.initial_rebalance_delay;
            g.join_phase = Some(JoinPhase::Initial {
                remaining_ms: rebalance_timeout.saturating_sub(delay).as_millis() as u64,
            });
            self.schedule_join_timer(g, delay);
        } else {
            g.join_phase = Some(JoinPhase::Normal);
            self.schedule_join_timer(g, rebalance_timeout);
            self.try_complete_join(g);
        }
    }

    fn schedule_join_timer(self: &Arc<Self>, g: &Group, delay: std::time::Duration) {
        let group_id = g.group_id.clone();
        let epoch = g.timer_epoch;
        self.schedule(delay, move |me| me.on_join_timer(&group_id, epoch));
    }

    /// The initial delay or the rebalance timeout passed.
    fn on_join_timer(self: &Arc<Self>, group_id: &str, epoch: u64) {
        let Some(handle) = self.group(group_id) else {
            return;
        };
        let mut g = lock(&handle);
        if g.timer_epoch != epoch || !g.is(GroupState::PreparingRebalance) {
            return;
        }
        match g.join_phase {
            Some(JoinPhase::Initial { remaining_ms }) if g.new_member_added && remaining_ms > 0 => {
                // Members are still arriving: wait a little longer.
                g.new_member_added = false;
                let delay = self
                    .settings
                    .initial_rebalance_delay
                    .min(std::time::Duration::from_millis(remaining_ms));
                g.join_phase = Some(JoinPhase::Initial {
                    remaining_ms: remaining_ms.saturating_sub(delay.as_millis() as u64),
                });
                self.schedule_join_timer(&g, delay);
            }
            _ => self.complete_join(&mut g),
        }
    }

    /// Complete the join early once every member has rejoined (not during the
    /// initial delay, whose point is to wait).
    fn try_complete_join(self: &Arc<Self>, g: &mut Group) {
        if g.is(GroupState::PreparingRebalance)
            && g.join_phase == Some(JoinPhase::Normal)
            && g.has_all_members_joined()
        {
            self.complete_join(g);
        }
    }

    /// End the join phase: drop dynamic members that did not rejoin, start
    /// the next generation and answer every waiting JoinGroup (the leader
    /// gets the member list).
    fn complete_join(self: &Arc<Self>, g: &mut Group) {
        let gone: Vec<String> = g
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && !m.is_static())
            .map(|m| m.member_id.clone())
            .collect();
        for id in gone {
            tracing::info!(group = %g.group_id, member = %id, "member did not rejoin in time; removed");
            g.remove_member(&id);
        }
        if g.is(GroupState::Dead) {
            return;
        }
        g.timer_epoch += 1;
        if !g.maybe_elect_new_joined_leader() && !g.members.is_empty() {
            // Only static members that have not rejoined are left; wait for
            // them (their sessions expire meanwhile if they are gone).
            g.join_phase = Some(JoinPhase::Normal);
            let timeout = ms(g.rebalance_timeout_ms());
            self.schedule_join_timer(g, timeout);
            return;
        }
        g.join_phase = None;
        g.new_member_added = false;
        g.init_next_generation(now_ms());
        tracing::info!(
            group = %g.group_id,
            generation = g.generation_id,
            protocol = g.protocol_name.as_deref().unwrap_or(""),
            members = g.members.len(),
            state = g.state.name(),
            "rebalance: join phase complete"
        );
        if g.is(GroupState::Empty) {
            if let Err(error) = self.persist_group(g) {
                tracing::warn!(group = %g.group_id, %error, "cannot persist the empty group");
            }
            return;
        }
        let now = Instant::now();
        let leader_members = g.member_list();
        let template = g.join_outcome("", false, false);
        let leader = g.leader_id.clone();
        let ids: Vec<String> = g.members.keys().cloned().collect();
        for m in g.members.values_mut() {
            if let Some(tx) = m.awaiting_join.take() {
                let mut outcome = template.clone();
                outcome.member_id = m.member_id.clone();
                if leader.as_deref() == Some(m.member_id.as_str()) {
                    outcome.members = leader_members.clone();
                }
                let _ = tx.send(outcome);
            }
            m.last_heartbeat = now;
            m.is_new = false;
        }
        g.pending_sync = ids.into_iter().collect();
        g.sync_deadline = Some(now + ms(g.rebalance_timeout_ms()));
    }

    /// SyncGroup: followers wait for the leader's assignment; the leader's
    /// request stores it, moves the group to Stable and answers everyone.
    pub async fn sync_group(self: &Arc<Self>, req: SyncRequest) -> SyncOutcome {
        match self.sync_group_now(req) {
            Reply::Now(outcome) => outcome,
            Reply::Later(rx) => rx
                .await
                .unwrap_or_else(|_| SyncOutcome::error(E::RebalanceInProgress)),
        }
    }

    fn sync_group_now(self: &Arc<Self>, req: SyncRequest) -> Reply<SyncOutcome> {
        let fail = |error| Reply::Now(SyncOutcome::error(error));
        if req.group_id.is_empty() {
            return fail(E::InvalidGroupId);
        }
        if let Err(coordinator) = self.coordinator_error(&req.group_id) {
            return fail(coordinator);
        }
        let Some(handle) = self.group(&req.group_id) else {
            return fail(E::UnknownMemberId);
        };
        let mut g = lock(&handle);
        if g.is(GroupState::Dead) {
            return fail(E::CoordinatorNotAvailable);
        }
        if Self::has_consumer_members(&g) {
            return Reply::Now(self.classic_sync_consumer_group(&mut g, &req));
        }
        if g.is_static_member_fenced(req.group_instance_id.as_deref(), &req.member_id) {
            return fail(E::FencedInstanceId);
        }
        if !g.has_member(&req.member_id) {
            return fail(E::UnknownMemberId);
        }
        if req.generation_id != g.generation_id {
            return fail(E::IllegalGeneration);
        }
        if req.protocol_type.is_some() && req.protocol_type != g.protocol_type {
            return fail(E::InconsistentGroupProtocol);
        }
        if req.protocol_name.is_some() && req.protocol_name != g.protocol_name {
            return fail(E::InconsistentGroupProtocol);
        }
        match g.state {
            GroupState::Empty => fail(E::UnknownMemberId),
            GroupState::PreparingRebalance => fail(E::RebalanceInProgress),
            GroupState::Dead => fail(E::CoordinatorNotAvailable),
            GroupState::Stable => {
                g.pending_sync.remove(&req.member_id);
                if g.pending_sync.is_empty() {
                    g.sync_deadline = None;
                }
                let protocol_type = g.protocol_type.clone();
                let protocol_name = g.protocol_name.clone();
                match g.members.get_mut(&req.member_id) {
                    Some(m) => {
                        m.last_heartbeat = Instant::now();
                        Reply::Now(SyncOutcome {
                            error: Ok(()),
                            protocol_type,
                            protocol_name,
                            assignment: m.assignment.clone(),
                        })
                    }
                    None => fail(E::UnknownMemberId),
                }
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = g.members.get_mut(&req.member_id) {
                    m.awaiting_sync = Some(tx);
                    m.last_heartbeat = Instant::now();
                }
                g.pending_sync.remove(&req.member_id);
                if g.pending_sync.is_empty() {
                    g.sync_deadline = None;
                }
                if g.is_leader(&req.member_id) {
                    let assignment: HashMap<String, Bytes> = req
                        .assignments
                        .into_iter()
                        .filter(|(id, _)| g.has_member(id))
                        .collect();
                    for m in g.members.values_mut() {
                        m.assignment = assignment.get(&m.member_id).cloned().unwrap_or_default();
                    }
                    match self.persist_group(&g) {
                        Ok(()) => {
                            g.set_and_propagate_assignment(assignment);
                            g.transition(GroupState::Stable, now_ms());
                            tracing::info!(group = %g.group_id, generation = g.generation_id, "group is stable");
                        }
                        Err(error) => {
                            g.reset_and_propagate_assignment_error(error);
                            self.maybe_prepare_rebalance(&mut g);
                        }
                    }
                }
                Reply::Later(rx)
            }
        }
    }

    /// Heartbeat: keeps the session alive; REBALANCE_IN_PROGRESS tells the
    /// member to rejoin.
    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Outcome {
        if group_id.is_empty() {
            return Err(E::InvalidGroupId);
        }
        self.coordinator_error(group_id)?;
        let Some(handle) = self.group(group_id) else {
            return Err(E::UnknownMemberId);
        };
        let mut g = lock(&handle);
        if g.is(GroupState::Dead) {
            return Err(E::CoordinatorNotAvailable);
        }
        if Self::has_consumer_members(&g) {
            return self.classic_heartbeat_consumer_group(&mut g, member_id, generation_id);
        }
        if g.is_static_member_fenced(group_instance_id, member_id) {
            return Err(E::FencedInstanceId);
        }
        if !g.has_member(member_id) {
            return Err(E::UnknownMemberId);
        }
        if generation_id != g.generation_id {
            return Err(E::IllegalGeneration);
        }
        let state = g.state;
        if let Some(m) = g.members.get_mut(member_id) {
            m.last_heartbeat = Instant::now();
        }
        match state {
            GroupState::Empty | GroupState::Dead => Err(E::UnknownMemberId),
            GroupState::PreparingRebalance => Err(E::RebalanceInProgress),
            GroupState::CompletingRebalance | GroupState::Stable => Ok(()),
        }
    }

    /// LeaveGroup for each `(member_id, group_instance_id)`; a static member
    /// may be named by its instance id alone. Returns the group-level error
    /// and one error per member.
    pub fn leave_group(
        self: &Arc<Self>,
        group_id: &str,
        leaving: &[(String, Option<String>)],
    ) -> (Outcome, Vec<Outcome>) {
        if group_id.is_empty() {
            return (Err(E::InvalidGroupId), Vec::new());
        }
        if let Err(coordinator) = self.coordinator_error(group_id) {
            return (Err(coordinator), Vec::new());
        }
        let Some(handle) = self.group(group_id) else {
            return (Ok(()), vec![Err(E::UnknownMemberId); leaving.len()]);
        };
        let mut g = lock(&handle);
        if g.is(GroupState::Dead) {
            return (Err(E::CoordinatorNotAvailable), Vec::new());
        }
        if Self::has_consumer_members(&g) {
            return (Ok(()), self.classic_leave_consumer_group(&mut g, leaving));
        }
        let mut errors = Vec::with_capacity(leaving.len());
        for (member_id, instance) in leaving {
            let error = if member_id.is_empty() {
                match instance
                    .as_ref()
                    .and_then(|i| g.static_members.get(i))
                    .cloned()
                {
                    Some(id) => {
                        self.remove_member_and_update_group(&mut g, &id, "left the group");
                        Ok(())
                    }
                    None => Err(E::UnknownMemberId),
                }
            } else if g.is_static_member_fenced(instance.as_deref(), member_id) {
                Err(E::FencedInstanceId)
            } else if g.pending_members.remove(member_id).is_some() {
                self.try_complete_join(&mut g);
                Ok(())
            } else if !g.has_member(member_id) {
                Err(E::UnknownMemberId)
            } else {
                self.remove_member_and_update_group(&mut g, member_id, "left the group");
                Ok(())
            };
            errors.push(error);
        }
        self.forget_if_unused(&mut g, &handle);
        (Ok(()), errors)
    }

    /// Remove a member that left or whose session expired, and rebalance.
    fn remove_member_and_update_group(self: &Arc<Self>, g: &mut Group, member_id: &str, why: &str) {
        if let Some(mut m) = g.remove_member(member_id) {
            tracing::info!(group = %g.group_id, member = member_id, "member {why}");
            if let Some(tx) = m.awaiting_join.take() {
                let _ = tx.send(JoinOutcome::error(E::UnknownMemberId, member_id));
            }
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncOutcome::error(E::UnknownMemberId));
            }
        }
        match g.state {
            GroupState::Dead | GroupState::Empty => {}
            GroupState::Stable | GroupState::CompletingRebalance => self.maybe_prepare_rebalance(g),
            GroupState::PreparingRebalance => self.try_complete_join(g),
        }
    }

    /// Remove members whose session expired and member ids never used, and
    /// rebalance groups whose members did not sync in time.
    pub(super) fn expire_sessions(self: &Arc<Self>, now: Instant) {
        for handle in self.all_groups() {
            let mut g = lock(&handle);
            self.expire_group_sessions(&mut g, now);
            self.forget_if_unused(&mut g, &handle);
        }
    }

    /// The earliest deadline of any group: a member's session, a pending
    /// member id, a sync deadline (the sweeper sleeps until it).
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let join_timeout = self.settings.new_member_join_timeout;
        self.all_groups()
            .iter()
            .filter_map(|handle| {
                let g = lock(handle);
                let members = g
                    .members
                    .values()
                    .filter_map(|m| m.session_deadline(join_timeout));
                members
                    .chain(g.pending_members.values().copied())
                    .chain(g.sync_deadline)
                    .min()
            })
            .min()
    }

    /// Expire the sessions of `group_id` that ended by now (a request that
    /// needs the group's membership sees it as of its arrival, not as of
    /// the sweeper's last wake).
    pub(super) fn expire_due(self: &Arc<Self>, handle: &GroupRef, g: &mut Group) {
        self.expire_group_sessions(g, Instant::now());
        self.forget_if_unused(g, handle);
    }

    fn expire_group_sessions(self: &Arc<Self>, g: &mut Group, now: Instant) {
        if g.is(GroupState::Dead) {
            return;
        }
        let before = g.pending_members.len();
        g.pending_members.retain(|_, deadline| *deadline > now);
        if g.pending_members.len() != before {
            self.try_complete_join(g);
        }
        let join_timeout = self.settings.new_member_join_timeout;
        let expired: Vec<String> = g
            .members
            .values()
            .filter(|m| !m.should_keep_alive(now, join_timeout))
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            self.remove_member_and_update_group(g, &id, "session expired");
        }
        if let Some(deadline) = g.sync_deadline {
            if deadline <= now {
                g.sync_deadline = None;
                let late: Vec<String> = g.pending_sync.iter().cloned().collect();
                if matches!(
                    g.state,
                    GroupState::CompletingRebalance | GroupState::Stable
                ) && !late.is_empty()
                {
                    for id in late {
                        tracing::info!(group = %g.group_id, member = %id, "member did not sync in time; removed");
                        g.remove_member(&id);
                    }
                    self.prepare_rebalance(g);
                }
            }
        }
    }
}

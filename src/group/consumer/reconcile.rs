//! Incremental reconciliation of one member towards its target assignment
//! (KIP-848): a member first gives up (revokes) what it must lose, staying in
//! its epoch until it says so in a heartbeat; it then moves to the target
//! epoch and receives what is free; a partition still held by another member
//! (assigned or pending revocation) is given only once that member released it.
//!
//! Owns: the state of one member's current assignment and its transitions.
//! Must never: decide the target (that is the assignor's) or do I/O.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::assignor::Assignment;

/// Where a member is in its reconciliation (Kafka's `MemberState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemberState {
    /// At its epoch's target: nothing to do.
    #[default]
    Stable,
    /// Must revoke `pending_revocation` before moving to the next epoch.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions other members still hold.
    UnreleasedPartitions,
}

impl MemberState {
    /// The value Kafka stores for the state.
    pub fn code(self) -> i8 {
        match self {
            MemberState::Stable => 1,
            MemberState::UnrevokedPartitions => 2,
            MemberState::UnreleasedPartitions => 3,
        }
    }

    pub fn from_code(code: i8) -> Self {
        match code {
            2 => MemberState::UnrevokedPartitions,
            3 => MemberState::UnreleasedPartitions,
            _ => MemberState::Stable,
        }
    }
}

/// A member's current assignment and epochs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberAssignment {
    pub member_epoch: i32,
    /// The epoch before the last bump: a heartbeat with it is still accepted
    /// while the member's owned partitions are a subset of its assignment
    /// (the response to the bump may have been lost).
    pub previous_member_epoch: i32,
    pub state: MemberState,
    /// What the member may consume now.
    pub assigned: Assignment,
    /// What it must give up before moving on.
    pub pending_revocation: Assignment,
}

/// Whether every partition of `a` is in `b`.
pub fn is_subset(a: &Assignment, b: &Assignment) -> bool {
    a.iter()
        .all(|(t, ps)| ps.is_empty() || b.get(t).is_some_and(|other| ps.is_subset(other)))
}

fn intersects(a: &Assignment, b: &Assignment) -> bool {
    a.iter()
        .any(|(t, ps)| b.get(t).is_some_and(|other| !ps.is_disjoint(other)))
}

fn put(a: &mut Assignment, t: Uuid, ps: BTreeSet<i32>) {
    if !ps.is_empty() {
        a.insert(t, ps);
    }
}

impl MemberAssignment {
    /// One step towards `target` (at `target_epoch`). `owned` is what the
    /// member says it owns (`None`: it did not say); `held_by_other` tells
    /// whether another member still holds a partition.
    pub fn reconcile(
        &self,
        target_epoch: i32,
        target: &Assignment,
        owned: Option<&Assignment>,
        held_by_other: impl Fn(Uuid, i32) -> bool,
    ) -> MemberAssignment {
        match self.state {
            MemberState::Stable if self.member_epoch == target_epoch => self.clone(),
            MemberState::UnrevokedPartitions
                if owned.is_none_or(|o| intersects(o, &self.pending_revocation)) =>
            {
                self.clone()
            }
            _ => self.next(target_epoch, target, owned, held_by_other),
        }
    }

    fn next(
        &self,
        target_epoch: i32,
        target: &Assignment,
        owned: Option<&Assignment>,
        held_by_other: impl Fn(Uuid, i32) -> bool,
    ) -> MemberAssignment {
        let mut assigned = Assignment::new();
        let mut revoke = Assignment::new();
        let mut unreleased = false;
        let topics: BTreeSet<Uuid> = target.keys().chain(self.assigned.keys()).copied().collect();
        let none = BTreeSet::new();
        for t in topics {
            let want = target.get(&t).unwrap_or(&none);
            let have = self.assigned.get(&t).unwrap_or(&none);
            let mut keep: BTreeSet<i32> = have.intersection(want).copied().collect();
            put(&mut revoke, t, have.difference(want).copied().collect());
            for &p in want.difference(have) {
                if held_by_other(t, p) {
                    unreleased = true;
                } else {
                    keep.insert(p);
                }
            }
            put(&mut assigned, t, keep);
        }
        let still_owned = owned.is_none_or(|o| intersects(o, &revoke));
        if !revoke.is_empty() && still_owned {
            MemberAssignment {
                member_epoch: self.member_epoch,
                previous_member_epoch: self.previous_member_epoch,
                state: MemberState::UnrevokedPartitions,
                assigned,
                pending_revocation: revoke,
            }
        } else {
            MemberAssignment {
                member_epoch: target_epoch,
                previous_member_epoch: self.member_epoch,
                state: if unreleased {
                    MemberState::UnreleasedPartitions
                } else {
                    MemberState::Stable
                },
                assigned,
                pending_revocation: Assignment::new(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Uuid {
        Uuid::from_bytes([1; 16])
    }

    fn parts(ps: &[i32]) -> Assignment {
        Assignment::from([(t(), ps.iter().copied().collect())])
    }

    fn stable(epoch: i32, ps: &[i32]) -> MemberAssignment {
        MemberAssignment {
            member_epoch: epoch,
            previous_member_epoch: epoch - 1,
            state: MemberState::Stable,
            assigned: parts(ps),
            pending_revocation: Assignment::new(),
        }
    }

    #[test]
    fn revocation_comes_first_and_waits_for_the_member() {
        let m = stable(1, &[0, 1, 2]);
        let step = m.reconcile(2, &parts(&[0, 1]), Some(&parts(&[0, 1, 2])), |_, _| false);
        assert_eq!(step.state, MemberState::UnrevokedPartitions);
        assert_eq!(step.member_epoch, 1, "stays in its epoch until it revoked");
        assert_eq!(step.assigned, parts(&[0, 1]));
        assert_eq!(step.pending_revocation, parts(&[2]));
        // Still owns 2: nothing moves.
        let same = step.reconcile(2, &parts(&[0, 1]), Some(&parts(&[0, 1, 2])), |_, _| false);
        assert_eq!(same, step);
        // Not saying what it owns is not a revocation either.
        assert_eq!(step.reconcile(2, &parts(&[0, 1]), None, |_, _| false), step);
        // Revoked: moves to the target epoch.
        let done = step.reconcile(2, &parts(&[0, 1]), Some(&parts(&[0, 1])), |_, _| false);
        assert_eq!(done.state, MemberState::Stable);
        assert_eq!(done.member_epoch, 2);
        assert_eq!(done.previous_member_epoch, 1);
        assert!(done.pending_revocation.is_empty());
    }

    #[test]
    fn a_partition_moves_only_after_its_owner_released_it() {
        let m = stable(1, &[0]);
        // Partition 1 is still held by another member.
        let step = m.reconcile(2, &parts(&[0, 1]), Some(&parts(&[0])), |_, p| p == 1);
        assert_eq!(step.state, MemberState::UnreleasedPartitions);
        assert_eq!(step.member_epoch, 2);
        assert_eq!(step.assigned, parts(&[0]));
        // Released: it gets it on its next heartbeat.
        let done = step.reconcile(2, &parts(&[0, 1]), Some(&parts(&[0])), |_, _| false);
        assert_eq!(done.state, MemberState::Stable);
        assert_eq!(done.assigned, parts(&[0, 1]));
    }

    #[test]
    fn a_new_member_gets_free_partitions_at_once() {
        let m = MemberAssignment::default();
        let step = m.reconcile(3, &parts(&[4, 5]), Some(&Assignment::new()), |_, _| false);
        assert_eq!(step.state, MemberState::Stable);
        assert_eq!(step.member_epoch, 3);
        assert_eq!(step.assigned, parts(&[4, 5]));
    }

    #[test]
    fn subset_check() {
        assert!(is_subset(&parts(&[1]), &parts(&[1, 2])));
        assert!(!is_subset(&parts(&[3]), &parts(&[1, 2])));
        assert!(is_subset(&Assignment::new(), &parts(&[1])));
    }
}

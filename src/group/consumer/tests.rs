//! Heartbeats through a consumer group without I/O: joins, epochs,
//! revocation before reassignment, leaving, fencing, static members and
//! regex subscriptions, and a group rebuilt from its records.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use super::*;

fn catalog() -> TopicCatalog {
    TopicCatalog::from([
        ("orders".to_owned(), (Uuid::from_bytes([1; 16]), 6)),
        ("orders-eu".to_owned(), (Uuid::from_bytes([2; 16]), 2)),
        ("payments".to_owned(), (Uuid::from_bytes([3; 16]), 2)),
    ])
}

fn orders() -> Uuid {
    Uuid::from_bytes([1; 16])
}

fn timeouts() -> Timeouts {
    Timeouts {
        session: Duration::from_secs(45),
        now: Instant::now(),
    }
}

fn join(id: &str) -> HeartbeatRequest {
    HeartbeatRequest {
        group_id: "g".into(),
        member_id: id.into(),
        member_epoch: 0,
        rebalance_timeout_ms: 300_000,
        subscribed_topic_names: Some(vec!["orders".into()]),
        owned: Some(Assignment::new()),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        ..Default::default()
    }
}

fn beat(id: &str, epoch: i32, owned: &Assignment) -> HeartbeatRequest {
    HeartbeatRequest {
        group_id: "g".into(),
        member_id: id.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: Some(owned.clone()),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        ..Default::default()
    }
}

fn count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

/// Heartbeat until `id` is stable at the assignment epoch; returns what it owns.
fn settle(g: &mut ConsumerGroup, id: &str, mut owned: Assignment) -> Assignment {
    for _ in 0..5 {
        let epoch = g.members[id].assignment.member_epoch;
        let (resp, _) = g
            .heartbeat("g", &beat(id, epoch, &owned), &catalog(), timeouts())
            .expect("heartbeat");
        if let Some(a) = resp.assignment {
            owned = a;
        }
    }
    owned
}

#[test]
fn joins_share_the_partitions_and_revocation_comes_before_reassignment() {
    let mut g = ConsumerGroup::default();
    let (a, _) = g
        .heartbeat("g", &join("a"), &catalog(), timeouts())
        .expect("join");
    assert_eq!(a.member_epoch, 1);
    let a_owned = a.assignment.expect("assignment on join");
    assert_eq!(count(&a_owned), 6, "a lone member gets every partition");

    // b joins: the target gives b three of a's partitions, but b gets none
    // of them before a revoked them.
    let (b, _) = g
        .heartbeat("g", &join("b"), &catalog(), timeouts())
        .expect("join");
    assert_eq!(b.member_epoch, 2);
    assert_eq!(count(&b.assignment.clone().unwrap_or_default()), 0);
    assert_eq!(g.state_name(), "Reconciling");

    // a is told to give up three (its epoch stays 1 until it has).
    let (a2, _) = g
        .heartbeat("g", &beat("a", 1, &a_owned), &catalog(), timeouts())
        .expect("heartbeat");
    assert_eq!(a2.member_epoch, 1);
    let a_kept = a2.assignment.expect("new assignment");
    assert_eq!(count(&a_kept), 3);
    // b still waits: a has not acknowledged.
    let (b2, _) = g
        .heartbeat(
            "g",
            &beat("b", 2, &Assignment::new()),
            &catalog(),
            timeouts(),
        )
        .expect("heartbeat");
    assert!(b2.assignment.is_none_or(|x| x.is_empty()));
    // a acknowledges (owns only what it kept): epoch 2.
    let (a3, _) = g
        .heartbeat("g", &beat("a", 1, &a_kept), &catalog(), timeouts())
        .expect("heartbeat");
    assert_eq!(a3.member_epoch, 2);
    // Now b gets the three a released.
    let (b3, _) = g
        .heartbeat(
            "g",
            &beat("b", 2, &Assignment::new()),
            &catalog(),
            timeouts(),
        )
        .expect("heartbeat");
    let b_owned = b3.assignment.expect("b's partitions");
    assert_eq!(count(&b_owned), 3);
    assert!(b_owned[&orders()].is_disjoint(&a_kept[&orders()]));
    assert_eq!(g.state_name(), "Stable");
}

#[test]
fn epochs_are_checked_as_kafka_does() {
    let mut g = ConsumerGroup::default();
    let (a, _) = g
        .heartbeat("g", &join("a"), &catalog(), timeouts())
        .expect("join");
    let owned = a.assignment.expect("assignment");
    let err = |g: &mut ConsumerGroup, r: HeartbeatRequest| {
        g.heartbeat("g", &r, &catalog(), timeouts())
            .map(|_| ())
            .unwrap_err()
    };
    assert_eq!(err(&mut g, beat("a", 7, &owned)), E::FencedMemberEpoch);
    assert_eq!(err(&mut g, beat("nobody", 1, &owned)), E::UnknownMemberId);
    // The previous epoch is accepted while it owns a subset of its assignment.
    g.heartbeat("g", &join("b"), &catalog(), timeouts())
        .expect("join");
    let kept = settle(&mut g, "a", owned.clone());
    assert_eq!(g.members["a"].assignment.member_epoch, 2);
    g.heartbeat("g", &beat("a", 1, &kept), &catalog(), timeouts())
        .expect("previous epoch with a subset");
    assert_eq!(err(&mut g, beat("a", 1, &owned)), E::FencedMemberEpoch);
    // A join must say it owns nothing, and an unknown assignor is refused.
    let mut bad = join("c");
    bad.owned = Some(owned);
    assert_eq!(err(&mut g, bad), E::InvalidRequest);
    let mut bad = join("c");
    bad.server_assignor = Some("sticky".into());
    assert_eq!(err(&mut g, bad), E::UnsupportedAssignor);
}

#[test]
fn leaving_and_fencing_free_the_partitions() {
    let mut g = ConsumerGroup::default();
    g.heartbeat("g", &join("a"), &catalog(), timeouts())
        .expect("join");
    g.heartbeat("g", &join("b"), &catalog(), timeouts())
        .expect("join");
    let a_owned = settle(&mut g, "a", Assignment::new());
    let b_owned = settle(&mut g, "b", Assignment::new());
    assert_eq!(count(&a_owned) + count(&b_owned), 6);
    let (left, records) = g
        .heartbeat(
            "g",
            &beat("b", LEAVE_GROUP_MEMBER_EPOCH, &b_owned),
            &catalog(),
            timeouts(),
        )
        .expect("leave");
    assert_eq!(left.member_epoch, LEAVE_GROUP_MEMBER_EPOCH);
    assert!(records.iter().any(|(_, v)| v.is_none()), "tombstones");
    // a keeps its partitions and gets b's, without revoking any.
    let after = settle(&mut g, "a", a_owned.clone());
    assert!(a_owned[&orders()].is_subset(&after[&orders()]));
    assert_eq!(count(&after), 6);
    // Fencing at the deadline.
    let later = Instant::now() + Duration::from_secs(46);
    assert_eq!(g.expired(later), vec!["a".to_owned()]);
}

#[test]
fn a_static_member_keeps_its_partitions_across_a_restart() {
    let mut g = ConsumerGroup::default();
    let mut a = join("a1");
    a.instance_id = Some("instance-a".into());
    g.heartbeat("g", &a, &catalog(), timeouts()).expect("join");
    g.heartbeat("g", &join("b"), &catalog(), timeouts())
        .expect("join");
    let a_owned = settle(&mut g, "a1", Assignment::new());
    settle(&mut g, "b", Assignment::new());
    let epoch = g.group_epoch;
    let mut leave = beat("a1", LEAVE_GROUP_STATIC_MEMBER_EPOCH, &a_owned);
    leave.instance_id = Some("instance-a".into());
    g.heartbeat("g", &leave, &catalog(), timeouts())
        .expect("static leave");
    assert_eq!(g.group_epoch, epoch, "a static leave moves nothing");
    // Another member cannot take the instance id while it is held...
    let mut thief = join("x");
    thief.instance_id = Some("instance-a".into());
    // ...but the same instance returning takes over its partitions.
    let mut back = join("a2");
    back.instance_id = Some("instance-a".into());
    let (resp, _) = g
        .heartbeat("g", &back, &catalog(), timeouts())
        .expect("rejoin");
    assert_eq!(resp.assignment.expect("assignment"), a_owned);
    assert!(!g.members.contains_key("a1"));
    assert_eq!(
        g.heartbeat("g", &thief, &catalog(), timeouts())
            .map(|_| ())
            .unwrap_err(),
        E::UnreleasedInstanceId
    );
}

#[test]
fn regex_subscriptions_follow_the_topics() {
    let mut g = ConsumerGroup::default();
    let mut r = join("a");
    r.subscribed_topic_names = None;
    r.subscribed_topic_regex = Some("^orders.*".into());
    let (resp, _) = g.heartbeat("g", &r, &catalog(), timeouts()).expect("join");
    let a = resp.assignment.expect("assignment");
    assert_eq!(count(&a), 8, "orders and orders-eu, not payments");
    let mut bad = join("b");
    bad.subscribed_topic_regex = Some("(".into());
    assert_eq!(
        g.heartbeat("g", &bad, &catalog(), timeouts())
            .map(|_| ())
            .unwrap_err(),
        E::InvalidRegularExpression
    );
}

#[test]
fn the_group_is_rebuilt_from_its_records() {
    let mut g = ConsumerGroup::default();
    let mut all = Records::new();
    for id in ["a", "b"] {
        all.extend(
            g.heartbeat("g", &join(id), &catalog(), timeouts())
                .expect("join")
                .1,
        );
    }
    for id in ["a", "b", "a", "b"] {
        let epoch = g.members[id].assignment.member_epoch;
        let owned = g.members[id].assignment.assigned.clone();
        all.extend(
            g.heartbeat("g", &beat(id, epoch, &owned), &catalog(), timeouts())
                .expect("beat")
                .1,
        );
    }
    let mut loaded = ConsumerGroup::default();
    for (k, v) in &all {
        let key = records::ConsumerKey::decode(k)
            .expect("ours")
            .expect("valid");
        assert!(loaded
            .apply(&key, v.as_deref(), Instant::now())
            .expect("applies"));
    }
    assert_eq!(loaded.group_epoch, g.group_epoch);
    assert_eq!(loaded.assignment_epoch, g.assignment_epoch);
    assert_eq!(loaded.target, g.target);
    for (id, m) in &g.members {
        assert_eq!(loaded.members[id].assignment, m.assignment);
        assert_eq!(loaded.members[id].metadata, m.metadata);
    }
}

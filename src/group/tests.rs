//! The coordinator against a real broker on a temporary data dir: the state
//! machine, static membership, offsets and their persistence, and that every
//! response encodes at every version we advertise.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::records::OffsetValue;
use super::state::{JoinOutcome, SyncOutcome};
use super::store::encode_batch;
use super::*;
use crate::broker::Broker;
use crate::config::NodeConfig;
use crate::kafka::code as wire;
use crate::kafka::group as api;
use crate::log::batch::split_and_validate;

/// The coordinator's answers under the names of the Kafka codes they map to.
mod code {
    use super::{CoordinatorError as E, Outcome};

    pub const NONE: Outcome = Ok(());
    pub const COORDINATOR_NOT_AVAILABLE: Outcome = Err(E::CoordinatorNotAvailable);
    pub const FENCED_INSTANCE_ID: Outcome = Err(E::FencedInstanceId);
    pub const GROUP_ID_NOT_FOUND: Outcome = Err(E::GroupIdNotFound);
    pub const GROUP_SUBSCRIBED_TO_TOPIC: Outcome = Err(E::GroupSubscribedToTopic);
    pub const ILLEGAL_GENERATION: Outcome = Err(E::IllegalGeneration);
    pub const INCONSISTENT_GROUP_PROTOCOL: Outcome = Err(E::InconsistentGroupProtocol);
    pub const INVALID_GROUP_ID: Outcome = Err(E::InvalidGroupId);
    pub const INVALID_SESSION_TIMEOUT: Outcome = Err(E::InvalidSessionTimeout);
    pub const MEMBER_ID_REQUIRED: Outcome = Err(E::MemberIdRequired);
    pub const NON_EMPTY_GROUP: Outcome = Err(E::NonEmptyGroup);
    pub const NOT_COORDINATOR: Outcome = Err(E::NotCoordinator);
    pub const REBALANCE_IN_PROGRESS: Outcome = Err(E::RebalanceInProgress);
    pub const UNKNOWN_MEMBER_ID: Outcome = Err(E::UnknownMemberId);
    pub const UNKNOWN_TOPIC_OR_PARTITION: Outcome = Err(E::UnknownTopicOrPartition);
}

struct Node {
    broker: Arc<Broker>,
    groups: Arc<GroupCoordinator>,
}

fn settings(broker: &Broker) -> CoordinatorSettings {
    let mut s = CoordinatorSettings::from_config(&broker.config);
    s.initial_rebalance_delay = Duration::ZERO;
    s.min_session_timeout_ms = 10;
    s.sweep_interval = Duration::from_millis(10);
    s
}

fn open(dir: &std::path::Path, tune: impl FnOnce(&mut CoordinatorSettings)) -> Node {
    let broker =
        Arc::new(Broker::open(NodeConfig::for_tests(dir.to_path_buf())).expect("broker opens"));
    let mut s = settings(&broker);
    tune(&mut s);
    let groups = GroupCoordinator::start(broker.clone(), s).expect("coordinator starts");
    Node { broker, groups }
}

fn join(group: &str, member: &str) -> JoinRequest {
    JoinRequest {
        group_id: group.into(),
        member_id: member.into(),
        group_instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
        require_known_member_id: false,
    }
}

fn sync(group: &str, member: &str, generation: i32, assignments: &[(&str, &[u8])]) -> SyncRequest {
    SyncRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member.into(),
        group_instance_id: None,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        assignments: assignments
            .iter()
            .map(|(m, a)| (m.to_string(), Bytes::copy_from_slice(a)))
            .collect(),
    }
}

fn spawn_join(
    groups: &Arc<GroupCoordinator>,
    req: JoinRequest,
) -> tokio::task::JoinHandle<JoinOutcome> {
    let groups = groups.clone();
    tokio::spawn(async move { groups.join_group(req).await })
}

fn spawn_sync(
    groups: &Arc<GroupCoordinator>,
    req: SyncRequest,
) -> tokio::task::JoinHandle<SyncOutcome> {
    let groups = groups.clone();
    tokio::spawn(async move { groups.sync_group(req).await })
}

/// Wait (with a deadline) until `group` has `members` members, counting
/// joins still waiting for the rebalance to complete.
async fn wait_members(groups: &GroupCoordinator, group: &str, members: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while groups
        .describe_group(group)
        .expect("describes")
        .members
        .len()
        != members
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{group} never had {members} members"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn state(groups: &GroupCoordinator, group: &str) -> &'static str {
    groups.describe_group(group).expect("describes").state
}

/// One member joins an empty group and syncs: generation 1, Stable.
async fn single_member_group(groups: &Arc<GroupCoordinator>, group: &str) -> String {
    let joined = groups.join_group(join(group, "")).await;
    assert_eq!(joined.error, code::NONE);
    assert_eq!(joined.generation_id, 1);
    let synced = groups
        .sync_group(sync(
            group,
            &joined.member_id,
            1,
            &[(&joined.member_id, b"a1")],
        ))
        .await;
    assert_eq!(synced.error, code::NONE);
    joined.member_id
}

#[tokio::test]
async fn new_member_gets_member_id_required_then_leads_generation_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path(), |_| {});
    let mut first = join("g", "");
    first.require_known_member_id = true;
    let outcome = node.groups.join_group(first.clone()).await;
    assert_eq!(outcome.error, code::MEMBER_ID_REQUIRED);
    assert!(outcome.member_id.starts_with("client-"));
    assert_eq!(state(&node.groups, "g"), "Empty");

    let mut second = first;
    second.member_id = outcome.member_id.clone();
    let joined = node.groups.join_group(second).await;
    assert_eq!(joined.error, code::NONE);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader_id, outcome.member_id);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    assert_eq!(joined.members.len(), 1);
    assert_eq!(state(&node.groups, "g"), "CompletingRebalance");

    let synced = node
        .groups
        .sync_group(sync(
            "g",
            &joined.member_id,
            1,
            &[(&joined.member_id, b"mine")],
        ))
        .await;
    assert_eq!(synced.error, code::NONE);
    assert_eq!(synced.assignment.as_ref(), b"mine");
    assert_eq!(state(&node.groups, "g"), "Stable");
    assert_eq!(
        node.groups.heartbeat("g", &joined.member_id, None, 1),
        code::NONE
    );
    node.groups.shutdown().await;
}

#[tokio::test]
async fn second_member_triggers_a_rebalance_both_get_the_new_generation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path(), |_| {});
    let a = single_member_group(&node.groups, "g").await;

    let b_join = spawn_join(&node.groups, join("g", ""));
    wait_members(&node.groups, "g", 2).await;
    assert_eq!(state(&node.groups, "g"), "PreparingRebalance");
    assert_eq!(
        node.groups.heartbeat("g", &a, None, 1),
        code::REBALANCE_IN_PROGRESS
    );
    // Commits are still accepted while preparing.
    let a_join = spawn_join(&node.groups, join("g", &a));
    let (a_out, b_out) = (
        a_join.await.expect("a joins"),
        b_join.await.expect("b joins"),
    );
    assert_eq!((a_out.error, b_out.error), (code::NONE, code::NONE));
    assert_eq!((a_out.generation_id, b_out.generation_id), (2, 2));
    assert_eq!(a_out.leader_id, a);
    assert_eq!(a_out.members.len(), 2);
    assert!(b_out.members.is_empty());

    // The follower waits for the leader's assignment.
    let b_sync = spawn_sync(&node.groups, sync("g", &b_out.member_id, 2, &[]));
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!b_sync.is_finished());
    let a_sync = node
        .groups
        .sync_group(sync("g", &a, 2, &[(&a, b"pa"), (&b_out.member_id, b"pb")]))
        .await;
    assert_eq!(a_sync.assignment.as_ref(), b"pa");
    assert_eq!(b_sync.await.expect("b syncs").assignment.as_ref(), b"pb");
    assert_eq!(state(&node.groups, "g"), "Stable");
    // An old generation is refused.
    assert_eq!(
        node.groups.heartbeat("g", &a, None, 1),
        code::ILLEGAL_GENERATION
    );
    assert_eq!(
        node.groups.heartbeat("g", "nobody", None, 2),
        code::UNKNOWN_MEMBER_ID
    );
    node.groups.shutdown().await;
}

#[tokio::test]
async fn leaving_members_rebalance_the_group_and_the_last_one_empties_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path(), |_| {});
    let a = single_member_group(&node.groups, "g").await;
    let b_join = spawn_join(&node.groups, join("g", ""));
    wait_members(&node.groups, "g", 2).await;
    let a_out = node.groups.join_group(join("g", &a)).await;
    let b_out = b_join.await.expect("joins");
    assert_eq!(a_out.generation_id, 2);

    let (error, errors) = node
        .groups
        .leave_group("g", &[(b_out.member_id.clone(), None)]);
    assert_eq!((error, errors), (code::NONE, vec![code::NONE]));
    assert_eq!(state(&node.groups, "g"), "PreparingRebalance");
    let a_again = node.groups.join_group(join("g", &a)).await;
    assert_eq!((a_again.generation_id, a_again.members.len()), (3, 1));

    let (_, errors) = node
        .groups
        .leave_group("g", &[(a.clone(), None), ("ghost".into(), None)]);
    assert_eq!(errors, vec![code::NONE, code::UNKNOWN_MEMBER_ID]);
    assert_eq!(state(&node.groups, "g"), "Empty");
    node.groups.shutdown().await;
}

#[tokio::test]
async fn a_silent_member_expires_after_its_session_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path(), |_| {});
    let mut a_req = join("g", "");
    a_req.session_timeout_ms = 5_000;
    let a_out = node.groups.join_group(a_req.clone()).await;
    let a = a_out.member_id.clone();
    node.groups.sync_group(sync("g", &a, 1, &[])).await;
    let mut b_req = join("g", "");
    b_req.session_timeout_ms = 200;
    let b_join = spawn_join(&node.groups, b_req);
    wait_members(&node.groups, "g", 2).await;
    a_req.member_id = a.clone();
    let a2 = node.groups.join_group(a_req.clone()).await;
    let b_out = b_join.await.expect("joins");
    assert_eq!(a2.generation_id, 2);
    let b_sync = spawn_sync(&node.groups, sync("g", &b_out.member_id, 2, &[]));
    node.groups.sync_group(sync("g", &a, 2, &[])).await;
    b_sync.await.expect("b syncs");

    // Only a heartbeats; b's 200 ms session runs out.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let error = node.groups.heartbeat("g", &a, None, 2);
        if error == code::REBALANCE_IN_PROGRESS {
            break;
        }
        assert_eq!(error, code::NONE);
        assert!(tokio::time::Instant::now() < deadline, "b never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let a3 = node.groups.join_group(a_req).await;
    assert_eq!((a3.generation_id, a3.members.len()), (3, 1));
    node.groups.shutdown().await;
}

#[tokio::test]
async fn a_restarted_static_member_gets_its_assignment_back_without_a_rebalance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path(), |_| {});
    let mut a_req = join("g", "");
    a_req.group_instance_id = Some("instance-a".into());
    let mut b_req = join("g", "");
    b_req.group_instance_id = Some("instance-b".into());
    let a_out = node.groups.join_group(a_req.clone()).await;
    let a = a_out.member_id.clone();
    node.groups.sync_group(sync("g", &a, 1, &[])).await;
    let b_join = spawn_join(&node.groups, b_req.clone());
    wait_members(&node.groups, "g", 2).await;
    let mut a_rejoin = a_req.clone();
    a_rejoin.member_id = a.clone();
    node.groups.join_group(a_rejoin).await;
    let b = b_join.await.expect("joins").member_id;
    let b_sync = spawn_sync(&node.groups, sync("g", &b, 2, &[]));
    node.groups
        .sync_group(sync("g", &a, 2, &[(&a, b"pa"), (&b, b"pb")]))
        .await;
    assert_eq!(b_sync.await.expect("syncs").assignment.as_ref(), b"pb");

    // b restarts: same instance id, no member id.
    let b_restarted = node.groups.join_group(b_req).await;
    assert_eq!(b_restarted.error, code::NONE);
    assert_eq!(b_restarted.generation_id, 2, "no new generation");
    assert_ne!(b_restarted.member_id, b);
    assert_eq!(state(&node.groups, "g"), "Stable");
    assert_eq!(
        node.groups.heartbeat("g", &a, Some("instance-a"), 2),
        code::NONE
    );
    // The old incarnation is fenced.
    assert_eq!(
        node.groups.heartbeat("g", &b, Some("instance-b"), 2),
        code::FENCED_INSTANCE_ID
    );
    let mut resync = sync("g", &b_restarted.member_id, 2, &[]);
    resync.group_instance_id = Some("instance-b".into());
    assert_eq!(
        node.groups.sync_group(resync).await.assignment.as_ref(),
        b"pb"
    );

    // A static member can be removed by its instance id alone.
    let (_, errors) = node
        .groups
        .leave_group("g", &[(String::new(), Some("instance-b".into()))]);
    assert_eq!(errors, vec![code::NONE]);
    assert_eq!(state(&node.groups, "g"), "PreparingRebalance");
    node.groups.shutdown().await;
}

#[tokio::test]
async fn the_initial_delay_gathers_members_starting_together_into_one_generation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path(), |s| {
        s.initial_rebalance_delay = Duration::from_millis(150)
    });
    let a = spawn_join(&node.groups, join("g", ""));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let b = spawn_join(&node.groups, join("g", ""));
    let (a, b) = (a.await.expect("a joins"), b.await.expect("b joins"));
    assert_eq!((a.generation_id, b.generation_id), (1, 1));
    assert_eq!(a.members.len() + b.members.len(), 2, "the leader sees both");
    node.groups.shutdown().await;
}

#[tokio::test]
async fn a_member_that_does_not_rejoin_within_the_rebalance_timeout_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path(), |_| {});
    let mut quick = join("g", "");
    quick.rebalance_timeout_ms = 300;
    let a = node.groups.join_group(quick.clone()).await.member_id;
    node.groups.sync_group(sync("g", &a, 1, &[])).await;
    let b_join = spawn_join(&node.groups, quick.clone());
    wait_members(&node.groups, "g", 2).await;
    quick.member_id = a.clone();
    let a2 = spawn_join(&node.groups, quick);
    let b_out = b_join.await.expect("b joins");
    let b = b_out.member_id.clone();
    let b_sync = spawn_sync(&node.groups, sync("g", &b, 2, &[]));
    let a_out = a2.await.expect("a joins");
    node.groups.sync_group(sync("g", &a, 2, &[])).await;
    b_sync.await.expect("b syncs");
    assert_eq!(a_out.generation_id, 2);

    // A third member arrives; a rejoins, b keeps heartbeating but never rejoins.
    let mut c_req = join("g", "");
    c_req.rebalance_timeout_ms = 300;
    let c_join = spawn_join(&node.groups, c_req);
    wait_members(&node.groups, "g", 3).await;
    assert_eq!(
        node.groups.heartbeat("g", &b, None, 2),
        code::REBALANCE_IN_PROGRESS
    );
    let mut a_again = join("g", &a);
    a_again.rebalance_timeout_ms = 300;
    let a3 = node.groups.join_group(a_again).await;
    let c = c_join.await.expect("c joins");
    assert_eq!((a3.generation_id, c.generation_id), (3, 3));
    let members: Vec<&str> = a3.members.iter().map(|m| m.member_id.as_str()).collect();
    assert!(
        !members.contains(&b.as_str()) && members.len() == 2,
        "{members:?}"
    );
    assert_eq!(
        node.groups.heartbeat("g", &b, None, 2),
        code::UNKNOWN_MEMBER_ID
    );
    node.groups.shutdown().await;
}

#[tokio::test]
async fn protocols_must_be_common_and_session_timeouts_in_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path(), |s| s.min_session_timeout_ms = 1000);
    single_member_group(&node.groups, "g").await;
    let mut other = join("g", "");
    other.protocols = vec![("roundrobin".into(), Bytes::new())];
    assert_eq!(
        node.groups.join_group(other).await.error,
        code::INCONSISTENT_GROUP_PROTOCOL
    );
    let mut short = join("g", "");
    short.session_timeout_ms = 999;
    assert_eq!(
        node.groups.join_group(short).await.error,
        code::INVALID_SESSION_TIMEOUT
    );
    assert_eq!(
        node.groups.join_group(join("", "")).await.error,
        code::INVALID_GROUP_ID
    );
    assert_eq!(
        node.groups.join_group(join("nope", "m")).await.error,
        code::UNKNOWN_MEMBER_ID
    );
    node.groups.shutdown().await;
}

fn commit(
    group: &str,
    member: &str,
    generation: i32,
    topic: &str,
    offsets: &[(i32, i64)],
) -> CommitRequest {
    CommitRequest {
        group_id: group.into(),
        member_id: member.into(),
        group_instance_id: None,
        generation_id: generation,
        partitions: offsets
            .iter()
            .map(|(p, o)| PartitionCommit {
                topic: topic.into(),
                partition: *p,
                offset: *o,
                leader_epoch: 3,
                metadata: Some(format!("m{o}")),
            })
            .collect(),
    }
}

fn fetched(
    groups: &GroupCoordinator,
    group: &str,
    topic: &str,
    partition: i32,
) -> Option<OffsetValue> {
    let found = groups
        .fetch_offsets(group, Some(vec![(topic.into(), vec![partition])]))
        .expect("fetches");
    found
        .into_iter()
        .next()
        .and_then(|(_, ps)| ps.into_iter().next())
        .and_then(|(_, v)| v)
}

fn produce(broker: &Broker, topic: &str, partition: i32, records: usize) {
    let log = broker
        .topic(topic)
        .and_then(|t| t.partition(partition))
        .expect("partition");
    let kvs: Vec<_> = (0..records)
        .map(|i| (Bytes::from(format!("k{i}")), Some(Bytes::from_static(b"v"))))
        .collect();
    let bytes = encode_batch(&kvs, 1).expect("encodes");
    log.append(split_and_validate(&bytes, 1 << 20).expect("valid"), false)
        .expect("appends");
}

#[tokio::test]
async fn committed_offsets_and_membership_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path(), |_| {});
    node.broker
        .create_topic("t", 3, -1, BTreeMap::new(), false)
        .expect("topic");
    // A group that only stores offsets commits with generation -1.
    let errors = node
        .groups
        .commit_offsets(commit("solo", "", -1, "t", &[(0, 5), (1, 7)]))
        .await;
    assert_eq!(errors, vec![code::NONE, code::NONE]);
    assert_eq!(
        node.groups
            .commit_offsets(commit("solo", "", 4, "t", &[(0, 6)]))
            .await,
        vec![code::UNKNOWN_MEMBER_ID]
    );
    assert_eq!(
        node.groups
            .commit_offsets(commit("other", "", 4, "t", &[(0, 6)]))
            .await,
        vec![code::ILLEGAL_GENERATION]
    );
    assert_eq!(
        node.groups
            .commit_offsets(commit("solo", "", -1, "missing", &[(0, 1)]))
            .await,
        vec![code::UNKNOWN_TOPIC_OR_PARTITION]
    );
    let member = single_member_group(&node.groups, "g").await;
    assert_eq!(
        node.groups
            .commit_offsets(commit("g", &member, 1, "t", &[(2, 42)]))
            .await,
        vec![code::NONE]
    );
    assert_eq!(
        node.groups
            .commit_offsets(commit("g", &member, 0, "t", &[(2, 43)]))
            .await,
        vec![code::ILLEGAL_GENERATION]
    );
    let v = fetched(&node.groups, "solo", "t", 1).expect("committed");
    assert_eq!(
        (v.offset, v.leader_epoch, v.metadata.as_str()),
        (7, 3, "m7")
    );
    assert_eq!(fetched(&node.groups, "solo", "t", 2), None);
    node.groups.shutdown().await;
    drop(node);

    let node = open(dir.path(), |_| {});
    assert_eq!(
        fetched(&node.groups, "solo", "t", 0).map(|v| v.offset),
        Some(5)
    );
    assert_eq!(
        fetched(&node.groups, "solo", "t", 1).map(|v| v.offset),
        Some(7)
    );
    assert_eq!(
        fetched(&node.groups, "g", "t", 2).map(|v| v.offset),
        Some(42)
    );
    // The member is back, in the same generation, and can carry on.
    let d = node.groups.describe_group("g").expect("describes");
    assert_eq!(
        (d.state, d.members.len(), d.protocol.as_str()),
        ("Stable", 1, "range")
    );
    assert_eq!(d.members[0].assignment.as_ref(), b"a1");
    assert_eq!(node.groups.heartbeat("g", &member, None, 1), code::NONE);
    let all = node.groups.fetch_offsets("solo", None).expect("fetches");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].1.len(), 2);
    node.groups.shutdown().await;
}

#[tokio::test]
async fn deleting_groups_and_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path(), |_| {});
    node.broker
        .create_topic("t", 2, -1, BTreeMap::new(), false)
        .expect("topic");
    node.broker
        .create_topic("u", 1, -1, BTreeMap::new(), false)
        .expect("topic");
    let member = single_member_group(&node.groups, "busy").await;
    node.groups
        .commit_offsets(commit("busy", &member, 1, "u", &[(0, 1)]))
        .await;
    node.groups
        .commit_offsets(commit("idle", "", -1, "t", &[(0, 1), (1, 2)]))
        .await;

    assert_eq!(
        node.groups
            .delete_groups(&["busy".into(), "idle".into(), "never".into()])
            .await,
        vec![code::NON_EMPTY_GROUP, code::NONE, code::GROUP_ID_NOT_FOUND]
    );
    assert_eq!(fetched(&node.groups, "idle", "t", 0), None);
    assert_eq!(
        node.groups.describe_group("idle").expect("describes").state,
        "Dead"
    );

    // OffsetDelete: a topic the group consumes ("sub" is not a readable
    // subscription, so every topic counts as consumed) is refused.
    let result = node
        .groups
        .delete_offsets("busy", vec![("u".into(), vec![0])])
        .expect("deletes");
    assert_eq!(result[0].1, vec![(0, code::GROUP_SUBSCRIBED_TO_TOPIC)]);
    let _ = node.groups.leave_group("busy", &[(member, None)]);
    let result = node
        .groups
        .delete_offsets("busy", vec![("u".into(), vec![0])])
        .expect("deletes");
    assert_eq!(result[0].1, vec![(0, code::NONE)]);
    assert_eq!(fetched(&node.groups, "busy", "u", 0), None);
    assert_eq!(
        node.groups.delete_offsets("never", vec![]).err().map(Err),
        Some(code::GROUP_ID_NOT_FOUND)
    );
    node.groups.shutdown().await;
}

#[tokio::test]
async fn offsets_of_deleted_topics_and_expired_offsets_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path(), |s| {
        s.offsets_retention = Duration::from_secs(60)
    });
    node.broker
        .create_topic("t", 1, -1, BTreeMap::new(), false)
        .expect("topic");
    node.broker
        .create_topic("gone", 1, -1, BTreeMap::new(), false)
        .expect("topic");
    node.groups
        .commit_offsets(commit("a", "", -1, "t", &[(0, 1)]))
        .await;
    node.groups
        .commit_offsets(commit("a", "", -1, "gone", &[(0, 1)]))
        .await;
    node.broker.delete_topic("gone").expect("deletes");
    assert_eq!(node.groups.on_topic_deleted("gone"), 1);
    assert_eq!(fetched(&node.groups, "a", "gone", 0), None);
    assert_eq!(
        node.groups.cleanup_offsets(now_ms()),
        0,
        "nothing expired yet"
    );
    assert_eq!(node.groups.cleanup_offsets(now_ms() + 61_000), 1);
    assert!(
        node.groups.list_groups(&[]).is_empty(),
        "the empty group died with its offsets"
    );
    node.groups.shutdown().await;
    drop(node);
    let node = open(dir.path(), |_| {});
    assert!(
        node.groups.list_groups(&[]).is_empty(),
        "and stays dead after a restart"
    );
    node.groups.shutdown().await;
}

#[tokio::test]
async fn lag_is_log_end_minus_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path(), |_| {});
    node.broker
        .create_topic("t", 2, -1, BTreeMap::new(), false)
        .expect("topic");
    produce(&node.broker, "t", 0, 10);
    produce(&node.broker, "t", 1, 4);
    node.groups
        .commit_offsets(commit("g", "", -1, "t", &[(0, 3), (1, 4)]))
        .await;
    let lag = node.groups.lag("g");
    assert_eq!(
        lag.iter()
            .map(|l| (l.partition, l.committed, l.log_end_offset, l.lag))
            .collect::<Vec<_>>(),
        vec![(0, 3, 10, 7), (1, 4, 4, 0)]
    );
    assert!(node.groups.lag("nope").is_empty());
    node.groups.shutdown().await;
}

#[tokio::test]
async fn list_groups_filters_by_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path(), |_| {});
    node.broker
        .create_topic("t", 1, -1, BTreeMap::new(), false)
        .expect("topic");
    single_member_group(&node.groups, "stable").await;
    node.groups
        .commit_offsets(commit("empty", "", -1, "t", &[(0, 1)]))
        .await;
    let all: Vec<_> = node
        .groups
        .list_groups(&[])
        .into_iter()
        .map(|g| (g.group_id, g.state))
        .collect();
    assert_eq!(
        all,
        vec![("empty".into(), "Empty"), ("stable".into(), "Stable")]
    );
    let stable = node.groups.list_groups(&["stable".into()]);
    assert_eq!(stable.len(), 1);
    assert_eq!(stable[0].protocol_type, "consumer");
    node.groups.shutdown().await;
}

#[tokio::test]
async fn shutdown_answers_waiting_joins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path(), |_| {});
    let a = single_member_group(&node.groups, "g").await;
    let b_join = spawn_join(&node.groups, join("g", ""));
    wait_members(&node.groups, "g", 2).await;
    assert!(!b_join.is_finished());
    node.groups.shutdown().await;
    assert_eq!(b_join.await.expect("answered").error, code::NOT_COORDINATOR);
    assert_eq!(
        node.groups.heartbeat("g", &a, None, 1),
        code::COORDINATOR_NOT_AVAILABLE
    );
}

fn encodes<T: Encodable>(body: &T, version: i16, what: &str) {
    let mut buf = bytes::BytesMut::new();
    body.encode(&mut buf, version)
        .unwrap_or_else(|e| panic!("{what} v{version} does not encode: {e}"));
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

#[tokio::test]
async fn every_response_encodes_at_every_supported_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path(), |_| {});
    let groups = &node.groups;
    node.broker
        .create_topic("t", 2, -1, BTreeMap::new(), false)
        .expect("topic");
    let txns = crate::txn::TransactionCoordinator::start_local(
        crate::partition::Partitions::local(node.broker.clone()),
        crate::txn::TxnSettings::from_config(&node.broker.config),
    )
    .expect("transaction coordinator starts");
    let range = |api| crate::kafka::supported_range(api).expect("supported");
    let client = api::ClientInfo {
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
    };
    let mut members = Vec::new();
    let (lo, hi) = range(ApiKey::JoinGroup);
    for v in lo..=hi {
        let group = format!("enc-{v}");
        let mut req = JoinGroupRequest::default();
        req.group_id = GroupId(sb(&group));
        req.session_timeout_ms = 10_000;
        req.rebalance_timeout_ms = 10_000;
        req.protocol_type = sb("consumer");
        req.group_instance_id = (v >= 5).then(|| sb("static"));
        let mut p = join_group_request::JoinGroupRequestProtocol::default();
        p.name = sb("range");
        req.protocols = vec![p];
        let mut resp = api::join_group(groups, req.clone(), v, &client).await;
        if resp.error_code == wire::MEMBER_ID_REQUIRED {
            encodes(&resp, v, "JoinGroup (member id required)");
            req.member_id = resp.member_id.clone();
            resp = api::join_group(groups, req, v, &client).await;
        }
        assert_eq!(resp.error_code, wire::NONE, "join v{v}");
        encodes(&resp, v, "JoinGroup");
        members.push((group, resp.member_id.to_string()));
    }
    let (lo, hi) = range(ApiKey::SyncGroup);
    for v in lo..=hi {
        let (group, member) = &members[v as usize];
        let mut req = SyncGroupRequest::default();
        req.group_id = GroupId(sb(group));
        req.generation_id = 1;
        req.member_id = sb(member);
        let resp = api::sync_group(groups, req, v).await;
        assert_eq!(resp.error_code, wire::NONE, "sync v{v}");
        encodes(&resp, v, "SyncGroup");
    }
    let (lo, hi) = range(ApiKey::Heartbeat);
    for v in lo..=hi {
        let mut req = HeartbeatRequest::default();
        req.group_id = GroupId(sb(&members[0].0));
        req.member_id = sb(&members[0].1);
        req.generation_id = 1;
        encodes(&api::heartbeat(groups, req, v), v, "Heartbeat");
    }
    let (lo, hi) = range(ApiKey::FindCoordinator);
    for v in lo..=hi {
        let mut req = FindCoordinatorRequest::default();
        req.key = sb("g");
        req.coordinator_keys = vec![sb("g"), sb("h")];
        encodes(
            &api::find_coordinator(groups, &txns, req.clone(), v),
            v,
            "FindCoordinator",
        );
        req.key_type = 1;
        encodes(
            &api::find_coordinator(groups, &txns, req, v),
            v,
            "FindCoordinator (txn)",
        );
    }
    let (lo, hi) = range(ApiKey::DescribeGroups);
    for v in lo..=hi {
        let mut req = DescribeGroupsRequest::default();
        req.groups = members
            .iter()
            .map(|(g, _)| GroupId(sb(g)))
            .chain([GroupId(sb("none"))])
            .collect();
        let resp = api::describe_groups(groups, req, v);
        assert_eq!(resp.groups[0].group_state.as_str(), "Stable");
        encodes(&resp, v, "DescribeGroups");
    }
    let (lo, hi) = range(ApiKey::ListGroups);
    for v in lo..=hi {
        let mut req = ListGroupsRequest::default();
        if v >= 4 {
            req.states_filter = vec![sb("Stable")];
        }
        let resp = api::list_groups(groups, req, v);
        assert!(resp.groups.len() >= 6, "list v{v}");
        encodes(&resp, v, "ListGroups");
    }
    let (lo, hi) = range(ApiKey::OffsetCommit);
    for v in lo..=hi {
        let mut req = OffsetCommitRequest::default();
        req.group_id = GroupId(sb(&members[0].0));
        req.member_id = sb(&members[0].1);
        req.generation_id_or_member_epoch = 1;
        let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
        t.name = TopicName(sb("t"));
        let mut p = offset_commit_request::OffsetCommitRequestPartition::default();
        p.committed_offset = 10 + v as i64;
        p.committed_metadata = Some(sb("meta"));
        t.partitions = vec![p];
        req.topics = vec![t];
        let resp = api::offset_commit(groups, req, v).await;
        assert_eq!(
            resp.topics[0].partitions[0].error_code,
            wire::NONE,
            "commit v{v}"
        );
        encodes(&resp, v, "OffsetCommit");
    }
    let (lo, hi) = range(ApiKey::OffsetFetch);
    for v in lo..=hi {
        let mut req = OffsetFetchRequest::default();
        let mut t = offset_fetch_request::OffsetFetchRequestTopic::default();
        t.name = TopicName(sb("t"));
        t.partition_indexes = vec![0, 1];
        if v >= 8 {
            let mut g = offset_fetch_request::OffsetFetchRequestGroup::default();
            g.group_id = GroupId(sb(&members[0].0));
            g.topics = None;
            req.groups = vec![g];
        } else {
            req.group_id = GroupId(sb(&members[0].0));
            req.topics = Some(vec![t]);
        }
        let resp = api::offset_fetch(groups, req, v);
        let committed = if v >= 8 {
            resp.groups[0].topics[0].partitions[0].committed_offset
        } else {
            resp.topics[0].partitions[0].committed_offset
        };
        assert_eq!(committed, 19, "fetch v{v}");
        encodes(&resp, v, "OffsetFetch");
    }
    let (lo, hi) = range(ApiKey::LeaveGroup);
    for v in lo..=hi {
        let (group, member) = &members[v as usize];
        let mut req = LeaveGroupRequest::default();
        req.group_id = GroupId(sb(group));
        if v >= 3 {
            let mut m = leave_group_request::MemberIdentity::default();
            m.member_id = sb(member);
            req.members = vec![m];
        } else {
            req.member_id = sb(member);
        }
        let resp = api::leave_group(groups, req, v);
        assert_eq!(resp.error_code, wire::NONE, "leave v{v}");
        encodes(&resp, v, "LeaveGroup");
    }
    let mut req = OffsetDeleteRequest::default();
    req.group_id = GroupId(sb(&members[0].0));
    let mut t = offset_delete_request::OffsetDeleteRequestTopic::default();
    t.name = TopicName(sb("t"));
    let mut p = offset_delete_request::OffsetDeleteRequestPartition::default();
    p.partition_index = 0;
    t.partitions = vec![p];
    req.topics = vec![t];
    encodes(&api::offset_delete(groups, req), 0, "OffsetDelete");
    let (lo, hi) = range(ApiKey::DeleteGroups);
    for v in lo..=hi {
        let mut req = DeleteGroupsRequest::default();
        req.groups_names = vec![GroupId(sb(&members[v as usize].0)), GroupId(sb("none"))];
        let resp = api::delete_groups(groups, req).await;
        assert_eq!(resp.results[1].error_code, wire::GROUP_ID_NOT_FOUND);
        encodes(&resp, v, "DeleteGroups");
    }
    node.groups.shutdown().await;
}

fn share_heartbeat(group: &str, member: &str, epoch: i32) -> share::ShareHeartbeat {
    share::ShareHeartbeat {
        group_id: group.into(),
        member_id: member.into(),
        member_epoch: epoch,
        subscribed_topic_names: Some(vec!["t".into()]),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        ..Default::default()
    }
}

fn share_fetch(
    member: &str,
    epoch: i32,
    topic_id: uuid::Uuid,
    acks: Vec<(i64, i64, i8)>,
) -> share::fetch::ShareFetchRequest {
    share::fetch::ShareFetchRequest {
        // One connection per member, numbered by its first letter.
        connection: connection_of(member),
        group_id: "sg".into(),
        member_id: member.into(),
        session_epoch: epoch,
        fetch: true,
        max_wait: Duration::ZERO,
        max_bytes: 1 << 20,
        max_records: 500,
        partitions: vec![share::fetch::RequestPartition {
            topic_id,
            partition: 0,
            acks: acks
                .into_iter()
                .map(|(first_offset, last_offset, t)| share::fetch::AckBatch {
                    first_offset,
                    last_offset,
                    types: vec![t],
                })
                .collect(),
        }],
        forgotten: Vec::new(),
    }
}

fn connection_of(member: &str) -> u64 {
    member.bytes().next().map_or(0, u64::from)
}

/// (first, last, delivery count) of each acquired range of partition 0.
fn acquired(answer: &share::fetch::ShareFetchAnswer) -> Vec<(i64, i64, i16)> {
    answer
        .partitions
        .iter()
        .flat_map(|p| p.acquired.iter())
        .map(|a| (a.first_offset, a.last_offset, a.delivery_count))
        .collect()
}

#[tokio::test]
async fn share_group_members_share_partitions_and_acknowledged_records_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path(), |_| {});
    node.broker
        .create_topic("t", 2, -1, BTreeMap::new(), false)
        .expect("topic");
    let topic_id = node.broker.topic("t").expect("topic").id;
    let a = node
        .groups
        .share_group_heartbeat(share_heartbeat("sg", "a", 0))
        .expect("a joins");
    let b = node
        .groups
        .share_group_heartbeat(share_heartbeat("sg", "b", 0))
        .expect("b joins");
    // Alone, a holds both partitions; with b in, the simple assignor gives
    // each one (a learns it at its next heartbeat).
    let every_partition = BTreeMap::from([(topic_id, vec![0, 1])]);
    assert_eq!(a.assignment.as_ref(), Some(&every_partition));
    assert_eq!(b.assignment, Some(BTreeMap::from([(topic_id, vec![1])])));
    let a_again = node
        .groups
        .share_group_heartbeat(share_heartbeat("sg", "a", a.member_epoch))
        .expect("a heartbeats");
    assert_eq!(
        a_again.assignment,
        Some(BTreeMap::from([(topic_id, vec![0])]))
    );
    assert_eq!(
        node.groups
            .share_group_heartbeat(share_heartbeat("sg", "a", 99)),
        Err(E::FencedMemberEpoch)
    );
    let described = node.groups.share_group_describe("sg").expect("describes");
    assert_eq!((described.state, described.members.len()), ("Stable", 2));
    let listed = node.groups.list_groups_of_types(&[], &["share".into()]);
    assert_eq!(
        listed
            .iter()
            .map(|g| (g.group_id.as_str(), g.group_type))
            .collect::<Vec<_>>(),
        vec![("sg", "share")]
    );

    // A new share-partition starts at the log end: records produced after it.
    let first = node
        .groups
        .share_fetch(share_fetch("a", 0, topic_id, vec![]))
        .await
        .expect("fetch");
    assert_eq!(acquired(&first), vec![]);
    produce(&node.broker, "t", 0, 6);
    let got_a = node
        .groups
        .share_fetch(share_fetch("a", 1, topic_id, vec![]))
        .await
        .expect("fetch");
    assert_eq!(acquired(&got_a), vec![(0, 5, 1)]);
    assert_eq!(
        node.groups
            .share_fetch(share_fetch("a", 1, topic_id, vec![]))
            .await
            .err(),
        Some(E::InvalidShareSessionEpoch)
    );
    // b gets nothing while a holds them.
    let got_b = node
        .groups
        .share_fetch(share_fetch("b", 0, topic_id, vec![]))
        .await
        .expect("fetch");
    assert_eq!(acquired(&got_b), vec![]);
    // a accepts 0-2, releases 3, rejects 4; 5 stays acquired.
    let mut ack = share_fetch("a", 2, topic_id, vec![(0, 2, 1), (3, 3, 2), (4, 4, 3)]);
    ack.fetch = false;
    let answer = node.groups.share_fetch(ack).await.expect("acknowledges");
    assert_eq!(answer.partitions.len(), 1);
    assert!(answer.partitions[0].ack_error.is_none());
    let got_b = node
        .groups
        .share_fetch(share_fetch("b", 1, topic_id, vec![]))
        .await
        .expect("fetch");
    assert_eq!(acquired(&got_b), vec![(3, 3, 2)]);
    // a's connection closes: its session closes with it, and 5 goes to b at
    // once (not when a's lock expires); a's next fetch finds no session.
    node.groups.share_connection_closed(connection_of("a"));
    let got_b = node
        .groups
        .share_fetch(share_fetch("b", 2, topic_id, vec![]))
        .await
        .expect("fetch");
    assert_eq!(acquired(&got_b), vec![(5, 5, 2)]);
    assert_eq!(
        node.groups
            .share_fetch(share_fetch("a", 3, topic_id, vec![]))
            .await
            .err(),
        Some(E::ShareSessionNotFound)
    );
    node.groups.shutdown().await;
    drop(node);

    // After a restart: 0-2 and 4 stay done; 3 and 5 are delivered again.
    let node = open(dir.path(), |_| {});
    node.groups
        .share_group_heartbeat(share_heartbeat("sg", "c", 0))
        .expect("c joins");
    let got_c = node
        .groups
        .share_fetch(share_fetch("c", 0, topic_id, vec![]))
        .await
        .expect("fetch");
    assert_eq!(acquired(&got_c), vec![(3, 3, 3), (5, 5, 3)]);
    node.groups.shutdown().await;
}

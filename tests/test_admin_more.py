"""The admin APIs of KRaft-era clients, through kafka-python's admin client
(and its requests sent to one chosen node):

- DescribeTopicPartitions (75): leader, replicas and ISR as Metadata has
  them, a page of `response_partition_limit` partitions with a cursor that
  the next page starts from, unknown topics refused.
- DescribeLogDirs (35): the node's one log directory by its absolute path,
  each replica's size on disk (grows by what was produced, 0 when empty),
  the file system's size as statvfs gives it, a topic filter.
- AlterReplicaLogDirs (34): the node's own directory is where the replica
  is already; any other path is LOG_DIR_NOT_FOUND.
- ElectLeaders (43): on one node the only replica leads already
  (ELECTION_NOT_NEEDED); in a cluster a preferred election gives the
  partition back to its first replica once it is in sync again after a
  restart (PREFERRED_LEADER_NOT_AVAILABLE while it is down).
- DescribeQuorum (55): one node is its own quorum; in a cluster every node
  reports the Raft leader, its term and the three voters alike.
- ListConfigResources (74): topics, brokers and groups, by type.
- With ACLs (`--authorizer acl`): a topic without Describe is refused by
  DescribeTopicPartitions, the authorized operations are the principal's,
  and the cluster APIs answer CLUSTER_AUTHORIZATION_FAILED.

The cluster runs with the controller's own preferred-leader restoration
slowed to an hour, so only ElectLeaders moves a leadership back. Every
process is ended by its PID after the test or module; waits poll against
a deadline.
"""

from __future__ import annotations

import os

import pytest
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                   ConfigResource, ResourceType)
from kafka import KafkaProducer, TopicPartitionReplica
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType
from kafka.admin import ResourcePattern, ResourceType as KafkaResourceType
from kafka.errors import ClusterAuthorizationFailedError, LogDirNotFoundError, NoError
from kafka.protocol.admin import DescribeQuorumRequest

from cluster import POLL, Cluster
from harness import unique_topic, wait_until

TIMEOUT = 30

# Kafka's error codes.
NONE = 0
UNKNOWN_TOPIC_OR_PARTITION = 3
TOPIC_AUTHORIZATION_FAILED = 29
CLUSTER_AUTHORIZATION_FAILED = 31
PREFERRED_LEADER_NOT_AVAILABLE = 80
ELECTION_NOT_NEEDED = 84

PREFERRED = 0
UNCLEAN = 1


def kafka_admin(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="sluice-admin-more",
                            request_timeout_ms=30_000)


def create_topic(admin: KafkaAdminClient, name: str, partitions: int, rf: int = 1) -> None:
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=rf)])


def election_codes(response) -> dict[tuple[str, int], int]:
    return {(r[0], p[0]): p[1] for r in response.replica_election_results for p in r[1]}


def quorum_from(admin: KafkaAdminClient, node_id: int) -> dict:
    """DescribeQuorum sent to node `node_id` itself."""
    request = DescribeQuorumRequest(topics=[DescribeQuorumRequest.TopicData(
        topic_name="__cluster_metadata",
        partitions=[DescribeQuorumRequest.TopicData.PartitionData(partition_index=0)])])

    async def ask():
        return await admin._manager.send(request, node_id=node_id)

    response = admin._manager.run(ask)
    assert response.error_code == NONE
    [topic] = response.topics
    [partition] = topic.partitions
    assert partition.error_code == NONE
    return {
        "leader_id": partition.leader_id,
        "leader_epoch": partition.leader_epoch,
        "high_watermark": partition.high_watermark,
        "voters": {v.replica_id: v.log_end_offset for v in partition.current_voters},
        "observers": [o.replica_id for o in partition.observers],
    }


# -- one node ----------------------------------------------------------------

@pytest.fixture
def node(fresh_broker):
    return fresh_broker()


def test_describe_topic_partitions_pages_follow_the_cursor(node):
    admin = kafka_admin(node.bootstrap)
    topic = unique_topic("dtp")
    create_topic(admin, topic, 5)
    whole = admin.describe_topic_partitions([topic])
    assert whole["next_cursor"] is None
    [t] = whole["topics"]
    assert (t["name"], t["error_code"], t["is_internal"]) == (topic, NONE, False)
    assert t["topic_id"] is not None and str(t["topic_id"]) != "00000000-0000-0000-0000-000000000000"
    metadata = admin.describe_topics([topic])[0]
    assert str(metadata["topic_id"]) == str(t["topic_id"])
    assert [p["partition_index"] for p in t["partitions"]] == [0, 1, 2, 3, 4]
    for p in t["partitions"]:
        assert p["leader_id"] == node.node_id
        assert p["replica_nodes"] == [node.node_id]
        assert p["isr_nodes"] == [node.node_id]
        assert p["leader_epoch"] >= 0
        assert not p["eligible_leader_replicas"] and not p["offline_replicas"]
    # No authorizer: every operation on the topic is allowed.
    assert t["topic_authorized_operations"] > 0

    pages, cursor = [], None
    while True:
        page = admin.describe_topic_partitions([topic], response_partition_limit=2,
                                               cursor=cursor)
        pages.append([p["partition_index"] for tt in page["topics"] for p in tt["partitions"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert cursor["topic_name"] == topic
        assert len(pages) < 10
    assert pages == [[0, 1], [2, 3], [4]]

    missing = admin.describe_topic_partitions([unique_topic("missing")])
    assert [t["error_code"] for t in missing["topics"]] == [UNKNOWN_TOPIC_OR_PARTITION]


def test_describe_log_dirs_reports_each_replica_size_and_the_volume(node):
    admin = kafka_admin(node.bootstrap)
    topic = unique_topic("logdirs")
    create_topic(admin, topic, 2)
    producer = KafkaProducer(bootstrap_servers=node.bootstrap, acks="all", linger_ms=5)
    payload = os.urandom(1000)
    for _ in range(200):
        producer.send(topic, payload, partition=0)
    producer.flush(TIMEOUT)
    producer.close()

    [answer] = admin.describe_log_dirs(brokers=[node.node_id])
    assert answer["broker"] == node.node_id
    [log_dir] = answer["log_dirs"]
    assert log_dir["error_code"] == NONE
    path = log_dir["log_dir"]
    assert os.path.isabs(path)
    assert path == os.path.realpath(node.data_dir / "logs")
    volume = os.statvfs(path)
    assert log_dir["total_bytes"] == volume.f_blocks * volume.f_frsize
    assert 0 < log_dir["usable_bytes"] <= log_dir["total_bytes"]
    assert abs(log_dir["usable_bytes"] - volume.f_bavail * volume.f_frsize) < 256 * 1024 * 1024
    sizes = {(t["name"], p["partition_index"]): p
             for t in log_dir["topics"] for p in t["partitions"]}
    assert sizes[(topic, 0)]["partition_size"] >= 200 * 1000
    assert sizes[(topic, 1)]["partition_size"] == 0
    for p in (sizes[(topic, 0)], sizes[(topic, 1)]):
        assert p["offset_lag"] == 0 and p["is_future_key"] is False

    [only] = admin.describe_log_dirs({topic: [1]}, brokers=[node.node_id])
    [d] = only["log_dirs"]
    assert [(t["name"], [p["partition_index"] for p in t["partitions"]])
            for t in d["topics"]] == [(topic, [1])]


def test_alter_replica_log_dirs_same_dir_is_done_another_is_not_found(node):
    admin = kafka_admin(node.bootstrap)
    topic = unique_topic("alterdir")
    create_topic(admin, topic, 1)
    [answer] = admin.describe_log_dirs(brokers=[node.node_id])
    path = answer["log_dirs"][0]["log_dir"]
    replica = TopicPartitionReplica(topic, 0, node.node_id)
    assert admin.alter_replica_log_dirs({replica: path}) == {replica: NoError}
    elsewhere = str(node.data_dir / "other-logs")
    assert admin.alter_replica_log_dirs({replica: elsewhere}) == {replica: LogDirNotFoundError}
    unknown = TopicPartitionReplica(topic, 7, node.node_id)
    result = admin.alter_replica_log_dirs({unknown: path})
    assert result[unknown].errno == UNKNOWN_TOPIC_OR_PARTITION


def test_elect_leaders_on_one_node_finds_the_only_replica_leading(node):
    admin = kafka_admin(node.bootstrap)
    topic = unique_topic("elect1")
    create_topic(admin, topic, 2)
    for kind in (PREFERRED, UNCLEAN):
        response = admin.elect_leaders(kind, {topic: [0, 1, 5]}, raise_errors=False)
        assert election_codes(response) == {
            (topic, 0): ELECTION_NOT_NEEDED,
            (topic, 1): ELECTION_NOT_NEEDED,
            (topic, 5): UNKNOWN_TOPIC_OR_PARTITION,
        }


def test_describe_quorum_on_one_node_is_itself_alone(node):
    admin = kafka_admin(node.bootstrap)
    quorum = admin.describe_metadata_quorum()
    [partition] = quorum["topics"][0]["partitions"]
    assert partition["error"] is None
    assert partition["leader_id"] == node.node_id
    assert [v["replica_id"] for v in partition["current_voters"]] == [node.node_id]
    assert partition["observers"] == []
    assert quorum_from(admin, node.node_id)["voters"] == {node.node_id: 0}


def test_list_config_resources_by_type(node):
    admin = kafka_admin(node.bootstrap)
    topic = unique_topic("configs")
    create_topic(admin, topic, 1)
    group = unique_topic("group")
    confluent = AdminClient({"bootstrap.servers": node.bootstrap})
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry("consumer.session.timeout.ms", "50000",
                    incremental_operation=AlterConfigOpType.SET)])
    confluent.incremental_alter_configs([resource])[resource].result(TIMEOUT)

    everything = admin.list_config_resources()
    assert everything["broker"] == [str(node.node_id)]
    assert topic in everything["topic"]
    assert group in everything["group"]
    only_topics = admin.list_config_resources(["TOPIC"])
    assert set(only_topics) == {"topic"} and topic in only_topics["topic"]


def test_acls_decide_what_each_admin_api_shows(fresh_broker):
    node = fresh_broker(["--authorizer", "acl", "--super-users", "User:ANONYMOUS",
                         "--shop", "false"])
    seen, hidden = unique_topic("acl-seen"), unique_topic("acl-hidden")
    admin = kafka_admin(node.bootstrap)
    create_topic(admin, seen, 2)
    create_topic(admin, hidden, 1)
    result = admin.create_acls([ACL(
        principal="User:ANONYMOUS", host="*", operation=ACLOperation.DESCRIBE,
        permission_type=ACLPermissionType.ALLOW,
        resource_pattern=ResourcePattern(KafkaResourceType.TOPIC, seen,
                                         ACLResourcePatternType.LITERAL))])
    assert not result["failed"], result
    admin.close()
    node.restart(["--authorizer", "acl", "--shop", "false"])

    admin = kafka_admin(node.bootstrap)
    described = {t["name"]: t for t in
                 admin.describe_topic_partitions([seen, hidden])["topics"]}
    assert described[hidden]["error_code"] == TOPIC_AUTHORIZATION_FAILED
    assert described[hidden]["partitions"] == []
    assert described[seen]["error_code"] == NONE
    assert len(described[seen]["partitions"]) == 2
    # Describe alone (Kafka's operation code 8).
    assert described[seen]["topic_authorized_operations"] == 1 << 8

    [answer] = admin.describe_log_dirs(brokers=[node.node_id])
    assert answer["log_dirs"] == []
    replica = TopicPartitionReplica(seen, 0, node.node_id)
    assert admin.alter_replica_log_dirs({replica: "/anywhere"}) == {
        replica: ClusterAuthorizationFailedError}
    response = admin.elect_leaders(PREFERRED, {seen: [0]}, raise_errors=False)
    assert response.error_code == CLUSTER_AUTHORIZATION_FAILED
    assert election_codes(response) == {(seen, 0): CLUSTER_AUTHORIZATION_FAILED}
    with pytest.raises(ClusterAuthorizationFailedError):
        admin.describe_metadata_quorum()
    with pytest.raises(ClusterAuthorizationFailedError):
        admin.list_config_resources()
    admin.close()


# -- three nodes -------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory):
    """Three nodes whose controller restores preferred leaders only hourly."""
    with Cluster(tmp_path_factory.mktemp("admin-more"), request,
                 extra_args=["--preferred-leader-interval-ms", "3600000"]) as nodes:
        yield nodes.start()


def test_cluster_every_node_reports_the_same_quorum(cluster):
    leader = cluster.raft_leader()
    admin = kafka_admin(cluster.live_bootstrap)
    term = cluster.raft(leader)["status"]["term"]
    answers = {i: quorum_from(admin, i) for i in cluster.ids}
    for i, q in answers.items():
        assert q["leader_id"] == leader, f"node {i}: {q}"
        assert q["leader_epoch"] == term
        assert set(q["voters"]) == set(cluster.ids)
        assert q["observers"] == []
        assert 0 <= q["high_watermark"] <= q["voters"][leader]


def test_cluster_describes_partitions_and_log_dirs_per_node(cluster):
    admin = kafka_admin(cluster.live_bootstrap)
    topic = unique_topic("cdtp")
    create_topic(admin, topic, 3, rf=2)
    image = cluster.wait_healthy(topic, 3, 2)
    parts = Cluster.partitions(image, topic)
    [t] = admin.describe_topic_partitions([topic])["topics"]
    for p in t["partitions"]:
        expected = parts[p["partition_index"]]
        assert p["leader_id"] == expected["leader"]
        assert p["replica_nodes"] == expected["replicas"]
        assert sorted(p["isr_nodes"]) == sorted(expected["isr"])
    for answer in admin.describe_log_dirs({topic: [0, 1, 2]}):
        hosted = sorted(i for i, part in enumerate(parts) if answer["broker"] in part["replicas"])
        [log_dir] = answer["log_dirs"]
        assert log_dir["log_dir"] == os.path.realpath(
            cluster.nodes[answer["broker"]].data_dir / "logs")
        listed = sorted(p["partition_index"] for tt in log_dir["topics"] for p in tt["partitions"])
        assert listed == hosted, answer
    brokers = admin.list_config_resources(["BROKER"])["broker"]
    assert sorted(brokers) == sorted(str(i) for i in cluster.ids)


def test_cluster_preferred_election_gives_leadership_back_to_the_first_replica(cluster):
    admin = kafka_admin(cluster.live_bootstrap)
    topic = unique_topic("elect3")
    create_topic(admin, topic, 3, rf=3)
    cluster.wait_healthy(topic, 3, 3)
    cluster.wait_preferred_leaders(topic)
    partitions = [0, 1, 2]
    response = admin.elect_leaders(PREFERRED, {topic: partitions}, raise_errors=False)
    assert set(election_codes(response).values()) == {ELECTION_NOT_NEEDED}

    preferred = Cluster.partitions(cluster.image(), topic)[0]["replicas"][0]
    cluster.kill9(preferred)
    cluster.wait_failed_over(topic, preferred)
    survivors = kafka_admin(cluster.live_bootstrap)
    response = survivors.elect_leaders(PREFERRED, {topic: [0]}, raise_errors=False)
    assert election_codes(response) == {(topic, 0): PREFERRED_LEADER_NOT_AVAILABLE}
    # A live leader needs no unclean election.
    response = survivors.elect_leaders(UNCLEAN, {topic: [0]}, raise_errors=False)
    assert election_codes(response) == {(topic, 0): ELECTION_NOT_NEEDED}
    survivors.close()

    cluster.restart(preferred)
    cluster.wait_registered()
    image = cluster.wait_healthy(topic, 3, 3)
    parts = Cluster.partitions(image, topic)
    moved = [i for i, p in enumerate(parts) if p["replicas"][0] == preferred]
    assert moved and all(parts[i]["leader"] != preferred for i in moved)

    admin = kafka_admin(cluster.live_bootstrap)
    codes = election_codes(admin.elect_leaders(PREFERRED, {topic: partitions},
                                               raise_errors=False))
    assert codes == {(topic, i): (NONE if i in moved else ELECTION_NOT_NEEDED)
                     for i in partitions}
    cluster.wait_preferred_leaders(topic)

    def described_leaders():
        [t] = admin.describe_topic_partitions([topic])["topics"]
        leaders = {p["partition_index"]: p["leader_id"] for p in t["partitions"]}
        return leaders if all(leaders[i] == parts[i]["replicas"][0] for i in partitions) else None
    wait_until(described_leaders, TIMEOUT, interval=POLL,
               what="clients see the preferred leaders again")

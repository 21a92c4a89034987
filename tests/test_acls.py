"""ACLs (`--authorizer acl`) with real clients and real processes.

Only User:ANONYMOUS connects over PLAINTEXT, so a test first starts the node
with `--super-users User:ANONYMOUS`, creates ACLs through the Admin API
(kafka-python and confluent-kafka), then restarts it without super users:
from then on the ACLs alone decide, and they were read back from disk. Other
client hosts are played by other loopback addresses (127.0.0.2), since an
ACL names a host too.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError
from confluent_kafka import Producer as CProducer
from confluent_kafka.admin import AclBinding, AclBindingFilter, AclOperation as COp
from confluent_kafka.admin import AclPermissionType as CPerm
from confluent_kafka.admin import AdminClient as CAdmin
from confluent_kafka.admin import ResourcePatternType as CPattern
from confluent_kafka.admin import ResourceType as CType
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
)
from kafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError
from kafka.structs import OffsetAndMetadata
from confluent_kafka import TopicCollection

import clients
import wire
from cluster import Cluster
from harness import unique_topic, wait_until

ANON = "User:ANONYMOUS"
# The shop is a Kafka client too (User:ANONYMOUS): it would need ACLs of its own.
SUPER = ["--authorizer", "acl", "--super-users", ANON, "--shop", "false"]
ENFORCE = ["--authorizer", "acl", "--shop", "false"]

DESCRIBE_ACLS = 29
TOPIC_AUTHORIZATION_FAILED = 29
GROUP_AUTHORIZATION_FAILED = 30
CLUSTER_AUTHORIZATION_FAILED = 31


def acl(resource_type, name, operation, permission=ACLPermissionType.ALLOW,
        pattern=ACLResourcePatternType.LITERAL, principal=ANON, host="*") -> ACL:
    return ACL(principal=principal, host=host, operation=operation, permission_type=permission,
               resource_pattern=ResourcePattern(resource_type, name, pattern))


def create_acls(bootstrap: str, acls: list[ACL]) -> None:
    admin = clients.admin(bootstrap)
    try:
        result = admin.create_acls(acls)
    finally:
        admin.close()
    assert not result["failed"], result


def produce_error(bootstrap: str, topic: str) -> str | None:
    """Produce one record with kafka-python: None when acknowledged, else
    the error's class name."""
    prod = clients.producer(bootstrap, retries=0, enable_idempotence=False)
    try:
        prod.send(topic, b"v", partition=0).get(timeout=30)
        return None
    except Exception as e:  # the error class is what is checked
        return type(e).__name__
    finally:
        prod.close(timeout=5)


def confluent_produce_error(bootstrap: str, topic: str) -> int | None:
    """Produce one record with confluent-kafka: None when delivered, else the
    delivery report's error code."""
    prod = CProducer({"bootstrap.servers": bootstrap, "enable.idempotence": False,
                      "message.timeout.ms": 20000, "retries": 0})
    errors = []
    prod.produce(topic, b"v", partition=0, on_delivery=lambda err, msg: errors.append(err))
    prod.flush(30)
    assert len(errors) == 1, "no delivery report within 30 s"
    return None if errors[0] is None else errors[0].code()


def assert_group_refused(consumer: KafkaConsumer) -> None:
    """Poll `consumer` (then close it) until its group is refused with
    GROUP_AUTHORIZATION_FAILED; fails after 30 s without it."""
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                consumer.poll(timeout_ms=500)
    finally:
        consumer.close()


def describe_acls_raw(conn: wire.Connection) -> tuple[int, set]:
    """DescribeAcls v1 with an ANY filter on one connection:
    (error_code, {(type, name, pattern, principal, host, op, perm)})."""
    body = (wire.int8(1) + wire.string(None) + wire.int8(1) + wire.string(None)
            + wire.string(None) + wire.int8(1) + wire.int8(1))
    r = conn.request(DESCRIBE_ACLS, 1, body)
    r.int32()  # throttle
    error = r.int16()
    r.string()
    found = set()
    for _ in range(max(r.int32(), 0)):
        rtype, name, pattern = r.int8(), r.string(), r.int8()
        for _ in range(r.int32()):
            found.add((rtype, name, pattern, r.string(), r.string(), r.int8(), r.int8()))
    return error, found


def test_topic_acls_decide_produce_prefixed_allow_grants_and_deny_wins(fresh_broker):
    node = fresh_broker(SUPER)
    base = unique_topic("acl")
    locked, granted, denied, hidden = (f"{base}-locked", f"{base}-ok-1", f"{base}-ok-denied",
                                       f"{base}-hidden")
    for t in (locked, granted, denied, hidden):
        clients.create_topic(node.bootstrap, t)
    # ANONYMOUS may keep changing ACLs, may DESCRIBE `locked` but not write it.
    create_acls(node.bootstrap, [
        acl(ResourceType.CLUSTER, "kafka-cluster", ACLOperation.ALTER),
        acl(ResourceType.CLUSTER, "kafka-cluster", ACLOperation.DESCRIBE),
        acl(ResourceType.TOPIC, locked, ACLOperation.DESCRIBE),
    ])
    admin = clients.admin(node.bootstrap)
    try:
        assert hidden in admin.list_topics(), "a super user sees every topic"
    finally:
        admin.close()

    node.restart(ENFORCE)
    # No WRITE on `locked`: both clients get TOPIC_AUTHORIZATION_FAILED.
    assert produce_error(node.bootstrap, locked) == TopicAuthorizationFailedError.__name__
    assert confluent_produce_error(node.bootstrap, locked) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert produce_error(node.bootstrap, granted) == TopicAuthorizationFailedError.__name__

    # A prefixed ALLOW grants every topic under it; a literal DENY wins over it.
    create_acls(node.bootstrap, [
        acl(ResourceType.TOPIC, f"{base}-ok-", ACLOperation.WRITE,
            pattern=ACLResourcePatternType.PREFIXED),
        acl(ResourceType.TOPIC, denied, ACLOperation.WRITE, permission=ACLPermissionType.DENY),
    ])
    assert produce_error(node.bootstrap, granted) is None
    assert confluent_produce_error(node.bootstrap, granted) is None
    assert produce_error(node.bootstrap, denied) == TopicAuthorizationFailedError.__name__
    assert confluent_produce_error(node.bootstrap, denied) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert produce_error(node.bootstrap, locked) == TopicAuthorizationFailedError.__name__

    # Metadata hides what the principal may not DESCRIBE (DENY of WRITE
    # does not deny DESCRIBE, which the prefixed WRITE implies).
    admin = clients.admin(node.bootstrap)
    try:
        listed = set(admin.list_topics())
    finally:
        admin.close()
    assert {locked, granted, denied} <= listed
    assert hidden not in listed

    # topic_authorized_operations / cluster_authorized_operations (librdkafka asks for them).
    cadmin = CAdmin({"bootstrap.servers": node.bootstrap})
    described = cadmin.describe_topics(TopicCollection([locked, granted]),
                                       include_authorized_operations=True)
    ops = {name: set(f.result(30).authorized_operations) for name, f in described.items()}
    assert ops[locked] == {COp.DESCRIBE}
    assert ops[granted] == {COp.WRITE, COp.DESCRIBE}
    cluster = cadmin.describe_cluster(include_authorized_operations=True).result(30)
    assert set(cluster.authorized_operations) == {COp.ALTER, COp.DESCRIBE}


def test_group_read_acl_governs_joining_a_group(fresh_broker):
    node = fresh_broker(SUPER)
    topic = unique_topic("acl-group")
    group = unique_topic("g")
    clients.create_topic(node.bootstrap, topic)
    clients.produce_values(node.bootstrap, topic, [b"a", b"b"])
    create_acls(node.bootstrap, [
        acl(ResourceType.CLUSTER, "kafka-cluster", ACLOperation.ALTER),
        acl(ResourceType.TOPIC, topic, ACLOperation.READ),
    ])
    node.restart(ENFORCE)

    def consumer():
        return KafkaConsumer(topic, bootstrap_servers=node.bootstrap, group_id=group,
                             auto_offset_reset="earliest", consumer_timeout_ms=20000,
                             request_timeout_ms=30000)

    assert_group_refused(consumer())

    create_acls(node.bootstrap, [acl(ResourceType.GROUP, group, ACLOperation.READ)])
    c = consumer()
    try:
        values = [m.value for m in c]
    finally:
        c.close()
    assert values == [b"a", b"b"]


def test_acls_are_created_described_and_deleted_with_both_admin_clients(fresh_broker):
    node = fresh_broker(SUPER)
    name = unique_topic("acl-admin")
    create_acls(node.bootstrap, [
        acl(ResourceType.TOPIC, name, ACLOperation.READ, principal="User:alice"),
        acl(ResourceType.TOPIC, name, ACLOperation.WRITE, principal="User:bob",
            host="10.0.0.1"),
    ])
    cadmin = CAdmin({"bootstrap.servers": node.bootstrap})
    prefixed = AclBinding(CType.TOPIC, f"{name}-", CPattern.PREFIXED, "User:carol", "*",
                          COp.DESCRIBE, CPerm.DENY)
    for f in cadmin.create_acls([prefixed]).values():
        f.result(30)

    admin = clients.admin(node.bootstrap)
    try:
        everything = ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
                               permission_type=ACLPermissionType.ANY,
                               resource_pattern=ResourcePatternFilter(
                                   ResourceType.ANY, None, ACLResourcePatternType.ANY))
        found, error = admin.describe_acls(everything)
        assert error.errno == 0
        assert {(a.principal, a.operation) for a in found} == {
            ("User:alice", ACLOperation.READ), ("User:bob", ACLOperation.WRITE),
            ("User:carol", ACLOperation.DESCRIBE)}
        # MATCH: the bindings that apply to a topic name (literal and prefixed).
        match = ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
                          permission_type=ACLPermissionType.ANY,
                          resource_pattern=ResourcePatternFilter(
                              ResourceType.TOPIC, f"{name}-x", ACLResourcePatternType.MATCH))
        found, _ = admin.describe_acls(match)
        assert [a.principal for a in found] == ["User:carol"]

        # Delete bob's by filter; the response names what it deleted.
        bob = ACLFilter(principal="User:bob", host=None, operation=ACLOperation.ANY,
                        permission_type=ACLPermissionType.ANY,
                        resource_pattern=ResourcePatternFilter(
                            ResourceType.ANY, None, ACLResourcePatternType.ANY))
        [(_, matched, error)] = admin.delete_acls([bob])
        assert error.errno == 0
        assert [(a.principal, a.host) for a in matched] == [("User:bob", "10.0.0.1")]
    finally:
        admin.close()

    # confluent-kafka sees the same and deletes the prefixed one.
    listed = cadmin.describe_acls(AclBindingFilter(CType.ANY, None, CPattern.ANY, None, None,
                                                   COp.ANY, CPerm.ANY)).result(30)
    assert sorted(b.principal for b in listed) == ["User:alice", "User:carol"]
    for f in cadmin.delete_acls([AclBindingFilter(CType.TOPIC, None, CPattern.PREFIXED, None,
                                                  None, COp.ANY, CPerm.ANY)]).values():
        assert [b.principal for b in f.result(30)] == ["User:carol"]

    # They survive a restart.
    node.restart(SUPER)
    with wire.Connection(node.bootstrap) as conn:
        error, found = describe_acls_raw(conn)
    assert error == 0
    assert {(b[1], b[3]) for b in found} == {(name, "User:alice")}


def test_acls_are_the_same_on_every_node_and_enforced_on_each(tmp_path, request):
    # (Cluster runs its nodes with --shop false already.)
    with Cluster(tmp_path, request, extra_args=["--authorizer", "acl", "--super-users", ANON]) \
            as cluster:
        cluster.start()
        topic = unique_topic("acl-cluster")
        clients.create_topic(cluster.nodes[1].bootstrap, topic)
        # Everything from 127.0.0.1 (brokers replicate from there too),
        # nothing from 127.0.0.2.
        create_acls(cluster.nodes[1].bootstrap, [
            acl(ResourceType.CLUSTER, "kafka-cluster", ACLOperation.ALL, host="127.0.0.1"),
            acl(ResourceType.TOPIC, "*", ACLOperation.ALL, host="127.0.0.1"),
            acl(ResourceType.GROUP, "*", ACLOperation.ALL, host="127.0.0.1"),
        ])

        def acls_of(i):
            with wire.Connection(cluster.nodes[i].bootstrap) as conn:
                return describe_acls_raw(conn)

        wait_until(lambda: all(len(acls_of(i)[1]) == 3 for i in cluster.ids), 30,
                   what="the ACLs on every node")
        assert acls_of(1) == acls_of(2) == acls_of(3)

        for node in cluster.nodes.values():
            node.extra_args = [a for a in node.extra_args if a not in ("--super-users", ANON)]
            assert "--authorizer" in node.extra_args
        cluster.stop_all()
        cluster.start()
        for i in cluster.ids:
            bootstrap = cluster.nodes[i].bootstrap
            with wire.Connection(bootstrap, source_ip="127.0.0.2") as conn:
                assert describe_acls_raw(conn)[0] == CLUSTER_AUTHORIZATION_FAILED
                meta = wire.metadata_v4(conn, [topic], allow_auto_topic_creation=False)
                assert meta["topics"][topic][0] == TOPIC_AUTHORIZATION_FAILED
                assert wire.metadata_v4(conn, None, False)["topics"] == {}
            with wire.Connection(bootstrap) as conn:
                assert describe_acls_raw(conn)[0] == 0
                assert wire.metadata_v4(conn, [topic], False)["topics"][topic][0] == 0
        # Replication still works (brokers have CLUSTER_ACTION from 127.0.0.1).
        assert clients.produce_values(cluster.bootstrap, topic, [b"x"]) == [0]


def test_offset_fetch_refuses_named_topics_without_describe_and_hides_the_rest(fresh_broker):
    node = fresh_broker(SUPER)
    base = unique_topic("acl-offsets")
    seen, hidden, group = f"{base}-seen", f"{base}-hidden", f"{base}-g"
    for t in (seen, hidden):
        clients.create_topic(node.bootstrap, t)
    consumer = KafkaConsumer(bootstrap_servers=node.bootstrap, group_id=group,
                             enable_auto_commit=False)
    try:
        consumer.commit({TopicPartition(seen, 0): OffsetAndMetadata(1, "", -1),
                         TopicPartition(hidden, 0): OffsetAndMetadata(2, "", -1)})
    finally:
        consumer.close()
    create_acls(node.bootstrap, [
        acl(ResourceType.GROUP, group, ACLOperation.DESCRIBE),
        acl(ResourceType.TOPIC, seen, ACLOperation.DESCRIBE),
    ])
    node.restart(ENFORCE)
    admin = clients.admin(node.bootstrap)
    try:
        every = admin.list_group_offsets({group: None})[group]
        assert {tp.topic: o.offset for tp, o in every.items()} == {seen: 1}
        with pytest.raises(TopicAuthorizationFailedError):
            admin.list_group_offsets({group: [TopicPartition(hidden, 0)]})
    finally:
        admin.close()

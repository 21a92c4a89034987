"""Kafka 4 admin features through librdkafka's admin API (confluent-kafka):
group configs (the GROUP config resource), dynamic broker configs (per
broker id and the cluster-wide default), authorized operations, and each
classic member's session ending at its own deadline.

A cluster test checks that a config change is answered alike by every node
(raw DescribeConfigs to each node's listener) and survives restarts.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import TopicCollection
from confluent_kafka.admin import (
    AclOperation,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    ResourceType,
)
from confluent_kafka.error import KafkaException

import wire
from cluster import Cluster
from harness import unique_topic, wait_until

TIMEOUT = 30
GROUP_DEFAULTS = {
    "consumer.session.timeout.ms": "45000",
    "consumer.heartbeat.interval.ms": "5000",
    "share.session.timeout.ms": "45000",
    "share.heartbeat.interval.ms": "5000",
    "share.record.lock.duration.ms": "30000",
    "share.auto.offset.reset": "latest",
}
INVALID_CONFIG = 40
# Kafka's config resource types and sources on the wire.
WIRE_GROUP = 32
WIRE_BROKER = 4
SOURCE_DYNAMIC_DEFAULT_BROKER = 3
SOURCE_GROUP = 8


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def describe(a: AdminClient, resource: ConfigResource) -> dict:
    return a.describe_configs([resource])[resource].result(TIMEOUT)


def set_configs(a: AdminClient, resource_type, name: str, configs: dict[str, str | None]):
    entries = [
        ConfigEntry(k, v, incremental_operation=(
            AlterConfigOpType.SET if v is not None else AlterConfigOpType.DELETE))
        for k, v in configs.items()
    ]
    resource = ConfigResource(resource_type, name, incremental_configs=entries)
    return a.incremental_alter_configs([resource])[resource].result(TIMEOUT)


def error_code(excinfo) -> int:
    return excinfo.value.args[0].code()


# -- group configs ----------------------------------------------------------

def test_group_configs_have_kafkas_defaults_before_the_group_exists(broker):
    a = admin(broker.bootstrap)
    group = unique_topic("no-such-group")
    described = describe(a, ConfigResource(ResourceType.GROUP, group))
    assert {n: e.value for n, e in described.items()} == GROUP_DEFAULTS
    for entry in described.values():
        assert ConfigSource(entry.source) == ConfigSource.DEFAULT_CONFIG, entry
        assert not entry.is_read_only


def test_group_configs_within_the_broker_bounds_are_accepted_and_others_refused(broker):
    a = admin(broker.bootstrap)
    group = unique_topic("cfg-group")
    set_configs(a, ResourceType.GROUP, group, {
        "consumer.session.timeout.ms": "50000",
        "consumer.heartbeat.interval.ms": "6000",
        "share.auto.offset.reset": "earliest",
    })
    described = describe(a, ConfigResource(ResourceType.GROUP, group))
    assert described["consumer.session.timeout.ms"].value == "50000"
    assert ConfigSource(described["consumer.session.timeout.ms"].source) == ConfigSource.GROUP_CONFIG
    assert described["share.auto.offset.reset"].value == "earliest"
    assert ConfigSource(described["share.session.timeout.ms"].source) == ConfigSource.DEFAULT_CONFIG

    # Below group.consumer.min.session.timeout.ms, above the max heartbeat
    # interval, an unknown name: INVALID_CONFIG, and nothing changes.
    for bad in ({"consumer.session.timeout.ms": "1000"},
                {"consumer.session.timeout.ms": "600000"},
                {"consumer.heartbeat.interval.ms": "20000"},
                {"share.auto.offset.reset": "never"},
                {"no.such.config": "1"}):
        with pytest.raises(KafkaException) as excinfo:
            set_configs(a, ResourceType.GROUP, group, bad)
        assert error_code(excinfo) == INVALID_CONFIG, bad
    assert describe(a, ConfigResource(ResourceType.GROUP, group))[
        "consumer.session.timeout.ms"].value == "50000"

    set_configs(a, ResourceType.GROUP, group, {"consumer.session.timeout.ms": None})
    restored = describe(a, ConfigResource(ResourceType.GROUP, group))
    assert restored["consumer.session.timeout.ms"].value == "45000"
    assert ConfigSource(restored["consumer.session.timeout.ms"].source) == ConfigSource.DEFAULT_CONFIG


# -- dynamic broker configs -------------------------------------------------

def broker_id(a: AdminClient) -> str:
    return str(a.describe_cluster().result(TIMEOUT).nodes[0].id)


def test_dynamic_broker_configs_per_id_and_default_apply_live(fresh_broker):
    node = fresh_broker()
    a = admin(node.bootstrap)
    me = broker_id(a)
    name = "max.connections.per.ip"
    assert ConfigSource(describe(a, ConfigResource(ResourceType.BROKER, me))[name].source) == \
        ConfigSource.STATIC_BROKER_CONFIG

    # The cluster-wide default (an empty broker name, which the Python
    # client does not accept: sent as Kafka's admin client sends it).
    assert alter_raw(node.bootstrap, WIRE_BROKER, "", {name: "1000"}) == 0
    entry = describe(a, ConfigResource(ResourceType.BROKER, me))[name]
    assert (entry.value, ConfigSource(entry.source)) == \
        ("1000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)
    assert describe_raw(node.bootstrap, WIRE_BROKER, "") == \
        {name: ("1000", SOURCE_DYNAMIC_DEFAULT_BROKER)}

    # The broker's own value wins over the cluster-wide default and applies
    # to new connections at once: one from 127.0.0.2, the second closed.
    set_configs(a, ResourceType.BROKER, me, {name: "1"})
    entry = describe(a, ConfigResource(ResourceType.BROKER, me))[name]
    assert (entry.value, ConfigSource(entry.source)) == ("1", ConfigSource.DYNAMIC_BROKER_CONFIG)
    with wire.Connection(node.bootstrap, source_ip="127.0.0.2") as first:
        first.request(wire.API_VERSIONS, 0, b"")
        with wire.Connection(node.bootstrap, source_ip="127.0.0.2") as second:
            second.send_raw(wire.request_frame(wire.API_VERSIONS, 0, 1, b"", 1, "t"))
            assert second.outcome_within(10)[0] == "closed"

    # Broker configs set by flags cannot change at run time (Kafka's
    # INVALID_REQUEST); an unknown one is INVALID_CONFIG.
    for bad, code in (({"auto.create.topics.enable": "false"}, wire.INVALID_REQUEST),
                      ({"no.such.broker.config": "1"}, INVALID_CONFIG),
                      ({name: "-1"}, INVALID_CONFIG)):
        with pytest.raises(KafkaException) as excinfo:
            set_configs(a, ResourceType.BROKER, me, bad)
        assert error_code(excinfo) == code, bad

    set_configs(a, ResourceType.BROKER, me, {name: None})
    entry = describe(a, ConfigResource(ResourceType.BROKER, me))[name]
    assert (entry.value, ConfigSource(entry.source)) == ("1000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)
    with wire.Connection(node.bootstrap, source_ip="127.0.0.2") as first:
        first.request(wire.API_VERSIONS, 0, b"")
        with wire.Connection(node.bootstrap, source_ip="127.0.0.2") as second:
            second.request(wire.API_VERSIONS, 0, b"")

    # A single node keeps them across a restart.
    group = unique_topic("kept-group")
    set_configs(a, ResourceType.GROUP, group, {"consumer.heartbeat.interval.ms": "7000"})
    node.restart()
    a = admin(node.bootstrap)
    assert describe(a, ConfigResource(ResourceType.BROKER, me))[name].value == "1000"
    assert describe(a, ConfigResource(ResourceType.GROUP, group))[
        "consumer.heartbeat.interval.ms"].value == "7000"


# -- authorized operations --------------------------------------------------

def test_authorized_operations_without_an_authorizer_are_every_operation(broker):
    a = admin(broker.bootstrap)
    topic = unique_topic("ops")
    a.create_topics([NewTopic(topic, 1, 1)])[topic].result(TIMEOUT)
    described = a.describe_topics(TopicCollection([topic]),
                                  include_authorized_operations=True)[topic].result(TIMEOUT)
    assert set(described.authorized_operations) == {
        AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DELETE,
        AclOperation.ALTER, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS,
        AclOperation.ALTER_CONFIGS}
    cluster = a.describe_cluster(include_authorized_operations=True).result(TIMEOUT)
    assert set(cluster.authorized_operations) == {
        AclOperation.CREATE, AclOperation.CLUSTER_ACTION, AclOperation.DESCRIBE_CONFIGS,
        AclOperation.ALTER_CONFIGS, AclOperation.IDEMPOTENT_WRITE, AclOperation.ALTER,
        AclOperation.DESCRIBE}
    group = unique_topic("ops-group")
    described = a.describe_consumer_groups(
        [group], include_authorized_operations=True)[group].result(TIMEOUT)
    # Kafka 4: a group's configs are authorized on the group.
    assert set(described.authorized_operations) == {
        AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE,
        AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS}


# -- member deadlines -------------------------------------------------------

JOIN_GROUP, SYNC_GROUP, DELETE_GROUPS = 11, 14, 42
SESSION_TIMEOUT_MS = 6000  # the broker's group.min.session.timeout.ms


def static_member_joins(conn: wire.Connection, group: str, instance: str) -> None:
    """JoinGroup v5 and SyncGroup v3 as the only (static) member."""
    body = (wire.string(group) + wire.int32(SESSION_TIMEOUT_MS) + wire.int32(30000)
            + wire.string("") + wire.string(instance) + wire.string("consumer")
            + wire.array([wire.string("range") + wire.bytes_(b"\x00\x01\x00\x00\x00\x00")]))
    r = conn.request(JOIN_GROUP, 5, body)
    r.int32()
    assert r.int16() == 0
    generation = r.int32()
    r.string()
    r.string()
    member_id = r.string()
    body = (wire.string(group) + wire.int32(generation) + wire.string(member_id)
            + wire.string(instance)
            + wire.array([wire.string(member_id) + wire.bytes_(b"\x00\x01\x00\x00\x00\x00")]))
    r = conn.request(SYNC_GROUP, 3, body)
    r.int32()
    assert r.int16() == 0


def delete_group(conn: wire.Connection, group: str) -> int:
    r = conn.request(DELETE_GROUPS, 1, wire.array([wire.string(group)]))
    r.int32()
    assert r.int32() == 1
    assert r.string() == group
    return r.int16()


def test_static_member_session_ends_at_its_deadline(broker):
    group = unique_topic("deadline-group")
    with wire.Connection(broker.bootstrap) as conn:
        static_member_joins(conn, group, "instance-1")
        # The session began at the latest when SyncGroup was answered.
        synced = time.monotonic()
        assert delete_group(conn, group) == 68  # NON_EMPTY_GROUP while it lives
        time.sleep(max(0.0, synced + SESSION_TIMEOUT_MS / 1000 + 0.001 - time.monotonic()))
        # Right after the session timeout the group is empty: deleted.
        assert delete_group(conn, group) == 0


# -- raw config requests (to one node, or with an empty broker name) --------

def alter_raw(bootstrap: str, resource_type: int, name: str, configs: dict[str, str]) -> int:
    """IncrementalAlterConfigs v0 (SET each) sent to one node: its error code."""
    entries = [wire.string(k) + wire.int8(0) + wire.string(v) for k, v in configs.items()]
    body = (wire.array([wire.int8(resource_type) + wire.string(name) + wire.array(entries)])
            + wire.int8(0))
    with wire.Connection(bootstrap) as conn:
        r = conn.request(44, 0, body)
    r.int32()
    assert r.int32() == 1
    return r.int16()


# -- a cluster: every node answers alike, and after restarts ----------------

def describe_raw(bootstrap: str, resource_type: int, name: str) -> dict[str, tuple[str, int]]:
    """DescribeConfigs v1 sent to one node: {name: (value, source)}."""
    body = (wire.array([wire.int8(resource_type) + wire.string(name) + wire.int32(-1)])
            + wire.int8(0))
    with wire.Connection(bootstrap) as conn:
        r = conn.request(32, 1, body)
    r.int32()
    assert r.int32() == 1
    assert r.int16() == 0
    r.string()
    r.int8()
    r.string()
    out = {}
    for _ in range(r.int32()):
        key, value = r.string(), r.string()
        r.int8()
        source = r.int8()
        r.int8()
        for _ in range(r.int32()):
            r.string()
            r.string()
            r.int8()
        out[key] = (value, source)
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, request):
    c = Cluster(tmp_path_factory.mktemp("kafka4-admin"), request)
    try:
        c.start()
        yield c
    finally:
        c.kill_all()


def test_configs_are_answered_alike_by_every_node_and_survive_restarts(cluster):
    a = admin(cluster.bootstrap)
    group = unique_topic("cluster-group")
    set_configs(a, ResourceType.GROUP, group, {"consumer.session.timeout.ms": "55000"})
    assert alter_raw(cluster.nodes[1].kafka_addr, WIRE_BROKER, "",
                     {"max.connections.per.ip": "900"}) == 0
    set_configs(a, ResourceType.BROKER, "2", {"max.connections.per.ip": "800"})

    def every_node_agrees() -> bool:
        for i in cluster.ids:
            addr = cluster.nodes[i].kafka_addr
            if describe_raw(addr, WIRE_GROUP, group).get("consumer.session.timeout.ms") != \
                    ("55000", SOURCE_GROUP):
                return False
            own = describe_raw(addr, WIRE_BROKER, str(i)).get("max.connections.per.ip")
            expected = ("800", 2) if i == 2 else ("900", SOURCE_DYNAMIC_DEFAULT_BROKER)
            if own != expected:
                return False
        return True

    wait_until(every_node_agrees, 30, what="every node answers the new configs")
    cluster.restart(2)
    wait_until(every_node_agrees, 30, what="the configs after node 2 restarted")
    cluster.stop_all()
    cluster.start_all()
    wait_until(every_node_agrees, 60, what="the configs after the cluster restarted")

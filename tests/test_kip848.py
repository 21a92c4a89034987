"""The consumer group protocol of Kafka 4 (KIP-848) with librdkafka
(confluent-kafka, `group.protocol=consumer`): the coordinator assigns with its
`uniform` or `range` assignor, members reconcile incrementally (a partition
moves only after its owner revoked it), a member that leaves or is SIGKILLed
hands over only its own partitions, and the admin API sees the group's type.
Consumers run as separate processes so one can be killed. Classic and new
consumers share a group during an online migration."""

from __future__ import annotations

import contextlib
import re
import subprocess
import time

import pytest
from confluent_kafka import ConsumerGroupType, KafkaException
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

import wire

from group_clients import ConsumerProcess, admin, describe_group, duplicates, produce_numbered, wait_for_values
from harness import Broker, sluice_binary, unique_topic, wait_until
from test_groups_librdkafka import create_topic

SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 500
TIMEOUT = 30.0
FLAGS = [
    "--group-consumer-session-timeout-ms", str(SESSION_TIMEOUT_MS),
    "--group-consumer-heartbeat-interval-ms", str(HEARTBEAT_INTERVAL_MS),
]


@pytest.fixture(scope="module")
def kip848_broker(tmp_path_factory):
    node = Broker(tmp_path_factory.mktemp("kip848"), FLAGS)
    try:
        node.start()
        yield node
    finally:
        node.stop()


def consumer(bootstrap: str, topic: str, group: str, name: str, **extra) -> ConsumerProcess:
    return ConsumerProcess(bootstrap, topic, group, client_id=name, protocol="consumer", **extra)


def wait_owned(consumers: list[ConsumerProcess], partitions: int, members: int,
               timeout: float = TIMEOUT) -> list[set[int]]:
    """Until `members` of the consumers own each partition exactly once, evenly."""
    def settled():
        owned = [c.assignment() for c in consumers]
        flat = sorted(p for a in owned for p in a)
        sizes = [len(a) for a in owned if a]
        if flat == list(range(partitions)) and len(sizes) == members and max(sizes) - min(sizes) <= 1:
            return owned
        return None
    return wait_until(settled, timeout, interval=0.1, what=f"{partitions} partitions over {members}")


def per_partition(total: int, partitions: int) -> dict[int, int]:
    """How many of `total` round-robin records each partition holds."""
    return {p: len(range(p, total, partitions)) for p in range(partitions)}


def wait_committed(c: ConsumerProcess, ends: dict[int, int]) -> None:
    """Until `c` committed the end of each partition it owns."""
    def done():
        committed = c.committed()
        return all(committed.get(p, 0) >= ends[p] for p in c.assignment())
    wait_until(done, TIMEOUT, interval=0.1, what="commits up to the log end")


def cli_describe(bootstrap: str, group: str) -> str:
    """`sluice groups describe` (ConsumerGroupDescribe for a consumer group)."""
    result = subprocess.run(
        [str(sluice_binary()), "groups", "describe", group, "--bootstrap", bootstrap],
        capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    return result.stdout


def listed_types(bootstrap: str, group_type) -> set[str]:
    client = admin(bootstrap)  # kept alive until the answer is in
    listed = client.list_consumer_groups(types={group_type}).result(timeout=TIMEOUT)
    assert not listed.errors, listed.errors
    return {g.group_id for g in listed.valid}


def test_three_consumers_read_exactly_once_through_a_leave_and_a_kill(kip848_broker):
    """30,000 records over 6 partitions are read exactly once by three
    consumers while one closes and one is SIGKILLed; the survivors never
    lose a partition they kept (no stop-the-world rebalance)."""
    bootstrap = kip848_broker.bootstrap
    topic, group = unique_topic("kip848"), unique_topic("g848")
    create_topic(bootstrap, topic, 6)
    consumers = [consumer(bootstrap, topic, group, f"c{i}") for i in range(3)]
    with contextlib.ExitStack() as stack:
        for c in consumers:
            stack.enter_context(c)
        owned = wait_owned(consumers, 6, members=3)
        assert sorted(len(a) for a in owned) == [2, 2, 2]
        described = cli_describe(bootstrap, group)
        assert "TYPE consumer" in described and "ASSIGNOR uniform" in described, described
        assert "MEMBERS 3" in described, described

        values = produce_numbered(bootstrap, topic, 0, 10_000, 6)
        wait_for_values(consumers, set(values))

        # c0 closes (a heartbeat with epoch -1): only its partitions move.
        leaving, rest = consumers[0], consumers[1:]
        kept = [c.assignment() for c in rest]
        revokes = [len(c.revocations()) for c in rest]
        leaving.stop()
        owned = wait_owned(rest, 6, members=2)
        for before, after in zip(kept, owned):
            assert before <= after, "a survivor kept what it had"
        assert [len(c.revocations()) for c in rest] == revokes, "survivors revoked nothing"

        values += produce_numbered(bootstrap, topic, 10_000, 10_000, 6)
        wait_for_values(rest, set(values[10_000:]))

        # c1 is SIGKILLed once its commits are in: c2 keeps its partitions
        # and gets c1's when c1's session ends.
        ends = per_partition(20_000, 6)
        killed, survivor = rest
        wait_committed(killed, ends)
        wait_committed(survivor, ends)
        kept_by_survivor = survivor.assignment()
        revokes = len(survivor.revocations())
        killed_at = time.monotonic()
        killed.kill9()
        wait_owned([survivor], 6, members=1, timeout=SESSION_TIMEOUT_MS / 1000 + TIMEOUT)
        handover = time.monotonic() - killed_at
        assert kept_by_survivor <= survivor.assignment()
        assert len(survivor.revocations()) == revokes, "the survivor revoked nothing"
        print(f"\nhand-over after SIGKILL: {handover:.1f} s (session timeout "
              f"{SESSION_TIMEOUT_MS / 1000:.0f} s)")
        assert handover >= SESSION_TIMEOUT_MS / 1000 - 1, "not before the session ended"

        values += produce_numbered(bootstrap, topic, 20_000, 10_000, 6)
        wait_for_values([survivor], set(values[20_000:]))
        seen = [v for c in consumers for _, _, v in c.records()]
        assert set(seen) == set(values) and len(values) == 30_000
        assert duplicates(seen) == {}, "every record exactly once"
        for c in consumers:
            assert c.errors() == [], c.errors()[:3]


def test_range_assignor_named_by_the_client_and_the_group_type_in_admin_apis(kip848_broker):
    """`group.remote.assignor=range` gives contiguous ranges; ListGroups v5
    filters by type; ConsumerGroupDescribe shows epochs, assignor and
    assignments; DescribeGroups answers GROUP_ID_NOT_FOUND as Kafka 4 does."""
    bootstrap = kip848_broker.bootstrap
    topic, group = unique_topic("kip848r"), unique_topic("g848r")
    create_topic(bootstrap, topic, 4)
    consumers = [consumer(bootstrap, topic, group, f"r{i}", remote_assignor="range")
                 for i in range(2)]
    with contextlib.ExitStack() as stack:
        for c in consumers:
            stack.enter_context(c)
        owned = wait_owned(consumers, 4, members=2)
        assert sorted(sorted(a) for a in owned) == [[0, 1], [2, 3]]

        described = wait_until(
            lambda: (lambda d: "STATE Stable" in d and d)(cli_describe(bootstrap, group)),
            TIMEOUT, interval=0.2, what="the group stable")
        assert "TYPE consumer" in described and "ASSIGNOR range" in described, described
        ranges = sorted(m.group(1) for m in re.finditer(re.escape(topic) + r":([0-9,]+)", described))
        assert ranges == ["0,1", "2,3"], described

        assert group in listed_types(bootstrap, ConsumerGroupType.CONSUMER)
        assert group not in listed_types(bootstrap, ConsumerGroupType.CLASSIC)
        client = admin(bootstrap)

        # The group cannot be deleted while it has members.
        with pytest.raises(KafkaException, match="NON_EMPTY_GROUP"):
            client.delete_consumer_groups([group])[group].result(timeout=TIMEOUT)


def test_a_consumer_group_survives_a_coordinator_restart(tmp_path_factory):
    """The group's epochs, members and assignments are replayed from
    `__consumer_offsets`: after a restart the member (SIGKILLed, so it never
    left) is still there with its partitions until its session ends, and a
    new member then resumes from the committed offsets."""
    node = Broker(tmp_path_factory.mktemp("kip848-restart"), FLAGS)
    try:
        node.start()
        bootstrap = node.bootstrap
        topic, group = unique_topic("kip848s"), unique_topic("g848s")
        create_topic(bootstrap, topic, 3)
        first = consumer(bootstrap, topic, group, "before")
        with first:
            wait_owned([first], 3, members=1)
            values = produce_numbered(bootstrap, topic, 0, 3_000, 3)
            wait_for_values([first], set(values))
            wait_committed(first, per_partition(3_000, 3))
            before = cli_describe(bootstrap, group)
            first.kill9()
        node.restart()
        bootstrap = node.bootstrap
        after = cli_describe(bootstrap, group)
        header = re.search(r"EPOCH (\d+)  ASSIGNMENT-EPOCH (\d+)", before).groups()
        assert re.search(r"EPOCH (\d+)  ASSIGNMENT-EPOCH (\d+)", after).groups() == header
        assert "MEMBERS 1" in after and f"{topic}:0,1,2" in after, after
        assert group in listed_types(bootstrap, ConsumerGroupType.CONSUMER)

        second = consumer(bootstrap, topic, group, "after")
        with second:
            wait_owned([second], 3, members=1, timeout=SESSION_TIMEOUT_MS / 1000 + TIMEOUT)
            more = produce_numbered(bootstrap, topic, 3_000, 300, 3)
            wait_for_values([second], set(more))
            assert not set(values) & {v for _, _, v in second.records()}, \
                "the committed offsets survived the restart"
    finally:
        node.stop()


def test_a_static_member_that_restarts_gets_its_partitions_back_and_nothing_moves(kip848_broker):
    """`group.instance.id` with the consumer protocol: a static member that
    closes keeps its partitions for its session (epoch -2); restarted with
    the same instance id it takes them over; the other member never gains
    or loses a partition."""
    bootstrap = kip848_broker.bootstrap
    topic, group = unique_topic("kip848st"), unique_topic("g848st")
    create_topic(bootstrap, topic, 4)
    first = consumer(bootstrap, topic, group, "sa", instance_id="static-a")
    other = consumer(bootstrap, topic, group, "sb", instance_id="static-b")
    with first, other:
        owned = wait_owned([first, other], 4, members=2)
        kept, others = owned
        revokes = len(other.revocations())
        first.stop()
        again = consumer(bootstrap, topic, group, "sa2", instance_id="static-a")
        with again:
            wait_until(lambda: again.assignment() == kept, TIMEOUT, interval=0.1,
                       what="the restarted static member owns its partitions again")
            values = produce_numbered(bootstrap, topic, 0, 2_000, 4)
            wait_for_values([again, other], set(values))
            assert other.assignment() == others and len(other.revocations()) == revokes, \
                "the other member's assignment never changed"
            described = describe_group(bootstrap, group)
            assert sorted(m.group_instance_id for m in described.members) == \
                ["static-a", "static-b"]


def test_a_regex_subscription_picks_up_a_topic_created_later(kip848_broker):
    """A subscription `^prefix.*` (sent as SubscribedTopicRegex) is resolved
    by the coordinator: a matching topic created while the consumer runs
    joins its assignment and its records are read."""
    bootstrap = kip848_broker.bootstrap
    prefix, group = unique_topic("orders"), unique_topic("g848re")
    create_topic(bootstrap, f"{prefix}-a", 2)
    create_topic(bootstrap, unique_topic("other"), 2)
    c = consumer(bootstrap, f"^{prefix}.*", group, "regex")
    with c:
        wait_until(lambda: c.assignment() == {0, 1}, TIMEOUT, interval=0.1, what="first topic")
        values = produce_numbered(bootstrap, f"{prefix}-a", 0, 1_000, 2)
        wait_for_values([c], set(values))
        create_topic(bootstrap, f"{prefix}-b", 3)
        more = produce_numbered(bootstrap, f"{prefix}-b", 1_000, 1_500, 3)
        wait_for_values([c], set(more))
        described = describe_group(bootstrap, group)
        topics = {tp.topic for m in described.members for tp in m.assignment.topic_partitions}
        assert topics == {f"{prefix}-a", f"{prefix}-b"}, topics
        assert duplicates([v for _, _, v in c.records()]) == {}


# -- raw requests: what a member is told and how its epoch is checked --------

CONSUMER_GROUP_HEARTBEAT, OFFSET_FETCH = 68, 9
NONE, UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH = 0, 25, 113


def raw_heartbeat(conn, group: str, member_id: str, epoch: int, topics: list[str] | None):
    """ConsumerGroupHeartbeat v0; returns (error, member id, epoch, interval)."""
    names = (wire.uvarint(len(topics) + 1) + b"".join(wire.compact_string(t) for t in topics)
             if topics is not None else wire.uvarint(0))
    owned = wire.uvarint(1) if epoch == 0 else wire.uvarint(0)
    body = (wire.compact_string(group) + wire.compact_string(member_id) + wire.int32(epoch)
            + wire.compact_string(None) + wire.compact_string(None) + wire.int32(30_000)
            + names + wire.compact_string(None) + owned + wire.EMPTY_TAGGED_FIELDS)
    r = conn.request(CONSUMER_GROUP_HEARTBEAT, 0, body, header_version=2,
                     response_header_version=1)
    r.int32()  # throttle
    error = r.int16()
    r.compact_string()
    member = r.compact_string()
    return error, member, r.int32(), r.int32()


def raw_offset_fetch_error(conn, group: str, member_id: str | None, epoch: int) -> int:
    """OffsetFetch v9 for every committed offset of `group`; the group's error."""
    body = (wire.uvarint(2) + wire.compact_string(group) + wire.compact_string(member_id)
            + wire.int32(epoch) + wire.uvarint(0) + wire.EMPTY_TAGGED_FIELDS
            + wire.int8(0) + wire.EMPTY_TAGGED_FIELDS)
    r = conn.request(OFFSET_FETCH, 9, body, header_version=2, response_header_version=1)
    r.int32()  # throttle
    assert r.uvarint() == 2, "one group"
    assert r.compact_string() == group
    assert r.uvarint() == 1, "no committed offsets"
    return r.int16()


def test_offset_fetch_v9_checks_the_member_epoch(kip848_broker):
    """OffsetFetch v9 naming a member of a consumer group: a wrong epoch is
    STALE_MEMBER_EPOCH, an unknown member UNKNOWN_MEMBER_ID (as Kafka); an
    admin's fetch (no member, epoch -1) and the member at its epoch pass."""
    topic, group = unique_topic("kip848of"), unique_topic("g848of")
    create_topic(kip848_broker.bootstrap, topic, 2)
    with wire.Connection(kip848_broker.bootstrap) as conn:
        error, member, epoch, _ = raw_heartbeat(conn, group, "", 0, [topic])
        assert error == NONE and epoch > 0
        assert raw_offset_fetch_error(conn, group, member, epoch) == NONE
        assert raw_offset_fetch_error(conn, group, None, -1) == NONE
        assert raw_offset_fetch_error(conn, group, member, epoch + 5) == STALE_MEMBER_EPOCH
        assert raw_offset_fetch_error(conn, group, "nobody", epoch) == UNKNOWN_MEMBER_ID
        assert raw_heartbeat(conn, group, member, -1, None)[0] == NONE


def test_group_configs_apply_to_the_group_without_a_restart(kip848_broker):
    """`consumer.heartbeat.interval.ms` and `consumer.session.timeout.ms`
    set on a GROUP with IncrementalAlterConfigs take effect for that group at
    its members' next heartbeat: the interval members are told, and a
    SIGKILLed member is kept for the group's session (45 s), not the node's
    (6 s), while another group keeps the node's."""
    bootstrap = kip848_broker.bootstrap
    topic, group = unique_topic("kip848cfg"), unique_topic("g848cfg")
    create_topic(bootstrap, topic, 2)
    client = admin(bootstrap)
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry("consumer.heartbeat.interval.ms", "7000",
                    incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("consumer.session.timeout.ms", "45000",
                    incremental_operation=AlterConfigOpType.SET)])
    with wire.Connection(bootstrap) as conn:
        error, member, _, interval = raw_heartbeat(conn, group, "", 0, [topic])
        assert error == NONE and interval == HEARTBEAT_INTERVAL_MS, "the node's flag first"
        client.incremental_alter_configs([resource])[resource].result(TIMEOUT)
        assert raw_heartbeat(conn, group, member, -1, None)[0] == NONE
        error, member, _, interval = raw_heartbeat(conn, group, "", 0, [topic])
        assert error == NONE and interval == 7000, "the group's config"
        assert raw_heartbeat(conn, group, member, -1, None)[0] == NONE

    # A real member of the configured group outlives the node's session.
    killed = consumer(bootstrap, topic, group, "cfg-killed")
    with killed:
        wait_until(lambda: killed.assignment() == {0, 1}, TIMEOUT, interval=0.1, what="assigned")
        killed.kill9()
        killed_at = time.monotonic()
        session_ended = SESSION_TIMEOUT_MS / 1000 + 6
        while time.monotonic() - killed_at < session_ended:
            members = describe_group(bootstrap, group)
            assert len(members.members) == 1, "the killed member is kept for the group's session"
            time.sleep(0.5)


# -- online migration ---------------------------------------------------------
# Classic consumers (librdkafka and kafka-python, eager `range`) and a
# `group.protocol=consumer` consumer share one group (Kafka's
# `group.consumer.migration.policy`, bidirectional by default): the
# coordinator runs it as a consumer group, assigns the classic members with
# its own assignor (they get their partitions in SyncGroup and are told to
# rejoin with REBALANCE_IN_PROGRESS), and nothing is read twice or lost across
# the switch. When the last consumer-protocol member leaves, the group is a
# classic group again.

MIGRATION_TIMEOUT = 60.0


def classic(bootstrap: str, topic: str, group: str, name: str, library: str) -> ConsumerProcess:
    return ConsumerProcess(bootstrap, topic, group, client_id=name, library=library,
                           strategy="range")


def new_protocol(bootstrap: str, topic: str, group: str, name: str) -> ConsumerProcess:
    return ConsumerProcess(bootstrap, topic, group, client_id=name, protocol="consumer")


def group_type(bootstrap: str, group: str):
    """The group's type in ListGroups v5 (None: not listed)."""
    client = admin(bootstrap)
    listed = client.list_consumer_groups().result(timeout=MIGRATION_TIMEOUT)
    return next((g.type for g in listed.valid if g.group_id == group), None)


def test_classic_and_new_consumers_share_a_group_and_read_exactly_once(kip848_broker):
    bootstrap = kip848_broker.bootstrap
    topic, group = unique_topic("migrate"), unique_topic("gmig")
    create_topic(bootstrap, topic, 6)
    old = [classic(bootstrap, topic, group, "classic-rdkafka", "confluent"),
           classic(bootstrap, topic, group, "classic-kafka-python", "kafka-python")]
    new = new_protocol(bootstrap, topic, group, "new")
    everyone = [*old, new]
    with contextlib.ExitStack() as stack:
        for c in old:
            stack.enter_context(c)
        wait_owned(old, 6, members=2, timeout=MIGRATION_TIMEOUT)
        assert group_type(bootstrap, group) == ConsumerGroupType.CLASSIC
        values = produce_numbered(bootstrap, topic, 0, 10_000, 6)
        wait_for_values(old, set(values))

        # A consumer-protocol member joins: the group becomes a consumer
        # group and the classic members get their share from its assignor.
        stack.enter_context(new)
        wait_owned(everyone, 6, members=3, timeout=MIGRATION_TIMEOUT)
        assert group_type(bootstrap, group) == ConsumerGroupType.CONSUMER
        described = describe_group(bootstrap, group)
        assert described.type == ConsumerGroupType.CONSUMER and len(described.members) == 3
        values += produce_numbered(bootstrap, topic, 10_000, 10_000, 6)
        wait_for_values(everyone, set(values[10_000:]))

        # The classic members leave: the new one takes every partition and
        # the group is a pure consumer group.
        for c in old:
            c.stop()
        wait_owned([new], 6, members=1, timeout=MIGRATION_TIMEOUT)
        values += produce_numbered(bootstrap, topic, 20_000, 10_000, 6)
        wait_for_values([new], set(values[20_000:]))
        described = describe_group(bootstrap, group)
        assert described.type == ConsumerGroupType.CONSUMER and len(described.members) == 1

        seen = [v for c in everyone for _, _, v in c.records()]
        assert len(values) == 30_000 and set(seen) == set(values)
        assert duplicates(seen) == {}, "every record exactly once across the switch"
        for c in everyone:
            assert c.errors() == [], (c.settings["client_id"], c.errors()[:3])
        print(f"\nmigration: {len(seen)} records, classic members read "
              f"{sum(len(c.records()) for c in old)}, the new one {len(new.records())}")


def mixed_group(stack: contextlib.ExitStack, bootstrap: str, topic: str, group: str):
    """A classic group of one librdkafka member on a new 4-partition topic,
    then joined by a consumer-protocol member (the group is upgraded)."""
    create_topic(bootstrap, topic, 4)
    old = stack.enter_context(classic(bootstrap, topic, group, "classic", "confluent"))
    wait_owned([old], 4, members=1, timeout=MIGRATION_TIMEOUT)
    new = stack.enter_context(new_protocol(bootstrap, topic, group, "new"))
    wait_owned([old, new], 4, members=2, timeout=MIGRATION_TIMEOUT)
    return old, new


def test_the_group_is_classic_again_when_the_last_new_member_leaves(kip848_broker):
    bootstrap = kip848_broker.bootstrap
    topic, group = unique_topic("downgrade"), unique_topic("gdown")
    with contextlib.ExitStack() as stack:
        old, new = mixed_group(stack, bootstrap, topic, group)
        assert group_type(bootstrap, group) == ConsumerGroupType.CONSUMER
        values = produce_numbered(bootstrap, topic, 0, 4_000, 4)
        wait_for_values([old, new], set(values))

        new.stop()
        wait_until(lambda: group_type(bootstrap, group) == ConsumerGroupType.CLASSIC,
                   MIGRATION_TIMEOUT, interval=0.2, what="the group classic again")
        wait_owned([old], 4, members=1, timeout=MIGRATION_TIMEOUT)
        more = produce_numbered(bootstrap, topic, 4_000, 4_000, 4)
        wait_for_values([old], set(more))
        seen = [v for c in (old, new) for _, _, v in c.records()]
        assert set(seen) == set(values + more)
        assert duplicates(seen) == {}, "every record exactly once across the switch back"
        described = describe_group(bootstrap, group)
        assert described.type == ConsumerGroupType.CLASSIC and len(described.members) == 1


def test_a_sigkilled_classic_member_of_a_mixed_group_is_fenced_at_its_session(kip848_broker):
    """A classic member of a consumer group is fenced when its own session
    (`session.timeout.ms` from JoinGroup) ends; the new member then owns
    every partition and the group stays a consumer group."""
    bootstrap = kip848_broker.bootstrap
    topic, group = unique_topic("mixkill"), unique_topic("gmixkill")
    with contextlib.ExitStack() as stack:
        old, new = mixed_group(stack, bootstrap, topic, group)
        kept = new.assignment()
        old.kill9()
        wait_owned([new], 4, members=1, timeout=SESSION_TIMEOUT_MS / 1000 + MIGRATION_TIMEOUT)
        assert kept <= new.assignment()
        assert group_type(bootstrap, group) == ConsumerGroupType.CONSUMER
        values = produce_numbered(bootstrap, topic, 0, 2_000, 4)
        wait_for_values([new], set(values))

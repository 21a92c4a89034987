"""The consumer group protocol of Kafka 4 (KIP-848) with librdkafka
(confluent-kafka, `group.protocol=consumer`): the coordinator assigns with its
`uniform` or `range` assignor, members reconcile incrementally (a partition
moves only after its owner revoked it), a member that leaves or is SIGKILLed
hands over only its own partitions, and the admin API sees the group's type.
Consumers run as separate processes so one can be killed."""

from __future__ import annotations

import contextlib
import re
import subprocess
import time

import pytest
from confluent_kafka import ConsumerGroupType, KafkaException

from group_clients import ConsumerProcess, admin, duplicates, produce_numbered, wait_for_values
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

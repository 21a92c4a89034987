"""Consumer groups with librdkafka (confluent-kafka): the range, roundrobin
and cooperative-sticky assignors, a member killed with SIGKILL expiring after
its session timeout, static membership (KIP-345) across a restart, and the
admin API for groups. Consumers run as separate processes."""

from __future__ import annotations

import contextlib
import time

import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaException
from confluent_kafka.admin import NewTopic

from group_clients import (
    ConsumerProcess,
    admin,
    duplicates,
    produce_numbered,
    wait_for_assignment,
    wait_for_values,
)
from harness import unique_topic, wait_until

SESSION_TIMEOUT_S = 6.0
TIMEOUT = 30.0


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    client = admin(bootstrap)
    client.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                         operation_timeout=TIMEOUT)[name].result(timeout=TIMEOUT)

    def visible():
        topic = client.list_topics(topic=name, timeout=TIMEOUT).topics.get(name)
        return topic is not None and topic.error is None and len(topic.partitions) == partitions
    wait_until(visible, TIMEOUT, interval=0.1, what=f"{partitions} partitions of {name}")


@pytest.mark.parametrize("strategy", ["range", "roundrobin", "cooperative-sticky"])
def test_three_members_split_partitions_and_a_closing_member_hands_over(broker, strategy):
    topic = unique_topic("grp-rdk")
    group = unique_topic("g")
    create_topic(broker.bootstrap, topic, 6)
    consumers = [ConsumerProcess(broker.bootstrap, topic, group, strategy=strategy, client_id=f"c{i}")
                 for i in range(3)]
    with contextlib.ExitStack() as stack:
        for c in consumers:
            stack.enter_context(c)
        owned = wait_for_assignment(consumers, 6, members=3)
        assert sorted(len(a) for a in owned) == [2, 2, 2]

        first = produce_numbered(broker.bootstrap, topic, 0, 6_000, 6)
        wait_for_values(consumers, set(first))
        for c, parts in zip(consumers, owned):
            assert {p for p, _, _ in c.records()} <= parts, "only owned partitions are read"

        leaving, remaining = consumers[0], consumers[1:]
        revoked_before = [len(c.revocations()) for c in remaining]
        closed_at = time.monotonic()
        leaving.stop()
        wait_for_assignment(remaining, 6, members=2, timeout=SESSION_TIMEOUT_S)
        assert time.monotonic() - closed_at < SESSION_TIMEOUT_S
        if strategy == "cooperative-sticky":
            # Incremental: the remaining members keep what they had.
            for c, before, revoked in zip(remaining, owned[1:], revoked_before):
                assert before <= c.assignment()
                assert len(c.revocations()) == revoked

        second = produce_numbered(broker.bootstrap, topic, 6_000, 3_000, 6)
        wait_for_values(remaining, set(second))
        everything = [v for c in consumers for _, _, v in c.records()]
        assert set(everything) == set(first) | set(second), "nothing lost"
        assert not duplicates(everything), "nothing consumed twice"
        assert not any(c.errors() for c in consumers), [c.errors() for c in consumers]


def test_a_member_killed_with_sigkill_expires_after_the_session_timeout(broker):
    topic = unique_topic("grp-kill")
    group = unique_topic("g")
    create_topic(broker.bootstrap, topic, 6)
    consumers = [ConsumerProcess(broker.bootstrap, topic, group, client_id=f"k{i}",
                                 session_timeout_ms=int(SESSION_TIMEOUT_S * 1000))
                 for i in range(3)]
    with contextlib.ExitStack() as stack:
        for c in consumers:
            stack.enter_context(c)
        owned = wait_for_assignment(consumers, 6, members=3)
        first = produce_numbered(broker.bootstrap, topic, 0, 3_000, 6)
        wait_for_values(consumers, set(first))
        # Every batch is committed before the kill: the victim is idle.
        wait_until(lambda: consumers[0].committed().keys() >= owned[0] or None, TIMEOUT,
                   what="the victim's commits")

        victim, survivors = consumers[0], consumers[1:]
        killed_at = time.monotonic()
        victim.kill9()
        wait_for_assignment(survivors, 6, members=2, timeout=SESSION_TIMEOUT_S + 10)
        took = time.monotonic() - killed_at
        # No LeaveGroup was sent: the group only noticed when the session ran out.
        assert took >= SESSION_TIMEOUT_S - 1.5, f"reassigned after {took:.1f}s"
        assert owned[0] <= set().union(*(c.assignment() for c in survivors))

        second = produce_numbered(broker.bootstrap, topic, 3_000, 3_000, 6)
        wait_for_values(survivors, set(second))
        everything = [v for c in consumers for _, _, v in c.records()]
        assert set(everything) == set(first) | set(second)
        assert not duplicates(everything)


def test_a_static_member_restarting_within_its_session_keeps_its_partitions(broker):
    topic = unique_topic("grp-static")
    group = unique_topic("g")
    create_topic(broker.bootstrap, topic, 6)

    def member(i: int) -> ConsumerProcess:
        return ConsumerProcess(broker.bootstrap, topic, group, client_id=f"s{i}",
                               instance_id=f"instance-{i}", session_timeout_ms=15_000)

    consumers = [member(i) for i in range(3)]
    with contextlib.ExitStack() as stack:
        for c in consumers:
            stack.enter_context(c)
        owned = wait_for_assignment(consumers, 6, members=3)
        first = produce_numbered(broker.bootstrap, topic, 0, 600, 6)
        wait_for_values(consumers, set(first))
        revoked_before = [len(c.revocations()) for c in consumers]

        consumers[1].kill9()
        restarted = stack.enter_context(member(1))
        wait_until(lambda: restarted.assignment() == owned[1], TIMEOUT,
                   what="the restarted static member's old partitions")
        for i in (0, 2):
            assert consumers[i].assignment() == owned[i]
            assert len(consumers[i].revocations()) == revoked_before[i], "no other member was revoked"

        second = produce_numbered(broker.bootstrap, topic, 600, 600, 6)
        wait_for_values([consumers[0], restarted, consumers[2]], set(second))
        assert {p for p, _, v in restarted.records()} <= owned[1]


def test_admin_lists_describes_and_deletes_groups(broker):
    topic = unique_topic("grp-rdk-admin")
    group = unique_topic("g")
    create_topic(broker.bootstrap, topic, 2)
    values = set(produce_numbered(broker.bootstrap, topic, 0, 100, 2))
    client = admin(broker.bootstrap)
    with ConsumerProcess(broker.bootstrap, topic, group, client_id="rdk-admin") as consumer:
        wait_for_values([consumer], values)
        wait_for_assignment([consumer], 2)

        listed = {g.group_id: g for g in client.list_consumer_groups(request_timeout=TIMEOUT)
                  .result(timeout=TIMEOUT).valid}
        assert listed[group].state == ConsumerGroupState.STABLE
        assert not listed[group].is_simple_consumer_group
        stable = client.list_consumer_groups(states={ConsumerGroupState.STABLE},
                                             request_timeout=TIMEOUT).result(timeout=TIMEOUT)
        assert group in {g.group_id for g in stable.valid}

        described = client.describe_consumer_groups([group], request_timeout=TIMEOUT)[group] \
            .result(timeout=TIMEOUT)
        assert described.state == ConsumerGroupState.STABLE
        assert described.partition_assignor == "range"
        [member] = described.members
        assert member.client_id == "rdk-admin"
        assert sorted(tp.partition for tp in member.assignment.topic_partitions) == [0, 1]
        assert described.coordinator.id == broker.node_id

        with pytest.raises(KafkaException) as refused:
            client.delete_consumer_groups([group], request_timeout=TIMEOUT)[group].result(timeout=TIMEOUT)
        assert "NON_EMPTY_GROUP" in str(refused.value) or "not empty" in str(refused.value).lower()
        wait_until(lambda: consumer.committed() == {0: 50, 1: 50}, TIMEOUT, what="commits")
        consumer.stop()

    offsets = client.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)], request_timeout=TIMEOUT)[group].result(timeout=TIMEOUT)
    assert sorted((tp.partition, tp.offset) for tp in offsets.topic_partitions) == [(0, 50), (1, 50)]
    wait_until(lambda: client.describe_consumer_groups([group], request_timeout=TIMEOUT)[group]
               .result(timeout=TIMEOUT).state == ConsumerGroupState.EMPTY, TIMEOUT,
               what="group empty")
    client.delete_consumer_groups([group], request_timeout=TIMEOUT)[group].result(timeout=TIMEOUT)
    remaining = client.list_consumer_groups(request_timeout=TIMEOUT).result(timeout=TIMEOUT).valid
    assert group not in {g.group_id for g in remaining}

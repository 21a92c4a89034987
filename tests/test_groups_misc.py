"""Consumer groups across clients and failures: kcat -G, aiokafka's group
consumer, committed offsets across broker restarts (graceful and kill -9),
batched FindCoordinator and multi-group OffsetFetch, offsets of deleted
topics, and the `sluice groups` CLI (list, describe with lag, reset-offsets)."""

from __future__ import annotations

import asyncio
import subprocess

from aiokafka import AIOKafkaConsumer
from confluent_kafka import Producer
from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition

import clients
from group_clients import (
    ConsumerProcess,
    duplicates,
    produce_numbered,
    wait_for_assignment,
    wait_for_values,
)
from harness import sluice_binary, unique_topic, wait_until

TIMEOUT = 30.0


def committed_offsets(bootstrap: str, group: str) -> dict[int, int]:
    admin = clients.admin(bootstrap)
    try:
        found = admin.list_group_offsets({group: None})[group]
        return {tp.partition: o.offset for tp, o in found.items()}
    finally:
        admin.close()


def sluice_groups(bootstrap: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(sluice_binary()), "groups", *args, "--bootstrap", bootstrap],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )


def test_kcat_balanced_consumer_reads_everything_and_commits(broker):
    topic = unique_topic("grp-kcat")
    group = unique_topic("g")
    clients.create_topic(broker.bootstrap, topic, partitions=3)
    values = produce_numbered(broker.bootstrap, topic, 0, 300, 3)
    result = subprocess.run(
        ["kcat", "-b", broker.bootstrap, "-G", group, "-c", str(len(values)),
         "-X", "auto.offset.reset=earliest", "-X", "session.timeout.ms=6000",
         "-f", "%p %o %s\n", "-q", topic],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    got = [line.split()[2] for line in result.stdout.splitlines() if line.strip()]
    assert sorted(got) == values
    # kcat commits what it consumed when it closes.
    assert committed_offsets(broker.bootstrap, group) == {0: 100, 1: 100, 2: 100}


def test_aiokafka_group_consumer_commits_and_a_successor_resumes(broker):
    topic = unique_topic("grp-aio")
    group = unique_topic("g")
    clients.create_topic(broker.bootstrap, topic, partitions=2)
    first = produce_numbered(broker.bootstrap, topic, 0, 400, 2)

    async def consume(count: int) -> list[str]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=broker.bootstrap, group_id=group,
            auto_offset_reset="earliest", enable_auto_commit=False,
            session_timeout_ms=6_000, heartbeat_interval_ms=1_000, fetch_max_wait_ms=100)
        await consumer.start()
        try:
            seen: list[str] = []
            while len(seen) < count:
                batches = await consumer.getmany(timeout_ms=200)
                seen.extend(r.value.decode() for rs in batches.values() for r in rs)
            await consumer.commit()
            return seen
        finally:
            await consumer.stop()

    assert sorted(asyncio.run(asyncio.wait_for(consume(400), 60))) == first
    second = produce_numbered(broker.bootstrap, topic, 400, 20, 2)
    assert sorted(asyncio.run(asyncio.wait_for(consume(20), 60))) == second
    assert committed_offsets(broker.bootstrap, group) == {0: 210, 1: 210}


def test_consumers_resume_from_committed_offsets_across_a_broker_restart(fresh_broker):
    node = fresh_broker()
    topic = unique_topic("grp-restart")
    group = unique_topic("g")
    clients.create_topic(node.bootstrap, topic, partitions=3)
    first = produce_numbered(node.bootstrap, topic, 0, 3_000, 3)
    with ConsumerProcess(node.bootstrap, topic, group, client_id="survivor") as consumer:
        wait_for_values([consumer], set(first))
        wait_until(lambda: consumer.committed() == {0: 1000, 1: 1000, 2: 1000}, TIMEOUT,
                   what="commits before the restart")
        before = committed_offsets(node.bootstrap, group)

        node.restart(keep_kafka_port=True)
        # OffsetFetch after the restart returns what was committed before it.
        assert committed_offsets(node.bootstrap, group) == before

        # The same consumer reconnects and carries on from there.
        second = produce_numbered(node.bootstrap, topic, 3_000, 3_000, 3)
        wait_for_values([consumer], set(second), timeout=60)
        everything = [v for _, _, v in consumer.records()]
        assert set(everything) == set(first) | set(second), "nothing lost"
        assert not duplicates(everything), "nothing read twice"
        wait_until(lambda: consumer.committed() == {0: 2000, 1: 2000, 2: 2000}, TIMEOUT,
                   what="commits after the restart")
        consumer.stop()

    # A new consumer of the group starts where the group left off.
    third = produce_numbered(node.bootstrap, topic, 6_000, 30, 3)
    with ConsumerProcess(node.bootstrap, topic, group, client_id="successor") as successor:
        wait_for_values([successor], set(third))
        assert sorted(v for _, _, v in successor.records()) == third


def test_committed_offsets_survive_kill_9_with_flush_on_every_write(fresh_broker):
    node = fresh_broker(["--flush-interval-ms", "0"])
    topic = unique_topic("grp-crash")
    group = unique_topic("g")
    clients.create_topic(node.bootstrap, topic, partitions=2)
    consumer = KafkaConsumer(bootstrap_servers=node.bootstrap, group_id=group, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        consumer.assign(tps)
        consumer.commit({tps[0]: OffsetAndMetadata(11, "a", -1), tps[1]: OffsetAndMetadata(22, "b", -1)})
    finally:
        consumer.close(autocommit=False)
    node.kill9()
    node.start()
    assert committed_offsets(node.bootstrap, group) == {0: 11, 1: 22}


def test_batched_find_coordinator_and_multi_group_offset_fetch(broker):
    topic = unique_topic("grp-batch")
    clients.create_topic(broker.bootstrap, topic, partitions=1)
    groups = [unique_topic("ga"), unique_topic("gb"), unique_topic("gc")]
    for i, group in enumerate(groups):
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group,
                                 enable_auto_commit=False)
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            consumer.commit({tp: OffsetAndMetadata(i + 1, "", -1)})
        finally:
            consumer.close(autocommit=False)
    admin = clients.admin(broker.bootstrap)
    try:
        # kafka-python resolves all coordinators with one FindCoordinator v4
        # and fetches all offsets with one OffsetFetch v8 when offered.
        described = admin.describe_groups(groups)
        assert {g: d["group_state"] for g, d in described.items()} == {g: "Empty" for g in groups}
        found = admin.list_group_offsets({g: None for g in groups})
        assert {g: found[g][TopicPartition(topic, 0)].offset for g in groups} == {
            g: i + 1 for i, g in enumerate(groups)}
    finally:
        admin.close()


def test_offsets_of_a_deleted_topic_are_dropped(broker):
    topic = unique_topic("grp-deleted")
    keep = unique_topic("grp-kept")
    group = unique_topic("g")
    clients.create_topic(broker.bootstrap, topic, partitions=1)
    clients.create_topic(broker.bootstrap, keep, partitions=1)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, 0), TopicPartition(keep, 0)]
        consumer.assign(tps)
        consumer.commit({tp: OffsetAndMetadata(5, "", -1) for tp in tps})
    finally:
        consumer.close(autocommit=False)
    admin = clients.admin(broker.bootstrap)
    try:
        admin.delete_topics([topic])
        found = admin.list_group_offsets({group: None})[group]
        assert {tp.topic: o.offset for tp, o in found.items()} == {keep: 5}
        # The internal topic stays out of the topic list, but can be asked for.
        assert "__consumer_offsets" not in admin.list_topics()
        [meta] = admin.describe_topics(["__consumer_offsets"])
        assert meta["is_internal"] and len(meta["partitions"]) == 50
    finally:
        admin.close()


def test_cli_lists_describes_with_lag_and_resets_offsets(broker):
    topic = unique_topic("grp-cli")
    group = unique_topic("g")
    clients.create_topic(broker.bootstrap, topic, partitions=2)
    first = produce_numbered(broker.bootstrap, topic, 0, 100, 2)
    with ConsumerProcess(broker.bootstrap, topic, group, client_id="cli-consumer") as consumer:
        wait_for_values([consumer], set(first))
        wait_for_assignment([consumer], 2)
        wait_until(lambda: consumer.committed() == {0: 50, 1: 50}, TIMEOUT, what="commits")

        listed = sluice_groups(broker.bootstrap, "list")
        assert listed.returncode == 0, listed.stderr
        assert any(line.split()[:2] == [group, "Stable"] for line in listed.stdout.splitlines())

        described = sluice_groups(broker.bootstrap, "describe", group)
        assert described.returncode == 0, described.stderr
        assert "STATE Stable" in described.stdout and "cli-consumer" in described.stdout
        assert f"{topic}:0,1" in described.stdout
        rows = [line.split() for line in described.stdout.splitlines() if line.startswith(topic)]
        assert [(r[1], r[2], r[3], r[4]) for r in rows] == [("0", "50", "50", "0"), ("1", "50", "50", "0")]

        refused = sluice_groups(broker.bootstrap, "reset-offsets", group, "--topic", topic, "--to-earliest")
        assert refused.returncode != 0
        assert "Stable" in refused.stderr and "stop its consumers" in refused.stderr
        consumer.stop()

    produce_numbered(broker.bootstrap, topic, 100, 20, 2)
    described = sluice_groups(broker.bootstrap, "describe", group)
    rows = [line.split() for line in described.stdout.splitlines() if line.startswith(topic)]
    assert [(r[2], r[3], r[4]) for r in rows] == [("50", "60", "10"), ("50", "60", "10")], described.stdout
    assert "STATE Empty" in described.stdout

    reset = sluice_groups(broker.bootstrap, "reset-offsets", group, "--topic", topic, "--to-offset", "10")
    assert reset.returncode == 0, reset.stderr
    assert committed_offsets(broker.bootstrap, group) == {0: 10, 1: 10}
    # Consumers of the group start from the new position.
    expected = {f"v{n:07d}" for n in range(20, 120)}
    with ConsumerProcess(broker.bootstrap, topic, group, client_id="after-reset") as consumer:
        wait_for_values([consumer], expected)
        records = consumer.records()
        assert min(o for p, o, _ in records if p == 0) == 10
        assert min(o for p, o, _ in records if p == 1) == 10
        assert {v for _, _, v in records} == expected
        consumer.stop()

    for flag, want in (("--to-earliest", {0: 0, 1: 0}), ("--to-latest", {0: 60, 1: 60})):
        reset = sluice_groups(broker.bootstrap, "reset-offsets", group, "--topic", topic, flag)
        assert reset.returncode == 0, reset.stderr
        assert committed_offsets(broker.bootstrap, group) == want
    dry = sluice_groups(broker.bootstrap, "reset-offsets", group, "--topic", topic, "--to-earliest",
                        "--dry-run")
    assert dry.returncode == 0 and "dry run" in dry.stdout
    assert committed_offsets(broker.bootstrap, group) == {0: 60, 1: 60}


def test_cli_reset_to_datetime_uses_record_timestamps(broker):
    topic = unique_topic("grp-cli-time")
    group = unique_topic("g")
    clients.create_topic(broker.bootstrap, topic, partitions=1)
    day1, day2 = 1_767_225_600_000, 1_767_312_000_000  # 2026-01-01 and 2026-01-02, UTC
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(40):
        producer.produce(topic, value=f"r{i}".encode(), partition=0, timestamp=day1 if i < 25 else day2)
    assert producer.flush(30) == 0
    reset = sluice_groups(broker.bootstrap, "reset-offsets", group, "--topic", topic,
                          "--to-datetime", "2026-01-01T12:00:00Z")
    assert reset.returncode == 0, reset.stderr
    assert committed_offsets(broker.bootstrap, group) == {0: 25}
    later = sluice_groups(broker.bootstrap, "reset-offsets", group, "--topic", topic,
                          "--to-datetime", "2027-01-01T00:00:00Z")
    assert later.returncode == 0, later.stderr
    assert committed_offsets(broker.bootstrap, group) == {0: 40}
    bad = sluice_groups(broker.bootstrap, "reset-offsets", group, "--topic", topic,
                        "--to-datetime", "yesterday")
    assert bad.returncode != 0 and "date-time" in bad.stderr

"""Share groups (KIP-932) with confluent-kafka's ShareConsumer (librdkafka's
share consumer): records of a multi-partition topic shared by several
consumers, each accepted once; released, rejected and expired records; a
consumer killed with records in hand; a broker restart with records
acknowledged and records in flight; the group listed as a share group.

Each test starts its own broker (`fresh_broker`) with a short acquisition
lock where it waits for one to expire.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from confluent_kafka import AcknowledgeType, KafkaException, Producer, ShareConsumer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

import wire
from harness import unique_topic, wait_until

LOCK_MS = 2000


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(15)


def start_at_earliest(bootstrap: str, group: str) -> None:
    """The group's share-partitions start at the log start, not its end."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry("share.auto.offset.reset", "earliest",
                    incremental_operation=AlterConfigOpType.SET)])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(15)


def produce(bootstrap: str, topic: str, count: int, partitions: int, start: int = 0) -> set:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(start, start + count):
        producer.produce(topic, value=b"v%d" % i, partition=i % partitions)
    assert producer.flush(15) == 0
    return {b"v%d" % i for i in range(start, start + count)}


def share_consumer(bootstrap: str, group: str, topic: str, explicit: bool = True) -> ShareConsumer:
    consumer = ShareConsumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "share.acknowledgement.mode": "explicit" if explicit else "implicit",
    })
    consumer.subscribe([topic])
    return consumer


def records(consumer: ShareConsumer, timeout: float = 0.5) -> list:
    out = []
    for m in consumer.poll(timeout):
        assert m.error() is None, m.error()
        out.append(m)
    return out


def commit(consumer: ShareConsumer) -> None:
    """Send the acknowledgements; every partition must take them."""
    results = consumer.commit_sync(15)
    failed = {tp: e for tp, e in results.items() if e is not None}
    assert not failed, failed


def test_share_consumers_each_accept_every_record_once(fresh_broker):
    """Three ShareConsumers of one group read 600 records of a 3-partition
    topic, produced in 60 rounds while they poll: every record is delivered,
    once, to one of them, each accepted at its first delivery, and all three
    get some."""
    broker = fresh_broker()
    topic, group = unique_topic("share"), unique_topic("sg")
    create_topic(broker.bootstrap, topic, 3)
    start_at_earliest(broker.bootstrap, group)
    total = 600
    expected = produce(broker.bootstrap, topic, 60, 3)

    lock = threading.Lock()
    delivered: list[tuple[int, bytes, int, int]] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def run(index: int) -> None:
        consumer = share_consumer(broker.bootstrap, group, topic)
        try:
            while not done.is_set():
                batch = records(consumer)
                for m in batch:
                    consumer.acknowledge(m, AcknowledgeType.ACCEPT)
                    with lock:
                        delivered.append((index, m.value(), m.delivery_count(), m.partition()))
                if batch:
                    commit(consumer)
                    time.sleep(0.05)  # let the others take a turn at the records
                with lock:
                    if len({d[1] for d in delivered}) >= total:
                        done.set()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)
            done.set()
        finally:
            consumer.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for round_ in range(1, total // 60):
        time.sleep(0.2)
        expected |= produce(broker.bootstrap, topic, 60, 3, start=60 * round_)
    done.wait(90)
    done.set()
    for t in threads:
        t.join(30)
    assert not errors, errors
    values = [d[1] for d in delivered]
    assert set(values) == expected, f"{len(expected - set(values))} records never delivered"
    assert len(values) == len(expected), "a record was delivered twice"
    assert {d[2] for d in delivered} == {1}
    assert {d[3] for d in delivered} == {0, 1, 2}
    by_consumer = {i: sum(1 for d in delivered if d[0] == i) for i in range(3)}
    assert all(n > 0 for n in by_consumer.values()), by_consumer


def test_released_record_comes_back_rejected_one_does_not(fresh_broker):
    """RELEASE puts a record back with a higher delivery count; REJECT
    archives it; ACCEPT is final."""
    broker = fresh_broker(["--group-share-record-lock-duration-ms", str(LOCK_MS)])
    topic, group = unique_topic("share"), unique_topic("sg")
    create_topic(broker.bootstrap, topic, 1)
    start_at_earliest(broker.bootstrap, group)
    produce(broker.bootstrap, topic, 10, 1)
    consumer = share_consumer(broker.bootstrap, group, topic)
    try:
        seen: dict[int, list[int]] = {}

        def take() -> bool:
            for m in records(consumer):
                seen.setdefault(m.offset(), []).append(m.delivery_count())
                if m.offset() == 3 and m.delivery_count() == 1:
                    consumer.acknowledge(m, AcknowledgeType.RELEASE)
                elif m.offset() == 4:
                    consumer.acknowledge(m, AcknowledgeType.REJECT)
                else:
                    consumer.acknowledge(m, AcknowledgeType.ACCEPT)
                commit(consumer)
            return len(seen.get(3, [])) == 2 and len(seen) == 10

        wait_until(take, 30, what="offset 3 delivered again")
        assert seen[3] == [1, 2]
        # Nothing else comes back within twice the lock: 4 was rejected, the rest accepted.
        deadline = time.monotonic() + 2 * LOCK_MS / 1000
        while time.monotonic() < deadline:
            again = records(consumer)
            for m in again:
                consumer.acknowledge(m, AcknowledgeType.ACCEPT)
            assert not again, [(m.offset(), m.delivery_count()) for m in again]
        assert {o: c for o, c in seen.items() if c != [1]} == {3: [1, 2]}
    finally:
        consumer.close()


KILLED_CONSUMER = textwrap.dedent("""
    import sys
    from confluent_kafka import ShareConsumer
    bootstrap, group, topic = sys.argv[1:4]
    c = ShareConsumer({"bootstrap.servers": bootstrap, "group.id": group,
                       "share.acknowledgement.mode": "explicit"})
    c.subscribe([topic])
    while True:
        got = [m for m in c.poll(0.5) if m.error() is None]
        if got:
            print(" ".join(str(m.offset()) for m in got), flush=True)
            break
    sys.stdin.read()  # holds the records, unacknowledged, until killed
""")


def test_records_of_a_killed_consumer_go_to_another_after_the_lock(fresh_broker):
    """A consumer in another process acquires records and is SIGKILLed
    without acknowledging them: once their acquisition lock expires they
    are delivered to the consumer that is left, with delivery count 2."""
    broker = fresh_broker(["--group-share-record-lock-duration-ms", str(LOCK_MS)])
    topic, group = unique_topic("share"), unique_topic("sg")
    create_topic(broker.bootstrap, topic, 1)
    start_at_earliest(broker.bootstrap, group)
    produce(broker.bootstrap, topic, 20, 1)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_CONSUMER, broker.bootstrap, group, topic],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        held = {int(o) for o in line.split()}
        assert held, "the consumer in the subprocess got no records"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        survivor = share_consumer(broker.bootstrap, group, topic)
        try:
            got: dict[int, int] = {}

            def take() -> bool:
                for m in records(survivor):
                    got[m.offset()] = m.delivery_count()
                    survivor.acknowledge(m, AcknowledgeType.ACCEPT)
                    commit(survivor)
                return set(got) == set(range(20))

            wait_until(take, 30, what="every record delivered to the survivor")
            assert all(got[o] == 2 for o in held), {o: got[o] for o in held}
            assert all(got[o] == 1 for o in set(range(20)) - held)
        finally:
            survivor.close()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_restart_keeps_accepted_records_and_redelivers_the_rest(fresh_broker):
    """A consumer accepts the even offsets of its first records and leaves
    the odd ones unacknowledged; after a restart of the broker, a new
    consumer gets every record but the accepted ones: the odd ones it held
    with delivery count 2, the rest with 1."""
    broker = fresh_broker()
    topic, group = unique_topic("share"), unique_topic("sg")
    create_topic(broker.bootstrap, topic, 2)
    start_at_earliest(broker.bootstrap, group)
    everything = produce(broker.bootstrap, topic, 40, 2)
    consumer = share_consumer(broker.bootstrap, group, topic)
    try:
        batch = wait_until(lambda: records(consumer), 30, what="a first batch")
        accepted = {m.value() for m in batch if m.offset() % 2 == 0}
        held = {m.value() for m in batch if m.offset() % 2 == 1}
        for m in batch:
            if m.offset() % 2 == 0:
                consumer.acknowledge(m, AcknowledgeType.ACCEPT)
        commit(consumer)
    finally:
        consumer.close()
    assert accepted and held
    broker.restart()
    after = share_consumer(broker.bootstrap, group, topic)
    try:
        got: dict[bytes, int] = {}

        def take_after() -> bool:
            for m in records(after):
                got[m.value()] = m.delivery_count()
                after.acknowledge(m, AcknowledgeType.ACCEPT)
                commit(after)
            return set(got) >= everything - accepted

        wait_until(take_after, 30, what="every record not accepted, after the restart")
        assert not set(got) & accepted, "an accepted record came back"
        assert all(got[v] == 2 for v in held), {v: got[v] for v in held}
        assert all(got[v] == 1 for v in everything - accepted - held)
    finally:
        after.close()


LIST_GROUPS, SHARE_GROUP_DESCRIBE = 16, 77


def list_groups_of_type(conn, group_type: str) -> list[tuple[str, str, str, str]]:
    """ListGroups v5 filtered by type: (group id, protocol type, state, type)."""
    body = (wire.uvarint(1) + wire.uvarint(2) + wire.compact_string(group_type)
            + wire.EMPTY_TAGGED_FIELDS)
    r = conn.request(LIST_GROUPS, 5, body, header_version=2, response_header_version=1)
    r.int32()  # throttle
    assert r.int16() == 0
    out = []
    for _ in range(r.uvarint() - 1):
        out.append((r.compact_string(), r.compact_string(), r.compact_string(),
                    r.compact_string()))
        r.skip_tagged_fields()
    return out


def share_group_describe(conn, group: str) -> tuple[int, str, str, int]:
    """ShareGroupDescribe v1 of one group: (error, state, assignor, members)."""
    body = (wire.uvarint(2) + wire.compact_string(group) + wire.int8(0)
            + wire.EMPTY_TAGGED_FIELDS)
    r = conn.request(SHARE_GROUP_DESCRIBE, 1, body, header_version=2,
                     response_header_version=1)
    r.int32()  # throttle
    assert r.uvarint() == 2, "one group"
    error = r.int16()
    r.compact_string()  # error message
    assert r.compact_string() == group
    state = r.compact_string()
    r.int32()  # group epoch
    r.int32()  # assignment epoch
    assignor = r.compact_string()
    return error, state, assignor, r.uvarint() - 1


def test_share_group_is_listed_and_described_as_a_share_group(fresh_broker):
    """ListGroups v5 lists a share group with type share (and not among the
    consumer groups); ShareGroupDescribe v1 describes it with its members.
    (confluent-kafka's admin client lists consumer groups only.)"""
    broker = fresh_broker()
    topic, group = unique_topic("share"), unique_topic("sg")
    create_topic(broker.bootstrap, topic, 1)
    consumers = [share_consumer(broker.bootstrap, group, topic) for _ in range(2)]
    try:
        with wire.Connection(broker.bootstrap) as conn:
            def both_members():
                for c in consumers:
                    c.poll(0.1)
                return share_group_describe(conn, group)[3] == 2

            wait_until(both_members, 20, what="two members in the share group")
            assert share_group_describe(conn, group) == (0, "Stable", "simple", 2)
            assert (group, "share", "Stable", "share") in list_groups_of_type(conn, "share")
            assert all(g[0] != group for g in list_groups_of_type(conn, "consumer"))
            error, *_ = share_group_describe(conn, "no-such-share-group")
            assert error == 69  # GROUP_ID_NOT_FOUND
    finally:
        for c in consumers:
            c.close()


SHARE_GROUP_HEARTBEAT, UNSUPPORTED_VERSION = 76, 35


def test_a_cluster_member_refuses_share_groups(tmp_path, request):
    """On a three-node cluster the share APIs answer UNSUPPORTED_VERSION
    (the share-partition state is not replicated), every node stays up, and
    a ShareConsumer stops with that error instead of getting records."""
    from cluster import Cluster

    with Cluster(tmp_path / "cluster", request) as cluster:
        cluster.start()
        cluster.wait_registered()
        topic, group = unique_topic("share"), unique_topic("sg")
        create_topic(cluster.bootstrap, topic, 3)
        for node in cluster.nodes.values():
            with wire.Connection(node.bootstrap) as conn:
                body = (wire.compact_string(group) + wire.compact_string("m-1") + wire.int32(0)
                        + wire.compact_string(None) + wire.uvarint(2)
                        + wire.compact_string(topic) + wire.EMPTY_TAGGED_FIELDS)
                r = conn.request(SHARE_GROUP_HEARTBEAT, 1, body, header_version=2,
                                 response_header_version=1)
                r.int32()  # throttle
                assert r.int16() == UNSUPPORTED_VERSION
        produce(cluster.bootstrap, topic, 5, 3)
        consumer = share_consumer(cluster.bootstrap, group, topic)
        try:
            # librdkafka makes the refusal a fatal error of the consumer.
            with pytest.raises(KafkaException, match="UNSUPPORTED_VERSION"):
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    assert [m for m in consumer.poll(0.5) if m.error() is None] == []
        finally:
            with contextlib.suppress(KafkaException):
                consumer.close()
        assert all(node.alive() for node in cluster.nodes.values())


DISPATCH_GROUP = "sluice-shop-notification-dispatch"


def test_the_shop_dispatches_each_notification_from_a_share_group(fresh_broker):
    """The shop's notification dispatcher is a member of a share group on
    `notifications`: a failed payment's notification is dispatched (logged)
    once, with delivery count 1, and the group is described with its member."""
    from shop_client import call, place_order

    node = fresh_broker()
    with wire.Connection(node.bootstrap) as conn:
        wait_until(lambda: share_group_describe(conn, DISPATCH_GROUP)[3] == 1, 30,
                   what="the dispatcher in its share group")

    def dispatched(order_id: str) -> list[str]:
        return [line for line in node.log_lines()
                if "notification dispatched" in line and order_id in line]

    # The group's share-partitions start at the end of `notifications` at its
    # first fetch: order until one notification made after it is dispatched.
    deadline = time.monotonic() + 60
    order_id = None
    while time.monotonic() < deadline and order_id is None:
        candidate = place_order(node)["order_id"]
        status, body = call(node, "POST", "/api/payments",
                            {"order_id": candidate, "amount": 52.48, "method": "card",
                             "status": "failed", "reason": "card declined"})
        assert status == 202, body
        try:
            wait_until(lambda: dispatched(candidate), 5, what="the notification dispatched")
            order_id = candidate
        except TimeoutError:
            continue
    assert order_id, "no notification was dispatched"
    lines = dispatched(order_id)
    assert len(lines) == 1, lines
    assert "payment_failed" in lines[0] and "delivery=1" in lines[0], lines[0]

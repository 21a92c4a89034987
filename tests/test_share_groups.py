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
import uuid

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


def new_topic_and_group(bootstrap: str, partitions: int) -> tuple[str, str]:
    """A new topic of `partitions` and a new share group starting at its log start."""
    topic, group = unique_topic("share"), unique_topic("sg")
    create_topic(bootstrap, topic, partitions)
    start_at_earliest(bootstrap, group)
    return topic, group


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
    topic, group = new_topic_and_group(broker.bootstrap, 3)
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


def test_one_implicit_consumer_reads_three_partitions_without_losing_records(fresh_broker):
    """One ShareConsumer with implicit acknowledgement (acknowledgements ride
    on the next ShareFetch) reads 6,000 records of three partitions at once:
    each is delivered once, at its first delivery. An answer naming a
    partition only for its acknowledgements used to carry null records, and
    librdkafka dropped the records of the partitions after it, delivered
    again only when their locks expired."""
    broker = fresh_broker()
    topic, group = new_topic_and_group(broker.bootstrap, 3)
    expected = produce(broker.bootstrap, topic, 6000, 3)
    consumer = share_consumer(broker.bootstrap, group, topic, explicit=False)
    delivered: list[tuple[bytes, int]] = []
    try:
        def all_read():
            delivered.extend((m.value(), m.delivery_count()) for m in records(consumer))
            return len({v for v, _ in delivered}) >= len(expected)

        # Well within the 30 s acquisition lock: nothing comes back by expiry.
        wait_until(all_read, 20, what="6,000 records read by one consumer")
    finally:
        consumer.close()
    assert sorted(v for v, _ in delivered) == sorted(expected)
    assert {c for _, c in delivered} == {1}


def test_released_record_comes_back_rejected_one_does_not(fresh_broker):
    """RELEASE puts a record back with a higher delivery count; REJECT
    archives it; ACCEPT is final."""
    broker = fresh_broker(["--group-share-record-lock-duration-ms", str(LOCK_MS)])
    topic, group = new_topic_and_group(broker.bootstrap, 1)
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


def test_records_of_a_killed_consumer_go_to_another_when_its_connection_closes(fresh_broker):
    """A consumer in another process acquires records and is SIGKILLed
    without acknowledging them: its connection closes, so its share session
    closes and the records are delivered to the consumer that is left, with
    delivery count 2, well before their 30 s acquisition lock expires."""
    broker = fresh_broker()
    topic, group = new_topic_and_group(broker.bootstrap, 1)
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

            # Well within the default 30 s lock.
            wait_until(take, 10, what="every record delivered to the survivor")
            assert all(got[o] == 2 for o in held), {o: got[o] for o in held}
            assert all(got[o] == 1 for o in set(range(20)) - held)
        finally:
            survivor.close()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_records_held_by_an_idle_consumer_go_to_another_after_the_lock(fresh_broker):
    """A consumer acquires records, acknowledges none and stops polling
    (still connected, still in the group): once their acquisition lock
    expires they are delivered to a second consumer, with delivery count 2."""
    broker = fresh_broker(["--group-share-record-lock-duration-ms", str(LOCK_MS)])
    topic, group = new_topic_and_group(broker.bootstrap, 1)
    produce(broker.bootstrap, topic, 20, 1)
    idle = share_consumer(broker.bootstrap, group, topic)
    other = None
    try:
        held: set = set()

        def hold() -> bool:
            held.update(m.offset() for m in records(idle))
            return bool(held)

        wait_until(hold, 30, what="records acquired by the first consumer")
        other = share_consumer(broker.bootstrap, group, topic)
        got: dict[int, int] = {}

        def take() -> bool:
            for m in records(other):
                got[m.offset()] = m.delivery_count()
                other.acknowledge(m, AcknowledgeType.ACCEPT)
            if got:
                commit(other)
            return held <= set(got)

        wait_until(take, 30, what="the held records delivered to the second consumer")
        assert all(got[o] == 2 for o in held), {o: got[o] for o in held}
    finally:
        idle.close()
        if other is not None:
            other.close()


def test_restart_keeps_accepted_records_and_redelivers_the_rest(fresh_broker):
    """A consumer accepts the even offsets of its first records and leaves
    the odd ones unacknowledged; after a restart of the broker, a new
    consumer gets every record but the accepted ones: the odd ones it held
    with delivery count 2, the rest with 1."""
    broker = fresh_broker()
    topic, group = new_topic_and_group(broker.bootstrap, 2)
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
    with wire.Connection(broker.bootstrap) as conn:
        # Its stored share-partitions keep the group known, empty.
        assert (group, "share", "Empty", "share") in list_groups_of_type(conn, "share")
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


def share_group_describe_reader(conn, group: str):
    """ShareGroupDescribe v1 of one group: (error, state, group epoch,
    assignor, the reader at its member count)."""
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
    group_epoch = r.int32()
    r.int32()  # assignment epoch
    assignor = r.compact_string()
    return error, state, group_epoch, assignor, r


def share_group_describe(conn, group: str) -> tuple[int, str, str, int]:
    """ShareGroupDescribe v1 of one group: (error, state, assignor, members)."""
    error, state, _, assignor, r = share_group_describe_reader(conn, group)
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


def share_group_assignment(conn, group: str) -> tuple[int, dict[str, tuple[int, set]]]:
    """ShareGroupDescribe v1 of one group: (group epoch, {member id:
    (member epoch, {(topic, partition)})})."""
    error, _, group_epoch, _, r = share_group_describe_reader(conn, group)
    assert error == 0
    members = {}
    for _ in range(r.uvarint() - 1):
        member_id = r.compact_string()
        r.compact_string()  # rack
        member_epoch = r.int32()
        r.compact_string()  # client id
        r.compact_string()  # client host
        for _ in range(r.uvarint() - 1):
            r.compact_string()  # subscribed topic
        held = set()
        for _ in range(r.uvarint() - 1):
            r._take(16)  # topic id
            name = r.compact_string()
            for _ in range(r.uvarint() - 1):
                held.add((name, r.int32()))
            r.skip_tagged_fields()
        r.skip_tagged_fields()  # assignment
        r.skip_tagged_fields()  # member
        members[member_id] = (member_epoch, held)
    return group_epoch, members


def test_the_simple_assignor_spreads_partitions_over_the_members(fresh_broker):
    """Three members of a share group on a 6-partition topic hold 2
    partitions each, every partition once; five members on a 2-partition
    topic share them, each partition held by at least two, each member
    holding one. Records still reach every member, each once."""
    broker = fresh_broker()
    topic, group = new_topic_and_group(broker.bootstrap, 6)
    expected = produce(broker.bootstrap, topic, 120, 6)
    consumers = [share_consumer(broker.bootstrap, group, topic) for _ in range(3)]
    got: list[tuple[int, bytes]] = []
    try:
        with wire.Connection(broker.bootstrap) as conn:
            def spread():
                for i, c in enumerate(consumers):
                    for m in records(c, 0.1):
                        c.acknowledge(m, AcknowledgeType.ACCEPT)
                        got.append((i, m.value()))
                    commit(c)
                epoch, members = share_group_assignment(conn, group)
                return (len(members) == 3
                        and all(e == epoch for e, _ in members.values())
                        and sorted(len(h) for _, h in members.values()) == [2, 2, 2])

            wait_until(spread, 30, what="three members holding two partitions each")
            _, members = share_group_assignment(conn, group)
            held = [p for _, h in members.values() for p in h]
            assert sorted(held) == [(topic, p) for p in range(6)], members

            def everything_read():
                for i, c in enumerate(consumers):
                    for m in records(c, 0.1):
                        c.acknowledge(m, AcknowledgeType.ACCEPT)
                        got.append((i, m.value()))
                    commit(c)
                return len({v for _, v in got}) >= len(expected)

            wait_until(everything_read, 30, what="every record read")
            values = [v for _, v in got]
            assert set(values) == expected
            assert len(values) == len(expected), "a record was delivered twice"

        small = unique_topic("share")
        create_topic(broker.bootstrap, small, 2)
        group2 = unique_topic("sg")
        crowd = [share_consumer(broker.bootstrap, group2, small) for _ in range(5)]
        consumers.extend(crowd)
        with wire.Connection(broker.bootstrap) as conn:
            def shared():
                for c in crowd:
                    c.poll(0.05)
                epoch, members = share_group_assignment(conn, group2)
                return (len(members) == 5
                        and all(e == epoch for e, _ in members.values()))

            wait_until(shared, 30, what="five members of the second group")
            _, members = share_group_assignment(conn, group2)
            assert all(len(h) == 1 for _, h in members.values()), members
            holders = [sum(1 for _, h in members.values() if (small, p) in h) for p in range(2)]
            assert min(holders) >= 2 and sum(holders) == 5, holders
    finally:
        for c in consumers:
            c.close()


SHARE_FETCH = 78
DESCRIBE_SHARE_OFFSETS, ALTER_SHARE_OFFSETS, DELETE_SHARE_OFFSETS = 90, 91, 92
NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND = 68, 69


def describe_share_offsets(conn, group: str, topic: str | None,
                           partitions: list[int] | None = None,
                           epochs: dict | None = None) -> tuple[int, dict]:
    """DescribeShareGroupOffsets v0 of one group, of one topic's partitions
    or (topic None) of all: (group error, {(topic, partition): (start, error)});
    each partition's leader epoch goes to `epochs` when given."""
    if topic is None:
        topics = wire.uvarint(0)
    else:
        topics = (wire.uvarint(2) + wire.compact_string(topic)
                  + wire.uvarint(len(partitions) + 1)
                  + b"".join(wire.int32(p) for p in partitions) + wire.EMPTY_TAGGED_FIELDS)
    body = (wire.uvarint(2) + wire.compact_string(group) + topics + wire.EMPTY_TAGGED_FIELDS
            + wire.EMPTY_TAGGED_FIELDS)
    r = conn.request(DESCRIBE_SHARE_OFFSETS, 0, body, header_version=2,
                     response_header_version=1)
    r.int32()  # throttle
    assert r.uvarint() == 2, "one group"
    assert r.compact_string() == group
    out = {}
    for _ in range(r.uvarint() - 1):
        name = r.compact_string()
        r._take(16)  # topic id
        for _ in range(r.uvarint() - 1):
            partition, start, epoch, error = r.int32(), r.int64(), r.int32(), r.int16()
            r.compact_string()  # error message
            r.skip_tagged_fields()
            out[(name, partition)] = (start, error)
            if epochs is not None:
                epochs[(name, partition)] = epoch
        r.skip_tagged_fields()
    error = r.int16()
    return error, out


def alter_share_offsets(conn, group: str, topic: str, offsets: dict[int, int]) -> tuple[int, dict]:
    """AlterShareGroupOffsets v0: (error, {partition: error})."""
    parts = b"".join(wire.int32(p) + wire.int64(o) + wire.EMPTY_TAGGED_FIELDS
                     for p, o in offsets.items())
    body = (wire.compact_string(group) + wire.uvarint(2) + wire.compact_string(topic)
            + wire.uvarint(len(offsets) + 1) + parts + wire.EMPTY_TAGGED_FIELDS
            + wire.EMPTY_TAGGED_FIELDS)
    r = conn.request(ALTER_SHARE_OFFSETS, 0, body, header_version=2, response_header_version=1)
    r.int32()  # throttle
    error = r.int16()
    r.compact_string()
    out = {}
    for _ in range(r.uvarint() - 1):
        r.compact_string()
        r._take(16)
        for _ in range(r.uvarint() - 1):
            partition, perror = r.int32(), r.int16()
            r.compact_string()
            r.skip_tagged_fields()
            out[partition] = perror
        r.skip_tagged_fields()
    return error, out


def delete_share_offsets(conn, group: str, topic: str) -> tuple[int, list[int]]:
    """DeleteShareGroupOffsets v0 of one topic: (error, [topic errors])."""
    body = (wire.compact_string(group) + wire.uvarint(2) + wire.compact_string(topic)
            + wire.EMPTY_TAGGED_FIELDS + wire.EMPTY_TAGGED_FIELDS)
    r = conn.request(DELETE_SHARE_OFFSETS, 0, body, header_version=2, response_header_version=1)
    r.int32()  # throttle
    error = r.int16()
    r.compact_string()
    errors = []
    for _ in range(r.uvarint() - 1):
        r.compact_string()
        r._take(16)
        errors.append(r.int16())
        r.compact_string()
        r.skip_tagged_fields()
    return error, errors


def test_share_group_offsets_are_described_altered_and_deleted_then_the_group(fresh_broker):
    """The share group offset APIs and DeleteGroups of a share group: the
    start offsets after every record is accepted; altering or deleting them
    (or the group) is refused while a member is in it; once it left, an
    altered start offset is where records are delivered again, deleted
    offsets are gone, and the deleted group is no longer listed."""
    broker = fresh_broker()
    topic, group = new_topic_and_group(broker.bootstrap, 2)
    everything = produce(broker.bootstrap, topic, 10, 2)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    consumer = share_consumer(broker.bootstrap, group, topic)
    with wire.Connection(broker.bootstrap) as conn:
        try:
            seen: set = set()

            def read_all():
                for m in records(consumer):
                    consumer.acknowledge(m, AcknowledgeType.ACCEPT)
                    seen.add(m.value())
                commit(consumer)
                return seen >= everything

            wait_until(read_all, 30, what="the ten records accepted")
            assert describe_share_offsets(conn, group, topic, [0, 1, 7]) == (0, {
                (topic, 0): (5, 0), (topic, 1): (5, 0), (topic, 7): (-1, 3)})
            assert describe_share_offsets(conn, group, None) == (0, {
                (topic, 0): (5, 0), (topic, 1): (5, 0)})
            assert alter_share_offsets(conn, group, topic, {0: 2})[0] == NON_EMPTY_GROUP
            assert delete_share_offsets(conn, group, topic)[0] == NON_EMPTY_GROUP
            refused = admin.delete_consumer_groups([group])[group]
            with pytest.raises(KafkaException) as err:
                refused.result(15)
            assert err.value.args[0].code() == NON_EMPTY_GROUP
        finally:
            consumer.close()

        def left():
            return share_group_describe(conn, group)[3] == 0

        wait_until(left, 20, what="the consumer gone from the group")
        assert alter_share_offsets(conn, group, topic, {0: 2, 1: 99}) == (0, {0: 0, 1: 42})
        assert describe_share_offsets(conn, group, topic, [0, 1])[1] == {
            (topic, 0): (2, 0), (topic, 1): (5, 0)}
        again = share_consumer(broker.bootstrap, group, topic)
        try:
            redelivered: list = []

            def three_again():
                for m in records(again):
                    again.acknowledge(m, AcknowledgeType.ACCEPT)
                    redelivered.append((m.partition(), m.offset()))
                commit(again)
                return len(redelivered) >= 3

            wait_until(three_again, 30, what="offsets 2-4 of partition 0 again")
            assert sorted(redelivered) == [(0, 2), (0, 3), (0, 4)]
        finally:
            again.close()
        wait_until(left, 20, what="the second consumer gone from the group")
        assert delete_share_offsets(conn, group, topic) == (0, [0])
        assert delete_share_offsets(conn, group, "no-such-topic") == (0, [3])
        assert describe_share_offsets(conn, group, topic, [0])[1] == {(topic, 0): (-1, 0)}
        # Not a classic group: DescribeGroups does not describe it.
        described = admin.describe_consumer_groups([group])[group]
        with pytest.raises(KafkaException) as err:
            described.result(15)
        assert err.value.args[0].code() == GROUP_ID_NOT_FOUND
        admin.delete_consumer_groups([group])[group].result(15)
        assert all(g[0] != group for g in list_groups_of_type(conn, "share"))
        assert describe_share_offsets(conn, group, None) == (GROUP_ID_NOT_FOUND, {})


def share_heartbeat_join(conn, group: str, member: str, topic: str) -> uuid.UUID:
    """ShareGroupHeartbeat v1 joining `member`; returns the topic's id from
    the assignment."""
    body = (wire.compact_string(group) + wire.compact_string(member) + wire.int32(0)
            + wire.compact_string(None) + wire.uvarint(2)
            + wire.compact_string(topic) + wire.EMPTY_TAGGED_FIELDS)
    r = conn.request(SHARE_GROUP_HEARTBEAT, 1, body, header_version=2,
                     response_header_version=1)
    r.int32()  # throttle
    assert r.int16() == 0
    r.compact_string()  # error message
    assert r.compact_string() == member
    r.int32()  # member epoch
    r.int32()  # heartbeat interval
    assert r.int8() == 1, "an assignment"
    assert r.uvarint() == 2, "one topic"
    return uuid.UUID(bytes=r._take(16))


def test_a_waiting_share_fetch_is_answered_by_an_append(fresh_broker):
    """A ShareFetch that waits (min_bytes 1, max_wait 25 s) on an empty
    topic is answered with the records a producer appends while it waits,
    not with an empty answer at its deadline."""
    broker = fresh_broker()
    topic, group = unique_topic("share"), unique_topic("sg")
    create_topic(broker.bootstrap, topic, 1)
    with wire.Connection(broker.bootstrap, timeout=40) as conn:
        topic_id = share_heartbeat_join(conn, group, "member-1", topic)
        fetch = (wire.compact_string(group) + wire.compact_string("member-1") + wire.int32(0)
                 + wire.int32(25_000) + wire.int32(1) + wire.int32(1 << 20)
                 + wire.int32(100) + wire.int32(100)
                 + wire.uvarint(2) + topic_id.bytes
                 + wire.uvarint(2) + wire.int32(0) + wire.uvarint(1) + wire.EMPTY_TAGGED_FIELDS
                 + wire.EMPTY_TAGGED_FIELDS
                 + wire.uvarint(1) + wire.EMPTY_TAGGED_FIELDS)
        conn.send_raw(wire.request_frame(SHARE_FETCH, 1, 7, fetch, header_version=2))
        # Nothing to deliver: the fetch waits.
        assert conn.outcome_within(0.5) == ("silent", None)
        # One batch of three, so that one append wakes the fetch.
        with wire.Connection(broker.bootstrap) as producer:
            batch = wire.record_batch([b"a", b"b", b"c"])
            assert wire.produce(producer, topic, 0, batch) == (0, 0)
        outcome, frame = conn.outcome_within(20)
        assert outcome == "frame"
        r = wire.Reader(frame)
        assert r.int32() == 7
        r.skip_tagged_fields()
        r.int32()  # throttle
        assert r.int16() == 0
        r.compact_string()
        r.int32()  # acquisition lock timeout
        assert r.uvarint() == 2, "one topic"
        assert r._take(16) == topic_id.bytes
        assert r.uvarint() == 2, "one partition"
        assert r.int32() == 0
        assert r.int16() == 0
        r.compact_string()
        r.int16()  # acknowledge error
        r.compact_string()
        r.int32(), r.int32()  # current leader
        r.skip_tagged_fields()
        size = r.uvarint() - 1
        assert size > 0, "records"
        r._take(size)
        acquired = []
        for _ in range(r.uvarint() - 1):
            acquired.append((r.int64(), r.int64(), r.int16()))
            r.skip_tagged_fields()
        assert acquired == [(0, 2, 1)], acquired


SHARE_GROUP_HEARTBEAT, NOT_COORDINATOR = 76, 16


def on_coordinator(cluster, group: str, call):
    """`call(conn)` on the node that coordinates `group` (the others answer
    NOT_COORDINATOR, the first value `call` returns)."""
    answer = []

    def try_nodes():
        for i in cluster.alive_ids():
            with wire.Connection(cluster.nodes[i].bootstrap) as conn:
                out = call(conn)
            if out[0] != NOT_COORDINATOR:
                answer.append(out)
                return True
        return False

    wait_until(try_nodes, 30, what=f"the coordinator of {group}")
    return answer[0]


def test_share_groups_on_a_cluster_go_on_after_the_leader_is_killed(tmp_path, request):
    """On three nodes (replication factor 3) each share-partition is kept by
    its partition's leader and its state committed to the metadata image:
    two ShareConsumers accept 300 records once each; once the group's start
    offsets show them all accepted, the leader of partition 0 is killed
    (kill -9); its successor goes on from the stored state, so the 300
    records produced next are delivered once each and none of the first 300
    again. After the consumers leave, an altered start offset is where the
    partition's leader delivers from."""
    from cluster import Cluster

    with Cluster(tmp_path / "cluster", request) as cluster:
        cluster.start()
        cluster.wait_registered()
        topic, group = unique_topic("share"), unique_topic("sg")
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        admin.create_topics([NewTopic(topic, 3, 3)])[topic].result(15)
        cluster.wait_healthy(topic, 3, 3)
        start_at_earliest(cluster.bootstrap, group)
        first = produce(cluster.bootstrap, topic, 300, 3)
        delivered: list[bytes] = []
        consumers = [share_consumer(cluster.bootstrap, group, topic) for _ in range(2)]

        def read_until(expected: set, what: str) -> None:
            def step():
                for c in consumers:
                    batch = records(c, 0.2)
                    for m in batch:
                        c.acknowledge(m, AcknowledgeType.ACCEPT)
                        delivered.append(m.value())
                    if batch:
                        commit(c)
                return set(delivered) >= expected

            wait_until(step, 120, what=what)

        def start_offsets(partitions: list[int]) -> tuple[int, dict]:
            return on_coordinator(
                cluster, group, lambda conn: describe_share_offsets(conn, group, topic, partitions))

        def start_offsets_at(n: int) -> None:
            wait_until(lambda: start_offsets([0, 1, 2]) == (0, {
                (topic, p): (n, 0) for p in range(3)}), 30, what=f"start offsets at {n}")

        try:
            read_until(first, "the first 300 records")
            start_offsets_at(100)
            leader = cluster.leaders(topic)[0]
            cluster.kill9(leader)
            cluster.wait_failed_over(topic, leader)
            second = produce(cluster.live_bootstrap, topic, 300, 3, start=300)
            read_until(first | second, "the next 300 records")
            assert sorted(delivered) == sorted(first | second), "a record was delivered twice"
            start_offsets_at(200)
            # Each state is described with the leader epoch of its last
            # writer: partition 0's is its new leader's.
            epochs: dict = {}
            on_coordinator(cluster, group, lambda conn: describe_share_offsets(
                conn, group, topic, [0], epochs))
            image_epoch = cluster.partitions(cluster.image(), topic)[0]["leader_epoch"]
            assert epochs[(topic, 0)] == image_epoch > 0, (epochs, image_epoch)
        finally:
            for c in consumers:
                c.close()

        wait_until(lambda: on_coordinator(
            cluster, group, lambda conn: share_group_describe(conn, group))[3] == 0, 30,
            what="the consumers gone from the group")
        assert on_coordinator(
            cluster, group, lambda conn: alter_share_offsets(conn, group, topic, {1: 150})) == (
                0, {1: 0})
        assert start_offsets([1]) == (0, {(topic, 1): (150, 0)})
        again = share_consumer(cluster.live_bootstrap, group, topic)
        try:
            redelivered: list = []

            def fifty_again():
                for m in records(again):
                    again.acknowledge(m, AcknowledgeType.ACCEPT)
                    redelivered.append((m.partition(), m.offset()))
                commit(again)
                return len(redelivered) >= 50

            wait_until(fifty_again, 60, what="offsets 150-199 of partition 1 again")
            assert sorted(redelivered) == [(1, o) for o in range(150, 200)]
        finally:
            again.close()


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

    # The dispatcher may still be joining: order until one notification is
    # dispatched.
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

"""The partition side of transactions, driven with hand-made frames so that
each step is exact: transactional batches, COMMIT and ABORT markers
(WriteTxnMarkers, as the transaction coordinator sends them), the last
stable offset, the aborted-transaction index, and what librdkafka consumers
see with `isolation.level` read_committed and read_uncommitted. The index
and the open transactions survive a restart.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, TopicPartition
from kafka.record.default_records import DefaultRecordBatchBuilder

import wire
from harness import unique_topic, wait_until
from wire import (EMPTY_TAGGED_FIELDS, array, bytes_, compact_string, int8, int16, int32, int64,
                  string, uvarint)

WRITE_TXN_MARKERS = 27
DESCRIBE_PRODUCERS = 61
INVALID_RECORD = 87
PRODUCER_FENCED = 90


def txn_batch(values: list[bytes], producer_id: int, epoch: int, base_sequence: int) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=True, producer_id=producer_id,
        producer_epoch=epoch, base_sequence=base_sequence, batch_size=1 << 20)
    ts = int(time.time() * 1000)
    for i, v in enumerate(values):
        builder.append(i, timestamp=ts, key=None, value=v, headers=[])
    return bytes(builder.build())


def produce(conn, topic: str, partition: int, batch: bytes, transactional_id: str | None):
    """Produce v3 with a transactional id -> error code."""
    body = (string(transactional_id) + int16(-1) + int32(30_000)
            + array([string(topic) + array([int32(partition) + bytes_(batch)])]))
    r = conn.request(wire.PRODUCE, 3, body)
    r.int32()
    r.string()
    r.int32()
    r.int32()
    return r.int16()


ADD_PARTITIONS_TO_TXN = 24


def begin(conn, transactional_id: str, topic: str, partition: int) -> tuple[int, int]:
    """InitProducerId with `transactional_id`, then AddPartitionsToTxn v1 of
    `topic`-`partition` (the coordinator's check admits the producer's
    batches there) -> (producer id, epoch)."""
    err, pid, epoch = wire.init_producer_id(conn, transactional_id)
    assert err == 0
    add_partitions(conn, transactional_id, pid, epoch, topic, partition)
    return pid, epoch


def add_partitions(conn, transactional_id: str, pid: int, epoch: int, topic: str,
                   partition: int) -> None:
    body = (string(transactional_id) + int64(pid) + int16(epoch)
            + array([string(topic) + array([int32(partition)])]))
    r = conn.request(ADD_PARTITIONS_TO_TXN, 1, body)
    r.int32()
    for _ in range(r.int32()):
        r.string()
        for _ in range(r.int32()):
            r.int32()
            assert r.int16() == 0


def compact_array(items: list[bytes]) -> bytes:
    return uvarint(len(items) + 1) + b"".join(items)


def write_marker(conn, topic: str, partitions: list[int], producer_id: int, epoch: int,
                 commit: bool) -> dict[int, int]:
    """WriteTxnMarkers v1 -> {partition: error code}."""
    topic_entry = (compact_string(topic)
                   + compact_array([int32(p) for p in partitions]) + EMPTY_TAGGED_FIELDS)
    marker = (int64(producer_id) + int16(epoch) + int8(1 if commit else 0)
              + compact_array([topic_entry]) + int32(0) + EMPTY_TAGGED_FIELDS)
    r = conn.request(WRITE_TXN_MARKERS, 1, compact_array([marker]) + EMPTY_TAGGED_FIELDS,
                     header_version=2, response_header_version=1)
    out = {}
    for _ in range(r.uvarint() - 1):
        r.int64()
        for _ in range(r.uvarint() - 1):
            r._take(r.uvarint() - 1)  # topic name
            for _ in range(r.uvarint() - 1):
                index, error = r.int32(), r.int16()
                r.skip_tagged_fields()
                out[index] = error
            r.skip_tagged_fields()
        r.skip_tagged_fields()
    return out


def describe_producers(conn, topic: str, partition: int) -> list[tuple[int, int, int, int]]:
    """DescribeProducers v0 -> [(producer id, epoch, last sequence, txn start offset)]."""
    body = compact_array([compact_string(topic) + compact_array([int32(partition)])
                          + EMPTY_TAGGED_FIELDS]) + EMPTY_TAGGED_FIELDS
    r = conn.request(DESCRIBE_PRODUCERS, 0, body, header_version=2, response_header_version=1)
    r.int32()
    producers = []
    for _ in range(r.uvarint() - 1):
        r._take(r.uvarint() - 1)
        for _ in range(r.uvarint() - 1):
            r.int32()
            error = r.int16()
            assert error == 0, error
            msg_len = r.uvarint() - 1
            if msg_len > 0:
                r._take(msg_len)
            for _ in range(r.uvarint() - 1):
                pid, epoch, last_seq = r.int64(), r.int32(), r.int32()
                r.int64()
                r.int32()
                start = r.int64()
                r.skip_tagged_fields()
                producers.append((pid, epoch, last_seq, start))
            r.skip_tagged_fields()
        r.skip_tagged_fields()
    return producers


def list_latest(conn, topic: str, partition: int, read_committed: bool) -> int:
    """ListOffsets v2 latest -> offset."""
    body = (int32(-1) + int8(1 if read_committed else 0)
            + array([string(topic) + array([int32(partition) + int64(-1)])]))
    r = conn.request(wire.LIST_OFFSETS, 2, body)
    r.int32()
    r.int32()
    r.string()
    r.int32()
    r.int32()
    assert r.int16() == 0
    r.int64()
    return r.int64()


def consume_all(bootstrap: str, topic: str, isolation: str, expect: int,
                timeout: float = 20.0) -> list[bytes]:
    """Values a librdkafka consumer with `isolation` reads from partition 0
    until it has `expect` of them (or the timeout)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("g"),
                  "isolation.level": isolation, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(values) < expect:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                values.append(m.value())
        # A little more polling shows nothing else arrives past what was expected.
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            m = c.poll(0.1)
            if m is not None and m.error() is None:
                values.append(m.value())
        return values
    finally:
        c.close()


def setup_topic(broker) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic
    topic = unique_topic("txnp")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(10)
    return topic


def test_markers_move_the_lso_and_read_committed_drops_aborted_records(fresh_broker):
    broker = fresh_broker()
    topic = setup_topic(broker)
    with wire.Connection(broker.bootstrap) as conn:
        pid_a, epoch_a = begin(conn, "ta", topic, 0)
        pid_b, epoch_b = begin(conn, "tb", topic, 0)
        # A transactional batch without a transactional id is refused.
        assert produce(conn, topic, 0, txn_batch([b"x"], pid_a, epoch_a, 0), None) == INVALID_RECORD
        # Producer A opens a transaction (offsets 0-1), B one (2-3), a plain record (4).
        assert produce(conn, topic, 0, txn_batch([b"a1", b"a2"], pid_a, epoch_a, 0), "ta") == 0
        assert produce(conn, topic, 0, txn_batch([b"b1", b"b2"], pid_b, epoch_b, 0), "tb") == 0
        assert wire.produce(conn, topic, 0, wire.record_batch([b"plain"]))[0] == 0
        assert list_latest(conn, topic, 0, read_committed=False) == 5
        assert list_latest(conn, topic, 0, read_committed=True) == 0
        producers = describe_producers(conn, topic, 0)
        assert (pid_a, epoch_a, 1, 0) in producers, producers
        assert (pid_b, epoch_b, 1, 2) in producers, producers

        # While both are open a read_committed consumer sees nothing.
        assert consume_all(broker.bootstrap, topic, "read_committed", 1, timeout=2.0) == []
        assert sorted(consume_all(broker.bootstrap, topic, "read_uncommitted", 5)) == sorted(
            [b"a1", b"a2", b"b1", b"b2", b"plain"])

        # B aborts (marker at 5): the LSO stays at A's start.
        assert write_marker(conn, topic, [0], pid_b, epoch_b, commit=False) == {0: 0}
        assert list_latest(conn, topic, 0, read_committed=True) == 0
        # A commits (marker at 6): everything is stable.
        assert write_marker(conn, topic, [0], pid_a, epoch_a, commit=True) == {0: 0}
        assert list_latest(conn, topic, 0, read_committed=True) == 7
        assert [p[3] for p in describe_producers(conn, topic, 0)] == [-1, -1]

    committed = consume_all(broker.bootstrap, topic, "read_committed", 3)
    assert sorted(committed) == [b"a1", b"a2", b"plain"], committed
    uncommitted = consume_all(broker.bootstrap, topic, "read_uncommitted", 5)
    assert sorted(uncommitted) == [b"a1", b"a2", b"b1", b"b2", b"plain"], uncommitted

    # The aborted index and an open transaction survive a restart.
    with wire.Connection(broker.bootstrap) as conn:
        assert produce(conn, topic, 0, txn_batch([b"a3"], pid_a, epoch_a, 2), "ta") == 0
        assert list_latest(conn, topic, 0, read_committed=True) == 7
    broker.stop()
    broker.start()
    with wire.Connection(broker.bootstrap) as conn:
        assert list_latest(conn, topic, 0, read_committed=True) == 7
        assert list_latest(conn, topic, 0, read_committed=False) == 8
    committed = consume_all(broker.bootstrap, topic, "read_committed", 3)
    assert sorted(committed) == [b"a1", b"a2", b"plain"], committed
    with wire.Connection(broker.bootstrap) as conn:
        assert write_marker(conn, topic, [0], pid_a, epoch_a, commit=False) == {0: 0}
        assert list_latest(conn, topic, 0, read_committed=True) == 9
    committed = consume_all(broker.bootstrap, topic, "read_committed", 3)
    assert sorted(committed) == [b"a1", b"a2", b"plain"], committed


def test_a_marker_of_a_newer_epoch_fences_the_old_producer(fresh_broker):
    broker = fresh_broker()
    topic = setup_topic(broker)
    with wire.Connection(broker.bootstrap) as conn:
        pid, epoch = begin(conn, "t", topic, 0)
        assert produce(conn, topic, 0, txn_batch([b"old"], pid, epoch, 0), "t") == 0
        # A new instance: the coordinator aborts the transaction with a bumped epoch.
        new = wait_until(lambda: (lambda r: r if r[0] == 0 else None)(
            wire.init_producer_id(conn, "t")), 10.0, what="the new instance's producer id")
        assert new[1] == pid and new[2] > epoch, (new, pid, epoch)
        new_epoch = new[2]
        # The old instance's next batch is refused, and so is a marker of the old epoch.
        # (PRODUCER_FENCED from the coordinator's check, KIP-890.)
        assert produce(conn, topic, 0, txn_batch([b"late"], pid, epoch, 1), "t") in \
            (wire.INVALID_PRODUCER_EPOCH, PRODUCER_FENCED)
        assert write_marker(conn, topic, [0], pid, epoch, commit=True) == \
            {0: wire.INVALID_PRODUCER_EPOCH}
        # The new epoch starts its sequences at 0.
        add_partitions(conn, "t", pid, new_epoch, topic, 0)
        assert produce(conn, topic, 0, txn_batch([b"new"], pid, new_epoch, 0), "t") == 0
        assert write_marker(conn, topic, [0], pid, new_epoch, commit=True) == {0: 0}
        wait_until(lambda: list_latest(conn, topic, 0, read_committed=True) == 4, 5.0,
                   what="LSO at the log end")
    committed = consume_all(broker.bootstrap, topic, "read_committed", 1)
    assert committed == [b"new"], committed

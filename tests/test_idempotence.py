"""Idempotent producer semantics at the wire level: InitProducerId, duplicate
batches, sequence gaps, fenced epochs, and producer state across restarts."""

from __future__ import annotations

import clients
import wire
from harness import unique_topic


def values(prefix: str, count: int) -> list[bytes]:
    return [f"{prefix}-{i}".encode() for i in range(count)]


def log_values(bootstrap: str, topic: str) -> list[tuple[int, bytes]]:
    return [(r.offset, r.value) for r in clients.read_all(bootstrap, topic, [0])]


def new_producer_id(conn: wire.Connection) -> tuple[int, int]:
    error, producer_id, epoch = wire.init_producer_id(conn)
    assert error == wire.NONE
    assert producer_id >= 0 and epoch >= 0
    return producer_id, epoch


def test_init_producer_id_allocates_distinct_ids(broker):
    with wire.Connection(broker.bootstrap) as conn:
        ids = {new_producer_id(conn)[0] for _ in range(5)}
    assert len(ids) == 5


def test_duplicate_batch_is_answered_with_original_offset_and_not_appended(broker):
    topic = unique_topic("idem-dup")
    clients.create_topic(broker.bootstrap, topic)
    first, second = values("first", 3), values("second", 2)
    with wire.Connection(broker.bootstrap) as conn:
        pid, epoch = new_producer_id(conn)
        batch0 = bytes(wire.record_batch(first, pid, epoch, base_sequence=0))
        batch1 = bytes(wire.record_batch(second, pid, epoch, base_sequence=3))

        assert wire.produce(conn, topic, 0, batch0) == (wire.NONE, 0)
        assert wire.produce(conn, topic, 0, batch1) == (wire.NONE, 3)
        # Retries of the last batch and of the one before it.
        assert wire.produce(conn, topic, 0, batch1) == (wire.NONE, 3)
        assert wire.produce(conn, topic, 0, batch0) == (wire.NONE, 0)

    assert log_values(broker.bootstrap, topic) == list(enumerate(first + second))


def test_duplicate_detection_spans_connections(broker):
    topic = unique_topic("idem-conn")
    clients.create_topic(broker.bootstrap, topic)
    with wire.Connection(broker.bootstrap) as conn:
        pid, epoch = new_producer_id(conn)
        batch = bytes(wire.record_batch(values("a", 4), pid, epoch, base_sequence=0))
        assert wire.produce(conn, topic, 0, batch) == (wire.NONE, 0)
    with wire.Connection(broker.bootstrap) as conn:
        assert wire.produce(conn, topic, 0, batch) == (wire.NONE, 0)
    assert len(log_values(broker.bootstrap, topic)) == 4


def test_sequence_gap_is_rejected_with_out_of_order_sequence(broker):
    topic = unique_topic("idem-gap")
    clients.create_topic(broker.bootstrap, topic)
    with wire.Connection(broker.bootstrap) as conn:
        pid, epoch = new_producer_id(conn)
        assert wire.produce(conn, topic, 0,
                            bytes(wire.record_batch(values("ok", 2), pid, epoch, 0))) == (wire.NONE, 0)

        # Next expected sequence is 2; 5 leaves a gap.
        error, _ = wire.produce(conn, topic, 0, bytes(wire.record_batch([b"gap"], pid, epoch, 5)))
        assert error == wire.OUT_OF_ORDER_SEQUENCE_NUMBER

        # The rejected batch left no trace: the expected sequence is still accepted.
        assert wire.produce(conn, topic, 0,
                            bytes(wire.record_batch([b"next"], pid, epoch, 2))) == (wire.NONE, 2)

    assert log_values(broker.bootstrap, topic) == [(0, b"ok-0"), (1, b"ok-1"), (2, b"next")]


def test_batch_from_older_epoch_is_rejected_with_invalid_producer_epoch(broker):
    topic = unique_topic("idem-epoch")
    clients.create_topic(broker.bootstrap, topic)
    with wire.Connection(broker.bootstrap) as conn:
        pid, epoch = new_producer_id(conn)
        newer = bytes(wire.record_batch([b"newer-epoch"], pid, epoch + 1, 0))
        assert wire.produce(conn, topic, 0, newer) == (wire.NONE, 0)

        older = bytes(wire.record_batch([b"older-epoch"], pid, epoch, 1))
        error, _ = wire.produce(conn, topic, 0, older)
        assert error == wire.INVALID_PRODUCER_EPOCH

    assert log_values(broker.bootstrap, topic) == [(0, b"newer-epoch")]


def test_producer_state_survives_restart(fresh_broker):
    node = fresh_broker()
    topic = unique_topic("idem-restart")
    clients.create_topic(node.bootstrap, topic)
    first, second = values("before", 3), values("last", 2)
    with wire.Connection(node.bootstrap) as conn:
        pid, epoch = new_producer_id(conn)
        batch0 = bytes(wire.record_batch(first, pid, epoch, 0))
        batch1 = bytes(wire.record_batch(second, pid, epoch, 3))
        assert wire.produce(conn, topic, 0, batch0) == (wire.NONE, 0)
        assert wire.produce(conn, topic, 0, batch1) == (wire.NONE, 3)

    assert node.stop() == 0
    node.start()

    with wire.Connection(node.bootstrap) as conn:
        # The retried last batch is still recognised as a duplicate...
        assert wire.produce(conn, topic, 0, batch1) == (wire.NONE, 3)
        # ...a gap is still detected...
        error, _ = wire.produce(conn, topic, 0, bytes(wire.record_batch([b"gap"], pid, epoch, 9)))
        assert error == wire.OUT_OF_ORDER_SEQUENCE_NUMBER
        # ...and the producer continues at the next sequence.
        after = bytes(wire.record_batch([b"after"], pid, epoch, 5))
        assert wire.produce(conn, topic, 0, after) == (wire.NONE, 5)
        # A new producer id is not one handed out before the restart.
        assert new_producer_id(conn)[0] != pid

    assert log_values(node.bootstrap, topic) == list(enumerate(first + second + [b"after"]))

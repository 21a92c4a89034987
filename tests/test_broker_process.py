"""The `sluice serve` process contract: its log line, health endpoints,
graceful shutdown, and the topic auto-creation flags."""

from __future__ import annotations

import os
import signal

import pytest

import wire
from harness import unique_topic, wait_until


def test_listening_line_is_logged_on_stderr(broker):
    assert broker.listening_stream() == "stderr"
    assert broker.node_id == 1


def test_health_and_readiness_endpoints_answer_200(broker):
    assert broker.http_get("/healthz")[0] == 200
    assert broker.http_get("/readyz")[0] == 200


def test_metadata_advertises_the_listening_address(broker):
    with wire.Connection(broker.bootstrap) as conn:
        meta = wire.metadata_v4(conn, [], allow_auto_topic_creation=False)
    assert meta["brokers"] == [(1, "127.0.0.1", broker.kafka_port)]
    assert meta["controller_id"] == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_shuts_down_gracefully_with_exit_0(fresh_broker, sig):
    node = fresh_broker()
    os.kill(node.pid, sig)
    code = node.proc.wait(timeout=20)
    assert code == 0


def wait_for_topic(bootstrap: str, topic: str, allow_auto_topic_creation: bool = True):
    """Poll Metadata until the topic has no error and every partition a leader."""
    def ready():
        with wire.Connection(bootstrap) as conn:
            meta = wire.metadata_v4(conn, [topic], allow_auto_topic_creation)
        error, partitions = meta["topics"].get(topic, (None, []))
        if error == wire.NONE and partitions and all(
                p_error == wire.NONE and leader == 1 for _, p_error, leader in partitions):
            return partitions
        assert error in (wire.NONE, wire.LEADER_NOT_AVAILABLE), f"metadata error {error} for {topic}"
        return None
    return wait_until(ready, 30, interval=0.1, what=f"auto-created topic {topic}")


def test_metadata_auto_creates_topic_with_num_partitions(fresh_broker):
    node = fresh_broker(["--num-partitions", "4"])
    topic = unique_topic("auto")
    partitions = wait_for_topic(node.bootstrap, topic)
    assert [index for index, _, _ in partitions] == [0, 1, 2, 3]


def test_metadata_without_allow_auto_creation_does_not_create_topic(broker):
    topic = unique_topic("no-auto")
    with wire.Connection(broker.bootstrap) as conn:
        for _ in range(2):
            meta = wire.metadata_v4(conn, [topic], allow_auto_topic_creation=False)
            assert meta["topics"][topic][0] == wire.UNKNOWN_TOPIC_OR_PARTITION
        listing = wire.metadata_v4(conn, None, allow_auto_topic_creation=False)
    assert topic not in listing["topics"]


def test_auto_create_disabled_leaves_unknown_topics_unknown(fresh_broker):
    node = fresh_broker(["--auto-create-topics", "false"])
    topic = unique_topic("disabled")
    with wire.Connection(node.bootstrap) as conn:
        for _ in range(2):
            meta = wire.metadata_v4(conn, [topic], allow_auto_topic_creation=True)
            assert meta["topics"][topic][0] == wire.UNKNOWN_TOPIC_OR_PARTITION
        error, _ = wire.produce(conn, topic, 0, bytes(wire.record_batch([b"nowhere"])))
        assert error == wire.UNKNOWN_TOPIC_OR_PARTITION
        listing = wire.metadata_v4(conn, None, allow_auto_topic_creation=False)
    assert topic not in listing["topics"]


def test_idle_connections_are_closed_so_they_never_lock_clients_out(fresh_broker):
    """Twice --max-connections idle sockets (connected, sending nothing): each
    is closed after --connections-max-idle-ms, so a real client queued behind
    them gets in; without the idle limit they would hold every slot forever."""
    import socket
    import time

    from confluent_kafka.admin import AdminClient

    node = fresh_broker(["--max-connections", "20", "--connections-max-idle-ms", "1000"])
    host, port = node.bootstrap.split(":")
    idle = []
    try:
        for _ in range(40):
            idle.append(socket.create_connection((host, int(port)), timeout=10))
        started = time.monotonic()
        admin = AdminClient({"bootstrap.servers": node.bootstrap})
        topics = admin.list_topics(timeout=20)
        waited = time.monotonic() - started
        print(f"\n[idle] a client behind 40 idle sockets (20 slots, 1 s idle limit) "
              f"got Metadata after {waited:.2f}s")
        assert topics.brokers, "no Metadata answer"
        # The first idle socket was closed by the node (EOF, not a timeout).
        idle[0].settimeout(10)
        assert idle[0].recv(1) == b"", "an idle connection stayed open"
    finally:
        for s in idle:
            s.close()


def test_one_metadata_request_auto_creates_at_most_its_limit(fresh_broker):
    """A Metadata request naming 300 unknown topics creates the first
    --auto-create-topics-per-request of them; the rest are answered
    UNKNOWN_TOPIC_OR_PARTITION (3) and not created."""
    node = fresh_broker(["--auto-create-topics-per-request", "50"])
    names = [unique_topic("flood") for _ in range(300)]
    with wire.Connection(node.bootstrap) as conn:
        meta = wire.metadata_v4(conn, names, allow_auto_topic_creation=True)
    errors = [meta["topics"][n][0] for n in names]
    assert errors[:50] == [0] * 50
    assert errors[50:] == [3] * 250
    with wire.Connection(node.bootstrap) as conn:
        listed = wire.metadata_v4(conn, None, allow_auto_topic_creation=False)
    created = [n for n in names if n in listed["topics"]]
    print(f"\n[flood] one Metadata request naming 300 unknown topics created {len(created)}")
    assert sorted(created) == sorted(names[:50])

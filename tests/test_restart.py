"""Durability across restarts: graceful (SIGTERM) and crash (SIGKILL)."""

from __future__ import annotations

import threading
import time

from kafka.admin import ConfigResource, ConfigResourceType

import clients
from harness import unique_topic, wait_until


def test_records_survive_graceful_restart(fresh_broker):
    node = fresh_broker()
    topic = unique_topic("restart")
    clients.create_topic(node.bootstrap, topic, partitions=2)
    by_partition = {
        p: [f"p{p}-record-{i:04d}".encode() for i in range(600)] for p in (0, 1)
    }
    for p, values in by_partition.items():
        assert clients.produce_values(node.bootstrap, topic, values, partition=p) == list(range(600))
    pid_before = node.pid

    assert node.stop() == 0, "graceful shutdown should exit 0"
    node.start()
    assert node.pid != pid_before

    records = clients.read_all(node.bootstrap, topic, [0, 1])
    for p, values in by_partition.items():
        got = [(r.offset, r.value) for r in records if r.partition == p]
        assert got == list(enumerate(values))
    # The log continues where it stopped.
    assert clients.produce_values(node.bootstrap, topic, [b"after-restart"], partition=0) == [600]


def test_topic_configs_and_partition_count_survive_graceful_restart(fresh_broker):
    node = fresh_broker()
    topic = unique_topic("restart-cfg")
    clients.create_topic(node.bootstrap, topic, partitions=3, configs={"retention.ms": "123456"})
    node.restart()

    clients.wait_for_partitions(node.bootstrap, topic, 3)
    admin = clients.admin(node.bootstrap)
    try:
        result = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    finally:
        admin.close()
    configs = result["topic"][topic]
    assert configs["retention.ms"]["value"] == "123456"


class CrashProducer:
    """Produces numbered records to partition 0 from a thread, one request in
    flight and no retries, so the log must hold a prefix of `sent` in order.
    Records the offset of every acknowledged record."""

    def __init__(self, bootstrap: str, topic: str):
        self.topic = topic
        self.sent: list[bytes] = []
        self.acked: dict[int, bytes] = {}
        # time.monotonic() of each acknowledgement, by offset.
        self.acked_at: dict[int, float] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._producer = clients.producer(
            bootstrap,
            enable_idempotence=False,
            retries=0,
            max_in_flight_requests_per_connection=1,
            linger_ms=1,
            batch_size=4096,
            max_block_ms=2_000,
            request_timeout_ms=5_000,
            # Once the broker is gone, unsent batches expire after this long,
            # which lets close() finish.
            delivery_timeout_ms=6_000,
        )
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _ack(self, value: bytes):
        def on_success(metadata):
            self.acked_at[metadata.offset] = time.monotonic()
            self.acked[metadata.offset] = value
        return on_success

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            value = f"crash-record-{n:07d}".encode()
            try:
                future = self._producer.send(self.topic, value=value, partition=0)
            except Exception as err:  # the broker is gone: stop producing
                self.errors.append(repr(err))
                return
            self.sent.append(value)
            future.add_callback(self._ack(value))
            future.add_errback(lambda err: self.errors.append(repr(err)))
            n += 1
            if n % 200 == 0:
                # Keep the backlog small so acknowledgements keep flowing.
                wait_until(lambda: self._stop.is_set() or len(self.acked) >= n - 400,
                           60, interval=0.005, what="acknowledgements")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "producer thread did not stop"
        self._producer.close(timeout=30)


def crash_while_producing(node, topic: str, acked_before_kill: int,
                          min_seconds: float = 0.0) -> tuple[CrashProducer, float]:
    """Produce until `acked_before_kill` records are acknowledged and
    `min_seconds` have passed since the first acknowledgement, then SIGKILL
    the broker. Returns the producer and the time of the kill."""
    producer = CrashProducer(node.bootstrap, topic)
    producer.start()
    try:
        wait_until(lambda: len(producer.acked) >= acked_before_kill, 120, interval=0.01,
                   what=f"{acked_before_kill} acknowledged records")
        first_ack = min(producer.acked_at.values())
        wait_until(lambda: time.monotonic() - first_ack >= min_seconds, min_seconds + 60,
                   interval=0.01, what="the production window")
        killed_at = time.monotonic()
        node.kill9()
    finally:
        producer.stop()
    return producer, killed_at


def assert_log_is_prefix_of_sent(records, sent: list[bytes]) -> None:
    offsets = [r.offset for r in records]
    assert offsets == list(range(len(records))), "the log has a gap after the crash"
    values = [r.value for r in records]
    assert values == sent[:len(values)], "the log is not a prefix of what was produced"


def test_kill9_with_flush_per_produce_loses_no_acknowledged_record(fresh_broker):
    node = fresh_broker(["--flush-interval-ms", "0"])
    topic = unique_topic("crash-sync")
    clients.create_topic(node.bootstrap, topic)

    producer, _ = crash_while_producing(node, topic, acked_before_kill=2_000)
    acked = dict(producer.acked)
    assert len(acked) >= 2_000

    node.start()
    records = clients.read_all(node.bootstrap, topic, [0])

    served = {r.offset: r.value for r in records}
    lost = sorted(set(acked) - set(served))
    assert lost == [], f"{len(lost)} acknowledged records lost, first offsets {lost[:10]}"
    for offset, value in acked.items():
        assert served[offset] == value
    assert_log_is_prefix_of_sent(records, producer.sent)


def test_kill9_with_default_flush_interval_serves_contiguous_prefix(fresh_broker):
    node = fresh_broker()
    topic = unique_topic("crash-async")
    clients.create_topic(node.bootstrap, topic)
    producer, _ = crash_while_producing(node, topic, acked_before_kill=3_000)

    node.start()
    records = clients.read_all(node.bootstrap, topic, [0])

    assert_log_is_prefix_of_sent(records, producer.sent)
    # The restarted node keeps appending right after the surviving prefix.
    [offset] = clients.produce_values(node.bootstrap, topic, [b"after-crash"], partition=0)
    assert offset == len(records)


def test_kill9_with_default_flush_interval_keeps_records_acknowledged_long_before(fresh_broker):
    flush_interval = 0.5  # the default --flush-interval-ms
    # Generous, so a loaded machine does not make it flaky; still catches a
    # broker that only flushes at shutdown.
    margin = 10 * flush_interval
    node = fresh_broker()
    topic = unique_topic("crash-window")
    clients.create_topic(node.bootstrap, topic)
    producer, killed_at = crash_while_producing(
        node, topic, acked_before_kill=1_000, min_seconds=margin + 2.0)

    node.start()
    records = clients.read_all(node.bootstrap, topic, [0])

    assert_log_is_prefix_of_sent(records, producer.sent)
    old = [o for o, at in producer.acked_at.items() if at <= killed_at - margin]
    assert old, "no record was acknowledged well before the kill"
    assert len(records) > max(old), (
        f"records acknowledged more than {margin}s before the crash were lost: "
        f"log ends at {len(records)}, acknowledged offset {max(old)}")

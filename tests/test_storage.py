"""The segment store under crashes, torn files and a full disk.

Every test counts what clients were acknowledged and what they read back.
The full-disk test mounts a small tmpfs and needs root (skipped otherwise).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer

import clients
from harness import Broker, BrokerExited, unique_topic, wait_until


class IdempotentLoad:
    """An idempotent librdkafka producer (acks=all) sending numbered records
    from a thread until stopped; it lives across broker crashes and records
    every acknowledgement, every failed delivery and any fatal error."""

    def __init__(self, bootstrap: str, topic: str, acks: str = "all", idempotent: bool = True):
        self.topic = topic
        self.acked: list[bytes] = []
        self.failed: list[str] = []
        self.fatal: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        config = {
            "bootstrap.servers": bootstrap,
            "acks": acks,
            "linger.ms": 2,
            "message.timeout.ms": 60_000,
            "reconnect.backoff.ms": 20,
            "reconnect.backoff.max.ms": 200,
            "error_cb": self._on_error,
        }
        if idempotent:
            config["enable.idempotence"] = True
        else:
            config["retries"] = 0
            config["max.in.flight.requests.per.connection"] = 1
        self._producer = Producer(config)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.sent = 0

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal.append(str(err))

    def _delivered(self, err, msg) -> None:
        with self._lock:
            if err is None:
                self.acked.append(msg.value())
            else:
                self.failed.append(str(err))

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            try:
                self._producer.produce(self.topic, f"rec-{n:08d}".encode(), partition=0,
                                       on_delivery=self._delivered)
                n += 1
                self.sent = n
            except BufferError:
                self._producer.poll(0.05)
                continue
            if n % 50 == 0:
                self._producer.poll(0.002)

    def acked_count(self) -> int:
        with self._lock:
            return len(self.acked)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()
        remaining = self._producer.flush(60)
        assert remaining == 0, f"{remaining} records never resolved"


def crash_cycles(node, topic: str, load: IdempotentLoad, cycles: int) -> None:
    """Let `load` run, SIGKILL the broker once some records are acknowledged,
    start it again on the same port; `cycles` times."""
    node.kafka_addr = node.bootstrap  # clients reconnect to the same address
    for _ in range(cycles):
        target = load.acked_count() + 2_000
        wait_until(lambda: load.acked_count() >= target, 60, interval=0.01,
                   what="acknowledgements before the crash")
        node.kill9()
        node.start()
    wait_until(lambda: load.acked_count() >= target + 2_000, 60, interval=0.01,
               what="acknowledgements after the last restart")


@pytest.mark.parametrize("acks", ["all", "1"])
def test_kill9_under_load_loses_no_acknowledged_record_and_doubles_none(fresh_broker, acks):
    node = fresh_broker()
    topic = unique_topic(f"crash-acks{acks}")
    clients.create_topic(node.bootstrap, topic)
    load = IdempotentLoad(node.bootstrap, topic, acks=acks, idempotent=acks == "all")
    load.start()
    try:
        crash_cycles(node, topic, load, cycles=10)
    finally:
        load.stop()
    assert load.fatal == [], f"the producer hit a fatal error: {load.fatal}"

    records = clients.read_all(node.bootstrap, topic, [0])
    served = [r.value for r in records]
    assert [r.offset for r in records] == list(range(len(records))), "the log has a gap"
    counts: dict[bytes, int] = {}
    for v in served:
        counts[v] = counts.get(v, 0) + 1
    lost = [v for v in load.acked if v not in counts]
    assert lost == [], f"{len(lost)} acknowledged records lost, first {lost[:5]}"
    doubled = [v for v, c in counts.items() if c > 1]
    assert doubled == [], f"{len(doubled)} records stored twice, first {doubled[:5]}"
    assert len(load.acked) >= 20_000


def active_segment(data_dir: Path, topic: str, partition: int = 0) -> Path:
    segments = sorted((data_dir / "logs" / f"{topic}-{partition}").glob("*.log"))
    assert segments, "no segment files"
    return segments[-1]


def test_torn_tail_is_cut_at_start_and_the_records_before_it_are_served(fresh_broker):
    node = fresh_broker()
    topic = unique_topic("torn")
    clients.create_topic(node.bootstrap, topic)
    values = [f"torn-{i:04d}".encode() for i in range(50)]
    for v in values:  # one batch each
        clients.produce_values(node.bootstrap, topic, [v], partition=0)
    assert node.stop() == 0
    segment = active_segment(node.data_dir, topic)
    size = segment.stat().st_size
    with open(segment, "r+b") as f:
        f.truncate(size - 7)  # cut the last batch short

    node.start()
    records = clients.read_all(node.bootstrap, topic, [0])
    assert [r.value for r in records] == values[:-1]
    assert any("torn or damaged tail" in line for _, line in node.lines)
    [offset] = clients.produce_values(node.bootstrap, topic, [b"after"], partition=0)
    assert offset == 49


def _mount_tmpfs(path: Path, size_mb: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
                   check=True, capture_output=True)


def _fill(path: Path, leave_bytes: int) -> None:
    """Write a ballast file until at most `leave_bytes` are free."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    chunk = b"\0" * (1 << 20)
    with open(path / "ballast", "ab") as f:
        to_write = max(0, free - leave_bytes)
        while to_write > 0:
            n = min(len(chunk), to_write)
            try:
                f.write(chunk[:n])
                f.flush()
            except OSError:
                break
            to_write -= n


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _produce_one(bootstrap: str, topic: str, value: bytes) -> tuple[KafkaError | None, float]:
    """Produce one record, no retries; the delivery error (None when acked)
    and how long the answer took."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "retries": 0,
                  "enable.idempotence": False, "message.timeout.ms": 10_000,
                  "request.timeout.ms": 10_000})
    result: list = []
    started = time.monotonic()
    p.produce(topic, value, partition=0, on_delivery=lambda err, msg: result.append(err))
    p.flush(15)
    return (result[0] if result else KafkaError(KafkaError._MSG_TIMED_OUT)), time.monotonic() - started


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None,
                    reason="mounting a tmpfs needs root")
def test_full_disk_answers_storage_error_keeps_reads_and_recovers_by_itself(tmp_path):
    disk = tmp_path / "small-disk"
    _mount_tmpfs(disk, 64)
    node = None
    try:
        node = Broker(disk / "data", ["--disk-reserve-mb", "8"])
        node.start()
        topic = unique_topic("full")
        clients.create_topic(node.bootstrap, topic)
        kept = [f"kept-{i}".encode() for i in range(20)]
        clients.produce_values(node.bootstrap, topic, kept, partition=0)

        _fill(disk, leave_bytes=6 << 20)  # below the reserve
        # The node notices within its free-space check interval; every
        # answer comes at once, and soon they are refusals.
        answers = []
        def refused():
            err, took = _produce_one(node.bootstrap, topic, b"x" * 1000)
            answers.append((err, took))
            if err is None:
                kept.append(b"x" * 1000)  # accepted before the node noticed
            return err is not None and err.code() == KafkaError.KAFKA_STORAGE_ERROR
        wait_until(refused, 5, interval=0.05, what="KAFKA_STORAGE_ERROR")
        slowest = max(took for _, took in answers)
        assert slowest < 1.0, f"an answer took {slowest:.2f}s"
        assert all(e is None or e.code() == KafkaError.KAFKA_STORAGE_ERROR for e, _ in answers)
        # Reads keep working.
        assert [r.value for r in clients.read_all(node.bootstrap, topic, [0])] == kept

        # Space comes back: writes resume without a restart.
        os.remove(disk / "ballast")
        def accepted():
            e, _ = _produce_one(node.bootstrap, topic, b"after-space")
            return e is None
        wait_until(accepted, 20, interval=0.2, what="produce to succeed again")

        # A restart attempted while the disk is full damages nothing.
        node.kill9()
        _fill(disk, leave_bytes=0)
        with pytest.raises((BrokerExited, TimeoutError, RuntimeError)):
            node.start(timeout=10)
        node.kill9()
        os.remove(disk / "ballast")
        node.start()
        values = [r.value for r in clients.read_all(node.bootstrap, topic, [0])]
        assert values[:len(kept)] == kept
        assert b"after-space" in values
        [offset] = clients.produce_values(node.bootstrap, topic, [b"last"], partition=0)
        assert offset == len(values)
    finally:
        if node is not None:
            node.kill9()
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)

"""Helpers for the consumer-group tests: consumer processes a test can
SIGKILL, fast producing of numbered records, and checks on who consumed what.

Every `ConsumerProcess` is ended by its PID when its `with` block ends (even
when the test fails), and again at interpreter exit should that not run.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from harness import wait_until

CONSUMER_SCRIPT = Path(__file__).resolve().parent / "group_consumer.py"
STOP_TIMEOUT = 20.0

_LIVE: set["ConsumerProcess"] = set()
_LIVE_LOCK = threading.Lock()


def _kill_leftovers() -> None:
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in procs:
        proc.kill9()


atexit.register(_kill_leftovers)


class ConsumerProcess:
    """One `group_consumer.py` process and everything it reported."""

    def __init__(self, bootstrap: str, topic: str, group: str, **settings):
        self.settings = {"bootstrap": bootstrap, "topic": topic, "group": group, **settings}
        self.proc: subprocess.Popen | None = None
        self.events: list[dict] = []
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self.stderr_path: Path | None = None

    def __enter__(self) -> "ConsumerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill9()

    def start(self) -> "ConsumerProcess":
        self.proc = subprocess.Popen(
            [sys.executable, str(CONSUMER_SCRIPT), json.dumps(self.settings)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        with _LIVE_LOCK:
            _LIVE.add(self)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                self.events.append(event)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Ask for a clean close (commit, LeaveGroup), then wait; SIGKILL if
        it does not exit in time."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill9()

    def kill9(self) -> None:
        """SIGKILL (no LeaveGroup, nothing more committed) and reap."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(timeout=5)
        with _LIVE_LOCK:
            _LIVE.discard(self)

    # -- what it reported ---------------------------------------------------

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.events)

    def assignment(self) -> set[int]:
        """Partitions owned now: gains minus losses, in order."""
        owned: set[int] = set()
        for e in self.snapshot():
            if e["event"] == "assign":
                owned |= set(e["partitions"])
            elif e["event"] == "revoke":
                owned -= set(e["partitions"])
        return owned

    def revocations(self) -> list[list[int]]:
        return [e["partitions"] for e in self.snapshot() if e["event"] == "revoke" and e["partitions"]]

    def records(self) -> list[tuple[int, int, str]]:
        return [tuple(r) for e in self.snapshot() if e["event"] == "records" for r in e["records"]]

    def committed(self) -> dict[int, int]:
        """The last offset committed per partition."""
        out: dict[int, int] = {}
        for e in self.snapshot():
            if e["event"] == "committed":
                out.update({int(p): o for p, o in e["offsets"].items()})
        return out

    def errors(self) -> list[dict]:
        return [e for e in self.snapshot() if e["event"] in ("error", "commit-failed")]


def produce_numbered(bootstrap: str, topic: str, start: int, count: int, partitions: int) -> list[str]:
    """Produce values `v{n:07d}` for n in [start, start+count), round-robin
    over `partitions`. Returns the values."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                         "enable.idempotence": False})
    failed: list = []
    values = [f"v{n:07d}" for n in range(start, start + count)]
    for i, value in enumerate(values):
        while True:
            try:
                producer.produce(topic, value=value.encode(), partition=(start + i) % partitions,
                                 on_delivery=lambda err, _msg: err and failed.append(err))
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0, "records left undelivered"
    assert not failed, f"delivery failed: {failed[:3]}"
    return values


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10_000})


def describe_group(bootstrap: str, group: str, timeout: float = 30.0):
    """librdkafka's describe_consumer_groups of one group. The AdminClient is
    held until the answer is in: one garbage-collected while its future is
    pending leaves that future waiting forever (whatever the broker says)."""
    client = admin(bootstrap)
    return client.describe_consumer_groups([group])[group].result(timeout=timeout)


def wait_for_assignment(consumers: list[ConsumerProcess], partitions: int, timeout: float = 30.0,
                        members: int | None = None) -> list[set[int]]:
    """Wait until the consumers together own each of `partitions` exactly once
    and (if `members` is given) that many of them share the partitions evenly,
    as every assignor here does once a rebalance is over. Returns the
    assignments."""
    def settled():
        owned = [c.assignment() for c in consumers]
        flat = [p for a in owned for p in a]
        if sorted(flat) != list(range(partitions)):
            return None
        if members is not None:
            sizes = [len(a) for a in owned if a]
            if len(sizes) != members or max(sizes) - min(sizes) > 1:
                return None
        return owned
    return wait_until(settled, timeout, interval=0.1, what=f"{partitions} partitions owned once each")


def wait_for_values(consumers: list[ConsumerProcess], expected: set[str], timeout: float = 60.0) -> None:
    def all_seen():
        seen = {v for c in consumers for _, _, v in c.records()}
        return expected <= seen
    try:
        wait_until(all_seen, timeout, interval=0.1, what=f"{len(expected)} records consumed")
    except TimeoutError:
        seen = {v for c in consumers for _, _, v in c.records()}
        missing = sorted(expected - seen)
        raise TimeoutError(f"{len(missing)} records never consumed, e.g. {missing[:5]}; "
                           f"errors: {[c.errors()[:3] for c in consumers]}") from None


def duplicates(values: list[str]) -> dict[str, int]:
    return {v: n for v, n in Counter(values).items() if n > 1}


def elapsed_since(start: float) -> float:
    return time.monotonic() - start

#!/usr/bin/env python3
"""Consumer-group figures for docs/BENCHMARKS.md, measured with librdkafka
(confluent-kafka) against a real `sluice serve` on 127.0.0.1:

1. time for one consumer with librdkafka defaults to join a new group and
   receive its first record (subscribe -> first message);
2. time for a 3-member group to hand over the partitions of a member that
   closes (LeaveGroup -> the other two own every partition), with librdkafka's
   default heartbeat interval (3 s) and with 1 s;
3. OffsetCommit throughput: pipelined asynchronous commits, and synchronous
   commits (one round trip each).

Usage (after `cargo build --release`; uses the test venv):

    .venv/bin/python scripts/bench_groups.py [--runs 5]

SLUICE_BIN selects the binary (default target/release/sluice). Every broker
and consumer process it starts is ended by PID before it exits.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from confluent_kafka.admin import NewTopic  # noqa: E402

from group_clients import ConsumerProcess, admin, produce_numbered, wait_for_assignment  # noqa: E402
from harness import Broker, unique_topic, wait_until  # noqa: E402


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    client = admin(bootstrap)
    client.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(30)
    wait_until(lambda: name in client.list_topics(timeout=10).topics, 30)


def time_to_first_record(bootstrap: str) -> float:
    topic = unique_topic("ttfr")
    create_topic(bootstrap, topic, 1)
    produce_numbered(bootstrap, topic, 0, 1, 1)
    started = time.perf_counter()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("ttfr-g"),
                         "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        deadline = started + 30
        while time.perf_counter() < deadline:
            msg = consumer.poll(0.01)
            if msg is not None and msg.error() is None:
                return time.perf_counter() - started
        raise TimeoutError("no record within 30 s")
    finally:
        consumer.close()


def rebalance_after_leave(bootstrap: str, heartbeat_ms: int) -> float:
    topic = unique_topic("rebal")
    group = unique_topic("rebal-g")
    create_topic(bootstrap, topic, 6)
    consumers = [ConsumerProcess(bootstrap, topic, group, client_id=f"b{i}",
                                 heartbeat_interval_ms=heartbeat_ms, session_timeout_ms=45_000)
                 for i in range(3)]
    try:
        for c in consumers:
            c.start()
        wait_for_assignment(consumers, 6, members=3, timeout=60)
        started = time.perf_counter()
        consumers[0].stop()
        wait_until(lambda: sorted(p for c in consumers[1:] for p in c.assignment()) == list(range(6)),
                   60, interval=0.005, what="hand-over")
        return time.perf_counter() - started
    finally:
        for c in consumers:
            c.kill9()


def commit_throughput(bootstrap: str, commits: int, asynchronous: bool) -> float:
    topic = unique_topic("commits")
    create_topic(bootstrap, topic, 6)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("commit-g"),
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(6)])
        consumer.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)  # warm up
        started = time.perf_counter()
        for i in range(1, commits + 1):
            offsets = [TopicPartition(topic, i % 6, i)]
            if asynchronous:
                while True:
                    try:
                        consumer.commit(offsets=offsets, asynchronous=True)
                        break
                    except BufferError:
                        consumer.poll(0.001)
            else:
                consumer.commit(offsets=offsets, asynchronous=False)
        # A synchronous commit returns after every earlier one was answered.
        consumer.commit(offsets=[TopicPartition(topic, 0, commits + 1)], asynchronous=False)
        return commits / (time.perf_counter() - started)
    finally:
        consumer.close()


def summary(values: list[float], unit: str, scale: float = 1.0) -> str:
    values = sorted(v * scale for v in values)
    return (f"median {statistics.median(values):.0f} {unit}, min {values[0]:.0f}, "
            f"max {values[-1]:.0f} ({len(values)} runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--commits", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        node = Broker(Path(data) / "node")
        node.start()
        try:
            ttfr = [time_to_first_record(node.bootstrap) for _ in range(args.runs)]
            print("time to first record (librdkafka defaults):", summary(ttfr, "ms", 1000), flush=True)
            for hb in (3000, 1000):
                took = [rebalance_after_leave(node.bootstrap, hb) for _ in range(max(3, args.runs // 2))]
                print(f"3-member rebalance after a leave, heartbeat {hb} ms:", summary(took, "ms", 1000),
                      flush=True)
            rate = [commit_throughput(node.bootstrap, args.commits, True) for _ in range(3)]
            print("OffsetCommit, pipelined async:", summary(rate, "commits/s"), flush=True)
            rate = [commit_throughput(node.bootstrap, args.commits // 4, False) for _ in range(3)]
            print("OffsetCommit, synchronous:", summary(rate, "commits/s"), flush=True)
        finally:
            node.stop()


if __name__ == "__main__":
    main()

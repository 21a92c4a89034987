#!/usr/bin/env python3
"""Transactional produce throughput for docs/BENCHMARKS.md, measured with
librdkafka (confluent-kafka) against a real single-node `sluice serve` on
127.0.0.1: one transactional producer runs transactions of 100 and of 1,000
records of 100 bytes over 3 partitions (begin, produce, commit), and the
figures are records/s, transactions/s and the broker's CPU seconds per
million records (utime+stime from /proc/PID/stat), with a
non-transactional idempotent producer over the same records as the
baseline.

Usage (after `cargo build --release`; uses the test venv):

    .venv/bin/python scripts/bench_transactions.py [--records 20000]

SLUICE_BIN selects the binary (default target/release/sluice). The broker
it starts is ended by PID before it exits. Prints figures; asserts nothing
about speed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from harness import Broker, unique_topic, wait_until  # noqa: E402

PARTITIONS = 3
VALUE = b"x" * 100


def create_topic(bootstrap: str, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)])[name].result(30)
    wait_until(lambda: name in admin.list_topics(timeout=10).topics, 30)


def transactional(bootstrap: str, records: int, per_txn: int) -> tuple[float, float]:
    """(records/s, transactions/s) for `records` records in transactions of `per_txn`."""
    topic = unique_topic("txbench")
    create_topic(bootstrap, topic)
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"bench-{topic}",
                  "linger.ms": 5})
    p.init_transactions(30)
    txns = records // per_txn
    started = time.perf_counter()
    for t in range(txns):
        p.begin_transaction()
        for i in range(per_txn):
            p.produce(topic, VALUE, partition=i % PARTITIONS)
            if i % 1000 == 999:
                p.poll(0)
        p.commit_transaction(30)
    elapsed = time.perf_counter() - started
    return txns * per_txn / elapsed, txns / elapsed


def idempotent(bootstrap: str, records: int) -> float:
    topic = unique_topic("idbench")
    create_topic(bootstrap, topic)
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    started = time.perf_counter()
    for i in range(records):
        while True:
            try:
                p.produce(topic, VALUE, partition=i % PARTITIONS)
                break
            except BufferError:
                p.poll(0.01)
        if i % 1000 == 999:
            p.poll(0)
    p.flush(60)
    return records / (time.perf_counter() - started)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        broker = Broker(Path(data) / "node")
        broker.start()
        try:
            bootstrap = f"127.0.0.1:{broker.kafka_port}"
            pid = broker.proc.pid
            per_million = 1_000_000 / args.records
            cpu = cpu_seconds(pid)
            base = idempotent(bootstrap, args.records)
            used = (cpu_seconds(pid) - cpu) * per_million
            print(f"idempotent, no transactions: {base:,.0f} records/s, "
                  f"broker {used:.2f} CPU-s per million records")
            for per_txn in (100, 1000):
                cpu = cpu_seconds(pid)
                rate, txns = transactional(bootstrap, args.records, per_txn)
                used = (cpu_seconds(pid) - cpu) * per_million
                print(f"transactions of {per_txn:>5} records: {rate:,.0f} records/s, "
                      f"{txns:,.1f} transactions/s, broker {used:.2f} CPU-s per million records")
        finally:
            broker.stop()


if __name__ == "__main__":
    main()

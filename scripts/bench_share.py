#!/usr/bin/env python3
"""Share-group figures for docs/BENCHMARKS.md: one confluent-kafka
ShareConsumer (librdkafka's share consumer, implicit acknowledgement) reads
every record of a 3-partition topic, on a single node and on a three-node
cluster (replication factor 3), where each share-partition's state is
committed to the metadata image.

For each: records/s of the read, the broker CPU (utime+stime of every node
process, from /proc) per million records, and on the cluster the number of
share-state proposals committed (the image's `share_states.version`).

Usage (after `cargo build --release`; uses the test venv):

    .venv/bin/python scripts/bench_share.py [--records 200000] [--size 100]

SLUICE_BIN selects the binary (default target/release/sluice). Every broker
it starts is ended by PID before it exits.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from confluent_kafka import Producer, ShareConsumer  # noqa: E402
from confluent_kafka.admin import (  # noqa: E402
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from bench_transactions import cpu_seconds  # noqa: E402
from cluster import Cluster  # noqa: E402
from harness import Broker, unique_topic  # noqa: E402

PARTITIONS = 3


def brokers_cpu_seconds(brokers) -> float:
    """utime+stime of the running broker processes, in seconds."""
    return sum(cpu_seconds(b.pid) for b in brokers if b.alive())


def prepare(bootstrap: str, rf: int, records: int, size: int) -> tuple[str, str]:
    topic, group = unique_topic("bshare"), unique_topic("bshare-g")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, rf)])[topic].result(30)
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry("share.auto.offset.reset", "earliest",
                    incremental_operation=AlterConfigOpType.SET)])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "batch.num.messages": 10000, "acks": "all"})
    value = b"x" * size
    for i in range(records):
        while True:
            try:
                producer.produce(topic, value, partition=i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(120) == 0
    return topic, group


def read_all(bootstrap: str, topic: str, group: str, records: int, brokers) -> dict:
    consumer = ShareConsumer({"bootstrap.servers": bootstrap, "group.id": group,
                              "share.acknowledgement.mode": "implicit"})
    consumer.subscribe([topic])
    seen = 0
    cpu_before = brokers_cpu_seconds(brokers)
    started = None
    deadline = time.monotonic() + 600
    try:
        while seen < records and time.monotonic() < deadline:
            batch = consumer.poll(1.0)
            if batch and started is None:
                started = time.perf_counter()
            seen += sum(1 for m in batch if m.error() is None)
        elapsed = time.perf_counter() - (started or time.perf_counter())
        cpu = brokers_cpu_seconds(brokers) - cpu_before
    finally:
        consumer.close()
    if seen < records:
        raise RuntimeError(f"read {seen} of {records} records")
    return {"records_per_s": records / elapsed, "seconds": elapsed,
            "cpu_per_m": cpu / records * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=100)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-share-") as work:
        node = Broker(Path(work) / "single", ["--shop", "false"])
        try:
            node.start()
            topic, group = prepare(node.bootstrap, 1, args.records, args.size)
            rows.append(("single node", read_all(node.bootstrap, topic, group, args.records,
                                                 [node]), None))
        finally:
            node.kill9()
        cluster = Cluster(Path(work) / "cluster")
        try:
            cluster.start()
            cluster.wait_registered()
            topic, group = prepare(cluster.bootstrap, 3, args.records, args.size)
            brokers = list(cluster.nodes.values())
            before = cluster.image().get("share_states", {}).get("version", 0)
            result = read_all(cluster.bootstrap, topic, group, args.records, brokers)
            after = cluster.image().get("share_states", {}).get("version", 0)
            rows.append(("3 nodes, RF 3", result, after - before))
        finally:
            cluster.kill_all()
    print(f"\nShareConsumer (implicit acks), {args.records:,} x {args.size} B, "
          f"{PARTITIONS} partitions")
    print("| where | records/s | broker CPU-s per M records | share-state proposals |")
    print("|---|---:|---:|---:|")
    for where, r, proposals in rows:
        print(f"| {where} | {r['records_per_s']:,.0f} | {r['cpu_per_m']:.2f} | "
              f"{'-' if proposals is None else proposals} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

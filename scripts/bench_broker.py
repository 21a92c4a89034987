#!/usr/bin/env python3
"""Broker throughput with librdkafka (confluent-kafka) against a fresh sluice.

Starts `sluice serve` on ephemeral ports in a temporary directory, measures
time to ready and idle RSS, then for each record size, acks and partition
count produces N records with librdkafka (linger 5 ms, 1 MiB batches) and
reads them back with librdkafka, printing a Markdown table. The broker
process is killed at the end, whatever happens.

    .venv/bin/python scripts/bench_broker.py [--records 1000000] [--bin target/release/sluice]
"""

import argparse
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient, NewTopic


def start_broker(binary: str, data_dir: str):
    started = time.monotonic()
    proc = subprocess.Popen(
        [binary, "serve", "--data-dir", data_dir, "--kafka-addr", "127.0.0.1:0",
         "--http-addr", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    kafka = http = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        m = re.search(r"listening kafka_addr=(\S+) http_addr=(\S+)", line)
        if m:
            kafka, http = m.group(1), m.group(2)
            break
    if kafka is None:
        proc.kill()
        raise SystemExit("broker did not start")
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{http}/readyz", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.005)
    ready_ms = (time.monotonic() - started) * 1000
    return proc, kafka, ready_ms


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def produce(bootstrap, topic, n, size, acks):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.size": 1048576,
                  "acks": acks, "queue.buffering.max.messages": 2000000,
                  "queue.buffering.max.kbytes": 2097151})
    value = b"x" * size
    started = time.monotonic()
    for _ in range(n):
        while True:
            try:
                p.produce(topic, value)
                break
            except BufferError:
                p.poll(0.001)
    remaining = p.flush(120)
    elapsed = time.monotonic() - started
    assert remaining == 0, f"{remaining} records not delivered"
    return n / elapsed, n * size / elapsed / 1e6


def consume(bootstrap, topic, partitions, n):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False,
                  "fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 10485760})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    got = size = 0
    started = time.monotonic()
    deadline = started + 300
    while got < n and time.monotonic() < deadline:
        for m in c.consume(10000, 1):
            if m.error() is None:
                got += 1
                size += len(m.value())
    elapsed = time.monotonic() - started
    c.close()
    assert got == n, f"read {got} of {n}"
    return n / elapsed, size / elapsed / 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/sluice")
    ap.add_argument("--records", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        proc, bootstrap, ready_ms = start_broker(args.bin, d)
        try:
            time.sleep(1)  # let the process settle before reading its idle RSS
            print(f"time to ready: {ready_ms:.0f} ms; idle RSS: {rss_kib(proc.pid) / 1024:.1f} MiB")
            admin = AdminClient({"bootstrap.servers": bootstrap})
            print("| record | acks | partitions | produce rec/s | produce MB/s | consume rec/s | consume MB/s |")
            print("| --- | --- | --- | --- | --- | --- | --- |")
            for size in (100, 1024):
                n = args.records if size == 100 else args.records // 4
                for acks in ("1", "all"):
                    for parts in (1, 6):
                        topic = f"bench-{size}-{acks}-{parts}"
                        admin.create_topics([NewTopic(topic, parts, 1)])[topic].result()
                        prs, pmb = produce(bootstrap, topic, n, size, acks)
                        crs, cmb = consume(bootstrap, topic, parts, n)
                        print(f"| {size} B | {acks} | {parts} | {prs:,.0f} | {pmb:.1f} | {crs:,.0f} | {cmb:.1f} |",
                              flush=True)
            print(f"RSS after the runs: {rss_kib(proc.pid) / 1024:.1f} MiB")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The console's records API over a 1,000,000-record topic with a filter:
time per page and the node's memory (RSS) before, during and after.

Starts its own node (ephemeral ports, a temporary data dir), produces the
records with confluent-kafka, then pages through the whole topic with
`GET /api/admin/topics/{name}/records` and a JSON-path filter, newest first,
following `next_cursor` to the end, and once more with a filter that matches
nothing. Prints the figures (docs/BENCHMARKS.md, "Console records API").

    SLUICE_BIN=target/release/sluice .venv/bin/python scripts/console_records_bench.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from confluent_kafka import Producer  # noqa: E402

from harness import Broker  # noqa: E402

RECORDS = 1_000_000
PARTITIONS = 4
CUSTOMERS = 1000
TOPIC = "console-bench"


def get(node: Broker, path: str) -> dict:
    with urllib.request.urlopen(f"http://{node.http}{path}", timeout=120) as resp:
        return json.loads(resp.read())


def post(node: Broker, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"http://{node.http}{path}", data=json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


class PeakRss:
    """Samples the node's RSS every 20 ms while active."""

    def __init__(self, node: Broker):
        self.node = node
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.node.rss_kib())
            time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def scan(node: Broker, jsonpath: str, limit: int) -> dict:
    pages = 0
    found = 0
    scanned = 0
    slowest = 0.0
    cursor = None
    started = time.monotonic()
    while True:
        q = {"jsonpath": jsonpath, "limit": limit}
        if cursor:
            q["cursor"] = cursor
        t0 = time.monotonic()
        page = get(node, f"/api/admin/topics/{TOPIC}/records?{urllib.parse.urlencode(q)}")
        slowest = max(slowest, time.monotonic() - t0)
        pages += 1
        found += len(page["records"])
        scanned += page["scanned"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    return {"pages": pages, "found": found, "scanned": scanned,
            "seconds": round(time.monotonic() - started, 2), "slowest_page_s": round(slowest, 2)}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="sluice-console-bench-") as data:
        node = Broker(data, ["--shop", "false"])
        try:
            node.start()
            post(node, "/api/admin/topics", {"name": TOPIC, "partitions": PARTITIONS})
            producer = Producer({"bootstrap.servers": node.bootstrap, "linger.ms": 20,
                                 "batch.size": 1 << 20, "queue.buffering.max.messages": 1_000_000,
                                 "compression.type": "none"})
            t0 = time.monotonic()
            for i in range(RECORDS):
                value = json.dumps({"customer": f"c{i % CUSTOMERS}", "n": i, "note": "x" * 40})
                while True:
                    try:
                        producer.produce(TOPIC, key=str(i).encode(), value=value.encode(),
                                         partition=i % PARTITIONS)
                        break
                    except BufferError:
                        producer.poll(0.05)
            producer.flush(120)
            produce_s = time.monotonic() - t0
            messages = next(t for t in get(node, "/api/admin/topics")["topics"] if t["name"] == TOPIC)["messages"]
            assert messages == RECORDS, messages
            rss_before = node.rss_kib()
            with PeakRss(node) as peak:
                matching = scan(node, '$.customer == "c7"', 100)
                nothing = scan(node, '$.customer == "nobody"', 100)
            rss_after = node.rss_kib()
            figures = {
                "records": RECORDS, "partitions": PARTITIONS, "produce_s": round(produce_s, 1),
                "filter_1_in_1000": matching, "filter_matching_nothing": nothing,
                "rss_before_mib": round(rss_before / 1024, 1), "rss_peak_mib": round(peak.peak / 1024, 1),
                "rss_after_mib": round(rss_after / 1024, 1),
            }
            print(json.dumps(figures, indent=2))
            assert matching["found"] == RECORDS // CUSTOMERS, matching
            assert nothing["found"] == 0
        finally:
            node.stop()


if __name__ == "__main__":
    main()

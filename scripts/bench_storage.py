#!/usr/bin/env python3
"""Log storage benchmark: the same measurements against each `--log-store`.

For each store (`segments`, then `sled`) this starts a fresh `sluice serve`
on 127.0.0.1 with ephemeral ports in a temporary directory and measures:

  a. produce 100 B records, acks=1, one partition: records/s, broker CPU-s
     per million records (utime+stime from /proc/PID/stat);
  b. produce 1 KiB records, acks=1: MB/s (10^6 bytes) and CPU-s per million;
  c. a producer with linger.ms=0 and one record per batch: Produce
     requests/s (counted from librdkafka's statistics);
  d. consume the 100 B records of (a) from the beginning: records/s and
     CPU-s per million;
  g. end-to-end latency (produce call to receipt in a consumer in another
     process) at a fixed rate, p50/p99;
  e. on a second fresh node: VmRSS after writing and after reading back
     N bytes of 1 KiB records, and the data directory's disk use against
     the record bytes;
  f. on that node: time to create one topic of 10,000 partitions
     (CreateTopics), then a graceful restart (SIGTERM, wait for exit) and
     the time from spawn to /readyz 200.

(a)-(e) are measured with librdkafka's C client `rdkafka_performance`
(built by scripts/build_rdkafka_perf.sh into target/tools/); without it,
with confluent-kafka driven from Python, and the output says so (such
figures are bound by the Python loop). (g) always uses confluent-kafka.

A binary without the `--log-store` flag (before the segment store) is run
once with its only store, sled, and `segments` is reported as skipped.
Every process started here is killed by PID at the end, whatever happens.

    .venv/bin/python scripts/bench_storage.py [--bin target/release/sluice] [--scale 0.05]
        [--stores segments,sled] [--json out.json]

SLUICE_BIN and RDKAFKA_PERF override the default paths of the binary and of
rdkafka_performance.
"""

import argparse
import json
import multiprocessing as mp
import os
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
STORES = ("segments", "sled")
CLK_TCK = os.sysconf("SC_CLK_TCK")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
LISTENING = re.compile(r"listening kafka_addr=(\S+) http_addr=(\S+)")

# Every broker process started here, so that they can all be killed at exit.
STARTED = []

# Goals of the log storage work (issue 11), shown beside the figures.
GOALS = {
    "p100_cpu_per_m": "<= 0.15",
    "p1k_mb_s": ">= 500",
    "linger0_req_s": ">= 100,000",
    "c100_rec_s": ">= 5,000,000",
    "c100_cpu_per_m": "<= 0.05",
    "mem_rss_after_read_mb": "<= 150",
    "mem_disk_ratio": "<= 1.1",
    "parts_create_s": "< 5",
    "parts_restart_ready_s": "< 1",
    "e2e_p99_ms": "<= 5",
}


class SetupError(Exception):
    pass


# ---------------------------------------------------------------- the broker

class Broker:
    """One `sluice serve` process on 127.0.0.1 with ephemeral ports."""

    def __init__(self, binary, data_dir, log_path, store_args):
        self.binary = binary
        self.data_dir = data_dir
        self.log_path = log_path
        self.store_args = store_args
        self.proc = None
        self.kafka = self.http = None

    def start(self, timeout=600.0):
        """Spawns the node and returns seconds from spawn to /readyz 200."""
        args = [self.binary, "serve", "--data-dir", str(self.data_dir),
                "--kafka-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
                "--shop", "false", *self.store_args]
        log = open(self.log_path, "ab")
        offset = log.tell()
        started = time.monotonic()
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        STARTED.append(self.proc)
        deadline = started + timeout
        while self.kafka is None:
            if self.proc.poll() is not None:
                raise SetupError(f"sluice exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise SetupError(f"no listening line within {timeout:.0f} s:\n{self.log_tail()}")
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                text = ANSI.sub("", f.read().decode("utf-8", "replace"))
            m = LISTENING.search(text)
            if m:
                self.kafka, self.http = m.group(1), m.group(2)
                break
            time.sleep(0.002)
        for addr in (self.kafka, self.http):
            if not addr.startswith("127.0.0.1:"):
                raise SetupError(f"unexpected listener address {addr}")
        while True:
            try:
                with urllib.request.urlopen(f"http://{self.http}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return time.monotonic() - started
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise SetupError(f"sluice exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise SetupError(f"/readyz not 200 within {timeout:.0f} s")
            time.sleep(0.002)

    def log_tail(self, lines=20):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def quiesce(self, limit=15.0, window=0.25, idle_share=0.05):
        """Waits (at most limit s) until the node is idle: background work left
        by one step (flushes, compaction) should not be billed to the next."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            c0 = self.cpu_seconds()
            time.sleep(window)
            if self.cpu_seconds() - c0 <= window * idle_share:
                return True
        return False

    def status_kib(self, key):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return None

    def stop(self, timeout=300.0):
        """SIGTERM, wait for exit; returns seconds taken (killed after timeout)."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise SetupError(f"sluice did not exit within {timeout:.0f} s of SIGTERM")
        self.kafka = self.http = None
        return time.monotonic() - started

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def kill_all():
    for proc in STARTED:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def detect_stores(binary):
    """Maps each available store to the flags that select it."""
    out = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True,
                         timeout=30).stdout
    if "--log-store" not in out:
        return {"sled": []}, "the binary has no --log-store flag: its only store (sled) runs without it"
    section = out[out.index("--log-store"):]
    # Only this option's own help, up to the next option (option lines are
    # indented less than their descriptions).
    nxt = re.search(r"\n {0,6}-", section)
    section = section[:nxt.start()] if nxt else section
    # clap writes either "[possible values: a, b]" or, with long help,
    # "Possible values:" followed by "- a: ..." lines.
    m = re.search(r"possible values: ([^\]]+)\]", section)
    if m:
        values = [v.strip() for v in m.group(1).split(",")]
    else:
        values = re.findall(r"^\s+- ([\w-]+)", section, re.M) or list(STORES)
    return {s: ["--log-store", s] for s in STORES if s in values}, None


def create_topic(bootstrap, topic, partitions, timeout=600.0):
    """Creates the topic; returns (seconds CreateTopics took, partitions in Metadata)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 4,
                         "socket.timeout.ms": min(300_000, int(timeout * 1000))})
    admin.list_topics(timeout=30)  # connected before the clock starts
    t0 = time.monotonic()
    fut = admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=timeout,
                              request_timeout=timeout)[topic]
    fut.result(timeout=timeout + 10)
    took = time.monotonic() - t0
    return took, len(admin.list_topics(topic, timeout=120).topics[topic].partitions)


def dir_usage(path):
    """(allocated bytes, apparent bytes) of every file under path."""
    alloc = apparent = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            alloc += st.st_blocks * 512
            apparent += st.st_size
    return alloc, apparent


# ------------------------------------------------------------------ clients

PRODUCED = re.compile(r"% (\d+) messages produced \((\d+) bytes\), (\d+) delivered "
                      r"\(offset (-?\d+), (\d+) failed\) in (\d+)ms: (\d+) msgs/s")
CONSUMED = re.compile(r"% (\d+) messages \((\d+) bytes\) consumed in (\d+)ms: (\d+) msgs/s")


def produce_requests(stats):
    """(Produce requests/s between the first and last statistics, total)."""
    def count(s):
        return sum(b.get("req", {}).get("Produce", b.get("tx", 0))
                   for b in s.get("brokers", {}).values())
    if not stats:
        return None, None
    total = count(stats[-1])
    if len(stats) < 2 or stats[-1]["ts"] - stats[0]["ts"] < 500_000:
        return None, total
    return (count(stats[-1]) - count(stats[0])) * 1e6 / (stats[-1]["ts"] - stats[0]["ts"]), total


class PerfClient:
    """librdkafka's rdkafka_performance."""
    name = "rdkafka_performance"

    def __init__(self, path):
        self.path = path

    def _run(self, args, timeout):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = subprocess.run([self.path, *args], capture_output=True, text=True, timeout=timeout)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if r.returncode != 0:
            raise SetupError(f"rdkafka_performance exited with {r.returncode}:\n"
                             f"{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        return r.stdout, cpu

    def produce(self, bootstrap, topic, n, size, acks, conf, stats_ms=0):
        args = ["-P", "-t", topic, "-p", "0", "-s", str(size), "-c", str(n), "-a", str(acks),
                "-b", bootstrap]
        for k, v in conf.items():
            args += ["-X", f"{k}={v}"]
        if stats_ms:
            args += ["-T", str(stats_ms)]
        out, cpu = self._run(args, timeout=max(300, n / 2000))
        m = None
        for m in PRODUCED.finditer(out):
            pass
        if m is None:
            raise SetupError(f"no producer summary in rdkafka_performance's output:\n{out[-2000:]}")
        delivered, failed, ms = int(m.group(3)), int(m.group(5)), int(m.group(6))
        if delivered != n or failed:
            raise SetupError(f"rdkafka_performance delivered {delivered} of {n} ({failed} failed)")
        stats = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        return {"records": delivered, "bytes": delivered * size, "seconds": max(ms, 1) / 1000,
                "client_cpu_s": cpu, "stats": stats}

    def consume(self, bootstrap, topic, n):
        args = ["-C", "-t", topic, "-p", "0", "-o", "beginning", "-c", str(n), "-e",
                "-b", bootstrap]
        out, cpu = self._run(args, timeout=max(300, n / 2000))
        m = None
        for m in CONSUMED.finditer(out):
            pass
        if m is None:
            raise SetupError(f"no consumer summary in rdkafka_performance's output:\n{out[-2000:]}")
        got, nbytes, ms = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if got != n:
            raise SetupError(f"rdkafka_performance consumed {got} of {n}")
        return {"records": got, "bytes": nbytes, "seconds": max(ms, 1) / 1000, "client_cpu_s": cpu}


def self_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class PyClient:
    """confluent-kafka (librdkafka driven from Python): bound by the Python loop."""
    name = "confluent-kafka"

    def produce(self, bootstrap, topic, n, size, acks, conf, stats_ms=0):
        stats = []
        cfg = {"bootstrap.servers": bootstrap, "acks": str(acks),
               "queue.buffering.max.messages": 1000000, **conf}
        if stats_ms:
            cfg["statistics.interval.ms"] = stats_ms
            cfg["stats_cb"] = lambda s: stats.append(json.loads(s))
        p = Producer(cfg)
        value = b"x" * size
        cpu0, t0 = self_cpu(), time.monotonic()
        for _ in range(n):
            while True:
                try:
                    p.produce(topic, value, partition=0)
                    break
                except BufferError:
                    p.poll(0.001)
            p.poll(0)
        left = p.flush(300)
        elapsed = time.monotonic() - t0
        if stats_ms:
            time.sleep(stats_ms / 1000 * 1.5)
            p.poll(0)
        if left:
            raise SetupError(f"{left} of {n} records not delivered")
        return {"records": n, "bytes": n * size, "seconds": elapsed,
                "client_cpu_s": self_cpu() - cpu0, "stats": stats}

    def consume(self, bootstrap, topic, n):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-storage",
                      "enable.auto.commit": False, "fetch.max.bytes": 52428800,
                      "max.partition.fetch.bytes": 10485760})
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got = nbytes = 0
        cpu0, t0 = self_cpu(), time.monotonic()
        deadline = t0 + max(300, n / 2000)
        while got < n and time.monotonic() < deadline:
            for m in c.consume(10000, 1):
                if m.error() is None:
                    got += 1
                    nbytes += len(m.value())
        elapsed = time.monotonic() - t0
        cpu = self_cpu() - cpu0
        c.close()
        if got != n:
            raise SetupError(f"consumed {got} of {n}")
        return {"records": got, "bytes": nbytes, "seconds": elapsed, "client_cpu_s": cpu}


# ------------------------------------------------------- end-to-end latency

E2E_HEADER = struct.Struct("<qq")  # sequence number, monotonic ns at produce()


def e2e_consumer(bootstrap, topic, warmup, ready, conn):
    """Runs in its own process: receives until the end marker, sends percentiles."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-e2e",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    c.consume(1, 0.5)
    ready.set()
    lat = []
    received = 0
    deadline = time.monotonic() + 600
    done = False
    while not done and time.monotonic() < deadline:
        # poll(), not consume(n): consume() waits until n records are there.
        m = c.poll(0.1)
        now = time.monotonic_ns()
        if m is None or m.error() is not None:
            continue
        seq, sent = E2E_HEADER.unpack_from(m.value())
        if seq < 0:
            done = True
            continue
        received += 1
        if seq >= warmup:
            lat.append((now - sent) / 1e6)
    c.close()
    lat.sort()

    def pct(q):
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else None

    conn.send({"received": received, "measured": len(lat), "p50_ms": pct(0.50),
               "p99_ms": pct(0.99), "p999_ms": pct(0.999), "max_ms": lat[-1] if lat else None,
               "complete": done})
    conn.close()


def e2e(bootstrap, topic, rate, seconds, linger_ms):
    total = int(rate * seconds)
    warmup = min(rate, total // 5)  # the first second (at most a fifth) is not measured
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=e2e_consumer, args=(bootstrap, topic, warmup, ready, child),
                       daemon=True)
    proc.start()
    try:
        if not ready.wait(60):
            raise SetupError("end-to-end consumer did not start")
        p = Producer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": linger_ms,
                      "queue.buffering.max.messages": 1000000})
        pad = b"x" * (100 - E2E_HEADER.size)
        t0 = time.monotonic_ns()
        sent = 0
        while sent < total:
            due = min(total, (time.monotonic_ns() - t0) * rate // 1_000_000_000 + 1)
            while sent < due:
                try:
                    p.produce(topic, E2E_HEADER.pack(sent, time.monotonic_ns()) + pad, partition=0)
                    sent += 1
                except BufferError:
                    p.poll(0.001)
            p.poll(0)
            wait = (t0 + sent * 1_000_000_000 // rate - time.monotonic_ns()) / 1e9
            if wait > 0:
                time.sleep(wait)
        elapsed = (time.monotonic_ns() - t0) / 1e9
        p.produce(topic, E2E_HEADER.pack(-1, time.monotonic_ns()) + pad, partition=0)
        if p.flush(60):
            raise SetupError("end-to-end producer could not deliver everything")
        if not parent.poll(120):
            raise SetupError("end-to-end consumer did not finish")
        res = parent.recv()
        res["offered_rate"] = rate
        res["achieved_rate"] = sent / elapsed
        return res
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()


# ------------------------------------------------------------- one store

def cpu_per_m(cpu_s, records):
    return cpu_s / records * 1e6 if records else None


def run_store(store, store_args, args, client, workdir, log, res):
    """All measurements for one store, filled into res as they come."""
    s = args.scale
    n100 = max(10_000, int(args.records_100 * s))
    n1k = max(10_000, int(args.records_1k * s))
    nreq = max(10_000, int(args.requests * s))
    mem_bytes = int(args.mem_bytes * s)
    nmem = max(10_000, mem_bytes // 1024)
    parts = args.partitions if args.partitions else max(10, int(10_000 * s))
    e2e_s = max(2.0, args.e2e_seconds * min(1.0, s))
    res["params"] = {"records_100": n100, "records_1k": n1k, "requests": nreq,
                     "mem_records_1k": nmem, "partitions": parts, "e2e_seconds": e2e_s,
                     "e2e_rate": args.e2e_rate, "client": client.name}

    # Node 1: throughput, requests, consume, end-to-end.
    d1 = workdir / f"{store}-throughput"
    b = Broker(args.bin, d1, workdir / f"{store}-throughput.log", store_args)
    try:
        res["ready_empty_ms"] = b.start() * 1000
        time.sleep(1)
        res["idle_rss_mb"] = b.status_kib("VmRSS") / 1024

        def measured(label, fn):
            # Broker CPU from the client's start until the node is idle again:
            # what the step cost, including flushes that trail the last request.
            b.quiesce()
            cpu0 = b.cpu_seconds()
            r = fn()
            during = b.cpu_seconds() - cpu0
            b.quiesce()
            cpu = b.cpu_seconds() - cpu0
            r["broker_cpu_s"] = cpu
            r["broker_cpu_during_s"] = during
            log(f"  {label}: {r['records']:,} records in {r['seconds']:.2f} s, broker "
                f"{cpu:.2f} CPU-s ({during:.2f} while the client ran), "
                f"client {r['client_cpu_s']:.2f} CPU-s")
            return r

        create_topic(b.kafka, "p100", 1)
        r = measured("produce 100 B", lambda: client.produce(
            b.kafka, "p100", n100, 100, 1, {"linger.ms": 5}))
        res["p100_rec_s"] = r["records"] / r["seconds"]
        res["p100_mb_s"] = r["bytes"] / r["seconds"] / 1e6
        res["p100_cpu_per_m"] = cpu_per_m(r["broker_cpu_s"], r["records"])
        res["p100_broker_cpu_pct"] = r["broker_cpu_during_s"] / r["seconds"] * 100
        res["p100_client_cpu_pct"] = r["client_cpu_s"] / r["seconds"] * 100

        create_topic(b.kafka, "p1k", 1)
        r = measured("produce 1 KiB", lambda: client.produce(
            b.kafka, "p1k", n1k, 1024, 1, {"linger.ms": 5}))
        res["p1k_mb_s"] = r["bytes"] / r["seconds"] / 1e6
        res["p1k_rec_s"] = r["records"] / r["seconds"]
        res["p1k_cpu_per_m"] = cpu_per_m(r["broker_cpu_s"], r["records"])
        res["p1k_broker_cpu_pct"] = r["broker_cpu_during_s"] / r["seconds"] * 100

        create_topic(b.kafka, "linger0", 1)
        r = measured("produce linger.ms=0, 1 record per request", lambda: client.produce(
            b.kafka, "linger0", nreq, 100, 1, {"linger.ms": 0, "batch.num.messages": 1},
            stats_ms=200))
        # One partition and one record per batch: one Produce request per
        # record. librdkafka's statistics count the requests; a run too short
        # for two statistics falls back to records/s.
        rate, total = produce_requests(r["stats"])
        res["linger0_req_s"] = rate if rate is not None else r["records"] / r["seconds"]
        res["linger0_requests_counted"] = total
        res["linger0_rec_s"] = r["records"] / r["seconds"]
        res["linger0_cpu_per_m"] = cpu_per_m(r["broker_cpu_s"], r["records"])

        r = measured("consume 100 B", lambda: client.consume(b.kafka, "p100", n100))
        res["c100_rec_s"] = r["records"] / r["seconds"]
        res["c100_mb_s"] = r["bytes"] / r["seconds"] / 1e6
        res["c100_cpu_per_m"] = cpu_per_m(r["broker_cpu_s"], r["records"])

        create_topic(b.kafka, "e2e", 1)
        b.quiesce()
        cpu0 = b.cpu_seconds()
        r = e2e(b.kafka, "e2e", args.e2e_rate, e2e_s, args.e2e_linger_ms)
        log(f"  end-to-end: {r['measured']:,} measured of {r['received']:,} received, "
            f"achieved {r['achieved_rate']:,.0f}/s, p50 {r['p50_ms'] or 0:.2f} ms, "
            f"p99 {r['p99_ms'] or 0:.2f} ms, "
            f"broker {b.cpu_seconds() - cpu0:.2f} CPU-s")
        res["e2e_p50_ms"] = r["p50_ms"]
        res["e2e_p99_ms"] = r["p99_ms"]
        res["e2e_p999_ms"] = r["p999_ms"]
        res["e2e_achieved_rate"] = r["achieved_rate"]
        res["throughput_node_stop_s"] = b.stop()
    finally:
        b.kill()
    if not args.keep:
        shutil.rmtree(d1, ignore_errors=True)

    # Node 2: memory and disk after writing and reading back, then 10,000
    # partitions and a restart on top of that data.
    d2 = workdir / f"{store}-memory"
    b = Broker(args.bin, d2, workdir / f"{store}-memory.log", store_args)
    try:
        b.start()
        create_topic(b.kafka, "mem", 1)
        b.quiesce()
        cpu0 = b.cpu_seconds()
        r = client.produce(b.kafka, "mem", nmem, 1024, 1, {"linger.ms": 5})
        log(f"  wrote {r['bytes'] / 1e9:.2f} GB in {r['seconds']:.1f} s "
            f"({cpu_per_m(b.cpu_seconds() - cpu0, r['records']):.2f} broker CPU-s/M)")
        time.sleep(args.settle)
        res["mem_record_bytes"] = r["bytes"]
        res["mem_rss_after_write_mb"] = b.status_kib("VmRSS") / 1024
        r = client.consume(b.kafka, "mem", nmem)
        log(f"  read {r['bytes'] / 1e9:.2f} GB in {r['seconds']:.1f} s")
        time.sleep(args.settle)
        res["mem_rss_after_read_mb"] = b.status_kib("VmRSS") / 1024
        res["mem_hwm_mb"] = b.status_kib("VmHWM") / 1024
        alloc, apparent = dir_usage(d2)
        res["mem_disk_bytes"] = alloc
        res["mem_disk_apparent_bytes"] = apparent
        res["mem_disk_ratio"] = alloc / res["mem_record_bytes"]

        b.quiesce()
        res["parts_create_s"], got = create_topic(b.kafka, "parts", parts,
                                                  timeout=args.admin_timeout)
        if got != parts:
            raise SetupError(f"topic has {got} of {parts} partitions after CreateTopics")
        log(f"  created {parts:,} partitions in {res['parts_create_s']:.2f} s")
        res["parts_stop_s"] = b.stop()
        res["parts_restart_ready_s"] = b.start()
        time.sleep(1)
        res["parts_restart_rss_mb"] = b.status_kib("VmRSS") / 1024
        log(f"  graceful stop {res['parts_stop_s']:.2f} s, spawn to ready "
            f"{res['parts_restart_ready_s']:.3f} s")
        b.stop()
    finally:
        b.kill()
    if not args.keep:
        shutil.rmtree(d2, ignore_errors=True)


# ----------------------------------------------------------------- output

ROWS = [
    # key, label, format
    ("ready_empty_ms", "spawn to /readyz 200, empty data dir (ms)", "{:,.1f}"),
    ("idle_rss_mb", "idle RSS (MB)", "{:,.1f}"),
    ("p100_rec_s", "(a) produce 100 B acks=1: records/s", "{:,.0f}"),
    ("p100_cpu_per_m", "(a) broker CPU-s per M records", "{:.3f}"),
    ("p100_broker_cpu_pct", "(a) broker CPU % of one core", "{:.0f}"),
    ("p100_client_cpu_pct", "(a) client CPU % of one core", "{:.0f}"),
    ("p1k_mb_s", "(b) produce 1 KiB acks=1: MB/s", "{:,.1f}"),
    ("p1k_cpu_per_m", "(b) broker CPU-s per M records", "{:.3f}"),
    ("linger0_req_s", "(c) linger.ms=0 producer: Produce requests/s", "{:,.0f}"),
    ("linger0_cpu_per_m", "(c) broker CPU-s per M requests", "{:.3f}"),
    ("c100_rec_s", "(d) consume 100 B: records/s", "{:,.0f}"),
    ("c100_cpu_per_m", "(d) broker CPU-s per M records", "{:.3f}"),
    ("mem_record_bytes", "(e) record bytes written and read back (GB)", "{:.2f}", 1e-9),
    ("mem_rss_after_write_mb", "(e) RSS after writing (MB)", "{:,.1f}"),
    ("mem_rss_after_read_mb", "(e) RSS after reading back (MB)", "{:,.1f}"),
    ("mem_hwm_mb", "(e) peak RSS (MB)", "{:,.1f}"),
    ("mem_disk_ratio", "(e) disk use / record bytes", "{:.2f}"),
    ("parts_create_s", "(f) create one topic of P partitions (s)", "{:.2f}"),
    ("parts_stop_s", "(f) graceful stop (s)", "{:.2f}"),
    ("parts_restart_ready_s", "(f) restart: spawn to /readyz 200 (s)", "{:.3f}"),
    ("e2e_achieved_rate", "(g) end-to-end: achieved records/s", "{:,.0f}"),
    ("e2e_p50_ms", "(g) end-to-end p50 (ms)", "{:.2f}"),
    ("e2e_p99_ms", "(g) end-to-end p99 (ms)", "{:.2f}"),
]


def fmt(res, row):
    key, _, spec = row[:3]
    v = res.get(key)
    if v is None:
        return "n/a"
    return spec.format(v * (row[3] if len(row) > 3 else 1))


def label(row, res):
    text = row[1]
    parts = res.get("params", {}).get("partitions")
    return text.replace("P partitions", f"{parts:,} partitions") if parts else text


def store_table(store, res):
    lines = [f"### {store}", ""]
    if "skipped" in res:
        return lines + [f"skipped: {res['skipped']}", ""]
    if "error" in res:
        lines += [f"failed: {res['error']}", ""]
    lines += ["| measure | figure | goal |", "| --- | --- | --- |"]
    for row in ROWS:
        lines.append(f"| {label(row, res)} | {fmt(res, row)} | {GOALS.get(row[0], '')} |")
    return lines + [""]


def ratio_table(results):
    a, b = results.get("segments", {}), results.get("sled", {})
    lines = ["### segments / sled", "", "| measure | segments | sled | segments/sled |",
             "| --- | --- | --- | --- |"]
    for row in ROWS:
        va, vb = a.get(row[0]), b.get(row[0])
        ratio = f"{va / vb:.2f}" if isinstance(va, (int, float)) and isinstance(vb, (int, float)) \
            and vb else "n/a"
        lines.append(f"| {label(row, a if 'params' in a else b)} | {fmt(a, row)} | "
                     f"{fmt(b, row)} | {ratio} |")
    return lines + [""]


# ------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.environ.get("SLUICE_BIN", str(ROOT / "target/release/sluice")))
    ap.add_argument("--rdkafka-perf", default=os.environ.get(
        "RDKAFKA_PERF", str(ROOT / "target/tools/rdkafka_performance")))
    ap.add_argument("--stores", default=",".join(STORES), help="comma separated, in order")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiplies every record count, the memory test's bytes, the partition "
                         "count and (up to 1) the end-to-end duration; e.g. 0.02 for a quick run")
    ap.add_argument("--records-100", type=int, default=5_000_000, help="(a), (d)")
    ap.add_argument("--records-1k", type=int, default=1_000_000, help="(b)")
    ap.add_argument("--requests", type=int, default=300_000, help="(c)")
    ap.add_argument("--mem-bytes", type=float, default=2.4e9, help="(e) record bytes")
    ap.add_argument("--partitions", type=int, default=0,
                    help="(f) partitions of the one topic (default 10,000 times --scale)")
    ap.add_argument("--admin-timeout", type=float, default=900.0, help="(f) CreateTopics timeout, s")
    ap.add_argument("--e2e-rate", type=int, default=50_000, help="(g) records/s")
    ap.add_argument("--e2e-seconds", type=float, default=10.0, help="(g)")
    ap.add_argument("--e2e-linger-ms", type=int, default=1, help="(g) producer linger.ms")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="(e) seconds to wait before reading RSS (the node trims its heap every second)")
    ap.add_argument("--tmp-dir", default=None, help="where the data directories go")
    ap.add_argument("--keep", action="store_true", help="keep data directories and logs")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    def on_term(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)

    if not os.access(args.bin, os.X_OK):
        raise SystemExit(f"no sluice binary at {args.bin} (cargo build --release, or --bin)")
    available, note = detect_stores(args.bin)
    if os.access(args.rdkafka_perf, os.X_OK):
        client = PerfClient(args.rdkafka_perf)
    else:
        client = PyClient()
        log(f"{args.rdkafka_perf} not found (scripts/build_rdkafka_perf.sh builds it): "
            "measuring with confluent-kafka; throughput figures are then client-bound")

    results = {}
    workdir = Path(tempfile.mkdtemp(prefix="sluice-bench-storage-", dir=args.tmp_dir))
    started = time.time()
    try:
        for store in [s.strip() for s in args.stores.split(",") if s.strip()]:
            if store not in available:
                results[store] = {"skipped": note or f"the binary does not offer --log-store {store}"}
                log(f"{store}: skipped ({results[store]['skipped']})")
                continue
            log(f"{store}: load average {os.getloadavg()[0]:.1f}")
            results[store] = {}
            try:
                run_store(store, available[store], args, client, workdir, log, results[store])
            except (SetupError, KafkaException, subprocess.TimeoutExpired) as e:
                log(f"{store}: failed: {e}")
                results[store]["error"] = str(e)
    finally:
        kill_all()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"data and logs kept in {workdir}")

    out = [f"## Log storage benchmark ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))})",
           "",
           f"binary `{args.bin}`, client `{client.name}`, scale {args.scale}, "
           f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end. "
           "MB = 10^6 bytes; CPU-s per M = broker utime+stime per million records.",
           ""]
    if client.name != PerfClient.name:
        out += ["rdkafka_performance: n/a (not built; scripts/build_rdkafka_perf.sh). Throughput "
                "and CPU figures below come from confluent-kafka driven from Python and are "
                "bound by the Python loop, not by the broker.", ""]
    for store, res in results.items():
        out += store_table(store, res)
    if all(s in results and "skipped" not in results[s] for s in STORES):
        out += ratio_table(results)
    print("\n".join(out))

    if args.json:
        doc = {"binary": args.bin, "client": client.name, "scale": args.scale,
               "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
               "cpus": os.cpu_count(), "stores": results, "goals": GOALS}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2, default=str)
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

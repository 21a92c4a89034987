#!/usr/bin/env python3
"""Cluster benchmarks: replication throughput, failover time, follower catch-up.

Starts real `sluice serve` processes on 127.0.0.1 (ports picked up front by
binding port 0 for all of them at once, then releasing them), each scenario
on fresh data directories, and prints one Markdown table per section:

1. Throughput. `sluice bench produce` of N x 100 B records (1 MiB batches,
   linger 5 ms) to a 6-partition topic on a 3-node cluster (RF=3, acks=all
   and acks=1) and on a single node (acks=1 and acks=all). The topic is
   created (and every replica seen on every node) before the load starts.
   Afterwards the script checks that every replica holds exactly N records
   (log end offset = high watermark on every node, sum = N) and reports how
   long after the producer finished the followers got there.
2. Failover. A librdkafka producer (enable.idempotence, acks=all,
   linger.ms=5) writes to every partition of a 6-partition, RF=3,
   min.insync.replicas=2 topic at a fixed rate. Then a node is killed with
   SIGKILL: either one that leads partitions and is not the Raft leader, or
   the Raft leader (the controller). Per partition: the time from the kill to
   the first acknowledged record *sent after the kill*; and, from polling the
   survivors' /api/raft, when the image showed the node fenced and the
   partitions' new leaders. Afterwards every acknowledged record is read back
   from the survivors with a group-less kafka-python consumer (lost and
   duplicated records are counted). Each run uses a fresh cluster;
   the scenarios are repeated with --broker-session-timeout-ms 600
   --broker-heartbeat-interval-ms 100.
3. Catch-up. On a fresh cluster one follower is stopped (SIGTERM), records of
   1 KiB are produced with `sluice bench produce` (acks=all,
   min.insync.replicas=2) to a 6-partition RF=3 topic, the node is started
   again (same arguments, data dir and ports) and its /api/replicas is polled
   until its log end offset equals the leader's high watermark on every
   partition, and the controller's image until the ISR includes it again.
   The stored batches are then compared on all nodes (/api/replicas/digest).

Every process the script starts is killed by its PID when its scenario ends,
also on failure (and, via PR_SET_PDEATHSIG, if the script itself is killed).
Node logs are kept under the work directory when anything fails (or with
--keep).

    .venv/bin/python scripts/bench_cluster.py                      # full run
    .venv/bin/python scripts/bench_cluster.py --records 100000 --catchup-mb 50 \\
        --failover-repeats 1                                        # smoke run
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition

MIB = 1 << 20
PARTITIONS = 6
# Seconds a cluster may take to start, elect a leader, register brokers or
# create a topic; generous because the machine is small and shared.
CONVERGE_TIMEOUT = 60.0
# Seconds a node may take to exit after SIGTERM.
STOP_TIMEOUT = 30.0

# Every process started (nodes and load generators), for the final sweep.
STARTED: list[subprocess.Popen] = []


class Failure(Exception):
    """A scenario could not complete; the message says what was awaited."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if the script's main thread dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def spawn(cmd: list[str], **kw) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, preexec_fn=_die_with_parent, **kw)
    STARTED.append(proc)
    return proc


def kill_pid(proc: subprocess.Popen | None) -> None:
    """SIGKILL one process we started (by its PID) and reap it."""
    if proc is not None and proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports: all bound at once, then released."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def http_get(addr: str, path: str, timeout: float = 2.0):
    """(status, parsed JSON or None); status None when the node does not answer."""
    try:
        with urllib.request.urlopen(f"http://{addr}{path}", timeout=timeout) as resp:
            body = resp.read()
            try:
                return resp.status, json.loads(body)
            except ValueError:
                return resp.status, None
    except urllib.error.HTTPError as e:
        return e.code, None
    except (OSError, ValueError):
        return None, None


def wait_for(check, timeout: float, what: str, interval: float = 0.02):
    """Poll `check()` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise Failure(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f} ms"


def fmt_s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f} s"


def spread(values: list[float]) -> str:
    """min / median / max in ms."""
    if not values:
        return "-"
    return " / ".join(f"{v * 1000:,.0f}" for v in (min(values), statistics.median(values), max(values))) + " ms"


def spread_s(values: list[float]) -> str:
    """min / median / max in s."""
    if not values:
        return "-"
    return " / ".join(f"{v:.2f}" for v in (min(values), statistics.median(values), max(values))) + " s"


# ---------------------------------------------------------------------------
# Nodes and clusters


class Node:
    """One `sluice serve` process with fixed ports and data dir."""

    def __init__(self, binary: str, node_id: int | None, base: str, kafka_port: int, http_port: int,
                 cluster_port: int | None = None, peers: str | None = None, extra: list[str] = ()):
        self.binary = binary
        self.id = node_id
        name = f"node-{node_id}" if node_id is not None else "single"
        self.data_dir = os.path.join(base, name)
        self.log_path = os.path.join(base, f"{name}.log")
        self.kafka = f"127.0.0.1:{kafka_port}"
        self.http = f"127.0.0.1:{http_port}"
        self.args = [binary, "serve", "--data-dir", self.data_dir, "--kafka-addr", self.kafka,
                     "--http-addr", self.http]
        if node_id is not None:
            # The nodes authenticate each other as a real cluster would.
            secret = os.path.join(base, "cluster.secret")
            if not os.path.exists(secret):
                with open(secret, "w") as f:
                    f.write(secrets.token_hex(32) + "\n")
            self.args += ["--node-id", str(node_id), "--cluster-addr", f"127.0.0.1:{cluster_port}",
                          "--peers", peers, "--cluster-secret-file", secret]
        self.args += ["--shop", "false", *extra]
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> float:
        """Start the process (again, with the same arguments); its start time."""
        self.starts += 1
        with open(self.log_path, "a") as f:
            f.write(f"==== start {self.starts}: {' '.join(self.args)}\n")
            f.flush()
            started = time.monotonic()
            self.proc = spawn(self.args, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return started

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        kill_pid(self.proc)

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM and wait; the exit code, or None if it had to be SIGKILLed."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            return None

    def ready(self) -> bool:
        return self.alive() and http_get(self.http, "/readyz", 1.0)[0] == 200

    def raft(self) -> dict | None:
        if not self.alive():
            return None
        status, view = http_get(self.http, "/api/raft")
        return view if status == 200 and view and view.get("enabled") else None

    def replicas(self, topic: str) -> dict[int, dict] | None:
        """This node's replicas of `topic` by partition (None: no answer)."""
        if not self.alive():
            return None
        status, view = http_get(self.http, "/api/replicas")
        if status != 200 or not isinstance(view, list):
            return None
        return {r["partition"]: r for r in view if r.get("topic") == topic}

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""


def kafka_brokers(bootstrap: str) -> int:
    """How many brokers a Metadata request to `bootstrap` lists (0 on failure)."""
    try:
        md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=5)
        return len(md.brokers)
    except Exception:  # noqa: BLE001 - any client error means "not yet"
        return 0


class Cluster:
    """Three (or `size`) nodes with --peers, or a single node without Raft."""

    def __init__(self, binary: str, base: str, size: int = 3, extra: list[str] = ()):
        self.base = base
        os.makedirs(base, exist_ok=True)
        if size == 1:
            k, h = free_ports(2)
            self.nodes = {1: Node(binary, None, base, k, h, extra=list(extra))}
            self.single = True
            return
        self.single = False
        ports = free_ports(3 * size)
        kafka, http, cluster = ports[:size], ports[size:2 * size], ports[2 * size:]
        peers = ",".join(f"{i + 1}=127.0.0.1:{cluster[i]}" for i in range(size))
        self.nodes = {i + 1: Node(binary, i + 1, base, kafka[i], http[i], cluster[i], peers, list(extra))
                      for i in range(size)}

    # lifecycle

    def start(self) -> "Cluster":
        for n in self.nodes.values():
            n.start()
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = CONVERGE_TIMEOUT) -> None:
        """/readyz 200 everywhere; in a cluster also an agreed Raft leader, every
        broker registered and unfenced, and Kafka Metadata from each node listing
        every broker."""
        wait_for(lambda: all(n.ready() for n in self.live()), timeout, "/readyz on every node")
        if self.single:
            return
        size = len(self.nodes)

        def registered():
            leader = self.controller()
            if leader is None:
                return False
            brokers = self.nodes[leader].raft()["image"].get("brokers", {})
            return len(brokers) == size and not any(b.get("fenced") for b in brokers.values())
        wait_for(registered, timeout, f"{size} unfenced brokers and a Raft leader in /api/raft")
        for n in self.live():
            wait_for(lambda n=n: kafka_brokers(n.kafka) == size, timeout,
                     f"Kafka Metadata from node {n.id} listing {size} brokers", interval=0.1)

    def kill_all(self) -> None:
        for n in self.nodes.values():
            n.kill9()

    def live(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.alive()]

    def bootstrap(self, live_only: bool = False) -> str:
        return ",".join(n.kafka for n in (self.live() if live_only else self.nodes.values()))

    def dump_logs(self, lines: int = 40) -> None:
        for n in self.nodes.values():
            log(f"---- last {lines} lines of {n.log_path}\n{n.log_tail(lines)}")

    # Raft and the metadata image

    def controller(self) -> int | None:
        """The Raft leader every running node names, if it runs and says Leader."""
        views = [n.raft() for n in self.live()]
        if not views or any(v is None for v in views):
            return None
        leaders = {v["status"].get("leader") for v in views}
        if len(leaders) != 1:
            return None
        leader = leaders.pop()
        if leader not in self.nodes or not self.nodes[leader].alive():
            return None
        roles = {v["status"].get("node_id"): v["status"].get("role") for v in views}
        return leader if roles.get(leader) == "Leader" else None

    def image(self) -> dict:
        def get():
            c = self.controller()
            view = self.nodes[c].raft() if c else None
            return view["image"] if view else None
        return wait_for(get, CONVERGE_TIMEOUT, "the controller's metadata image")

    def create_topic(self, topic: str, rf: int, configs: dict | None = None) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap(live_only=True)})
        admin.create_topics([NewTopic(topic, PARTITIONS, rf, config=configs or {})])[topic].result(30)
        if self.single:
            wait_for(lambda: self.partitions_with_leader(topic) == PARTITIONS, CONVERGE_TIMEOUT,
                     f"{topic}: {PARTITIONS} partitions with a leader in Metadata", interval=0.05)
        else:
            self.wait_healthy(topic)

    def partitions_with_leader(self, topic: str) -> int:
        try:
            md = AdminClient({"bootstrap.servers": self.bootstrap(True)}).list_topics(topic, timeout=5)
            t = md.topics.get(topic)
            return 0 if t is None or t.error else sum(1 for p in t.partitions.values() if p.leader >= 0)
        except Exception:  # noqa: BLE001
            return 0

    def wait_healthy(self, topic: str, timeout: float = CONVERGE_TIMEOUT) -> dict:
        """Every node's image shows `topic` with every replica in sync and a
        live leader, and every node reports its replicas with the image's leader."""
        size = len(self.nodes)

        def check():
            images = [n.raft() for n in self.live()]
            if not images or any(v is None for v in images):
                return None
            for v in images:
                t = v["image"].get("topics", {}).get(topic)
                if t is None or len(t["partitions"]) != PARTITIONS:
                    return None
                for p in t["partitions"]:
                    if len(p["replicas"]) != size or sorted(p["isr"]) != sorted(p["replicas"]):
                        return None
                    if p["leader"] not in self.nodes or not self.nodes[p["leader"]].alive():
                        return None
            parts = images[0]["image"]["topics"][topic]["partitions"]
            for n in self.live():
                reps = n.replicas(topic)
                if reps is None or len(reps) != PARTITIONS:
                    return None
                for i, p in enumerate(parts):
                    want = "leader" if p["leader"] == n.id else "follower"
                    if reps[i].get("role") != want or reps[i].get("leader") != p["leader"]:
                        return None
            return images[0]["image"]
        return wait_for(check, timeout, f"{topic}: {PARTITIONS} partitions, all replicas in sync", 0.05)

    def offsets(self, topic: str) -> dict:
        """Per partition: the leader's high watermark and every live replica's
        log end offset, from /api/replicas (cluster only)."""
        hw: dict[int, int] = {}
        leo: dict[int, dict[int, int]] = {p: {} for p in range(PARTITIONS)}
        for n in self.live():
            reps = n.replicas(topic) or {}
            for p, r in reps.items():
                leo[p][n.id] = r["log_end_offset"]
                if r.get("role") == "leader":
                    hw[p] = r["high_watermark"]
        return {"hw": hw, "leo": leo}


def group_less_consumer(bootstrap: str) -> KafkaConsumer:
    """A kafka-python consumer without a group: unlike a librdkafka consumer
    (which needs a group.id and then looks up a group coordinator, creating
    __consumer_offsets), it only sends Metadata, ListOffsets and Fetch."""
    return KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False,
                         request_timeout_ms=30000, max_partition_fetch_bytes=10 * MIB)


def high_watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    c = group_less_consumer(bootstrap)
    try:
        tps = [KafkaTopicPartition(topic, p) for p in range(PARTITIONS)]
        return {tp.partition: off for tp, off in c.end_offsets(tps).items()}
    finally:
        c.close()


# ---------------------------------------------------------------------------
# `sluice bench produce`


def cluster_cpu_seconds(cluster) -> float:
    """utime+stime of every node process of `cluster`, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for node in cluster.nodes.values():
        if node.proc is None or node.proc.poll() is not None:
            continue
        try:
            with open(f"/proc/{node.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            pass
    return total


def bench_produce(binary: str, bootstrap: str, topic: str, records: int, size: int, acks: int,
                  rf: int, timeout: float) -> dict:
    cmd = [binary, "bench", "produce", "--bootstrap", bootstrap, "--topic", topic,
           "--num-records", str(records), "--record-size", str(size), "--acks", str(acks),
           "--batch-size", "1048576", "--linger-ms", "5", "--partitions", str(PARTITIONS),
           "--replication-factor", str(rf), "--report-interval-secs", "1000"]
    log("$ " + " ".join(cmd))
    proc = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_pid(proc)
        raise Failure(f"sluice bench produce did not finish within {timeout:.0f} s")
    finally:
        kill_pid(proc)
    result = None
    for line in out.splitlines():
        if line.startswith("RESULT "):
            result = dict(kv.split("=", 1) for kv in line.split()[1:])
    if proc.returncode != 0 or result is None:
        raise Failure(f"sluice bench produce exited {proc.returncode}: {out[-2000:]} {err[-2000:]}")
    log("  " + out.strip().splitlines()[0])
    if int(result["errors"]) != 0 or int(result["records"]) != records:
        raise Failure(f"sluice bench produce reported {result}")
    return {k: float(v) for k, v in result.items() if k != "mode"}


# ---------------------------------------------------------------------------
# 1. Throughput


def run_throughput(args, work: str) -> list[dict]:
    cases = [("3 nodes, RF=3", 3, -1), ("3 nodes, RF=3", 3, 1), ("1 node", 1, 1), ("1 node", 1, -1)]
    rows = []
    for idx, (setup, size, acks) in enumerate(cases):
        base = os.path.join(work, f"throughput-{idx}")
        cluster = Cluster(args.bin, base, size)
        row = {"setup": setup, "acks": "all" if acks == -1 else "1"}
        try:
            log(f"throughput: {setup}, acks={row['acks']}")
            cluster.start()
            topic = "bench"
            cluster.create_topic(topic, size)
            cpu_before = cluster_cpu_seconds(cluster)
            res = bench_produce(args.bin, cluster.bootstrap(), topic, args.records, args.record_size,
                                acks, size, timeout=600)
            done = time.monotonic()
            row.update(res)
            # Every replica must end up with exactly the records acknowledged.
            if cluster.single:
                hws = wait_for(lambda: (lambda h: h if sum(h.values()) == args.records else None)(
                    high_watermarks(cluster.bootstrap(), topic)), 60, f"{args.records} records in {topic}")
                row["in_sync_after"] = None
            else:
                def replicated():
                    o = cluster.offsets(topic)
                    if len(o["hw"]) != PARTITIONS or sum(o["hw"].values()) != args.records:
                        return None
                    ok = all(len(o["leo"][p]) == size and set(o["leo"][p].values()) == {o["hw"][p]}
                             for p in range(PARTITIONS))
                    return o if ok else None
                o = wait_for(replicated, 120, f"every replica of {topic} holding {args.records} records", 0.05)
                row["in_sync_after"] = time.monotonic() - done
                hws = o["hw"]
            row["per_partition"] = [hws[p] for p in range(PARTITIONS)]
            # Every node's CPU from before the producer until every replica
            # holds the records: leaders' and followers' work together.
            row["cpu_s_per_m"] = (cluster_cpu_seconds(cluster) - cpu_before) / args.records * 1e6
        except Exception as e:  # noqa: BLE001
            row["failed"] = f"{type(e).__name__}: {e}"
            log(f"FAILED: {e}")
            cluster.dump_logs()
            args.failures += 1
        finally:
            cluster.kill_all()
        if not args.failures and not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        rows.append(row)
    return rows


def print_throughput(args, rows: list[dict]) -> None:
    base = next((r for r in rows if r["setup"] == "1 node" and r["acks"] == "1" and "failed" not in r), None)
    print(f"\n### Throughput: {args.records:,} records of {args.record_size} B, {PARTITIONS} partitions\n")
    print("| setup | acks | records/s | MB/s | p50 | p99 | vs 1 node acks=1 | all replicas equal after | broker CPU-s per M records (all nodes) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if "failed" in r:
            print(f"| {r['setup']} | {r['acks']} | failed: {r['failed']} | | | | | | |")
            continue
        ratio = f"{r['records_per_sec'] / base['records_per_sec']:.2f}" if base else "-"
        after = "-" if r["in_sync_after"] is None else f"{r['in_sync_after'] * 1000:,.0f} ms"
        print(f"| {r['setup']} | {r['acks']} | {r['records_per_sec']:,.0f} | {r['mb_per_sec']:.1f} | "
              f"{r['p50_ms']:,.0f} ms | {r['p99_ms']:,.0f} ms | {ratio} | {after} | {r['cpu_s_per_m']:.2f} |")
    print("\nMB = 2^20 bytes (as `sluice bench` prints it); latencies are `sluice bench produce`'s, "
          "from a record's send to its acknowledgement.", flush=True)


# ---------------------------------------------------------------------------
# 2. Failover


class ImageWatcher(threading.Thread):
    """Polls the survivors' /api/raft and records (relative to `t_kill`) when
    the image first showed: a new Raft leader, the victim fenced, each of its
    partitions led by another node, the victim out of every ISR."""

    def __init__(self, cluster: Cluster, victim: int, topic: str, affected: list[int], t_kill: float):
        super().__init__(daemon=True)
        self.cluster, self.victim, self.topic, self.affected = cluster, victim, topic, affected
        self.t_kill = t_kill
        self.raft_leader = self.fenced = self.out_of_isr = None
        self.new_leader: dict[int, float] = {}
        self.stop_flag = threading.Event()

    def run(self) -> None:
        survivors = [n for n in self.cluster.nodes.values() if n.id != self.victim]
        while not self.stop_flag.is_set():
            for n in survivors:
                view = n.raft()
                now = time.monotonic() - self.t_kill
                if view is None:
                    continue
                st, image = view["status"], view["image"]
                if self.raft_leader is None and st.get("leader") not in (None, self.victim):
                    self.raft_leader = now
                b = image.get("brokers", {}).get(str(self.victim), {})
                if self.fenced is None and b.get("fenced"):
                    self.fenced = now
                parts = image.get("topics", {}).get(self.topic, {}).get("partitions", [])
                for p in self.affected:
                    if p not in self.new_leader and p < len(parts) and parts[p]["leader"] not in (self.victim, -1, None):
                        self.new_leader[p] = now
                if self.out_of_isr is None and parts and all(self.victim not in p["isr"] for p in parts):
                    self.out_of_isr = now
            if (self.fenced is not None and self.out_of_isr is not None
                    and len(self.new_leader) == len(self.affected) and self.raft_leader is not None):
                return
            time.sleep(0.01)


def run_failover(args, work: str, name: str, kill: str, extra: list[str]) -> dict:
    base = os.path.join(work, name)
    cluster = Cluster(args.bin, base, 3, extra)
    row = {"kill": kill, "settings": "default" if not extra else " ".join(extra)}
    producer = None
    watcher = None
    try:
        log(f"failover {name}: kill {kill}, {row['settings']}")
        cluster.start()
        topic = "failover"
        image = None
        cluster.create_topic(topic, 3, {"min.insync.replicas": "2"})
        image = cluster.image()
        controller = cluster.controller()
        leaders = {p: part["leader"] for p, part in enumerate(image["topics"][topic]["partitions"])}
        if kill == "controller":
            victim = controller
        else:
            candidates = sorted({l for l in leaders.values() if l != controller})
            if not candidates:
                raise Failure(f"no partition leader other than the controller {controller}: {leaders}")
            victim = candidates[0]
        affected = [p for p, l in leaders.items() if l == victim]
        row.update(victim=victim, controller=controller, affected=affected)
        log(f"  controller {controller}, leaders {leaders}, killing node {victim} (leads {affected})")

        conf = {"bootstrap.servers": cluster.bootstrap(), "enable.idempotence": True, "acks": "all",
                "linger.ms": 5}
        if args.librdkafka_debug:
            conf["debug"] = args.librdkafka_debug
        producer = Producer(conf)
        acked: list[tuple] = []       # (partition, seq, t_send, t_ack)
        failed: list[tuple] = []      # (partition, seq, error)
        pad = b"x" * max(0, args.record_size - 16)
        interval = 1.0 / args.failover_rate
        seq = 0
        t_kill = None
        first_after: dict[int, float] = {}
        state = {"phase": "warmup"}

        def callback(part, s, t_send):
            def cb(err, msg):
                now = time.monotonic()
                if err is not None:
                    failed.append((part, s, str(err)))
                    return
                acked.append((part, s, t_send, now))
                if t_kill is not None and t_send > t_kill and part not in first_after:
                    first_after[part] = now - t_kill
            return cb

        def send():
            nonlocal seq
            part = seq % PARTITIONS
            t_send = time.monotonic()
            while True:
                try:
                    producer.produce(topic, b"%015d " % seq + pad, partition=part,
                                     on_delivery=callback(part, seq, t_send))
                    break
                except BufferError:
                    producer.poll(0.001)
            seq += 1

        def pump(until_check, deadline: float, what: str):
            """Send at the configured rate, serving callbacks in between."""
            next_t = time.monotonic()
            while not until_check():
                now = time.monotonic()
                if now > deadline:
                    raise Failure(f"timed out waiting for {what}")
                if now >= next_t:
                    send()
                    next_t += interval
                    if next_t < now - 1:  # fell far behind: do not burst
                        next_t = now
                producer.poll(max(0.0, min(next_t - time.monotonic(), 0.005)))

        # Warm up: acknowledgements flowing on every partition for a while.
        warm_end = time.monotonic() + args.failover_warmup
        pump(lambda: time.monotonic() >= warm_end and len({a[0] for a in acked[-200:]}) == PARTITIONS,
             time.monotonic() + 60, "acknowledgements on every partition before the kill")
        sent_before = seq
        t_kill = time.monotonic()
        os.kill(cluster.nodes[victim].proc.pid, signal.SIGKILL)
        row["killed_at"] = time.strftime("%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"
        log(f"  SIGKILL node {victim} at {row['killed_at']} (UTC, as in the node logs)")
        watcher = ImageWatcher(cluster, victim, topic, affected, t_kill)
        watcher.start()
        pump(lambda: len(first_after) == PARTITIONS, t_kill + args.failover_timeout,
             "an acknowledged post-kill record on every partition")
        # A little more load after the last partition recovered, then drain.
        tail_end = time.monotonic() + 0.5
        pump(lambda: time.monotonic() >= tail_end, tail_end + 5, "the tail")
        cluster.nodes[victim].proc.wait()
        remaining = producer.flush(60)
        watcher.join(10)
        watcher.stop_flag.set()
        row.update(sent=seq, sent_before_kill=sent_before, acked=len(acked), errors=len(failed),
                   undelivered=remaining, first_after=dict(first_after), watcher=watcher,
                   error_samples=failed[:3])

        # Read everything back from the survivors: every acknowledged record must be there.
        want = {(p, s) for p, s, _, _ in acked}
        seen: dict[tuple, int] = {}
        c = group_less_consumer(cluster.bootstrap(live_only=True))
        try:
            tps = [KafkaTopicPartition(topic, p) for p in range(PARTITIONS)]
            hws = {tp.partition: off for tp, off in c.end_offsets(tps).items()}
            c.assign(tps)
            c.seek_to_beginning(*tps)
            pos = {p: 0 for p in range(PARTITIONS)}
            deadline = time.monotonic() + 120
            while any(pos[p] < hws[p] for p in range(PARTITIONS)):
                if time.monotonic() > deadline:
                    raise Failure(f"reading back {topic}: at {pos} of {hws} after 120 s")
                for tp, msgs in c.poll(timeout_ms=500, max_records=10000).items():
                    for m in msgs:
                        key = (m.partition, int(m.value[:15]))
                        seen[key] = seen.get(key, 0) + 1
                        pos[m.partition] = m.offset + 1
        finally:
            c.close()
        row["lost"] = len(want - seen.keys())
        row["duplicates"] = sum(v - 1 for v in seen.values() if v > 1)
        row["stored"] = sum(hws.values())
        if row["lost"]:
            row["lost_samples"] = sorted(want - seen.keys())[:10]
    except Exception as e:  # noqa: BLE001 - recorded, logs shown, next scenario runs
        row["failed"] = f"{type(e).__name__}: {e}"
        log(f"FAILED: {e}")
        cluster.dump_logs()
        args.failures += 1
    finally:
        if watcher is not None:
            watcher.stop_flag.set()
        cluster.kill_all()
        if producer is not None:
            producer.purge()
            producer.flush(0)
    if not args.failures and not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return row


def print_failover(args, rows: list[dict]) -> None:
    print(f"\n### Failover: kill -9, {PARTITIONS} partitions, RF=3, min.insync.replicas=2, "
          f"{args.failover_rate:,} records/s of {args.record_size} B, idempotent acks=all producer\n")
    print("| run | node killed | broker settings | victim's partitions | image: node fenced | "
          "image: new leaders (min / median / max) | first ack after kill, victim's partitions (min / median / max) | "
          "first ack after kill, other partitions (min / median / max) | sent / acked / failed | lost / duplicated |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for i, r in enumerate(rows, 1):
        kill = "Raft leader (controller)" if r["kill"] == "controller" else "partition leader, not controller"
        if "failed" in r and "watcher" not in r:
            print(f"| {i} | {kill} | {r['settings']} | | | | failed: {r['failed']} | | | |")
            continue
        w = r["watcher"]
        aff = r["affected"]
        fa = r["first_after"]
        victim_times = [fa[p] for p in aff if p in fa]
        other_times = [fa[p] for p in range(PARTITIONS) if p not in aff and p in fa]
        missing = [p for p in range(PARTITIONS) if p not in fa]
        fenced = fmt_ms(w.fenced)
        if r["kill"] == "controller":
            fenced += f" (new Raft leader {fmt_ms(w.raft_leader)})"
        new_leaders = spread([w.new_leader[p] for p in aff if p in w.new_leader])
        lost = f"{r.get('lost', '?')} / {r.get('duplicates', '?')}"
        note = f" (no ack on {missing})" if missing else ""
        if "failed" in r:
            note += f" failed: {r['failed']}"
        print(f"| {i} | {kill} (node {r['victim']}) | {r['settings']} | {len(aff)} {aff} | {fenced} | {new_leaders} | "
              f"{spread(victim_times)}{note} | {spread(other_times)} | "
              f"{r['sent']:,} / {r['acked']:,} / {r['errors'] + r['undelivered']} | {lost} |")
    for i, r in enumerate(rows, 1):
        if r.get("error_samples"):
            print(f"\nrun {i}: delivery errors, e.g. {r['error_samples']}")
        if r.get("lost_samples"):
            print(f"\nrun {i}: acknowledged but not read back (partition, seq), e.g. {r['lost_samples']}")
    sys.stdout.flush()


# ---------------------------------------------------------------------------
# 3. Catch-up


def run_catchup(args, work: str) -> dict:
    base = os.path.join(work, "catchup")
    cluster = Cluster(args.bin, base, 3)
    size = 1024
    records = args.catchup_mb * MIB // size
    row = {"records": records, "size": size}
    try:
        log(f"catch-up: {records:,} records of {size} B")
        cluster.start()
        topic = "catchup"
        cluster.create_topic(topic, 3, {"min.insync.replicas": "2"})
        controller = cluster.controller()
        victim = max(i for i in cluster.nodes if i != controller)
        node = cluster.nodes[victim]
        row.update(victim=victim, controller=controller)
        before = node.replicas(topic)
        if before is None or len(before) != PARTITIONS:
            raise Failure(f"node {victim} did not list its {PARTITIONS} replicas of {topic}")
        base_leo = {p: before[p]["log_end_offset"] for p in range(PARTITIONS)}
        t = time.monotonic()
        rc = node.terminate()
        row["stop_s"] = time.monotonic() - t
        row["stop_rc"] = rc
        log(f"  stopped node {victim} (controller is {controller}): exit {rc} after {row['stop_s']:.2f} s")

        def failed_over():
            img = cluster.nodes[controller].raft()
            if img is None:
                return None
            parts = img["image"]["topics"][topic]["partitions"]
            return all(victim not in p["isr"] and p["leader"] != victim for p in parts)
        wait_for(failed_over, CONVERGE_TIMEOUT, f"node {victim} out of every ISR of {topic}")

        res = bench_produce(args.bin, cluster.bootstrap(live_only=True), topic, records, size, -1, 3,
                            timeout=1800)
        row["produce"] = res

        def leaders_done():
            o = cluster.offsets(topic)
            return o if len(o["hw"]) == PARTITIONS and sum(o["hw"].values()) == records else None
        o = wait_for(leaders_done, 120, f"{records} records below the high watermarks of {topic}")
        target = o["hw"]

        log(f"  restarting node {victim}")
        t0 = node.start()
        t_ready = t_caught = t_isr = None
        first_leo = None
        samples = []
        caught_at: dict[int, float] = {}
        isr_at: dict[int, float] = {}
        deadline = t0 + args.catchup_timeout
        while t_caught is None or t_isr is None:
            now = time.monotonic()
            if now > deadline:
                raise Failure(f"node {victim} not caught up / back in the ISR {args.catchup_timeout:.0f} s after "
                              f"restart (caught up: {t_caught}, ISR: {t_isr}; last LEOs {samples[-1:]}, "
                              f"targets {target})")
            if not node.alive():
                raise Failure(f"node {victim} exited with {node.proc.returncode} during catch-up")
            if t_ready is None and node.ready():
                t_ready = time.monotonic() - t0
            reps = node.replicas(topic)
            if reps is not None and len(reps) == PARTITIONS:
                leo = {p: reps[p]["log_end_offset"] for p in range(PARTITIONS)}
                if first_leo is None:
                    first_leo = leo
                samples.append((time.monotonic() - t0, sum(leo.values())))
                for p in range(PARTITIONS):
                    if p not in caught_at and leo[p] >= target[p]:
                        caught_at[p] = time.monotonic() - t0
                if t_caught is None and all(leo[p] >= target[p] for p in range(PARTITIONS)):
                    t_caught = time.monotonic() - t0
                    row["final_leo"] = leo
            if t_isr is None:
                img = cluster.nodes[controller].raft()
                if img is not None:
                    parts = img["image"]["topics"][topic]["partitions"]
                    for p, part in enumerate(parts):
                        if p not in isr_at and victim in part["isr"]:
                            isr_at[p] = time.monotonic() - t0
                    if all(victim in p["isr"] for p in parts):
                        t_isr = time.monotonic() - t0
            time.sleep(0.02)
        behind = sum(target[p] - base_leo[p] for p in range(PARTITIONS))
        row.update(t_ready=t_ready, t_caught=t_caught, t_isr=t_isr, behind=behind, first_leo=first_leo,
                   target=target, samples=samples, caught_at=caught_at, isr_at=isr_at)
        # When did the first replicated record arrive (so start-up can be told apart)?
        start = next((t for t, total in samples if total > sum(base_leo.values())), None)
        row["t_first_progress"] = start
        over = {p: row["final_leo"][p] - target[p] for p in range(PARTITIONS) if row["final_leo"][p] != target[p]}
        row["overshoot"] = over

        # The stored batches must be the same on every node.
        digests = {}
        for p in range(PARTITIONS):
            for n in cluster.nodes.values():
                q = urllib.parse.urlencode({"topic": topic, "partition": p, "upto": target[p]})
                status, d = http_get(n.http, f"/api/replicas/digest?{q}", timeout=120)
                digests[(p, n.id)] = d.get("sha256") if status == 200 and d else f"HTTP {status}"
        row["digests_equal"] = all(len({digests[(p, n)] for n in cluster.nodes}) == 1 for p in range(PARTITIONS))
        if not row["digests_equal"]:
            row["digests"] = digests
    except Exception as e:  # noqa: BLE001 - recorded, logs shown, next scenario runs
        row["failed"] = f"{type(e).__name__}: {e}"
        log(f"FAILED: {e}")
        cluster.dump_logs()
        args.failures += 1
    finally:
        cluster.kill_all()
    if not args.failures and not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return row


def print_catchup(args, r: dict) -> None:
    mib = r["records"] * r["size"] / MIB
    print(f"\n### Catch-up: {r['records']:,} records of {r['size']} B ({mib:,.0f} MiB of values), "
          f"{PARTITIONS} partitions, RF=3, produced with acks=all while one node was stopped\n")
    if "failed" in r and "t_caught" not in r:
        print(f"failed: {r['failed']}")
        return
    p = r["produce"]
    caught_mib = r["behind"] * r["size"] / MIB
    rate = caught_mib / r["t_caught"] if r["t_caught"] else 0
    net = r["t_caught"] - r["t_first_progress"] if r["t_first_progress"] is not None else None
    print("| what | figure |")
    print("| --- | --- |")
    print(f"| node stopped (SIGTERM) | node {r['victim']} (controller: node {r['controller']}); exited "
          f"{r['stop_rc']} after {r['stop_s']:.2f} s |")
    print(f"| produce to the two others (`sluice bench produce`, acks=all) | {p['records_per_sec']:,.0f} records/s, "
          f"{p['mb_per_sec']:.1f} MB/s, p99 {p['p99_ms']:,.0f} ms |")
    print(f"| records behind at restart | {r['behind']:,} ({caught_mib:,.1f} MiB of values; "
          f"{sum(r['first_leo'].values()):,} already fetched at the first /api/replicas answer) |")
    print(f"| restart to /readyz 200 | {fmt_s(r['t_ready'])} |")
    print(f"| restart to first replicated record | {fmt_s(r['t_first_progress'])} |")
    print(f"| restart to log end offset = leader's high watermark, per partition (min / median / max) | "
          f"{spread_s(list(r['caught_at'].values()))} |")
    print(f"| restart to log end offset = leader's high watermark, all partitions | {fmt_s(r['t_caught'])} |")
    print(f"| catch-up rate (restart to caught up) | {rate:,.1f} MiB/s ({r['behind'] / r['t_caught']:,.0f} records/s) |")
    if net:
        print(f"| catch-up rate (first record to caught up) | {caught_mib / net:,.1f} MiB/s |")
    print(f"| restart to back in the ISR (controller's image), per partition (min / median / max) | "
          f"{spread_s(list(r['isr_at'].values()))} |")
    print(f"| restart to back in the ISR of every partition (controller's image) | {fmt_s(r['t_isr'])} |")
    print(f"| stored batches equal on all 3 nodes (/api/replicas/digest) | "
          f"{'yes' if r.get('digests_equal') else 'NO'} |")
    if r.get("overshoot"):
        print(f"\nlog end offset past the leader's high watermark on partitions {r['overshoot']}")
    if r.get("digests"):
        print(f"\ndigests: {r['digests']}")
    if "failed" in r:
        print(f"\nfailed: {r['failed']}")
    sys.stdout.flush()


# ---------------------------------------------------------------------------


def _interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default="target/release/sluice")
    ap.add_argument("--records", type=int, default=1_000_000, help="records per throughput run")
    ap.add_argument("--record-size", type=int, default=100, help="value size of throughput and failover records")
    ap.add_argument("--failover-rate", type=int, default=2000, help="records/s of the failover producer (all partitions)")
    ap.add_argument("--failover-warmup", type=float, default=3.0, help="seconds of load before the kill")
    ap.add_argument("--failover-timeout", type=float, default=60.0, help="seconds after the kill to wait for acks")
    ap.add_argument("--failover-repeats", type=int, default=3, help="runs of each failover scenario")
    ap.add_argument("--librdkafka-debug", help="librdkafka `debug` contexts for the failover producer "
                    "(e.g. metadata,topic,msg; logged to stderr)")
    ap.add_argument("--catchup-mb", type=int, default=500, help="MiB of 1 KiB records the stopped node misses")
    ap.add_argument("--catchup-timeout", type=float, default=900.0)
    ap.add_argument("--only", choices=["throughput", "failover", "catchup"], action="append",
                    help="run only these sections (repeatable)")
    ap.add_argument("--work-dir", help="where data dirs and node logs go (default: a new temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep data dirs and logs")
    args = ap.parse_args()
    args.failures = 0
    args.bin = os.path.abspath(args.bin)
    sections = args.only or ["throughput", "failover", "catchup"]

    work = args.work_dir or tempfile.mkdtemp(prefix="sluice-bench-cluster-")
    os.makedirs(work, exist_ok=True)
    log(f"work dir {work}; {os.cpu_count()} CPUs; load average {os.getloadavg()}")
    # SIGTERM to the script unwinds like Ctrl-C, so the finally below runs.
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        if "throughput" in sections:
            print_throughput(args, run_throughput(args, work))
        if "failover" in sections:
            tuned = ["--broker-session-timeout-ms", "600", "--broker-heartbeat-interval-ms", "100"]
            rows = []
            for settings_name, extra in (("default", []), ("tuned", tuned)):
                for kill in ("broker", "controller"):
                    for rep in range(args.failover_repeats):
                        rows.append(run_failover(args, work, f"failover-{settings_name}-{kill}-{rep}", kill, extra))
            print_failover(args, rows)
        if "catchup" in sections:
            print_catchup(args, run_catchup(args, work))
    finally:
        for proc in STARTED:
            kill_pid(proc)
        log(f"load average at the end {os.getloadavg()}")
        if args.failures or args.keep:
            log(f"{args.failures} failure(s); data dirs and node logs kept in {work}")
        elif not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if args.failures else 0


if __name__ == "__main__":
    sys.exit(main())

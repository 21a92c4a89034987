"""Partition replication and failover in a three-node cluster, driven with
real Kafka clients (confluent-kafka, kafka-python, kcat):

- Metadata from every node lists the three brokers and, per partition,
  three replicas in sync with leaders spread evenly; RF 4 is refused.
- An idempotent acks=all producer keeps going when the leader of some
  partitions (a plain broker, then the controller) is killed with SIGKILL:
  every acknowledged record is kept once, in order, at its offset.
- A killed node restarted later catches up, re-enters every ISR, and holds
  byte-identical batches (same sha256 as the other replicas); preferred
  leaders come back.
- With two of three nodes down and min.insync.replicas=2, acks=all fails
  instead of acknowledging; one node back and it succeeds again.
- A consumer group survives the kill of its coordinator (at-least-once,
  committed offsets end at the end offsets).
- A whole cluster stopped with SIGTERM and started again keeps topics,
  records and committed offsets.

Each test starts its own three nodes in its tmp_path (127.0.0.1 only); every
process is ended by its PID in a `finally`; every wait polls against a
deadline.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections import Counter, defaultdict

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                  NewPartitions, NewTopic)

import clients
import wire
from cluster import POLL, Cluster
from harness import unique_topic, wait_until

# Seconds for client calls and for the cluster to react (fence, elect, catch up).
TIMEOUT = 60.0
# Seconds a flush of the failover producer may take (its message.timeout.ms is 120 s).
FLUSH_TIMEOUT = 150.0
KCAT_TIMEOUT = 60


@pytest.fixture
def cluster(request, tmp_path):
    """Three started nodes, all SIGKILLed by PID after the test."""
    nodes = Cluster(tmp_path, request)
    try:
        nodes.start()
        yield nodes
    finally:
        # Destroy this test's Kafka clients still held by reference cycles
        # (e.g. a traceback), so they stop reconnecting to these nodes.
        gc.collect()
        nodes.kill_all()


# -- clients -----------------------------------------------------------------


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10_000})


def create_topic(cluster: Cluster, name: str, partitions: int, rf: int = 3,
                 config: dict | None = None, via: int | None = None) -> dict:
    """CreateTopics through one node (`via`, else the first running one);
    waits until every running node's image shows the topic fully in sync."""
    node = cluster.nodes[via if via is not None else cluster.alive_ids()[0]]
    # The client must outlive its futures (destroying it fails them with _DESTROY).
    client = admin(node.bootstrap)
    futures = client.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=rf, config=config or {})],
        operation_timeout=TIMEOUT)
    futures[name].result(timeout=TIMEOUT)
    return cluster.wait_healthy(name, partitions, rf)


def kcat_metadata(bootstrap: str, *extra: str) -> dict:
    binary = shutil.which("kcat")
    assert binary is not None, "kcat is not installed (scripts/test.sh installs it)"
    # subprocess.run kills the child if the timeout expires.
    result = subprocess.run(
        [binary, "-L", "-J", "-b", bootstrap, "-m", "30", *extra],
        capture_output=True, timeout=KCAT_TIMEOUT, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (
        f"kcat -L -J -b {bootstrap} exited {result.returncode}\n{result.stderr.decode()}")
    return json.loads(result.stdout)


def wait_equal(fn, expected, timeout: float, what: str):
    """Poll `fn()` until it equals `expected`; on timeout fail showing the last value."""
    last = [None]

    def check():
        last[0] = fn()
        return last[0] == expected
    try:
        wait_until(check, timeout, interval=POLL, what=what)
    except TimeoutError as err:
        raise AssertionError(f"{err}\nlast: {last[0]!r}\nexpected: {expected!r}") from None


def parse(value: bytes) -> tuple[int, int]:
    """A numbered record's value `partition:seq`."""
    partition, seq = value.decode().split(":")
    return int(partition), int(seq)


def produce_numbered(bootstrap: str, topic: str, partitions: int, start: int, count: int,
                     flush_timeout: float = TIMEOUT * 2, **config):
    """Produce `partition:seq` for seq in [start, start+count) to every
    partition; returns (acked [(partition, seq, offset)], failed
    [(partition, seq, error)], records still undelivered after the flush)."""
    settings = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "client.id": "sluice-replication-producer",
    }
    settings.update(config)
    producer = Producer(settings)
    acked: list[tuple[int, int, int]] = []
    failed: list[tuple[int, int, str]] = []

    def delivered(err, msg):
        p, seq = parse(msg.value())
        if err is None:
            acked.append((p, seq, msg.offset()))
        else:
            failed.append((p, seq, err.name()))

    for seq in range(start, start + count):
        for p in range(partitions):
            while True:
                try:
                    producer.produce(topic, value=f"{p}:{seq}".encode(), partition=p,
                                     on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(flush_timeout)
    return acked, failed, remaining


def produce_all_acked(bootstrap: str, topic: str, partitions: int, start: int, count: int,
                      **config) -> list[tuple[int, int, int]]:
    acked, failed, remaining = produce_numbered(bootstrap, topic, partitions, start, count,
                                                **config)
    assert remaining == 0, f"{remaining} records never delivered"
    assert failed == [], f"delivery errors: {Counter(e for _, _, e in failed)}"
    assert len(acked) == partitions * count
    return acked


def read_partitions(cluster: Cluster, topic: str, partitions: int) -> dict[int, list[tuple[int, int]]]:
    """Every record of `topic` read from the current leaders (kafka-python,
    assign + seek to beginning, up to the end offsets): partition -> [(offset, seq)]."""
    records = clients.read_all(cluster.live_bootstrap, topic, list(range(partitions)),
                               timeout=TIMEOUT * 1.5)
    by_partition: dict[int, list[tuple[int, int]]] = {p: [] for p in range(partitions)}
    for record in records:
        p, seq = parse(record.value)
        assert p == record.partition, f"record {record.value!r} in partition {record.partition}"
        by_partition[p].append((record.offset, seq))
    return by_partition


def assert_replicas_identical(cluster: Cluster, topic: str, partitions: int) -> None:
    """Once the writes stop: every partition's replicas reach one log end
    and high watermark and hold byte-identical batches (same digest)."""
    for p in range(partitions):
        def level(p=p):
            entries = [cluster.replica(i, topic, p) for i in cluster.ids]
            if any(e is None for e in entries):
                return None
            ends = {e["log_end_offset"] for e in entries}
            hws = {e["high_watermark"] for e in entries}
            return ends.pop() if len(ends) == 1 and hws == ends else None

        upto = wait_until(level, TIMEOUT, interval=POLL,
                          what=f"partition {p}: replicas level after the writes")
        digests = {cluster.digest(i, topic, p, upto)["sha256"] for i in cluster.ids}
        assert len(digests) == 1, f"partition {p}: replicas differ below {upto}"


def assert_in_order_without_duplicates(log: dict[int, list[tuple[int, int]]]) -> None:
    for p, entries in log.items():
        seqs = [seq for _, seq in entries]
        for (off_a, a), (off_b, b) in zip(entries, entries[1:]):
            assert b > a, (f"partition {p}: seq {b} at offset {off_b} follows seq {a} at "
                           f"offset {off_a} (duplicate or reordering)")
        assert len(seqs) == len(set(seqs))


def assert_acked_kept(log: dict[int, list[tuple[int, int]]],
                      acked: list[tuple[int, int, int]], exactly_once: bool = True) -> None:
    """Every acknowledged record is present at its acknowledged offset (and,
    with `exactly_once`, nowhere else)."""
    for p, entries in log.items():
        at = dict(entries)
        count = Counter(seq for _, seq in entries)
        missing = [(seq, off) for q, seq, off in acked if q == p and at.get(off) != seq]
        assert not missing, (f"partition {p}: {len(missing)} acknowledged records not at their "
                             f"offset (first: seq {missing[0][0]} at {missing[0][1]}, "
                             f"found {at.get(missing[0][1])})")
        twice = [seq for q, seq, _ in acked if exactly_once and q == p and count[seq] != 1]
        assert not twice, f"partition {p}: acknowledged seqs present more than once: {twice[:10]}"


# -- 1. metadata -------------------------------------------------------------


def layout_from_image(image: dict, topic: str) -> dict[int, tuple[int, tuple, frozenset]]:
    return {p: (part["leader"], tuple(part["replicas"]), frozenset(part["isr"]))
            for p, part in enumerate(Cluster.partitions(image, topic) or [])}


@pytest.mark.timeout(300)
def test_metadata_from_every_node_lists_three_brokers_and_spreads_replicas(cluster):
    controller = cluster.raft_leader()
    expected_brokers = {i: node.bootstrap for i, node in cluster.nodes.items()}

    for i, node in cluster.nodes.items():
        listing = kcat_metadata(node.bootstrap)
        assert {b["id"]: b["name"] for b in listing["brokers"]} == expected_brokers, f"via node {i}"
        if "controllerid" in listing:
            assert listing["controllerid"] == controller, f"kcat via node {i}"
        md = admin(node.bootstrap).list_topics(timeout=TIMEOUT)
        assert {b.id: f"{b.host}:{b.port}" for b in md.brokers.values()} == expected_brokers
        assert md.controller_id == controller, f"controller id via node {i}"

    text = subprocess.run([shutil.which("kcat"), "-L", "-b", cluster.nodes[2].bootstrap, "-m", "30"],
                          capture_output=True, timeout=KCAT_TIMEOUT, stdin=subprocess.DEVNULL)
    assert text.returncode == 0, text.stderr.decode()
    assert "3 brokers:" in text.stdout.decode()

    topic = unique_topic("repl-meta")
    # Created through a node that need not be the controller.
    image = create_topic(cluster, topic, 6, 3, {"min.insync.replicas": "2"}, via=2)
    layout = layout_from_image(image, topic)
    assert sorted(layout) == list(range(6))
    for p, (leader, replicas, isr) in layout.items():
        assert sorted(replicas) == [1, 2, 3], f"partition {p} replicas {replicas}"
        assert isr == frozenset(replicas), f"partition {p} ISR {sorted(isr)}"
        assert leader == replicas[0], f"partition {p}: leader {leader} is not the first replica"
    assert Counter(leader for leader, _, _ in layout.values()) == {1: 2, 2: 2, 3: 2}
    assert image["topics"][topic]["configs"].get("min.insync.replicas") == "2"

    # Every node's Kafka metadata (both clients) shows the image's layout.
    for i, node in cluster.nodes.items():
        client = admin(node.bootstrap)

        def rdkafka_layout(client=client):
            t = client.list_topics(topic=topic, timeout=TIMEOUT).topics.get(topic)
            if t is None or t.error is not None:
                return None
            return {p: (m.leader, tuple(m.replicas), frozenset(m.isrs))
                    for p, m in t.partitions.items()}

        wait_equal(rdkafka_layout, layout, TIMEOUT,
                   what=f"confluent-kafka metadata of {topic} via node {i} to match the image")

        def kcat_layout(node=node):
            listing = kcat_metadata(node.bootstrap, "-t", topic)
            [t] = [t for t in listing["topics"] if t["topic"] == topic]
            return {m["partition"]: (m["leader"], tuple(r["id"] for r in m["replicas"]),
                                     frozenset(r["id"] for r in m["isrs"]))
                    for m in t["partitions"]}

        wait_equal(kcat_layout, layout, TIMEOUT,
                   what=f"kcat metadata of {topic} via node {i} to match the image")

    # Every node holds a replica of every partition, leader where the image says so.
    def local_roles(i):
        entries = [e for e in cluster.replicas(i) or [] if e.get("topic") == topic]
        return {e["partition"]: e["role"] for e in entries}

    for i in cluster.ids:
        expected_roles = {p: "leader" if leader == i else "follower"
                          for p, (leader, _, _) in layout.items()}
        wait_equal(lambda i=i: local_roles(i), expected_roles, TIMEOUT,
                   what=f"node {i}'s /api/replicas roles")

    bad = unique_topic("repl-rf4")
    client = admin(cluster.bootstrap)
    futures = client.create_topics(
        [NewTopic(bad, num_partitions=1, replication_factor=4)], operation_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as refused:
        futures[bad].result(timeout=TIMEOUT)
    assert refused.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR, refused.value
    assert bad not in cluster.image()["topics"]
    assert bad not in admin(cluster.bootstrap).list_topics(timeout=TIMEOUT).topics


# -- 2, 3. failover under an idempotent producer ------------------------------


class NumberedProducer(threading.Thread):
    """A background idempotent acks=all producer: `partition:seq` to every
    partition in turn, each partition with its own increasing seq, until
    stopped; then a flush. Keeps when each record was produced and acked."""

    def __init__(self, bootstrap: str, topic: str, partitions: int):
        super().__init__(daemon=True, name=f"producer-{topic}")
        self.topic = topic
        self.partition_count = partitions
        self.lock = threading.Lock()
        self.sent_at: dict[int, list[float]] = {p: [] for p in range(partitions)}
        # partition -> [(seq, offset, ack time)]
        self.acked: dict[int, list[tuple[int, int, float]]] = {p: [] for p in range(partitions)}
        self.failed: list[tuple[int, int, str]] = []
        self.client_errors: list[KafkaError] = []
        self.stopping = threading.Event()
        self.flush_timeout = FLUSH_TIMEOUT
        self.unflushed: int | None = None
        self.exception: BaseException | None = None
        self.producer = Producer({
            "bootstrap.servers": bootstrap,
            "client.id": "sluice-failover-producer",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 120_000,
            "request.timeout.ms": 15_000,
            # Metadata requests use this; librdkafka's default (60 s) keeps a
            # producer waiting on a broker that is cut off, not dead.
            "socket.timeout.ms": 10_000,
            "error_cb": self._error,
        })

    def _error(self, err: KafkaError) -> None:
        with self.lock:
            self.client_errors.append(err)

    def _delivered(self, err, msg) -> None:
        now = time.monotonic()
        p, seq = parse(msg.value())
        with self.lock:
            if err is None:
                self.acked[p].append((seq, msg.offset(), now))
            else:
                self.failed.append((p, seq, err.name()))

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                for p in range(self.partition_count):
                    seq = len(self.sent_at[p])
                    try:
                        self.producer.produce(self.topic, value=f"{p}:{seq}".encode(),
                                              partition=p, on_delivery=self._delivered)
                    except BufferError:
                        break
                    with self.lock:
                        self.sent_at[p].append(time.monotonic())
                # Serves delivery reports; also paces the loop (~600 records/s).
                self.producer.poll(0.01 if len(self.producer) < 20_000 else 0.2)
            self.unflushed = self.producer.flush(self.flush_timeout)
        except BaseException as err:  # reported by the test
            self.exception = err
        finally:
            # The client holds this object through its callbacks: drop it
            # here so it is destroyed now, not by a later garbage collection.
            self.producer = None

    def stop(self, flush_timeout: float = FLUSH_TIMEOUT) -> None:
        """Stop producing, let the thread flush for up to `flush_timeout`, join it."""
        self.flush_timeout = flush_timeout
        self.stopping.set()
        self.join(timeout=flush_timeout + 30)

    # -- views for the test (thread-safe) --

    def acked_count(self, p: int) -> int:
        with self.lock:
            return len(self.acked[p])

    def acked_produced_after(self, p: int, t: float) -> int:
        """How many records produced after `t` were acknowledged."""
        with self.lock:
            return sum(1 for seq, _, _ in self.acked[p] if self.sent_at[p][seq] > t)

    def first_ack_after(self, p: int, t: float) -> float | None:
        """When the first record produced after `t` was acknowledged."""
        with self.lock:
            times = [at for seq, _, at in self.acked[p] if self.sent_at[p][seq] > t]
        return min(times) if times else None

    def fatal_errors(self) -> list[str]:
        with self.lock:
            return [str(e) for e in self.client_errors if e.fatal()]

    def all_acked(self) -> list[tuple[int, int, int]]:
        with self.lock:
            return [(p, seq, off) for p, acks in self.acked.items() for seq, off, _ in acks]


def assert_log_is_exactly_what_was_sent(cluster: Cluster, producer: "NumberedProducer",
                                        topic: str, partitions: int) -> None:
    """Every acknowledged record is in the log, in order, once; no record
    failed or stayed undelivered, so the log is exactly the records sent."""
    log = read_partitions(cluster, topic, partitions)
    assert_acked_kept(log, producer.all_acked())
    assert_in_order_without_duplicates(log)
    assert producer.fatal_errors() == [], "fatal producer errors"
    assert producer.unflushed == 0, f"{producer.unflushed} records undelivered after the flush"
    assert producer.failed == [], (
        f"{len(producer.failed)} records failed: {Counter(e for _, _, e in producer.failed)}")
    for p in range(partitions):
        assert [seq for _, seq in log[p]] == list(range(len(producer.sent_at[p]))), (
            f"partition {p}")


def run_failover_under_producer(cluster: Cluster, label: str, kill_controller: bool) -> None:
    partitions = 6
    topic = unique_topic(label)
    create_topic(cluster, topic, partitions, 3, {"min.insync.replicas": "2"})
    controller = cluster.raft_leader()
    before = Cluster.partitions(cluster.image(), topic)
    leaders = {p: part["leader"] for p, part in enumerate(before)}
    if kill_controller:
        victim = controller
    else:
        victim = min(i for i in set(leaders.values()) if i != controller)
    affected = sorted(p for p, leader in leaders.items() if leader == victim)
    assert affected, f"node {victim} leads no partition of {topic}: {leaders}"

    producer = NumberedProducer(cluster.bootstrap, topic, partitions)
    producer.start()
    finished = False
    try:
        wait_until(lambda: all(producer.acked_count(p) >= 50 for p in range(partitions)),
                   TIMEOUT, interval=POLL, what="50 acknowledged records per partition before the kill")
        cluster.kill9(victim)  # returns once the process is reaped
        killed_at = time.monotonic()

        # Failover is proven by acknowledgements of records produced after
        # the kill, on the partitions the killed node led and on the others.
        wait_until(lambda: all(producer.acked_produced_after(p, killed_at) >= 20
                               for p in range(partitions)),
                   TIMEOUT * 1.5, interval=POLL,
                   what=f"acks after the kill of node {victim} on every partition "
                        f"(its partitions: {affected})")
        firsts = {p: producer.first_ack_after(p, killed_at) - killed_at for p in affected}
        print(f"\n[{label}] killed node {victim} (controller: {controller}); seconds from the "
              f"kill to the first ack on its partitions: "
              + ", ".join(f"p{p}={s:.2f}" for p, s in firsts.items())
              + f"; earliest {min(firsts.values()):.2f}")
        finished = True
    finally:
        # A failed wait should not also wait out the records' 120 s timeout.
        producer.stop(FLUSH_TIMEOUT if finished else 10.0)

    assert not producer.is_alive(), "the producer thread did not finish its flush"
    assert producer.exception is None, repr(producer.exception)

    # The image moved the killed node's partitions to a survivor with a new epoch.
    image = cluster.wait_failed_over(topic, victim)
    after = Cluster.partitions(image, topic)
    for p in affected:
        assert after[p]["leader"] != victim
        assert after[p]["leader_epoch"] > before[p]["leader_epoch"], (
            f"partition {p}: leader epoch {before[p]['leader_epoch']} -> {after[p]['leader_epoch']}")

    assert_log_is_exactly_what_was_sent(cluster, producer, topic, partitions)


@pytest.mark.timeout(300)
def test_killing_a_partition_leader_under_an_idempotent_producer_loses_and_duplicates_nothing(
        cluster):
    run_failover_under_producer(cluster, "failover-broker", kill_controller=False)


@pytest.mark.timeout(300)
def test_killing_the_controller_under_an_idempotent_producer_loses_and_duplicates_nothing(
        cluster):
    run_failover_under_producer(cluster, "failover-controller", kill_controller=True)


@pytest.mark.timeout(300)
def test_a_rolling_restart_under_an_idempotent_producer_fails_and_loses_nothing(cluster):
    """Each node in turn gets SIGTERM and is started again once every
    replica is back in sync, under an acks=all producer. Its controlled
    shutdown fences it and moves its leaderships while it still answers, so
    no record fails, none is lost or duplicated, and the node logs the
    hand-over before it exits."""
    partitions = 6
    topic = unique_topic("rolling")
    create_topic(cluster, topic, partitions, 3, {"min.insync.replicas": "2"})
    producer = NumberedProducer(cluster.bootstrap, topic, partitions)
    producer.start()
    finished = False
    gaps: dict[int, float] = {}
    try:
        wait_until(lambda: all(producer.acked_count(p) >= 50 for p in range(partitions)),
                   TIMEOUT, interval=POLL, what="50 acknowledged records per partition")
        for i in cluster.ids:
            led = sorted(p for p, leader in cluster.leaders(topic).items() if leader == i)
            stopped_at = time.monotonic()
            assert cluster.stop(i) == 0, cluster.nodes[i].log_text(last=40)
            assert "controlled shutdown: leaderships moved" in cluster.nodes[i].log_text(), (
                f"node {i} stopped without handing over its leaderships\n"
                + cluster.nodes[i].log_text(last=40))
            cluster.wait_failed_over(topic, i)
            wait_until(lambda: all(producer.acked_produced_after(p, stopped_at) >= 20
                                   for p in range(partitions)),
                       TIMEOUT, interval=POLL, what=f"acks on every partition after node {i} stopped")
            if led:
                gaps[i] = max(producer.first_ack_after(p, stopped_at) - stopped_at for p in led)
            cluster.start_node(i)
            cluster.wait_healthy(topic, partitions, 3)
        finished = True
    finally:
        producer.stop(FLUSH_TIMEOUT if finished else 10.0)
    print("\n[rolling restart] seconds from SIGTERM to the first ack on the stopped node's "
          "partitions: " + ", ".join(f"node {i}: {g:.2f}" for i, g in gaps.items()))

    assert not producer.is_alive(), "the producer thread did not finish its flush"
    assert producer.exception is None, repr(producer.exception)
    assert_log_is_exactly_what_was_sent(cluster, producer, topic, partitions)


@pytest.mark.timeout(300)
def test_a_frozen_leader_is_fenced_and_rejoins_without_diverging(cluster):
    """SIGSTOP a partition leader (a hung node, or one cut off from the
    others): it is fenced and its partitions move while it cannot know; on
    SIGCONT it still believes it leads until it hears the new image, then
    truncates what it alone took and follows. Nothing acknowledged is lost
    or doubled, and all three replicas end byte-identical."""
    partitions = 6
    topic = unique_topic("frozen")
    create_topic(cluster, topic, partitions, 3, {"min.insync.replicas": "2"})
    controller = cluster.raft_leader()
    leaders = cluster.leaders(topic)
    victim = min(i for i in set(leaders.values()) if i != controller)
    others = [i for i in cluster.ids if i != victim]
    pid = cluster.nodes[victim].pid

    producer = NumberedProducer(cluster.bootstrap, topic, partitions)
    producer.start()
    finished = False
    frozen = False
    try:
        wait_until(lambda: all(producer.acked_count(p) >= 50 for p in range(partitions)),
                   TIMEOUT, interval=POLL, what="50 acknowledged records per partition")
        os.kill(pid, signal.SIGSTOP)
        frozen = True
        frozen_at = time.monotonic()
        cluster.wait_image(
            lambda image: all(part["leader"] != victim and victim not in part["isr"]
                              for part in Cluster.partitions(image, topic)),
            f"{topic}: partitions moved off frozen node {victim}", ids=others)
        wait_until(lambda: all(producer.acked_produced_after(p, frozen_at) >= 20
                               for p in range(partitions)),
                   TIMEOUT * 1.5, interval=POLL, what="acks on every partition while frozen")
        os.kill(pid, signal.SIGCONT)
        frozen = False
        cluster.wait_healthy(topic, partitions, 3, timeout=TIMEOUT * 1.5)
        finished = True
    finally:
        if frozen:
            os.kill(pid, signal.SIGCONT)
        producer.stop(FLUSH_TIMEOUT if finished else 10.0)

    assert producer.exception is None, repr(producer.exception)
    assert producer.fatal_errors() == [], "fatal producer errors"
    log = read_partitions(cluster, topic, partitions)
    assert_acked_kept(log, producer.all_acked())
    assert_in_order_without_duplicates(log)
    assert_replicas_identical(cluster, topic, partitions)


@pytest.mark.timeout(300)
def test_admin_requests_through_any_node_reach_the_controller_and_non_leaders_refuse(cluster):
    topic = unique_topic("admin")
    create_topic(cluster, topic, 2, 3, via=1)

    # CreatePartitions through node 3: every node serves four partitions.
    grow = admin(cluster.nodes[3].bootstrap)
    grow.create_partitions([NewPartitions(topic, 4)],
                           operation_timeout=TIMEOUT)[topic].result(timeout=TIMEOUT)
    for i in cluster.ids:
        wait_equal(lambda i=i: sorted(
            (p["partition"], len(p["replicas"]), len(p["isrs"]))
            for p in next(t for t in kcat_metadata(cluster.nodes[i].bootstrap, "-t", topic)
                          ["topics"] if t["topic"] == topic)["partitions"]),
            [(p, 3, 3) for p in range(4)], TIMEOUT, f"four replicated partitions on node {i}")

    # A config change through node 2 is seen by node 1's DescribeConfigs.
    conf = admin(cluster.nodes[2].bootstrap)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "7654321",
                    incremental_operation=AlterConfigOpType.SET)])
    conf.incremental_alter_configs([resource])[resource].result(timeout=TIMEOUT)
    describe = admin(cluster.nodes[1].bootstrap)

    def retention():
        res = ConfigResource(ConfigResource.Type.TOPIC, topic)
        return describe.describe_configs([res])[res].result(timeout=TIMEOUT)["retention.ms"].value

    wait_equal(retention, "7654321", TIMEOUT, "retention.ms through node 1")

    # Produce to a follower is refused with NOT_LEADER_OR_FOLLOWER (6); the leader takes it.
    leader = cluster.leaders(topic)[0]
    follower = next(i for i in cluster.ids if i != leader)
    batch = bytes(wire.record_batch([b"x"]))
    with wire.Connection(cluster.nodes[follower].bootstrap) as conn:
        assert wire.produce(conn, topic, 0, batch, acks=-1)[0] == 6
    with wire.Connection(cluster.nodes[leader].bootstrap) as conn:
        assert wire.produce(conn, topic, 0, batch, acks=-1) == (0, 0)

    # DeleteTopics through node 3: gone from every node.
    grow.delete_topics([topic], operation_timeout=TIMEOUT)[topic].result(timeout=TIMEOUT)
    for i in cluster.ids:
        wait_until(lambda i=i: topic not in {
            t["topic"] for t in kcat_metadata(cluster.nodes[i].bootstrap)["topics"]},
            TIMEOUT, interval=POLL, what=f"{topic} deleted on node {i}")


# -- 4. restart and catch up ---------------------------------------------------


@pytest.mark.timeout(300)
def test_restarted_node_catches_up_rejoins_the_isr_and_stores_identical_batches(cluster):
    partitions, per_round = 6, 200
    topic = unique_topic("catchup")
    create_topic(cluster, topic, partitions, 3, {"min.insync.replicas": "2"})
    controller = cluster.raft_leader()
    victim = min(i for i in cluster.ids if i != controller)
    before = Cluster.partitions(cluster.image(), topic)

    acked = produce_all_acked(cluster.bootstrap, topic, partitions, 0, per_round)
    cluster.kill9(victim)
    cluster.wait_failed_over(topic, victim)
    # Written while the node is down: it must fetch these when it is back.
    acked += produce_all_acked(cluster.bootstrap, topic, partitions, per_round, per_round)

    cluster.restart(victim)
    image = cluster.wait_healthy(topic, partitions, 3, timeout=TIMEOUT * 1.5)
    assert str(victim) in image["brokers"]
    assert image["brokers"][str(victim)]["kafka_addr"] == cluster.nodes[victim].bootstrap
    # And it keeps up with writes made after it rejoined.
    acked += produce_all_acked(cluster.bootstrap, topic, partitions, 2 * per_round, per_round)
    total = 3 * per_round

    def settled(p: int):
        """The leader's high watermark once writes have stopped and all three
        replicas hold up to it; None before."""
        entries = {i: cluster.replica(i, topic, p) for i in cluster.ids}
        if any(e is None for e in entries.values()):
            return None
        leads = [e for e in entries.values() if e["role"] == "leader"]
        if len(leads) != 1:
            return None
        hw = leads[0]["high_watermark"]
        if hw != leads[0]["log_end_offset"]:
            return None
        if any(e["log_end_offset"] != hw for e in entries.values()):
            return None
        return ("hw", hw)

    for p in range(partitions):
        _, upto = wait_until(lambda p=p: settled(p), TIMEOUT, interval=POLL,
                             what=f"partition {p}: all three replicas up to the high watermark")
        assert upto == total, f"partition {p}: high watermark {upto}, {total} records acked"
        digests = {i: cluster.digest(i, topic, p, upto) for i in cluster.ids}
        assert all(d is not None for d in digests.values()), f"partition {p}: {digests}"
        assert {d["sha256"] for d in digests.values()} == {digests[1]["sha256"]}, (
            f"partition {p}: replicas differ below offset {upto}: {digests}")
        assert {d["batches"] for d in digests.values()} == {digests[1]["batches"]}, digests
        assert digests[1]["batches"] > 0, f"partition {p}: no batches below {upto}: {digests}"
        assert all(d["upto"] == upto and d["topic"] == topic and d["partition"] == p
                   for d in digests.values()), digests
        entry = cluster.replica(victim, topic, p)
        assert entry["role"] in ("leader", "follower")
        assert sorted(entry["replicas"]) == [1, 2, 3]

    log = read_partitions(cluster, topic, partitions)
    assert_acked_kept(log, acked)
    for p in range(partitions):
        assert [seq for _, seq in log[p]] == list(range(total)), f"partition {p}"

    # Preferred leaders (first replicas) come back, the restarted node among them.
    image = cluster.wait_preferred_leaders(topic, timeout=TIMEOUT)
    assert [part["replicas"] for part in Cluster.partitions(image, topic)] == [
        part["replicas"] for part in before]
    assert any(part["leader"] == victim for part in Cluster.partitions(image, topic))


# -- 5. two of three down -----------------------------------------------------


@pytest.mark.timeout(400)
def test_acks_all_fails_with_two_of_three_nodes_down_and_recovers_with_one_back(cluster):
    partitions = 3
    topic = unique_topic("min-isr")
    create_topic(cluster, topic, partitions, 3, {"min.insync.replicas": "2"})
    acked = produce_all_acked(cluster.bootstrap, topic, partitions, 0, 20)

    controller = cluster.raft_leader()
    survivor = min(i for i in cluster.ids if i != controller)
    back_first = next(i for i in cluster.ids if i not in (controller, survivor))
    cluster.kill9(controller)
    cluster.kill9(back_first)

    quick = {"enable.idempotence": False, "message.timeout.ms": 10_000,
             "request.timeout.ms": 5_000}
    down_acked, down_failed, remaining = produce_numbered(
        cluster.bootstrap, topic, partitions, 1000, 5, flush_timeout=40, **quick)
    assert remaining == 0, f"{remaining} records got no delivery report within 40 s"
    assert down_acked == [], (
        f"acks=all acknowledged {len(down_acked)} records with only node {survivor} running "
        f"(min.insync.replicas=2): {down_acked}")
    assert len(down_failed) == partitions * 5
    print(f"\n[min-isr] errors with two nodes down: {Counter(e for _, _, e in down_failed)}")

    restarted_at = time.monotonic()
    cluster.restart(back_first)
    attempt = [2000]

    def produce_succeeds():
        attempt[0] += 1
        ok, failed, left = produce_numbered(cluster.bootstrap, topic, partitions,
                                            attempt[0] * 10, 1, flush_timeout=20, **quick)
        return left == 0 and not failed and len(ok) == partitions and ok

    recovered = wait_until(produce_succeeds, TIMEOUT * 2, interval=POLL,
                           what="an acks=all produce to every partition to succeed again")
    print(f"[min-isr] node {back_first} restarted; produce succeeded again "
          f"{time.monotonic() - restarted_at:.2f}s after its restart")

    # Records acknowledged before the double failure are still there, once.
    log = read_partitions(cluster, topic, partitions)
    assert_acked_kept(log, acked)
    # Retried by a non-idempotent producer: at their offset, maybe also elsewhere.
    assert_acked_kept(log, recovered, exactly_once=False)
    for p in range(partitions):
        seqs = [seq for _, seq in log[p]]
        assert seqs[:20] == list(range(20)), f"partition {p}: {seqs[:25]}"


# -- 6. consumer group through a coordinator kill -----------------------------


@pytest.mark.timeout(300)
def test_consumer_group_survives_the_kill_of_its_coordinator(cluster):
    partitions, count = 3, 3000
    topic = unique_topic("coord")
    group = unique_topic("g")
    create_topic(cluster, topic, partitions, 3)
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all",
                         "enable.idempotence": True, "linger.ms": 5})
    failures: list = []
    for i in range(count):
        producer.produce(topic, value=str(i).encode(), partition=i % partitions,
                         on_delivery=lambda err, msg: err and failures.append(err))
        producer.poll(0)
    assert producer.flush(TIMEOUT * 2) == 0
    assert failures == []
    per_partition = {p: len(range(p, count, partitions)) for p in range(partitions)}

    consumer = Consumer({
        "bootstrap.servers": cluster.bootstrap,
        "group.id": group,
        "client.id": "sluice-coordinator-kill",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 1_000,
        "socket.timeout.ms": 10_000,
        "fetch.wait.max.ms": 100,
        # Small fetches and a short local queue: the records are fetched
        # while the test runs, not all prefetched before the kill.
        "max.partition.fetch.bytes": 1024,
        "queued.min.messages": 20,
    })
    seen: Counter = Counter()
    commit_errors: list[str] = []
    consume_errors: list[str] = []

    def consume_round() -> None:
        """One poll; a synchronous commit after every non-empty batch."""
        batch = consumer.consume(num_messages=50, timeout=0.5)
        good = [m for m in batch if m.error() is None]
        consume_errors.extend(str(m.error()) for m in batch if m.error() is not None)
        for msg in good:
            seen[int(msg.value())] += 1
        if good:
            try:
                consumer.commit(asynchronous=False)
            except KafkaException as err:
                commit_errors.append(str(err.args[0]))

    try:
        consumer.subscribe([topic])

        def consumed_at_least(n: int):
            consume_round()
            return len(seen) >= n

        wait_until(lambda: consumed_at_least(count // 3), TIMEOUT, interval=0.01,
                   what=f"a third of the {count} records consumed")

        client = admin(cluster.bootstrap)

        def coordinator():
            try:
                [future] = client.describe_consumer_groups([group], request_timeout=10).values()
                return future.result(timeout=15).coordinator.id
            except KafkaException:
                return None

        victim = wait_until(coordinator, TIMEOUT, interval=POLL, what=f"coordinator of {group}")
        image = cluster.image()
        offsets = Cluster.partitions(image, "__consumer_offsets")
        if offsets is not None:
            assert victim in {part["leader"] for part in offsets}, (
                f"coordinator {victim} leads no __consumer_offsets partition: {offsets}")
        consumed_before_kill = len(seen)
        cluster.kill9(victim)
        killed_at = time.monotonic()

        wait_until(lambda: consumed_at_least(count), TIMEOUT * 2, interval=0.01,
                   what=f"all {count} records consumed after killing coordinator {victim} "
                        f"(seen {len(seen)})")
        print(f"\n[coordinator] killed node {victim} after {consumed_before_kill} records; all "
              f"{count} seen {time.monotonic() - killed_at:.2f}s later; "
              f"{sum(seen.values()) - len(seen)} re-read; commit errors: {Counter(commit_errors)}")

        tps = [TopicPartition(topic, p) for p in range(partitions)]

        def committed():
            try:
                result = consumer.committed(tps, timeout=10)
            except KafkaException:
                return None
            return {tp.partition: tp.offset for tp in result}

        def drained_and_committed():
            # Keep consuming (a late rebalance rewinds to the last commit)
            # and committing until the commits reach the end offsets.
            consume_round()
            try:
                consumer.commit(asynchronous=False)
            except KafkaException as err:
                if err.args[0].code() != KafkaError._NO_OFFSET:
                    commit_errors.append(str(err.args[0]))
            return committed()

        wait_equal(drained_and_committed, per_partition, TIMEOUT,
                   what="committed offsets at the end offsets")
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)}
        assert ends == per_partition
        assert set(seen) == set(range(count)), f"never consumed: {sorted(set(range(count)) - set(seen))[:20]}"
        new_coordinator = wait_until(coordinator, TIMEOUT, interval=POLL,
                                     what=f"the new coordinator of {group}")
        assert new_coordinator != victim
    finally:
        consumer.close()


# -- 7. whole cluster stop and start -------------------------------------------


@pytest.mark.timeout(300)
def test_whole_cluster_stop_and_start_keeps_topics_records_and_offsets(cluster):
    topics = {unique_topic("whole-a"): 6, unique_topic("whole-b"): 3}
    acked: dict[str, list[tuple[int, int, int]]] = {}
    for topic, partitions in topics.items():
        create_topic(cluster, topic, partitions, 3, {"min.insync.replicas": "2"})
        acked[topic] = produce_all_acked(cluster.bootstrap, topic, partitions, 0, 100)
    first, first_partitions = list(topics.items())[0]
    group = unique_topic("g")

    consumer = Consumer({
        "bootstrap.servers": cluster.bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
    })
    tps = [TopicPartition(first, p) for p in range(first_partitions)]
    try:
        consumer.subscribe([first])
        consumed: list = []

        def consumed_some():
            consumed.extend(m for m in consumer.consume(num_messages=50, timeout=0.5)
                            if m.error() is None)
            return len(consumed) >= 250

        wait_until(consumed_some, TIMEOUT, interval=0.01, what="250 records consumed")
        consumer.commit(asynchronous=False)
        committed_before = {tp.partition: tp.offset
                            for tp in consumer.committed(tps, timeout=TIMEOUT)}
    finally:
        consumer.close()
    assert sum(max(o, 0) for o in committed_before.values()) >= 250, committed_before

    image_before = cluster.image()
    codes = cluster.stop_all()
    assert codes == {1: 0, 2: 0, 3: 0}, f"graceful shutdown exit codes: {codes}"

    cluster.start_all()
    for topic, partitions in topics.items():
        image = cluster.wait_healthy(topic, partitions, 3, timeout=TIMEOUT * 1.5)
        assert image["topics"][topic]["topic_id"] == image_before["topics"][topic]["topic_id"]
        assert [p["replicas"] for p in image["topics"][topic]["partitions"]] == [
            p["replicas"] for p in image_before["topics"][topic]["partitions"]]
        assert image["topics"][topic]["configs"] == image_before["topics"][topic]["configs"]

    listed = admin(cluster.bootstrap).list_topics(timeout=TIMEOUT).topics
    for topic, partitions in topics.items():
        assert topic in listed and len(listed[topic].partitions) == partitions
        log = read_partitions(cluster, topic, partitions)
        assert_acked_kept(log, acked[topic])
        for p in range(partitions):
            assert [seq for _, seq in log[p]] == list(range(100)), f"{topic} partition {p}"

    reader = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group,
                       "enable.auto.commit": False})
    try:
        def committed_after():
            try:
                return {tp.partition: tp.offset for tp in reader.committed(tps, timeout=10)}
            except KafkaException:
                return None

        wait_equal(committed_after, committed_before, TIMEOUT,
                   what="committed offsets after the restart")
    finally:
        reader.close()


def test_a_survivor_of_two_crashes_keeps_answering_and_stops_on_sigterm(request, tmp_path):
    """Two of three nodes killed while a client produces to the survivor, with
    the shop's consumers running on it: the node must keep its runtime free
    (health answered at once throughout), refuse acks=all writes it cannot
    replicate, and stop on SIGTERM. A consumer whose positioning failed used
    to poll an empty fetcher in a loop that never yielded, freezing the node."""
    nodes = Cluster(tmp_path, request, shop=True)
    try:
        nodes.start()
        topic = unique_topic("survivor")
        create_topic(nodes, topic, 3, 3, {"min.insync.replicas": "2"})
        # The survivor is the node coordinating the shop's notifier group, so
        # that, once the dead members' sessions end, its notifier rejoins
        # successfully and then cannot position on partitions led by dead nodes.
        admin = AdminClient({"bootstrap.servers": nodes.bootstrap})

        def notifier_coordinator():
            futures = admin.describe_consumer_groups(["sluice-shop-notifier"])
            try:
                group = futures["sluice-shop-notifier"].result(timeout=5)
            except KafkaException:
                return None
            return group.coordinator.id if len(group.members) == 3 else None

        survivor = wait_until(notifier_coordinator, 60, interval=0.5,
                              what="the notifier group with a member on every node")
        for i in nodes.ids:
            if i != survivor:
                nodes.kill9(i)
        node = nodes.nodes[survivor]
        stop = threading.Event()
        errors: Counter = Counter()

        def produce_to_survivor():
            p = Producer({"bootstrap.servers": node.bootstrap, "acks": "all",
                          "enable.idempotence": False, "message.timeout.ms": 3_000,
                          "request.timeout.ms": 2_000})
            n = 0
            while not stop.is_set():
                p.produce(topic, f"v{n}".encode(), partition=n % 3,
                          on_delivery=lambda err, msg: errors.update(
                              [err.name() if err else "acked"]))
                n += 1
                p.poll(0.01)
            p.flush(10)

        producer = threading.Thread(target=produce_to_survivor, daemon=True)
        producer.start()
        slowest = 0.0
        # Past the dead members' session timeout (10 s) and the rejoin.
        deadline = time.monotonic() + 20.0
        try:
            while time.monotonic() < deadline:
                started = time.monotonic()
                with urllib.request.urlopen(f"http://{node.http}/healthz", timeout=5) as r:
                    assert r.status == 200
                slowest = max(slowest, time.monotonic() - started)
                time.sleep(0.1)
        finally:
            stop.set()
            producer.join(timeout=30)
        print(f"\n[survivor] node {survivor}: slowest /healthz {slowest * 1000:.0f} ms over 20 s; "
              f"deliveries {dict(errors)}")
        assert slowest < 1.0, f"/healthz took {slowest:.2f}s on the survivor"
        assert errors.get("acked", 0) == 0, "acks=all acknowledged with one of three nodes"

        # Out of contact with the controller for two sessions, the survivor
        # counts itself fenced: acks=all writes are refused at once (no
        # client waits out its request timeout), with NOT_LEADER_OR_FOLLOWER
        # (6), which sends clients to fresh metadata; it cannot tell dead
        # peers from being cut off itself, and clients retry
        # NOT_ENOUGH_REPLICAS (19) on the same broker.
        def answers():
            with wire.Connection(node.bootstrap, timeout=10) as conn:
                return {p: wire.produce(conn, topic, p, bytes(wire.record_batch([b"x"])),
                                        acks=-1, timeout_ms=5_000)[0]
                        for p in range(3)}

        seen: dict[int, int] = {}

        def refused():
            seen.update(answers())
            return set(seen.values()) <= {6, 19}

        wait_until(refused, 30, interval=0.5, what="acks=all refused at once by the survivor")
        print(f"[survivor] acks=all Produce to each partition answered {seen}")
        started = time.monotonic()
        code = node.stop(timeout=10)
        took = time.monotonic() - started
        print(f"[survivor] SIGTERM to exit: {took:.2f}s")
        assert code == 0, f"the survivor did not stop within 10 s of SIGTERM (code {code})"
    finally:
        gc.collect()
        nodes.kill_all()

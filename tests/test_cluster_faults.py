"""Partial faults in a three-node cluster, with real processes and real
clients: a leader cut off from its peers while clients still reach it, a
slow follower, a frozen follower. Each node runs in a network namespace of
its own (see `test_cluster_partition.Netns`); faults are routes and traffic
shaping inside those namespaces, so only the nodes started here are touched.

What is checked, each time with an idempotent acks=all producer and
min.insync.replicas=2 running through the fault:

- every record a client was acknowledged is present once, at its offset,
  after the fault heals, and the three replicas are byte-identical;
- writes go on on every partition the fault does not make unavailable;
- a leader cut off from its peers never acknowledges an acks=all write it
  could not replicate, even though clients still reach it.

Needs root (network namespaces, tc); skipped otherwise.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.admin import NewTopic as KafkaPythonNewTopic

import clients
import shop_client

import wire
from cluster import POLL, Cluster
from harness import unique_topic, wait_until
from test_cluster_partition import Netns, ip, netns  # noqa: F401  (the fixture)
from test_cluster_replication import (
    FLUSH_TIMEOUT,
    TIMEOUT,
    NumberedProducer,
    assert_acked_kept,
    assert_in_order_without_duplicates,
    assert_replicas_identical,
    create_topic,
    read_partitions,
)

PARTITIONS = 6
# Kafka's error codes seen by a producer that must not be acknowledged.
NONE, NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS = 0, 6, 7, 19


def cut_from_peers(net: Netns, victim: int) -> None:
    """Drop every packet between `victim` and the other nodes, both ways;
    the test (in the root namespace) still reaches every node."""
    for i, ns in net.namespaces.items():
        targets = [j for j in net.namespaces if j != i] if i == victim else [victim]
        for j in targets:
            ip("netns", "exec", ns, "ip", "route", "add", "blackhole", f"{net.subnet}.{j}/32")


def reconnect_peers(net: Netns, victim: int) -> None:
    for i, ns in net.namespaces.items():
        targets = [j for j in net.namespaces if j != i] if i == victim else [victim]
        for j in targets:
            ip("netns", "exec", ns, "ip", "route", "del", "blackhole", f"{net.subnet}.{j}/32")


def shape(net: Netns, i: int, rate: str) -> None:
    """Throttle node `i`'s link, both directions (a token bucket)."""
    args = ["root", "tbf", "rate", rate, "burst", "16kb", "latency", "200ms"]
    subprocess.run(["tc", "qdisc", "add", "dev", net.links[i], *args], check=True,
                   capture_output=True, timeout=15)
    subprocess.run(["ip", "netns", "exec", net.namespaces[i], "tc", "qdisc", "add", "dev",
                    f"{net.tag}p{i}", *args], check=True, capture_output=True, timeout=15)


def unshape(net: Netns, i: int) -> None:
    subprocess.run(["tc", "qdisc", "del", "dev", net.links[i], "root"],
                   capture_output=True, timeout=15)
    subprocess.run(["ip", "netns", "exec", net.namespaces[i], "tc", "qdisc", "del", "dev",
                    f"{net.tag}p{i}", "root"], capture_output=True, timeout=15)


def finish(cluster: Cluster, producer: NumberedProducer, topic: str) -> None:
    """Stop the producer and check what it was acknowledged against the log."""
    producer.stop(FLUSH_TIMEOUT)
    assert not producer.is_alive(), "the producer thread did not finish its flush"
    assert producer.exception is None, repr(producer.exception)
    assert producer.fatal_errors() == [], "fatal producer errors"
    assert producer.unflushed == 0, f"{producer.unflushed} records undelivered"
    log = read_partitions(cluster, topic, PARTITIONS)
    acked = producer.all_acked()
    assert_acked_kept(log, acked)
    assert_in_order_without_duplicates(log)
    assert_replicas_identical(cluster, topic, PARTITIONS)
    print(f"[faults] {len(acked)} acknowledged records all kept once; replicas identical")


def wait_acks_after(producer: NumberedProducer, since: float, partitions, what: str) -> None:
    try:
        wait_until(lambda: all(producer.acked_produced_after(p, since) >= 20 for p in partitions),
                   TIMEOUT * 1.5, interval=POLL, what=what)
    except TimeoutError as err:
        acks = {p: producer.acked_produced_after(p, since) for p in partitions}
        with producer.lock:
            failed = Counter(e for _, _, e in producer.failed)
            errors = [str(e) for e in producer.client_errors[-5:]]
        raise AssertionError(f"{err}\nacks per partition since: {acks}\nfailed: {failed}\n"
                             f"client errors: {errors}") from None


def follower_only(cluster: Cluster, label: str) -> tuple[str, int, list[int], NumberedProducer]:
    """A topic whose partitions a node other than the controller only
    follows (explicit replica lists), and a started producer acknowledged
    on every partition: (topic, that node, the two others, producer)."""
    topic = unique_topic(label)
    controller = cluster.raft_leader()
    node = min(i for i in cluster.ids if i != controller)
    others = [i for i in cluster.ids if i != node]
    assignment = {p: [others[p % 2], others[(p + 1) % 2], node] for p in range(PARTITIONS)}
    admin = clients.admin(cluster.bootstrap)
    try:
        admin.create_topics([KafkaPythonNewTopic(topic, -1, -1, replica_assignments=assignment,
                                                 topic_configs={"min.insync.replicas": "2"})])
    finally:
        admin.close()
    cluster.wait_healthy(topic, PARTITIONS, 3)
    producer = NumberedProducer(cluster.bootstrap, topic, PARTITIONS)
    producer.start()
    wait_acks_after(producer, 0.0, range(PARTITIONS), "acks on every partition")
    return topic, node, others, producer


@pytest.mark.timeout(300)
def test_a_leader_cut_off_from_its_peers_stops_acknowledging_and_loses_nothing(
        request, tmp_path, netns):
    cluster = Cluster(tmp_path, request, hosts=netns.hosts, prefixes=netns.prefixes)
    producer = None
    cut = False
    try:
        cluster.start()
        topic = unique_topic("cutoff")
        create_topic(cluster, topic, PARTITIONS, 3, {"min.insync.replicas": "2"})
        controller = cluster.raft_leader()
        leaders = cluster.leaders(topic)
        # A partition leader that is not the controller: the quorum keeps its
        # controller, and the cut-off node goes on believing it leads.
        victim = min(i for i in set(leaders.values()) if i != controller)
        led = sorted(p for p, leader in leaders.items() if leader == victim)
        others = [i for i in cluster.ids if i != victim]

        producer = NumberedProducer(cluster.bootstrap, topic, PARTITIONS)
        producer.start()
        wait_acks_after(producer, 0.0, range(PARTITIONS), "acks on every partition")

        cut_from_peers(netns, victim)
        cut = True
        cut_at = time.monotonic()

        # The majority fences the node and moves its partitions.
        cluster.wait_image(
            lambda image: image["brokers"][str(victim)]["fenced"] and all(
                part["leader"] != victim and victim not in part["isr"]
                for part in Cluster.partitions(image, topic)),
            f"{topic}: partitions moved off node {victim}, cut off from its peers", ids=others)
        moved_at = time.monotonic()

        # A client that still reaches the cut-off node is never acknowledged
        # by it: a write it cannot replicate is refused or times out.
        outcomes = {}
        with wire.Connection(cluster.nodes[victim].bootstrap, timeout=30) as conn:
            for p in led:
                batch = bytes(wire.record_batch([f"{p}:probe".encode()]))
                try:
                    outcomes[p] = wire.produce(conn, topic, p, batch, acks=-1,
                                               timeout_ms=3_000)[0]
                except (ConnectionError, OSError) as err:
                    outcomes[p] = f"closed: {err}"
        print(f"\n[cutoff] node {victim} (led {led}) cut off from its peers; acks=all "
              f"Produce sent to it answered {outcomes}")
        assert all(code != NONE for code in outcomes.values()), (
            f"the cut-off node acknowledged an acks=all write: {outcomes}")

        # Clients find the new leaders although the old one still answers them.
        wait_acks_after(producer, moved_at, range(PARTITIONS),
                        f"acks on every partition after node {victim} was cut off")
        print(f"[cutoff] first acks after the cut on its partitions: "
              + ", ".join(f"p{p}={producer.first_ack_after(p, moved_at) - cut_at:.2f}s"
                          for p in led))

        reconnect_peers(netns, victim)
        cut = False
        cluster.wait_registered()
        cluster.wait_image(lambda image: not image["brokers"][str(victim)]["fenced"],
                           f"node {victim} unfenced after the heal")
        cluster.wait_healthy(topic, PARTITIONS, 3, timeout=TIMEOUT * 1.5)
        finish(cluster, producer, topic)
    finally:
        if cut:
            reconnect_peers(netns, victim)
        if producer is not None and producer.is_alive():
            producer.stop(10.0)
        gc.collect()
        cluster.kill_all()


@pytest.mark.timeout(300)
def test_a_slow_follower_does_not_stop_writes_and_catches_up(request, tmp_path, netns):
    cluster = Cluster(tmp_path, request, hosts=netns.hosts, prefixes=netns.prefixes,
                      extra_args=["--replica-lag-time-max-ms", "3000"])
    producer = None
    shaped = None
    try:
        cluster.start()
        # The slow node follows every partition and leads none.
        topic, slow, fast, producer = follower_only(cluster, "slow")
        shape(netns, slow, "32kbit")
        shaped = slow
        slowed_at = time.monotonic()
        # Whether it keeps up (slowing acks=all writes to its pace) or falls
        # behind and leaves the ISRs, writes go on on every partition.
        wait_acks_after(producer, slowed_at, range(PARTITIONS),
                        f"acks on every partition while node {slow} is slow")
        after_slow = time.monotonic()
        wait_acks_after(producer, after_slow, range(PARTITIONS),
                        f"acks on every partition, a second round, while node {slow} is slow")
        image = cluster.wait_image(lambda image: True, "the image", ids=fast)
        out_of = [p for p, part in enumerate(Cluster.partitions(image, topic))
                  if slow not in part["isr"]]
        rate = sum(producer.acked_produced_after(p, after_slow) for p in range(PARTITIONS))
        print(f"\n[slow] node {slow} throttled to 32 kbit/s: acks went on on every partition "
              f"({rate / (time.monotonic() - after_slow):.0f} records/s in the second round); "
              f"out of the ISR of partitions {out_of}")

        unshape(netns, slow)
        shaped = None
        healed_at = time.monotonic()
        cluster.wait_healthy(topic, PARTITIONS, 3, timeout=TIMEOUT * 1.5)
        print(f"[slow] back in every ISR {time.monotonic() - healed_at:.1f}s after the link "
              f"was restored")
        finish(cluster, producer, topic)
    finally:
        if shaped is not None:
            unshape(netns, shaped)
        if producer is not None and producer.is_alive():
            producer.stop(10.0)
        gc.collect()
        cluster.kill_all()


@pytest.mark.timeout(300)
def test_a_follower_frozen_past_its_session_is_fenced_and_rejoins(request, tmp_path):
    cluster = Cluster(tmp_path, request)
    producer = None
    frozen = None
    try:
        cluster.start()
        topic, victim, live, producer = follower_only(cluster, "frozenfollower")
        pid = cluster.nodes[victim].pid
        os.kill(pid, signal.SIGSTOP)
        frozen = pid
        frozen_at = time.monotonic()
        cluster.wait_image(
            lambda image: image["brokers"][str(victim)]["fenced"] and all(
                victim not in part["isr"] for part in Cluster.partitions(image, topic)),
            f"node {victim} fenced and out of every ISR while frozen", ids=live)
        fenced_at = time.monotonic()
        wait_acks_after(producer, fenced_at, range(PARTITIONS),
                        f"acks on every partition while node {victim} is frozen")

        os.kill(pid, signal.SIGCONT)
        frozen = None
        resumed_at = time.monotonic()
        cluster.wait_image(lambda image: not image["brokers"][str(victim)]["fenced"],
                           f"node {victim} unfenced after SIGCONT")
        cluster.wait_healthy(topic, PARTITIONS, 3, timeout=TIMEOUT * 1.5)
        print(f"\n[frozen follower] node {victim}: fenced {fenced_at - frozen_at:.1f}s after "
              f"SIGSTOP; back in every ISR {time.monotonic() - resumed_at:.1f}s after SIGCONT")
        finish(cluster, producer, topic)
    finally:
        if frozen is not None:
            os.kill(frozen, signal.SIGCONT)
        if producer is not None and producer.is_alive():
            producer.stop(10.0)
        gc.collect()
        cluster.kill_all()


# Probes `/healthz` of each address every 50 ms for argv[1] seconds; prints
# {address: [seconds per probe]} as JSON. A probe that fails raises.
PROBE = """
import json, sys, time, urllib.request
seconds, addrs = float(sys.argv[1]), sys.argv[2:]
out = {a: [] for a in addrs}
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    for a in addrs:
        started = time.monotonic()
        with urllib.request.urlopen(f"http://{a}/healthz", timeout=5) as reply:
            assert reply.status == 200
        out[a].append(time.monotonic() - started)
    time.sleep(0.05)
print(json.dumps(out))
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@pytest.mark.timeout(300)
def test_health_answers_at_once_with_every_component_busy(request, tmp_path):
    """Watchdog: a three-node cluster running the shop on every node, with
    each component kept busy at once: the Kafka listener (a paced acks=all
    producer and a consumer), the replica fetchers (RF 3), the
    controller (topics created and deleted in a loop), the shop's consumers
    and producer (the order simulator at 500 events/s). No task may hold a
    worker thread: `/healthz` on every node answers 99 % of probes within
    100 ms and every one within a second."""
    cluster = Cluster(tmp_path, request, shop=True)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    counts: Counter = Counter()
    try:
        cluster.start()
        for i in cluster.ids:
            shop_client.wait_shop_ready(cluster.nodes[i], timeout=TIMEOUT)
        topic = unique_topic("busy")
        create_topic(cluster, topic, PARTITIONS, 3, {"min.insync.replicas": "2"})

        def flood():
            # Paced (about 20,000 records/s), so that the machine's two cores
            # are busy but not oversubscribed: a slow probe then means a task
            # held a worker thread, not that the scheduler had no core.
            producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all",
                                 "linger.ms": 5, "enable.idempotence": True})
            value = b"x" * 200
            while not stop.is_set():
                for _ in range(200):
                    producer.produce(topic, value, on_delivery=lambda err, msg: counts.update(
                        ["produced" if err is None else "failed"]))
                producer.poll(0.01)
            producer.flush(30)

        def consume():
            consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "busy",
                                 "auto.offset.reset": "earliest"})
            consumer.subscribe([topic])
            while not stop.is_set():
                batch = consumer.consume(1000, 0.2)
                counts.update({"consumed": len(batch)})
            consumer.close()

        def churn_topics():
            admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
            n = 0
            while not stop.is_set():
                name = f"{topic}-churn-{n}"
                n += 1
                try:
                    admin.create_topics([NewTopic(name, 3, 3)])[name].result(timeout=TIMEOUT)
                    admin.delete_topics([name])[name].result(timeout=TIMEOUT)
                    counts.update(["topics created and deleted"])
                except KafkaException:
                    counts.update(["topic churn errors"])
                stop.wait(0.1)

        for target in (flood, consume, churn_topics):
            thread = threading.Thread(target=target, daemon=True, name=target.__name__)
            thread.start()
            threads.append(thread)
        status, _ = shop_client.call(cluster.nodes[1], "POST", "/api/simulator",
                                     {"enabled": True, "rate_per_sec": 500})
        assert status == 200

        # The probes run in a process of their own, so that the load's
        # client threads in this one cannot delay them.
        probe = subprocess.run(
            [sys.executable, "-c", PROBE, "20", *(cluster.nodes[i].http for i in cluster.ids)],
            capture_output=True, timeout=120, check=True)
        latencies = {i: values for i, values in
                     zip(cluster.ids, json.loads(probe.stdout).values())}
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        _, simulator = shop_client.call(cluster.nodes[1], "GET", "/api/simulator")
        print(f"\n[watchdog] load over 20 s: {dict(counts)}; simulator {simulator}")
        for i, values in latencies.items():
            print(f"[watchdog] node {i}: /healthz over {len(values)} probes: "
                  f"p50 {percentile(values, 0.5) * 1000:.1f} ms, "
                  f"p99 {percentile(values, 0.99) * 1000:.1f} ms, "
                  f"max {max(values) * 1000:.1f} ms")
        assert counts["produced"] > 0 and counts["consumed"] > 0
        assert counts["topics created and deleted"] > 0
        # The shop's notification dispatchers share one share group across
        # the nodes: the simulated failures' notifications are dispatched.
        def dispatched():
            return [line for i in cluster.ids for line in cluster.nodes[i].log_lines()
                    if "notification dispatched" in line]

        wait_until(dispatched, TIMEOUT, what="notifications dispatched on the cluster")
        for i, values in latencies.items():
            # 99 % within 100 ms; a single slower answer (the two cores are
            # shared with the load and three nodes) must still not be a stall.
            assert percentile(values, 0.99) < 0.1, (
                f"node {i}: 1 % of /healthz probes took over "
                f"{percentile(values, 0.99) * 1000:.0f} ms under load")
            assert max(values) < 1.0, (
                f"node {i}: /healthz took {max(values) * 1000:.0f} ms under load")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        gc.collect()
        cluster.kill_all()

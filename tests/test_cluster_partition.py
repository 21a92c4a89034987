"""A network partition, made with network namespaces: each of three nodes
runs in a namespace of its own, joined to the test (in the root namespace)
by a veth pair on a bridge; cutting a node's link isolates it from the other
nodes and from every client, while the process keeps running.

The test isolates the controller (Raft leader, also a partition leader)
under an idempotent acks=all producer: the majority elects a new controller,
fences the isolated broker and moves its partitions, and writes go on;
after the link comes back, the old controller learns the new term, follows,
catches up and rejoins every ISR, with replicas byte-identical and every
acknowledged record present exactly once.

Needs root (network namespaces); skipped otherwise. Every namespace, veth
and bridge is named after this process and removed in teardown; nodes are
ended by their PID before that. Only the namespaces created here are
reached.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field

import pytest

from cluster import POLL, Cluster
from harness import unique_topic, wait_until
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


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=15,
                   stdin=subprocess.DEVNULL)


@dataclass
class Netns:
    """Three namespaces on one bridge; node i listens on `hosts[i]`."""

    tag: str
    subnet: str
    namespaces: dict[int, str] = field(default_factory=dict)
    links: dict[int, str] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        return f"{self.tag}b"

    @property
    def hosts(self) -> dict[int, str]:
        return {i: f"{self.subnet}.{i}" for i in self.namespaces}

    @property
    def prefixes(self) -> dict[int, list[str]]:
        return {i: ["ip", "netns", "exec", ns] for i, ns in self.namespaces.items()}

    def create(self, size: int) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.subnet}.254/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for i in range(1, size + 1):
            ns, host_end, ns_end = f"{self.tag}n{i}", f"{self.tag}v{i}", f"{self.tag}p{i}"
            ip("netns", "add", ns)
            self.namespaces[i] = ns
            ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
            self.links[i] = host_end
            ip("link", "set", ns_end, "netns", ns)
            ip("link", "set", host_end, "master", self.bridge)
            ip("link", "set", host_end, "up")
            ip("netns", "exec", ns, "ip", "addr", "add", f"{self.subnet}.{i}/24", "dev", ns_end)
            ip("netns", "exec", ns, "ip", "link", "set", ns_end, "up")
            ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")

    def isolate(self, i: int) -> None:
        ip("link", "set", self.links[i], "down")

    def heal(self, i: int) -> None:
        ip("link", "set", self.links[i], "up")

    def remove(self) -> None:
        for ns in self.namespaces.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=15)
        for link in self.links.values():
            subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=15)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=15)


@pytest.fixture
def netns():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    tag = f"sl{os.getpid() % 100000}"
    subnet = f"10.231.{os.getpid() % 200 + 20}"
    net = Netns(tag, subnet)
    try:
        net.create(3)
    except (subprocess.CalledProcessError, OSError) as err:
        net.remove()
        stderr = getattr(err, "stderr", b"") or b""
        pytest.skip(f"cannot create network namespaces here: {err} {stderr.decode()}")
    try:
        yield net
    finally:
        net.remove()


@pytest.mark.timeout(300)
def test_an_isolated_controller_is_replaced_and_rejoins_when_the_partition_heals(
        request, tmp_path, netns):
    cluster = Cluster(tmp_path, request, hosts=netns.hosts, prefixes=netns.prefixes)
    producer = None
    try:
        cluster.start()
        partitions = 6
        topic = unique_topic("partition")
        create_topic(cluster, topic, partitions, 3, {"min.insync.replicas": "2"})
        controller = cluster.raft_leader()
        others = [i for i in cluster.ids if i != controller]
        led = [p for p, leader in cluster.leaders(topic).items() if leader == controller]

        producer = NumberedProducer(cluster.bootstrap, topic, partitions)
        producer.start()
        wait_until(lambda: all(producer.acked_count(p) >= 50 for p in range(partitions)),
                   TIMEOUT, interval=POLL, what="50 acknowledged records per partition")

        netns.isolate(controller)
        cut_at = time.monotonic()

        def new_controller():
            views = [cluster.raft(i) for i in others]
            if any(v is None for v in views):
                return None
            leaders = {v["status"]["leader"] for v in views}
            return leaders.pop() if len(leaders) == 1 and leaders <= set(others) else None

        successor = wait_until(new_controller, TIMEOUT, interval=POLL,
                               what="a new controller elected by the majority")
        cluster.wait_image(
            lambda image: image["brokers"][str(controller)]["fenced"] and all(
                part["leader"] in others and controller not in part["isr"]
                for part in Cluster.partitions(image, topic)),
            f"{topic}: partitions moved off the isolated node {controller}", ids=others)
        wait_until(lambda: all(producer.acked_produced_after(p, cut_at) >= 20
                               for p in range(partitions)),
                   TIMEOUT * 1.5, interval=POLL,
                   what=f"acks on every partition (node {controller} led {led}) while it is cut off")
        print(f"\n[partition] isolated controller {controller}; new controller {successor}; "
              f"first acks after the cut on its partitions: "
              + ", ".join(f"p{p}={producer.first_ack_after(p, cut_at) - cut_at:.2f}s"
                          for p in led))

        netns.heal(controller)

        def follows():
            view = cluster.raft(controller)
            status = view and view["status"]
            return status and status["role"] == "Follower" and status["leader"] in others

        wait_until(follows, TIMEOUT, interval=POLL,
                   what=f"node {controller} following the new controller after the heal")
        cluster.wait_healthy(topic, partitions, 3, timeout=TIMEOUT * 1.5)
        producer.stop(FLUSH_TIMEOUT)
        assert producer.exception is None, repr(producer.exception)
        assert producer.fatal_errors() == [], "fatal producer errors"
        assert producer.unflushed == 0, f"{producer.unflushed} records undelivered"

        log = read_partitions(cluster, topic, partitions)
        assert_acked_kept(log, producer.all_acked())
        assert_in_order_without_duplicates(log)
        assert_replicas_identical(cluster, topic, partitions)
    finally:
        if producer is not None and producer.is_alive():
            producer.stop(10.0)
        cluster.kill_all()

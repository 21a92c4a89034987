"""A three-node Sluice cluster for the replication tests.

`Cluster` owns N `harness.Broker` processes started with `--node-id`,
`--cluster-addr` and `--peers` on 127.0.0.1, and with the cluster secret
(`--cluster-secret-file`, a random secret written in the base dir; see
cluster_auth.py) unless a test asks for none. Cluster and Kafka ports are
chosen up front, below the kernel's ephemeral range, and kept across
restarts, so a client configured with `Cluster.bootstrap` (every node)
reaches a node again after it is restarted. It reads each node's
`/api/raft` (Raft role, leader and metadata image), `/api/replicas` (local
partition replicas) and `/api/replicas/digest` (a sha256 over the stored
batches), and offers waits on the image: every wait polls against a
deadline.

Processes are only ended by their PID (`Broker.kill9`/`Broker.stop`); the
caller ends them all with `kill_all()` in a `finally` (or uses the cluster
as a context manager). The nodes are registered in
`request.node._sluice_brokers`, so a failing test shows their logs.
"""

from __future__ import annotations

import json
import random
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from cluster_auth import write_secret
from harness import Broker, wait_until

# Seconds a cluster may take to elect a leader, register brokers or move
# partitions; generous because the machine is small and shared.
CONVERGE_TIMEOUT = 60.0
# Seconds between two polls of a wait.
POLL = 0.1
# Milliseconds without a heartbeat after which the controller fences a broker.
SESSION_TIMEOUT_MS = 2000
# Partitions of `__consumer_offsets`.
OFFSETS_TOPIC_PARTITIONS = 3


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (bind to port 0 and
    outgoing connections take their ports from it)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports that are free now, chosen below the ephemeral
    range, so that no port the kernel hands out (to a listener on port 0 or
    to an outgoing client connection) takes one of them between this check
    and the node binding it, or while the node is down between restarts."""
    high = _ephemeral_low()
    low = max(1024, high - 12_000)
    rng = random.Random()
    for _ in range(100):
        ports = rng.sample(range(low, high), count)
        sockets = [socket.socket() for _ in ports]
        try:
            for s, port in zip(sockets, ports):
                s.bind(("127.0.0.1", port))
            return ports
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"no {count} free ports in {low}..{high}")


def get_json(http_addr: str | None, path: str, timeout: float = 3.0):
    """GET a JSON document; None when the node does not answer with 200 and JSON."""
    if http_addr is None:
        return None
    try:
        with urllib.request.urlopen(f"http://{http_addr}{path}", timeout=timeout) as resp:
            if resp.status != 200:
                return None
            return json.loads(resp.read())
    except (OSError, ValueError, urllib.error.HTTPError):
        return None


class Cluster:
    """N `sluice serve --peers ...` processes forming one cluster."""

    def __init__(self, base_dir: Path | str, request=None, size: int = 3,
                 extra_args: list[str] | None = None,
                 shop: bool = False,
                 hosts: dict[int, str] | None = None,
                 prefixes: dict[int, list[str]] | None = None,
                 secret: bool = True,
                 node_args: dict[int, list[str]] | None = None):
        """`hosts`: the address each node listens on (default 127.0.0.1);
        `prefixes`: a command each node runs through (a network namespace);
        `secret`: pass a shared cluster secret (`self.secret`) to every node;
        `node_args`: flags for one node only (its TLS certificate)."""
        base_dir = Path(base_dir)
        self.secret_file, self.secret = write_secret(base_dir) if secret else (None, None)
        secret_args = ["--cluster-secret-file", str(self.secret_file)] if secret else []
        self.ids = list(range(1, size + 1))
        ports = free_ports(2 * size)
        host = {i: (hosts or {}).get(i, "127.0.0.1") for i in self.ids}
        self.cluster_addrs = {i: f"{host[i]}:{ports[i - 1]}" for i in self.ids}
        peers = ",".join(f"{i}={self.cluster_addrs[i]}" for i in self.ids)
        self.nodes: dict[int, Broker] = {
            i: Broker(
                base_dir / f"node-{i}",
                [
                    "--node-id", str(i),
                    "--cluster-addr", self.cluster_addrs[i],
                    "--peers", peers,
                    "--shop", "true" if shop else "false",
                    "--offsets-topic-partitions", str(OFFSETS_TOPIC_PARTITIONS),
                    "--broker-session-timeout-ms", str(SESSION_TIMEOUT_MS),
                    *secret_args,
                    *(node_args or {}).get(i, []),
                    *(extra_args or []),
                ],
            )
            for i in self.ids
        }
        # Fixed Kafka ports (kept across restarts), like the cluster ports.
        for i in self.ids:
            self.nodes[i].kafka_addr = f"{host[i]}:{ports[size + i - 1]}"
            self.nodes[i].http_addr = f"{host[i]}:0"
            self.nodes[i].command_prefix = list((prefixes or {}).get(i, []))
        if request is not None:
            request.node._sluice_brokers = list(self.nodes.values())

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.kill_all()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> "Cluster":
        """Start every node, wait for each to be ready (which needs a quorum,
        so all are started first), then for one agreed Raft leader and every
        broker registered in every node's image."""
        for i in self.ids:
            self.start_node(i, wait_ready=False)
        for i in self.ids:
            self.nodes[i].wait_ready(CONVERGE_TIMEOUT)
        self.wait_registered()
        return self

    def start_node(self, i: int, wait_ready: bool = True) -> Broker:
        """Start node `i` (again): same data dir, cluster port and Kafka port;
        with `wait_ready`, until its /readyz is 200 (a quorum must be running)."""
        node = self.nodes[i]
        node.start(timeout=CONVERGE_TIMEOUT, wait_ready=wait_ready)
        return node

    def kill9(self, i: int) -> None:
        """SIGKILL node `i` (a crash) and reap it."""
        self.nodes[i].kill9()

    def stop(self, i: int) -> int | None:
        """SIGTERM node `i`; its exit code, or None if it had to be killed."""
        return self.nodes[i].stop()

    def restart(self, i: int) -> Broker:
        """Start node `i` again after a kill or stop (stopping it first if it runs)."""
        if self.nodes[i].alive():
            self.nodes[i].stop()
        return self.start_node(i)

    def stop_all(self) -> dict[int, int | None]:
        """SIGTERM every node in turn; the exit code of each."""
        return {i: self.nodes[i].stop() for i in self.ids}

    def start_all(self) -> "Cluster":
        return self.start()

    def kill_all(self) -> None:
        """SIGKILL every node still running (for `finally`)."""
        for node in self.nodes.values():
            node.kill9()

    # -- addresses ---------------------------------------------------------

    def alive_ids(self) -> list[int]:
        return [i for i in self.ids if self.nodes[i].alive()]

    @property
    def bootstrap(self) -> str:
        """Every node's Kafka address (also those down: their ports are kept)."""
        return ",".join(self.nodes[i].bootstrap for i in self.ids
                        if self.nodes[i].bootstrap is not None)

    @property
    def live_bootstrap(self) -> str:
        """The Kafka addresses of the running nodes."""
        return ",".join(self.nodes[i].bootstrap for i in self.alive_ids())

    # -- HTTP views --------------------------------------------------------

    def raft(self, i: int) -> dict | None:
        """Node `i`'s /api/raft, or None when it is down or does not answer."""
        if not self.nodes[i].alive():
            return None
        view = get_json(self.nodes[i].http, "/api/raft")
        return view if view and view.get("enabled") else None

    def replicas(self, i: int) -> list[dict] | None:
        """Node `i`'s /api/replicas: one object per local partition replica."""
        if not self.nodes[i].alive():
            return None
        return get_json(self.nodes[i].http, "/api/replicas")

    def replica(self, i: int, topic: str, partition: int) -> dict | None:
        """Node `i`'s replica of one partition, or None."""
        for entry in self.replicas(i) or []:
            if entry.get("topic") == topic and entry.get("partition") == partition:
                return entry
        return None

    def digest(self, i: int, topic: str, partition: int, upto: int) -> dict | None:
        """Node `i`'s /api/replicas/digest of the batches below offset `upto`."""
        query = urllib.parse.urlencode({"topic": topic, "partition": partition, "upto": upto})
        return get_json(self.nodes[i].http, f"/api/replicas/digest?{query}", timeout=10.0)

    # -- Raft --------------------------------------------------------------

    def current_leader(self) -> int | None:
        """The Raft leader every running node names (and which calls itself
        Leader), or None while they disagree or it is not running."""
        ids = self.alive_ids()
        views = [self.raft(i) for i in ids]
        if not views or any(v is None for v in views):
            return None
        leaders = {v["status"].get("leader") for v in views}
        if len(leaders) != 1:
            return None
        leader = leaders.pop()
        if leader not in ids:
            return None
        roles = {v["status"].get("node_id"): v["status"].get("role") for v in views}
        return leader if roles.get(leader) == "Leader" else None

    def raft_leader(self, timeout: float = CONVERGE_TIMEOUT) -> int:
        """Wait for a Raft leader agreed by every running node; its id."""
        return wait_until(self.current_leader, timeout, interval=POLL,
                          what=f"one Raft leader agreed by nodes {self.alive_ids()}")

    def image(self) -> dict:
        """The metadata image of the Raft leader (waiting for one)."""
        def leader_image():
            leader = self.current_leader()
            view = self.raft(leader) if leader else None
            return view["image"] if view else None
        return wait_until(leader_image, CONVERGE_TIMEOUT, interval=POLL,
                          what="the Raft leader's image")

    def wait_image(self, check, what: str, timeout: float = CONVERGE_TIMEOUT,
                   ids: list[int] | None = None) -> dict:
        """Wait until `check(image)` holds on every running node (or on
        `ids`); returns the image of the first of them."""
        def everywhere():
            images = []
            for i in ids or self.alive_ids():
                view = self.raft(i)
                if view is None or not check(view["image"]):
                    return None
                images.append(view["image"])
            return images[0] if images else None
        return wait_until(everywhere, timeout, interval=POLL, what=what)

    def wait_registered(self, timeout: float = CONVERGE_TIMEOUT) -> dict:
        """Wait for an agreed Raft leader and every node's broker, with its
        current Kafka address, in the image of every running node."""
        self.raft_leader(timeout)

        def all_registered(image):
            brokers = image.get("brokers", {})
            return all(
                str(i) in brokers and brokers[str(i)].get("kafka_addr") == self.nodes[i].bootstrap
                for i in self.alive_ids()
            ) and len(brokers) == len(self.ids)
        return self.wait_image(all_registered, "every broker registered in every image", timeout)

    # -- partitions in the image ------------------------------------------

    @staticmethod
    def partitions(image: dict, topic: str) -> list[dict] | None:
        """The image's partitions of `topic` (index = partition), or None."""
        entry = image.get("topics", {}).get(topic)
        return None if entry is None else entry["partitions"]

    def leaders(self, topic: str) -> dict[int, int]:
        """Partition -> leader, from the Raft leader's image."""
        parts = self.partitions(self.image(), topic) or []
        return {p: part["leader"] for p, part in enumerate(parts)}

    def healthy(self, topic: str, partitions: int, rf: int):
        """A check: `topic` has `partitions` partitions, each with `rf`
        distinct replicas, a running leader and every replica in sync."""
        def check(image):
            parts = self.partitions(image, topic)
            if parts is None or len(parts) != partitions:
                return False
            alive = set(self.alive_ids())
            return all(
                len(part["replicas"]) == rf
                and len(set(part["replicas"])) == rf
                and part["leader"] in alive
                and sorted(part["isr"]) == sorted(part["replicas"])
                for part in parts
            )
        return check

    def wait_healthy(self, topic: str, partitions: int, rf: int,
                     timeout: float = CONVERGE_TIMEOUT) -> dict:
        """Wait until every running node's image shows `topic` fully in sync."""
        return self.wait_image(self.healthy(topic, partitions, rf),
                               f"{topic}: {partitions} partitions, {rf} replicas all in sync",
                               timeout)

    def wait_failed_over(self, topic: str, dead: int, timeout: float = CONVERGE_TIMEOUT) -> dict:
        """Wait until no partition of `topic` is led by `dead` or has it in
        its ISR, and every partition has a running leader."""
        def check(image):
            parts = self.partitions(image, topic)
            alive = set(self.alive_ids())
            return parts is not None and all(
                part["leader"] in alive and part["leader"] != dead and dead not in part["isr"]
                for part in parts
            )
        return self.wait_image(check, f"{topic}: partitions moved off node {dead}", timeout)

    def wait_preferred_leaders(self, topic: str, timeout: float = CONVERGE_TIMEOUT) -> dict:
        """Wait until every partition of `topic` is led by its first replica."""
        def check(image):
            parts = self.partitions(image, topic)
            return parts is not None and all(
                part["leader"] == part["replicas"][0] for part in parts)
        return self.wait_image(check, f"{topic}: preferred leaders restored", timeout)

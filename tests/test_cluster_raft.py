"""The cluster foundation: three real `sluice serve --peers ...` processes
form a Raft metadata quorum, register their brokers in the metadata image,
elect a new leader when the leader is killed, and take a restarted node back
as a follower with the same image. Also `sluice cluster --nodes 3`.

Everything listens on 127.0.0.1, with the cluster secret on (the fourth
node is added by a signed request); every process is ended by its PID, also
when a test fails; every wait polls against a deadline.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import urllib.request

from cluster import free_ports
from cluster_auth import signed_call, write_secret
from harness import Broker, _die_with_parent, pid_alive, sluice_binary, wait_until

# Seconds a three-node cluster may take to elect a leader and register brokers.
CONVERGE_TIMEOUT = 30.0


def raft_view(http_addr: str) -> dict | None:
    """The node's /api/raft document, or None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{http_addr}/api/raft", timeout=2.0) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


def converged(views: list[dict | None]) -> dict | None:
    """The agreed leader, term and image if every view names the same
    leader (one of them in role Leader), has applied the same log index and
    holds the same image; else None."""
    if any(v is None or not v.get("enabled") for v in views):
        return None
    statuses = [v["status"] for v in views]
    leaders = {s["leader"] for s in statuses}
    applied = {s["last_applied_index"] for s in statuses}
    images = [json.dumps(v["image"], sort_keys=True) for v in views]
    if len(leaders) != 1 or None in leaders or len(applied) != 1 or len(set(images)) != 1:
        return None
    leader = leaders.pop()
    roles = {s["node_id"]: s["role"] for s in statuses}
    if roles.get(leader) != "Leader":
        return None
    if sorted(r for n, r in roles.items() if n != leader) != ["Follower"] * (len(roles) - 1):
        return None
    return {
        "leader": leader,
        "term": max(s["term"] for s in statuses),
        "image": views[0]["image"],
        "roles": roles,
    }


def test_three_nodes_elect_a_leader_fail_over_and_rejoin(request, tmp_path):
    cluster_ports = free_ports(3)
    peers = ",".join(f"{i}=127.0.0.1:{p}" for i, p in zip((1, 2, 3), cluster_ports))
    secret_file, _ = write_secret(tmp_path)
    nodes = {
        i: Broker(
            tmp_path / f"node-{i}",
            [
                "--node-id", str(i),
                "--cluster-addr", f"127.0.0.1:{cluster_ports[i - 1]}",
                "--peers", peers,
                "--cluster-secret-file", str(secret_file),
                "--shop", "false",
                "--offsets-topic-partitions", "1",
            ],
        )
        for i in (1, 2, 3)
    }
    request.node._sluice_brokers = list(nodes.values())
    try:
        # A member is ready only with a quorum running: start all, then wait.
        for node in nodes.values():
            node.start(wait_ready=False)
        for node in nodes.values():
            node.wait_ready(CONVERGE_TIMEOUT)

        def views(ids):
            return [raft_view(nodes[i].http) for i in ids]

        first = wait_until(lambda: converged(views((1, 2, 3))), CONVERGE_TIMEOUT,
                           interval=0.1, what="one leader agreed by all three nodes")
        # Every broker registered itself, with the addresses it listens on.
        first = wait_until(
            lambda: (c := converged(views((1, 2, 3)))) and len(c["image"]["brokers"]) == 3 and c,
            CONVERGE_TIMEOUT, interval=0.1, what="three brokers in the image")
        for i, node in nodes.items():
            registered = first["image"]["brokers"][str(i)]
            assert registered["kafka_addr"] == node.bootstrap
            assert registered["http_addr"] == node.http
            assert registered["cluster_addr"] == f"127.0.0.1:{cluster_ports[i - 1]}"
            assert registered["liveness_epoch"] == 1

        old_leader, old_term = first["leader"], first["term"]
        nodes[old_leader].kill9()
        survivors = [i for i in (1, 2, 3) if i != old_leader]

        def new_leader():
            c = converged(views(survivors))
            return c if c and c["leader"] != old_leader and c["term"] > old_term else None

        second = wait_until(new_leader, CONVERGE_TIMEOUT, interval=0.1,
                            what="a new leader elected by the two survivors")

        nodes[old_leader].start()

        def rejoined():
            c = converged(views((1, 2, 3)))
            if not c or c["roles"][old_leader] != "Follower":
                return None
            # The restarted broker registered again: a new liveness epoch.
            if c["image"]["brokers"][str(old_leader)]["liveness_epoch"] != 2:
                return None
            return c

        third = wait_until(rejoined, CONVERGE_TIMEOUT, interval=0.1,
                           what="the killed node back as a follower with the same image")
        assert third["term"] >= second["term"]
        assert sorted(third["image"]["brokers"]) == ["1", "2", "3"]
        rejoined_broker = third["image"]["brokers"][str(old_leader)]
        assert rejoined_broker["kafka_addr"] == nodes[old_leader].bootstrap
    finally:
        for node in nodes.values():
            node.kill9()


def test_fourth_node_joins_as_voter(request, tmp_path):
    cluster_ports = free_ports(4)
    addr = {i: f"127.0.0.1:{cluster_ports[i - 1]}" for i in (1, 2, 3, 4)}
    initial = ",".join(f"{i}={addr[i]}" for i in (1, 2, 3))
    secret_file, secret = write_secret(tmp_path)

    def node(i: int, peers: str) -> Broker:
        return Broker(tmp_path / f"node-{i}", [
            "--node-id", str(i), "--cluster-addr", addr[i], "--peers", peers,
            "--cluster-secret-file", str(secret_file),
            "--shop", "false", "--offsets-topic-partitions", "1",
        ])

    nodes = {i: node(i, initial) for i in (1, 2, 3)}
    # The new node lists itself among the peers; not being the lowest id, it
    # never initialises a cluster of its own and waits to be added.
    nodes[4] = node(4, f"{initial},4={addr[4]}")
    request.node._sluice_brokers = list(nodes.values())
    try:
        for n in nodes.values():
            n.start(wait_ready=False)
        for i in (1, 2, 3):
            nodes[i].wait_ready(CONVERGE_TIMEOUT)
        first = wait_until(lambda: converged([raft_view(nodes[i].http) for i in (1, 2, 3)]),
                           CONVERGE_TIMEOUT, interval=0.1, what="three-node cluster")
        assert raft_view(nodes[4].http)["status"]["initialized"] is False
        # Not a member yet: not ready, and /readyz says what it waits for.
        status, body = nodes[4].readiness()
        assert status == 503 and body["components"]["cluster"] == "joining", body

        body = json.dumps({"node_id": 4, "cluster_addr": addr[4]}).encode()
        leader = first["leader"]
        status, reply = signed_call(addr[leader], leader, secret, "POST",
                                    "/cluster/add-voter", body, timeout=30)
        assert (status, json.loads(reply)) == (200, {"Ok": None})

        def four_voters():
            views = [raft_view(nodes[i].http) for i in (1, 2, 3, 4)]
            c = converged(views)
            if not c or len(c["image"]["brokers"]) != 4:
                return None
            if any(v["status"]["voters"] != [1, 2, 3, 4] for v in views):
                return None
            return c

        c = wait_until(four_voters, CONVERGE_TIMEOUT, interval=0.1,
                       what="four voters and four registered brokers")
        assert c["image"]["brokers"]["4"]["kafka_addr"] == nodes[4].bootstrap
        nodes[4].wait_ready(CONVERGE_TIMEOUT)
    finally:
        for n in nodes.values():
            n.kill9()


_NODE_LINE = re.compile(
    r"node (?P<id>\d+): pid (?P<pid>\d+)\s+kafka (?P<kafka>\S+)\s+http http://(?P<http>\S+)"
)


def test_cluster_command_starts_three_nodes_and_stops_them_on_sigterm(tmp_path):
    proc = subprocess.Popen(
        [str(sluice_binary()), "cluster", "--nodes", "3", "--base-dir", str(tmp_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1"},
        preexec_fn=_die_with_parent,
    )
    lines: list[str] = []
    nodes: dict[int, tuple[int, str]] = {}
    kafka: dict[int, str] = {}
    lock = threading.Lock()

    def read():
        for raw in iter(proc.stdout.readline, b""):
            text = raw.decode("utf-8", "replace").rstrip("\n")
            with lock:
                lines.append(text)
                match = _NODE_LINE.search(text)
                if match:
                    nodes[int(match["id"])] = (int(match["pid"]), match["http"])
                    kafka[int(match["id"])] = match["kafka"]

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        def all_printed():
            with lock:
                return len(nodes) == 3 and dict(nodes)

        printed = wait_until(all_printed, CONVERGE_TIMEOUT, what="three node lines")
        assert len({http for _, http in printed.values()}) == 3
        # The launcher gave the nodes a secret of its own making.
        secret_file = tmp_path / "cluster.secret"
        assert len(secret_file.read_text().strip()) == 64
        assert secret_file.stat().st_mode & 0o777 == 0o600

        agreed = wait_until(
            lambda: (c := converged([raft_view(http) for _, http in printed.values()]))
            and len(c["image"]["brokers"]) == 3 and c,
            CONVERGE_TIMEOUT, interval=0.1, what="the launched cluster to agree")
        assert agreed["leader"] in (1, 2, 3)

        # Kafka clients see the three brokers from any of them.
        def kcat_brokers(bootstrap: str):
            out = subprocess.run(["kcat", "-L", "-J", "-b", bootstrap, "-m", "5"],
                                 capture_output=True, timeout=30)
            if out.returncode != 0:
                return None
            brokers = json.loads(out.stdout)["brokers"]
            return brokers if len(brokers) == 3 else None

        for i in (1, 2, 3):
            brokers = wait_until(lambda i=i: kcat_brokers(kafka[i]), CONVERGE_TIMEOUT,
                                 interval=0.2, what=f"kcat -L from node {i}")
            assert sorted(b["id"] for b in brokers) == [1, 2, 3]

        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=40) == 0, "\n".join(lines[-40:])
        for pid, _ in printed.values():
            wait_until(lambda pid=pid: not pid_alive(pid), 10, what=f"node pid {pid} gone")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        with lock:
            pids = [pid for pid, _ in nodes.values()]
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        reader.join(timeout=5)

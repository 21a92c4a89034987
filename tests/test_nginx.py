"""deploy/nginx.conf in front of a real three-node cluster, with Debian's nginx.

The test copies the file with only the upstream `server` addresses (nodeN:8080
-> each node's HTTP listener), the `listen` port (a free loopback port) and
nginx's temporary directories (inside the test's prefix) rewritten, checks it
with `nginx -t`, and runs nginx in the foreground (`daemon off`, its own
prefix, pid and error log). Through nginx only: an order is created and its
`new_order` event arrives on a WebSocket; then one node is killed (SIGKILL, by
PID) and every request through nginx still succeeds, reads and new orders
alike, and a new WebSocket still connects. nginx is ended by its PID (and its
workers by theirs) even when a test fails.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from cluster import Cluster, free_ports
from command_node import port_open
from harness import pid_alive, wait_until
from shop_client import WsListener, call, new_order

REPO = Path(__file__).resolve().parent.parent
NGINX_CONF = REPO / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
# Seconds nginx may take to start or stop.
NGINX_TIMEOUT = 20.0
# Requests sent through nginx while a node is down.
REQUESTS_WITH_NODE_DOWN = 20


class Via:
    """An address `shop_client` helpers can call (they read `.http`)."""

    def __init__(self, http: str):
        self.http = http


def rewrite_conf(text: str, upstreams: dict[int, str], port: int, prefix: Path) -> str:
    """deploy/nginx.conf for loopback: upstreams, listen port, temp paths.
    Fails when the file no longer has the lines it rewrites."""
    for i, addr in upstreams.items():
        text, n = re.subn(rf"\bserver node{i}:8080\b", f"server {addr}", text)
        assert n == 1, f"deploy/nginx.conf has no single `server node{i}:8080`"
    text, n = re.subn(r"^(\s*)listen 8080;", rf"\1listen 127.0.0.1:{port};", text, flags=re.M)
    assert n == 1, "deploy/nginx.conf has no single `listen 8080;`"
    temp = "".join(
        f"    {kind}_temp_path {prefix / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text, n = re.subn(r"^http \{\n", "http {\n" + temp, text, flags=re.M)
    assert n == 1, "deploy/nginx.conf has no `http {` block"
    return text


def child_pids(parent: int) -> list[int]:
    """PIDs whose parent is `parent` (nginx's workers)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(entry))
    return found


class Nginx:
    """nginx in the foreground under a temporary prefix."""

    def __init__(self, prefix: Path, conf_text: str, port: int):
        self.prefix = prefix
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(conf_text)
        self.addr = f"127.0.0.1:{port}"
        self.args = [
            NGINX, "-p", str(prefix), "-c", str(self.conf), "-e", str(prefix / "error.log"),
            "-g", f"daemon off; pid {prefix / 'nginx.pid'};",
        ]
        self.proc: subprocess.Popen | None = None
        self.workers: list[int] = []
        self.log = prefix / "nginx.out"

    def check(self) -> subprocess.CompletedProcess:
        return subprocess.run([*self.args, "-t"], capture_output=True, text=True, timeout=30)

    def start(self) -> "Nginx":
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        wait_until(lambda: self._answers() or self._exited(), NGINX_TIMEOUT,
                   what="nginx to answer /nginx-health")
        assert self.proc.poll() is None, f"nginx exited: {self.output()}"
        self.workers = child_pids(self.proc.pid)
        return self

    def _answers(self) -> bool:
        if not port_open(int(self.addr.rsplit(":", 1)[1])):
            return False
        return call(Via(self.addr), "GET", "/nginx-health", timeout=2)[0] == 200

    def _exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def output(self) -> str:
        parts = []
        for path in (self.log, self.prefix / "error.log"):
            if path.exists():
                parts.append(path.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def stop(self) -> None:
        """SIGTERM (nginx's fast shutdown), then SIGKILL master and workers by PID."""
        proc = self.proc
        if proc is None:
            return
        workers = self.workers + (child_pids(proc.pid) if proc.poll() is None else [])
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=NGINX_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in set(workers):
            if pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.proc = None


@pytest.fixture(scope="module")
def behind_nginx(tmp_path_factory):
    """A three-node cluster with the shop, and nginx in front of its HTTP listeners."""
    if not os.path.exists(NGINX):
        pytest.fail("nginx is not installed (Debian package `nginx`; scripts/test.sh installs it)")
    base = tmp_path_factory.mktemp("nginx")
    cluster = Cluster(base / "cluster", shop=True)
    nginx = None
    try:
        cluster.start()
        prefix = base / "nginx"
        prefix.mkdir()
        prefix.chmod(0o755)
        upstreams = {i: cluster.nodes[i].http for i in cluster.ids}
        port = free_ports(1)[0]
        nginx = Nginx(prefix, rewrite_conf(NGINX_CONF.read_text(), upstreams, port, prefix), port)
        checked = nginx.check()
        assert checked.returncode == 0, f"nginx -t: {checked.stderr}"
        nginx.start()
        yield cluster, nginx
    finally:
        if nginx is not None:
            nginx.stop()
        cluster.kill_all()


def test_order_and_its_websocket_event_pass_through_nginx(behind_nginx):
    cluster, nginx = behind_nginx
    via = Via(nginx.addr)
    with WsListener(via) as ws:
        ws.wait_for(lambda m: m["event"] == "snapshot", what="the snapshot through nginx")
        status, body = call(via, "POST", "/api/orders", new_order(customer="Through Nginx"))
        assert status == 202, body
        order_id = body["order_id"]
        event = ws.wait_for(
            lambda m: m["event"] == "new_order" and m["data"]["order_id"] == order_id,
            what="the new_order event through nginx")
        assert event["data"]["customer"] == "Through Nginx"
    # Reads through nginx reach any node: each holds the whole read model.
    wait_until(lambda: call(via, "GET", f"/api/orders/{order_id}")[0] == 200, 30,
               what="the order through nginx")
    print(f"order {order_id} created and its event received through nginx at {nginx.addr}")


def test_requests_through_nginx_keep_succeeding_with_a_node_killed(behind_nginx):
    cluster, nginx = behind_nginx
    via = Via(nginx.addr)
    victim = cluster.ids[-1]
    victim_addr = cluster.nodes[victim].http
    cluster.kill9(victim)
    assert not cluster.nodes[victim].alive()
    failures, created = [], []
    for n in range(REQUESTS_WITH_NODE_DOWN):
        if n % 2 == 0:
            status, body = call(via, "GET", "/api/orders", timeout=30)
            if status != 200:
                failures.append((n, "GET /api/orders", status, body))
        else:
            status, body = call(via, "POST", "/api/orders", new_order(customer=f"Down {n}"),
                                timeout=30)
            if status != 202:
                failures.append((n, "POST /api/orders", status, body))
            else:
                created.append(body["order_id"])
    assert not failures, f"requests through nginx failed with node {victim} down: {failures}\n" \
                         f"{nginx.output()}"
    # nginx did try the dead node, and moved each such request to another one.
    refused = [line for line in nginx.output().splitlines()
               if "Connection refused" in line and victim_addr in line]
    assert refused, f"nginx never tried node {victim}:\n{nginx.output()}"
    for order_id in created:
        wait_until(lambda: call(via, "GET", f"/api/orders/{order_id}")[0] == 200, 30,
                   what=f"order {order_id} through nginx")
    # A new WebSocket through nginx still connects and gets the new orders.
    with WsListener(via) as ws:
        ws.wait_for(lambda m: m["event"] == "snapshot", what="a snapshot with a node down")
        status, body = call(via, "POST", "/api/orders", new_order(customer="After Kill"))
        assert status == 202, body
        ws.wait_for(lambda m: m["event"] == "new_order"
                    and m["data"]["order_id"] == body["order_id"],
                    what="a new_order event with a node down")
    print(f"node {victim} killed: {REQUESTS_WITH_NODE_DOWN} requests through nginx "
          f"({len(created)} orders) all succeeded ({len(refused)} refused connections to it "
          f"passed on to another node); a new WebSocket got its event")

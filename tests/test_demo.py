"""`sluice demo`: a node with the shop and simulated traffic, on a fresh
temporary data dir, announcing the dashboard URL on stdout.

Each demo process is ended by its PID (SIGTERM, then SIGKILL) even when a
test fails.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import urllib.request
from pathlib import Path

import pytest

from harness import pid_alive, sluice_binary, wait_until

DASHBOARD = re.compile(r"Dashboard:\s+(http://127\.0\.0\.1:\d+)/")
DATA_DIR = re.compile(r"Data dir:\s+(\S+)")


class Demo:
    """One `sluice demo` process on ephemeral loopback ports."""

    def __init__(self, extra: list[str] | None = None):
        self.out: list[str] = []
        self.proc = subprocess.Popen(
            [str(sluice_binary()), "demo", "--kafka-addr", "127.0.0.1:0",
             "--http-addr", "127.0.0.1:0", *(extra or [])],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, NO_COLOR="1"),
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            self.out.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.out)

    def announced(self) -> tuple[str, Path] | None:
        text = self.text()
        url, data = DASHBOARD.search(text), DATA_DIR.search(text)
        if url and data:
            return url.group(1), Path(data.group(1))
        assert self.proc.poll() is None, f"demo exited early:\n{text}"
        return None

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                return self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
                return None
        return self.proc.returncode


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


@pytest.fixture
def demos():
    started: list[Demo] = []

    def make(extra: list[str] | None = None) -> Demo:
        demo = Demo(extra)
        started.append(demo)
        return demo

    try:
        yield make
    finally:
        for demo in started:
            demo.stop()


def test_demo_prints_the_dashboard_url_and_runs_traffic_on_a_fresh_temp_dir(demos):
    first, second = demos(), demos()
    (url, data_dir) = wait_until(first.announced, 60, what="the demo's announcement")
    (url2, data_dir2) = wait_until(second.announced, 60, what="the second announcement")
    temp_root = Path(tempfile.gettempdir()).resolve()
    assert data_dir.resolve().parent == temp_root and data_dir.is_dir()
    assert data_dir != data_dir2, "two demos never share a data dir"

    with urllib.request.urlopen(url + "/", timeout=5) as resp:
        assert resp.status == 200
        assert "text/html" in resp.headers["Content-Type"]
        assert b"Sluice" in resp.read()
    assert get_json(url + "/api/simulator")["enabled"] is True
    wait_until(lambda: get_json(url + "/api/stats")["orders"]["total"] > 0, 30,
               what="simulated orders")

    assert first.stop() == 0
    assert not data_dir.exists(), "the temporary data dir is removed on a clean exit"
    assert second.stop() == 0


def test_demo_keeps_a_given_data_dir_and_rate_zero_leaves_traffic_off(demos, tmp_path):
    demo = demos(["--data-dir", str(tmp_path / "kept"), "--rate", "0"])
    (url, data_dir) = wait_until(demo.announced, 60, what="the demo's announcement")
    assert data_dir == tmp_path / "kept"
    assert get_json(url + "/api/simulator")["enabled"] is False
    assert demo.stop() == 0
    assert data_dir.is_dir(), "a data dir that was asked for stays"


NODE_LINE = re.compile(r"node (?P<id>\d+): pid (?P<pid>\d+)\s+kafka \S+\s+http (?P<http>http://\S+)")


def stop_cluster_demo(demo: Demo, pids: list[int]) -> int | None:
    """Stop the demo (it stops its nodes); SIGKILL any node left behind."""
    code = demo.stop()
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    return code


@pytest.mark.timeout(240)
def test_demo_with_three_nodes_runs_the_shop_on_every_node_of_a_cluster(demos, tmp_path):
    demo = demos(["--nodes", "3", "--data-dir", str(tmp_path / "cluster"), "--rate", "20"])
    pids: list[int] = []
    try:
        (url, data_dir) = wait_until(demo.announced, 90, what="the demo's announcement")
        assert data_dir == tmp_path / "cluster"
        nodes = {int(m["id"]): (int(m["pid"]), m["http"]) for m in NODE_LINE.finditer(demo.text())}
        assert sorted(nodes) == [1, 2, 3]
        pids = [pid for pid, _ in nodes.values()]

        def three_live_brokers():
            view = get_json(url + "/api/cluster")
            alive = [b for b in view["brokers"] if b["alive"]]
            return view if view["mode"] == "cluster" and len(alive) == 3 else None

        view = wait_until(three_live_brokers, 60, interval=0.2, what="three live brokers")
        assert sum(1 for b in view["brokers"] if b["controller"]) == 1

        def orders_replicated():
            topics = {t["name"]: t for t in get_json(url + "/api/cluster")["topics"]}
            orders = topics.get("orders")
            return orders and all(len(p["replicas"]) == 3 for p in orders["partitions"])

        wait_until(orders_replicated, 60, interval=0.2, what="the shop's topics on all three")
        # Every node's shop keeps its own read model of the whole shop.
        for _, http in nodes.values():
            wait_until(lambda http=http: get_json(http + "/api/stats")["orders"]["total"] > 0,
                       60, interval=0.2, what=f"orders in the read model of {http}")
    finally:
        code = stop_cluster_demo(demo, pids)
    assert code == 0, demo.text()[-3000:]
    for pid in pids:
        wait_until(lambda pid=pid: not pid_alive(pid), 15, what=f"node pid {pid} gone")


@pytest.mark.timeout(180)
def test_demo_with_three_nodes_removes_its_temporary_data_dir_on_a_clean_exit(demos):
    demo = demos(["--nodes", "3", "--rate", "0"])
    pids: list[int] = []
    try:
        (url, data_dir) = wait_until(demo.announced, 90, what="the demo's announcement")
        pids = [int(m["pid"]) for m in NODE_LINE.finditer(demo.text())]
        assert len(pids) == 3
        assert data_dir.resolve().parent == Path(tempfile.gettempdir()).resolve()
        # The nodes' dirs and the cluster secret the launcher made for them.
        assert sorted(p.name for p in data_dir.iterdir()) == [
            "cluster.secret", "node-1", "node-2", "node-3"]
        assert get_json(url + "/api/simulator")["enabled"] is False
    finally:
        code = stop_cluster_demo(demo, pids)
    assert code == 0, demo.text()[-3000:]
    assert not data_dir.exists(), "the temporary data dirs are removed on a clean exit"

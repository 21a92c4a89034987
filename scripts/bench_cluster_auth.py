#!/usr/bin/env python3
"""What the cluster listener's authentication costs: a three-node cluster
on 127.0.0.1 with no authentication, with the shared secret, with mutual
TLS and with both. For each: the CPU the three idle nodes use (Raft
heartbeats every 100 ms and broker heartbeats, each a new connection, signed
and over TLS as configured), and the latency of GET /cluster/status from a
client (signed and over TLS as configured; a new connection per call, as
the nodes do).

    SLUICE_BIN=target/release/sluice .venv/bin/python scripts/bench_cluster_auth.py

Uses the tests' harness (tests/cluster.py); every process is ended by PID.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from cluster import Cluster  # noqa: E402
from cluster_auth import send, sign  # noqa: E402
from test_cluster_auth import make_ca, make_cert, tls_context  # noqa: E402

IDLE_SECONDS = 10.0
CALLS = 300


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(base: Path, mode: str) -> dict:
    pki = base / "pki"
    pki.mkdir(parents=True)
    tls = mode in ("mtls", "both")
    node_args, extra, ca = {}, [], None
    if tls:
        ca = make_ca(pki, "ca")
        certs = {i: make_cert(pki, f"node-{i}", ca) for i in (1, 2, 3)}
        node_args = {i: ["--cluster-tls-cert", str(c), "--cluster-tls-key", str(k)]
                     for i, (c, k) in certs.items()}
        extra = ["--cluster-tls-ca", str(ca[0])]
    with Cluster(base / "nodes", secret=mode in ("secret", "both"), node_args=node_args,
                 extra_args=extra) as cluster:
        cluster.start()
        pids = [cluster.nodes[i].proc.pid for i in cluster.ids]
        before = sum(cpu_seconds(p) for p in pids)
        time.sleep(IDLE_SECONDS)  # a measurement interval, not a wait for a condition
        idle_cpu = (sum(cpu_seconds(p) for p in pids) - before) / IDLE_SECONDS * 100
        context = tls_context(ca[0], certs[1]) if tls else None
        addr = cluster.cluster_addrs[2]
        latencies = []
        for _ in range(CALLS):
            headers = sign(cluster.secret, "GET", "/cluster/status", 2) if cluster.secret else {}
            start = time.perf_counter()
            status, _, _ = send(addr, "GET", "/cluster/status", headers=headers, tls=context)
            latencies.append((time.perf_counter() - start) * 1000)
            assert status == 200
        latencies.sort()
        return {
            "mode": mode,
            "idle_cpu_pct": idle_cpu,
            "p50_ms": statistics.median(latencies),
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        }


def main() -> None:
    rows = []
    for mode in ("none", "secret", "mtls", "both"):
        with tempfile.TemporaryDirectory() as d:
            rows.append(measure(Path(d), mode))
    print(f"{'mode':8} {'idle CPU, 3 nodes (% of a core)':>32} {'status p50 ms':>14} "
          f"{'p99 ms':>8}")
    for r in rows:
        print(f"{r['mode']:8} {r['idle_cpu_pct']:32.2f} {r['p50_ms']:14.2f} {r['p99_ms']:8.2f}")


if __name__ == "__main__":
    main()

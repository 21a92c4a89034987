#!/usr/bin/env python3
"""End-to-end latency of the shop: from `POST /api/orders` to the matching
`new_order` WebSocket message, at fixed offered rates (open loop), and the
highest rate sustained with a p99 under a target.

    .venv/bin/python scripts/bench_shop.py                # starts its own sluice
    .venv/bin/python scripts/bench_shop.py --http 127.0.0.1:8080   # an existing node

Latency is measured in this process: send time of the request -> arrival of
the WebSocket message naming the order. Requests go out on a pool of
keep-alive HTTP/1.1 connections at the offered rate; a request that cannot
start on time because every connection is busy is counted as late (its
latency still starts at its scheduled time, so falling behind shows up in the
figures instead of hiding). The load generator shares the machine's CPUs with
the node, so figures are a lower bound of what the node alone can do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import websockets  # noqa: E402

BODY = json.dumps({
    "customer": "Bench Customer",
    "items": [{"sku": "BENCH-1", "quantity": 1, "price": 9.99}],
    "currency": "EUR",
}).encode()


class HttpConnection:
    """One keep-alive HTTP/1.1 connection that posts orders."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def post_order(self) -> dict:
        request = (
            f"POST /api/orders HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
        ).encode() + BODY
        self.writer.write(request)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        body = await self.reader.readexactly(length)
        status = int(status_line.split()[1])
        if status != 202:
            raise RuntimeError(f"POST /api/orders answered {status}: {body[:200]!r}")
        return json.loads(body)

    def close(self):
        if self.writer:
            self.writer.close()


async def run_rate(http: str, rate: float, seconds: float, connections: int) -> dict:
    host, port = http.rsplit(":", 1)
    arrivals: dict[str, float] = {}
    sent: dict[str, float] = {}
    errors = 0
    late = 0
    async with websockets.connect(f"ws://{http}/ws", max_size=None) as ws:
        first = json.loads(await ws.recv())
        assert first["event"] == "snapshot", first["event"]

        async def listen():
            async for text in ws:
                now = time.perf_counter()
                if '"new_order"' in text:
                    message = json.loads(text)
                    if message["event"] == "new_order":
                        arrivals[message["data"]["order_id"]] = now
        listener = asyncio.create_task(listen())

        pool = [HttpConnection(host, int(port)) for _ in range(connections)]
        await asyncio.gather(*(c.open() for c in pool))
        idle: asyncio.Queue = asyncio.Queue()
        for c in pool:
            idle.put_nowait(c)

        async def one(scheduled: float):
            nonlocal errors, late
            conn = await idle.get()
            if time.perf_counter() - scheduled > 0.005:
                late += 1
            try:
                answer = await conn.post_order()
                sent[answer["order_id"]] = scheduled
            except Exception:  # counted; the run goes on
                errors += 1
                conn.close()
                conn = HttpConnection(host, int(port))
                await conn.open()
            finally:
                idle.put_nowait(conn)

        total = int(rate * seconds)
        start = time.perf_counter() + 0.2
        tasks = []
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
        deadline = time.perf_counter() + 10
        while len([o for o in sent if o in arrivals]) < len(sent) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        listener.cancel()
        for c in pool:
            c.close()
    latencies = sorted((arrivals[o] - t) * 1000 for o, t in sent.items() if o in arrivals)
    missing = len(sent) - len(latencies)

    def pct(p):
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]
    return {
        "rate": rate, "orders": len(sent), "achieved_per_sec": len(sent) / elapsed,
        "p50_ms": pct(50), "p99_ms": pct(99), "max_ms": latencies[-1] if latencies else float("nan"),
        "mean_ms": statistics.fmean(latencies) if latencies else float("nan"),
        "errors": errors, "missing_ws": missing, "late_starts": late,
    }


def show(r: dict) -> None:
    print(f"  {r['rate']:>6.0f}/s offered  {r['achieved_per_sec']:>7.1f}/s done  "
          f"p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  max {r['max_ms']:6.1f} ms  "
          f"errors {r['errors']}  missing {r['missing_ws']}  late {r['late_starts']}", flush=True)


async def main_async(args) -> None:
    print(f"POST /api/orders -> WebSocket new_order on {args.http}, {args.seconds:.0f} s per rate, "
          f"{args.connections} HTTP connections", flush=True)
    await run_rate(args.http, 50, 2, args.connections)  # warm-up
    results = []
    for rate in args.rates:
        r = await run_rate(args.http, rate, args.seconds, args.connections)
        show(r)
        results.append(r)
    best = None
    print(f"searching the highest rate with p99 < {args.target_p99_ms:.0f} ms:", flush=True)
    for rate in args.search:
        r = await run_rate(args.http, rate, args.seconds, args.connections)
        show(r)
        ok = (r["p99_ms"] < args.target_p99_ms and r["errors"] == 0 and r["missing_ws"] == 0
              and r["achieved_per_sec"] >= 0.95 * rate)
        if not ok:
            break
        best = r
    print(f"highest sustained rate with p99 < {args.target_p99_ms:.0f} ms: "
          f"{best['rate']:.0f} orders/s" if best else "no rate met the target", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"fixed": results, "best": best}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--http", help="HTTP address of a running node (default: start one)")
    parser.add_argument("--rates", type=float, nargs="+", default=[100, 1000])
    parser.add_argument("--search", type=float, nargs="+",
                        default=[250, 500, 1000, 1500, 2000, 2500, 3000, 4000])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--target-p99-ms", type=float, default=100)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.http:
        asyncio.run(main_async(args))
        return
    from harness import Broker
    from shop_client import wait_shop_ready
    with tempfile.TemporaryDirectory(prefix="bench-shop-") as data:
        node = Broker(data)
        try:
            node.start()
            wait_shop_ready(node)
            args.http = node.http
            asyncio.run(main_async(args))
        finally:
            node.stop()


if __name__ == "__main__":
    os.environ.setdefault("SLUICE_BIN", str(REPO / "target" / "release" / "sluice"))
    main()

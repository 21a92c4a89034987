"""The shop's read model in PostgreSQL (`--read-model postgres://...`),
against a real PostgreSQL 15 from Debian that this module starts: `initdb`
into a temporary directory (trust authentication, run as the `postgres` user
when the tests run as root, as PostgreSQL refuses root), `postgres` in the
foreground on a free loopback port with its socket directory in the same
temporary directory, ended by its PID at the end even when a test fails.

- The same consistency checks the sled model passes (`shop_client`'s
  independent count from the topics), for both stores; and a PostgreSQL shop
  reading a sled shop's topics answers every listing exactly like it.
- The notifier's notifications, the same scenario on both stores: listed
  once each (a redelivered one too), newest first, by severity, by page,
  as the topic holds them, and the same after a replay.
- Three shop instances (the three nodes of a cluster) on one database
  behind Debian's nginx (`deploy/nginx.conf`, as in test_nginx.py): an order
  created through nginx is read from every node; a node is killed with
  SIGKILL under simulated traffic, the others take its partitions over,
  a replay rebuilds the model, and the rows equal what the topics hold
  (orders, payment events and notifications counted in the database itself).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer

from cluster import Cluster, free_ports
from harness import wait_until
from shop_client import (
    assert_model_matches, call, end_offsets, independent_model, new_order, read_topics, wait_caught_up,
    wait_order,
)
from test_nginx import NGINX, NGINX_CONF, Nginx, Via, rewrite_conf
from test_shop_consistency import run_simulator

def _pg_bin() -> str | None:
    """Debian's server binaries (/usr/lib/postgresql/<version>/bin, newest first)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                      reverse=True)
    for d in [*versions, Path("/usr/local/bin")]:
        if (d / "initdb").exists() and (d / "postgres").exists() and (d / "psql").exists():
            return str(d)
    return None


PG_BIN = _pg_bin()
# Seconds PostgreSQL may take to start or stop.
PG_TIMEOUT = 30.0


class Postgres:
    """A throwaway PostgreSQL server on 127.0.0.1."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="sluice-pg-"))
        self.data = self.dir / "data"
        self.port = free_ports(1)[0]
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "postgres.log"
        # PostgreSQL refuses to run as root: drop to its own user then.
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self.prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                           "--clear-groups"]

    def bin(self, name: str) -> str:
        return os.path.join(PG_BIN, name)

    def start(self) -> "Postgres":
        init = subprocess.run(
            [*self.prefix, self.bin("initdb"), "-D", str(self.data), "-U", "postgres",
             "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
            capture_output=True, text=True, timeout=120)
        assert init.returncode == 0, f"initdb failed: {init.stdout}\n{init.stderr}"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [*self.prefix, self.bin("postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-k", str(self.dir), "-c", "listen_addresses=127.0.0.1",
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "max_connections=60"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        wait_until(lambda: self.proc.poll() is not None or self.sql("SELECT 1", check=False)
                   == "1", PG_TIMEOUT, interval=0.1, what="PostgreSQL to accept connections")
        assert self.proc.poll() is None, f"postgres exited: {self.output()}"
        return self

    def sql(self, query: str, db: str = "postgres", check: bool = True) -> str | None:
        """One statement through psql; its unaligned output."""
        done = subprocess.run(
            [self.bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-d", db, "-At", "-v", "ON_ERROR_STOP=1", "-c", query],
            capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            assert not check, f"psql {query!r}: {done.stderr}"
            return None
        return done.stdout.strip()

    def create_db(self, name: str) -> str:
        self.sql(f"CREATE DATABASE {name}")
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def stop(self) -> None:
        """SIGQUIT (immediate shutdown), then SIGKILL, by PID; remove the directory."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(timeout=PG_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres():
    if PG_BIN is None:
        pytest.fail("PostgreSQL is not installed (Debian package `postgresql`; "
                    "scripts/test.sh installs it)")
    server = Postgres()
    try:
        server.start()
        yield server
    finally:
        server.stop()


def database_counts(pg: Postgres, db: str) -> dict:
    """Rows of the current generation, counted in the database."""
    generation = pg.sql("SELECT generation FROM shop_meta", db=db)
    where = f"generation = {generation}"
    return {
        "generation": int(generation),
        "orders": int(pg.sql(f"SELECT count(*) FROM shop_orders WHERE {where} "
                             "AND created_at IS NOT NULL", db=db)),
        "payments": int(pg.sql(f"SELECT count(*) FROM shop_payments WHERE {where}", db=db)),
        "notifications": int(pg.sql(f"SELECT count(*) FROM shop_notifications WHERE {where}",
                                    db=db)),
        "generations": pg.sql("SELECT string_agg(DISTINCT generation::text, ',') "
                              "FROM shop_orders", db=db),
    }


def wait_topics_at_rest(bootstrap: str, quiet: float = 2.0, timeout: float = 60.0) -> None:
    """Poll the shop topics' end offsets until they stay the same for `quiet` seconds."""
    last, since = end_offsets(bootstrap), time.monotonic()

    def at_rest():
        nonlocal last, since
        now = end_offsets(bootstrap)
        if now != last:
            last, since = now, time.monotonic()
        return time.monotonic() - since >= quiet
    wait_until(at_rest, timeout, interval=0.25, what="the shop's topics to come to rest")


def topic_counts(records: list[dict]) -> dict:
    """Created orders, payment events and distinct notifications in the topics."""
    model = independent_model(records)
    return {"orders": model["orders_total"],
            "payments": sum(model["payments_by_status"].values()),
            "notifications": len({r["value"]["data"]["notification_id"] for r in records
                                  if r["topic"] == "notifications"})}


@pytest.mark.parametrize("store", ["sled", "postgres"])
def test_the_read_model_matches_the_topics_after_traffic_and_replay(store, fresh_broker,
                                                                     postgres):
    args = []
    if store == "postgres":
        args = ["--read-model", postgres.create_db("shop_single")]
    node = fresh_broker(args)
    run_simulator(node, rate=1000, events=2000, timeout=30)
    wait_caught_up(node, node.bootstrap)
    expected = assert_model_matches(node, node.bootstrap)
    assert expected["orders_total"] > 20
    status, stats_before = call(node, "GET", "/api/stats")
    status, replay = call(node, "POST", "/api/replay?wait=true", timeout=120)
    assert status == 200 and replay["state"] == "done", replay
    assert replay["to_generation"] == replay["from_generation"] + 1
    assert call(node, "GET", "/api/stats")[1] == stats_before
    assert_model_matches(node, node.bootstrap)
    if store == "postgres":
        counts = database_counts(postgres, "shop_single")
        assert counts["generation"] == replay["to_generation"]
        assert counts["generations"] == str(replay["to_generation"]), "old generation left"
        assert {k: counts[k] for k in ("orders", "payments", "notifications")} == \
            topic_counts(read_topics(node.bootstrap))
    rate = replay["events_applied"] / max(replay["duration_ms"], 1) * 1000
    print(f"{store}: {sum(expected['events_by_topic'].values())} events, "
          f"{expected['orders_total']} orders match the topics before and after a replay; "
          f"the replay applied {replay['events_applied']} events in {replay['duration_ms']} ms "
          f"({rate:,.0f} events/s through the projector's apply)")


def notifications(node, query: str = "") -> dict:
    status, body = call(node, "GET", f"/api/notifications?limit=500{query}")
    assert status == 200, body
    return body


def paid_order(node, customer: str, price: float) -> str:
    status, body = call(node, "POST", "/api/orders", new_order(
        customer=customer, items=[{"sku": "sku-1", "quantity": 1, "price": price}]))
    assert status == 202, body
    order_id = body["order_id"]
    wait_order(node, order_id)
    status, body = call(node, "POST", "/api/payments",
                        {"order_id": order_id, "amount": price, "method": "card"})
    assert status == 202, body
    wait_order(node, order_id, lambda o: o["status"] == "paid")
    return order_id


@pytest.mark.parametrize("store", ["sled", "postgres"])
def test_notifications_are_listed_once_each_by_severity_and_page_and_survive_a_replay(
        store, fresh_broker, postgres):
    args = []
    if store == "postgres":
        args = ["--read-model", postgres.create_db("shop_notes")]
    node = fresh_broker(args)
    refunded = paid_order(node, "notify@example.com", 12)
    status, body = call(node, "POST", f"/api/orders/{refunded}/refund", {})
    assert status == 202, body
    status, body = call(node, "POST", "/api/orders", new_order(
        customer="notify-fail@example.com", items=[{"sku": "sku-1", "quantity": 1, "price": 8}]))
    assert status == 202, body
    failed = body["order_id"]
    wait_order(node, failed)
    status, body = call(node, "POST", "/api/payments", {"order_id": failed, "amount": 8,
                                                         "method": "paypal", "status": "failed"})
    assert status == 202, body
    delivered = paid_order(node, "notify-live@example.com", 3)
    for step in ["scheduled", "shipped", "in_transit", "out_for_delivery", "delivered"]:
        status, body = call(node, "POST", "/api/deliveries",
                            {"order_id": delivered, "status": step, "carrier": "DHL"})
        assert status == 202, body
        wait_order(node, delivered,
                   lambda o, s=step: bool(o["timeline"]) and o["timeline"][-1]["status"] == s)
    ours = {refunded: ("payment_refunded", "info"), failed: ("payment_failed", "warning"),
            delivered: ("delivered", "success")}
    listed = wait_until(
        lambda: (lambda r: r if {n["order_id"] for n in r["notifications"]} >= set(ours) else None)(
            notifications(node)), 30, interval=0.1, what="three notifications from the API")

    # The notifier redelivers one (a new event, the same notification id):
    # it is still listed once.
    records = read_topics(node.bootstrap, ["notifications"])
    again = next(r for r in records if r["value"]["order_id"] == failed)
    copy = dict(again["value"], event_id=str(uuid.uuid4()))
    producer = KafkaProducer(bootstrap_servers=node.bootstrap, acks="all")
    try:
        producer.send("notifications", key=failed.encode(), value=json.dumps(copy).encode()).get(30)
    finally:
        producer.close()
    wait_caught_up(node, node.bootstrap)

    listed = notifications(node)
    rows = listed["notifications"]
    assert listed["total"] == len(rows)
    assert all(n["notification_id"] and n["kind"] and n["severity"] and n["message"] for n in rows)
    ids = [n["notification_id"] for n in rows]
    assert len(ids) == len(set(ids)), "a notification listed twice"
    in_topic = {r["value"]["data"]["notification_id"] for r in read_topics(
        node.bootstrap, ["notifications"])}
    assert set(ids) == in_topic, "the list is not what the topic holds"
    for order_id, (kind, severity) in ours.items():
        mine = [n for n in rows if n["order_id"] == order_id]
        assert [(n["kind"], n["severity"]) for n in mine] == [(kind, severity)], order_id
    stamps = [n["timestamp"] for n in rows]
    assert stamps == sorted(stamps, reverse=True), "not newest first"
    warnings = notifications(node, "&severity=warning")
    assert warnings["notifications"] == [n for n in rows if n["severity"] == "warning"]
    assert warnings["total"] == len(warnings["notifications"]) >= 1
    assert failed in {n["order_id"] for n in warnings["notifications"]}
    assert delivered not in {n["order_id"] for n in warnings["notifications"]}
    status, page = call(node, "GET", "/api/notifications?offset=1&limit=1")
    assert status == 200 and page["notifications"] == rows[1:2] and page["total"] == len(rows)
    status, body = call(node, "GET", "/api/notifications?severity=urgent")
    assert status == 422, body

    status, replay = call(node, "POST", "/api/replay?wait=true", timeout=120)
    assert status == 200 and replay["state"] == "done", replay
    assert notifications(node) == listed, "a replay changed the notifications"
    print(f"{store}: {len(rows)} notifications listed once each (one redelivered), "
          f"{warnings['total']} warnings, the same after a replay")


LISTINGS = [
    "/api/orders?limit=500", "/api/orders?status=paid&limit=500",
    "/api/orders?customer=a&limit=50&offset=3", "/api/payments?limit=500",
    "/api/payments?status=authorized&limit=500", "/api/payments?method=card&limit=40&offset=2",
    "/api/deliveries?limit=500", "/api/deliveries?status=shipped&limit=500",
    "/api/stats", "/api/notifications?limit=500",
    "/api/notifications?severity=warning&limit=20&offset=1",
]


def test_postgres_answers_every_listing_like_sled_over_the_same_topics(fresh_broker, postgres):
    sled_node = fresh_broker()
    pg_node = fresh_broker(["--read-model", postgres.create_db("shop_twin"),
                            "--bootstrap", sled_node.bootstrap])
    run_simulator(sled_node, rate=400, events=600, timeout=30)
    # The notifier writes after the events it reads: let it finish.
    wait_topics_at_rest(sled_node.bootstrap)
    wait_caught_up(sled_node, sled_node.bootstrap)
    wait_caught_up(pg_node, sled_node.bootstrap)
    status, some = call(sled_node, "GET", "/api/orders?limit=1")
    order_id = some["orders"][0]["order_id"]
    carrier = None
    status, deliveries = call(sled_node, "GET", "/api/deliveries?limit=1")
    if deliveries["deliveries"]:
        carrier = deliveries["deliveries"][0].get("carrier")
    paths = LISTINGS + [f"/api/orders/{order_id}", f"/api/payments?order_id={order_id}"]
    if carrier:
        paths.append(f"/api/deliveries?carrier={carrier.lower()}&limit=500")
    for path in paths:
        want = call(sled_node, "GET", path)
        got = call(pg_node, "GET", path)
        assert got == want, f"{path}: PostgreSQL and sled differ"
    assert call(sled_node, "GET", "/api/notifications?limit=1")[1]["total"] > 0
    print(f"{len(paths)} listings equal on sled and PostgreSQL over the same topics")


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory, postgres):
    """Three shop nodes on one PostgreSQL database, behind nginx."""
    if not os.path.exists(NGINX):
        pytest.fail("nginx is not installed (Debian package `nginx`; scripts/test.sh installs it)")
    base = tmp_path_factory.mktemp("pgshared")
    url = postgres.create_db("shop_shared")
    cluster = Cluster(base / "cluster", shop=True, extra_args=["--read-model", url])
    nginx = None
    try:
        cluster.start()
        prefix = base / "nginx"
        prefix.mkdir()
        prefix.chmod(0o755)
        port = free_ports(1)[0]
        upstreams = {i: cluster.nodes[i].http for i in cluster.ids}
        nginx = Nginx(prefix, rewrite_conf(NGINX_CONF.read_text(), upstreams, port, prefix), port)
        checked = nginx.check()
        assert checked.returncode == 0, f"nginx -t: {checked.stderr}"
        nginx.start()
        yield cluster, nginx, "shop_shared"
    finally:
        if nginx is not None:
            nginx.stop()
        cluster.kill_all()


def projector_groups(cluster: Cluster) -> set[str]:
    return {call(cluster.nodes[i], "GET", "/api/status")[1]["groups"]["projector"]
            for i in cluster.alive_ids()}


def test_orders_created_through_nginx_are_read_alike_from_every_node(shared_cluster):
    cluster, nginx, _ = shared_cluster
    assert len(projector_groups(cluster)) == 1, "the nodes do not share one projector group"
    via = Via(nginx.addr)
    created = []
    for n in range(6):
        status, body = call(via, "POST", "/api/orders", new_order(customer=f"Shared {n}"))
        assert status == 202, body
        created.append(body["order_id"])
    for order_id in created:
        for i in cluster.ids:
            wait_order(cluster.nodes[i], order_id, timeout=30)
    wait_caught_up(cluster.nodes[1], cluster.bootstrap)
    answers = {i: call(cluster.nodes[i], "GET", "/api/orders?limit=500")[1]
               for i in cluster.ids}
    assert answers[1]["total"] >= len(created)
    assert answers[1] == answers[2] == answers[3], "the nodes answer differently"
    print(f"{len(created)} orders through nginx, read alike from nodes {cluster.ids}")


def test_kill_9_of_a_projecting_node_under_traffic_then_replay_matches_the_topics(
        shared_cluster, postgres):
    cluster, nginx, db = shared_cluster
    victim = cluster.ids[-1]
    driver = cluster.nodes[cluster.ids[0]]
    assigned = re.compile(r"projector assigned.*partitions=([1-9])")
    wait_until(lambda: any(assigned.search(line) for line in cluster.nodes[victim].log_lines()),
               30, what=f"node {victim}'s projector to own partitions")
    status, body = call(driver, "POST", "/api/simulator", {"enabled": True, "rate_per_sec": 200})
    assert status == 200, body
    wait_until(lambda: call(driver, "GET", "/api/simulator")[1]["events_sent"] >= 300, 30,
               interval=0.1, what="traffic before the crash")
    cluster.kill9(victim)
    killed_at = time.monotonic()
    wait_until(lambda: call(driver, "GET", "/api/simulator")[1]["events_sent"] >= 600, 60,
               interval=0.1, what="traffic after the crash")
    status, body = call(driver, "POST", "/api/simulator", {"enabled": False})
    assert status == 200, body
    survivors = [cluster.nodes[i] for i in cluster.alive_ids()]
    for node in survivors:
        wait_caught_up(node, cluster.bootstrap, timeout=90)
    took_over = time.monotonic() - killed_at
    # Commands that waited for the dead node's partitions finish now: let
    # the topics come to rest, then catch up with them.
    wait_topics_at_rest(cluster.bootstrap)
    for node in survivors:
        wait_caught_up(node, cluster.bootstrap, timeout=60)
    for node in survivors:
        assert_model_matches(node, cluster.bootstrap)

    status, replay = call(driver, "POST", "/api/replay?wait=true", timeout=120)
    assert status == 200 and replay["state"] == "done", replay
    for node in survivors:
        wait_until(lambda: call(node, "GET", "/api/status")[1]["generation"]
                   == replay["to_generation"], 30, what="every node on the new generation")
        assert_model_matches(node, cluster.bootstrap)
    counts = database_counts(postgres, db)
    expected = topic_counts(read_topics(cluster.bootstrap))
    assert {k: counts[k] for k in ("orders", "payments", "notifications")} == expected
    via = Via(nginx.addr)
    assert call(via, "GET", "/api/stats")[1] == call(survivors[0], "GET", "/api/stats")[1]
    print(f"node {victim} killed under traffic; the others had applied everything {took_over:.1f}s after it"
          f"; after a replay (generation {counts['generation']}) the database "
          f"holds {counts['orders']} orders, {counts['payments']} payments and "
          f"{counts['notifications']} notifications, as the topics do")

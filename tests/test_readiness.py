"""`/readyz` means the node can serve clients: 200 only once every part of it
is ready, with a JSON body naming each part and its state.

- In a cluster, a node is ready once it is registered with the controller and
  has the metadata image: Metadata from it lists itself and a controller, and
  an admin client made at that moment creates a topic on its first try.
  (Before, /readyz was 200 while Metadata still listed no brokers and
  controller -1, and such a client's CreateTopics timed out.)
- With the shop on the node, it is ready once the shop accepts commands
  (before, /readyz was 200 while POST /api/orders answered 503 "still
  connecting").

Each test prints the time from process start to readiness. Every process is
ended by its PID; every wait polls against a deadline.
"""

from __future__ import annotations

import threading
import time

from confluent_kafka.admin import AdminClient, NewTopic

import wire
from cluster import Cluster, free_ports
from harness import Broker, unique_topic
from shop_client import call, new_order

# Seconds a node may take to become ready (a cluster needs an election).
READY_TIMEOUT = 60.0
# The admin client's request time-out: short, so a client that has to wait
# for a controller fails instead of waiting it out.
ADMIN_REQUEST_TIMEOUT = 5.0



def ready_and_components(body: dict) -> dict:
    """The readiness part of a /readyz answer (it also describes the node)."""
    return {"ready": body["ready"], "components": body["components"]}

def poll_until_ready(node: Broker, deadline: float) -> tuple[float, dict | None, list[dict]]:
    """Poll /readyz every 10 ms until 200: (when, the 200 body, the distinct
    bodies seen before it)."""
    before: list[dict] = []
    while True:
        node._check_running("/readyz")
        try:
            status, body = node.readiness(timeout=2.0)
        except OSError:
            status, body = None, None
        now = time.monotonic()
        if status == 200:
            return now, body, before
        if status is not None and body not in before:
            before.append(body)
        if now >= deadline:
            raise TimeoutError(f"/readyz not 200 by the deadline; seen {before}")
        time.sleep(0.01)


def test_cluster_node_is_ready_only_once_metadata_and_admin_requests_work(request, tmp_path):
    cluster = Cluster(tmp_path, request)
    results: dict[int, dict] = {}

    def watch(i: int, spawned: float) -> None:
        node = cluster.nodes[i]
        out = results[i] = {}
        try:
            ready_at, body, before = poll_until_ready(node, spawned + READY_TIMEOUT)
            out.update(ready_s=ready_at - spawned, body=body, before=before)
            # At once: what a client that trusted /readyz would see.
            with wire.Connection(node.bootstrap) as conn:
                meta = wire.metadata_v4(conn, [], allow_auto_topic_creation=False)
            out["brokers"] = sorted(b[0] for b in meta["brokers"])
            out["controller"] = meta["controller_id"]
            topic = unique_topic(f"ready-{i}")
            admin = AdminClient({"bootstrap.servers": node.bootstrap})
            asked = time.monotonic()
            futures = admin.create_topics([NewTopic(topic, num_partitions=1)],
                                          request_timeout=ADMIN_REQUEST_TIMEOUT)
            try:
                futures[topic].result(timeout=ADMIN_REQUEST_TIMEOUT * 3)
                out["create"] = f"ok in {time.monotonic() - asked:.2f}s"
            except Exception as err:  # noqa: BLE001 - reported below
                out["create"] = f"failed after {time.monotonic() - asked:.2f}s: {err}"
        except Exception as err:  # noqa: BLE001 - reported below
            out["error"] = repr(err)

    threads = []
    try:
        for i in cluster.ids:
            spawned = time.monotonic()
            cluster.start_node(i, wait_ready=False)
            thread = threading.Thread(target=watch, args=(i, spawned), daemon=True)
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join(READY_TIMEOUT + ADMIN_REQUEST_TIMEOUT * 4)
        print()
        for i in cluster.ids:
            r = results.get(i, {})
            print(f"[readiness] cluster node {i}: process start to /readyz 200 "
                  f"{r.get('ready_s', float('nan')):.3f}s; states before: "
                  f"{[b and b.get('components') for b in r.get('before', [])]}; then Metadata "
                  f"brokers {r.get('brokers')}, controller {r.get('controller')}; "
                  f"CreateTopics {r.get('create')}{'; ' + r['error'] if 'error' in r else ''}")
        for i in cluster.ids:
            r = results[i]
            assert "error" not in r, f"node {i}: {r['error']}"
            assert i in r["brokers"], f"node {i} ready but Metadata lists brokers {r['brokers']}"
            assert r["controller"] != -1, f"node {i} ready but Metadata names no controller"
            assert r["controller"] in r["brokers"], (
                f"node {i} ready but its controller {r['controller']} is not among "
                f"the brokers {r['brokers']}")
            assert r["create"].startswith("ok"), f"node {i}: CreateTopics {r['create']}"
            assert ready_and_components(r["body"]) == {"ready": True,
                                 "components": {"kafka": "ready", "cluster": "ready"}}, r["body"]
            for body in r["before"]:
                assert body is not None and body["ready"] is False, body
                assert body["components"]["cluster"] != "ready", body
    finally:
        cluster.kill_all()


def test_node_with_shop_is_ready_only_when_the_shop_accepts_orders(request, tmp_path):
    """Its own Kafka listener as the shop's cluster, with auto-creation off:
    the shop creates its topics itself. At the first /readyz 200, an order
    is accepted (202, never 503)."""
    node = Broker(tmp_path / "node", ["--shop", "true", "--auto-create-topics", "false"])
    request.node._sluice_brokers = [node]
    try:
        spawned = time.monotonic()
        node.start(wait_ready=False)
        ready_at, body, before = poll_until_ready(node, spawned + READY_TIMEOUT)
        status, answer = call(node, "POST", "/api/orders", new_order())
        print(f"\n[readiness] single node with the shop: process start to /readyz 200 "
              f"{ready_at - spawned:.3f}s; states before: "
              f"{[b and b.get('components') for b in before]}; first order: HTTP {status}")
        assert status == 202, f"/readyz was 200 but POST /api/orders answered {status}: {answer}"
        assert ready_and_components(body) == {"ready": True, "components": {"kafka": "ready", "shop": "ready"}}, body
        for seen in before:
            assert seen is not None and seen["components"]["shop"] != "ready", seen
    finally:
        node.kill9()


def test_shop_waiting_for_its_kafka_cluster_keeps_the_node_unready(request, tmp_path):
    """The shop's Kafka (given by --bootstrap) is not up yet: /readyz says
    503 with the shop "connecting" for as long as orders get 503; once that
    cluster starts (auto-creation off there), the first /readyz 200 comes
    with orders accepted."""
    (port,) = free_ports(1)
    shop = Broker(tmp_path / "shop", ["--bootstrap", f"127.0.0.1:{port}"])
    kafka = Broker(tmp_path / "kafka", ["--shop", "false", "--auto-create-topics", "false"])
    kafka.kafka_addr = f"127.0.0.1:{port}"
    request.node._sluice_brokers = [shop, kafka]
    try:
        shop.start(wait_ready=False)
        status, body = shop.readiness()
        order_status, _ = call(shop, "POST", "/api/orders", new_order())
        print(f"\n[readiness] shop without its Kafka: /readyz {status} {body}; "
              f"POST /api/orders {order_status}")
        assert order_status == 503
        assert status == 503, f"/readyz {status} while the shop answers 503"
        assert ready_and_components(body) == {"ready": False,
                        "components": {"kafka": "ready", "shop": "connecting"}}, body

        started = time.monotonic()
        kafka.start()
        ready_at, body, _ = poll_until_ready(shop, started + READY_TIMEOUT)
        order_status, answer = call(shop, "POST", "/api/orders", new_order())
        print(f"[readiness] its Kafka started: shop node ready {ready_at - started:.3f}s later; "
              f"first order: HTTP {order_status}")
        assert order_status == 202, answer
        assert ready_and_components(body) == {"ready": True, "components": {"kafka": "ready", "shop": "ready"}}, body
    finally:
        shop.kill9()
        kafka.kill9()


def test_readyz_names_each_component(request, tmp_path):
    """A single node without the shop has one component, the Kafka listener;
    /healthz stays a plain liveness answer."""
    node = Broker(tmp_path / "node", ["--shop", "false"])
    request.node._sluice_brokers = [node]
    try:
        spawned = time.monotonic()
        node.start(wait_ready=False)
        ready_at, body, _ = poll_until_ready(node, spawned + READY_TIMEOUT)
        print(f"\n[readiness] single node without the shop: process start to /readyz 200 "
              f"{ready_at - spawned:.3f}s")
        assert ready_and_components(body) == {"ready": True, "components": {"kafka": "ready"}}
        assert node.http_get("/healthz") == (200, b"ok\n")
    finally:
        node.kill9()

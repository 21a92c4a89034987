"""Helpers for the shop tests (`test_shop_*.py`): JSON over HTTP, a WebSocket
listener in a thread, reading the shop's topics with kafka-python, and an
*independent* model computed from those topics, to compare with what the
shop's read model and `/api/stats` say.

The independent model follows the rules documented in the OpenAPI
description and `src/app/model.rs`, written again here from the events
themselves rather than from the shop's code.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

from kafka import KafkaConsumer, TopicPartition
from websockets.sync.client import connect as ws_connect

from harness import Broker, wait_until

SHOP_TOPICS = ["orders", "payments", "deliveries", "notifications"]
MODEL_TOPICS = ["orders", "payments", "deliveries"]


def call(node: Broker, method: str, path: str, body=None, raw: bytes | None = None,
         timeout: float = 15.0):
    """One HTTP request to the node's HTTP listener; returns (status, parsed JSON or text)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(f"http://{node.http}{path}", data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, payload = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, payload = err.code, err.read()
    try:
        return status, json.loads(payload) if payload else None
    except ValueError:
        return status, payload.decode("utf-8", "replace")


def wait_shop_ready(node: Broker, timeout: float = 30.0) -> dict:
    """Poll `/api/status` until the shop is connected to Kafka; its body.
    (A node started by `Broker.start()` already is: its /readyz waits for the shop.)"""
    def ready():
        try:
            status, body = call(node, "GET", "/api/status", timeout=2)
        except OSError:
            return None
        return body if status == 200 and body.get("ready") else None
    return wait_until(ready, timeout, interval=0.1, what="the shop to be ready")


def new_order(customer: str = "Ada Lovelace", items=None, currency: str = "EUR") -> dict:
    return {
        "customer": customer,
        "items": items or [{"sku": "KB-1", "quantity": 2, "price": 19.99},
                           {"sku": "MUG", "quantity": 1, "price": 12.5}],
        "currency": currency,
    }


def place_order(node: Broker, **kwargs) -> dict:
    status, body = call(node, "POST", "/api/orders", new_order(**kwargs))
    assert status == 202, body
    return body


def wait_order(node: Broker, order_id: str, predicate=lambda o: True, timeout: float = 15.0) -> dict:
    """Poll GET /api/orders/{id} until it exists and `predicate` holds."""
    def found():
        status, body = call(node, "GET", f"/api/orders/{order_id}")
        return body if status == 200 and predicate(body) else None
    return wait_until(found, timeout, interval=0.05, what=f"order {order_id} in the read model")


def end_offsets(bootstrap: str, topics=SHOP_TOPICS) -> dict[tuple[str, int], int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(t, p) for t in topics
                 for p in sorted(consumer.partitions_for_topic(t) or [])]
        return {(tp.topic, tp.partition): o for tp, o in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def read_topics(bootstrap: str, topics=SHOP_TOPICS, timeout: float = 60.0) -> list[dict]:
    """Every committed record of `topics` (read_committed: the shop writes
    payment outcomes in transactions, and the read model reads only what
    commits), per partition in offset order: dicts with topic, partition,
    offset, key, value (parsed JSON or None)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             fetch_max_wait_ms=100, max_poll_records=5000,
                             isolation_level="read_committed")
    try:
        parts = [TopicPartition(t, p) for t in topics
                 for p in sorted(consumer.partitions_for_topic(t) or [])]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        out: list[dict] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            assert time.monotonic() < deadline, "timed out reading the shop's topics"
            for tp, records in consumer.poll(timeout_ms=200).items():
                for r in records:
                    try:
                        value = json.loads(r.value) if r.value is not None else None
                    except ValueError:
                        value = None
                    out.append({"topic": tp.topic, "partition": tp.partition, "offset": r.offset,
                                "key": r.key, "value": value})
        return out
    finally:
        consumer.close()


def record_ends(bootstrap: str) -> dict[tuple[str, int], int]:
    """Per partition of the shop's topics, the offset after its last committed
    record (a transaction's COMMIT or ABORT marker after it is not a record:
    a node counts it as applied on the partitions it projects, the offsets a
    shared database stores stop at the record)."""
    ends = {tp: 0 for tp in end_offsets(bootstrap)}
    for r in read_topics(bootstrap):
        key = (r["topic"], r["partition"])
        ends[key] = max(ends.get(key, 0), r["offset"] + 1)
    return ends


def wait_caught_up(node: Broker, bootstrap: str, timeout: float = 60.0) -> None:
    """Poll until the projector has applied every committed record of the shop's topics."""
    ends = record_ends(bootstrap)

    def caught_up():
        status, body = call(node, "GET", "/api/status")
        if status != 200:
            return False
        applied = {(a["topic"], a["partition"]): a["next_offset"] for a in body["applied"]}
        return all(applied.get(tp, 0) >= end for tp, end in ends.items())
    try:
        wait_until(caught_up, timeout, interval=0.1, what="the projector to apply every record")
    except TimeoutError:
        status, body = call(node, "GET", "/api/status")
        applied = {(a["topic"], a["partition"]): a["next_offset"] for a in body.get("applied", [])} \
            if status == 200 else {}
        behind = {f"{t}-{p}": (applied.get((t, p)), end) for (t, p), end in ends.items()
                  if applied.get((t, p), 0) < end}
        raise TimeoutError(f"timed out after {timeout}s waiting for the projector to apply every "
                           f"record; behind (applied, end): {behind}") from None


DELIVERY_TO_ORDER = {
    "scheduled": "scheduled", "shipped": "shipped", "in_transit": "in_transit",
    "out_for_delivery": "out_for_delivery", "delivered": "delivered", "failed": "delivery_failed",
}
DELIVERY_TYPES = {
    "DeliveryScheduled": "scheduled", "DeliveryShipped": "shipped",
    "DeliveryInTransit": "in_transit", "DeliveryOutForDelivery": "out_for_delivery",
    "DeliveryDelivered": "delivered", "DeliveryFailed": "failed",
}
PAYMENT_TYPES = {"PaymentAuthorized": "authorized", "PaymentFailed": "failed",
                 "PaymentRefunded": "refunded"}


def independent_model(records: list[dict]) -> dict:
    """Orders and aggregates recomputed from the topics' records."""
    orders: dict[str, dict] = {}
    events_by_topic: Counter = Counter()
    payments_by_status: Counter = Counter()
    revenue_cents: Counter = Counter()
    delivery_events = 0
    for r in records:
        if r["topic"] == "notifications":
            continue
        ev = r["value"]
        if not isinstance(ev, dict) or "order_id" not in ev:
            continue
        o = orders.setdefault(ev["order_id"], {"created": None, "cancelled": False,
                                               "payments": [], "timeline": [], "ids": set()})
        if ev["event_id"] in o["ids"]:
            continue
        kind = ev["type"]
        if kind == "OrderCreated":
            if o["created"] is not None:
                continue
            o["created"] = ev["data"]
        elif kind == "OrderCancelled":
            if o["cancelled"]:
                continue
            o["cancelled"] = True
        elif kind in PAYMENT_TYPES:
            status = PAYMENT_TYPES[kind]
            o["payments"].append(status)
            payments_by_status[status] += 1
            amount = ev["data"]["amount_cents"]
            currency = ev["data"]["currency"]
            # Per currency: amounts of different currencies are never added.
            revenue_cents[currency] += (amount if status == "authorized"
                                        else -amount if status == "refunded" else 0)
        elif kind in DELIVERY_TYPES:
            o["timeline"].append(DELIVERY_TYPES[kind])
            delivery_events += 1
        else:
            continue
        o["ids"].add(ev["event_id"])
        events_by_topic[r["topic"]] += 1

    def status(o):
        if o["cancelled"]:
            return "cancelled"
        if "refunded" in o["payments"]:
            return "refunded"
        if o["timeline"]:
            return DELIVERY_TO_ORDER[o["timeline"][-1]]
        if "authorized" in o["payments"]:
            return "paid"
        if o["payments"] and o["payments"][-1] == "failed":
            return "payment_failed"
        return "created"

    created = {oid: o for oid, o in orders.items() if o["created"] is not None}
    return {
        "orders": {oid: {"status": status(o), "timeline": o["timeline"],
                         "payments": o["payments"], "total_cents": o["created"]["total_cents"]}
                   for oid, o in created.items()},
        "orders_total": len(created),
        "orders_by_status": dict(Counter(status(o) for o in created.values())),
        "payments_by_status": dict(payments_by_status),
        "revenue_cents": {c: v for c, v in revenue_cents.items()},
        "deliveries_by_status": dict(Counter(o["timeline"][-1] for o in orders.values() if o["timeline"])),
        "delivery_events": delivery_events,
        "events_by_topic": dict(events_by_topic),
    }


def shop_model(node: Broker) -> dict:
    """The shop's own view, in the shape of `independent_model`."""
    status, stats = call(node, "GET", "/api/stats")
    assert status == 200, stats
    orders: dict[str, dict] = {}
    offset = 0
    while True:
        status, page = call(node, "GET", f"/api/orders?limit=500&offset={offset}")
        assert status == 200, page
        for o in page["orders"]:
            orders[o["order_id"]] = o
        offset += len(page["orders"])
        if not page["orders"] or offset >= page["total"]:
            break
    return {"stats": stats, "orders": orders}


def assert_model_matches(node: Broker, bootstrap: str) -> dict:
    """The shop's read model and /api/stats equal the independent count."""
    expected = independent_model(read_topics(bootstrap))
    got = shop_model(node)
    stats = got["stats"]
    assert stats["orders"]["total"] == expected["orders_total"]
    assert stats["orders"]["by_status"] == expected["orders_by_status"]
    assert stats["payments"]["by_status"] == expected["payments_by_status"]
    assert stats["revenue_cents"] == expected["revenue_cents"], "revenue per currency"
    assert stats["revenue"] == {c: v / 100 for c, v in expected["revenue_cents"].items()}
    assert stats["deliveries"]["by_status"] == expected["deliveries_by_status"]
    assert stats["deliveries"]["events"] == expected["delivery_events"]
    assert stats["events"]["by_topic"] == expected["events_by_topic"]
    assert stats["events"]["duplicates"] == 0
    assert set(got["orders"]) == set(expected["orders"])
    mismatched = [oid for oid, o in expected["orders"].items()
                  if got["orders"][oid]["status"] != o["status"]
                  or round(got["orders"][oid]["total"] * 100) != o["total_cents"]]
    assert not mismatched, f"{len(mismatched)} orders differ, e.g. {mismatched[:3]}"
    return expected


class WsListener:
    """A WebSocket client in a thread that keeps every message it receives."""

    def __init__(self, node: Broker):
        self.url = f"ws://{node.http}/ws"
        self.messages: list[dict] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.socket = ws_connect(self.url, open_timeout=10, max_size=64 * 1024 * 1024)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    text = self.socket.recv(timeout=0.2)
                except TimeoutError:
                    continue
                with self.lock:
                    self.messages.append(json.loads(text))
        except BaseException as err:  # reported by wait_for
            if not self.stop.is_set():
                self.error = err

    def wait_for(self, predicate, timeout: float = 15.0, what: str = "a WebSocket message") -> dict:
        def match():
            assert self.error is None, f"WebSocket failed: {self.error!r}"
            with self.lock:
                for m in self.messages:
                    if predicate(m):
                        return m
            return None
        return wait_until(match, timeout, interval=0.02, what=what)

    def close(self) -> None:
        self.stop.set()
        try:
            self.socket.close()
        finally:
            self.thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

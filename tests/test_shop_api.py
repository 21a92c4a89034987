"""The shop's REST API and WebSocket against a real `sluice serve`: commands
answer 202 with where the event was written, the event is in the topic (read
with kafka-python), WebSocket clients are told, the read model shows it;
every bad input gets its documented 4xx and writes nothing; the OpenAPI
document matches the routes; the consumers are groups Kafka tools can see."""

from __future__ import annotations

import json
import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from harness import Broker, wait_until
from shop_client import (
    WsListener,
    call,
    end_offsets,
    new_order,
    place_order,
    wait_order,
)

DELIVERY_STEPS = ["scheduled", "shipped", "in_transit", "out_for_delivery", "delivered"]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    node = Broker(tmp_path_factory.mktemp("shop-api"))
    try:
        node.start()  # /readyz 200: the shop accepts commands
        yield node
    finally:
        node.stop()


def read_record(bootstrap: str, topic: str, partition: int, offset: int) -> dict:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             fetch_max_wait_ms=100)
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for record in consumer.poll(timeout_ms=200).get(tp, []):
                if record.offset == offset:
                    return {"key": record.key, "value": json.loads(record.value)}
        raise AssertionError(f"{topic}-{partition}@{offset} not found")
    finally:
        consumer.close()


def test_posted_order_is_in_the_topic_pushed_over_websocket_and_queryable(shop):
    with WsListener(shop) as ws:
        snapshot = ws.wait_for(lambda m: m["event"] == "snapshot", what="the snapshot")
        assert set(snapshot["data"]) == {"stats", "orders", "payments", "deliveries"}

        accepted = place_order(shop, customer="Grace Hopper")
        assert accepted["topic"] == "orders"
        assert isinstance(accepted["offset"], int) and accepted["offset"] >= 0
        assert isinstance(accepted["partition"], int)
        order_id = accepted["order_id"]

        record = read_record(shop.bootstrap, "orders", accepted["partition"], accepted["offset"])
        assert record["key"] == order_id.encode()
        event = record["value"]
        assert event["type"] == "OrderCreated"
        assert event["order_id"] == order_id
        assert event["event_id"] == accepted["event_id"]
        assert event["schema_version"] == 1
        assert event["data"]["total_cents"] == 2 * 1999 + 1250

        pushed = ws.wait_for(lambda m: m["event"] == "new_order"
                             and m["data"]["order_id"] == order_id, what="new_order")
        assert pushed["data"]["customer"] == "Grace Hopper"
        assert pushed["data"]["status"] == "created"

    order = wait_order(shop, order_id)
    assert order["status"] == "created"
    assert order["total"] == pytest.approx(52.48)
    assert order["items"][0] == {"sku": "KB-1", "quantity": 2, "price": 19.99}
    assert order["payments"] == [] and order["timeline"] == []


def test_payment_and_delivery_flow_to_delivered_with_the_timeline_in_order(shop):
    with WsListener(shop) as ws:
        order_id = place_order(shop)["order_id"]
        status, paid = call(shop, "POST", "/api/payments",
                            {"order_id": order_id, "amount": 52.48, "method": "card"})
        assert status == 202, paid
        # The charge is a request the payment processor decides on; the
        # answer waits for its outcome (`pending` if it is not there yet).
        assert paid["topic"] == "payment-requests" and paid["payment_id"]
        assert paid["status"] == "authorized", paid
        offsets = []
        for step in DELIVERY_STEPS:
            status, body = call(shop, "POST", "/api/deliveries",
                                {"order_id": order_id, "status": step, "carrier": "DHL",
                                 "location": f"hub-{step}"})
            assert status == 202, body
            assert body["topic"] == "deliveries"
            offsets.append(body["offset"])
        assert offsets == sorted(offsets), "one order's events stay in one partition, in order"

        ws.wait_for(lambda m: m["event"] == "new_payment" and m["data"]["order_id"] == order_id,
                    what="new_payment")
        ws.wait_for(lambda m: m["event"] == "delivery_update"
                    and m["data"]["order_id"] == order_id and m["data"]["status"] == "delivered",
                    what="delivery_update delivered")
        ws.wait_for(lambda m: m["event"] == "order_updated"
                    and m["data"]["order_id"] == order_id and m["data"]["status"] == "delivered",
                    what="order_updated delivered")
        note = ws.wait_for(lambda m: m["event"] == "notification"
                           and m["data"]["order_id"] == order_id, what="a delivered notification")
        assert note["data"]["kind"] == "delivered"

    order = wait_order(shop, order_id, lambda o: o["status"] == "delivered")
    assert [s["status"] for s in order["timeline"]] == DELIVERY_STEPS
    assert [s["location"] for s in order["timeline"]] == [f"hub-{s}" for s in DELIVERY_STEPS]
    stamps = [s["timestamp"] for s in order["timeline"]]
    assert stamps == sorted(stamps)
    assert order["payments"][0]["status"] == "authorized"
    assert order["paid"] == pytest.approx(52.48)

    status, timeline = call(shop, "GET", f"/api/deliveries/{order_id}/timeline")
    assert status == 200
    assert [s["status"] for s in timeline["timeline"]] == DELIVERY_STEPS
    assert timeline["carrier"] == "DHL"

    status, delivered = call(shop, "GET", "/api/deliveries?status=delivered&carrier=dhl&limit=500")
    assert status == 200 and order_id in [d["order_id"] for d in delivered["deliveries"]]
    status, payments = call(shop, "GET", f"/api/payments?order_id={order_id}")
    assert status == 200 and payments["total"] == 1
    status, listed = call(shop, "GET", "/api/orders?status=delivered&limit=500")
    assert status == 200 and order_id in [o["order_id"] for o in listed["orders"]]


def test_failed_payment_notifies_and_cancelled_order_cannot_be_delivered(shop):
    with WsListener(shop) as ws:
        order_id = place_order(shop)["order_id"]
        status, body = call(shop, "POST", "/api/payments",
                            {"order_id": order_id, "amount": 52.48, "method": "paypal",
                             "status": "failed", "reason": "card declined"})
        assert status == 202, body
        note = ws.wait_for(lambda m: m["event"] == "notification"
                           and m["data"]["order_id"] == order_id, what="payment_failed notification")
        assert note["data"]["kind"] == "payment_failed"
        status, body = call(shop, "POST", f"/api/orders/{order_id}/cancel", {"reason": "changed mind"})
        assert status == 202, body
    wait_order(shop, order_id, lambda o: o["status"] == "cancelled")


def prepared_orders(shop) -> dict:
    """An unpaid, a cancelled and a delivered order, with the read model caught up."""
    unpaid = place_order(shop)["order_id"]
    cancelled = place_order(shop)["order_id"]
    assert call(shop, "POST", f"/api/orders/{cancelled}/cancel")[0] == 202
    delivered = place_order(shop)["order_id"]
    assert call(shop, "POST", "/api/payments",
                {"order_id": delivered, "amount": 52.48, "method": "card"})[0] == 202
    for step in DELIVERY_STEPS:
        assert call(shop, "POST", "/api/deliveries", {"order_id": delivered, "status": step})[0] == 202
    wait_order(shop, unpaid)
    wait_order(shop, cancelled, lambda o: o["status"] == "cancelled")
    wait_order(shop, delivered, lambda o: o["status"] == "delivered")
    return {"unpaid": unpaid, "cancelled": cancelled, "delivered": delivered}


def bad_requests(ids: dict) -> list[tuple[str, str, str, object, int, str, list[str]]]:
    """(name, method, path, body, status, code, fields that must be named)."""
    unpaid, cancelled, delivered = ids["unpaid"], ids["cancelled"], ids["delivered"]
    good_item = {"sku": "A", "quantity": 1, "price": 1}
    return [
        ("malformed json", "POST", "/api/orders", b'{"customer": "x", items: [}', 400, "invalid_json", []),
        ("not an object", "POST", "/api/orders", [1, 2], 400, "invalid_json", []),
        ("empty body", "POST", "/api/payments", b"", 400, "invalid_json", []),
        ("missing fields", "POST", "/api/orders", {}, 422, "validation_failed", ["customer", "items"]),
        ("wrong types", "POST", "/api/orders",
         {"customer": 7, "items": [{"sku": "A", "quantity": "2", "price": "1"}]},
         422, "validation_failed", ["customer", "items[0].quantity", "items[0].price"]),
        ("zero quantity", "POST", "/api/orders",
         {"customer": "c", "items": [{"sku": "A", "quantity": 0, "price": 1}]},
         422, "validation_failed", ["items[0].quantity"]),
        ("negative price", "POST", "/api/orders",
         {"customer": "c", "items": [{"sku": "A", "quantity": 1, "price": -0.01}]},
         422, "validation_failed", ["items[0].price"]),
        ("unknown currency", "POST", "/api/orders",
         {"customer": "c", "items": [good_item], "currency": "DOGE"}, 422, "validation_failed", ["currency"]),
        ("no items", "POST", "/api/orders/create", {"customer": "c", "items": []},
         422, "validation_failed", ["items"]),
        ("negative amount", "POST", "/api/payments",
         {"order_id": unpaid, "amount": -5, "method": "card"}, 422, "validation_failed", ["amount"]),
        ("unknown method", "POST", "/api/payments",
         {"order_id": unpaid, "amount": 5, "method": "barter"}, 422, "validation_failed", ["method"]),
        ("missing payment fields", "POST", "/api/payments", {"amount": "x"},
         422, "validation_failed", ["order_id", "amount", "method"]),
        ("unknown delivery status", "POST", "/api/deliveries",
         {"order_id": unpaid, "status": "teleported"}, 422, "validation_failed", ["status"]),
        ("payment for unknown order", "POST", "/api/payments",
         {"order_id": "ord-does-not-exist", "amount": 5, "method": "card"}, 404, "not_found", []),
        ("delivery for unknown order", "POST", "/api/deliveries",
         {"order_id": "ord-does-not-exist", "status": "scheduled"}, 404, "not_found", []),
        ("cancel unknown order", "POST", "/api/orders/ord-nope/cancel", None, 404, "not_found", []),
        ("get unknown order", "GET", "/api/orders/ord-nope", None, 404, "not_found", []),
        ("timeline of unknown order", "GET", "/api/deliveries/ord-nope/timeline", None, 404, "not_found", []),
        ("delivering a cancelled order", "POST", "/api/deliveries",
         {"order_id": cancelled, "status": "scheduled"}, 409, "invalid_transition", []),
        ("paying a cancelled order", "POST", "/api/payments",
         {"order_id": cancelled, "amount": 52.48, "method": "card"}, 409, "invalid_transition", []),
        ("delivering an unpaid order", "POST", "/api/deliveries",
         {"order_id": unpaid, "status": "scheduled"}, 409, "invalid_transition", []),
        ("shipping after delivered", "POST", "/api/deliveries",
         {"order_id": delivered, "status": "shipped"}, 409, "invalid_transition", []),
        ("cancelling a delivered order", "POST", f"/api/orders/{delivered}/cancel", None,
         409, "invalid_transition", []),
        ("paying twice", "POST", "/api/payments",
         {"order_id": delivered, "amount": 1, "method": "card"}, 409, "invalid_transition", []),
        ("refund above the amount paid", "POST", "/api/payments",
         {"order_id": delivered, "amount": 1000, "method": "card", "status": "refunded"},
         422, "amount_mismatch", []),
        ("payment below the amount due", "POST", "/api/payments",
         {"order_id": unpaid, "amount": 3, "method": "card"}, 422, "amount_mismatch", []),
        ("refund of an unpaid order", "POST", f"/api/orders/{unpaid}/refund", None,
         409, "invalid_transition", []),
        ("refund of an unknown order", "POST", "/api/orders/ord-nope/refund", None, 404, "not_found", []),
        ("oversized body", "POST", "/api/orders",
         {"customer": "x" * 200_000, "items": [good_item]}, 413, "payload_too_large", []),
        ("bad page size", "GET", "/api/orders?limit=0", None, 422, "invalid_query", ["limit"]),
        ("bad status filter", "GET", "/api/deliveries?status=lost", None, 422, "invalid_query", ["status"]),
        ("bad date filter", "GET", "/api/deliveries?from=yesterday", None, 422, "invalid_query", ["from"]),
        ("simulator without enabled", "POST", "/api/simulator", {"rate_per_sec": 5},
         422, "validation_failed", ["enabled"]),
    ]


def test_every_bad_input_gets_its_documented_error_and_nothing_is_logged(shop):
    ids = prepared_orders(shop)
    before = end_offsets(shop.bootstrap)
    failures = []
    for name, method, path, body, want_status, want_code, want_fields in bad_requests(ids):
        raw = body if isinstance(body, bytes) else None
        status, answer = call(shop, method, path, None if raw is not None else body, raw=raw)
        error = answer.get("error") if isinstance(answer, dict) else None
        if status != want_status or not error or error.get("code") != want_code \
                or not isinstance(error.get("message"), str) \
                or not set(want_fields) <= set(error.get("fields") or {}):
            failures.append(f"{name}: got {status} {answer!r}")
    assert not failures, "\n".join(failures)
    assert end_offsets(shop.bootstrap) == before, "a rejected request wrote to the log"


def test_openapi_document_lists_every_route_and_each_answers(shop):
    status, doc = call(shop, "GET", "/api/openapi.json")
    assert status == 200
    assert doc["openapi"].startswith("3.")
    assert "snapshot" in doc["info"]["description"]
    paths = doc["paths"]
    for required in ["/api/orders", "/api/orders/create", "/api/orders/{order_id}",
                     "/api/payments", "/api/deliveries", "/api/deliveries/{order_id}/timeline",
                     "/api/stats", "/api/simulator", "/api/replay", "/api/openapi.json", "/ws"]:
        assert required in paths, required
    before = end_offsets(shop.bootstrap)
    for path, item in paths.items():
        for method in item:
            concrete = path.replace("{order_id}", "ord-nope")
            if path == "/api/replay" and method == "post":
                concrete += "?wait=maybe"  # rejected before anything starts
            status, body = call(shop, method.upper(), concrete, raw=b"" if method == "post" else None)
            assert status != 405, f"{method} {path} is not routed"
            if status == 404:
                assert isinstance(body, dict) and body["error"]["code"] == "not_found", \
                    f"{method} {path} is not routed"
    assert end_offsets(shop.bootstrap) == before


def test_consumers_are_groups_that_kafka_tools_can_describe(shop):
    status, info = call(shop, "GET", "/api/status")
    projector, notifier = info["groups"]["projector"], info["groups"]["notifier"]
    admin = KafkaAdminClient(bootstrap_servers=shop.bootstrap)
    try:
        def listed():
            groups = {g["group_id"]: g for g in admin.list_groups()}
            return {projector, notifier} <= set(groups) and all(
                groups[g]["protocol_type"] == "consumer" for g in (projector, notifier))
        wait_until(listed, 30, what="the shop's groups to be listed")
        described = admin.describe_groups([projector, notifier])
        for group, topics in [(projector, {"orders", "payments", "deliveries", "notifications"}),
                              (notifier, {"payments", "deliveries"})]:
            d = described[group]
            assert d["group_state"] == "Stable", d
            assert d["protocol_data"] == "range"
            [member] = d["members"]
            subscribed = set(member["member_metadata"]["topics"])
            assert subscribed == topics
            assigned = {a["topic"] for a in member["member_assignment"]["assigned_partitions"]}
            assert assigned == topics
        # The projector commits what it applied; the group's offsets are visible.
        wait_until(lambda: admin.list_group_offsets({projector: None})[projector], 30,
                   what="committed projector offsets")
    finally:
        admin.close()


def test_simulator_switch_and_stats_shape(shop):
    status, body = call(shop, "POST", "/api/simulator", {"enabled": True, "rate_per_sec": 20})
    assert status == 200 and body["enabled"] is True and body["rate_per_sec"] == 20
    try:
        wait_until(lambda: call(shop, "GET", "/api/simulator")[1]["events_sent"] >= 10, 20,
                   what="simulated events")
    finally:
        status, body = call(shop, "POST", "/api/simulator", {"enabled": False})
        assert status == 200 and body["enabled"] is False
    status, stats = call(shop, "GET", "/api/stats")
    assert status == 200
    for key in ["orders", "revenue", "payments", "deliveries", "per_minute"]:
        assert key in stats
    assert stats["per_minute"] and {"minute", "orders", "revenue"} <= set(stats["per_minute"][-1])

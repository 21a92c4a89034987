"""The shop's money against a real `sluice serve`: a payment must be exactly
what is due on the order (anything else is 422 `amount_mismatch` with the
amount due and writes nothing), a refund returns exactly what was paid
(`POST /api/orders/{id}/refund`), and revenue is kept per currency: the
`/api/stats` figures per currency equal the sum over the payment events of
that currency read from the `payments` topic with kafka-python, before and
after a replay of the read model."""

from __future__ import annotations

from collections import Counter

import pytest

from harness import Broker
from shop_client import (
    assert_model_matches,
    call,
    end_offsets,
    place_order,
    read_topics,
    wait_caught_up,
    wait_order,
)

TEN_EUROS = [{"sku": "TEN", "quantity": 1, "price": 10}]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    node = Broker(tmp_path_factory.mktemp("shop-money"))
    try:
        node.start()  # /readyz 200: the shop accepts commands
        yield node
    finally:
        node.stop()


def pay(shop, order_id: str, amount, **extra):
    return call(shop, "POST", "/api/payments",
                {"order_id": order_id, "amount": amount, "method": "card", **extra})


def test_underpayment_and_overpayment_get_422_with_the_amount_due_and_write_nothing(shop):
    order_id = place_order(shop, items=TEN_EUROS, currency="EUR")["order_id"]
    wait_order(shop, order_id)
    before = end_offsets(shop.bootstrap)
    for amount in [3, 0, 9.99, 10.01, 100]:
        status, body = pay(shop, order_id, amount)
        assert status == 422, (amount, body)
        error = body["error"]
        assert error["code"] == "amount_mismatch", body
        assert error["amount_due"] == 10.0 and error["amount_due_cents"] == 1000, body
        assert error["currency"] == "EUR", body
        assert "10.00" in error["message"], body
    # A failed attempt is for the amount due too.
    status, body = pay(shop, order_id, 3, status="failed", reason="declined")
    assert status == 422 and body["error"]["code"] == "amount_mismatch", body
    assert end_offsets(shop.bootstrap) == before, "a refused payment wrote to the log"
    order = wait_order(shop, order_id)
    assert order["status"] == "created" and order["payments"] == []


def test_the_exact_payment_after_a_wrong_one_is_accepted_and_a_second_is_refused(shop):
    order_id = place_order(shop, items=TEN_EUROS, currency="EUR")["order_id"]
    assert pay(shop, order_id, 3)[0] == 422
    status, body = pay(shop, order_id, 10)
    assert status == 202, body
    order = wait_order(shop, order_id, lambda o: o["status"] == "paid")
    assert order["paid"] == 10.0
    status, body = pay(shop, order_id, 10)
    assert status == 409 and body["error"]["code"] == "invalid_transition", body
    assert "already paid" in body["error"]["message"]


def test_refund_returns_what_was_paid_once(shop):
    order_id = place_order(shop, currency="USD")["order_id"]  # 52.48 USD
    assert pay(shop, order_id, 52.48, method="paypal")[0] == 202
    wait_order(shop, order_id, lambda o: o["status"] == "paid")
    # A refund through /api/payments must name exactly what was paid.
    status, body = pay(shop, order_id, 10, status="refunded")
    assert status == 422, body
    assert body["error"]["code"] == "amount_mismatch"
    assert body["error"]["amount_refundable"] == 52.48
    assert body["error"]["amount_refundable_cents"] == 5248
    assert body["error"]["currency"] == "USD"

    status, body = call(shop, "POST", f"/api/orders/{order_id}/refund", {"reason": "returned"})
    assert status == 202, body
    assert body["type"] == "PaymentRefunded" and body["topic"] == "payments"
    order = wait_order(shop, order_id, lambda o: o["status"] == "refunded")
    refund = order["payments"][-1]
    assert refund["status"] == "refunded"
    assert (refund["amount"], refund["currency"], refund["method"], refund["reason"]) == \
        (52.48, "USD", "paypal", "returned")
    assert order["paid"] == 0.0
    status, body = call(shop, "POST", f"/api/orders/{order_id}/refund")
    assert status == 409 and body["error"]["code"] == "invalid_transition", body


def payment_revenue_from_topic(bootstrap: str) -> dict[str, int]:
    """Authorized minus refunded minor units per currency, from `payments`."""
    revenue: Counter = Counter()
    seen = set()
    for r in read_topics(bootstrap, ["payments"]):
        ev = r["value"]
        if not isinstance(ev, dict) or ev.get("event_id") in seen:
            continue
        seen.add(ev["event_id"])
        sign = {"PaymentAuthorized": 1, "PaymentRefunded": -1}.get(ev["type"], 0)
        revenue[ev["data"]["currency"]] += sign * ev["data"]["amount_cents"]
    return dict(revenue)


def test_revenue_per_currency_equals_the_payment_events_before_and_after_a_replay(shop):
    for currency, amount in [("EUR", 52.48), ("USD", 52.48), ("GBP", 52.48), ("EUR", 52.48)]:
        order_id = place_order(shop, currency=currency)["order_id"]
        assert pay(shop, order_id, amount)[0] == 202
    refunded = place_order(shop, currency="GBP")["order_id"]
    assert pay(shop, refunded, 52.48)[0] == 202
    wait_order(shop, refunded, lambda o: o["status"] == "paid")
    assert call(shop, "POST", f"/api/orders/{refunded}/refund")[0] == 202
    wait_order(shop, refunded, lambda o: o["status"] == "refunded")
    wait_caught_up(shop, shop.bootstrap)

    expected = payment_revenue_from_topic(shop.bootstrap)
    assert {"EUR", "USD", "GBP"} <= set(expected), expected
    status, stats = call(shop, "GET", "/api/stats")
    assert status == 200
    assert stats["revenue_cents"] == expected, "revenue per currency, never one sum"
    assert stats["revenue"] == {c: v / 100 for c, v in expected.items()}
    minutes: Counter = Counter()
    for m in stats["per_minute"]:
        assert isinstance(m["revenue"], dict), m
        for c, v in m["revenue"].items():
            minutes[c] += round(v * 100)
    assert {c: v for c, v in minutes.items() if v} == {c: v for c, v in expected.items() if v}, \
        "the per-minute series adds up to the totals per currency"
    assert_model_matches(shop, shop.bootstrap)

    # The model rebuilt from the topics equals the live one.
    status, replay = call(shop, "POST", "/api/replay?wait=true", timeout=120)
    assert status == 200 and replay["state"] == "done", replay
    status, after = call(shop, "GET", "/api/stats")
    assert after["revenue_cents"] == expected
    assert after["per_minute"] == stats["per_minute"]
    assert_model_matches(shop, shop.bootstrap)

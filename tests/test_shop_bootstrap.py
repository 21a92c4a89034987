"""The shop speaks Kafka only through its client, so it runs against any
Kafka-compatible cluster: here a second `sluice` process (with its own shop
off) plays the external cluster."""

from __future__ import annotations

from kafka import KafkaConsumer

from shop_client import (
    WsListener,
    assert_model_matches,
    call,
    end_offsets,
    place_order,
    wait_caught_up,
    wait_order,
    wait_shop_ready,
)


def test_shop_runs_against_another_sluice_given_by_bootstrap(fresh_broker):
    cluster = fresh_broker(["--shop", "false"])
    status, _ = call(cluster, "GET", "/api/status")
    assert status == 404, "the external cluster runs no shop"

    shop = fresh_broker(["--bootstrap", cluster.bootstrap])
    info = wait_shop_ready(shop)
    assert info["bootstrap"] == cluster.bootstrap

    with WsListener(shop) as ws:
        order_id = place_order(shop)["order_id"]
        ws.wait_for(lambda m: m["event"] == "new_order" and m["data"]["order_id"] == order_id,
                    what="new_order from the external cluster")
    assert call(shop, "POST", "/api/payments",
                {"order_id": order_id, "amount": 52.48, "method": "card"})[0] == 202
    wait_order(shop, order_id, lambda o: o["status"] == "paid")

    # The events live in the external cluster, not in the shop node's own log.
    assert end_offsets(cluster.bootstrap, ["orders", "payments"]) != {}
    assert sum(end_offsets(cluster.bootstrap, ["orders"]).values()) == 1
    own = KafkaConsumer(bootstrap_servers=shop.bootstrap)
    try:
        assert "orders" not in own.topics()
    finally:
        own.close()
    wait_caught_up(shop, cluster.bootstrap)
    assert_model_matches(shop, cluster.bootstrap)

"""The read model against the log: after simulated traffic, after a kill -9
in the middle of it, and after a replay, the shop's read model and
`/api/stats` equal a count made independently from the topics with
kafka-python (no event lost, none applied twice). And under load, a
WebSocket client that falls behind skips ahead instead of growing memory."""

from __future__ import annotations

import json
import time

from websockets.sync.client import connect as ws_connect

from harness import wait_until
from shop_client import WsListener, assert_model_matches, call, wait_caught_up


def run_simulator(node, rate: float, events: int, timeout: float) -> int:
    """Run the simulator until it has sent `events` events; returns how many it sent."""
    status, body = call(node, "POST", "/api/simulator", {"enabled": True, "rate_per_sec": rate})
    assert status == 200, body
    try:
        wait_until(lambda: call(node, "GET", "/api/simulator")[1]["events_sent"] >= events,
                   timeout, interval=0.2, what=f"{events} simulated events")
    finally:
        status, body = call(node, "POST", "/api/simulator", {"enabled": False})
        assert status == 200, body
    return body["events_sent"]


def test_simulator_at_50_per_second_for_10_seconds_matches_the_topics(fresh_broker):
    node = fresh_broker()
    started = time.monotonic()
    sent = run_simulator(node, rate=50, events=500, timeout=30)
    elapsed = time.monotonic() - started
    assert sent >= 500
    assert 8.0 <= elapsed <= 20.0, f"500 events at 50/s took {elapsed:.1f}s"
    wait_caught_up(node, node.bootstrap)
    expected = assert_model_matches(node, node.bootstrap)
    total_events = sum(expected["events_by_topic"].values())
    assert total_events >= 500
    assert expected["orders_total"] > 50
    assert expected["payments_by_status"].get("authorized", 0) > 0
    assert expected["delivery_events"] > 0


def test_kill_9_during_simulation_then_restart_and_replay_match_the_topics(fresh_broker):
    node = fresh_broker()
    status, body = call(node, "POST", "/api/simulator", {"enabled": True, "rate_per_sec": 200})
    assert status == 200, body
    wait_until(lambda: call(node, "GET", "/api/simulator")[1]["events_sent"] >= 400, 30,
               interval=0.1, what="traffic before the crash")
    node.kill9()

    node.start()
    status, sim = call(node, "GET", "/api/simulator")
    assert sim["enabled"] is False, "the simulator does not restart by itself"
    wait_caught_up(node, node.bootstrap)
    before = assert_model_matches(node, node.bootstrap)
    assert before["orders_total"] > 0

    status, stats_before = call(node, "GET", "/api/stats")
    status, replay = call(node, "POST", "/api/replay?wait=true", timeout=120)
    assert status == 200, replay
    assert replay["state"] == "done" and replay["progress"] == 1.0
    assert replay["to_generation"] == replay["from_generation"] + 1
    assert replay["events_applied"] >= sum(before["events_by_topic"].values())
    status, stats_after = call(node, "GET", "/api/stats")
    assert stats_after == stats_before
    assert_model_matches(node, node.bootstrap)

    # The replayed model is the live one from now on, also after a restart.
    node.restart()
    wait_caught_up(node, node.bootstrap)
    status, stats_restarted = call(node, "GET", "/api/stats")
    assert stats_restarted == stats_before
    status, info = call(node, "GET", "/api/status")
    assert info["generation"] == replay["to_generation"]


def test_replay_reports_progress_and_refuses_a_second_one(fresh_broker):
    node = fresh_broker()
    run_simulator(node, rate=500, events=1000, timeout=30)
    wait_caught_up(node, node.bootstrap)
    status, started = call(node, "POST", "/api/replay")
    assert status == 202, started
    assert started["state"] in ("running", "swapping", "done")
    second_status, second = call(node, "POST", "/api/replay")
    if second_status == 409:
        assert second["error"]["code"] == "replay_running"
    else:
        assert second_status == 202  # the first one was already done
    done = wait_until(lambda: (lambda s: s if s["state"] in ("done", "failed") else None)(
        call(node, "GET", "/api/replay")[1]), 60, interval=0.05, what="the replay to finish")
    assert done["state"] == "done", done
    assert done["progress"] == 1.0 and done["events_total"] > 0
    assert_model_matches(node, node.bootstrap)


def test_a_websocket_client_that_falls_behind_skips_ahead_to_a_fresh_snapshot(fresh_broker):
    node = fresh_broker()
    url = f"ws://{node.http}/ws"
    with ws_connect(url, open_timeout=10, max_size=None) as slow, WsListener(node) as live:
        assert json.loads(slow.recv(timeout=10))["event"] == "snapshot"
        rss_before = node.rss_kib()
        # The slow client reads nothing while far more messages are pushed
        # than the broadcast buffer holds.
        run_simulator(node, rate=2500, events=10_000, timeout=60)
        grown_kib = node.rss_kib() - rss_before
        live.wait_for(lambda m: m["event"] == "new_order", what="live messages for a reading client")
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = json.loads(slow.recv(timeout=10))
            seen.append(message["event"])
            if message["event"] == "snapshot":
                break
        assert seen[-1] == "snapshot", f"no fresh snapshot after {len(seen)} messages"
        assert len(seen) < 20_000, "the lagging client was sent everything it missed"
    assert grown_kib < 256 * 1024, f"the node grew by {grown_kib} KiB while a client lagged"

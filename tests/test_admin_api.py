"""The console's REST API under /api/admin, driven like curl, with real
Kafka clients on the other side: topics (create, list, describe, configs,
partitions, delete), records (produce with headers; read newest first, from
a timestamp, page by page, with key, header and JSON-path filters), consumer
groups (a reset to a timestamp that a librdkafka consumer then starts at;
every group of a three-node cluster whichever node is asked), brokers, the
OpenAPI document and the /api/docs page."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer

from cluster import Cluster
from harness import Broker, unique_topic, wait_until


def call(node: Broker, method: str, path: str, body=None, timeout: float = 30.0):
    """(status, JSON body) of one request to the node's HTTP listener."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{node.http}{path}", data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode("utf-8", "replace")


def ok(node: Broker, method: str, path: str, body=None):
    status, answer = call(node, method, path, body)
    assert 200 <= status < 300, f"{method} {path} -> {status} {answer}"
    return answer


def records(node: Broker, topic: str, **params):
    q = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    return ok(node, "GET", f"/api/admin/topics/{topic}/records?{q}")


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    broker = Broker(tmp_path_factory.mktemp("admin-api"), ["--shop", "false"])
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


def test_topics_are_created_listed_described_configured_grown_and_deleted(node):
    topic = unique_topic("adm")
    created = call(node, "POST", "/api/admin/topics",
                   {"name": topic, "partitions": 2, "configs": {"retention.ms": "3600000"}})
    assert created[0] == 201, created
    assert call(node, "POST", "/api/admin/topics", {"name": topic})[0] == 409
    listed = ok(node, "GET", "/api/admin/topics")["topics"]
    row = next(t for t in listed if t["name"] == topic)
    assert row["partitions"] == 2 and row["replication_factor"] == 1 and row["messages"] == 0
    assert not any(t["internal"] for t in listed)

    detail = ok(node, "GET", f"/api/admin/topics/{topic}")
    parts = detail["partition_details"]
    assert [p["partition"] for p in parts] == [0, 1]
    for p in parts:
        assert p["leader"] == p["replicas"][0] == p["isr"][0]
        assert p["log_start_offset"] == p["high_watermark"] == p["log_end_offset"] == 0
        assert p["size_bytes"] is not None

    configs = {c["name"]: c for c in ok(node, "GET", f"/api/admin/topics/{topic}/configs")["configs"]}
    assert configs["retention.ms"]["value"] == "3600000" and not configs["retention.ms"]["default"]
    changed = ok(node, "PATCH", f"/api/admin/topics/{topic}/configs",
                 {"set": {"cleanup.policy": "compact"}, "delete": ["retention.ms"]})
    after = {c["name"]: c for c in changed["configs"]}
    assert after["cleanup.policy"]["value"] == "compact"
    assert after["retention.ms"]["default"]

    ok(node, "POST", f"/api/admin/topics/{topic}/partitions", {"count": 4})
    assert ok(node, "GET", f"/api/admin/topics/{topic}")["partitions"] == 4
    assert call(node, "POST", f"/api/admin/topics/{topic}/partitions", {"count": 2})[0] == 422

    ok(node, "DELETE", f"/api/admin/topics/{topic}")
    assert call(node, "GET", f"/api/admin/topics/{topic}")[0] == 404
    assert call(node, "DELETE", f"/api/admin/topics/{topic}")[0] == 404


def test_records_are_produced_and_found_by_header_key_json_path_and_time(node):
    topic = unique_topic("rec")
    ok(node, "POST", "/api/admin/topics", {"name": topic, "partitions": 3})
    producer = Producer({"bootstrap.servers": node.bootstrap})
    for i in range(300):
        producer.produce(topic, key=f"k{i}".encode(),
                         value=json.dumps({"customer": "Bob" if i % 7 else "Ada", "n": i}).encode(),
                         partition=i % 3)
    producer.flush(30)
    written = ok(node, "POST", f"/api/admin/topics/{topic}/records",
                 {"key": "special", "value": {"customer": "Grace", "nested": {"x": 1}},
                  "headers": [{"key": "trace", "value": "abc-123"}], "partition": 1})
    assert written["partition"] == 1 and written["offset"] == 100

    newest = records(node, topic, limit=5)
    assert len(newest["records"]) == 5
    assert newest["records"][0]["key"] == {"text": "special"}
    assert newest["next_cursor"]

    by_header = records(node, topic, header="trace=abc-123")
    assert [(r["partition"], r["offset"]) for r in by_header["records"]] == [(1, 100)]
    assert by_header["records"][0]["headers"] == [{"key": "trace", "value": {"text": "abc-123"}}]
    assert records(node, topic, header="trace=nope")["records"] == []

    by_path = records(node, topic, jsonpath='$.nested.x == 1')
    assert [r["offset"] for r in by_path["records"]] == [100]
    ada = records(node, topic, jsonpath='$.customer == "Ada"', limit=500)["records"]
    assert len(ada) == len([i for i in range(300) if i % 7 == 0])
    assert records(node, topic, key="special")["records"][0]["offset"] == 100
    big = records(node, topic, jsonpath="$.n >= 290", limit=500)["records"]
    assert sorted(json.loads(r["value"]["text"])["n"] for r in big) == list(range(290, 300))
    assert call(node, "GET", f"/api/admin/topics/{topic}/records?jsonpath=customer")[0] == 400

    # Page by page through one partition, newest first: every offset once.
    seen = []
    cursor = None
    while True:
        page = records(node, topic, partition=0, limit=40, cursor=cursor)
        seen += [r["offset"] for r in page["records"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(range(99, -1, -1))

    # From an offset, oldest first.
    forward = records(node, topic, partition=2, offset=95, limit=10)
    assert [r["offset"] for r in forward["records"]] == [95, 96, 97, 98, 99]
    assert forward["next_cursor"] is None

    # From a timestamp: only what was written after it.
    written = int(time.time() * 1000)
    wait_until(lambda: int(time.time() * 1000) > written, 2, what="the clock to move")
    mark = int(time.time() * 1000)
    wait_until(lambda: int(time.time() * 1000) > mark, 2, what="the clock to move")
    ok(node, "POST", f"/api/admin/topics/{topic}/records", {"value": "late", "partition": 2})
    late = records(node, topic, from_ts=mark)
    assert [r["value"] for r in late["records"]] == [{"text": "late"}]


def test_group_lag_counts_up_to_the_last_stable_offset(node):
    """A read_committed consumer cannot read past an open transaction: the
    group's lag stops at the last stable offset until the transaction ends."""
    topic = unique_topic("lso-lag")
    group = unique_topic("grp")
    ok(node, "POST", "/api/admin/topics", {"name": topic, "partitions": 1})
    plain = Producer({"bootstrap.servers": node.bootstrap})
    for i in range(5):
        plain.produce(topic, value=f"before-{i}".encode(), partition=0)
    assert plain.flush(30) == 0
    ok(node, "POST", f"/api/admin/groups/{group}/reset-offsets", {"topic": topic, "to": "latest"})

    txn = Producer({"bootstrap.servers": node.bootstrap, "transactional.id": f"tx-{topic}"})
    txn.init_transactions(30)
    txn.begin_transaction()
    for i in range(3):
        txn.produce(topic, value=f"in-txn-{i}".encode(), partition=0)
    assert txn.flush(30) == 0
    for i in range(2):
        plain.produce(topic, value=f"after-{i}".encode(), partition=0)
    assert plain.flush(30) == 0

    # Offsets 0-4 before, 5-7 the open transaction, 8-9 after it.
    row = ok(node, "GET", f"/api/admin/groups/{group}")["offsets"][0]
    assert (row["committed"], row["high_watermark"], row["last_stable_offset"], row["lag"]) == (5, 10, 5, 0)

    txn.commit_transaction(30)
    # The COMMIT marker at 10: everything up to it is stable, and is lag.
    row = ok(node, "GET", f"/api/admin/groups/{group}")["offsets"][0]
    assert (row["committed"], row["high_watermark"], row["last_stable_offset"], row["lag"]) == (5, 11, 11, 6)


def test_reset_to_a_timestamp_is_where_a_librdkafka_consumer_starts(node):
    topic = unique_topic("reset")
    group = unique_topic("grp")
    ok(node, "POST", "/api/admin/topics", {"name": topic, "partitions": 2})
    producer = Producer({"bootstrap.servers": node.bootstrap})
    for i in range(20):
        producer.produce(topic, value=f"early-{i}".encode(), partition=i % 2)
    producer.flush(30)
    # librdkafka stamps a record when produce() is called, in whole milliseconds: the mark is
    # taken after the clock has left the millisecond of the last early record, and the late
    # records are produced after it has left the mark's.
    flushed = int(time.time() * 1000)
    wait_until(lambda: int(time.time() * 1000) > flushed, 2, what="the clock to move")
    mark = int(time.time() * 1000)
    wait_until(lambda: int(time.time() * 1000) > mark + 5, 2, what="the clock to move")
    for i in range(10):
        producer.produce(topic, value=f"late-{i}".encode(), partition=i % 2)
    producer.flush(30)

    # A group with committed offsets at the end of the log.
    ok(node, "POST", f"/api/admin/groups/{group}/reset-offsets", {"topic": topic, "to": "latest"})
    described = ok(node, "GET", f"/api/admin/groups/{group}")
    assert {o["committed"] for o in described["offsets"]} == {15} and described["total_lag"] == 0

    dry = ok(node, "POST", f"/api/admin/groups/{group}/reset-offsets",
             {"topic": topic, "to": "timestamp", "timestamp": mark, "dry_run": True})
    assert dry["dry_run"] and [(p["partition"], p["offset"], p["previous"]) for p in dry["partitions"]] == [(0, 10, 15), (1, 10, 15)]
    assert {o["committed"] for o in ok(node, "GET", f"/api/admin/groups/{group}")["offsets"]} == {15}

    shifted = ok(node, "POST", f"/api/admin/groups/{group}/reset-offsets",
                 {"topic": topic, "to": "shift", "shift": -3, "dry_run": True})
    assert [p["offset"] for p in shifted["partitions"]] == [12, 12]

    ok(node, "POST", f"/api/admin/groups/{group}/reset-offsets",
       {"topic": topic, "to": "timestamp", "timestamp": mark})
    lag = ok(node, "GET", f"/api/admin/groups/{group}")
    assert [(o["partition"], o["committed"], o["lag"]) for o in lag["offsets"]] == [(0, 10, 5), (1, 10, 5)]

    consumer = Consumer({"bootstrap.servers": node.bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        got: list[str] = []

        def drained():
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append(msg.value().decode())
            return len(got) >= 10
        wait_until(drained, 30, what="the consumer to read the late records")
        assert sorted(got) == sorted(f"late-{i}" for i in range(10))
        listed = ok(node, "GET", "/api/admin/groups")["groups"]
        mine = next(g for g in listed if g["group_id"] == group)
        assert mine["members"] == 1 and mine["state"] == "Stable"
        # Members present: a reset is refused (a dry run is not).
        assert call(node, "POST", f"/api/admin/groups/{group}/reset-offsets",
                    {"topic": topic, "to": "earliest"})[0] == 409
    finally:
        consumer.close()

    ok(node, "DELETE", f"/api/admin/groups/{group}/offsets/{topic}")
    assert ok(node, "GET", f"/api/admin/groups/{group}")["offsets"] == []
    ok(node, "DELETE", f"/api/admin/groups/{group}")
    assert call(node, "GET", f"/api/admin/groups/{group}")[0] == 404


def test_brokers_openapi_and_docs_page(node):
    brokers = ok(node, "GET", "/api/admin/brokers")
    assert brokers["mode"] == "single-node"
    (b,) = brokers["brokers"]
    assert b["alive"] and b["controller"] and b["raft_role"] is None and b["raft_term"] is None
    assert b["version"] and b["uptime_s"] >= 0 and b["disk_used_bytes"] >= 0

    doc = ok(node, "GET", "/api/openapi.json")
    for path in ["/api/admin/topics", "/api/admin/topics/{name}", "/api/admin/topics/{name}/configs",
                 "/api/admin/topics/{name}/records", "/api/admin/groups", "/api/admin/groups/{id}",
                 "/api/admin/groups/{id}/reset-offsets", "/api/admin/brokers"]:
        assert path in doc["paths"], path
    with urllib.request.urlopen(f"http://{node.http}/api/docs", timeout=5) as resp:
        page = resp.read().decode()
    assert "swagger-ui-bundle.js" in page and "https://" not in page


def test_admin_routes_need_the_admin_role_with_http_auth(tmp_path, request):
    from test_http_auth import add_token, http

    tokens = {role: add_token(tmp_path, f"{role}-1", role) for role in ("viewer", "operator", "admin")}
    node = Broker(tmp_path, ["--shop", "false", "--http-auth"])
    request.node._sluice_brokers = [node]
    try:
        node.start()
        assert http(node, "GET", "/api/admin/topics")[0] == 401
        for role in ("viewer", "operator"):
            assert http(node, "GET", "/api/admin/topics", token=tokens[role])[0] == 403, role
            assert http(node, "POST", "/api/admin/topics", {"name": "x"}, token=tokens[role])[0] == 403, role
        assert http(node, "GET", "/api/admin/topics", token=tokens["admin"])[0] == 200
        status, _, body = http(node, "POST", "/api/admin/topics", {"name": unique_topic("auth")},
                               token=tokens["admin"])
        assert status == 201, body
    finally:
        node.stop()


def test_every_group_of_a_three_node_cluster_is_listed_whichever_node_is_asked(tmp_path, request):
    with Cluster(tmp_path, request) as cluster:
        cluster.start()
        topic = unique_topic("cl")
        first = cluster.nodes[1]
        ok(first, "POST", "/api/admin/topics", {"name": topic, "partitions": 3, "replication_factor": 3})
        groups = [unique_topic(f"g{i}") for i in range(12)]
        for g in groups:
            ok(first, "POST", f"/api/admin/groups/{g}/reset-offsets", {"topic": topic, "to": "earliest"})
        coordinators = set()
        for i in cluster.ids:
            listed = ok(cluster.nodes[i], "GET", "/api/admin/groups")["groups"]
            mine = {g["group_id"]: g["coordinator"] for g in listed if g["group_id"] in groups}
            assert sorted(mine) == sorted(groups), f"node {i} lists {sorted(mine)}"
            coordinators |= set(mine.values())
        assert len(coordinators) > 1, "every group had the same coordinator"
        brokers = ok(cluster.nodes[2], "GET", "/api/admin/brokers")
        assert brokers["mode"] == "cluster" and len(brokers["brokers"]) == 3
        assert sum(b["raft_role"] == "leader" for b in brokers["brokers"]) == 1
        assert all(b["version"] and b["raft_term"] >= 1 for b in brokers["brokers"])

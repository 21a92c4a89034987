"""`GET /metrics`: the Prometheus metrics of a node.

- A single node that served produce, fetch, consumer-group and shop traffic:
  its scrape passes `promtool check metrics` (Debian's `prometheus` package),
  and its values agree with the clients (records in for a topic equal what
  was produced, a group's lag is the log end offset minus its committed
  offset, shop events and HTTP routes are counted); OpenMetrics is served when
  the scraper's `Accept` asks for it.
- A three-node cluster scraped by a real Prometheus server (started here on a
  loopback port with a config derived from deploy/prometheus.yml): its
  `/api/v1/targets` shows all three nodes up.
- The Grafana dashboard (deploy/grafana/dashboards/sluice.json) uses only
  metric names that real nodes expose.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from cluster import Cluster, free_ports
from harness import Broker, unique_topic, wait_until
from shop_client import call, place_order

REPO = Path(__file__).resolve().parent.parent
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "sluice.json"

PRODUCED = 500
CONSUMED = 300
ORDERS = 3

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


def scrape(node: Broker, accept: str | None = None) -> tuple[str, str]:
    """The node's /metrics: (content type, body)."""
    req = urllib.request.Request(f"http://{node.http}/metrics")
    if accept:
        req.add_header("Accept", accept)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.headers.get("Content-Type", ""), resp.read().decode()


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text: str) -> list[tuple[str, dict, float]]:
    """Every sample of a scrape: (name, labels, value)."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"unparsable sample line: {line!r}"
        labels = dict(LABEL.findall(m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def value(text: str, name: str, **labels) -> float | None:
    """The one sample of `name` whose labels include `labels`; None if none."""
    found = [v for n, l, v in samples(text)
             if n == name and all(l.get(k) == str(w) for k, w in labels.items())]
    assert len(found) <= 1, f"{name} {labels}: {len(found)} samples"
    return found[0] if found else None


# -- a single busy node --------------------------------------------------------

@pytest.fixture(scope="module")
def busy(tmp_path_factory):
    """A node (with the shop) after produce, fetch, group and shop traffic:
    yields (node, topic, group, committed offsets by partition)."""
    node = Broker(tmp_path_factory.mktemp("metrics-single"))
    try:
        node.start()
        topic, group = unique_topic("metrics"), unique_topic("metrics-group")
        admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
        try:
            admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        finally:
            admin.close()
        producer = KafkaProducer(bootstrap_servers=node.bootstrap, acks="all")
        try:
            for i in range(PRODUCED):
                producer.send(topic, key=str(i % 7).encode(), value=b"v%d" % i)
            producer.flush(timeout=30)
        finally:
            producer.close()
        consumer = KafkaConsumer(topic, bootstrap_servers=node.bootstrap, group_id=group,
                                 enable_auto_commit=False, auto_offset_reset="earliest",
                                 max_poll_records=50, fetch_max_wait_ms=100)
        try:
            seen = 0
            deadline = time.monotonic() + 60
            while seen < CONSUMED and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=200, max_records=CONSUMED - seen).values():
                    seen += len(records)
            assert seen == CONSUMED, f"consumed {seen} of {CONSUMED}"
            consumer.commit()
            committed = {p: consumer.committed(TopicPartition(topic, p)) or 0 for p in (0, 1)}
        finally:
            consumer.close()
        out_of_range(node.bootstrap, topic)
        for i in range(ORDERS):
            place_order(node, customer=f"Metrics {i}")
        status, _ = call(node, "GET", "/api/orders")
        assert status == 200
        yield node, topic, group, committed
    finally:
        node.stop()


def out_of_range(bootstrap: str, topic: str) -> None:
    """One fetch beyond the log end (answered OFFSET_OUT_OF_RANGE; the
    consumer then resets to the earliest offset and reads a record)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", fetch_max_wait_ms=100)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 10**9)
        wait_until(lambda: consumer.poll(timeout_ms=200).get(tp), 30,
                   what="a record after the out-of-range reset")
    finally:
        consumer.close()


def test_scrape_of_a_busy_node_passes_promtool(busy):
    node = busy[0]
    content_type, text = scrape(node)
    assert content_type.startswith("text/plain; version=0.0.4"), content_type
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                             capture_output=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    families = {n for n, _, _ in samples(text)}
    print(f"\n/metrics of a busy node: {len(text)} bytes, {len(samples(text))} samples, "
          f"{len(families)} sample names; promtool: ok")


def test_values_agree_with_what_the_clients_did(busy):
    node, topic, group, committed = busy
    text = scrape(node)[1]
    assert value(text, "kafka_server_topic_messages_in_total", topic=topic) == PRODUCED
    assert value(text, "kafka_server_topic_bytes_in_total", topic=topic) > PRODUCED
    assert value(text, "kafka_server_topic_messages_out_total", topic=topic) >= CONSUMED
    ends = {p: value(text, "kafka_log_log_end_offset", topic=topic, partition=p) for p in (0, 1)}
    assert sum(ends.values()) == PRODUCED
    for p in (0, 1):
        assert value(text, "kafka_log_high_watermark", topic=topic, partition=p) == ends[p]
        assert value(text, "kafka_log_size_bytes", topic=topic, partition=p) > 0
        assert value(text, "kafka_consumergroup_current_offset",
                     group=group, topic=topic, partition=p) == committed[p]
        assert value(text, "kafka_consumergroup_lag",
                     group=group, topic=topic, partition=p) == ends[p] - committed[p]
    assert sum(committed.values()) == CONSUMED
    produces = value(text, "kafka_network_requests_total", request="Produce")
    assert produces >= 1
    assert value(text, "kafka_network_request_duration_seconds_count", request="Produce") == produces
    assert value(text, "kafka_network_request_duration_seconds_bucket",
                 request="Produce", le="+Inf") == produces
    assert value(text, "kafka_network_requests_total", request="OffsetCommit") >= 1
    assert value(text, "kafka_network_request_errors_total",
                 request="Fetch", error="OFFSET_OUT_OF_RANGE") >= 1
    assert value(text, "kafka_server_replicamanager_under_replicated_partitions") == 0
    assert value(text, "kafka_controller_offline_partitions") == 0
    assert value(text, "sluice_raft_role", role="leader") == 1
    assert value(text, "kafka_network_connections", listener="http") >= 1
    assert value(text, "process_resident_memory_bytes") > 1 << 20
    assert value(text, "process_cpu_seconds_total") > 0
    assert value(text, "process_open_fds") > 0


def test_shop_events_and_http_routes_are_counted(busy):
    node = busy[0]
    text = scrape(node)[1]
    assert value(text, "sluice_shop_events_total", type="OrderCreated") >= ORDERS
    assert value(text, "sluice_http_requests_total",
                 route="/api/orders", method="POST", status=202) == ORDERS
    assert value(text, "sluice_http_requests_total",
                 route="/api/orders", method="GET", status=200) >= 1
    assert value(text, "sluice_websocket_clients") is not None


def test_openmetrics_is_served_when_asked(busy):
    node, topic = busy[0], busy[1]
    content_type, text = scrape(node, accept=OPENMETRICS)
    assert content_type.startswith("application/openmetrics-text"), content_type
    assert text.endswith("# EOF\n")
    assert f'kafka_server_topic_messages_in_total{{topic="{topic}"}} {PRODUCED}' in text
    plain_type, plain = scrape(node, accept="text/plain")
    assert plain_type.startswith("text/plain") and "# EOF" not in plain


def test_metrics_need_a_viewer_with_http_auth(tmp_path):
    node = Broker(tmp_path / "auth", ["--http-auth", "--shop", "false"])
    try:
        node.start()
        status, _ = node.http_get("/metrics")
        assert status == 401
    finally:
        node.stop()


# -- a cluster scraped by Prometheus ------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory, request):
    with Cluster(tmp_path_factory.mktemp("metrics-cluster"), request) as c:
        c.start()
        yield c


def prometheus_config(targets: list[str]) -> str:
    """deploy/prometheus.yml with the compose node names replaced by
    `targets` and a 1 s scrape interval."""
    text = PROMETHEUS_CONFIG.read_text()
    names = re.findall(r"^(\s*)- (node\d):8080$", text, flags=re.M)
    assert [n for _, n in names] == ["node1", "node2", "node3"], names
    for (indent, name), target in zip(names, targets):
        text = text.replace(f"{indent}- {name}:8080", f"{indent}- {target}", 1)
    return re.sub(r"(scrape_interval|evaluation_interval): 15s", r"\1: 1s", text)


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def test_prometheus_scrapes_all_three_nodes(cluster, tmp_path):
    targets = [cluster.nodes[i].http for i in cluster.ids]
    config = tmp_path / "prometheus.yml"
    config.write_text(prometheus_config(targets))
    checked = subprocess.run(["promtool", "check", "config", str(config)],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    port = free_ports(1)[0]
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={config}",
         f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        def all_up():
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                active = get_json(f"http://127.0.0.1:{port}/api/v1/targets")["data"]["activeTargets"]
            except OSError:
                return None
            health = {t["labels"]["instance"]: t["health"] for t in active}
            return health if sorted(health) == sorted(targets) and \
                set(health.values()) == {"up"} else None
        health = wait_until(all_up, 90, interval=0.5, what="Prometheus to scrape all three nodes")
        print(f"\nPrometheus targets: {health}")

        def terms():
            url = f"http://127.0.0.1:{port}/api/v1/query?query=sluice_raft_term"
            result = get_json(url)["data"]["result"]
            return result if len(result) == 3 else None
        result = wait_until(terms, 60, interval=0.5, what="sluice_raft_term from three nodes")
        assert all(float(r["value"][1]) >= 1 for r in result)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# -- the Grafana dashboard -----------------------------------------------------

PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan",
}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers that are not
    functions, aggregations, keywords, label names in matchers or in
    by/without/on/ignoring/group_* lists, or durations."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)            # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)                      # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)                     # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        word = m.group(0)
        rest = expr[m.end():].lstrip()
        if word.lower() in PROMQL_WORDS or rest.startswith("("):
            continue
        if m.start() > 0 and (expr[m.start() - 1].isdigit() or expr[m.start() - 1] == "."):
            continue  # 1e9, 0.5
        names.add(word)
    return names


def test_promql_name_extraction():
    assert promql_metric_names(
        'histogram_quantile(0.99, sum by (le, request) '
        '(rate(kafka_network_request_duration_seconds_bucket{request="Produce"}[5m])))'
    ) == {"kafka_network_request_duration_seconds_bucket"}
    assert promql_metric_names(
        "sum(a_total * on (instance) group_left b) / max(c)") == {"a_total", "b", "c"}


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = []

    def walk(panels):
        for p in panels:
            exprs.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
            walk(p.get("panels", []))
    walk(dashboard["panels"])
    return exprs


def test_grafana_dashboard_uses_only_exposed_metrics(busy, cluster):
    """Every metric name in the dashboard's PromQL has samples in the
    /metrics of a real node: the busy single node (groups, shop) or a
    cluster member (Raft indexes)."""
    exposed = set()
    for node in [busy[0], *cluster.nodes.values()]:
        exposed |= {n for n, _, _ in samples(scrape(node)[1])}
    exprs = dashboard_expressions()
    assert len(exprs) >= 20
    used = set().union(*(promql_metric_names(e) for e in exprs))
    missing = sorted(used - exposed)
    assert not missing, f"dashboard metrics no node exposes: {missing}"
    provisioning = REPO / "deploy" / "grafana" / "provisioning"
    assert (provisioning / "datasources" / "prometheus.yml").is_file()
    assert (provisioning / "dashboards" / "sluice.yml").is_file()
    print(f"\ndashboard: {len(exprs)} expressions, {len(used)} metric names, all exposed")

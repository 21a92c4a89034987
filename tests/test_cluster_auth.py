"""The cluster listener admits only members (docs/SECURITY.md, "Cluster
listener").

With the shared secret on, a process that is not a member (no signature, a
signature made with another secret, a captured request sent again, a
request signed too long ago, or one signed for another node) gets 401 from
every route of every node (propose DeleteTopic and a forged RegisterBroker,
vote, append, snapshot, add a voter, heartbeat, status) and changes
nothing: the topic still exists, Metadata gives the same broker addresses,
the voters and term are as before. With mutual TLS (alone, and with the
secret as well), a three-node cluster forms and serves produce and consume, while a client with a certificate
from another CA, or with none, or speaking plain HTTP, is refused. Without
either, a node refuses to listen on a non-loopback cluster address, and a
secret file that is too short stops a node from starting.

Everything listens on 127.0.0.1 (the non-loopback case fails before it
binds); every process is ended by its PID; every wait polls a deadline.
"""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from cluster import Cluster, free_ports
from cluster_auth import send, sign, signed_call, write_secret
from harness import _die_with_parent, sluice_binary, wait_until

TIMEOUT = 60.0
TOPIC = "kept-topic"


def forged_bodies(victim: int) -> list[tuple[str, str, bytes]]:
    """What a non-member would send: (method, path, body) of every route."""
    def body(value) -> bytes:
        return json.dumps(value).encode()
    vote = {"leader_id": {"term": 99, "node_id": 9}, "committed": False}
    return [
        ("POST", "/cluster/propose", body({"type": "DeleteTopic", "name": TOPIC})),
        ("POST", "/cluster/propose", body({
            "type": "RegisterBroker", "broker_id": victim, "kafka_addr": "10.66.66.66:9092",
            "http_addr": "10.66.66.66:8080", "cluster_addr": "10.66.66.66:7000",
            "cluster_id": ""})),
        ("POST", "/raft/vote", body({"vote": vote, "last_log_id": None})),
        ("POST", "/raft/append", body({"vote": {**vote, "committed": True},
                                       "prev_log_id": None, "entries": [],
                                       "leader_commit": None})),
        ("POST", "/raft/snapshot", body({})),
        ("POST", "/cluster/add-voter", body({"node_id": 9, "cluster_addr": "10.66.66.66:7000"})),
        ("POST", "/cluster/heartbeat", body({"broker_id": victim})),
        ("GET", "/cluster/status", b""),
    ]


def metadata(bootstrap: str) -> tuple[dict[int, str], set[str]]:
    """Broker id -> address and the topic names, as a Kafka client sees them."""
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=20)
    brokers = {b.id: f"{b.host}:{b.port}" for b in md.brokers.values()}
    return brokers, set(md.topics)


def create_topic(bootstrap: str, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=1, replication_factor=3)], operation_timeout=30)
    for future in futures.values():
        future.result(timeout=60)
    wait_until(lambda: name in metadata(bootstrap)[1], TIMEOUT, what=f"{name} in Metadata")


def member_status(cluster: Cluster, i: int) -> dict:
    status, reply = signed_call(cluster.cluster_addrs[i], i, cluster.secret, "GET",
                                "/cluster/status")
    assert status == 200
    return json.loads(reply)


def test_non_members_cannot_use_the_cluster_listener(request, tmp_path):
    with Cluster(tmp_path, request) as cluster:
        cluster.start()
        create_topic(cluster.bootstrap, TOPIC)
        brokers_before, topics_before = metadata(cluster.bootstrap)
        assert TOPIC in topics_before and len(brokers_before) == 3
        statuses = {i: member_status(cluster, i) for i in cluster.ids}
        term_before = max(s["term"] for s in statuses.values())
        _, wrong_secret = write_secret(tmp_path / "rogue")
        refused = 0

        def assert_refused(addr, method, path, body, headers, what):
            nonlocal refused
            status, reply_headers, reply = send(addr, method, path, body, headers)
            assert status == 401, f"{what} {method} {path} to {addr}: {status} {reply[:200]!r}"
            assert "x-sluice-signature" not in reply_headers
            assert b"node_id" not in reply and b"Ok" not in reply, reply
            refused += 1

        for i in cluster.ids:
            addr = cluster.cluster_addrs[i]
            other = i % 3 + 1
            for method, path, body in forged_bodies(i):
                assert_refused(addr, method, path, body, {}, "unsigned")
                assert_refused(addr, method, path, body,
                               sign(wrong_secret, method, path, i, body), "wrong secret")
                old = int(time.time() * 1000) - 120_000
                assert_refused(addr, method, path, body,
                               sign(cluster.secret, method, path, i, body, timestamp_ms=old),
                               "two minutes old")
                assert_refused(addr, method, path, body,
                               sign(cluster.secret, method, path, other, body),
                               f"signed for node {other}")

            # A captured request: accepted once, refused when sent again,
            # and its headers do not carry another body.
            headers = sign(cluster.secret, "GET", "/cluster/status", i)
            status, _, reply = send(addr, "GET", "/cluster/status", b"", headers)
            assert status == 200 and json.loads(reply)["node_id"] == i
            assert_refused(addr, "GET", "/cluster/status", b"", headers, "replayed")
            harmless = json.dumps({"type": "DeleteTopic", "name": "no-such-topic"}).encode()
            headers = sign(cluster.secret, "POST", "/cluster/propose", i, harmless)
            status, _, _ = send(addr, "POST", "/cluster/propose", harmless, headers)
            assert status == 200
            assert_refused(addr, "POST", "/cluster/propose", harmless, headers, "replayed")
            delete = json.dumps({"type": "DeleteTopic", "name": TOPIC}).encode()
            fresh = sign(cluster.secret, "POST", "/cluster/propose", i, harmless)
            assert_refused(addr, "POST", "/cluster/propose", delete, fresh, "body swapped")

        # Nothing changed: the topic, the brokers' addresses, the voters;
        # no node took the forged term 99.
        cluster.wait_registered()
        brokers_after, topics_after = metadata(cluster.bootstrap)
        assert TOPIC in topics_after
        assert brokers_after == brokers_before
        for i in cluster.ids:
            status = member_status(cluster, i)
            assert status["voters"] == [1, 2, 3]
            assert status["term"] < 99
        image = cluster.image()
        assert TOPIC in image["topics"]
        assert all(not b["kafka_addr"].startswith("10.66.") for b in image["brokers"].values())
        print(f"\nrefused {refused} forged, replayed, stale or misdirected requests "
              f"(term before {term_before}, after {status['term']})")


# -- mutual TLS -------------------------------------------------------------


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def make_cert(directory: Path, name: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (server and client use) signed by `ca`."""
    key, csr, cert = (directory / f"{name}.{ext}" for ext in ("key", "csr", "pem"))
    ext = directory / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=serverAuth,clientAuth\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
            "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return cert, key


def tls_context(ca: Path, client: tuple[Path, Path] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        context.load_cert_chain(str(client[0]), str(client[1]))
    return context


def tls_status(addr: str, context: ssl.SSLContext | None,
               headers: dict[str, str] | None = None) -> int | str:
    """The HTTP status of GET /cluster/status, or why there was none."""
    try:
        status, _, _ = send(addr, "GET", "/cluster/status", headers=headers, tls=context,
                            timeout=10)
        return status
    except (ssl.SSLError, ConnectionError, http.client.HTTPException, OSError) as e:
        return type(e).__name__


@pytest.mark.parametrize("with_secret", [False, True], ids=["mtls", "mtls-and-secret"])
def test_mutual_tls_cluster_serves_and_refuses_foreign_certificates(request, tmp_path,
                                                                    with_secret):
    pki = tmp_path / "pki"
    pki.mkdir()
    ca = make_ca(pki, "cluster-ca")
    nodes = {i: make_cert(pki, f"node-{i}", ca) for i in (1, 2, 3)}
    rogue_ca = make_ca(pki, "rogue-ca")
    rogue = make_cert(pki, "rogue", rogue_ca)
    node_args = {i: ["--cluster-tls-cert", str(cert), "--cluster-tls-key", str(key)]
                 for i, (cert, key) in nodes.items()}
    with Cluster(tmp_path / "nodes", request, secret=with_secret, node_args=node_args,
                 extra_args=["--cluster-tls-ca", str(ca[0])]) as cluster:
        cluster.start()
        topic = "tls-roundtrip"
        create_topic(cluster.bootstrap, topic)
        producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
        for n in range(100):
            producer.produce(topic, value=f"v{n}".encode())
        assert producer.flush(30) == 0
        consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "tls-check",
                             "auto.offset.reset": "earliest"})
        consumer.subscribe([topic])
        values: list[bytes] = []
        deadline = time.monotonic() + TIMEOUT
        while len(values) < 100 and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                values.append(message.value())
        consumer.close()
        assert values == [f"v{n}".encode() for n in range(100)]

        for i in cluster.ids:
            addr = cluster.cluster_addrs[i]
            # A member's certificate is served (so the client set-up is right) ...
            member = sign(cluster.secret, "GET", "/cluster/status", i) if with_secret else None
            assert tls_status(addr, tls_context(ca[0], nodes[i % 3 + 1]), member) == 200
            # ... another CA's certificate, none, or no TLS at all are not.
            for what, context in [("rogue CA", tls_context(ca[0], rogue)),
                                  ("no certificate", tls_context(ca[0], None)),
                                  ("plain HTTP", None)]:
                outcome = tls_status(addr, context)
                assert outcome != 200, f"{what} to node {i}: {outcome}"
                print(f"node {i}, {what}: refused ({outcome})")
        brokers, topics = metadata(cluster.bootstrap)
        assert topic in topics and len(brokers) == 3


# -- refusing to start ------------------------------------------------------


def start_and_wait_exit(tmp_path: Path, *args: str, timeout: float = 30.0) -> tuple[int, str]:
    """Run `sluice serve` expecting it to exit on its own; (code, output)."""
    proc = subprocess.Popen(
        [str(sluice_binary()), "serve", "--data-dir", str(tmp_path / "data"),
         "--kafka-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--shop", "false",
         *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    try:
        output, _ = proc.communicate(timeout=timeout)
        return proc.returncode, output.decode("utf-8", "replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_unauthenticated_node_refuses_a_non_loopback_cluster_address(tmp_path):
    port = free_ports(1)[0]
    code, output = start_and_wait_exit(
        tmp_path, "--node-id", "1", "--cluster-addr", f"0.0.0.0:{port}",
        "--peers", f"1=127.0.0.1:{port}")
    assert code != 0, output
    assert "not a loopback address" in output, output


def test_short_or_empty_secret_file_refuses_to_start(tmp_path):
    port = free_ports(1)[0]
    for text in ["", "too-short"]:
        secret = tmp_path / "short.secret"
        secret.write_text(text)
        code, output = start_and_wait_exit(
            tmp_path, "--node-id", "1", "--cluster-addr", f"127.0.0.1:{port}",
            "--peers", f"1=127.0.0.1:{port}", "--cluster-secret-file", str(secret))
        assert code != 0, output
        assert "needs at least 16" in output, output

"""SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and TLS on Kafka listeners.

One broker serves four listeners (PLAINTEXT, SSL with client certificates,
SASL_PLAINTEXT, SASL_SSL) with certificates made by the `openssl` command
in the test's temporary directory. Its first user is added with `sluice
users add` before its first start; another through the Admin API.
"""

from __future__ import annotations

import http.client
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.admin._users import UserScramCredentialUpsertion

import clients
import wire
from harness import Broker, sluice_binary, unique_topic, wait_until

ADMIN, ADMIN_PW = "admin", "admin-secret"
ALICE, ALICE_PW = "alice", "alice-secret"
AUTH_TIMEOUT_MS = 2000
SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """A CA, a server certificate for 127.0.0.1/localhost and a client
    certificate (CN=client-1,O=acme), all signed by the CA."""
    d = tmp_path_factory.mktemp("certs")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=sluice-test-ca", cwd=d)
    (d / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n")
    for name, subj in [("server", "/CN=localhost"), ("client", "/O=acme/CN=client-1")]:
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                f"{name}.csr", "-subj", subj, cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile",
                f"{name}.ext", cwd=d)
    return d


def users_cmd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(sluice_binary()), "users", *args], capture_output=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def listener_ports(node: Broker) -> dict[str, int]:
    """Listener name -> bound port, from the node's `kafka listener` lines."""
    ports = {}
    for line in node.log_lines():
        m = re.search(r"kafka listener (\S+) (\S+) bound=[0-9.]+:(\d+)", line)
        if m:
            ports[m.group(1)] = int(m.group(3))
    return ports


def start_secure_broker(data_dir: Path, certs: Path, extra: list[str] | None = None) -> Broker:
    node = Broker(data_dir, [
        "--listeners",
        "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0,"
        "SASL_SSL://127.0.0.1:0",
        "--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key"),
        "--tls-client-ca", str(certs / "ca.pem"),
        "--authentication-timeout-ms", str(AUTH_TIMEOUT_MS),
        *(extra or []),
    ])
    node.start()
    node.ports = listener_ports(node)
    assert set(node.ports) == {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}, node.ports
    return node


@pytest.fixture(scope="module")
def secure(tmp_path_factory, certs):
    data_dir = tmp_path_factory.mktemp("secure-broker")
    # The first user exists before the first start.
    added = users_cmd("add", ADMIN, "--mechanism", "SCRAM-SHA-512", "--password", ADMIN_PW,
                      "--data-dir", str(data_dir))
    assert added.returncode == 0, added.stderr.decode()
    # The server logs each connection's principal at debug level.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RUST_LOG", "info,openraft=warn,sluice::kafka::server=debug")
        node = start_secure_broker(data_dir, certs)
    try:
        yield node
    finally:
        node.stop()


def addr(node: Broker, listener: str) -> str:
    return f"127.0.0.1:{node.ports[listener]}"


def kafka_python_sasl(mechanism: str, user: str, password: str, protocol: str,
                      certs: Path) -> dict:
    conf = dict(security_protocol=protocol, sasl_mechanism=mechanism,
                sasl_plain_username=user, sasl_plain_password=password)
    if protocol.endswith("SSL"):
        conf.update(ssl_cafile=str(certs / "ca.pem"), ssl_check_hostname=False)
    return conf


def librdkafka_sasl(mechanism: str, user: str, password: str, protocol: str,
                    certs: Path) -> dict:
    conf = {"security.protocol": protocol, "sasl.mechanisms": mechanism,
            "sasl.username": user, "sasl.password": password}
    if protocol.endswith("SSL"):
        conf.update({"ssl.ca.location": str(certs / "ca.pem"),
                     "ssl.endpoint.identification.algorithm": "none"})
    return conf


def kafka_python_roundtrip(bootstrap: str, conf: dict, topic: str, n: int = 10) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", **conf)
    try:
        for i in range(n):
            producer.send(topic, f"v{i}".encode()).get(timeout=30)
    finally:
        producer.close(timeout=10)
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=15000, **conf)
    try:
        got = [m.value for m in consumer]
    finally:
        consumer.close()
    assert got[:n] == [f"v{i}".encode() for i in range(n)]


def confluent_roundtrip(bootstrap: str, conf: dict, topic: str, n: int = 10) -> None:
    errors = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", **conf,
                         "error_cb": errors.append})
    delivered = []
    for i in range(n):
        producer.produce(topic, f"c{i}".encode(),
                         on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(30) == 0, errors
    assert delivered == [None] * n, (delivered, errors)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", **conf})
    consumer.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < n and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append(msg.value())
    finally:
        consumer.close()
    assert got == [f"c{i}".encode() for i in range(n)]


# -- raw SASL frames -------------------------------------------------------------

def sasl_handshake(conn: wire.Connection, mechanism: str, version: int = 1) -> int:
    r = conn.request(SASL_HANDSHAKE, version, wire.string(mechanism))
    return r.int16()


def sasl_authenticate(conn: wire.Connection, token: bytes) -> tuple[int, str | None, int]:
    """(error_code, error_message, session_lifetime_ms) of a v1 SaslAuthenticate."""
    r = conn.request(SASL_AUTHENTICATE, 1, wire.bytes_(token))
    error = r.int16()
    message = r.string()
    r._take(r.int32())
    return error, message, r.int64()


def plain_login(conn: wire.Connection, user: str, password: str) -> tuple[int, str | None, int]:
    assert sasl_handshake(conn, "PLAIN") == 0
    return sasl_authenticate(conn, b"\0" + user.encode() + b"\0" + password.encode())


def metadata_brokers(conn: wire.Connection) -> list[tuple[int, str, int]]:
    """Metadata v0 for no topic: the brokers as (id, host, port)."""
    r = conn.request(3, 1, wire.int32(0))
    brokers = []
    for _ in range(r.int32()):
        node_id, host, port = r.int32(), r.string(), r.int32()
        r.string()  # rack
        brokers.append((node_id, host, port))
    return brokers


# -- tests -----------------------------------------------------------------------

def test_kafka_python_scram_sha512_over_tls_with_a_user_added_offline(secure, certs):
    topic = unique_topic("sasl-kp")
    clients.create_topic(addr(secure, "PLAINTEXT"), topic)
    conf = kafka_python_sasl("SCRAM-SHA-512", ADMIN, ADMIN_PW, "SASL_SSL", certs)
    kafka_python_roundtrip(addr(secure, "SASL_SSL"), conf, topic)


def test_confluent_kafka_scram_sha512_over_tls(secure, certs):
    topic = unique_topic("sasl-ck")
    clients.create_topic(addr(secure, "PLAINTEXT"), topic)
    conf = librdkafka_sasl("SCRAM-SHA-512", ADMIN, ADMIN_PW, "SASL_SSL", certs)
    confluent_roundtrip(addr(secure, "SASL_SSL"), conf, topic)


def test_kcat_scram_sha512_over_tls(secure, certs):
    kcat = shutil.which("kcat")
    assert kcat is not None, "kcat is not installed"
    topic = unique_topic("sasl-kcat")
    clients.create_topic(addr(secure, "PLAINTEXT"), topic)
    opts = ["-b", addr(secure, "SASL_SSL"), "-X", "security.protocol=SASL_SSL",
            "-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", f"sasl.username={ADMIN}",
            "-X", f"sasl.password={ADMIN_PW}", "-X", f"ssl.ca.location={certs / 'ca.pem'}",
            "-X", "ssl.endpoint.identification.algorithm=none"]
    produced = subprocess.run([kcat, *opts, "-P", "-t", topic], input=b"k1\nk2\nk3\n",
                              capture_output=True, timeout=60)
    assert produced.returncode == 0, produced.stderr.decode()
    consumed = subprocess.run([kcat, *opts, "-C", "-t", topic, "-o", "beginning", "-c", "3",
                               "-e"], capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert consumed.returncode == 0, consumed.stderr.decode()
    assert consumed.stdout.split() == [b"k1", b"k2", b"k3"]


def test_admin_api_creates_a_scram_sha256_user_who_logs_in_with_scram_and_plain(secure, certs):
    admin = KafkaAdminClient(
        bootstrap_servers=addr(secure, "SASL_SSL"),
        **kafka_python_sasl("SCRAM-SHA-512", ADMIN, ADMIN_PW, "SASL_SSL", certs))
    try:
        result = admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(ALICE, "SCRAM-SHA-256", ALICE_PW, iterations=4096)])
        assert result == {ALICE: None}
        described = admin.describe_user_scram_credentials([ALICE, "nobody"])
        assert [(int(c["mechanism"]), c["iterations"])
                for c in described[ALICE]["credential_infos"]] == [(1, 4096)]
        assert described["nobody"]["error"]
        weak = admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion("weak", "SCRAM-SHA-256", "x", iterations=1000)])
        assert weak["weak"] is not None
    finally:
        admin.close()
    topic = unique_topic("sasl-256")
    clients.create_topic(addr(secure, "PLAINTEXT"), topic)
    confluent_roundtrip(addr(secure, "SASL_SSL"),
                        librdkafka_sasl("SCRAM-SHA-256", ALICE, ALICE_PW, "SASL_SSL", certs),
                        topic)
    kafka_python_roundtrip(addr(secure, "SASL_PLAINTEXT"),
                           kafka_python_sasl("PLAIN", ALICE, ALICE_PW, "SASL_PLAINTEXT", certs),
                           topic + "-plain")


def test_a_wrong_password_gets_an_authentication_error_and_a_closed_connection(secure, certs):
    with wire.Connection(addr(secure, "SASL_PLAINTEXT")) as conn:
        error, message, _ = plain_login(conn, ADMIN, "wrong")
        assert error == 58  # SASL_AUTHENTICATION_FAILED
        assert "invalid credentials" in (message or "")
        assert conn.outcome_within(5.0)[0] == "closed"
    errors = []
    producer = Producer({"bootstrap.servers": addr(secure, "SASL_SSL"),
                         **librdkafka_sasl("SCRAM-SHA-512", ADMIN, "wrong", "SASL_SSL", certs),
                         "error_cb": errors.append})
    try:
        wait_until(lambda: (producer.poll(0.2), errors)[1], 30, what="an error callback")
    finally:
        producer.flush(0)
    assert any("uthentication" in str(e) for e in errors), errors


def test_every_other_api_is_refused_before_authentication(secure):
    with wire.Connection(addr(secure, "SASL_PLAINTEXT")) as conn:
        r = conn.request(18, 0, b"")
        error, apis = wire.api_versions_v0_response(r)
        assert error == 0
    keys = [k for (k, _, _) in apis if k not in (17, 18, 36)]
    assert len(keys) >= 20
    for key, low, _ in [a for a in apis if a[0] in keys]:
        with wire.Connection(addr(secure, "SASL_PLAINTEXT")) as conn:
            # A body of zeros: whatever it would decode to, it must not be served.
            conn.send_raw(wire.request_frame(key, low, 7, b"\0" * 64, header_version=1))
            outcome, frame = conn.outcome_within(5.0)
            assert outcome == "closed", (key, outcome, frame)
    # Authenticate before handshake: ILLEGAL_SASL_STATE, then closed.
    with wire.Connection(addr(secure, "SASL_PLAINTEXT")) as conn:
        error, _, _ = sasl_authenticate(conn, b"\0admin\0x")
        assert error == 34
        assert conn.outcome_within(5.0)[0] == "closed"
    # After authenticating, the same APIs are served.
    with wire.Connection(addr(secure, "SASL_PLAINTEXT")) as conn:
        assert plain_login(conn, ADMIN, ADMIN_PW)[0] == 0
        assert metadata_brokers(conn)
    assert any("principal=User:admin" in line and "authenticated with SASL" in line
               for line in secure.log_lines())


def test_metadata_advertises_the_listener_the_client_connected_to(secure):
    with wire.Connection(addr(secure, "PLAINTEXT")) as conn:
        assert metadata_brokers(conn) == [(1, "127.0.0.1", secure.ports["PLAINTEXT"])]
    with wire.Connection(addr(secure, "SASL_PLAINTEXT")) as conn:
        assert plain_login(conn, ADMIN, ADMIN_PW)[0] == 0
        assert metadata_brokers(conn) == [(1, "127.0.0.1", secure.ports["SASL_PLAINTEXT"])]


def test_ssl_listener_requires_a_client_certificate_signed_by_the_ca(secure, certs):
    topic = unique_topic("mtls")
    clients.create_topic(addr(secure, "PLAINTEXT"), topic)
    conf = dict(security_protocol="SSL", ssl_cafile=str(certs / "ca.pem"),
                ssl_check_hostname=False, ssl_certfile=str(certs / "client.pem"),
                ssl_keyfile=str(certs / "client.key"))
    kafka_python_roundtrip(addr(secure, "SSL"), conf, topic)
    # The certificate's subject is the principal, as Kafka writes it.
    wait_until(lambda: any("principal=User:CN=client-1,O=acme" in line
                           and "authenticated by certificate" in line
                           for line in secure.log_lines()), 10, what="the mTLS principal")
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    ctx.check_hostname = False
    # Without a client certificate: refused (TLS 1.3 tells at the first read).
    with socket.create_connection(("127.0.0.1", secure.ports["SSL"]), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                tls.sendall(wire.request_frame(18, 0, 1, b""))
                answer = tls.recv(4)
        except OSError:
            answer = b""
        assert answer == b""


def dribble(port: int, data: bytes, stop: threading.Event, closed_after: list) -> None:
    """Send `data` one byte a second until the broker closes the connection."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        for b in data:
            if stop.is_set():
                return
            try:
                s.sendall(bytes([b]))
            except OSError:
                break
            s.settimeout(1.0)
            try:
                if s.recv(1) == b"":
                    break
            except socket.timeout:
                continue
            except OSError:
                break
        closed_after.append(time.monotonic() - started)


@pytest.mark.parametrize("listener", ["SASL_SSL", "SASL_PLAINTEXT"])
def test_a_stalled_handshake_is_cut_off_while_others_are_served(secure, certs, listener):
    # A ClientHello or SaslHandshake frame, far longer than the timeout at a byte a second.
    payload = (bytes.fromhex("16030100c8010000c40303") + b"\x11" * 200
               if listener == "SASL_SSL"
               else wire.request_frame(SASL_HANDSHAKE, 1, 1, wire.string("PLAIN") * 40))
    stop, closed_after = threading.Event(), []
    t = threading.Thread(target=dribble,
                         args=(secure.ports[listener], payload, stop, closed_after), daemon=True)
    t.start()
    try:
        # Another client is served meanwhile.
        topic = unique_topic("stall")
        clients.create_topic(addr(secure, "PLAINTEXT"), topic)
        conf = kafka_python_sasl("SCRAM-SHA-512", ADMIN, ADMIN_PW, "SASL_SSL", certs)
        kafka_python_roundtrip(addr(secure, "SASL_SSL"), conf, topic, n=3)
        t.join(timeout=60)
    finally:
        stop.set()
    assert closed_after, "the stalled connection was never closed"
    # Cut off after the 2 s timeout (a bound that only catches a missing timeout).
    assert closed_after[0] < 30, closed_after
    print(f"\n{listener}: stalled connection closed after {closed_after[0]:.1f} s")


def test_a_session_ends_after_connections_max_reauth_ms_unless_renewed(tmp_path, certs):
    data_dir = tmp_path / "reauth"
    assert users_cmd("add", ADMIN, "--password", ADMIN_PW, "--data-dir", str(data_dir)
                     ).returncode == 0
    node = start_secure_broker(data_dir, certs, ["--connections-max-reauth-ms", "1500"])
    try:
        sasl = addr(node, "SASL_PLAINTEXT")
        with wire.Connection(sasl) as conn:
            error, _, lifetime = plain_login(conn, ADMIN, ADMIN_PW)
            assert (error, lifetime) == (0, 1500)
            started = time.monotonic()
            closed = False
            while time.monotonic() - started < 15:
                try:
                    metadata_brokers(conn)
                except (ConnectionError, OSError):
                    closed = True
                    break
            assert closed and time.monotonic() - started >= 1.4
        # Re-authenticating on the same connection keeps it open past the lifetime.
        with wire.Connection(sasl) as conn:
            assert plain_login(conn, ADMIN, ADMIN_PW)[0] == 0
            started = time.monotonic()
            while time.monotonic() - started < 4:
                assert metadata_brokers(conn)
                assert plain_login(conn, ADMIN, ADMIN_PW)[0] == 0
        # librdkafka re-authenticates by itself (KIP-368) and keeps producing.
        topic = unique_topic("reauth")
        clients.create_topic(addr(node, "PLAINTEXT"), topic)
        producer = Producer({"bootstrap.servers": addr(node, "SASL_SSL"), "acks": "all",
                             **librdkafka_sasl("SCRAM-SHA-512", ADMIN, ADMIN_PW, "SASL_SSL",
                                               certs)})
        delivered = []
        started = time.monotonic()
        while time.monotonic() - started < 5:
            producer.produce(topic, b"x", on_delivery=lambda e, m: delivered.append(e))
            producer.flush(10)
        assert delivered and all(e is None for e in delivered), delivered[-3:]
    finally:
        node.stop()


def test_users_command_refuses_a_running_node_and_lists_without_secrets(secure):
    running = users_cmd("list", "--data-dir", str(secure.data_dir))
    assert running.returncode != 0
    assert "running" in running.stderr.decode()


def test_users_command_adds_lists_and_removes_on_a_stopped_node(tmp_path):
    d = str(tmp_path / "offline")
    added = subprocess.run([str(sluice_binary()), "users", "add", "bob", "--mechanism",
                            "SCRAM-SHA-256", "--data-dir", d], input=b"pw-from-stdin\n",
                           capture_output=True, timeout=60)
    assert added.returncode == 0, added.stderr.decode()
    assert users_cmd("add", "bob", "--password", "x", "--data-dir", d).returncode == 0
    listed = users_cmd("list", "--data-dir", d).stdout.decode()
    assert "bob\tSCRAM-SHA-256 (iterations 8192), SCRAM-SHA-512 (iterations 8192)" in listed
    assert users_cmd("remove", "bob", "--mechanism", "SCRAM-SHA-256", "--data-dir", d
                     ).returncode == 0
    assert "SCRAM-SHA-256" not in users_cmd("list", "--data-dir", d).stdout.decode()
    assert users_cmd("remove", "nobody", "--data-dir", d).returncode != 0
    raw = b"".join(p.read_bytes() for p in Path(d).rglob("*") if p.is_file())
    assert b"pw-from-stdin" not in raw


def test_http_listener_serves_tls(tmp_path, certs):
    node = Broker(tmp_path / "https", ["--http-tls", "true", "--tls-cert",
                                       str(certs / "server.pem"), "--tls-key",
                                       str(certs / "server.key")])
    node.start(wait_ready=False)
    try:
        ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))

        def healthy():
            try:
                with urllib.request.urlopen(f"https://{node.http}/healthz", context=ctx,
                                            timeout=5) as resp:
                    return resp.status == 200
            except OSError:
                return False

        wait_until(healthy, 30, what="https /healthz")
        with pytest.raises((OSError, http.client.HTTPException)):
            urllib.request.urlopen(f"http://{node.http}/healthz", timeout=5)
    finally:
        node.stop()


def test_no_password_is_stored(secure):
    raw = b"".join(p.read_bytes() for p in Path(secure.data_dir).rglob("*")
                   if p.is_file() and p.stat().st_size < 64 * 1024 * 1024)
    for password in (ADMIN_PW, ALICE_PW):
        assert password.encode() not in raw


def test_three_node_cluster_with_a_sasl_ssl_client_listener_replicates(tmp_path, certs, request):
    from cluster import Cluster
    from confluent_kafka.admin import AdminClient, NewTopic

    with Cluster(tmp_path / "cluster", request) as c:
        for node in c.nodes.values():
            node.extra_args += [
                "--listeners", f"PLAINTEXT://{node.kafka_addr},SASL_SSL://127.0.0.1:0,"
                "SASL_PLAINTEXT://127.0.0.1:0",
                "--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key"),
            ]
        # A user added to node 1's data dir before the first start is
        # proposed to the controller by node 1 and reaches every node.
        c.nodes[1].data_dir.mkdir(parents=True, exist_ok=True)
        assert users_cmd("add", "ops", "--password", "ops-pw", "--data-dir",
                         str(c.nodes[1].data_dir)).returncode == 0
        c.start()
        sasl_ports = {i: listener_ports(n)["SASL_SSL"] for i, n in c.nodes.items()}

        def ops_logs_in_on_node_3():
            with wire.Connection(f"127.0.0.1:{listener_ports(c.nodes[3])['SASL_PLAINTEXT']}"
                                 ) as conn:
                return plain_login(conn, "ops", "ops-pw")[0] == 0

        wait_until(ops_logs_in_on_node_3, 30, what="the offline user on node 3")
        # Users are created through the controller, from any node.
        admin = KafkaAdminClient(bootstrap_servers=c.nodes[1].bootstrap)
        try:
            assert admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
                ADMIN, "SCRAM-SHA-512", ADMIN_PW)]) == {ADMIN: None}
        finally:
            admin.close()
        conf = librdkafka_sasl("SCRAM-SHA-512", ADMIN, ADMIN_PW, "SASL_SSL", certs)
        bootstrap = f"127.0.0.1:{sasl_ports[2]}"
        topic = unique_topic("cluster-sasl")
        sasl_admin = AdminClient({"bootstrap.servers": bootstrap, **conf})
        sasl_admin.create_topics([NewTopic(topic, 1, 3)])[topic].result(30)
        # Every broker is given with its SASL_SSL address.
        brokers = sasl_admin.list_topics(timeout=30).brokers
        assert {b.id: b.port for b in brokers.values()} == sasl_ports
        c.wait_healthy(topic, 1, 3)
        confluent_roundtrip(bootstrap, conf, topic, n=50)
        c.wait_healthy(topic, 1, 3)


def test_a_cluster_node_refuses_a_first_listener_that_is_not_plaintext(tmp_path, certs):
    result = subprocess.run(
        [str(sluice_binary()), "serve", "--data-dir", str(tmp_path / "d"), "--node-id", "1",
         "--peers", "1=127.0.0.1:1", "--listeners", "SASL_SSL://127.0.0.1:0",
         "--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key"),
         "--http-addr", "127.0.0.1:0"],
        capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    assert "must be PLAINTEXT" in result.stderr.decode()


def test_a_dashboard_login_over_https_gets_a_secure_cookie(tmp_path, certs):
    from test_http_auth import add_token

    data_dir = tmp_path / "https-auth"
    token = add_token(data_dir, "ops", "operator")
    node = Broker(data_dir, ["--http-tls", "true", "--http-auth",
                             "--tls-cert", str(certs / "server.pem"),
                             "--tls-key", str(certs / "server.key")])
    node.start(wait_ready=False)
    try:
        ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        host, port = node.http.rsplit(":", 1)

        def login():
            try:
                conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=5)
                conn.request("POST", "/api/login", body=f'{{"token": "{token}"}}',
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                conn.close()
                return resp
            except OSError:
                return None

        resp = wait_until(login, 30, what="https /api/login")
        assert resp.status == 200, resp.status
        cookie = resp.getheader("Set-Cookie")
        attributes = [a.strip() for a in cookie.split(";")]
        assert "Secure" in attributes and "HttpOnly" in attributes, cookie
        assert "SameSite=Strict" in attributes, cookie
    finally:
        node.stop()

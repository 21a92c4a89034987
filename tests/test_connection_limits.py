"""Connection limits of both listeners: slowloris connections are cut off by
the HTTP header timeout, a low descriptor limit survives a flood of slowloris
and idle HTTP connections, connections over the per-address cap are closed
(with an override raising it), a stalled request is closed after the idle
timeout, and WebSocket clients over their limit get 503.

The limits are set through `SLUICE_*` environment variables, not flags, so a
binary without them starts all the same and fails on the behaviour."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import resource
import socket
import time

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

import clients
import wire
from harness import Broker, unique_topic, wait_until
from shop_client import wait_shop_ready

# A connection the broker should end must be ended within this many seconds.
PROMPT = 5.0
# Seconds the node may take beyond a timeout to act on it (a bound that
# catches "never", not a speed figure).
SLACK = 20.0


def descriptors(pid: int) -> int:
    """Descriptors the process holds (entries of /proc/PID/fd)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_descriptors(pid: int) -> int:
    """Descriptors the process holds once the count stops changing."""
    last = [descriptors(pid)]

    def settled():
        time.sleep(0.5)
        now = descriptors(pid)
        same = now == last[0]
        last[0] = now
        return now if same else None
    return wait_until(settled, SLACK, interval=0, what="the descriptor count to settle")


def back_down(pid: int, before: int, margin: int) -> int:
    """Wait until the process holds at most `before + margin` descriptors."""
    seen = []

    def low():
        seen.append(descriptors(pid))
        return seen[-1] if seen[-1] <= before + margin else None
    try:
        return wait_until(low, SLACK, interval=0.2, what="descriptors to go back down")
    except TimeoutError:
        raise AssertionError(f"the node holds {seen[-1]} descriptors, {before} before") from None


@pytest.fixture
def start_node(request, tmp_path_factory, monkeypatch):
    """Factory: `start_node(env, prefix)` starts a broker with `env` added to
    its environment and `prefix` before its command; stopped after the test."""
    started: list[Broker] = []
    request.node._sluice_brokers = started

    def start(env: dict, prefix: list[str] | None = None) -> Broker:
        for name, value in env.items():
            monkeypatch.setenv(name, str(value))
        node = Broker(tmp_path_factory.mktemp("limits"))
        node.command_prefix = list(prefix or [])
        started.append(node)
        node.start()
        for name in env:
            monkeypatch.delenv(name)
        return node

    try:
        yield start
    finally:
        for node in started:
            node.stop()


@pytest.fixture
def many_descriptors():
    """Lets this test process hold a few thousand sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the hard descriptor limit ({hard}) is below {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def still_open(sock: socket.socket) -> bool:
    """False once the peer has closed `sock` (EOF or reset); reads and
    drops whatever arrived before; never blocks."""
    sock.setblocking(False)
    try:
        while sock.recv(4096):
            pass
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False


class Flood:
    """HTTP connections held open by the test: `slowloris` send a request
    line and then one header line per `drip()`, never the blank line that
    ends the headers; `idle` send nothing at all."""

    def __init__(self, addr: str, slowloris: int, idle: int = 0):
        host, port = addr.rsplit(":", 1)
        self.opened = time.monotonic()
        self.sockets: list[socket.socket] = []
        self.closed_after: dict[int, float] = {}
        self.refused = 0
        try:
            for index in range(slowloris + idle):
                try:
                    sock = socket.create_connection((host, int(port)), timeout=5)
                except OSError:
                    self.refused += 1
                    continue
                if index < slowloris:
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: flood\r\n")
                self.sockets.append(sock)
            self.open_s = time.monotonic() - self.opened
        except BaseException:
            self.close()
            raise

    def drip(self) -> None:
        """One more header line on every slowloris connection still open;
        notes the connections the node has closed."""
        for index, sock in enumerate(self.sockets):
            if index in self.closed_after:
                continue
            if not still_open(sock):
                self.closed_after[index] = time.monotonic() - self.opened
                continue
            try:
                sock.send(b"X-Drip: 1\r\n")
            except BlockingIOError:
                pass
            except OSError:
                self.closed_after[index] = time.monotonic() - self.opened

    def open_count(self) -> int:
        return len(self.sockets) - len(self.closed_after)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def timed(action):
    """(result, seconds) of `action()`."""
    started = time.monotonic()
    result = action()
    return result, time.monotonic() - started


def test_slowloris_connections_are_cut_off_by_the_header_timeout(start_node, many_descriptors):
    """300 connections that send headers a line at a time and never finish
    them are closed once --http-header-timeout-ms has passed, and /healthz
    and a Kafka client work while they are open. The node's descriptors in
    use go back to where they were."""
    header_timeout = 5.0
    node = start_node({
        "SLUICE_SHOP": "false",
        "SLUICE_HTTP_HEADER_TIMEOUT_MS": int(header_timeout * 1000),
        # All connections come from 127.0.0.1: let the header timeout, not
        # the per-address cap, deal with them.
        "SLUICE_HTTP_MAX_CONNECTIONS_PER_IP": 1000,
    })
    topic = unique_topic("slowloris")
    clients.create_topic(node.bootstrap, topic)
    clients.roundtrip_works(node.bootstrap, topic)
    before = settled_descriptors(node.pid)
    flood = Flood(node.http, slowloris=300)
    try:
        during = descriptors(node.pid)
        (status, _), healthz_s = timed(lambda: node.http_get("/healthz", timeout=10))
        _, kafka_s = timed(lambda: clients.roundtrip_works(node.bootstrap, topic))
        during = max(during, descriptors(node.pid))
        open_meanwhile = flood.open_count()
        flood.drip()
        assert status == 200, f"/healthz answered {status} during the slowloris"
        deadline = flood.opened + header_timeout + SLACK
        while flood.open_count() and time.monotonic() < deadline:
            during = max(during, descriptors(node.pid))
            flood.drip()
            time.sleep(0.5)
        still = flood.open_count()
        assert still == 0, (
            f"{still} of 300 slowloris connections still open "
            f"{time.monotonic() - flood.opened:.0f}s after they connected "
            f"(header timeout {header_timeout:.0f}s); node descriptors before {before}, "
            f"now {descriptors(node.pid)}")
    finally:
        flood.close()
    after = back_down(node.pid, before, 2)
    closes = sorted(flood.closed_after.values())
    print(f"\n[slowloris] 300 connections, header timeout {header_timeout:.0f}s: "
          f"/healthz {healthz_s * 1000:.0f} ms and a kafka-python round trip "
          f"{kafka_s * 1000:.0f} ms with {open_meanwhile} of them open; all closed "
          f"{closes[0]:.1f}-{closes[-1]:.1f}s after connecting; node descriptors "
          f"before {before}, during {during}, after {after}")
    assert open_meanwhile >= 250, "the slowloris was cut off before the checks ran"


def test_low_descriptor_limit_survives_slowloris_and_idle_connections(start_node,
                                                                      many_descriptors):
    """The node runs under `prlimit --nofile=1024`; 300 slowloris and 800 idle
    HTTP connections (more than the limit) are opened. Kafka clients and
    /healthz still succeed: the HTTP listener's cap is fitted under the
    limit, further connections wait in the accept queue, and the header
    timeout frees the slots."""
    header_timeout = 1.0
    node = start_node({
        "SLUICE_HTTP_HEADER_TIMEOUT_MS": int(header_timeout * 1000),
        "SLUICE_MAX_CONNECTIONS_PER_IP_OVERRIDES": "127.0.0.1:100000",
    }, prefix=["prlimit", "--nofile=1024:1024"])
    limits = [line for line in node.log_lines() if "descriptor limit" in line]
    wait_shop_ready(node)
    topic = unique_topic("fd-limit")
    clients.create_topic(node.bootstrap, topic)
    clients.roundtrip_works(node.bootstrap, topic)
    before = settled_descriptors(node.pid)
    flood = Flood(node.http, slowloris=300, idle=800)
    try:
        during = descriptors(node.pid)
        # Both clients start at once, right after the flood.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            kafka = pool.submit(timed, lambda: clients.roundtrip_works(node.bootstrap, topic))
            (status, _), healthz_s = timed(lambda: node.http_get("/healthz", timeout=60))
            during = max(during, descriptors(node.pid))
            try:
                _, kafka_s = kafka.result(timeout=120)
            except Exception as err:
                raise AssertionError(
                    f"a Kafka client failed during the flood: {err!r}; node descriptors "
                    f"before {before}, now {descriptors(node.pid)} of 1024") from None
        during = max(during, descriptors(node.pid))
        assert status == 200, f"/healthz answered {status}"
        open_meanwhile = sum(still_open(sock) for sock in flood.sockets)
    finally:
        flood.close()
    after = back_down(node.pid, before, 2)
    assert node.alive()
    print(f"\n[fd-limit] nofile 1024, {len(flood.sockets)} HTTP connections opened in "
          f"{flood.open_s:.1f}s (300 slowloris, {len(flood.sockets) - 300} idle, "
          f"{flood.refused} not connected), "
          f"header timeout {header_timeout:.0f}s: kafka-python round trip "
          f"{kafka_s * 1000:.0f} ms and /healthz {healthz_s:.1f}s, both started right after "
          f"the flood "
          f"(by then {open_meanwhile} flood connections not yet closed by the node); node "
          f"descriptors before {before}, during {during}, after {after}")
    for line in limits:
        print(f"[fd-limit] node log: {line}")


# -- per-address caps -----------------------------------------------------------


def kafka_admitted(bootstrap: str) -> wire.Connection | None:
    """A Kafka connection the node answers (ApiVersions), or None when it closes it."""
    conn = wire.Connection(bootstrap)
    try:
        conn.request(wire.API_VERSIONS, 0, b"")
        return conn
    except (ConnectionError, OSError):
        conn.close()
        return None


def http_get_on(sock: socket.socket) -> bytes:
    """Send GET /healthz on `sock` (kept alive) and return the status line,
    or what the node sent before closing (b"" when nothing)."""
    sock.settimeout(PROMPT)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: limits\r\n\r\n")
    except OSError:
        pass
    return read_response(sock)


def read_response(sock: socket.socket) -> bytes:
    """The status line of the next response (its body consumed), or what
    arrived before the node closed the connection."""
    sock.settimeout(PROMPT)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
        while length and len(body) < int(length.group(1)):
            chunk = sock.recv(4096)
            if not chunk:
                break
            body += chunk
    except (ConnectionError, socket.timeout):
        return data
    return data.split(b"\r\n", 1)[0]


def http_admitted(addr: str) -> socket.socket | None:
    """An HTTP connection the node answers 200 on, kept open, or None."""
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=PROMPT)
    if http_get_on(sock).startswith(b"HTTP/1.1 200"):
        return sock
    sock.close()
    return None


@pytest.mark.parametrize("listener", ["kafka", "http"])
@pytest.mark.parametrize("override", [None, 8], ids=["cap-5", "override-8"])
def test_connections_over_the_per_address_cap_are_closed(start_node, listener, override):
    """With a cap of 5 connections per address (an override of 8 for
    127.0.0.1 in the second case), the connections up to it are served, the
    next is closed at once (HTTP: after a 503), and closing one lets another in."""
    cap_flag = ("SLUICE_MAX_CONNECTIONS_PER_IP" if listener == "kafka"
                else "SLUICE_HTTP_MAX_CONNECTIONS_PER_IP")
    env = {"SLUICE_SHOP": "false", cap_flag: 5}
    if override:
        env["SLUICE_MAX_CONNECTIONS_PER_IP_OVERRIDES"] = f"127.0.0.1:{override}"
    limit = override or 5
    node = start_node(env)
    admitted = ((lambda: kafka_admitted(node.bootstrap)) if listener == "kafka"
                else (lambda: http_admitted(node.http)))
    held: list = []
    try:
        # The harness's /readyz connections may take a moment to be released.
        for _ in range(limit):
            held.append(wait_until(admitted, PROMPT, interval=0.1,
                                   what=f"connection {len(held) + 1} of {limit}"))
        if listener == "kafka":
            extra = wire.Connection(node.bootstrap)
            outcome, _ = extra.outcome_within(PROMPT)
            extra.close()
            assert outcome == "closed", f"connection {limit + 1} was not closed ({outcome})"
        else:
            host, port = node.http.rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=PROMPT) as extra:
                answer = read_response(extra)
                assert answer.startswith(b"HTTP/1.1 503"), (
                    f"connection {limit + 1} got {answer!r}, not a 503")
                # The close follows the 503 on the wire; it may arrive a moment
                # after the answer was read.
                wait_until(lambda: not still_open(extra), PROMPT, interval=0.02,
                           what=f"connection {limit + 1} to be closed")
        # The held connections still work; closing one frees its slot.
        if listener == "kafka":
            held[0].request(wire.API_VERSIONS, 0, b"")
        else:
            assert http_get_on(held[0]).startswith(b"HTTP/1.1 200")
        held.pop().close()
        held.append(wait_until(admitted, PROMPT, interval=0.1, what="a freed slot"))
        print(f"\n[per-ip] {listener}: {limit} connections from 127.0.0.1 served, "
              f"connection {limit + 1} closed")
    finally:
        for conn in held:
            conn.close()


# -- idle and WebSocket limits ----------------------------------------------------


def test_a_stalled_request_is_closed_after_the_idle_timeout(start_node):
    """A request whose body stops halfway holds its connection only until
    --http-idle-timeout-ms has passed without traffic."""
    idle_timeout = 1.0
    node = start_node({"SLUICE_HTTP_IDLE_TIMEOUT_MS": int(idle_timeout * 1000)})
    wait_shop_ready(node)
    host, port = node.http.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=PROMPT) as sock:
        # The shop's handler waits for the whole JSON body.
        sock.sendall(b"POST /api/orders HTTP/1.1\r\nHost: idle\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n" + b'{"customer": ')
        started = time.monotonic()
        wait_until(lambda: not still_open(sock), idle_timeout * 2 + SLACK,
                   what="the stalled connection to be closed")
        print(f"\n[idle] a request stalled mid-body was closed after "
              f"{time.monotonic() - started:.1f}s (idle timeout {idle_timeout:.0f}s)")


def test_websocket_clients_over_the_limit_get_503(start_node):
    """With --max-websocket-clients 2, a third upgrade is answered 503; when
    one client leaves, a new one gets in."""
    node = start_node({"SLUICE_MAX_WEBSOCKET_CLIENTS": 2})
    url = f"ws://{node.http}/ws"
    with contextlib.ExitStack() as clients_open:
        first = clients_open.enter_context(ws_connect(url, open_timeout=10, max_size=None))
        second = clients_open.enter_context(ws_connect(url, open_timeout=10, max_size=None))
        for ws in (first, second):
            assert json.loads(ws.recv(timeout=10))["event"] == "snapshot"
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(url, open_timeout=10).close()
        assert refused.value.response.status_code == 503
        first.close()

        def third_gets_in():
            try:
                ws = ws_connect(url, open_timeout=10, max_size=None)
            except InvalidStatus:
                return None
            clients_open.enter_context(ws)
            return ws
        third = wait_until(third_gets_in, PROMPT, interval=0.1, what="a freed WebSocket slot")
        assert json.loads(third.recv(timeout=10))["event"] == "snapshot"

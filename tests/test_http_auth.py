"""The HTTP listener's protections, against real `sluice serve` processes.

With `--http-auth` (tokens made by `sluice tokens add` on the stopped
node's data dir): no credentials get 401, a role too low gets 403, and a
refused write reaches no topic (the shop topics' end offsets do not move).
Dashboard logins give an HttpOnly, SameSite=Strict session cookie whose
writes need the session's CSRF token.

In every mode (with and without `--http-auth`): a write that is not
`Content-Type: application/json` (a cross-site form or `text/plain` post)
gets 415 and a write or WebSocket upgrade from a foreign Origin gets 403,
both changing nothing; CORS is closed unless `--cors-origins` lists the
origin; every response carries the security headers and API answers
`Cache-Control: no-store`.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from harness import Broker, sluice_binary
from shop_client import SHOP_TOPICS, end_offsets, new_order

LISTED_ORIGIN = "https://shop.example"
FOREIGN_ORIGIN = "https://evil.example"


def tokens_cli(*args: str, data_dir) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(sluice_binary()), "tokens", *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60,
    )


def add_token(data_dir, name: str, role: str) -> str:
    done = tokens_cli("add", name, "--role", role, data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("sluice_") and "\n" not in token, done.stdout
    return token


def http(node: Broker, method: str, path: str, body=None, *, raw: bytes | None = None,
         content_type: str | None = "application/json", token: str | None = None,
         headers: dict | None = None):
    """One request; returns (status, headers, parsed JSON or text)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(f"http://{node.http}{path}", data=data, method=method)
    if content_type is not None and data is not None:
        req.add_header("Content-Type", content_type)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            status, hdrs, payload = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        status, hdrs, payload = err.code, err.headers, err.read()
    try:
        parsed = json.loads(payload) if payload else None
    except ValueError:
        parsed = payload.decode("utf-8", "replace")
    return status, hdrs, parsed


def offsets(node: Broker) -> dict:
    return end_offsets(node.bootstrap, SHOP_TOPICS)


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """A node with --http-auth and one listed CORS origin, and a token per role
    (added before its first start)."""
    data_dir = tmp_path_factory.mktemp("http-auth")
    tokens = {role: add_token(data_dir, f"{role}-1", role)
              for role in ("viewer", "operator", "admin")}
    node = Broker(data_dir, ["--http-auth", "--cors-origins", LISTED_ORIGIN])
    try:
        node.start()
        node.tokens = tokens
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def open_node(tmp_path_factory):
    """A node without --http-auth and without --cors-origins."""
    node = Broker(tmp_path_factory.mktemp("http-open"))
    try:
        node.start()
        yield node
    finally:
        node.stop()


def test_without_credentials_a_post_gets_401_and_nothing_reaches_the_log(secured):
    before = offsets(secured)
    status, headers, body = http(secured, "POST", "/api/orders", new_order())
    assert status == 401, body
    assert body["error"]["code"] == "unauthorized"
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert http(secured, "POST", "/api/orders", new_order(), token="sluice_not-a-token")[0] == 401
    assert http(secured, "GET", "/api/orders")[0] == 401
    assert http(secured, "POST", "/api/replay")[0] == 401
    assert offsets(secured) == before
    # What stays public: the dashboard's files, health and readiness.
    for path in ("/", "/assets/app.js", "/healthz", "/readyz"):
        assert http(secured, "GET", path)[0] == 200, path


def test_a_viewer_reads_but_gets_403_on_writes(secured):
    viewer = secured.tokens["viewer"]
    before = offsets(secured)
    assert http(secured, "GET", "/api/orders", token=viewer)[0] == 200
    assert http(secured, "GET", "/api/cluster", token=viewer)[0] == 200
    status, _, body = http(secured, "POST", "/api/orders", new_order(), token=viewer)
    assert status == 403, body
    assert body["error"]["code"] == "forbidden"
    assert http(secured, "POST", "/api/simulator", {"enabled": True, "rate_per_sec": 5000},
                   token=viewer)[0] == 403
    assert offsets(secured) == before


def test_an_operator_creates_orders_but_not_replay_or_simulator(secured):
    operator = secured.tokens["operator"]
    before = offsets(secured)
    status, _, body = http(secured, "POST", "/api/orders", new_order(), token=operator)
    assert status == 202, body
    after_order = offsets(secured)
    assert sum(after_order.values()) == sum(before.values()) + 1
    assert http(secured, "POST", "/api/replay", token=operator)[0] == 403
    assert http(secured, "POST", "/api/simulator", {"enabled": True, "rate_per_sec": 5000},
                   token=operator)[0] == 403
    assert http(secured, "GET", "/api/simulator", token=operator)[2]["enabled"] is False
    assert offsets(secured) == after_order


def test_an_admin_may_run_the_simulator_and_replay(secured):
    admin = secured.tokens["admin"]
    status, _, body = http(secured, "POST", "/api/simulator",
                              {"enabled": False, "rate_per_sec": 3}, token=admin)
    assert status == 200, body
    status, _, body = http(secured, "POST", "/api/replay?wait=true", token=admin)
    assert status in (200, 202), body


@pytest.mark.parametrize("mode", ["with --http-auth", "without --http-auth"])
def test_cross_site_text_plain_and_form_posts_are_refused_and_change_nothing(mode, request):
    # Each mode starts only its own node (so the mode without --http-auth
    # also runs against a build that has no such flag).
    if mode == "with --http-auth":
        node = request.getfixturevalue("secured")
        token = node.tokens["admin"]
    else:
        node, token = request.getfixturevalue("open_node"), None
    before = offsets(node)
    # Even with an admin token: what a form or a `no-cors` fetch can send is refused.
    cross_site = {"Origin": FOREIGN_ORIGIN}
    order = json.dumps(new_order()).encode()
    for content_type, payload in [
        ("text/plain", order),
        ("text/plain;charset=UTF-8", order),
        ("application/x-www-form-urlencoded", b'{"customer":"x","items":[]}='),
        ("multipart/form-data; boundary=b", b"--b\r\n\r\n" + order + b"\r\n--b--\r\n"),
    ]:
        for headers in (cross_site, {}):
            status, _, body = http(node, "POST", "/api/orders", raw=payload,
                                      content_type=content_type, token=token, headers=headers)
            assert status == 415, (content_type, headers, status, body)
            assert body["error"]["code"] == "unsupported_media_type"
    # A JSON or empty write from a foreign page (Origin) is refused as well.
    status, _, body = http(node, "POST", "/api/orders", new_order(), token=token,
                              headers=cross_site)
    assert status == 403 and body["error"]["code"] == "cross_origin", body
    assert http(node, "POST", "/api/replay", token=token, headers=cross_site)[0] == 403
    assert offsets(node) == before
    # The same write from the node's own page (its Origin) is accepted.
    own = {"Origin": f"http://{node.http}"}
    assert http(node, "POST", "/api/orders", new_order(), token=token, headers=own)[0] == 202


def preflight(node: Broker, origin: str):
    return http(node, "OPTIONS", "/api/orders", headers={
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, authorization",
    })


def test_cors_is_closed_unless_the_origin_is_listed(secured, open_node):
    status, headers, _ = preflight(secured, LISTED_ORIGIN)
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == LISTED_ORIGIN
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "authorization" in headers["Access-Control-Allow-Headers"].lower()
    _, headers, _ = http(secured, "GET", "/api/orders", token=secured.tokens["viewer"],
                            headers={"Origin": LISTED_ORIGIN})
    assert headers["Access-Control-Allow-Origin"] == LISTED_ORIGIN
    for node, origin in [(secured, FOREIGN_ORIGIN), (open_node, LISTED_ORIGIN),
                         (open_node, FOREIGN_ORIGIN)]:
        _, headers, _ = preflight(node, origin)
        assert headers.get("Access-Control-Allow-Origin") is None, (node.http, origin)
        _, headers, _ = http(node, "GET", "/healthz", headers={"Origin": origin})
        assert headers.get("Access-Control-Allow-Origin") is None


def assert_security_headers(node: Broker, path: str, token: str | None = None) -> None:
    status, headers, _ = http(node, "GET", path, token=token)
    assert headers["X-Content-Type-Options"] == "nosniff", path
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    csp = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    if path.startswith("/api/"):
        assert headers["Cache-Control"] == "no-store", (path, status)
    else:
        assert headers["Cache-Control"] != "no-store"


def test_security_headers_on_pages_and_api(open_node):
    for path in ("/", "/api/orders", "/assets/app.js", "/api/nothing-here"):
        assert_security_headers(open_node, path)


def test_security_headers_on_refusals_and_answers_with_http_auth(secured):
    assert_security_headers(secured, "/api/orders")
    assert_security_headers(secured, "/api/orders", secured.tokens["viewer"])
    assert_security_headers(secured, "/")


def test_tokens_cli_on_a_stopped_node_and_a_removed_token_stops_working(tmp_path):
    data_dir = tmp_path / "node"
    ci = add_token(data_dir, "ci", "operator")
    add_token(data_dir, "grafana", "viewer")
    again = tokens_cli("add", "ci", "--role", "admin", data_dir=data_dir)
    assert again.returncode != 0 and "exists" in again.stderr
    listed = tokens_cli("list", data_dir=data_dir)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.strip().splitlines()]
    assert rows[0] == ["NAME", "ROLE", "CREATED"]
    assert [(r[0], r[1]) for r in rows[1:]] == [("ci", "operator"), ("grafana", "viewer")]
    assert ci not in listed.stdout and ci[len("sluice_"):] not in listed.stdout
    # The stored form is a digest: the token is nowhere in the data dir.
    needle = ci.encode()
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert needle not in path.read_bytes(), path

    node = Broker(data_dir, ["--http-auth"])
    try:
        node.start()
        assert http(node, "GET", "/api/orders", token=ci)[0] == 200
        # The database is the node's while it runs.
        busy = tokens_cli("list", data_dir=data_dir)
        assert busy.returncode != 0 and "stop it first" in busy.stderr
        node.stop()
        removed = tokens_cli("remove", "ci", data_dir=data_dir)
        assert removed.returncode == 0, removed.stderr
        assert tokens_cli("remove", "ci", data_dir=data_dir).returncode != 0
        assert [line.split("\t")[0] for line in
                tokens_cli("list", data_dir=data_dir).stdout.strip().splitlines()[1:]] == ["grafana"]
        node.start()
        assert http(node, "GET", "/api/orders", token=ci)[0] == 401
    finally:
        node.stop()


def login(node: Broker, token: str):
    return http(node, "POST", "/api/login", {"token": token})


def test_session_cookie_attributes_and_csrf_on_writes(secured):
    status, _, body = login(secured, "sluice_wrong")
    assert status == 401, body
    status, headers, body = login(secured, secured.tokens["operator"])
    assert status == 200, body
    assert body["role"] == "operator" and body["csrf_token"]
    set_cookie = headers["Set-Cookie"]
    attributes = [a.strip() for a in set_cookie.split(";")]
    name, value = attributes[0].split("=", 1)
    assert name == "sluice_session" and len(value) >= 43
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= set(attributes), set_cookie
    assert "Secure" not in attributes  # served over plain HTTP
    cookie = {"Cookie": f"sluice_session={value}"}

    status, _, session = http(secured, "GET", "/api/session", headers=cookie)
    assert status == 200 and session["role"] == "operator"
    assert session["csrf_token"] == body["csrf_token"]
    assert http(secured, "GET", "/api/orders", headers=cookie)[0] == 200

    before = offsets(secured)
    status, _, refused = http(secured, "POST", "/api/orders", new_order(), headers=cookie)
    assert status == 403 and refused["error"]["code"] == "csrf_token_invalid", refused
    assert http(secured, "POST", "/api/orders", new_order(),
                   headers={**cookie, "X-CSRF-Token": "forged"})[0] == 403
    assert offsets(secured) == before
    status, _, accepted = http(secured, "POST", "/api/orders", new_order(),
                                  headers={**cookie, "X-CSRF-Token": session["csrf_token"]})
    assert status == 202, accepted
    # The session keeps its role: an operator's session cannot replay.
    assert http(secured, "POST", "/api/replay",
                   headers={**cookie, "X-CSRF-Token": session["csrf_token"]})[0] == 403

    status, headers, _ = http(secured, "POST", "/api/logout", {}, headers=cookie)
    assert status == 200 and "Max-Age=0" in headers["Set-Cookie"]
    assert http(secured, "GET", "/api/orders", headers=cookie)[0] == 401
    assert http(secured, "GET", "/api/session", headers=cookie)[0] == 401


def test_websocket_needs_credentials_with_http_auth(secured):
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(f"ws://{secured.http}/ws", open_timeout=10)
    assert refused.value.response.status_code == 401
    with ws_connect(f"ws://{secured.http}/ws", open_timeout=10,
                    additional_headers={"Authorization": f"Bearer {secured.tokens['viewer']}"}):
        pass
    with ws_connect(f"ws://{secured.http}/ws", open_timeout=10, origin=LISTED_ORIGIN,
                    additional_headers={"Authorization": f"Bearer {secured.tokens['viewer']}"}):
        pass


def test_websocket_upgrades_only_from_the_nodes_own_origin(open_node):
    with pytest.raises(InvalidStatus) as foreign:
        ws_connect(f"ws://{open_node.http}/ws", open_timeout=10, origin=FOREIGN_ORIGIN)
    assert foreign.value.response.status_code == 403
    with ws_connect(f"ws://{open_node.http}/ws", open_timeout=10,
                    origin=f"http://{open_node.http}"):
        pass

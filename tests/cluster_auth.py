"""The cluster listener's shared-secret scheme, from the outside: writing a
secret file, signing a request as a member does (`sign`), sending a raw
request to a node's cluster listener and reading the whole answer (`send`),
and checking an answer's signature (`response_signature`).

The scheme (src/cluster/auth.rs): headers `x-sluice-node` (the node the
request is meant for), `x-sluice-timestamp` (ms since the epoch),
`x-sluice-nonce` (16 random bytes, hex) and `x-sluice-signature`, the hex
HMAC-SHA256 with the secret over

    "sluice-cluster-v1 request\\n{METHOD}\\n{PATH}\\n{node}\\n{timestamp}\\n{nonce}\\n" + body

An answer to an authenticated request carries `x-sluice-signature` over

    "sluice-cluster-v1 response\\n{node}\\n{nonce}\\n{status}\\n" + body
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import os
import secrets
import ssl
import time
from pathlib import Path

SECRET_FILE = "cluster.secret"


def write_secret(directory: Path | str, secret: str | None = None) -> tuple[Path, bytes]:
    """A secret file in `directory` (random unless given); its path and bytes."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SECRET_FILE
    text = secret if secret is not None else secrets.token_hex(32)
    path.write_text(text + "\n")
    os.chmod(path, 0o600)
    return path, text.encode()


def sign(secret: bytes, method: str, path: str, node: int, body: bytes = b"",
         timestamp_ms: int | None = None, nonce: str | None = None) -> dict[str, str]:
    """The headers that authenticate one request to node `node`."""
    timestamp_ms = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    nonce = secrets.token_hex(16) if nonce is None else nonce
    head = f"sluice-cluster-v1 request\n{method}\n{path}\n{node}\n{timestamp_ms}\n{nonce}\n"
    mac = hmac.new(secret, head.encode() + body, hashlib.sha256).hexdigest()
    return {
        "x-sluice-node": str(node),
        "x-sluice-timestamp": str(timestamp_ms),
        "x-sluice-nonce": nonce,
        "x-sluice-signature": mac,
    }


def response_signature(secret: bytes, node: int, nonce: str, status: int, body: bytes) -> str:
    head = f"sluice-cluster-v1 response\n{node}\n{nonce}\n{status}\n"
    return hmac.new(secret, head.encode() + body, hashlib.sha256).hexdigest()


def send(addr: str, method: str, path: str, body: bytes = b"",
         headers: dict[str, str] | None = None, timeout: float = 10.0,
         tls: ssl.SSLContext | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request to a cluster listener; (status, lower-case headers, body)."""
    host, port = addr.rsplit(":", 1)
    if tls is None:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    else:
        conn = http.client.HTTPSConnection(host, int(port), timeout=timeout, context=tls)
    try:
        conn.request(method, path, body=body or None,
                     headers={"Content-Type": "application/json", **(headers or {})})
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def signed_call(addr: str, node: int, secret: bytes, method: str, path: str,
                body: bytes = b"", timeout: float = 10.0) -> tuple[int, bytes]:
    """A member's request: signed, and its answer's signature checked."""
    headers = sign(secret, method, path, node, body)
    status, reply_headers, reply = send(addr, method, path, body, headers, timeout)
    expected = response_signature(secret, node, headers["x-sluice-nonce"], status, reply)
    assert reply_headers.get("x-sluice-signature") == expected, (status, reply_headers)
    return status, reply

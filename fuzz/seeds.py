"""Writes the seed inputs the fuzz corpora started from (fuzz/corpus/ holds
them minimised together with what the fuzzers found since).

kafka_request: every request frame real clients (kafka-python: producer with
each compression, consumer group, admin) send to a `sluice serve`, recorded
by a proxy in front of it. record_batches: the record batches of those
Produce requests, each after a mode byte. shop_commands: bodies of every
shop command.

    SLUICE_BIN=target/release/sluice .venv/bin/python fuzz/seeds.py OUT_DIR
"""

import hashlib
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def save(folder: Path, data: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def proxy(listen_port, broker_port, frames):
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", listen_port))
    server.listen()

    def pump_back(src, dst):
        try:
            while (chunk := src.recv(65536)):
                dst.sendall(chunk)
        except OSError:
            pass

    def serve(client):
        upstream = socket.create_connection(("127.0.0.1", broker_port))
        threading.Thread(target=pump_back, args=(upstream, client), daemon=True).start()
        try:
            while (size := recv_exact(client, 4)) is not None:
                body = recv_exact(client, struct.unpack(">i", size)[0])
                if body is None:
                    break
                frames.append(body)
                upstream.sendall(size + body)
        except OSError:
            pass

    while True:
        client, _ = server.accept()
        threading.Thread(target=serve, args=(client,), daemon=True).start()


def produce_batches(frame: bytes):
    """The record sets of a Produce request (v3 to v11)."""
    version = struct.unpack(">h", frame[2:4])[0]
    flexible = version >= 9
    at = 8

    def uvarint():
        nonlocal at
        value = shift = 0
        while True:
            b = frame[at]; at += 1
            value |= (b & 0x7F) << shift; shift += 7
            if b < 0x80:
                return value

    def length(wide):
        nonlocal at
        if flexible:
            return uvarint() - 1
        fmt, size = (">i", 4) if wide else (">h", 2)
        (n,) = struct.unpack(fmt, frame[at:at + size]); at += size
        return n

    def skip_tags():
        nonlocal at
        for _ in range(uvarint()):
            uvarint()
            size = uvarint()
            at += size

    (client_len,) = struct.unpack(">h", frame[at:at + 2]); at += 2 + max(client_len, 0)
    if flexible:
        skip_tags()
    txn = length(False)  # transactional id (read before `at` is used)
    at += max(txn, 0)
    at += 2 + 4
    out = []
    for _ in range(length(True)):
        name = length(False)
        at += max(name, 0)
        for _ in range(length(True)):
            at += 4
            n = length(True)
            if n > 0:
                out.append(frame[at:at + n]); at += n
            if flexible:
                skip_tags()
        if flexible:
            skip_tags()
    return out


def kafka_seeds(out: Path) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    broker_port, proxy_port, http_port = free_port(), free_port(), free_port()
    frames = []
    threading.Thread(target=proxy, args=(proxy_port, broker_port, frames), daemon=True).start()
    data = tempfile.mkdtemp()
    proc = subprocess.Popen(
        [os.environ["SLUICE_BIN"], "serve", "--data-dir", data,
         "--kafka-addr", f"127.0.0.1:{broker_port}", "--http-addr", f"127.0.0.1:{http_port}",
         "--advertised-kafka-addr", f"127.0.0.1:{proxy_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        bootstrap = f"127.0.0.1:{proxy_port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", broker_port)).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic("seeds", 2, 1)])
        for compression in [None, "gzip", "snappy", "lz4", "zstd"]:
            try:
                producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type=compression)
            except Exception:  # the codec's library is not installed
                continue
            for i in range(3):
                producer.send("seeds", key=b"k%d" % i, value=b"value %d" % i,
                              headers=[("h", b"v")])
            producer.flush()
            producer.close()
        consumer = KafkaConsumer("seeds", bootstrap_servers=bootstrap, group_id="seeds",
                                 auto_offset_reset="earliest", consumer_timeout_ms=3000)
        for _ in consumer:
            pass
        consumer.commit()
        consumer.close()
        admin.delete_topics(["seeds"])
        admin.close()
    finally:
        proc.kill()
        proc.wait()
    for frame in frames:
        save(out / "kafka_request", frame)
        api = struct.unpack(">h", frame[:2])[0]
        if api == 0:
            for records in produce_batches(frame):
                for mode in (0, 1):
                    save(out / "record_batches", bytes([mode]) + records)


SHOP = [
    (0, b'{"customer":"Ada","currency":"EUR","items":[{"sku":"tea","quantity":2,"price":3.5}]}'),
    (0, b'{"customer":"Bob","items":[{"sku":"a","quantity":1,"price":0},{"sku":"b","quantity":10000,"price":1000000}]}'),
    (1, b'{"order_id":"ord-fuzz","amount":7,"method":"card"}'),
    (1, b'{"order_id":"ord-fuzz","amount":7,"method":"paypal","status":"failed","reason":"declined"}'),
    (1, b'{"order_id":"ord-fuzz","amount":3.5,"method":"card","status":"refunded"}'),
    (2, b'{"order_id":"ord-fuzz","status":"scheduled","carrier":"DHL"}'),
    (2, b'{"order_id":"ord-fuzz","status":"in_transit","location":"Basel"}'),
    (2, b'{"order_id":"ord-fuzz","status":"delivered"}'),
    (3, b'{"reason":"changed my mind"}'),
    (3, b''),
    (4, b'{"enabled":true,"rate_per_sec":12.5}'),
]


def shop_seeds(out: Path) -> None:
    folder = out / "shop_commands"
    for endpoint, body in SHOP:
        save(folder, bytes([endpoint]) + body)
    # Whole stories: create, pay, deliver; create, fail, cancel; pay, refund.
    story = lambda *ix: b"\xff".join(bytes([SHOP[i][0]]) + SHOP[i][1] for i in ix)
    save(folder, story(0, 2, 5, 6, 7))
    save(folder, story(0, 3, 8))
    save(folder, story(0, 2, 4, 9))


if __name__ == "__main__":
    target = Path(sys.argv[1])
    kafka_seeds(target)
    shop_seeds(target)

"""Hand-encoded Kafka protocol frames for tests that need exact control over
the bytes a client sends (hostile input, idempotent producer edge cases).

Only the few request/response versions the tests use are encoded here; the
record batches themselves come from kafka-python's DefaultRecordBatchBuilder.
"""

from __future__ import annotations

import socket
import struct
import time

from kafka.record.default_records import DefaultRecordBatchBuilder

# API keys.
PRODUCE = 0
FETCH = 1
LIST_OFFSETS = 2
METADATA = 3
API_VERSIONS = 18
INIT_PRODUCER_ID = 22

# Error codes.
NONE = 0
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
LEADER_NOT_AVAILABLE = 5
MESSAGE_TOO_LARGE = 10
UNSUPPORTED_VERSION = 35
INVALID_REQUEST = 42
UNSUPPORTED_FOR_MESSAGE_FORMAT = 43
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
DUPLICATE_SEQUENCE_NUMBER = 46
INVALID_PRODUCER_EPOCH = 47


# -- encoding ----------------------------------------------------------------

def int8(v: int) -> bytes:
    return struct.pack(">b", v)


def int16(v: int) -> bytes:
    return struct.pack(">h", v)


def int32(v: int) -> bytes:
    return struct.pack(">i", v)


def int64(v: int) -> bytes:
    return struct.pack(">q", v)


def string(v: str | None) -> bytes:
    if v is None:
        return int16(-1)
    raw = v.encode()
    return int16(len(raw)) + raw


def bytes_(v: bytes | None) -> bytes:
    if v is None:
        return int32(-1)
    return int32(len(v)) + bytes(v)


def array(items: list[bytes]) -> bytes:
    return int32(len(items)) + b"".join(items)


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def compact_string(v: str | None) -> bytes:
    if v is None:
        return uvarint(0)
    raw = v.encode()
    return uvarint(len(raw) + 1) + raw


EMPTY_TAGGED_FIELDS = uvarint(0)


def request_frame(api_key: int, api_version: int, correlation_id: int, body: bytes,
                  header_version: int = 1, client_id: str | None = "sluice-tests") -> bytes:
    """A length-prefixed request. Header v1 = key, version, correlation id,
    client id; v2 adds (empty) tagged fields."""
    header = int16(api_key) + int16(api_version) + int32(correlation_id) + string(client_id)
    if header_version >= 2:
        header += EMPTY_TAGGED_FIELDS
    payload = header + body
    return int32(len(payload)) + payload


# -- decoding ----------------------------------------------------------------

class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"response truncated: need {n} bytes at {self.pos} of {len(self.data)}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def int8(self) -> int:
        return struct.unpack(">b", self._take(1))[0]

    def int16(self) -> int:
        return struct.unpack(">h", self._take(2))[0]

    def int32(self) -> int:
        return struct.unpack(">i", self._take(4))[0]

    def int64(self) -> int:
        return struct.unpack(">q", self._take(8))[0]

    def string(self) -> str | None:
        n = self.int16()
        return None if n < 0 else self._take(n).decode()

    def uvarint(self) -> int:
        shift = value = 0
        while True:
            byte = self._take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def compact_string(self) -> str | None:
        n = self.uvarint()
        return None if n == 0 else self._take(n - 1).decode()

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self._take(self.uvarint())

    def remaining(self) -> int:
        return len(self.data) - self.pos


# -- connection ----------------------------------------------------------------

class Connection:
    """One TCP connection to the broker's Kafka listener."""

    def __init__(self, bootstrap: str, timeout: float = 10.0, source_ip: str | None = None,
                 client_id: str | None = "sluice-tests"):
        """`source_ip`: the local address to connect from (e.g. 127.0.0.2, to
        be another client host on loopback); `client_id`: sent in every header."""
        host, port = bootstrap.rsplit(":", 1)
        source = (source_ip, 0) if source_ip is not None else None
        self.sock = socket.create_connection((host, int(port)), timeout=timeout,
                                             source_address=source)
        self.client_id = client_id
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.next_correlation_id = 1

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv_exact(self, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def read_frame(self) -> bytes | None:
        """The next response frame (without its length), or None on EOF."""
        head = self._recv_exact(4)
        if head is None:
            return None
        (size,) = struct.unpack(">i", head)
        if size < 0 or size > 64 * 1024 * 1024:
            raise ValueError(f"implausible response frame size {size}")
        body = self._recv_exact(size)
        if body is None:
            raise ValueError("connection closed in the middle of a response frame")
        return body

    def request(self, api_key: int, api_version: int, body: bytes, header_version: int = 1,
                response_header_version: int = 0) -> Reader:
        """Send one request and return a Reader positioned after the response
        header. Raises ConnectionError if the broker closes the connection."""
        correlation_id = self.next_correlation_id
        self.next_correlation_id += 1
        self.send_raw(request_frame(api_key, api_version, correlation_id, body, header_version,
                                    self.client_id))
        frame = self.read_frame()
        if frame is None:
            raise ConnectionError(f"broker closed the connection (api_key={api_key} v{api_version})")
        reader = Reader(frame)
        got = reader.int32()
        if got != correlation_id:
            raise AssertionError(f"correlation id {got}, expected {correlation_id}")
        if response_header_version >= 1:
            reader.skip_tagged_fields()
        return reader

    def outcome_within(self, timeout: float) -> tuple[str, bytes | None]:
        """What the broker does next: ("closed", None) when it closes the
        connection, ("frame", payload) when it sends a response frame, or
        ("silent", None) if nothing happens within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.2)
        try:
            while time.monotonic() < deadline:
                try:
                    frame = self.read_frame()
                except socket.timeout:
                    continue
                except (ConnectionResetError, BrokenPipeError):
                    return "closed", None
                if frame is None:
                    return "closed", None
                return "frame", frame
            return "silent", None
        finally:
            self.sock.settimeout(self.timeout)


# -- requests ------------------------------------------------------------------

def api_versions_v0_response(reader: Reader) -> tuple[int, list[tuple[int, int, int]]]:
    """(error_code, [(api_key, min_version, max_version)]) of a v0 body."""
    error = reader.int16()
    count = reader.int32()
    apis = [(reader.int16(), reader.int16(), reader.int16()) for _ in range(max(count, 0))]
    return error, apis


def init_producer_id(conn: Connection, transactional_id: str | None = None) -> tuple[int, int, int]:
    """InitProducerId v1 -> (error_code, producer_id, producer_epoch)."""
    body = string(transactional_id) + int32(60_000)
    reader = conn.request(INIT_PRODUCER_ID, 1, body)
    reader.int32()  # throttle_time_ms
    error = reader.int16()
    return error, reader.int64(), reader.int16()


def produce(conn: Connection, topic: str, partition: int, batch: bytes, acks: int = -1,
            version: int = 3, timeout_ms: int = 30_000) -> tuple[int, int]:
    """Produce one batch (v3..v8) -> (error_code, base_offset)."""
    assert 3 <= version <= 8
    body = (
        string(None)  # transactional_id
        + int16(acks)
        + int32(timeout_ms)
        + array([string(topic) + array([int32(partition) + bytes_(batch)])])
    )
    reader = conn.request(PRODUCE, version, body)
    results = {}
    for _ in range(reader.int32()):
        name = reader.string()
        for _ in range(reader.int32()):
            index = reader.int32()
            error = reader.int16()
            base_offset = reader.int64()
            reader.int64()  # log_append_time_ms
            if version >= 5:
                reader.int64()  # log_start_offset
            if version >= 8:
                for _ in range(reader.int32()):  # record_errors
                    reader.int32()
                    reader.string()
                reader.string()  # error_message
            results[(name, index)] = (error, base_offset)
    assert (topic, partition) in results, f"no result for {topic}/{partition}: {results}"
    return results[(topic, partition)]


def record_batch(values: list[bytes], producer_id: int = -1, producer_epoch: int = -1,
                 base_sequence: int = -1, key: bytes | None = None,
                 timestamp_ms: int | None = None) -> bytearray:
    """A magic-2 record batch of `values`, as a producer would send it."""
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=False,
        producer_id=producer_id, producer_epoch=producer_epoch,
        base_sequence=base_sequence, batch_size=1024 * 1024,
    )
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    for offset, value in enumerate(values):
        builder.append(offset, timestamp=ts, key=key, value=value, headers=[])
    return builder.build()


def metadata_v4(conn: Connection, topics: list[str] | None,
                allow_auto_topic_creation: bool) -> dict:
    """Metadata v4 -> {"brokers": [(node_id, host, port)], "controller_id": int,
    "topics": {name: (error_code, [(partition, error_code, leader)])}}."""
    body = (int32(-1) if topics is None else array([string(t) for t in topics]))
    body += int8(1 if allow_auto_topic_creation else 0)
    reader = conn.request(METADATA, 4, body)
    reader.int32()  # throttle_time_ms
    brokers = []
    for _ in range(reader.int32()):
        node_id, host, port = reader.int32(), reader.string(), reader.int32()
        reader.string()  # rack
        brokers.append((node_id, host, port))
    reader.string()  # cluster_id
    controller_id = reader.int32()
    result = {}
    for _ in range(reader.int32()):
        error, name = reader.int16(), reader.string()
        reader.int8()  # is_internal
        partitions = []
        for _ in range(reader.int32()):
            p_error, index, leader = reader.int16(), reader.int32(), reader.int32()
            for _ in range(reader.int32()):  # replica_nodes
                reader.int32()
            for _ in range(reader.int32()):  # isr_nodes
                reader.int32()
            partitions.append((index, p_error, leader))
        result[name] = (error, sorted(partitions))
    return {"brokers": brokers, "controller_id": controller_id, "topics": result}

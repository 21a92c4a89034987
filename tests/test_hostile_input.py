"""Hostile bytes on the Kafka port: the broker answers with an error or closes
the connection, never crashes, never allocates what a length prefix claims,
and keeps serving normal clients afterwards."""

from __future__ import annotations

import random
import socket
import subprocess

import pytest
from kafka.record.legacy_records import LegacyRecordBatchBuilder

import clients
import wire
from harness import unique_topic

# A connection the broker should end must be ended within this many seconds.
PROMPT = 5.0
# The broker's resident memory must stay below this during the tests (KiB).
RSS_LIMIT_KIB = 300 * 1024


@pytest.fixture
def healthy_topic(broker):
    name = unique_topic("hostile-check")
    clients.create_topic(broker.bootstrap, name)
    return name


@pytest.fixture
def stays_healthy(broker, healthy_topic):
    """After the test: the process is alive, small, and a kafka-python
    producer/consumer round trip still works."""
    yield
    try:
        assert broker.http_get("/healthz")[0] == 200
        assert broker.rss_kib() < RSS_LIMIT_KIB
        clients.roundtrip_works(broker.bootstrap, healthy_topic)
    except Exception:
        # A broker that is aborting may still be a live PID for a moment.
        try:
            broker.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            raise
        return  # it died: the `broker` fixture reports that and restarts it


def test_truncated_frame_then_close_does_not_hurt_broker(broker, stays_healthy):
    with wire.Connection(broker.bootstrap) as conn:
        conn.send_raw(wire.int32(100) + b"\x00\x12\x00\x00\x00\x00\x00\x01\x00\x00")


def test_truncated_frame_is_not_answered(broker, stays_healthy):
    with wire.Connection(broker.bootstrap) as conn:
        # An ApiVersions request whose frame claims 10 more bytes than sent.
        frame = wire.request_frame(wire.API_VERSIONS, 0, 7, b"")
        conn.send_raw(wire.int32(len(frame) - 4 + 10) + frame[4:])
        outcome, _ = conn.outcome_within(1.0)
        assert outcome == "silent", "the broker answered a frame it had not fully received"


@pytest.mark.parametrize("length", [0x7FFFFFFF, 100 * 1024 * 1024 + 1, -1, -0x80000000],
                         ids=["2GiB", "max-frame-plus-1", "minus-1", "int32-min"])
def test_absurd_length_prefix_closes_connection_without_allocating(broker, stays_healthy, length):
    rss_before = broker.rss_kib()
    with wire.Connection(broker.bootstrap) as conn:
        conn.send_raw(wire.int32(length) + b"\x00\x03\x00\x01\x00\x00\x00\x01")
        outcome, _ = conn.outcome_within(PROMPT)
        assert outcome == "closed", f"length {length}: broker did not close the connection ({outcome})"
    rss_after = broker.rss_kib()
    assert rss_after < RSS_LIMIT_KIB
    assert rss_after - rss_before < 64 * 1024, f"RSS grew from {rss_before} to {rss_after} KiB"


def test_garbage_frame_is_refused(broker, stays_healthy):
    garbage = random.Random(1234).randbytes(200)
    with wire.Connection(broker.bootstrap) as conn:
        conn.send_raw(wire.int32(len(garbage)) + garbage)
        outcome, _ = conn.outcome_within(PROMPT)
        assert outcome in ("closed", "frame")


def test_garbage_stream_does_not_hurt_broker(broker, stays_healthy):
    garbage = random.Random(99).randbytes(64 * 1024)
    with wire.Connection(broker.bootstrap) as conn:
        try:
            conn.send_raw(garbage)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the broker already closed on us: fine
        # Whatever the broker did with it, `stays_healthy` checks it survived.


@pytest.mark.parametrize("body", [
    wire.int32(0x7FFFFFF0) + b"\x00\x05topic",           # topic count far beyond the frame
    wire.int32(3) + wire.int16(0x7FFF) + b"abc",        # string length beyond the frame
    random.Random(5).randbytes(64),
], ids=["huge-array-count", "huge-string-length", "random"])
def test_metadata_request_with_garbage_body_gets_error_or_close(broker, stays_healthy, body):
    with wire.Connection(broker.bootstrap) as conn:
        conn.send_raw(wire.request_frame(wire.METADATA, 1, 41, body))
        outcome, frame = conn.outcome_within(PROMPT)
        assert outcome in ("closed", "frame"), "no answer to a malformed request"
        if outcome == "frame":
            assert wire.Reader(frame).int32() == 41


def test_unknown_api_key_gets_error_or_close(broker, stays_healthy):
    with wire.Connection(broker.bootstrap) as conn:
        conn.send_raw(wire.request_frame(999, 0, 42, b"\x00" * 16))
        outcome, frame = conn.outcome_within(PROMPT)
        assert outcome in ("closed", "frame")
        if outcome == "frame":
            assert wire.Reader(frame).int32() == 42


def test_api_versions_with_unsupported_version_answers_v0_with_error_35(broker, stays_healthy):
    body = wire.compact_string("sluice-tests") + wire.compact_string("1.0") + wire.EMPTY_TAGGED_FIELDS
    with wire.Connection(broker.bootstrap) as conn:
        reader = conn.request(wire.API_VERSIONS, 99, body, header_version=2)
        error, apis = wire.api_versions_v0_response(reader)
        assert error == wire.UNSUPPORTED_VERSION
        assert apis, "the error reply must still list the supported APIs"
        versions = {key: (lo, hi) for key, lo, hi in apis}
        assert versions[wire.API_VERSIONS][0] == 0 and versions[wire.API_VERSIONS][1] >= 3
        assert wire.PRODUCE in versions and wire.FETCH in versions and wire.METADATA in versions
        # The connection stays usable: a supported version now works.
        reader = conn.request(wire.API_VERSIONS, 0, b"")
        error, apis = wire.api_versions_v0_response(reader)
        assert error == wire.NONE and apis


def test_api_versions_v0_lists_the_contracted_version_ranges(broker):
    with wire.Connection(broker.bootstrap) as conn:
        error, apis = wire.api_versions_v0_response(conn.request(wire.API_VERSIONS, 0, b""))
    assert error == wire.NONE
    versions = {key: (lo, hi) for key, lo, hi in apis}
    contract = {
        wire.PRODUCE: (3, 11), wire.FETCH: (4, 12), wire.LIST_OFFSETS: (1, 7),
        wire.METADATA: (0, 12), wire.API_VERSIONS: (0, 4), wire.INIT_PRODUCER_ID: (0, 5),
    }
    for key, (lo, hi) in contract.items():
        assert key in versions, f"api key {key} not advertised"
        got_lo, got_hi = versions[key]
        assert got_lo <= lo and got_hi >= hi, f"api key {key}: advertised {versions[key]}, contract {lo}-{hi}"


def _log_end(broker, topic: str) -> int:
    return clients.end_offsets(broker.bootstrap, topic, [0])[0]


def test_produce_with_wrong_crc_is_rejected_as_corrupt_message(broker, stays_healthy):
    topic = unique_topic("crc")
    clients.create_topic(broker.bootstrap, topic)
    value = b"value-that-will-be-corrupted"
    batch = bytearray(wire.record_batch([value]))
    at = bytes(batch).index(value)
    batch[at + 3] ^= 0xFF

    with wire.Connection(broker.bootstrap) as conn:
        error, _ = wire.produce(conn, topic, 0, bytes(batch))
        assert error == wire.CORRUPT_MESSAGE
        # The same batch with its byte restored is accepted at offset 0.
        batch[at + 3] ^= 0xFF
        assert wire.produce(conn, topic, 0, bytes(batch)) == (wire.NONE, 0)
    assert _log_end(broker, topic) == 1


def test_produce_of_batch_above_max_message_bytes_is_rejected(broker, stays_healthy):
    topic = unique_topic("too-large")
    clients.create_topic(broker.bootstrap, topic, configs={"max.message.bytes": "2000"})

    with wire.Connection(broker.bootstrap) as conn:
        error, _ = wire.produce(conn, topic, 0, bytes(wire.record_batch([b"x" * 3000])))
        assert error == wire.MESSAGE_TOO_LARGE
        assert wire.produce(conn, topic, 0, bytes(wire.record_batch([b"x" * 500]))) == (wire.NONE, 0)
    assert _log_end(broker, topic) == 1


def test_produce_of_magic_1_message_set_is_rejected(broker, stays_healthy):
    topic = unique_topic("magic1")
    clients.create_topic(broker.bootstrap, topic)
    builder = LegacyRecordBatchBuilder(magic=1, compression_type=0, batch_size=1024 * 1024)
    builder.append(0, timestamp=1_700_000_000_000, key=None, value=b"old format")
    message_set = bytes(builder.build())

    with wire.Connection(broker.bootstrap) as conn:
        error, _ = wire.produce(conn, topic, 0, message_set)
    assert error == wire.UNSUPPORTED_FOR_MESSAGE_FORMAT
    assert _log_end(broker, topic) == 0


def test_many_half_open_connections_are_survived(broker, stays_healthy):
    sockets = []
    try:
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", broker.kafka_port), timeout=5)
            sock.sendall(wire.int32(50) + b"\x00\x03")
            sockets.append(sock)
    finally:
        for sock in sockets:
            sock.close()


def test_max_frame_bytes_flag_bounds_request_size(fresh_broker):
    node = fresh_broker(["--max-frame-bytes", "4096"])
    topic = unique_topic("frame-limit")
    clients.create_topic(node.bootstrap, topic)
    with wire.Connection(node.bootstrap) as conn:
        assert wire.produce(conn, topic, 0, bytes(wire.record_batch([b"s" * 1000]))) == (wire.NONE, 0)
        conn.send_raw(wire.request_frame(wire.PRODUCE, 3, 99, b"\x00" * 5000))
        outcome, _ = conn.outcome_within(PROMPT)
        assert outcome == "closed"
    assert node.alive()
    clients.roundtrip_works(node.bootstrap, topic)

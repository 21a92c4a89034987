"""Request memory is bounded before it is allocated: a request whose decoded
form would be many times its frame (a Produce of empty topic entries, 3 bytes
each on the wire) is refused before it is decoded; the node-wide request
budget (--queued-max-request-bytes) makes reads wait while it is spent and
refuses a request larger than itself; large legitimate requests still work.

Each memory test runs on a broker of its own and prints its peak resident
set size (VmHWM); docs/BENCHMARKS.md ("Request memory") has the figures."""

from __future__ import annotations

import threading
import urllib.request

import pytest

import clients
import wire
from harness import unique_topic, wait_until

MIB = 1024 * 1024
# The hostile request: a Produce frame of this many bytes of empty topic entries.
HOSTILE_FRAME_BYTES = 32 * MIB
# The broker's peak resident memory must stay below this (KiB). Before the
# request budget, one such request took 2.4 GiB and three 4.6 GiB.
PEAK_RSS_LIMIT_KIB = 400 * 1024
# How long the broker may take to answer or close a connection (a freeze
# shows as a failure, not a figure).
ANSWER_WITHIN = 60.0
OFFSET_COMMIT = 8
CREATE_TOPICS = 19


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set size (VmHWM), in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("VmHWM not found")


def produce_of_empty_topics(frame_bytes: int, version: int, one_partition: bool = False) -> bytes:
    """A length-prefixed Produce frame of about `frame_bytes` whose topics
    are all empty: no name, no partitions (3 bytes each from v9 on, 6 before),
    or (`one_partition`, v9 on) one partition without records (9 bytes)."""
    flexible = version >= 9
    if flexible:
        head = wire.uvarint(0) + wire.int16(1) + wire.int32(1000)  # null txn id, acks, timeout
        partition = wire.int32(0) + wire.uvarint(0) + wire.EMPTY_TAGGED_FIELDS
        partitions = wire.uvarint(2) + partition if one_partition else wire.uvarint(1)
        entry = wire.uvarint(1) + partitions + wire.EMPTY_TAGGED_FIELDS
    else:
        assert not one_partition
        head = wire.string(None) + wire.int16(1) + wire.int32(1000)
        entry = wire.string("") + wire.int32(0)
    count = (frame_bytes - 64) // len(entry)
    topics = (wire.uvarint(count + 1) if flexible else wire.int32(count)) + entry * count
    body = head + topics + (wire.EMPTY_TAGGED_FIELDS if flexible else b"")
    return wire.request_frame(wire.PRODUCE, version, 1, body, header_version=2 if flexible else 1)


def outcomes_of(bootstrap: str, frames: list[bytes]) -> list[str]:
    """Send each frame on a connection of its own, all at once, and return
    what the broker did with each: "closed" or "frame" (answered)."""
    connections = [wire.Connection(bootstrap, timeout=ANSWER_WITHIN) for _ in frames]
    outcomes: list[str | None] = [None] * len(frames)

    def run(i: int) -> None:
        try:
            connections[i].send_raw(frames[i])
        except (BrokenPipeError, ConnectionResetError):
            outcomes[i] = "closed"  # refused before the whole frame was sent
            return
        outcomes[i], _ = connections[i].outcome_within(ANSWER_WITHIN)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(frames))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for conn in connections:
            conn.close()
    return [o or "none" for o in outcomes]


def assert_serves_clients(node) -> None:
    assert node.alive()
    assert node.http_get("/healthz")[0] == 200
    topic = unique_topic("after")
    clients.create_topic(node.bootstrap, topic)
    clients.roundtrip_works(node.bootstrap, topic)


@pytest.mark.parametrize("connections", [1, 3], ids=["one-request", "three-at-once"])
@pytest.mark.parametrize("version", [9, 7], ids=["flexible-v9", "classic-v7"])
def test_produce_of_empty_topic_entries_is_refused_before_decoding(fresh_broker, connections,
                                                                   version):
    node = fresh_broker()
    frame = produce_of_empty_topics(HOSTILE_FRAME_BYTES, version)
    at_start = peak_rss_kib(node.pid)

    outcomes = outcomes_of(node.bootstrap, [frame] * connections)

    peak = peak_rss_kib(node.pid)
    print(f"\nProduce v{version}, {connections} x {len(frame) - 4} bytes of empty topic entries: "
          f"peak RSS {peak // 1024} MiB (at start {at_start // 1024} MiB), outcomes {outcomes}")
    assert peak < PEAK_RSS_LIMIT_KIB, f"peak RSS {peak // 1024} MiB"
    assert outcomes == ["closed"] * connections
    assert_serves_clients(node)


@pytest.mark.parametrize("frame_mib, one_partition, connections", [
    (2.5, False, 1), (2.5, False, 3), (4.0, True, 1),
], ids=["empty-topics", "empty-topics-three-at-once", "one-partition-topics"])
def test_produce_just_within_the_budget_is_served_and_stays_bounded(fresh_broker, frame_mib,
                                                                    one_partition, connections):
    # Both shapes decode into about 83 MB, just below what the default budget
    # (256 MiB, charged three times the decoded size) admits for one request.
    node = fresh_broker()
    frame = produce_of_empty_topics(int(frame_mib * MIB), 9, one_partition)
    at_start = peak_rss_kib(node.pid)

    outcomes = outcomes_of(node.bootstrap, [frame] * connections)

    peak = peak_rss_kib(node.pid)
    shape = "topics of one empty partition" if one_partition else "empty topic entries"
    print(f"\nProduce v9, {connections} x {len(frame) - 4} bytes of {shape} (admitted): "
          f"peak RSS {peak // 1024} MiB (at start {at_start // 1024} MiB), outcomes {outcomes}")
    assert outcomes == ["frame"] * connections
    assert peak < PEAK_RSS_LIMIT_KIB, f"peak RSS {peak // 1024} MiB"
    assert_serves_clients(node)


def test_request_larger_than_the_budget_closes_the_connection(fresh_broker):
    node = fresh_broker(["--queued-max-request-bytes", str(MIB)])
    topic = unique_topic("budget")
    clients.create_topic(node.bootstrap, topic)
    names = [f"{i:06d}-" + "n" * 240 for i in range(4500)]  # 1.1 MiB of Metadata
    frame = wire.request_frame(wire.METADATA, 4, 1, wire.array(
        [wire.string(n) for n in names]) + wire.int8(0))
    assert outcomes_of(node.bootstrap, [frame]) == ["closed"]
    with wire.Connection(node.bootstrap) as conn:
        topics = wire.metadata_v4(conn, names[:1000], allow_auto_topic_creation=False)["topics"]
        assert len(topics) == 1000
    clients.roundtrip_works(node.bootstrap, topic)


def metadata_frame(count: int, correlation_id: int) -> bytes:
    """A Metadata v4 request for `count` unknown topics of 239-byte names."""
    names = [f"{correlation_id}-{i:06d}-" + "w" * 230 for i in range(count)]
    body = wire.array([wire.string(n) for n in names]) + wire.int8(0)
    return wire.request_frame(wire.METADATA, 4, correlation_id, body)


def charged_frame_bytes(node) -> int:
    """The frame pool of the node's request budget in use, from /metrics."""
    with urllib.request.urlopen(f"http://{node.http}/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith('kafka_network_request_memory_bytes{pool="frames"}'):
                return int(float(line.split()[-1]))
    raise AssertionError("no kafka_network_request_memory_bytes in /metrics")


def test_spent_budget_makes_the_next_request_wait_then_serves_it(fresh_broker):
    node = fresh_broker(["--queued-max-request-bytes", str(2 * MIB)])
    first = metadata_frame(6000, 1)  # 1.5 MiB: charged before it is read
    second = metadata_frame(3000, 2)  # 0.7 MiB: more than is left of the budget
    with wire.Connection(node.bootstrap) as a, wire.Connection(node.bootstrap) as b:
        a.send_raw(first[:100])
        # The first frame is charged once the node has read its length.
        wait_until(lambda: charged_frame_bytes(node) >= len(first) - 4, 10,
                   what="the first frame charged")
        sender = threading.Thread(target=b.send_raw, args=(second,))
        sender.start()
        # The second request waits for the first (which holds its charge
        # while it is read), instead of being read or refused.
        assert b.outcome_within(1.0)[0] == "silent"
        a.send_raw(first[100:])
        outcome, payload = a.outcome_within(ANSWER_WITHIN)
        assert outcome == "frame"
        assert wire.Reader(payload).int32() == 1
        outcome, payload = b.outcome_within(ANSWER_WITHIN)
        sender.join()
        assert outcome == "frame"
        assert wire.Reader(payload).int32() == 2
    assert_serves_clients(node)


def test_sender_stalled_in_a_request_gives_its_budget_back(fresh_broker):
    node = fresh_broker(["--queued-max-request-bytes", str(2 * MIB),
                         "--connections-max-idle-ms", "1000"])
    stalled = metadata_frame(6000, 1)
    waiting = metadata_frame(3000, 2)
    with wire.Connection(node.bootstrap) as a, wire.Connection(node.bootstrap) as b:
        a.send_raw(stalled[:100])  # and nothing more
        sender = threading.Thread(target=b.send_raw, args=(waiting,))
        sender.start()
        # After a second without a byte the stalled connection is closed and
        # its charge returned; the waiting request is then read and served.
        assert a.outcome_within(ANSWER_WITHIN)[0] == "closed"
        outcome, payload = b.outcome_within(ANSWER_WITHIN)
        sender.join()
        assert outcome == "frame"
        assert wire.Reader(payload).int32() == 2
    assert_serves_clients(node)


# -- large legitimate requests -------------------------------------------------

def offset_commit_v2(conn: wire.Connection, topic: str, partitions: int) -> int:
    """Commit offsets of `partitions` partitions of `topic` in one request
    (a group with no members, as a standalone client commits); returns the
    number of partition results."""
    body = (
        wire.string(unique_topic("commit-group")) + wire.int32(-1) + wire.string("")
        + wire.int64(-1)
        + wire.array([wire.string(topic) + wire.array([
            wire.int32(p) + wire.int64(42) + wire.string("") for p in range(partitions)])])
    )
    reader = conn.request(OFFSET_COMMIT, 2, body)
    results = 0
    for _ in range(reader.int32()):
        reader.string()
        for _ in range(reader.int32()):
            reader.int32()
            reader.int16()
            results += 1
    return results


def create_topics_v2_validate_only(conn: wire.Connection, names: list[str]) -> dict[str, int]:
    """Validate the creation of `names` (each with three configs) in one
    request; returns the error code of each."""
    configs = wire.array([wire.string(k) + wire.string(v) for k, v in [
        ("retention.ms", "86400000"), ("cleanup.policy", "delete"), ("segment.bytes", "1048576")]])
    body = wire.array([
        wire.string(n) + wire.int32(3) + wire.int16(1) + wire.array([]) + configs for n in names
    ]) + wire.int32(30_000) + wire.int8(1)
    reader = conn.request(CREATE_TOPICS, 2, body)
    reader.int32()  # throttle_time_ms
    errors = {}
    for _ in range(reader.int32()):
        name = reader.string()
        errors[name] = reader.int16()
        reader.string()  # error_message
    return errors


def test_large_legitimate_requests_are_served(fresh_broker):
    node = fresh_broker()
    topic = unique_topic("wide")
    partitions = 96
    clients.create_topic(node.bootstrap, topic, partitions=partitions)
    # One batch of just under max.message.bytes per partition: a Produce of
    # 97 MB, near the 100 MiB frame limit.
    batch = bytes(wire.record_batch([b"v" * 1000] * 1000))
    body = (
        wire.string(None) + wire.int16(-1) + wire.int32(60_000)
        + wire.array([wire.string(topic) + wire.array(
            [wire.int32(p) + wire.bytes_(batch) for p in range(partitions)])])
    )
    with wire.Connection(node.bootstrap, timeout=ANSWER_WITHIN) as conn:
        reader = conn.request(wire.PRODUCE, 3, body)
        errors = []
        for _ in range(reader.int32()):
            reader.string()
            for _ in range(reader.int32()):
                reader.int32()
                errors.append(reader.int16())
                reader.int64()
                reader.int64()
        assert errors == [wire.NONE] * partitions, errors

        # Metadata for 10,000 topics.
        names = [f"{topic}-unknown-{i:05d}-" + "m" * 20 for i in range(10_000)]
        topics = wire.metadata_v4(conn, names, allow_auto_topic_creation=False)["topics"]
        assert len(topics) == 10_000

        # OffsetCommit of 10,000 partitions.
        assert offset_commit_v2(conn, topic, 10_000) == 10_000

        # CreateTopics of 5,000 topics with configs (validated only).
        creatable = [f"{topic}-new-{i:05d}" for i in range(5000)]
        assert create_topics_v2_validate_only(conn, creatable) == {n: wire.NONE for n in creatable}

    peak = peak_rss_kib(node.pid)
    print(f"\nProduce of {len(body)} bytes to {partitions} partitions, Metadata of 10,000 topics, "
          f"OffsetCommit of 10,000 partitions, CreateTopics of 5,000 topics: "
          f"peak RSS {peak // 1024} MiB")
    assert clients.end_offsets(node.bootstrap, topic, list(range(partitions))) == {
        p: 1000 for p in range(partitions)}
    assert_serves_clients(node)

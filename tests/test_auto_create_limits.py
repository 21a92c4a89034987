"""Auto-creation within limits per client: besides the per-request limit
(tests/test_broker_process.py), each client address has a bucket of
--auto-create-topics-burst topics refilled at --auto-create-topics-per-second;
unknown topics past it get UNKNOWN_TOPIC_OR_PARTITION (3) and are not
created, whether named by Metadata or by Produce. The key is the address,
not the client id (which a client may change with every request): another
client id on the same address shares the bucket, another address has its
own. Other hosts are played by other loopback addresses (127.0.0.2).

The bounds checked are "burst + rate x the seconds that passed", measured
around the requests, so a slow machine only loosens them.
"""

from __future__ import annotations

import time

import wire
from harness import unique_topic, wait_until


def metadata_created(conn: wire.Connection, names: list[str]) -> list[str]:
    """Ask for `names` with auto-creation on; those that now exist."""
    meta = wire.metadata_v4(conn, names, allow_auto_topic_creation=True)
    errors = {n: meta["topics"][n][0] for n in names}
    assert set(errors.values()) <= {wire.NONE, wire.UNKNOWN_TOPIC_OR_PARTITION}, errors
    return [n for n in names if errors[n] == wire.NONE]


def listed_topics(bootstrap: str) -> set[str]:
    with wire.Connection(bootstrap) as conn:
        return set(wire.metadata_v4(conn, None, allow_auto_topic_creation=False)["topics"])


def test_default_limit_stops_a_flood_of_metadata_requests(fresh_broker):
    """Default flags (100 per request, 10 per second after a burst of 100):
    three requests of 100 unknown topics each, as fast as they are answered,
    create the burst and what the rate refilled meanwhile, not 300."""
    node = fresh_broker(["--shop", "false"])
    names = [unique_topic("flood") for _ in range(300)]
    started = time.monotonic()
    with wire.Connection(node.bootstrap, client_id="flood") as conn:
        created = [n for i in range(0, 300, 100) for n in metadata_created(conn, names[i:i + 100])]
    elapsed = time.monotonic() - started
    bound = 100 + int(10 * elapsed) + 1
    print(f"\n[auto-create] 3 Metadata requests naming 300 unknown topics created "
          f"{len(created)} in {elapsed:.2f}s (limit: burst 100 + 10/s = {bound})")
    assert 100 <= len(created) <= bound
    existing = listed_topics(node.bootstrap)
    assert set(created) <= existing
    assert not (set(names) - set(created)) & existing, "a refused topic was created"


def test_each_client_address_has_its_own_bucket_refilled_over_time(fresh_broker):
    node = fresh_broker(["--shop", "false", "--auto-create-topics-per-second", "2",
                         "--auto-create-topics-burst", "6"])
    started = time.monotonic()
    # Client A: four requests of five unknown topics at once.
    with wire.Connection(node.bootstrap, client_id="client-a") as a:
        by_a = [n for _ in range(4) for n in metadata_created(a, [unique_topic("a") for _ in range(5)])]
        # Another client id from the same address shares A's bucket.
        with wire.Connection(node.bootstrap, client_id="client-b") as b:
            by_b = metadata_created(b, [unique_topic("b") for _ in range(5)])
        same_address_s = time.monotonic() - started
        # Another address is not starved by A.
        other_started = time.monotonic()
        with wire.Connection(node.bootstrap, source_ip="127.0.0.2", client_id="client-a") as c:
            by_c = metadata_created(c, [unique_topic("c") for _ in range(10)])
        other_s = time.monotonic() - other_started
        print(f"\n[auto-create] burst 6, 2/s: client id A on 127.0.0.1 got {len(by_a)} of 20, "
              f"client id B on 127.0.0.1 {len(by_b)} of 5 ({same_address_s:.2f}s); "
              f"127.0.0.2 got {len(by_c)} of 10 ({other_s:.2f}s)")
        assert 6 <= len(by_a) + len(by_b) <= 6 + int(2 * same_address_s) + 1
        assert len(by_a) >= 6
        assert 6 <= len(by_c) <= 6 + int(2 * other_s) + 1

        # As time passes, A's bucket refills: it may create again.
        refused_at = time.monotonic()
        later = wait_until(lambda: metadata_created(a, [unique_topic("a-later")]), 10,
                           interval=0.1, what="client A allowed to auto-create again")
        print(f"[auto-create] client A created {later} {time.monotonic() - refused_at:.2f}s later")
    existing = listed_topics(node.bootstrap)
    assert set(by_a + by_b + by_c + later) <= existing


def produce_many(conn: wire.Connection, topics: list[str], batch: bytes) -> dict[str, int]:
    """One Produce v3 request with one batch to partition 0 of each topic:
    topic -> error code."""
    body = (
        wire.string(None)  # transactional_id
        + wire.int16(1)  # acks
        + wire.int32(30_000)
        + wire.array([wire.string(t) + wire.array([wire.int32(0) + wire.bytes_(batch)])
                      for t in topics])
    )
    reader = conn.request(wire.PRODUCE, 3, body)
    errors = {}
    for _ in range(reader.int32()):
        name = reader.string()
        for _ in range(reader.int32()):
            reader.int32()  # partition
            errors[name] = reader.int16()
            reader.int64()  # base_offset
            reader.int64()  # log_append_time_ms
    return errors


def test_produce_auto_creation_has_the_same_limits(fresh_broker):
    """Produce to unknown topics auto-creates them too, so it is limited the
    same way: per request, and per client address per second."""
    node = fresh_broker(["--shop", "false", "--auto-create-topics-per-request", "2",
                         "--auto-create-topics-per-second", "1", "--auto-create-topics-burst", "3"])
    batch = bytes(wire.record_batch([b"x"]))
    started = time.monotonic()
    with wire.Connection(node.bootstrap) as conn:
        first = produce_many(conn, [unique_topic("p") for _ in range(4)], batch)
        second = produce_many(conn, [unique_topic("p") for _ in range(4)], batch)
    elapsed = time.monotonic() - started
    ok = [t for errors in (first, second) for t, e in errors.items() if e == wire.NONE]
    print(f"\n[auto-create] Produce: 2 requests naming 4 unknown topics each (2 per request, "
          f"burst 3, 1/s) created {len(ok)} in {elapsed:.2f}s")
    assert set(first.values()) <= {wire.NONE, wire.UNKNOWN_TOPIC_OR_PARTITION}
    assert sorted(first.values()) == [wire.NONE] * 2 + [wire.UNKNOWN_TOPIC_OR_PARTITION] * 2
    assert 3 <= len(ok) <= 3 + int(elapsed) + 1
    existing = listed_topics(node.bootstrap)
    assert {t for errors in (first, second) for t in errors} & existing == set(ok)

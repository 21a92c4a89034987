"""Client quotas: AlterClientQuotas / DescribeClientQuotas, and a produce
byte-rate quota that holds a real producer near its rate and reports
`throttle_time_ms`.

The bounds are generous (they catch a quota that does nothing, not a
figure); the measured rates are printed.
"""

from __future__ import annotations

import time

from kafka import KafkaConsumer, TopicPartition
from kafka.protocol.admin import AlterClientQuotasRequest, DescribeClientQuotasRequest

import clients
from harness import unique_topic

QUOTA = 100_000  # bytes/s
E = AlterClientQuotasRequest.EntryData


def send(bootstrap: str, request):
    admin = clients.admin(bootstrap)
    try:
        return admin._manager.run(admin._manager.send, request)
    finally:
        admin.close()


def set_quota(bootstrap: str, client_id: str | None, key: str, value: float | None):
    entity = [E.EntityData(entity_type="client-id", entity_name=client_id)]
    op = E.OpData(key=key, value=value or 0.0, remove=value is None)
    resp = send(bootstrap, AlterClientQuotasRequest(entries=[E(entity=entity, ops=[op])],
                                                    validate_only=False))
    assert [e.error_code for e in resp.entries] == [0], resp


def describe_quotas(bootstrap: str) -> dict:
    """Every stored quota: {((type, name), ...): {key: value}}."""
    resp = send(bootstrap, DescribeClientQuotasRequest(components=[], strict=False))
    assert resp.error_code == 0, resp
    return {tuple((d.entity_type, d.entity_name) for d in e.entity):
            {v.key: v.value for v in e.values} for e in resp.entries}


def produce_rate(bootstrap: str, topic: str, client_id: str, total: int) -> tuple[float, float]:
    """Produce `total` bytes in 10 KB records; (bytes/s, most throttle ms reported)."""
    prod = clients.producer(bootstrap, client_id=client_id, acks=1, linger_ms=5,
                            enable_idempotence=False)
    value = b"x" * 10_000
    try:
        start = time.monotonic()
        futures = [prod.send(topic, value, partition=0) for _ in range(total // len(value))]
        prod.flush(timeout=120)
        for f in futures:
            f.get(timeout=60)
        elapsed = time.monotonic() - start
        throttle = max((v for name, v in _metrics(prod) if "throttle-time-max" in name),
                       default=0.0)
    finally:
        prod.close(timeout=5)
    return total / elapsed, throttle


def _metrics(prod):
    for group in prod.metrics().values():
        for name, value in group.items():
            if isinstance(value, (int, float)):
                yield name, float(value)


def test_client_quotas_are_altered_described_and_removed(fresh_broker):
    node = fresh_broker(["--shop", "false"])
    set_quota(node.bootstrap, "a", "producer_byte_rate", 1000.0)
    set_quota(node.bootstrap, None, "consumer_byte_rate", 2000.0)
    assert describe_quotas(node.bootstrap) == {
        (("client-id", "a"),): {"producer_byte_rate": 1000.0},
        (("client-id", None),): {"consumer_byte_rate": 2000.0},
    }
    # An unknown key is refused, the stored quotas stay.
    entity = [E.EntityData(entity_type="client-id", entity_name="a")]
    resp = send(node.bootstrap, AlterClientQuotasRequest(
        entries=[E(entity=entity, ops=[E.OpData(key="no_such_quota", value=1.0, remove=False)])],
        validate_only=False))
    assert resp.entries[0].error_code != 0
    set_quota(node.bootstrap, "a", "producer_byte_rate", None)
    node.restart()
    assert describe_quotas(node.bootstrap) == {
        (("client-id", None),): {"consumer_byte_rate": 2000.0}}


def test_produce_quota_holds_a_producer_near_its_rate_and_reports_throttle(fresh_broker):
    node = fresh_broker(["--shop", "false"])
    topic = unique_topic("quota")
    clients.create_topic(node.bootstrap, topic)
    set_quota(node.bootstrap, "slow-client", "producer_byte_rate", float(QUOTA))

    total = 1_000_000
    free_rate, free_throttle = produce_rate(node.bootstrap, topic, "free-client", total)
    slow_rate, slow_throttle = produce_rate(node.bootstrap, topic, "slow-client", total)
    print(f"\nproduce quota {QUOTA / 1000:.0f} KB/s: unthrottled client {free_rate / 1000:.0f} KB/s "
          f"(throttle {free_throttle:.0f} ms), quota client {slow_rate / 1000:.0f} KB/s "
          f"(max throttle_time_ms {slow_throttle:.0f})")
    assert free_throttle == 0
    assert slow_throttle > 0, "the broker reported no throttle_time_ms"
    # Generous: 1 MB at 100 KB/s cannot finish faster than 3x the quota.
    assert slow_rate < 3 * QUOTA, f"{slow_rate:.0f} B/s is far above the quota"


def test_fetch_quota_holds_a_consumer_near_its_rate(fresh_broker):
    node = fresh_broker(["--shop", "false"])
    topic = unique_topic("quota-fetch")
    clients.create_topic(node.bootstrap, topic)
    total = 1_000_000
    clients.produce_values(node.bootstrap, topic, [b"y" * 10_000] * (total // 10_000))
    set_quota(node.bootstrap, "slow-reader", "consumer_byte_rate", float(QUOTA))

    def read_rate(client_id: str) -> tuple[float, float]:
        consumer = KafkaConsumer(bootstrap_servers=node.bootstrap, client_id=client_id,
                                 enable_auto_commit=False, fetch_max_bytes=200_000,
                                 max_partition_fetch_bytes=200_000)
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            start, got = time.monotonic(), 0
            deadline = start + 120
            while got < total and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=1000).values():
                    got += sum(len(r.value) for r in records)
            elapsed = time.monotonic() - start
            throttle = max((v for name, v in _metrics(consumer) if "throttle-time-max" in name),
                           default=0.0)
        finally:
            consumer.close()
        assert got >= total, f"read {got} of {total} bytes"
        return got / elapsed, throttle

    free_rate, free_throttle = read_rate("free-reader")
    slow_rate, slow_throttle = read_rate("slow-reader")
    print(f"\nfetch quota {QUOTA / 1000:.0f} KB/s: unthrottled client {free_rate / 1000:.0f} KB/s, "
          f"quota client {slow_rate / 1000:.0f} KB/s (max throttle_time_ms {slow_throttle:.0f})")
    assert free_throttle == 0
    assert slow_throttle > 0, "the broker reported no throttle_time_ms"
    assert slow_rate < 3 * QUOTA, f"{slow_rate:.0f} B/s is far above the quota"

"""What the other clients' suites (docs/COMPATIBILITY.md) found, kept as
tests of their own:

- kafka-python's `test_group` uses 3 s sessions, under Kafka's default
  `group.min.session.timeout.ms` (6 s): `--group-min-session-timeout-ms`
  lowers the bound as the suite's broker template does; the default still
  refuses with INVALID_SESSION_TIMEOUT.
- kafka-python's `test_describe_configs_broker_resource_returns_configs`:
  DescribeConfigs on the broker includes `advertised.listeners`, a read-only
  static broker config whose value is the address clients are given.
"""

from __future__ import annotations

import time

import pytest
from kafka import KafkaConsumer
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import InvalidSessionTimeoutError

from clients import admin, create_topic
from harness import unique_topic

DEADLINE = 30.0


def joined_consumer(bootstrap: str, topic: str, session_timeout_ms: int) -> KafkaConsumer:
    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=unique_topic("short-session"),
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=500,
        request_timeout_ms=session_timeout_ms + 1000,
        auto_offset_reset="earliest",
    )


def test_short_sessions_need_a_lower_group_min_session_timeout(broker, fresh_broker):
    lowered = fresh_broker(extra_args=["--group-min-session-timeout-ms", "1000"])
    topic = unique_topic("short-session")
    create_topic(lowered.bootstrap, topic, partitions=2)
    consumer = joined_consumer(lowered.bootstrap, topic, 3000)
    try:
        deadline = time.monotonic() + DEADLINE
        while not consumer.assignment():
            assert time.monotonic() < deadline, "a 3 s session never joined the group"
            consumer.poll(timeout_ms=200)
        assert len(consumer.assignment()) == 2
    finally:
        consumer.close()

    # The default bound (Kafka's 6 s) refuses the same member.
    create_topic(broker.bootstrap, topic, partitions=2)
    consumer = joined_consumer(broker.bootstrap, topic, 3000)
    try:
        with pytest.raises(InvalidSessionTimeoutError):
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline:
                consumer.poll(timeout_ms=200)
    finally:
        consumer.close()


def test_broker_configs_include_advertised_listeners(broker):
    client = admin(broker.bootstrap)
    try:
        resource = ConfigResource(ConfigResourceType.BROKER, str(broker.node_id))
        configs = client.describe_configs([resource], config_filter="all")
        entry = configs["broker"][str(broker.node_id)]["advertised.listeners"]
    finally:
        client.close()
    assert entry["value"] == f"PLAINTEXT://{broker.bootstrap}"
    assert entry["config_source"] == "STATIC_BROKER_CONFIG"
    assert entry["read_only"] is True
    assert entry["is_sensitive"] is False

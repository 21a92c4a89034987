"""confluent-kafka (librdkafka) against Sluice: idempotent producer,
compression codecs, timestamp lookup and the admin API."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from harness import unique_topic, wait_until

TIMEOUT = 30.0


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10_000})


def create_topic(bootstrap: str, name: str, partitions: int = 1, config: dict | None = None) -> None:
    admin = admin_client(bootstrap)
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=TIMEOUT,
    )
    futures[name].result(timeout=TIMEOUT)
    wait_for_partition_count(admin, name, partitions)


def wait_for_partition_count(admin: AdminClient, name: str, partitions: int) -> None:
    def visible():
        topic = admin.list_topics(topic=name, timeout=TIMEOUT).topics.get(name)
        return topic is not None and topic.error is None and len(topic.partitions) == partitions
    wait_until(visible, TIMEOUT, interval=0.2, what=f"{partitions} partitions of {name}")


class Deliveries:
    """Collects delivery reports of a librdkafka producer."""

    def __init__(self):
        self.ok: list = []
        self.failed: list = []

    def __call__(self, err, msg):
        if err is not None:
            self.failed.append((err, msg.value()))
        else:
            self.ok.append(msg)


def produce_all(producer: Producer, topic: str, values: list[bytes], partition: int = 0,
                timestamps: list[int] | None = None) -> Deliveries:
    deliveries = Deliveries()
    for i, value in enumerate(values):
        kwargs = {"partition": partition, "on_delivery": deliveries}
        if timestamps is not None:
            kwargs["timestamp"] = timestamps[i]
        while True:
            try:
                producer.produce(topic, value=value, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
    remaining = producer.flush(TIMEOUT * 2)
    assert remaining == 0, f"{remaining} records were never delivered"
    assert deliveries.failed == []
    assert len(deliveries.ok) == len(values)
    return deliveries


def consume_exactly(bootstrap: str, topic: str, count: int, partition: int = 0,
                    timeout: float = 60.0) -> list:
    """Read `count` records from the start of one partition, then make sure
    no more follow."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"reader-{topic}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
    })
    try:
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        messages = []
        deadline = time.monotonic() + timeout
        while len(messages) < count:
            assert time.monotonic() < deadline, f"read {len(messages)} of {count} records"
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                if msg.error() is not None:
                    raise KafkaException(msg.error())
                messages.append(msg)
        extra = [m for m in consumer.consume(num_messages=10, timeout=1.0) if m.error() is None]
        assert extra == [], f"{len(extra)} records beyond the {count} produced"
        return messages
    finally:
        consumer.close()


def test_idempotent_producer_delivers_each_record_once_in_order(broker):
    topic = unique_topic("idem")
    create_topic(broker.bootstrap, topic)
    count = 5_000
    values = [f"idempotent-{i:05d}".encode() for i in range(count)]
    producer = Producer({
        "bootstrap.servers": broker.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "batch.num.messages": 200,
    })
    deliveries = produce_all(producer, topic, values)

    offsets = [m.offset() for m in deliveries.ok]
    assert [m.value() for m in deliveries.ok] == values
    assert offsets == list(range(count))

    messages = consume_exactly(broker.bootstrap, topic, count)
    assert [m.value() for m in messages] == values
    assert [m.offset() for m in messages] == list(range(count))


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_round_trip(broker, codec):
    topic = unique_topic(f"codec-{codec}")
    create_topic(broker.bootstrap, topic)
    # Compressible values, with enough variety that a wrong decompression shows.
    values = [(f"{codec}-record-{i:04d}-" + "payload " * (i % 40)).encode() for i in range(500)]
    producer = Producer({
        "bootstrap.servers": broker.bootstrap,
        "compression.type": codec,
        "acks": "all",
        "linger.ms": 20,
    })
    produce_all(producer, topic, values)

    messages = consume_exactly(broker.bootstrap, topic, len(values))
    assert [m.value() for m in messages] == values
    assert [m.offset() for m in messages] == list(range(len(values)))


def test_offsets_for_times_finds_first_record_at_or_after_timestamp(broker):
    topic = unique_topic("times")
    create_topic(broker.bootstrap, topic)
    base = int(time.time() * 1000) - 3_600_000
    timestamps = [base + i * 1_000 for i in range(10)]
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    produce_all(producer, topic, [f"t{i}".encode() for i in range(10)], timestamps=timestamps)

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"times-{topic}",
                         "enable.auto.commit": False})
    try:
        def lookup(ts: int) -> int:
            [tp] = consumer.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=TIMEOUT)
            assert tp.error is None, tp.error
            return tp.offset

        assert lookup(base + 4_500) == 5
        assert lookup(base + 4_000) == 4
        assert lookup(base - 10_000) == 0
        # No record at or after that time: Kafka answers offset -1.
        assert lookup(base + 60_000) == -1
    finally:
        consumer.close()

    messages = consume_exactly(broker.bootstrap, topic, 10)
    assert [m.timestamp()[1] for m in messages] == timestamps


KAFKA_TOPIC_DEFAULTS = {
    "retention.ms": "604800000",
    "retention.bytes": "-1",
    "max.message.bytes": "1048588",
    "cleanup.policy": "delete",
    "message.timestamp.type": "CreateTime",
}


def describe_topic_configs(admin: AdminClient, topic: str) -> dict:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([resource], request_timeout=TIMEOUT)[resource].result(timeout=TIMEOUT)


def test_describe_configs_reports_kafka_topic_defaults(broker):
    topic = unique_topic("cfg")
    create_topic(broker.bootstrap, topic)
    configs = describe_topic_configs(admin_client(broker.bootstrap), topic)
    for name, value in KAFKA_TOPIC_DEFAULTS.items():
        assert name in configs, f"{name} missing from {sorted(configs)}"
        assert configs[name].value == value, f"{name}={configs[name].value}, Kafka default {value}"


def test_incremental_alter_configs_changes_retention_ms(broker):
    topic = unique_topic("alter")
    create_topic(broker.bootstrap, topic)
    admin = admin_client(broker.bootstrap)
    resource = ConfigResource(
        ResourceType.TOPIC, topic,
        incremental_configs=[ConfigEntry("retention.ms", "3600000",
                                         incremental_operation=AlterConfigOpType.SET)],
    )
    admin.incremental_alter_configs([resource], request_timeout=TIMEOUT)[resource].result(timeout=TIMEOUT)

    configs = describe_topic_configs(admin, topic)
    assert configs["retention.ms"].value == "3600000"
    assert not configs["retention.ms"].is_default
    # Other settings keep their defaults.
    assert configs["retention.bytes"].value == "-1"
    assert configs["cleanup.policy"].value == "delete"


def test_topic_created_with_config_overrides_describes_them(broker):
    topic = unique_topic("override")
    create_topic(broker.bootstrap, topic, config={"retention.ms": "120000", "max.message.bytes": "50000"})
    configs = describe_topic_configs(admin_client(broker.bootstrap), topic)
    assert configs["retention.ms"].value == "120000"
    assert configs["max.message.bytes"].value == "50000"
    assert configs["retention.bytes"].value == "-1"


def test_delete_topics_removes_topic_from_metadata(broker):
    topic = unique_topic("doomed")
    create_topic(broker.bootstrap, topic)
    admin = admin_client(broker.bootstrap)
    assert topic in admin.list_topics(timeout=TIMEOUT).topics

    admin.delete_topics([topic], operation_timeout=TIMEOUT)[topic].result(timeout=TIMEOUT)

    wait_until(lambda: topic not in admin.list_topics(timeout=TIMEOUT).topics, TIMEOUT,
               interval=0.2, what=f"{topic} to leave metadata")


def test_create_partitions_grows_topic_and_new_partition_accepts_records(broker):
    topic = unique_topic("grow")
    create_topic(broker.bootstrap, topic, partitions=1)
    admin = admin_client(broker.bootstrap)

    admin.create_partitions([NewPartitions(topic, 3)], operation_timeout=TIMEOUT)[topic].result(
        timeout=TIMEOUT)
    wait_for_partition_count(admin, topic, 3)

    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    produce_all(producer, topic, [b"in-new-partition"], partition=2)
    [message] = consume_exactly(broker.bootstrap, topic, 1, partition=2)
    assert message.value() == b"in-new-partition"
    assert message.offset() == 0


def test_delete_records_moves_log_start_offset(broker):
    topic = unique_topic("trim")
    create_topic(broker.bootstrap, topic)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    values = [f"r{i}".encode() for i in range(10)]
    produce_all(producer, topic, values)
    admin = admin_client(broker.bootstrap)

    futures = admin.delete_records([TopicPartition(topic, 0, 4)], request_timeout=TIMEOUT)
    [deleted] = [f.result(timeout=TIMEOUT) for f in futures.values()]
    assert deleted.low_watermark == 4

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"trim-{topic}",
                         "enable.auto.commit": False})
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT) == (4, 10)
    finally:
        consumer.close()
    messages = consume_exactly(broker.bootstrap, topic, 6)
    assert [(m.offset(), m.value()) for m in messages] == list(enumerate(values))[4:]


def test_describe_cluster_reports_the_single_node_as_controller(broker):
    admin = admin_client(broker.bootstrap)
    cluster = admin.describe_cluster(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    assert [(n.id, n.host, n.port) for n in cluster.nodes] == [(1, "127.0.0.1", broker.kafka_port)]
    assert cluster.controller.id == 1
    assert cluster.cluster_id


def test_keys_headers_and_null_values_round_trip(broker):
    topic = unique_topic("headers")
    create_topic(broker.bootstrap, topic)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    sent = [
        (b"order-1", b'{"status":"created"}', [("event", b"OrderCreated"), ("v", b"1")]),
        (b"order-1", None, [("event", b"Tombstone")]),
        (None, b"no key", []),
        (b"order-2", b"", [("empty", b""), ("dup", b"a"), ("dup", b"b")]),
    ]
    deliveries = Deliveries()
    for key, value, headers in sent:
        producer.produce(topic, key=key, value=value, headers=headers, partition=0,
                         on_delivery=deliveries)
    assert producer.flush(TIMEOUT) == 0
    assert deliveries.failed == [] and len(deliveries.ok) == len(sent)

    messages = consume_exactly(broker.bootstrap, topic, len(sent))
    got = [(m.key(), m.value(), m.headers() or []) for m in messages]
    assert got == [(k, v, h) for k, v, h in sent]

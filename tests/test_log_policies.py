"""Log policies a Kafka user relies on: retention by time and by size,
DeleteRecords, LogAppendTime, max.message.bytes, auto-creation switches."""

import time

from confluent_kafka import KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                   ConfigResource, NewTopic)

import clients
from harness import unique_topic, wait_until


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap})


def create(bootstrap, name, partitions=1, config=None):
    client = admin(bootstrap)
    futures = client.create_topics([NewTopic(name, partitions, 1, config=config or {})])
    futures[name].result(timeout=30)


def test_retention_ms_removes_old_batches_and_moves_the_log_start(fresh_broker):
    node = fresh_broker(["--retention-check-interval-ms", "100"])
    topic = unique_topic("retention-ms")
    # Retention removes whole segments: one small segment per batch here.
    create(node.bootstrap, topic, config={"segment.bytes": "100"})
    now_ms = int(time.time() * 1000)
    old = now_ms - 3_600_000
    p = Producer({"bootstrap.servers": node.bootstrap, "linger.ms": 0})
    for i in range(5):  # five old batches, one record each
        p.produce(topic, f"old-{i}".encode(), partition=0, timestamp=old + i)
        p.flush(10)
    for i in range(3):
        p.produce(topic, f"new-{i}".encode(), partition=0, timestamp=now_ms + i)
        p.flush(10)
    # One hour of retention keeps everything; ten minutes drops the old batches.
    client = admin(node.bootstrap)
    futures = client.incremental_alter_configs([
        ConfigResource("topic", topic, incremental_configs=[
            ConfigEntry("retention.ms", "600000", incremental_operation=AlterConfigOpType.SET)])
    ])
    for f in futures.values():
        f.result(timeout=30)
    wait_until(lambda: clients.read_offsets(node.bootstrap, topic, 0)[0] == 5, 30,
               what="log start offset to reach 5")
    values = [r.value for r in clients.read_all(node.bootstrap, topic, [0])]
    assert values == [b"new-0", b"new-1", b"new-2"]


def test_retention_bytes_keeps_the_partition_under_its_limit(fresh_broker):
    node = fresh_broker(["--retention-check-interval-ms", "100"])
    topic = unique_topic("retention-bytes")
    create(node.bootstrap, topic, config={"retention.bytes": "2000", "segment.bytes": "100"})
    p = Producer({"bootstrap.servers": node.bootstrap, "linger.ms": 0})
    for i in range(20):  # twenty batches of a little over 100 bytes
        p.produce(topic, (f"r{i:02d}-" + "x" * 100).encode(), partition=0)
        p.flush(10)
    wait_until(lambda: clients.read_offsets(node.bootstrap, topic, 0)[0] > 0, 30,
               what="retention.bytes to remove old batches")
    start, end = clients.read_offsets(node.bootstrap, topic, 0)
    assert end == 20
    kept = [r.value for r in clients.read_all(node.bootstrap, topic, [0])]
    assert 0 < len(kept) < 20
    assert sum(len(v) + 70 for v in kept) <= 2000 + 200  # batch overhead included
    assert kept[-1].startswith(b"r19-")


def test_delete_records_moves_the_log_start_offset(broker):
    topic = unique_topic("delete-records")
    create(broker.bootstrap, topic)
    clients.produce_values(broker.bootstrap, topic, [f"v{i}".encode() for i in range(10)])
    client = admin(broker.bootstrap)
    futures = client.delete_records([TopicPartition(topic, 0, 4)])
    result = list(futures.values())[0].result(timeout=30)
    assert result.low_watermark == 4
    assert clients.read_offsets(broker.bootstrap, topic, 0) == (4, 10)
    values = [r.value for r in clients.read_all(broker.bootstrap, topic, [0])]
    assert values == [f"v{i}".encode() for i in range(4, 10)]


def test_log_append_time_topics_stamp_records_with_broker_time(broker):
    topic = unique_topic("log-append-time")
    create(broker.bootstrap, topic, config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(topic, b"stamped", partition=0, timestamp=1_000)
    p.flush(10)
    after = int(time.time() * 1000)
    [record] = clients.read_all(broker.bootstrap, topic, [0])
    assert record.timestamp_type == 1  # LogAppendTime
    assert before - 1000 <= record.timestamp <= after + 1000


def test_batch_over_max_message_bytes_is_refused_with_message_too_large(broker):
    topic = unique_topic("max-message")
    create(broker.bootstrap, topic, config={"max.message.bytes": "1000"})
    errors = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 100000,
                  "retries": 0, "compression.type": "none"})
    p.produce(topic, b"x" * 5000, partition=0,
              on_delivery=lambda err, msg: errors.append(err))
    p.flush(30)
    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert clients.read_offsets(broker.bootstrap, topic, 0) == (0, 0)


def test_auto_creation_can_be_switched_off(fresh_broker):
    node = fresh_broker(["--auto-create-topics", "false"])
    topic = unique_topic("no-auto")
    md = admin(node.bootstrap).list_topics(topic=topic, timeout=10)
    assert md.topics[topic].error is not None
    assert md.topics[topic].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_auto_created_topics_take_num_partitions(fresh_broker):
    node = fresh_broker(["--num-partitions", "4"])
    topic = unique_topic("auto")
    md = admin(node.bootstrap).list_topics(topic=topic, timeout=10)
    wait_until(lambda: len(admin(node.bootstrap).list_topics(topic=topic, timeout=10)
                           .topics[topic].partitions) == 4, 30, what="auto-created topic")
    assert md is not None


def test_clients_cannot_write_delete_or_repartition_internal_topics(broker):
    from kafka.admin import NewPartitions
    from kafka.errors import InvalidTopicError
    client = admin(broker.bootstrap)
    internal = "__consumer_offsets"
    errors = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "retries": 0})
    p.produce(internal, b"forged", partition=0, on_delivery=lambda err, msg: errors.append(err))
    p.flush(30)
    assert errors and errors[0] is not None
    assert errors[0].code() == KafkaError.TOPIC_EXCEPTION
    deleted = client.delete_topics([internal])
    try:
        deleted[internal].result(timeout=30)
        raise AssertionError("deleting an internal topic succeeded")
    except Exception as err:  # KafkaException carrying INVALID_TOPIC_EXCEPTION
        assert err.args[0].code() == KafkaError.TOPIC_EXCEPTION
    kp_admin = clients.admin(broker.bootstrap)
    try:
        kp_admin.create_partitions({internal: NewPartitions(total_count=200)})
        raise AssertionError("repartitioning an internal topic succeeded")
    except InvalidTopicError:
        pass
    finally:
        kp_admin.close()
    md = client.list_topics(topic=internal, timeout=10)
    assert len(md.topics[internal].partitions) == 50

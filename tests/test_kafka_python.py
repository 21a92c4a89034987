"""kafka-python against Sluice: admin, keyed produce with acks=all, and reading
every partition back with assign() + seek_to_beginning()."""

from __future__ import annotations

import json
from collections import defaultdict

import kafka.errors

import clients
from harness import unique_topic

RECORDS = 10_000
ORDER_IDS = [f"order-{n:03d}" for n in range(50)]
PARTITIONS = 3


def test_keyed_json_records_come_back_complete_and_in_per_key_order(broker):
    topic = unique_topic("orders")
    clients.create_topic(broker.bootstrap, topic, partitions=PARTITIONS)

    producer = clients.producer(
        broker.bootstrap,
        linger_ms=5,
        max_in_flight_requests_per_connection=1,
    )
    sent = defaultdict(int)
    futures = []
    try:
        for n in range(RECORDS):
            order_id = ORDER_IDS[n % len(ORDER_IDS)]
            sent[order_id] += 1
            value = {"order_id": order_id, "seq": sent[order_id], "n": n, "amount_cents": n * 7 % 10_000}
            futures.append(producer.send(topic, key=order_id.encode(), value=json.dumps(value).encode()))
        producer.flush(timeout=120)
        acked = [f.get(timeout=60) for f in futures]
    finally:
        producer.close(timeout=10)
    assert len(acked) == RECORDS
    assert {m.partition for m in acked} <= set(range(PARTITIONS))

    records = clients.read_all(broker.bootstrap, topic, list(range(PARTITIONS)))

    assert len(records) == RECORDS
    values = [json.loads(r.value) for r in records]
    assert len({v["n"] for v in values}) == RECORDS, "a record was delivered twice"
    partition_of_key: dict[str, int] = {}
    last_seq: dict[str, int] = {}
    for record, value in zip(records, values):
        key = record.key.decode()
        assert key == value["order_id"]
        assert partition_of_key.setdefault(key, record.partition) == record.partition, (
            f"records of {key} on partitions {partition_of_key[key]} and {record.partition}")
        assert value["seq"] > last_seq.get(key, 0), f"{key}: seq {value['seq']} after {last_seq.get(key)}"
        last_seq[key] = value["seq"]
    assert last_seq == dict(sent)
    # The acknowledged offsets are exactly the offsets the records are read at.
    assert sorted((m.partition, m.offset) for m in acked) == sorted(
        (r.partition, r.offset) for r in records)


def test_admin_lists_and_describes_created_topic(broker):
    topic = unique_topic("admin")
    clients.create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    admin = clients.admin(broker.bootstrap)
    try:
        assert topic in admin.list_topics()
        [meta] = admin.describe_topics([topic])
        assert meta["name"] == topic
        assert meta["error_code"] == 0
        assert sorted(p["partition_index"] for p in meta["partitions"]) == list(range(PARTITIONS))
        for partition in meta["partitions"]:
            assert partition["leader_id"] == 1
            assert partition["replica_nodes"] == [1]
            assert partition["isr_nodes"] == [1]
    finally:
        admin.close()


def test_metadata_shows_exactly_one_broker_at_its_advertised_address(broker):
    admin = clients.admin(broker.bootstrap)
    try:
        cluster = admin.describe_cluster()
    finally:
        admin.close()
    brokers = cluster["brokers"]
    assert len(brokers) == 1
    [only] = brokers
    assert only["broker_id"] == 1
    assert f"{only['host']}:{only['port']}" == broker.bootstrap
    assert cluster["controller_id"] == 1


def test_creating_an_existing_topic_is_rejected(broker):
    topic = unique_topic("dup")
    clients.create_topic(broker.bootstrap, topic, partitions=1)
    admin = clients.admin(broker.bootstrap)
    try:
        result = admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}},
                                     raise_errors=False)
        [entry] = result["topics"]
        assert entry["error_code"] == kafka.errors.TopicAlreadyExistsError.errno
    finally:
        admin.close()

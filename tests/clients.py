"""Small kafka-python helpers shared by the tests: create a topic, produce,
and read a whole topic back with assign() + seek_to_beginning (no consumer
groups)."""

from __future__ import annotations

import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from harness import wait_until

CLIENT_TIMEOUT_MS = 30_000


def admin(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="sluice-tests-admin",
        request_timeout_ms=CLIENT_TIMEOUT_MS,
    )


def create_topic(bootstrap: str, name: str, partitions: int = 1, configs: dict | None = None) -> None:
    """Create a topic and wait until its metadata shows every partition."""
    client = admin(bootstrap)
    try:
        client.create_topics(
            {name: {"num_partitions": partitions, "replication_factor": 1, "configs": configs or {}}}
        )
    finally:
        client.close()
    wait_for_partitions(bootstrap, name, partitions)


def wait_for_partitions(bootstrap: str, name: str, partitions: int, timeout: float = 30.0) -> None:
    """Wait until Metadata shows `partitions` partitions of `name`, each with a leader."""
    client = admin(bootstrap)
    try:
        def visible():
            for meta in client.describe_topics([name]):
                if meta["name"] == name and meta["error_code"] == 0:
                    parts = meta["partitions"]
                    return len(parts) == partitions and all(p["leader_id"] >= 0 for p in parts)
            return False
        wait_until(visible, timeout, interval=0.2, what=f"{partitions} partitions of {name}")
    finally:
        client.close()


def producer(bootstrap: str, **config) -> KafkaProducer:
    settings = dict(
        bootstrap_servers=bootstrap,
        client_id="sluice-tests-producer",
        acks="all",
        request_timeout_ms=CLIENT_TIMEOUT_MS,
        retries=5,
    )
    settings.update(config)
    return KafkaProducer(**settings)


def produce_values(bootstrap: str, topic: str, values: list[bytes], partition: int = 0,
                   **config) -> list[int]:
    """Produce `values` to one partition; returns the acknowledged offsets."""
    prod = producer(bootstrap, **config)
    try:
        futures = [prod.send(topic, value=value, partition=partition) for value in values]
        prod.flush(timeout=60)
        return [future.get(timeout=60).offset for future in futures]
    finally:
        prod.close(timeout=10)


def read_all(bootstrap: str, topic: str, partitions: list[int] | None = None,
             timeout: float = 60.0) -> list:
    """Every record of `topic` (or of `partitions`), from the log start to the
    end offset the broker reports when the read starts, in partition order
    then offset order."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="sluice-tests-reader",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=CLIENT_TIMEOUT_MS,
        fetch_max_wait_ms=100,
    )
    try:
        if partitions is None:
            found = wait_until(
                lambda: consumer.partitions_for_topic(topic), 30.0, interval=0.2,
                what=f"metadata of {topic}")
            partitions = sorted(found)
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records: dict[TopicPartition, list] = {tp: [] for tp in tps}
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() >= deadline:
                positions = {tp.partition: consumer.position(tp) for tp in tps}
                raise TimeoutError(
                    f"read of {topic} stuck at {positions}, end offsets "
                    f"{ {tp.partition: o for tp, o in end.items()} }")
            for tp, batch in consumer.poll(timeout_ms=500).items():
                records[tp].extend(r for r in batch if r.offset < end[tp])
        return [r for tp in tps for r in records[tp]]
    finally:
        consumer.close(autocommit=False)


def end_offsets(bootstrap: str, topic: str, partitions: list[int]) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close(autocommit=False)


def roundtrip_works(bootstrap: str, topic: str) -> None:
    """Produce one record with kafka-python and read it back; raises if not."""
    marker = f"roundtrip-{time.monotonic_ns()}".encode()
    [offset] = produce_values(bootstrap, topic, [marker])
    values = [r.value for r in read_all(bootstrap, topic, [0]) if r.offset == offset]
    assert values == [marker], f"offset {offset} of {topic} holds {values}, not {marker!r}"


def read_offsets(bootstrap: str, topic: str, partition: int) -> tuple[int, int]:
    """(log start offset, end offset) of one partition, from ListOffsets."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, partition)
        return consumer.beginning_offsets([tp])[tp], consumer.end_offsets([tp])[tp]
    finally:
        consumer.close(autocommit=False)

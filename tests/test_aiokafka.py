"""aiokafka (asyncio client) against Sluice."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

import clients
from harness import unique_topic

RECORDS = 2_000


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> list:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                request_timeout_ms=30_000)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=v[:8], partition=0) for v in values]
        return list(await asyncio.wait_for(asyncio.gather(*futures), timeout=60))
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, count: int) -> list:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        records = []

        async def read():
            while len(records) < count:
                batches = await consumer.getmany(tp, timeout_ms=500, max_records=500)
                records.extend(batches.get(tp, []))

        await asyncio.wait_for(read(), timeout=60)
        assert await consumer.end_offsets([tp]) == {tp: count}
        return records
    finally:
        await consumer.stop()


def test_aiokafka_records_round_trip_with_assign_and_seek(broker):
    topic = unique_topic("aio")
    clients.create_topic(broker.bootstrap, topic, partitions=1)
    values = [f"aio-{i:05d}-".encode() + bytes([i % 256]) * (i % 100) for i in range(RECORDS)]

    acked = asyncio.run(produce(broker.bootstrap, topic, values))
    assert [m.offset for m in acked] == list(range(RECORDS))

    records = asyncio.run(consume(broker.bootstrap, topic, RECORDS))
    assert [r.value for r in records] == values
    assert [r.key for r in records] == [v[:8] for v in values]
    assert [r.offset for r in records] == list(range(RECORDS))

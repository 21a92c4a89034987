"""Fetch v13+ (topics named by id, KIP-516) and the newer ListOffsets versions
with real clients:

- librdkafka 2.16 (confluent-kafka) consumes at Fetch v13 or later (its own
  protocol log names the version each request was sent at) and reads every
  record back; the packaged kcat, whose older librdkafka stops at Fetch v11,
  still consumes at v11.
- kafka-python infers a Kafka 4 broker from the versions Sluice advertises,
  and consumes.
- In a three-node cluster, a Fetch v16 by topic id sent to a follower is
  answered NOT_LEADER_OR_FOLLOWER with the current leader and its endpoint,
  and the same fetch sent to that endpoint returns the records.

The single-node tests use the session's broker; the cluster test starts its
own three nodes in its tmp_path and kills them by PID afterwards.
"""

from __future__ import annotations

import gc
import re
import shutil
import subprocess

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer
from kafka.net.compat import KafkaNetClient
from kafka.protocol.consumer import FetchRequest
from kafka.protocol.metadata import MetadataRequest

import clients
from cluster import Cluster
from harness import unique_topic, wait_until

NOT_LEADER_OR_FOLLOWER = 6
# librdkafka's protocol log: "Sent FetchRequest (v13, ...)".
SENT_FETCH = re.compile(r"Sent FetchRequest \(v(\d+)")


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for v in values:
        producer.produce(topic, v, partition=0)
    assert producer.flush(30) == 0


def fetch_versions(log: str) -> set[int]:
    """The Fetch versions librdkafka's protocol log says it sent."""
    return {int(v) for v in SENT_FETCH.findall(log)}


def test_librdkafka_consumer_fetches_by_topic_id_at_v13_or_later(broker, capfd):
    topic = unique_topic("rdk-by-id")
    clients.create_topic(broker.bootstrap, topic, partitions=1)
    values = [f"record {i}".encode() for i in range(200)]
    produce(broker.bootstrap, topic, values)

    # librdkafka writes its debug log to the process's stderr.
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": f"g-{topic}",
        "enable.auto.commit": False,
        "debug": "protocol",
    })
    got: list[bytes] = []
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])

        def read_all():
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                got.append(message.value())
            return len(got) >= len(values)

        wait_until(read_all, timeout=60, what="every record consumed")
    finally:
        consumer.close()
    assert got == values
    versions = fetch_versions(capfd.readouterr().err)
    assert versions, "librdkafka logged no Fetch request"
    assert min(versions) >= 13, f"Fetch versions used: {sorted(versions)}"


def test_kcat_consumes_at_the_newest_fetch_version_its_librdkafka_has(broker):
    binary = shutil.which("kcat")
    assert binary is not None, "kcat is not installed (scripts/test.sh installs it)"
    topic = unique_topic("kcat-by-id")
    clients.create_topic(broker.bootstrap, topic, partitions=1)
    lines = [f"line {i}" for i in range(100)]
    produce(broker.bootstrap, topic, [line.encode() for line in lines])

    result = subprocess.run(
        [binary, "-C", "-b", broker.bootstrap, "-t", topic, "-o", "beginning", "-e",
         "-d", "protocol"],
        capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert result.stdout.decode().splitlines() == lines
    # The packaged kcat links librdkafka 2.0.2, whose newest Fetch is v11:
    # the wider range Sluice advertises must leave it at that version.
    versions = fetch_versions(result.stderr.decode())
    assert versions == {11}, f"Fetch versions used: {sorted(versions)}"


def test_kafka_python_infers_a_kafka_4_broker_and_consumes(broker):
    topic = unique_topic("kp-by-id")
    clients.create_topic(broker.bootstrap, topic, partitions=1)
    values = [f"kp {i}".encode() for i in range(50)]
    produce(broker.bootstrap, topic, values)

    consumer = KafkaConsumer(
        topic, bootstrap_servers=broker.bootstrap, api_version=None,
        auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=30_000,
    )
    try:
        # ListOffsets v10 and Fetch v17 are Kafka 4.0's (kafka-python looks
        # for ListOffsets v11 to say 4.2).
        assert consumer.config["api_version"][0] == 4, consumer.config["api_version"]
        got = []
        for message in consumer:
            got.append(message.value)
            if len(got) == len(values):
                break
    finally:
        consumer.close()
    assert got == values


# -- a follower sends the client to the leader (v16) --------------------------


def fetch_v16_by_id(client: KafkaNetClient, node_id: int, topic_id) -> object:
    partition = FetchRequest.FetchTopic.FetchPartition(
        partition=0, fetch_offset=0, partition_max_bytes=1 << 20,
        current_leader_epoch=-1, log_start_offset=-1, last_fetched_epoch=-1)
    request = FetchRequest[16](
        replica_id=-1, max_wait_ms=0, min_bytes=1, max_bytes=1 << 20, isolation_level=0,
        session_id=0, session_epoch=-1,
        topics=[FetchRequest.FetchTopic(topic_id=topic_id, partitions=[partition])],
        forgotten_topics_data=[], rack_id="")
    return client.send_and_receive(node_id, request)


def test_follower_answers_a_v16_fetch_by_id_with_the_leaders_endpoint(request, tmp_path):
    nodes = Cluster(tmp_path, request)
    client = None
    try:
        nodes.start()
        topic = unique_topic("v16-leader")
        admin = AdminClient({"bootstrap.servers": nodes.bootstrap})
        admin.create_topics([NewTopic(topic, 1, 3)])[topic].result(30)
        nodes.wait_healthy(topic, partitions=1, rf=3)
        produce(nodes.bootstrap, topic, [b"a", b"b", b"c"])
        leader = nodes.leaders(topic)[0]
        follower = next(i for i in nodes.ids if i != leader)

        client = KafkaNetClient(bootstrap_servers=nodes.bootstrap)
        client.check_version()
        metadata = client.send_and_receive(
            leader, MetadataRequest[12](
                topics=[MetadataRequest.MetadataRequestTopic(name=topic)],
                allow_auto_topic_creation=False))
        topic_id = metadata.topics[0].topic_id

        answer = fetch_v16_by_id(client, follower, topic_id)
        part = answer.responses[0].partitions[0]
        assert answer.responses[0].topic_id == topic_id
        assert part.error_code == NOT_LEADER_OR_FOLLOWER
        assert part.current_leader.leader_id == leader
        assert part.current_leader.leader_epoch >= 0
        endpoints = {e.node_id: (e.host, e.port) for e in answer.node_endpoints}
        host, port = nodes.nodes[leader].kafka_addr.rsplit(":", 1)
        assert endpoints == {leader: (host, int(port))}

        # The client moves to the endpoint it was given and reads there.
        moved = fetch_v16_by_id(client, leader, topic_id)
        part = moved.responses[0].partitions[0]
        assert part.error_code == 0
        assert part.high_watermark == 3
        assert len(part.records) > 0
    finally:
        if client is not None:
            client.close()
        gc.collect()
        nodes.kill_all()

"""Partition reassignment, removing a node, and `sluice cluster status`, on
one three-node cluster shared by the module (tests run in file order):

- Partitions on {1,2} are reassigned to {2,3} and to {3,1} (kafka-python's
  AlterPartitionReassignments) under an idempotent acks=all producer
  (confluent-kafka): no delivery error, ListPartitionReassignments shows
  them while they run and nothing after, the replica sets become the
  targets, the leader of the one whose old leader left moves into the
  target, the new replicas hold identical batches, the removed replica
  deletes its copy, and every acknowledged record is read back once.
- Invalid reassignments are refused with Kafka's codes.
- `sluice cluster status` (table and --json) says what the nodes say.
- `sluice cluster remove-node --id 3` under the producer moves node 3's
  replicas away, then node 3 leaves the Raft voters and the metadata; it is
  stopped with nothing under-replicated and the producer never fails.

Every process is ended by its PID after the module; every wait polls
against a deadline.
"""

from __future__ import annotations

import gc
import json
import subprocess
import time

import pytest
from confluent_kafka.admin import NewTopic
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import (InvalidReplicationAssignmentError, NoReassignmentInProgressError,
                          UnknownTopicOrPartitionError)

from cluster import POLL, Cluster
from harness import sluice_binary, unique_topic, wait_until
from test_cluster_replication import (TIMEOUT, FLUSH_TIMEOUT, NumberedProducer, admin,
                                      assert_log_is_exactly_what_was_sent)

# Bytes preloaded into the first reassigned partition, so the move takes a
# measurable while (and is seen while it runs).
PRELOAD_BYTES = 64 * 1024 * 1024
PRELOAD_RECORD = 16 * 1024


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory):
    """Three started nodes for the whole module, SIGKILLed by PID after it."""
    nodes = Cluster(tmp_path_factory.mktemp("reassign"), request)
    try:
        nodes.start()
        yield nodes
    finally:
        gc.collect()
        nodes.kill_all()


def kafka_admin(cluster: Cluster) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=cluster.live_bootstrap,
                            client_id="sluice-reassignment-tests",
                            request_timeout_ms=30_000)


def create_topic(cluster: Cluster, name: str, partitions: int, rf: int) -> None:
    client = admin(cluster.live_bootstrap)
    futures = client.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=rf)],
        operation_timeout=TIMEOUT)
    futures[name].result(timeout=TIMEOUT)
    cluster.wait_healthy(name, partitions, rf)


def settled(image: dict, topic: str, targets: dict[int, list[int]]) -> bool:
    """Every partition of `targets` has exactly its target as replicas, in
    sync, with no reassignment left."""
    parts = Cluster.partitions(image, topic)
    return parts is not None and all(
        parts[p]["replicas"] == t and sorted(parts[p]["isr"]) == sorted(t)
        and not parts[p].get("adding_replicas") and not parts[p].get("removing_replicas")
        for p, t in targets.items())


def reassign(cluster: Cluster, topic: str, targets: dict[int, list[int] | None]) -> dict:
    client = kafka_admin(cluster)
    try:
        return client.alter_partition_reassignments(
            {TopicPartition(topic, p): t for p, t in targets.items()})
    finally:
        client.close()


def list_reassignments(cluster: Cluster) -> dict:
    client = kafka_admin(cluster)
    try:
        return client.list_partition_reassignments()
    finally:
        client.close()


def move_and_wait(cluster: Cluster, topic: str, targets: dict[int, list[int]]) -> dict:
    result = reassign(cluster, topic, targets)
    assert all(e is None for e in result.values()), result
    return cluster.wait_image(lambda image: settled(image, topic, targets),
                              f"{topic} on {targets}", timeout=TIMEOUT * 2)


def preload(cluster: Cluster, topic: str, partition: int, total: int) -> None:
    """`total` bytes of filler records (not numbered) before the test's records."""
    from confluent_kafka import Producer
    producer = Producer({"bootstrap.servers": cluster.live_bootstrap, "acks": "all",
                         "linger.ms": 20, "batch.size": 1_000_000,
                         "enable.idempotence": True})
    errors: list[str] = []
    value = b"x" * PRELOAD_RECORD
    for _ in range(total // PRELOAD_RECORD):
        while True:
            try:
                producer.produce(topic, value=value, partition=partition,
                                 on_delivery=lambda err, _m: err and errors.append(err.name()))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(TIMEOUT) == 0
    assert errors == []


def sluice(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([str(sluice_binary()), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def status_json(cluster: Cluster) -> dict:
    node = cluster.nodes[cluster.alive_ids()[0]]
    out = sluice("cluster", "status", "--http", node.http, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def read_numbered(cluster: Cluster, topic: str, partitions: int):
    """Records of a topic whose partition 0 starts with filler: the
    numbered ones only (the filler is not `partition:seq`)."""
    from test_cluster_replication import read_partitions
    return read_partitions(cluster, topic, partitions)


@pytest.mark.timeout(300)
def test_reassignments_under_an_idempotent_producer_lose_and_duplicate_nothing(cluster):
    topic = unique_topic("reassign")
    create_topic(cluster, topic, 2, 2)
    # Both partitions on {1,2} first (itself a reassignment, before the load).
    move_and_wait(cluster, topic, {0: [1, 2], 1: [1, 2]})
    cluster.wait_image(lambda image: [p["leader"] for p in Cluster.partitions(image, topic)]
                       == [1, 1], "node 1 leads both partitions")

    # Filler goes to a second topic moved the same way, so the numbered
    # topic's log is exactly what the producer sent.
    bulk = unique_topic("reassign-bulk")
    create_topic(cluster, bulk, 1, 2)
    move_and_wait(cluster, bulk, {0: [1, 2]})
    preload(cluster, bulk, 0, PRELOAD_BYTES)

    producer = NumberedProducer(cluster.live_bootstrap, topic, 2)
    producer.start()
    finished = False
    try:
        wait_until(lambda: all(producer.acked_count(p) >= 50 for p in range(2)),
                   TIMEOUT, interval=POLL, what="50 acknowledged records per partition")
        result = reassign(cluster, topic, {0: [2, 3], 1: [3, 1]})
        assert all(e is None for e in result.values()), result
        # What is listed right after is still moving, with Kafka's fields
        # (a deterministic listing is in the cancel test below).
        ongoing = list_reassignments(cluster)
        expected = {
            TopicPartition(topic, 0): {"replicas": [2, 3, 1], "adding_replicas": [3],
                                       "removing_replicas": [1]},
            TopicPartition(topic, 1): {"replicas": [3, 1, 2], "adding_replicas": [3],
                                       "removing_replicas": [2]},
        }
        assert all(expected[tp] == r for tp, r in ongoing.items()), ongoing
        print(f"\n[reassignment] listed while moving: {sorted(str(tp) for tp in ongoing)}")
        started = time.monotonic()
        result = reassign(cluster, bulk, {0: [2, 3]})
        assert result == {TopicPartition(bulk, 0): None}, result

        bulk_done = cluster.wait_image(lambda image: settled(image, bulk, {0: [2, 3]}),
                                       "the preloaded partition moved", timeout=TIMEOUT * 2)
        moved_in = time.monotonic() - started
        # The figure is honest: node 3 holds the whole preloaded log.
        moved = cluster.replica(3, bulk, 0)
        assert moved["log_end_offset"] == PRELOAD_BYTES // PRELOAD_RECORD, moved
        cluster.wait_image(lambda image: settled(image, topic, {0: [2, 3], 1: [3, 1]}),
                           "both partitions moved", timeout=TIMEOUT * 2)
        assert list_reassignments(cluster) == {}
        # Node 1 left partition 0: its leader is now in the target. Partition
        # 1's preferred leader (3) takes over once in sync.
        image = cluster.wait_image(
            lambda image: [p["leader"] for p in Cluster.partitions(image, topic)] == [2, 3],
            "leaders 2 and 3 (the targets' preferred ones)")
        assert Cluster.partitions(bulk_done, bulk)[0]["leader"] in (2, 3)
        after = time.monotonic()
        wait_until(lambda: all(producer.acked_produced_after(p, after) >= 20 for p in range(2)),
                   TIMEOUT, interval=POLL, what="acks after the moves")
        gaps = {p: max((b - a for a, b in zip(ts, ts[1:])), default=0.0)
                for p, ts in ((p, sorted(t for _, _, t in producer.acked[p]))
                              for p in range(2))}
        finished = True
    finally:
        producer.stop(FLUSH_TIMEOUT if finished else 10.0)
    mib = PRELOAD_BYTES / 2**20
    print(f"\n[reassignment] {mib:.0f} MiB partition moved to a new replica in {moved_in:.2f} s "
          f"({mib / moved_in:.1f} MiB/s); longest gap between acks while partitions moved "
          f"under the producer: " + ", ".join(f"p{p}={g:.2f} s" for p, g in gaps.items()))

    assert not producer.is_alive(), "the producer thread did not finish its flush"
    assert producer.exception is None, repr(producer.exception)
    assert_log_is_exactly_what_was_sent(cluster, producer, topic, 2)
    # The new replicas hold identical batches; the node that left deleted its copy.
    for p, replicas in ((0, [2, 3]), (1, [3, 1])):
        def level(p=p, replicas=replicas):
            entries = [cluster.replica(i, topic, p) for i in replicas]
            ends = {(e["log_end_offset"], e["high_watermark"]) for e in entries if e}
            return ends.pop()[0] if len(ends) == 1 and len(entries) == len(replicas) else None
        upto = wait_until(level, TIMEOUT, interval=POLL, what=f"partition {p} replicas level")
        digests = {cluster.digest(i, topic, p, upto)["sha256"] for i in replicas}
        assert len(digests) == 1, f"partition {p}: replicas differ below {upto}"
    assert cluster.digest(1, topic, 0, 1 << 62)["batches"] == 0
    assert cluster.digest(1, bulk, 0, 1 << 62)["batches"] == 0
    assert "no longer a replica; deleting the local copy" in cluster.nodes[1].log_text()
    assert image["topics"][topic]["partitions"][0]["leader_epoch"] > 0


@pytest.mark.timeout(120)
def test_invalid_reassignments_are_refused_with_kafkas_codes(cluster):
    topic = unique_topic("reassign-bad")
    create_topic(cluster, topic, 1, 2)
    before = Cluster.partitions(cluster.image(), topic)[0]["replicas"]
    for target, error in (([1, 9], InvalidReplicationAssignmentError),
                          ([2, 2], InvalidReplicationAssignmentError),
                          (None, NoReassignmentInProgressError)):
        result = reassign(cluster, topic, {0: target})
        assert result == {TopicPartition(topic, 0): error}, (target, result)
    for tp in (TopicPartition(topic, 7), TopicPartition("no-such-topic", 0)):
        result = reassign(cluster, tp.topic, {tp.partition: [1, 2]})
        assert result == {tp: UnknownTopicOrPartitionError}, result
    assert Cluster.partitions(cluster.image(), topic)[0]["replicas"] == before
    assert list_reassignments(cluster) == {}


@pytest.mark.timeout(180)
def test_a_reassignment_waits_for_its_new_replica_is_listed_and_can_be_cancelled(cluster):
    """With node 3 stopped, a move onto it cannot complete: it stays listed
    (replicas, adding, removing) until cancelled, and the cancel restores
    the original replicas."""
    topic = unique_topic("reassign-cancel")
    create_topic(cluster, topic, 1, 2)
    move_and_wait(cluster, topic, {0: [1, 2]})
    assert cluster.stop(3) == 0
    try:
        # The admin client sends to the controller: one of the running nodes.
        cluster.raft_leader()
        cluster.wait_image(lambda image: image["brokers"]["3"]["fenced"], "node 3 fenced")
        tp = TopicPartition(topic, 0)
        assert reassign(cluster, topic, {0: [1, 3]}) == {tp: None}
        assert list_reassignments(cluster) == {tp: {
            "replicas": [1, 3, 2], "adding_replicas": [3], "removing_replicas": [2]}}
        assert reassign(cluster, topic, {0: None}) == {tp: None}
        assert list_reassignments(cluster) == {}
        parts = Cluster.partitions(cluster.image(), topic)
        assert (parts[0]["replicas"], sorted(parts[0]["isr"])) == ([1, 2], [1, 2])
    finally:
        cluster.start_node(3)
    cluster.wait_registered()


@pytest.mark.timeout(120)
def test_cluster_status_reports_nodes_raft_and_partitions_as_the_nodes_do(cluster):
    controller = cluster.raft_leader()
    cluster.wait_image(lambda image: all(len(p["isr"]) == len(p["replicas"])
                                         for t in image["topics"].values()
                                         for p in t["partitions"]), "every partition in sync")
    image = cluster.image()
    status = status_json(cluster)
    assert status["mode"] == "cluster"
    assert status["controller"] == controller
    assert status["cluster_id"] == image["cluster_id"]
    assert [n["id"] for n in status["nodes"]] == [1, 2, 3]
    total = sum(len(t["partitions"]) for t in image["topics"].values())
    assert status["partitions"] == {"total": total, "under_replicated": 0, "offline": 0,
                                    "reassigning": 0}
    for n in status["nodes"]:
        raft = cluster.raft(n["id"])["status"]
        assert n["alive"] and not n["fenced"] and n["voter"]
        assert n["controller"] == (n["id"] == controller)
        assert n["raft"]["role"] == raft["role"]
        assert n["raft"]["node_id"] == n["id"]
        assert abs(n["raft"]["term"] - raft["term"]) <= 1
        assert n["replicas"] == sum(n["id"] in p["replicas"] for t in image["topics"].values()
                                    for p in t["partitions"])
        assert n["leaders"] == sum(n["id"] == p["leader"] for t in image["topics"].values()
                                   for p in t["partitions"])
    table = sluice("cluster", "status", "--http", cluster.nodes[1].http)
    assert table.returncode == 0, table.stderr
    print("\n" + table.stdout)
    lines = table.stdout.splitlines()
    assert f"controller {controller}" in lines[0]
    rows = {int(line.split()[0]): line.split() for line in lines
            if line[:1].isdigit()}
    assert sorted(rows) == [1, 2, 3]
    assert rows[controller][3] == "controller" and rows[controller][4] == "Leader"
    assert all(row[2] == "alive" for row in rows.values())
    assert f"partitions: {total} total, 0 under-replicated, 0 offline, 0 reassigning" in table.stdout


@pytest.mark.timeout(300)
def test_removing_a_node_under_load_moves_its_replicas_then_it_leaves(cluster):
    topic = unique_topic("remove-node")
    partitions = 3
    create_topic(cluster, topic, partitions, 2)
    move_and_wait(cluster, topic, {0: [3, 1], 1: [2, 3], 2: [1, 2]})
    producer = NumberedProducer(cluster.live_bootstrap, topic, partitions)
    producer.start()
    finished = False
    try:
        wait_until(lambda: all(producer.acked_count(p) >= 50 for p in range(partitions)),
                   TIMEOUT, interval=POLL, what="50 acknowledged records per partition")
        started = time.monotonic()
        out = sluice("cluster", "remove-node", "--id", "3",
                     "--bootstrap", cluster.nodes[1].bootstrap, "--timeout-secs", "150",
                     timeout=180)
        took = time.monotonic() - started
        assert out.returncode == 0, out.stdout + out.stderr
        assert "node 3 removed from the cluster" in out.stdout, out.stdout
        image = cluster.wait_image(lambda image: "3" not in image["brokers"],
                                   "node 3 out of the image", ids=[1, 2])
        assert all(3 not in p["replicas"] for t in image["topics"].values()
                   for p in t["partitions"])
        voters = wait_until(lambda: (cluster.raft(1) or {}).get("status", {}).get("voters"),
                            TIMEOUT, what="node 1's voters")
        wait_until(lambda: sorted(cluster.raft(1)["status"]["voters"]) == [1, 2], TIMEOUT,
                   interval=POLL, what=f"voters [1, 2] (now {voters})")
        assert cluster.stop(3) == 0
        stopped_at = time.monotonic()
        wait_until(lambda: all(producer.acked_produced_after(p, stopped_at) >= 20
                               for p in range(partitions)),
                   TIMEOUT, interval=POLL, what="acks after node 3 stopped")
        finished = True
    finally:
        producer.stop(FLUSH_TIMEOUT if finished else 10.0)
    print(f"\n[remove-node] node 3's replicas moved and node 3 left in {took:.2f} s")
    assert not producer.is_alive()
    assert producer.exception is None, repr(producer.exception)
    assert_log_is_exactly_what_was_sent(cluster, producer, topic, partitions)
    status = status_json(cluster)
    assert [n["id"] for n in status["nodes"]] == [1, 2]
    assert status["partitions"]["under_replicated"] == 0, status["under_replicated"]
    assert status["partitions"]["offline"] == 0, status["offline"]


def test_a_single_node_accepts_only_its_own_id_and_has_nothing_to_list(broker):
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap,
                              client_id="sluice-reassignment-tests")
    try:
        topic = unique_topic("single-reassign")
        from kafka.admin import NewTopic as KNewTopic
        client.create_topics([KNewTopic(topic, 1, 1)])
        me = broker.node_id if hasattr(broker, "node_id") else 1
        tp = TopicPartition(topic, 0)
        assert client.alter_partition_reassignments({tp: [me]}) == {tp: None}
        assert client.alter_partition_reassignments({tp: [me, me + 1]}) == {
            tp: InvalidReplicationAssignmentError}
        assert client.alter_partition_reassignments({tp: None}) == {
            tp: NoReassignmentInProgressError}
        assert client.list_partition_reassignments() == {}
    finally:
        client.close()

"""Transactions with a real client (confluent-kafka / librdkafka): the
transaction coordinator (InitProducerId with a transactional id, fencing,
AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn, the timeout
of abandoned transactions, DescribeTransactions and ListTransactions on the
wire) on one node, and its failover on a three-node cluster.

One node serves the single-node tests (module-scoped); the cluster test
starts its own three nodes. Every wait polls against a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from confluent_kafka import Consumer, IsolationLevel, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

import wire
from cluster import Cluster
from harness import Broker, unique_topic, wait_until

TIMEOUT = 30.0
# The coordinator looks for transactions past their timeout this often.
ABORT_CHECK_MS = 200

# Transactional batches need the partition layer's side of transactions
# (control batches, markers); until the branch has it, the tests that
# produce transactionally are skipped.
PARTITION_SIDE = True
needs_partition_side = pytest.mark.skipif(
    not PARTITION_SIDE, reason="the partition layer does not accept transactional batches yet")

LIST_TRANSACTIONS = 66
DESCRIBE_TRANSACTIONS = 65
FIND_COORDINATOR = 10


@pytest.fixture(scope="module")
def node(request, tmp_path_factory):
    broker = Broker(
        tmp_path_factory.mktemp("txn-node"),
        ["--transaction-abort-check-interval-ms", str(ABORT_CHECK_MS)],
    )
    request.node._sluice_brokers = [broker]
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def bootstrap_of(node: Broker) -> str:
    return f"127.0.0.1:{node.kafka_port}"


def create_topic(bootstrap: str, name: str, partitions: int, rf: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=rf)],
        operation_timeout=TIMEOUT,
    )
    futures[name].result(timeout=TIMEOUT)

    def visible():
        md = admin.list_topics(name, timeout=5)
        t = md.topics.get(name)
        return t is not None and t.error is None and len(t.partitions) == partitions

    wait_until(visible, TIMEOUT, what=f"{name} has {partitions} partitions")


def txn_producer(bootstrap: str, transactional_id: str, **extra) -> Producer:
    conf = {
        "bootstrap.servers": bootstrap,
        "transactional.id": transactional_id,
        "transaction.timeout.ms": 60_000,
        "linger.ms": 5,
    }
    conf.update(extra)
    return Producer(conf)


def read_all(bootstrap: str, topic: str, partitions: int, isolation: str,
             expect: int | None = None, settle: float = 1.5) -> list[bytes]:
    """Every record value of `topic` a consumer with `isolation` reads: until
    `expect` values arrived (or, without `expect`, until nothing new comes for
    `settle` seconds), within TIMEOUT."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"reader-{uuid.uuid4().hex[:8]}",
        "isolation.level": isolation,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        values: list[bytes] = []
        deadline = time.monotonic() + TIMEOUT
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                values.append(m.value())
                last_new = time.monotonic()
            if expect is not None and len(values) >= expect:
                # Anything beyond `expect` would still show within a short while.
                if time.monotonic() - last_new > 0.5:
                    break
            elif expect is None and time.monotonic() - last_new > settle:
                break
        return values
    finally:
        c.close()


def end_offsets(bootstrap: str, topic: str, isolation: IsolationLevel) -> list[int]:
    """ListOffsets LATEST of each partition with `isolation`: the high watermark
    (read_uncommitted) or the last stable offset (read_committed)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    partitions = [TopicPartition(topic, p) for p in range(3)]
    answers = admin.list_offsets({tp: OffsetSpec.latest() for tp in partitions},
                                 isolation_level=isolation, request_timeout=TIMEOUT)
    return [answers[tp].result(TIMEOUT).offset for tp in partitions]


def run_transaction(p: Producer, topic: str, partitions: int, tag: str, count: int,
                    commit: bool) -> list[bytes]:
    p.begin_transaction()
    values = [f"{tag}-{i}".encode() for i in range(count)]
    for i, v in enumerate(values):
        p.produce(topic, v, partition=i % partitions)
    p.flush(TIMEOUT)
    if commit:
        p.commit_transaction(TIMEOUT)
    else:
        p.abort_transaction(TIMEOUT)
    return values


# -- raw wire: FindCoordinator, ListTransactions, DescribeTransactions --------

def compact_string(r: wire.Reader) -> str | None:
    n = r.uvarint() - 1
    if n < 0:
        return None
    return r._take(n).decode()


def compact_array_len(r: wire.Reader) -> int:
    return r.uvarint() - 1


def list_transactions(bootstrap: str, states: list[str] = (), producer_ids: list[int] = ()) -> list[tuple[str, int, str]]:
    """ListTransactions v0: [(transactional_id, producer_id, state)]."""
    body = (wire.uvarint(len(states) + 1) + b"".join(wire.compact_string(s) for s in states)
            + wire.uvarint(len(producer_ids) + 1) + b"".join(wire.int64(p) for p in producer_ids)
            + wire.EMPTY_TAGGED_FIELDS)
    with wire.Connection(bootstrap) as conn:
        r = conn.request(LIST_TRANSACTIONS, 0, body, header_version=2, response_header_version=1)
    r.int32()  # throttle
    assert r.int16() == 0
    for _ in range(compact_array_len(r)):
        compact_string(r)
    out = []
    for _ in range(compact_array_len(r)):
        tid = compact_string(r)
        pid = r.int64()
        state = compact_string(r)
        r.skip_tagged_fields()
        out.append((tid, pid, state))
    return out


def describe_transaction(bootstrap: str, transactional_id: str) -> dict:
    """DescribeTransactions v0 of one id."""
    body = wire.uvarint(2) + wire.compact_string(transactional_id) + wire.EMPTY_TAGGED_FIELDS
    with wire.Connection(bootstrap) as conn:
        r = conn.request(DESCRIBE_TRANSACTIONS, 0, body, header_version=2,
                         response_header_version=1)
    r.int32()
    assert compact_array_len(r) == 1
    d = {"error_code": r.int16(), "transactional_id": compact_string(r),
         "state": compact_string(r), "timeout_ms": r.int32(), "start_ms": r.int64(),
         "producer_id": r.int64(), "producer_epoch": r.int16(), "partitions": []}
    for _ in range(compact_array_len(r)):
        topic = compact_string(r)
        for _ in range(compact_array_len(r)):
            d["partitions"].append((topic, r.int32()))
        r.skip_tagged_fields()
    return d


def find_txn_coordinator(bootstrap: str, transactional_id: str) -> tuple[int, int]:
    """FindCoordinator v1 with key type 1: (error code, node id)."""
    body = wire.string(transactional_id) + wire.int8(1)
    # Any live node of the bootstrap list answers (one may have been killed).
    last: Exception | None = None
    for address in bootstrap.split(","):
        try:
            with wire.Connection(address) as conn:
                r = conn.request(FIND_COORDINATOR, 1, body)
            break
        except OSError as e:
            last = e
    else:
        raise last or OSError("no bootstrap address")
    r.int32()
    error = r.int16()
    r.string()
    node_id = r.int32()
    return error, node_id


# -- single node --------------------------------------------------------------

@needs_partition_side
def test_commit_and_abort_across_three_partitions(node):
    bootstrap = bootstrap_of(node)
    topic = unique_topic("txn")
    create_topic(bootstrap, topic, 3)
    p = txn_producer(bootstrap, f"tx-{topic}")
    p.init_transactions(TIMEOUT)
    committed = run_transaction(p, topic, 3, "c1", 30, commit=True)
    aborted = run_transaction(p, topic, 3, "a1", 30, commit=False)
    committed += run_transaction(p, topic, 3, "c2", 30, commit=True)
    uncommitted = read_all(bootstrap, topic, 3, "read_uncommitted", expect=90)
    assert sorted(uncommitted) == sorted(committed + aborted)
    d = describe_transaction(bootstrap, f"tx-{topic}")
    assert d["error_code"] == 0
    assert d["state"] == "CompleteCommit", d
    assert d["partitions"] == []


def test_init_producer_id_with_a_transactional_id_is_served(node):
    """Before the coordinator, InitProducerId with a transactional id was
    refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED."""
    bootstrap = bootstrap_of(node)
    with wire.Connection(bootstrap) as conn:
        error, pid, epoch = wire.init_producer_id(conn, f"tx-{uuid.uuid4().hex[:8]}")
    assert error == 0
    assert pid >= 0 and epoch == 0
    error, node_id = find_txn_coordinator(bootstrap, "any-id")
    assert error == 0 and node_id >= 0


@needs_partition_side
def test_second_producer_fences_the_first(node):
    bootstrap = bootstrap_of(node)
    topic = unique_topic("fence")
    create_topic(bootstrap, topic, 3)
    tid = f"tx-{topic}"
    first = txn_producer(bootstrap, tid)
    first.init_transactions(TIMEOUT)
    first.begin_transaction()
    for i in range(10):
        first.produce(topic, f"old-{i}".encode(), partition=i % 3)
    first.flush(TIMEOUT)
    before = describe_transaction(bootstrap, tid)
    assert before["state"] == "Ongoing"
    # The second instance's init aborts the first's open transaction.
    second = txn_producer(bootstrap, tid)
    second.init_transactions(TIMEOUT)
    after = describe_transaction(bootstrap, tid)
    assert after["producer_id"] == before["producer_id"]
    assert after["producer_epoch"] > before["producer_epoch"]
    assert after["state"] in ("Empty", "CompleteAbort"), after
    with pytest.raises(KafkaException) as fenced:
        first.commit_transaction(TIMEOUT)
    err = fenced.value.args[0]
    assert err.fatal() or "fenced" in err.str().lower(), err
    # The new instance works.
    run_transaction(second, topic, 3, "new", 9, commit=True)


@needs_partition_side
def test_offsets_sent_in_a_transaction_count_only_when_it_commits(node):
    bootstrap = bootstrap_of(node)
    source = unique_topic("src")
    sink = unique_topic("sink")
    create_topic(bootstrap, source, 1)
    create_topic(bootstrap, sink, 1)
    plain = Producer({"bootstrap.servers": bootstrap})
    for i in range(20):
        plain.produce(source, f"in-{i}".encode(), partition=0)
    plain.flush(TIMEOUT)
    group = f"g-{source}"
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    })
    p = txn_producer(bootstrap, f"tx-{source}")
    try:
        consumer.subscribe([source])
        got = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < 10 and time.monotonic() < deadline:
            m = consumer.poll(0.2)
            if m is not None and m.error() is None:
                got.append(m)
        assert len(got) >= 10
        p.init_transactions(TIMEOUT)

        def transfer(upto: int, commit: bool):
            p.begin_transaction()
            p.produce(sink, b"out", partition=0)
            p.send_offsets_to_transaction(
                [TopicPartition(source, 0, upto)], consumer.consumer_group_metadata(), TIMEOUT)
            if commit:
                p.commit_transaction(TIMEOUT)
            else:
                p.abort_transaction(TIMEOUT)

        def committed_offset() -> int:
            return consumer.committed([TopicPartition(source, 0)], TIMEOUT)[0].offset

        transfer(5, commit=False)
        assert committed_offset() < 0, "an aborted transaction's offsets were committed"
        transfer(7, commit=True)
        wait_until(lambda: committed_offset() == 7, TIMEOUT, what="offset 7 committed")
        transfer(9, commit=False)
        assert committed_offset() == 7
    finally:
        consumer.close()

    # The coordinator replays transactional offsets and markers at start.
    node.restart()
    check = Consumer({"bootstrap.servers": bootstrap_of(node), "group.id": group})
    try:
        wait_until(
            lambda: check.committed([TopicPartition(source, 0)], 5)[0].offset == 7,
            TIMEOUT, what="offset 7 still committed after a restart")
    finally:
        check.close()


# Opens a transaction over three partitions, reports "open", and waits to be
# killed. Its timeout must outlast what the test checks while the transaction
# is open (a produce, two admin clients, two raw requests): a 2 s timeout ran
# out before the second ListOffsets on a loaded two-core machine, so the test
# saw the abort marker already written.
ABANDONING_PRODUCER = textwrap.dedent("""
    import sys
    from confluent_kafka import Producer
    bootstrap, tid, topic = sys.argv[1:4]
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid,
                  "transaction.timeout.ms": 10000})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(9):
        p.produce(topic, b"abandoned-%d" % i, partition=i % 3)
    p.flush(30)
    print("open", flush=True)
    sys.stdin.read()
""")


@needs_partition_side
def test_abandoned_transaction_is_aborted_after_its_timeout_and_frees_the_lso(node):
    bootstrap = bootstrap_of(node)
    topic = unique_topic("abandon")
    create_topic(bootstrap, topic, 3)
    tid = f"tx-{topic}"
    plain = Producer({"bootstrap.servers": bootstrap})

    def produce_one_per_partition(tag: str) -> None:
        for p in range(3):
            plain.produce(topic, f"{tag}-{p}".encode(), partition=p)
        assert plain.flush(TIMEOUT) == 0

    produce_one_per_partition("before")
    proc = subprocess.Popen([sys.executable, "-c", ABANDONING_PRODUCER, bootstrap, tid, topic],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "open"
        # Records after the open transaction: committed, but held back by its start.
        produce_one_per_partition("after")
        # Offsets: 0 before, 1-3 the open transaction, 4 after.
        assert end_offsets(bootstrap, topic, IsolationLevel.READ_UNCOMMITTED) == [5, 5, 5]
        assert end_offsets(bootstrap, topic, IsolationLevel.READ_COMMITTED) == [1, 1, 1]
        ongoing = describe_transaction(bootstrap, tid)
        assert ongoing["state"] == "Ongoing", ongoing
        assert len(ongoing["partitions"]) == 3
        assert (tid, ongoing["producer_id"], "Ongoing") in list_transactions(bootstrap, ["Ongoing"])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(TIMEOUT)
        wait_until(lambda: describe_transaction(bootstrap, tid)["state"] == "CompleteAbort",
                   TIMEOUT, what="the abandoned transaction aborted")
        aborted = describe_transaction(bootstrap, tid)
        # The epoch was bumped: the producer that abandoned it is fenced.
        assert aborted["producer_epoch"] == ongoing["producer_epoch"] + 1
        listed = list_transactions(bootstrap, ["CompleteAbort"], [ongoing["producer_id"]])
        assert listed == [(tid, ongoing["producer_id"], "CompleteAbort")]
        assert list_transactions(bootstrap, ["Ongoing"], [ongoing["producer_id"]]) == []
        # The ABORT marker (offset 5) ends it: the last stable offset is the end of the log,
        # and a read_committed consumer gets what came before and after, none of it.
        assert end_offsets(bootstrap, topic, IsolationLevel.READ_UNCOMMITTED) == [6, 6, 6]
        assert end_offsets(bootstrap, topic, IsolationLevel.READ_COMMITTED) == [6, 6, 6]
        committed = read_all(bootstrap, topic, 3, "read_committed", expect=6)
        assert sorted(committed) == sorted(f"{t}-{p}".encode() for t in ("before", "after")
                                           for p in range(3))
        assert len(read_all(bootstrap, topic, 3, "read_uncommitted", expect=15)) == 15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- cluster ------------------------------------------------------------------

@needs_partition_side
def test_coordinator_kill9_leaves_every_transaction_whole(request, tmp_path):
    """kill -9 of the node that coordinates the transactional id while
    transactions run: every transaction ends committed or aborted, and a
    read_committed consumer reads only whole transactions."""
    cluster = Cluster(tmp_path, request,
                      extra_args=["--transaction-state-partitions", "3",
                                  "--transaction-abort-check-interval-ms", str(ABORT_CHECK_MS)])
    with cluster:
        cluster.start()
        bootstrap = cluster.bootstrap
        topic = unique_topic("txfail")
        create_topic(bootstrap, topic, 3, rf=3)
        cluster.wait_healthy(topic, 3, 3)
        tid = f"tx-{topic}"
        wait_until(lambda: find_txn_coordinator(bootstrap, tid)[0] == 0, TIMEOUT,
                   what="a transaction coordinator")
        coordinator = find_txn_coordinator(bootstrap, tid)[1]
        p = txn_producer(bootstrap, tid, **{"transaction.timeout.ms": 10_000})
        p.init_transactions(TIMEOUT)
        committed: list[list[bytes]] = []
        attempted = 0
        killed = False
        deadline = time.monotonic() + 90
        while len(committed) < 12 and time.monotonic() < deadline:
            attempted += 1
            values = [f"t{attempted}-{i}".encode() for i in range(12)]
            try:
                p.begin_transaction()
                for i, v in enumerate(values):
                    p.produce(topic, v, partition=i % 3)
                    if attempted == 4 and i == 6 and not killed:
                        cluster.kill9(coordinator)
                        killed = True
                p.flush(TIMEOUT)
                p.commit_transaction(TIMEOUT)
                committed.append(values)
            except KafkaException as e:
                err = e.args[0]
                if err.txn_requires_abort():
                    try:
                        p.abort_transaction(TIMEOUT)
                    except KafkaException:
                        pass
                elif not err.retriable():
                    p = txn_producer(cluster.live_bootstrap, tid,
                                     **{"transaction.timeout.ms": 10_000})
                    p.init_transactions(TIMEOUT)
        assert killed
        assert len(committed) >= 12, f"only {len(committed)} of {attempted} committed"
        survivors = cluster.live_bootstrap
        seen = read_all(survivors, topic, 3, "read_uncommitted", settle=3.0)
        by_txn: dict[str, int] = {}
        for v in seen:
            by_txn[v.decode().split("-")[0]] = by_txn.get(v.decode().split("-")[0], 0) + 1
        for values in committed:
            tag = values[0].decode().split("-")[0]
            assert by_txn.get(tag, 0) >= 12, f"committed transaction {tag} is not whole"
        print(f"transactions attempted {attempted}, committed {len(committed)}")

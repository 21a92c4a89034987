"""Consumer groups with kafka-python: partitions shared out inside a group,
exactly-once delivery with commits after processing, hand-over when a member
closes, pub-sub across groups, and the admin API for groups."""

from __future__ import annotations

import threading
import time

from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import GroupIdNotFoundError, NonEmptyGroupError

import clients
from group_clients import duplicates, produce_numbered
from harness import unique_topic, wait_until

SESSION_TIMEOUT_MS = 6_000


class GroupWorker(threading.Thread):
    """A kafka-python group consumer in its own thread: polls, records what it
    processed, then commits synchronously before polling again."""

    def __init__(self, bootstrap: str, topic: str, group: str, name: str):
        super().__init__(daemon=True, name=name)
        self.consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id=name,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=1_000,
            fetch_max_wait_ms=100,
            max_poll_records=1_000,
        )
        self.records: list[tuple[int, int, str]] = []
        self.owned: set[int] = set()
        self.commit_errors: list[str] = []
        self.stopping = threading.Event()
        self.closed = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                polled = self.consumer.poll(timeout_ms=100)
                batch = [(r.partition, r.offset, r.value.decode()) for rs in polled.values() for r in rs]
                with self.lock:
                    self.records.extend(batch)
                    self.owned = {tp.partition for tp in self.consumer.assignment()}
                if batch:
                    try:
                        self.consumer.commit()
                    except Exception as err:  # a failed commit is a test failure, reported below
                        self.commit_errors.append(repr(err))
        finally:
            self.consumer.close(autocommit=False)
            self.closed.set()

    def values(self) -> list[str]:
        with self.lock:
            return [v for _, _, v in self.records]

    def assignment(self) -> set[int]:
        with self.lock:
            return set(self.owned)

    def close(self, timeout: float = 30.0) -> None:
        self.stopping.set()
        self.closed.wait(timeout)


class Workers:
    """Starts workers and always stops them."""

    def __init__(self):
        self.workers: list[GroupWorker] = []

    def add(self, *args) -> GroupWorker:
        worker = GroupWorker(*args)
        self.workers.append(worker)
        worker.start()
        return worker

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc) -> None:
        for w in self.workers:
            w.stopping.set()
        for w in self.workers:
            w.closed.wait(30)


def wait_owned(workers: list[GroupWorker], partitions: int, timeout: float) -> list[set[int]]:
    def settled():
        owned = [w.assignment() for w in workers]
        flat = sorted(p for a in owned for p in a)
        sizes = [len(a) for a in owned]
        balanced = min(sizes) > 0 and max(sizes) - min(sizes) <= 1
        return owned if flat == list(range(partitions)) and balanced else None
    return wait_until(settled, timeout, interval=0.05, what="every partition owned exactly once")


def wait_consumed(workers: list[GroupWorker], expected: set[str], timeout: float = 90.0) -> None:
    def done():
        return expected <= {v for w in workers for v in w.values()}
    wait_until(done, timeout, interval=0.1, what=f"{len(expected)} records consumed")


def test_three_consumers_share_six_partitions_and_consume_30000_records_exactly_once(broker):
    topic = unique_topic("grp-kp")
    group = unique_topic("g")
    clients.create_topic(broker.bootstrap, topic, partitions=6)
    with Workers() as pool:
        workers = [pool.add(broker.bootstrap, topic, group, f"kp-{i}") for i in range(3)]
        owned = wait_owned(workers, 6, timeout=30)
        assert [len(a) for a in owned] == [2, 2, 2]

        first = produce_numbered(broker.bootstrap, topic, 0, 30_000, 6)
        wait_consumed(workers, set(first))
        consumed = [v for w in workers for v in w.values()]
        assert len(consumed) == 30_000 and not duplicates(consumed)
        # Each record came from a partition its consumer owned.
        for w, parts in zip(workers, owned):
            assert {p for p, _, _ in w.records} <= parts

        # One member closes (LeaveGroup): its partitions move to the others
        # well within the session timeout.
        leaving = workers[0]
        closed_at = time.monotonic()
        leaving.close()
        remaining = workers[1:]
        wait_owned(remaining, 6, timeout=SESSION_TIMEOUT_MS / 1000)
        moved_in = time.monotonic() - closed_at
        assert moved_in < SESSION_TIMEOUT_MS / 1000

        second = produce_numbered(broker.bootstrap, topic, 30_000, 3_000, 6)
        wait_consumed(remaining, set(second))
        everything = [v for w in workers for v in w.values()]
        assert set(everything) == set(first) | set(second), "nothing lost"
        assert not duplicates(everything), "nothing consumed twice"
        assert not any(w.commit_errors for w in workers), [w.commit_errors for w in workers]


def test_two_groups_each_receive_every_record(broker):
    topic = unique_topic("grp-pubsub")
    clients.create_topic(broker.bootstrap, topic, partitions=3)
    values = set(produce_numbered(broker.bootstrap, topic, 0, 2_000, 3))
    with Workers() as pool:
        a = pool.add(broker.bootstrap, topic, unique_topic("ga"), "a")
        b = pool.add(broker.bootstrap, topic, unique_topic("gb"), "b")
        wait_consumed([a], values)
        wait_consumed([b], values)
        assert sorted(a.values()) == sorted(values)
        assert sorted(b.values()) == sorted(values)


def test_admin_lists_describes_and_deletes_groups(broker):
    topic = unique_topic("grp-admin")
    group = unique_topic("g")
    clients.create_topic(broker.bootstrap, topic, partitions=2)
    values = set(produce_numbered(broker.bootstrap, topic, 0, 100, 2))
    admin = clients.admin(broker.bootstrap)
    try:
        with Workers() as pool:
            worker = pool.add(broker.bootstrap, topic, group, "admin-kp")
            wait_consumed([worker], values)
            wait_owned([worker], 2, timeout=10)

            listed = {g["group_id"]: g for g in admin.list_groups()}
            assert listed[group]["protocol_type"] == "consumer"
            assert listed[group]["group_state"] == "Stable"
            stable = {g["group_id"] for g in admin.list_groups(states_filter=["Stable"])}
            assert group in stable
            assert group not in {g["group_id"] for g in admin.list_groups(states_filter=["Empty"])}

            described = admin.describe_groups([group])[group]
            assert described["group_state"] == "Stable"
            assert described["protocol_data"] == "range"
            [member] = described["members"]
            assert member["client_id"] == "admin-kp"
            assert member["client_host"] == "/127.0.0.1"
            assert member["member_assignment"]["assigned_partitions"] == [
                {"topic": topic, "partitions": [0, 1]}]

            assert admin.delete_groups([group]) == {group: NonEmptyGroupError.__name__}
            worker.close()

        offsets = admin.list_group_offsets({group: None})[group]
        assert {tp: o.offset for tp, o in offsets.items()} == {
            TopicPartition(topic, 0): 50, TopicPartition(topic, 1): 50}
        wait_until(lambda: admin.describe_groups([group])[group]["group_state"] == "Empty", 10,
                   what="group empty after its member left")

        assert admin.delete_groups([group]) == {group: "OK"}
        assert group not in {g["group_id"] for g in admin.list_groups()}
        assert admin.list_group_offsets({group: None})[group] == {}
        assert admin.delete_groups([group]) == {group: GroupIdNotFoundError.__name__}
    finally:
        admin.close()


def test_a_standalone_consumer_commits_and_fetches_offsets_without_joining(broker):
    """assign() plus commit: the group only stores offsets (generation -1)."""
    topic = unique_topic("grp-standalone")
    group = unique_topic("g")
    clients.create_topic(broker.bootstrap, topic, partitions=1)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group,
                             enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.commit({tp: OffsetAndMetadata(42, "note", -1)})
        assert consumer.committed(tp) == 42
    finally:
        consumer.close(autocommit=False)
    admin = clients.admin(broker.bootstrap)
    try:
        listed = {g["group_id"]: g for g in admin.list_groups()}
        assert listed[group]["protocol_type"] == ""
        assert listed[group]["group_state"] == "Empty"
        got = admin.list_group_offsets({group: None})[group][TopicPartition(topic, 0)]
        assert (got.offset, got.metadata) == (42, "note")
    finally:
        admin.close()

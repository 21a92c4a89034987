"""The Cluster page's data on a three-node cluster: `/api/cluster` lists every
consumer group of the cluster whichever node is asked, not only the groups
whose `__consumer_offsets` partition the node asked leads.

Four groups with committed offsets, coordinated by at least two different
nodes (all three when the offsets topic's leaders are spread, as the
controller places them); each node's answer lists all four with their
coordinator (as librdkafka's admin client reports it) and their lag, and says
Raft runs.
"""

from __future__ import annotations

import gc

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cluster import Cluster, get_json
from harness import unique_topic, wait_until

RECORDS = 10
COMMITTED = 4
GROUPS_WANTED = 4


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, request):
    with Cluster(tmp_path_factory.mktemp("groups-view-cluster"), request) as c:
        c.start()
        yield c
        gc.collect()


def commit_group(bootstrap: str, group: str, topic: str) -> None:
    """Commit COMMITTED on partition 0 of `topic` for `group` (no member)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, COMMITTED)], asynchronous=False)
    finally:
        consumer.close()


def test_every_node_lists_every_group_of_the_cluster(cluster):
    bootstrap = cluster.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = unique_topic("groups-view")
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(RECORDS):
        producer.produce(topic, key=str(i).encode(), value=b"v", partition=0)
    assert producer.flush(30) == 0

    # Groups until four are chosen that span the coordinators found.
    coordinator_of: dict[str, int] = {}
    for i in range(40):
        group = f"{topic}-g{i}"
        commit_group(bootstrap, group, topic)
        described = admin.describe_consumer_groups([group])[group].result(30)
        node = described.coordinator.id
        taken = set(coordinator_of.values())
        if node not in taken or (len(taken) >= 3 and len(coordinator_of) < GROUPS_WANTED):
            coordinator_of[group] = node
        if len(coordinator_of) >= GROUPS_WANTED and len(set(coordinator_of.values())) >= 3:
            break
    while len(coordinator_of) < GROUPS_WANTED:
        group = f"{topic}-extra{len(coordinator_of)}"
        commit_group(bootstrap, group, topic)
        coordinator_of[group] = admin.describe_consumer_groups([group])[group].result(30).coordinator.id
    coordinators = set(coordinator_of.values())
    print(f"groups and their coordinators: {coordinator_of}")
    assert len(coordinators) >= 2, f"the groups all landed on one coordinator: {coordinator_of}"

    for node_id in cluster.ids:
        http = cluster.nodes[node_id].http

        def listed():
            view = get_json(http, "/api/cluster")
            if not view:
                return None
            groups = {g["group_id"]: g for g in view["groups"]}
            if not all(g in groups for g in coordinator_of):
                return None
            # Lag once this node's replica has the records (high watermark).
            if any(not groups[g]["lag"] or groups[g]["lag"][0]["log_end_offset"] < RECORDS
                   for g in coordinator_of):
                return None
            return view, groups

        view, groups = wait_until(listed, 30, interval=0.5,
                                  what=f"node {node_id} listing all {GROUPS_WANTED} groups")
        assert view["raft_running"] is True
        me = next(b for b in view["brokers"] if b["this_node"])
        assert me["raft_role"] in ("leader", "follower")
        assert isinstance(me["raft_term"], int) and me["raft_term"] >= 1
        for group, coordinator in coordinator_of.items():
            g = groups[group]
            assert g["coordinator"] == coordinator, (node_id, group, g)
            assert g["state"] == "Empty"
            assert [(lag["topic"], lag["partition"], lag["committed"], lag["lag"]) for lag in g["lag"]] \
                == [(topic, 0, COMMITTED, RECORDS - COMMITTED)], (node_id, group, g["lag"])
            assert g["total_lag"] == RECORDS - COMMITTED
        print(f"node {node_id}: {len(view['groups'])} groups listed, "
              f"coordinated by {sorted({g['coordinator'] for g in view['groups']})}")

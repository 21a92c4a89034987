"""A group consumer run as its own process by the group tests (see
`group_clients.ConsumerProcess`), so a test can SIGKILL it like a crashed
application.

Usage: python group_consumer.py '<json settings>'

It subscribes to one topic with confluent-kafka (librdkafka) or kafka-python,
and writes one JSON object per line to stdout:

    {"event": "assign", "partitions": [0, 1]}     partitions gained
    {"event": "revoke", "partitions": [0, 1]}     partitions given up (or lost)
    {"event": "records", "records": [[p, offset, value], ...]}   processed
    {"event": "committed", "offsets": {"0": 120, ...}}  committed after processing
    {"event": "closed"}

Records are reported as processed before their offsets are committed, so a
consumer killed in between leaves records that its successor reads again:
exactly the at-least-once window a test may allow. SIGTERM (or stdin
closing) makes it finish the current batch, commit, and close, which sends
LeaveGroup for dynamic members.
"""

from __future__ import annotations

import json
import signal
import sys
import threading

stop = threading.Event()


def emit(event: dict) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def run_confluent(cfg: dict) -> None:
    from confluent_kafka import Consumer, KafkaException, KafkaError

    conf = {
        "bootstrap.servers": cfg["bootstrap"],
        "group.id": cfg["group"],
        "client.id": cfg.get("client_id", "group-consumer"),
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": cfg.get("session_timeout_ms", 6000),
        "heartbeat.interval.ms": cfg.get("heartbeat_interval_ms", 1000),
        "partition.assignment.strategy": cfg.get("strategy", "range"),
        "fetch.wait.max.ms": 100,
    }
    if cfg.get("instance_id"):
        conf["group.instance.id"] = cfg["instance_id"]
    if cfg.get("protocol") == "consumer":
        # KIP-848: the coordinator assigns and times sessions; librdkafka
        # refuses the classic protocol's settings.
        conf["group.protocol"] = "consumer"
        for key in ("session.timeout.ms", "heartbeat.interval.ms", "partition.assignment.strategy"):
            del conf[key]
        if cfg.get("remote_assignor"):
            conf["group.remote.assignor"] = cfg["remote_assignor"]
    consumer = Consumer(conf)

    def on_assign(_consumer, partitions):
        emit({"event": "assign", "partitions": sorted(p.partition for p in partitions)})

    def on_revoke(_consumer, partitions):
        emit({"event": "revoke", "partitions": sorted(p.partition for p in partitions)})

    consumer.subscribe([cfg["topic"]], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
    try:
        while not stop.is_set():
            messages = consumer.consume(num_messages=500, timeout=0.2)
            batch = []
            for m in messages:
                if m.error() is not None:
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        emit({"event": "error", "error": str(m.error())})
                    continue
                batch.append([m.partition(), m.offset(), m.value().decode()])
            if not batch:
                continue
            emit({"event": "records", "records": batch})
            try:
                committed = consumer.commit(asynchronous=False)
            except KafkaException as err:
                emit({"event": "commit-failed", "error": str(err)})
                continue
            emit({"event": "committed",
                  "offsets": {str(tp.partition): tp.offset for tp in committed or []
                              if tp.error is None and tp.offset >= 0}})
    finally:
        consumer.close()
        emit({"event": "closed"})


def run_kafka_python(cfg: dict) -> None:
    from kafka import ConsumerRebalanceListener, KafkaConsumer
    from kafka.errors import CommitFailedError

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            emit({"event": "revoke", "partitions": sorted(p.partition for p in revoked)})

        def on_partitions_assigned(self, assigned):
            emit({"event": "assign", "partitions": sorted(p.partition for p in assigned)})

    settings = dict(
        bootstrap_servers=cfg["bootstrap"],
        group_id=cfg["group"],
        client_id=cfg.get("client_id", "group-consumer"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=cfg.get("session_timeout_ms", 6000),
        heartbeat_interval_ms=cfg.get("heartbeat_interval_ms", 1000),
        fetch_max_wait_ms=100,
    )
    if cfg.get("instance_id"):
        settings["group_instance_id"] = cfg["instance_id"]
    consumer = KafkaConsumer(**settings)
    consumer.subscribe([cfg["topic"]], listener=Listener())
    try:
        while not stop.is_set():
            polled = consumer.poll(timeout_ms=200, max_records=500)
            batch = [[r.partition, r.offset, r.value.decode()] for rs in polled.values() for r in rs]
            if not batch:
                continue
            emit({"event": "records", "records": batch})
            try:
                consumer.commit()
            except CommitFailedError as err:
                emit({"event": "commit-failed", "error": str(err)})
                continue
            emit({"event": "committed",
                  "offsets": {str(tp.partition): consumer.position(tp) for tp in polled}})
    finally:
        consumer.close(autocommit=False)
        emit({"event": "closed"})


def main() -> None:
    cfg = json.loads(sys.argv[1])
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def watch_stdin():
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    if cfg.get("library", "confluent") == "confluent":
        run_confluent(cfg)
    else:
        run_kafka_python(cfg)


if __name__ == "__main__":
    main()

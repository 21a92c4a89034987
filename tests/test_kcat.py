"""kcat (librdkafka's command-line client) against Sluice."""

from __future__ import annotations

import json
import shutil
import subprocess

import clients
from harness import unique_topic

KCAT_TIMEOUT = 60


def kcat(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    binary = shutil.which("kcat")
    assert binary is not None, "kcat is not installed (scripts/test.sh installs it)"
    # subprocess.run kills the child if the timeout expires.
    result = subprocess.run(
        [binary, *args], input=stdin, capture_output=True, timeout=KCAT_TIMEOUT,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )
    assert result.returncode == 0, (
        f"kcat {' '.join(args)} exited {result.returncode}\nstderr:\n{result.stderr.decode()}")
    return result


def test_kcat_metadata_lists_the_broker_and_topics(broker):
    topic = unique_topic("kcat-meta")
    clients.create_topic(broker.bootstrap, topic, partitions=2)

    listing = json.loads(kcat("-L", "-J", "-b", broker.bootstrap, "-m", "30").stdout)

    assert [(b["id"], b["name"]) for b in listing["brokers"]] == [(1, broker.bootstrap)]
    topics = {t["topic"]: t for t in listing["topics"]}
    assert topic in topics
    partitions = sorted(topics[topic]["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in partitions] == [0, 1]
    assert all(p["leader"] == 1 for p in partitions)

    text = kcat("-L", "-b", broker.bootstrap, "-t", topic, "-m", "30").stdout.decode()
    assert "1 brokers:" in text
    assert f'topic "{topic}" with 2 partitions' in text


def test_kcat_produced_lines_are_consumed_back_exactly(broker):
    topic = unique_topic("kcat")
    clients.create_topic(broker.bootstrap, topic, partitions=1)
    lines = [f"line {i}: {'x' * (i % 17)} ünïcode" for i in range(300)]

    kcat("-P", "-b", broker.bootstrap, "-t", topic, "-X", "acks=all",
         stdin=("\n".join(lines) + "\n").encode())
    consumed = kcat("-C", "-b", broker.bootstrap, "-t", topic, "-o", "beginning", "-e",
                    "-m", "30").stdout.decode()

    assert consumed.splitlines() == lines


def test_kcat_keyed_records_keep_keys_and_offsets(broker):
    topic = unique_topic("kcat-keys")
    clients.create_topic(broker.bootstrap, topic, partitions=1)
    pairs = [(f"k{i % 5}", f"v{i}") for i in range(50)]

    kcat("-P", "-b", broker.bootstrap, "-t", topic, "-K", ":",
         stdin="".join(f"{k}:{v}\n" for k, v in pairs).encode())
    consumed = kcat("-C", "-b", broker.bootstrap, "-t", topic, "-o", "beginning", "-e",
                    "-f", "%o %k %s\\n").stdout.decode()

    assert consumed.splitlines() == [f"{i} {k} {v}" for i, (k, v) in enumerate(pairs)]

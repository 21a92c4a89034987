"""Other projects' Kafka integration suites against Sluice.

kafka-python's own `test/integration` suite (from its sdist, pinned, cached
under tests/.work/peers) runs against a fresh node; the test passes when the
suite ran and every test that did not pass is listed in
docs/COMPATIBILITY.md with its reason. A new failure fails it; a listed test
that passes now fails it too, so the list and the counts stay true.
rskafka's suite is `python3 scripts/peer_suites.py rskafka --check` (its
compile is too long for the test command; docs/COMPATIBILITY.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import peer_suites  # noqa: E402


def test_kafka_python_integration_suite():
    result = peer_suites.run_suite("kafka-python")
    print(result.summary())
    for test_id in result.failed:
        print(f"  not passed: {test_id}: {result.messages.get(test_id, '')}")
    for test_id in result.flaky:
        print(f"  passed on a second run: {test_id}")
    problems = peer_suites.compare(result)
    assert not problems, "\n".join(problems)

"""Other projects' Kafka integration suites against Sluice.

kafka-python's own `test/integration` suite (from its sdist, pinned, cached
under tests/.work/peers) runs against a fresh node; the test passes when the
suite ran and every test that did not pass is listed in
docs/COMPATIBILITY.md with its reason. A new failure fails it; a listed test
that passes now fails it too, so the list and the counts stay true.
rskafka's own integration tests (the crate's `tests/`, fetched through
cargo, cached likewise) run the same way.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import peer_suites  # noqa: E402


# A cold rskafka build (the first run of a fresh clone) takes a few minutes.
@pytest.mark.timeout(900)
@pytest.mark.parametrize("suite", ["kafka-python", "rskafka"])
def test_peer_integration_suite(suite):
    result = peer_suites.run_suite(suite)
    print(result.summary())
    for test_id in result.failed:
        print(f"  not passed: {test_id}: {result.messages.get(test_id, '')}")
    for test_id in result.flaky:
        print(f"  passed on a second run: {test_id}")
    problems = peer_suites.compare(result)
    assert not problems, "\n".join(problems)

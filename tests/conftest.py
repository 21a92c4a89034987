"""Fixtures: real `sluice serve` processes for the Kafka client tests.

- `broker`: one broker shared by the whole session (most tests); a test
  during which it dies fails, and it is restarted for the next test.
- `fresh_broker`: a factory for brokers owned by one test (restart tests).
- `topic`: a topic name unique to the test.

Every process is ended by its PID in a finalizer, and again at interpreter
exit should a finalizer not run. A failing test's report carries the tail of
the log of each broker it used.
"""

from __future__ import annotations

import pytest

from harness import Broker, unique_topic


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        brokers = getattr(item, "_sluice_brokers", [])
        funcargs = getattr(item, "funcargs", {})
        if isinstance(funcargs.get("broker"), Broker):
            brokers = [funcargs["broker"], *brokers]
        for index, used in enumerate(dict.fromkeys(brokers)):
            report.sections.append(
                (f"broker {index} log (pid {used.proc.pid if used.proc else '-'})",
                 used.log_text(last=200))
            )


@pytest.fixture(scope="session")
def session_broker(tmp_path_factory):
    """The process behind `broker`: one per session, default flags."""
    node = Broker(tmp_path_factory.mktemp("shared-broker"))
    try:
        node.start()
        yield node
    finally:
        node.stop()


@pytest.fixture
def broker(session_broker):
    """The shared broker. A test during which its process dies fails (in
    teardown), and the process is started again on the same data dir so the
    tests after it are not failed by the same crash."""
    if not session_broker.alive():
        session_broker.start()
    yield session_broker
    if not session_broker.alive():
        code = session_broker.returncode()
        session_broker.start()
        pytest.fail(f"the broker process died during this test (exit code {code})",
                    pytrace=False)


@pytest.fixture
def fresh_broker(request, tmp_path_factory):
    """Factory: `fresh_broker(extra_args=[...])` starts a broker on a new data
    dir that belongs to the calling test and is stopped after it."""
    started: list[Broker] = []
    request.node._sluice_brokers = started

    def make(extra_args: list[str] | None = None) -> Broker:
        node = Broker(tmp_path_factory.mktemp("broker"), extra_args)
        started.append(node)
        node.start()
        return node

    try:
        yield make
    finally:
        for node in started:
            node.stop()


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses."""
    return unique_topic()

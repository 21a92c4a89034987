#!/usr/bin/env python3
"""Run other projects' Kafka integration suites against a Sluice node.

The suites are the integration tests that ship with Kafka clients, fetched
through the package registries only (pip, cargo), pinned, and cached under
tests/.work/peers so a second run starts at once:

- kafka-python: the `test/integration` directory of its sdist, run with
  pytest in a venv of its own (`KAFKA_URI` names an existing broker).
- rskafka: the crate's `tests/` (cargo downloads the crate source), run with
  `TEST_INTEGRATION=1 KAFKA_CONNECT=...`, built without the dev-dependencies
  only its benchmarks and unit tests use.

    python3 scripts/peer_suites.py [kafka-python] [rskafka] [--json FILE]

Each suite gets a fresh node on ephemeral ports (tests/harness.py), stopped
afterwards even when the suite fails. The counts and every test that did not
pass are printed and, with --json, written for tests/test_peer_suites.py,
which compares them with docs/COMPATIBILITY.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

from harness import Broker  # noqa: E402

WORK = Path(os.environ.get("SLUICE_PEERS_DIR", REPO_ROOT / "tests" / ".work" / "peers"))

KAFKA_PYTHON_VERSION = "3.0.12"
# What the suite's venv holds besides kafka-python (its `testing` extra).
KAFKA_PYTHON_SUITE_REQUIREMENTS = [
    f"kafka-python=={KAFKA_PYTHON_VERSION}",
    "pytest==9.2.0",
    "pytest-timeout==2.4.0",
    "pytest-mock==3.15.1",
    # The compression codecs its end-to-end tests run with.
    "python-snappy==0.7.3",
    "cramjam==2.14.0",
    "lz4==4.4.5",
    "zstandard==0.25.0",
]
# The Kafka version the suite is told it talks to (it picks its tests and
# protocol versions by it); Sluice speaks the protocol of Kafka 4.
KAFKA_PYTHON_KAFKA_VERSION = "4.2.0"
# Broker settings the suite's own broker template sets that Sluice has flags for.
KAFKA_PYTHON_BROKER_ARGS = [
    "--num-partitions", "4",
    "--group-min-session-timeout-ms", "1000",
    "--group-initial-rebalance-delay-ms", "0",
]

RSKAFKA_VERSION = "0.6.0"
# Its integration tests expect a broker that does not create topics on
# Metadata (its docker-compose files set auto.create.topics.enable=false).
RSKAFKA_BROKER_ARGS = ["--auto-create-topics", "false"]
RSASL_VERSION = "2.3.1"
RSKAFKA_TESTS = ["client", "consumer", "producer", "produce_consume"]


@dataclass
class SuiteResult:
    """What one suite did: its counts and the ids of tests that did not pass."""

    suite: str
    version: str
    passed: int = 0
    failed: list[str] = field(default_factory=list)
    skipped: int = 0
    seconds: float = 0.0
    # The first lines of each failure's message, by test id.
    messages: dict[str, str] = field(default_factory=dict)
    # Tests that failed and passed when run again.
    flaky: list[str] = field(default_factory=list)

    def summary(self) -> str:
        flaky = f" ({len(self.flaky)} of them on a second run)" if self.flaky else ""
        return (f"{self.suite} {self.version}: {self.passed} passed{flaky}, "
                f"{len(self.failed)} failed, {self.skipped} skipped "
                f"in {self.seconds:.0f} s")


def log(message: str) -> None:
    print(f"==> {message}", flush=True)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kwargs)


# ---------------------------------------------------------------------------
# kafka-python
# ---------------------------------------------------------------------------

# The sdist carries test/integration but not two small files of the project's
# test package; these stand in for them. With KAFKA_URI set the fixtures only
# ever build an ExternalService (a broker that is already running).
_KAFKA_PYTHON_SHIMS = {
    "test/__init__.py": "",
    "test/service.py": '''"""Stand-in for the test package's service module: the broker is Sluice,
already running at KAFKA_URI, so nothing is ever spawned."""


class ExternalService:
    def __init__(self, host, port):
        self.host = host
        self.port = port

    def open(self):
        pass

    def close(self):
        pass

    def stop(self):
        pass

    def dump_logs(self):
        pass

    def wait_for(self, pattern, timeout=30):
        return True


class SpawnedService:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("no Kafka distribution here: set KAFKA_URI")
''',
}


def prepare_kafka_python() -> tuple[Path, Path]:
    """The suite's source tree and its venv's python (made once)."""
    src = WORK / f"kafka_python-{KAFKA_PYTHON_VERSION}"
    venv = WORK / "kafka-python-venv"
    stamp = venv / ".suite-requirements"
    want = "\n".join(KAFKA_PYTHON_SUITE_REQUIREMENTS)
    if not (venv / "bin" / "python").exists() or not stamp.exists() or stamp.read_text() != want:
        log(f"creating the kafka-python suite venv in {venv}")
        shutil.rmtree(venv, ignore_errors=True)
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
             "--disable-pip-version-check", *KAFKA_PYTHON_SUITE_REQUIREMENTS])
        stamp.write_text(want)
    if not (src / "test" / "integration" / "conftest.py").exists():
        log(f"downloading the kafka-python {KAFKA_PYTHON_VERSION} sdist")
        with tempfile.TemporaryDirectory() as tmp:
            run([str(venv / "bin" / "python"), "-m", "pip", "download", "--quiet",
                 "--disable-pip-version-check", "--no-binary", ":all:", "--no-deps",
                 "-d", tmp, f"kafka-python=={KAFKA_PYTHON_VERSION}"])
            (sdist,) = Path(tmp).glob("kafka_python-*.tar.gz")
            with tarfile.open(sdist) as tar:
                tar.extractall(WORK, filter="data")
    for name, text in _KAFKA_PYTHON_SHIMS.items():
        path = src / name
        if not path.exists():
            path.write_text(text)
    # The fixtures insist that a Kafka distribution directory exists even
    # when they never run anything from it.
    (WORK / "no-kafka-distribution").mkdir(exist_ok=True)
    return src, venv / "bin" / "python"


def _pytest_id(classname: str, name: str) -> str:
    """pytest's node id from a JUnit test case ("a.b.test_m.TestC", "t")."""
    parts = classname.split(".")
    classes = []
    while parts and parts[-1][:1].isupper():
        classes.insert(0, parts.pop())
    return "::".join(["/".join(parts) + ".py", *classes, name])


def _pytest_outcomes(python: Path, src: Path, env: dict,
                     targets: list[str]) -> dict[str, tuple[str, str]]:
    """Run pytest on `targets` in the suite's tree: outcome ("passed",
    "failed" or "skipped") and first message line by test id."""
    report = WORK / "kafka-python-junit.xml"
    report.unlink(missing_ok=True)
    proc = subprocess.run(
        [str(python), "-m", "pytest", *targets, "-q", "-p", "no:cacheprovider",
         "-o", "addopts=", "-o", "log_level=WARNING", "-W", "ignore::DeprecationWarning",
         "--timeout=120", "--tb=line", f"--junitxml={report}"],
        cwd=src, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    if not report.exists():
        raise RuntimeError(f"kafka-python's suite wrote no report:\n{proc.stdout[-4000:]}")
    outcomes = {}
    for case in ET.parse(report).iter("testcase"):
        test_id = _pytest_id(case.get("classname", ""), case.get("name", ""))
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            outcomes[test_id] = ("failed", (bad.get("message") or "").splitlines()[0][:300])
        elif case.find("skipped") is not None:
            outcomes[test_id] = ("skipped", "")
        else:
            outcomes[test_id] = ("passed", "")
    return outcomes


def run_kafka_python(bootstrap: str) -> SuiteResult:
    src, python = prepare_kafka_python()
    result = SuiteResult("kafka-python", KAFKA_PYTHON_VERSION)
    env = dict(os.environ)
    env.update(
        KAFKA_VERSION=KAFKA_PYTHON_KAFKA_VERSION,
        KAFKA_URI=f"PLAINTEXT://{bootstrap}",
        KAFKA_ROOT=str(WORK / "no-kafka-distribution"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    start = time.monotonic()
    outcomes = _pytest_outcomes(python, src, env, ["test/integration"])
    # A test with timing assertions can fail on a busy machine: a failure the
    # list does not expect gets one more run, and passing then counts as
    # passed (reported as flaky).
    unexpected = [t for t, (o, _) in outcomes.items()
                  if o == "failed" and t not in known_failures(result.suite)]
    if unexpected:
        for test_id, (outcome, message) in _pytest_outcomes(python, src, env, unexpected).items():
            if outcome == "passed":
                result.flaky.append(test_id)
                outcomes[test_id] = (outcome, message)
    result.seconds = time.monotonic() - start
    for test_id, (outcome, message) in outcomes.items():
        if outcome == "failed":
            result.failed.append(test_id)
            result.messages[test_id] = message
        elif outcome == "skipped":
            result.skipped += 1
        else:
            result.passed += 1
    return result


# ---------------------------------------------------------------------------
# rskafka
# ---------------------------------------------------------------------------


def cargo_home() -> Path:
    return Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))


# What the four test binaries do not use, left out of the crate's manifest
# (its benchmarks and the property tests of its unit tests).
RSKAFKA_UNUSED_DEV_DEPENDENCIES = ["criterion", "proptest", "proptest-derive"]


def trim_rskafka_manifest(manifest: Path) -> None:
    """Drop the dev-dependencies and benchmark targets the integration tests
    do not use from a copy of the crate's Cargo.toml."""
    text = manifest.read_text()
    section = r"\n\[{header}\]\n(?:(?!\n\[).)*"
    for dep in RSKAFKA_UNUSED_DEV_DEPENDENCIES:
        text, n = re.subn(section.format(header=re.escape(f"dev-dependencies.{dep}")), "\n",
                          text, flags=re.S)
        if n != 1:
            raise RuntimeError(f"rskafka's manifest has no dev-dependency {dep}")
    text = re.sub(section.format(header=r"\[bench\]"), "\n", text, flags=re.S)
    manifest.write_text(text)


def prepare_rskafka() -> Path:
    """rskafka's crate source (with its tests/), fetched through cargo."""
    src = WORK / f"rskafka-{RSKAFKA_VERSION}-tests"
    if (src / "tests" / "test_helpers.rs").exists():
        return src
    log(f"fetching the rskafka {RSKAFKA_VERSION} crate with cargo")
    fetcher = WORK / "rskafka-fetch"
    (fetcher / "src").mkdir(parents=True, exist_ok=True)
    (fetcher / "src" / "lib.rs").write_text("")
    (fetcher / "Cargo.toml").write_text(
        '[package]\nname = "rskafka-fetch"\nversion = "0.0.0"\nedition = "2021"\n'
        f'publish = false\n\n[dependencies]\nrskafka = "={RSKAFKA_VERSION}"\n\n[workspace]\n'
    )
    run(["cargo", "fetch", "--manifest-path", str(fetcher / "Cargo.toml")])
    found = sorted(cargo_home().glob(f"registry/src/*/rskafka-{RSKAFKA_VERSION}"))
    if not found:
        raise RuntimeError("cargo fetched rskafka but its source is not in the registry dir")
    copy = WORK / f"rskafka-{RSKAFKA_VERSION}.partial"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(found[0], copy)
    # The crate pins an older toolchain; build with the one installed.
    (copy / "rust-toolchain.toml").unlink(missing_ok=True)
    trim_rskafka_manifest(copy / "Cargo.toml")
    # Its lockfile's rsasl 2.2.0 no longer compiles with current Rust (a raw
    # pointer cast that extends a trait object's lifetime is now an error).
    run(["cargo", "update", "--manifest-path", str(copy / "Cargo.toml"), "-p", "rsasl",
         "--precise", RSASL_VERSION])
    copy.rename(src)
    return src


def rskafka_cargo(src: Path, extra: list[str], env: dict | None = None,
                  capture: bool = False) -> subprocess.CompletedProcess:
    tests = [arg for name in RSKAFKA_TESTS for arg in ("--test", name)]
    full_env = dict(os.environ)
    full_env["CARGO_TARGET_DIR"] = str(WORK / "rskafka-target")
    full_env.setdefault("CARGO_BUILD_JOBS", "2")
    full_env.update(env or {})
    return subprocess.run(
        ["cargo", "test", "--locked", *tests, *extra], cwd=src, env=full_env, text=True,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
    )


def build_rskafka() -> Path:
    src = prepare_rskafka()
    start = time.monotonic()
    proc = rskafka_cargo(src, ["--no-run"])
    if proc.returncode != 0:
        raise RuntimeError("rskafka's tests did not compile")
    log(f"rskafka tests built in {time.monotonic() - start:.0f} s")
    return src


_LIBTEST_LINE = re.compile(r"^test (\S+) \.\.\. (ok|FAILED|ignored)", re.M)


def run_rskafka(bootstrap: str) -> SuiteResult:
    src = build_rskafka()
    result = SuiteResult("rskafka", RSKAFKA_VERSION)
    start = time.monotonic()
    proc = rskafka_cargo(
        src, ["--no-fail-fast", "--", "--test-threads=4"],
        env={"TEST_INTEGRATION": "1", "KAFKA_CONNECT": bootstrap,
             "TEST_BROKER_IMPL": "kafka", "RUST_BACKTRACE": "0"},
        capture=True,
    )
    result.seconds = time.monotonic() - start
    output = proc.stdout
    (WORK / "rskafka-test.log").write_text(output)
    # Each test binary prints "Running tests/NAME.rs" before its results.
    binary = ""
    for line in output.splitlines():
        running = re.search(r"Running tests/(\w+)\.rs", line)
        if running:
            binary = running.group(1)
            continue
        match = _LIBTEST_LINE.match(line)
        if not match:
            continue
        name, outcome = match.groups()
        test_id = f"tests/{binary}.rs::{name}"
        if outcome == "ok":
            result.passed += 1
        elif outcome == "ignored":
            result.skipped += 1
        else:
            result.failed.append(test_id)
    for test_id in result.failed:
        name = test_id.split("::", 1)[1]
        panic = re.search(rf"---- {re.escape(name)} stdout ----\n(?:.*\n)*?.*panicked at [^\n]*\n([^\n]*)",
                          output)
        if panic:
            result.messages[test_id] = panic.group(1)[:300]
    return result


# ---------------------------------------------------------------------------


SUITES = {"kafka-python": run_kafka_python, "rskafka": run_rskafka}

COMPATIBILITY = REPO_ROOT / "docs" / "COMPATIBILITY.md"
# A row of the "Tests that do not pass" table: | suite | `test id` | reason |
_KNOWN_ROW = re.compile(r"^\|\s*([\w.-]+)\s*\|\s*`([^`]+)`\s*\|\s*(.*?)\s*\|\s*$")


def known_failures(suite: str) -> dict[str, str]:
    """The tests of `suite` that docs/COMPATIBILITY.md lists as not passing,
    with the reason given there."""
    known = {}
    for line in COMPATIBILITY.read_text().splitlines():
        row = _KNOWN_ROW.match(line)
        if row and row.group(1) == suite:
            known[row.group(2)] = row.group(3)
    return known


def compare(result: SuiteResult) -> list[str]:
    """Problems with `result` against the documented list: a failure that is
    not listed, a listed test that now passes, a suite that did not run."""
    problems = []
    if result.passed == 0:
        problems.append(f"{result.suite}: no test passed (did the suite run?)")
    known = known_failures(result.suite)
    for test_id in result.failed:
        if test_id not in known:
            problems.append(f"{result.suite}: new failure {test_id}: "
                            f"{result.messages.get(test_id, '')}")
        elif not known[test_id]:
            problems.append(f"{result.suite}: {test_id} is listed without a reason")
    for test_id in sorted(set(known) - set(result.failed)):
        problems.append(f"{result.suite}: {test_id} passes now (or was renamed): "
                        "take it off the list in docs/COMPATIBILITY.md and update the counts")
    return problems


def run_suite(name: str) -> SuiteResult:
    """Start a fresh node, run one suite against it, stop the node."""
    WORK.mkdir(parents=True, exist_ok=True)
    extra = {"kafka-python": KAFKA_PYTHON_BROKER_ARGS, "rskafka": RSKAFKA_BROKER_ARGS}[name]
    if name == "rskafka":
        build_rskafka()  # before the node starts: its cold build takes minutes
    with tempfile.TemporaryDirectory(prefix=f"sluice-peer-{name}-") as data:
        node = Broker(Path(data) / "node", extra)
        try:
            node.start()
            log(f"{name} against the node at {node.bootstrap}")
            return SUITES[name](node.bootstrap)
        finally:
            node.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suites", nargs="*", help=f"some of {', '.join(SUITES)} (default all)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 unless the failures are those in docs/COMPATIBILITY.md")
    args = parser.parse_args()
    unknown = set(args.suites) - set(SUITES)
    if unknown:
        parser.error(f"unknown suites: {', '.join(sorted(unknown))}")
    results = []
    problems = []
    for name in args.suites or list(SUITES):
        result = run_suite(name)
        results.append(result)
        log(result.summary())
        for test_id in result.failed:
            print(f"    not passed: {test_id}: {result.messages.get(test_id, '')}")
        for test_id in result.flaky:
            print(f"    passed on a second run: {test_id}")
        problems += compare(result)
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=2))
    for problem in problems:
        print(f"!!  {problem}")
    return 1 if args.check and problems else 0


if __name__ == "__main__":
    sys.exit(main())

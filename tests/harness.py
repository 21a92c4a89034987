"""Start and stop real `sluice serve` processes for the compatibility tests.

A `Broker` owns one OS process: it starts the binary on ephemeral loopback
ports, learns the chosen ports from the `listening` log line, waits for
`/readyz` (200 once every part of the node is ready: the Kafka listener,
its place in the cluster, the shop), and always ends the process by its PID
(SIGTERM, then SIGKILL).
Every log line is kept so a failing test can show what the broker said.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# Seconds a broker may take to log its ports and answer /readyz.
START_TIMEOUT = 30.0
# Seconds a graceful shutdown may take before the process is SIGKILLed.
STOP_TIMEOUT = 20.0

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LISTENING = re.compile(
    r"listening\b.*?kafka_addr=(?P<kafka>[0-9.]+:\d+)"
    r".*?http_addr=(?P<http>[0-9.]+:\d+)"
    r".*?node_id=(?P<node>\d+)"
)

# Brokers whose process may still be running; killed at interpreter exit
# in case a finalizer never ran.
_LIVE: set["Broker"] = set()
_LIVE_LOCK = threading.Lock()


def _kill_leftovers() -> None:
    with _LIVE_LOCK:
        brokers = list(_LIVE)
    for broker in brokers:
        broker.kill9()


atexit.register(_kill_leftovers)


def _die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGKILL it if the thread
    that started it goes away (so even a SIGKILLed pytest leaves no broker
    behind). Brokers are therefore started from the main thread."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def sluice_binary() -> Path:
    """The binary under test: $SLUICE_BIN, else target/release/sluice."""
    path = Path(os.environ.get("SLUICE_BIN", REPO_ROOT / "target" / "release" / "sluice"))
    if not path.is_file() or not os.access(path, os.X_OK):
        raise RuntimeError(
            f"sluice binary not found at {path}; run `cargo build --release` "
            "or set SLUICE_BIN"
        )
    return path


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def unique_topic(prefix: str = "t") -> str:
    """A topic name no other test (or earlier run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class BrokerExited(RuntimeError):
    pass


class Broker:
    """One `sluice serve` process on ephemeral 127.0.0.1 ports."""

    def __init__(self, data_dir: Path | str, extra_args: list[str] | None = None):
        self.binary = sluice_binary()
        self.data_dir = Path(data_dir)
        self.extra_args = list(extra_args or [])
        # Where the Kafka listener binds; port 0 until a restart keeps its port.
        self.kafka_addr = "127.0.0.1:0"
        # Where the HTTP listener binds.
        self.http_addr = "127.0.0.1:0"
        # Run the binary through this (e.g. `ip netns exec NS`, which execs it,
        # so the PID is still the broker's).
        self.command_prefix: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.bootstrap: str | None = None
        self.http: str | None = None
        self.node_id: int | None = None
        # Every line the broker printed, across restarts: (stream, text).
        self.lines: list[tuple[str, str]] = []
        self._lines_lock = threading.Lock()
        self._listening_event = threading.Event()
        self._listening_stream: str | None = None
        self._readers: list[threading.Thread] = []
        self.starts = 0

    # -- lifecycle ---------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT, wait_ready: bool = True) -> "Broker":
        """Start the process and wait for its listening line, then (unless
        `wait_ready` is false) for /readyz 200. A cluster member is ready only
        once a quorum of its peers runs: start them all, then `wait_ready()`."""
        if self.alive():
            raise RuntimeError("broker already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.bootstrap = self.http = None
        self.node_id = None
        self._listening_event = threading.Event()
        self._listening_stream = None
        self.starts += 1
        self._note("harness", f"--- start #{self.starts} ---")
        cmd = [
            *self.command_prefix,
            str(self.binary),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--kafka-addr",
            self.kafka_addr,
            "--http-addr",
            self.http_addr,
            *self.extra_args,
        ]
        env = dict(os.environ)
        env.setdefault("NO_COLOR", "1")
        env.setdefault("RUST_BACKTRACE", "1")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            preexec_fn=_die_with_parent,
        )
        with _LIVE_LOCK:
            _LIVE.add(self)
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stderr, "stderr"), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stdout, "stdout"), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        try:
            self._wait_listening(timeout)
            if wait_ready:
                self.wait_ready(timeout)
        except BaseException:
            self.kill9()
            raise
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code
        of the graceful shutdown, or None if it had to be killed."""
        proc = self.proc
        if proc is None:
            return None
        code: int | None = None
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._note("harness", f"no exit {timeout}s after SIGTERM; sending SIGKILL")
                self.kill9()
                return None
        else:
            code = proc.returncode
        self._reap()
        return code

    def kill9(self) -> None:
        """SIGKILL the process (a crash: nothing is flushed) and reap it."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        self._reap()

    def restart(self, extra_args: list[str] | None = None, timeout: float = START_TIMEOUT,
                keep_kafka_port: bool = False) -> "Broker":
        """Stop gracefully if running, then start again on the same data dir.
        The new process may listen on different ports, unless
        `keep_kafka_port` (then clients connected before can reconnect)."""
        if keep_kafka_port and self.bootstrap is not None:
            self.kafka_addr = self.bootstrap
        self.stop()
        if extra_args is not None:
            self.extra_args = list(extra_args)
        return self.start(timeout=timeout)

    def _reap(self) -> None:
        for reader in self._readers:
            reader.join(timeout=5)
        self._readers = []
        if self.proc is not None:
            for stream in (self.proc.stdout, self.proc.stderr):
                try:
                    if stream is not None:
                        stream.close()
                except OSError:
                    pass
            self._note("harness", f"--- exited with {self.proc.returncode} ---")
        with _LIVE_LOCK:
            _LIVE.discard(self)

    # -- state -------------------------------------------------------------

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("broker not started")
        return self.proc.pid

    @property
    def kafka_port(self) -> int:
        assert self.bootstrap is not None
        return int(self.bootstrap.rsplit(":", 1)[1])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def rss_kib(self) -> int:
        """Resident set size of the broker process (VmRSS), in KiB."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("VmRSS not found")

    def http_get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        url = f"http://{self.http}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def listening_stream(self) -> str | None:
        """Which stream ("stderr" or "stdout") carried the listening line."""
        return self._listening_stream

    def log_text(self, last: int | None = None) -> str:
        with self._lines_lock:
            lines = list(self.lines)
        if last is not None:
            lines = lines[-last:]
        return "\n".join(f"[{stream}] {text}" for stream, text in lines)

    def log_lines(self) -> list[str]:
        with self._lines_lock:
            return [text for _, text in self.lines]

    # -- internals ---------------------------------------------------------

    def _note(self, stream: str, text: str) -> None:
        with self._lines_lock:
            self.lines.append((stream, text))

    def _read(self, pipe, stream: str) -> None:
        for raw in iter(pipe.readline, b""):
            text = _ANSI_ESCAPE.sub("", raw.decode("utf-8", "replace")).rstrip("\n")
            self._note(stream, text)
            if not self._listening_event.is_set():
                match = _LISTENING.search(text)
                if match:
                    self.bootstrap = match.group("kafka")
                    self.http = match.group("http")
                    self.node_id = int(match.group("node"))
                    self._listening_stream = stream
                    self._listening_event.set()

    def _check_running(self, waiting_for: str) -> None:
        if not self.alive():
            raise BrokerExited(
                f"broker exited with code {self.returncode()} while waiting for "
                f"{waiting_for}\n{self.log_text(last=60)}"
            )

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._listening_event.wait(0.05):
            self._check_running("the 'listening' log line")
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"no 'listening kafka_addr=... http_addr=... node_id=...' line within "
                    f"{timeout}s\n{self.log_text(last=60)}"
                )

    def readiness(self, timeout: float = 2.0) -> tuple[int, dict | None]:
        """GET /readyz: the status and the JSON body (None if not JSON)."""
        status, body = self.http_get("/readyz", timeout=timeout)
        try:
            return status, json.loads(body)
        except ValueError:
            return status, None

    def wait_ready(self, timeout: float = START_TIMEOUT) -> "Broker":
        """Wait for /readyz 200 (the process must keep running)."""
        deadline = time.monotonic() + timeout
        last_error = "no attempt"
        while True:
            self._check_running("/readyz")
            try:
                status, body = self.http_get("/readyz", timeout=2.0)
                if status == 200:
                    return self
                last_error = f"HTTP {status} {body[:200]!r}"
            except OSError as err:
                last_error = repr(err)
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"/readyz not 200 within {timeout}s (last: {last_error})\n"
                    f"{self.log_text(last=60)}"
                )
            time.sleep(0.05)

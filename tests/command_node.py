"""A `sluice` process started with a given command line and environment
(nothing added, no `SLUICE_*` variable inherited), for the tests that run
exactly what a file says (tests/test_deploy.py, tests/test_config_file.py).
Ended by its PID (`kill`), which callers do in a `finally`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from harness import _die_with_parent, pid_alive


def clean_env() -> dict[str, str]:
    """This process's environment without any `SLUICE_*` variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port`."""
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Node:
    """One process started with a container's command and environment."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, http: str):
        self.name, self.argv, self.env, self.cwd, self.http = name, argv, env, cwd, http
        self.log = cwd.parent / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Node":
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.argv, env={**clean_env(), **self.env}, cwd=self.cwd,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent)
        return self

    def ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, \
            f"{self.name} exited ({self.proc.returncode}): {self.output()}"
        try:
            with urllib.request.urlopen(f"http://{self.http}/readyz", timeout=2) as resp:
                return resp.status == 200
        except (OSError, urllib.error.HTTPError):
            return False

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def kill(self) -> None:
        if self.proc is not None and pid_alive(self.proc.pid):
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

"""Quaero services as separate OS processes, for tests of the production topology and of crashes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[2]


class Process:
    """A child process with its output in a file (a pipe could fill up and block it), read while
    it runs: JSON log lines for the services, plain text for anything else."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, *, name: str | None = None) -> None:
        self.name, self.log = name or " ".join(args[:3]), log
        self.handle = log.open("ab")
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self.handle, stderr=subprocess.STDOUT)

    @classmethod
    def module(cls, module: str, env: dict[str, str], log: Path) -> Process:
        """`python -m <module>`, as the containers run each service."""
        return cls([sys.executable, "-m", module], env, log, name=module)

    def output(self, tail: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-tail:]

    def wait_for(self, pattern: str, timeout: float = 90) -> re.Match[str]:
        """The first match of a regular expression in the output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log.read_text(errors="replace"))
            if found:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{self.name} never printed {pattern!r}:\n{self.output()}")

    def entries(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line being written
        return out

    def wait_for_log(self, message: str, timeout: float = 60, after: int = 0) -> dict[str, Any]:
        """The first log entry (from index `after`) with this message."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.entries()[after:]:
                if entry.get("message") == message:
                    return entry
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{self.name} never logged {message!r}:\n{self.output()}")

    def port(self, message: str = "gRPC server listening", timeout: float = 60) -> int:
        return int(self.wait_for_log(message, timeout)["address"].rsplit(":", 1)[1])

    def kill(self) -> None:
        """SIGKILL: no cleanup, no lease release, no goodbye to the broker, exactly like a crash
        (of its container: the processes it started go too; a crawl worker's parse pool, left
        behind, would wait for work for as long as the machine runs)."""
        if self.proc.poll() is None:
            try:
                children = psutil.Process(self.proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                children = []
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            for child in children:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
        self.handle.close()

    def terminate(self) -> None:
        """SIGTERM without waiting, so that several processes stop at once."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit code; SIGKILL if it does not exit within `timeout` seconds."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.handle.closed:
            self.handle.close()
        return self.proc.returncode


def service_env(database_url: str, amqp_url: str, queue_name: str, **extra: str) -> dict[str, str]:
    """Environment for separate service processes on port 0 (ports are read from their logs)."""
    return {
        **os.environ,
        "QUAERO_DATABASE_URL": database_url,
        "QUAERO_AMQP_URL": amqp_url,
        "QUAERO_BIND_HOST": "127.0.0.1",
        "QUAERO_CRAWLER_PORT": "0",
        "QUAERO_EXECUTOR_PORT": "0",
        "QUAERO_GATEWAY_PORT": "0",
        "QUAERO_GATEWAY_GRPC_PORT": "0",
        "QUAERO_QUEUE_NAME": queue_name,
        **extra,
    }


def wait(predicate, timeout: float = 60, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll `predicate` from sync code (tests driving processes) until it gives a true value;
    a bound for hangs, not a speed check."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")

"""Quaero services as separate OS processes, for tests of the production topology and of crashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class Process:
    """`python -m <module>` with its JSON log lines in a file (a pipe could fill up and block it)."""

    def __init__(self, module: str, env: dict[str, str], log: Path) -> None:
        self.module, self.log = module, log
        self.handle = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module], cwd=ROOT, env=env, stdout=self.handle, stderr=subprocess.STDOUT
        )

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
        tail = self.log.read_text(errors="replace")[-3000:]
        raise AssertionError(f"{self.module} never logged {message!r}:\n{tail}")

    def port(self, message: str = "gRPC server listening", timeout: float = 60) -> int:
        return int(self.wait_for_log(message, timeout)["address"].rsplit(":", 1)[1])

    def kill(self) -> None:
        """SIGKILL: no cleanup, no lease release, exactly like a crash."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.handle.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
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

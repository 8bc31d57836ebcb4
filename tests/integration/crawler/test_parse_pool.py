"""A crawl worker's parse pool does not outlive the worker: SIGKILL leaves it no shutdown, and its
processes exit by themselves once their parent is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil

from tests.support.processes import ROOT

# A process that starts a parse pool the way a worker does, prints the pool's pids, then waits.
PARENT = textwrap.dedent(
    """
    import time
    import psutil
    from services.crawler.parse import Parser

    parser = Parser(inline_limit=0, processes=1)
    for started in parser.start():
        started.result(120)
    print(" ".join(str(c.pid) for c in psutil.Process().children()), flush=True)
    time.sleep(600)
    """
)
GONE_WITHIN = 60  # seconds: a bound on a loaded machine (the check runs every second)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_the_pool_exits_when_its_worker_is_killed() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], cwd=ROOT, stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    children: list[int] = []
    try:
        assert parent.stdout is not None
        children = [int(pid) for pid in parent.stdout.readline().split()]
        assert children, "the parse pool started no process"
        assert all(_alive(pid) for pid in children)

        parent.send_signal(signal.SIGKILL)
        parent.wait()

        deadline = time.monotonic() + GONE_WITHIN
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in children), f"pool processes outlived their worker: {children}"
    finally:
        parent.kill()
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)

"""The README's first session, as a newcomer runs it: `quaero up` (what `make run` starts), the
demo site served by `python3 -m http.server`, `quaero crawl` with live progress ending with the
document count, then `quaero docs search` finding a page. Every piece is its own process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import Process

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture
def quaero_up(tmp_path: Path) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUAERO_")}
    env.update(
        QUAERO_DATA_DIR=str(tmp_path / "data"),
        QUAERO_DEFINITIONS_DIR="examples",  # as `make run` does
        QUAERO_GATEWAY_PORT="0",
        QUAERO_GATEWAY_GRPC_PORT="0",
        QUAERO_EXECUTOR_PORT="0",
        QUAERO_CRAWLER_PORT="0",
    )
    up = Process([str(BIN / "quaero"), "up"], env, tmp_path / "up.log")
    try:
        yield up.wait_for(r"Quaero is up on (http://127\.0\.0\.1:\d+)").group(1)
    finally:
        assert up.stop() == 0, (tmp_path / "up.log").read_text()[-3000:]


@pytest.fixture
def demo_site(tmp_path: Path) -> Iterator[str]:
    server = Process(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", "docs/demo-site"],
        dict(os.environ),
        tmp_path / "site.log",
    )
    try:
        port = server.wait_for(r"port (\d+)").group(1)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.stop()


def quaero(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("QUAERO_")}, "QUAERO_URL": url}
    return subprocess.run(
        [str(BIN / "quaero"), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_first_session_of_the_readme(quaero_up: str, demo_site: str) -> None:
    crawled = quaero("crawl", demo_site, url=quaero_up)
    found = quaero("docs", "search", "pelican", url=quaero_up)

    assert crawled.returncode == 0, crawled.stderr
    assert re.search(r"✓ crawl-127\.0\.0\.1-\d+ completed", crawled.stderr)
    assert re.search(r"100\.0% 5/5 urls", crawled.stderr)
    assert re.match(
        r"Completed: 5 documents \(5 new, 0 changed, 0 unchanged, 0 removed\) from 1 crawl job in ", crawled.stdout
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.splitlines()[0] == "Pelicans"
    assert "pelicans.html" in found.stdout.splitlines()[1]

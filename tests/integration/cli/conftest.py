"""Run `quaero` against a real stack: in a thread of the test process (fast), or as the installed
command in its own process, as a user would (for what only a process shows: the entry point,
the terminal, the exit status)."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from collections.abc import AsyncIterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.main import main
from tests.support.services import Stack, common_settings, running_stack
from tests.support.site import LocalSite

QUAERO = Path(sys.executable).parent / "quaero"


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.strip().splitlines()


def cli_env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUAERO_")}
    return {**env, "QUAERO_URL": url, "NO_COLOR": "1", "COLUMNS": "200", **extra}


async def start_cli(*args: str, url: str, **env: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(QUAERO),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(url, **env),
    )


async def run_cli(*args: str, url: str, **env: str) -> Result:
    process = await start_cli(*args, url=url, **env)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


def bird_site() -> LocalSite:
    site = LocalSite()
    site.add("/", "Birds", ["/pelicans.html", "/herons.html", "/more/1.html"])
    site.add("/pelicans.html", "Pelicans", ["/"], body="Brown pelicans dive for fish along the coast")
    site.add("/herons.html", "Herons", ["/"], body="Grey herons wait in the shallows")
    site.add("/more/1.html", "More", ["/more/2.html"])
    site.add("/more/2.html", "Even more")
    return site


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(common_settings(None, tmp_path / "data")) as s:
        yield s


@pytest.fixture
async def site() -> AsyncIterator[LocalSite]:
    site = bird_site()
    async with site.serve():
        try:
            yield site
        finally:
            site.open()


async def invoke(*args: str, url: str, token: str = "") -> Result:
    """`quaero --url URL ARGS…` in a worker thread (its own event loop), output captured."""

    def run() -> Result:
        out, err = io.StringIO(), io.StringIO()
        code: int | str | None = 0
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main(["--url", url, "--token", token, *args])
            except SystemExit as exc:
                code = exc.code
        return Result(code if isinstance(code, int) else 1, out.getvalue(), err.getvalue())

    return await asyncio.to_thread(run)


@pytest.fixture
def quaero(stack: Stack):  # type: ignore[no-untyped-def]
    """`await quaero("jobs", "list")` runs the command against the test's stack."""

    async def run(*args: str) -> Result:
        return await invoke(*args, url=stack.base_url)

    return run

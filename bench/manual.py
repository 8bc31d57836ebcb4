"""A crawl of a real manual: Debian's postgresql-doc-15 HTML, served on loopback, by three tools.

The 1,169 pages of /usr/share/doc/postgresql-doc-15/html (installed with apt when absent, like
chromium for the rendered bench) are served from memory by their own process, and crawled from
index.html, alternating: Quaero as separate processes (PostgreSQL + RabbitMQ, the crawler and 2
worker processes), embedded Quaero (SQLite and the in-process queue, one process) and Scrapy
(16 concurrent, the same converter). Every tool's page set must equal a breadth-first walk of
the files' links under the same scope rules: one host, robots.txt (there is none: 404), depth
at most DEPTH, fragments dropped, only links that answer with HTML.

Run alone: `python -m bench.run --manual-only` (or `python -m bench.manual`).
QUAERO_BENCH_MANUAL_DIR: another folder of HTML to crawl the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import uvloop

from bench import quaero
from bench.scrapy_spider import run_scrapy
from bench.site import _Http, _response
from services.crawler.settings import CrawlerSettings

PACKAGE = "postgresql-doc-15"
MANUAL_DIR = Path(f"/usr/share/doc/{PACKAGE}/html")
START = "/index.html"
# Far deeper than the manual needs (every page is within 2 links of index.html), the same for
# every tool and for the walk.
DEPTH = 20
TOOLS = ("Quaero distributed", "Quaero embedded", "Scrapy")


def manual_dir() -> Path:
    return Path(os.environ.get("QUAERO_BENCH_MANUAL_DIR") or MANUAL_DIR)


def ensure_manual(folder: Path) -> str:
    """ "" when `folder` holds the manual, after installing the package if it is the Debian one
    and absent; else why the scenario cannot run."""
    if (folder / "index.html").is_file():
        return ""
    if folder != MANUAL_DIR:
        return f"{folder} has no index.html (QUAERO_BENCH_MANUAL_DIR)"
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and shutil.which("sudo") is None:
        return f"{PACKAGE} is not installed and, without root or sudo, cannot be: apt-get install {PACKAGE}"
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", PACKAGE],
    ):
        proc = subprocess.run([*sudo, *command], capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0 and command[1] == "install":
            return f"{PACKAGE} is not installed and `{' '.join(command)}` failed: {proc.stderr.strip()[-500:]}"
    return "" if (folder / "index.html").is_file() else f"{PACKAGE} installed but {folder}/index.html is missing"


class _Links(HTMLParser):
    """The href of every <a> and <area>, and a <base href> (what the crawlers follow)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.base: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("a", "area"):
            href = dict(attrs).get("href")
            if href is not None:
                self.hrefs.append(href)
        elif tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")


def links(html: str) -> tuple[list[str], str | None]:
    parser = _Links()
    parser.feed(html)
    parser.close()
    return parser.hrefs, parser.base


def _is_html(path: str) -> bool:
    return path.endswith((".html", ".htm"))


def site_path(files: Mapping[str, bytes], origin: str, href: str, page: str, base: str | None) -> str | None:
    """The path on `origin` that `href` on `page` names, if it is one of `files`; else None."""
    page_url = origin + page
    if base:
        page_url = urljoin(page_url, base)
    url = urljoin(page_url, href.strip())
    parts = urlsplit(url)
    if f"{parts.scheme}://{parts.netloc}" != origin or parts.query:
        return None
    path = unquote(parts.path) or "/"
    return path if path in files else None


def expected_paths(files: Mapping[str, bytes], start: str = START, max_depth: int = DEPTH) -> dict[str, int]:
    """Breadth-first from `start` over the links of the HTML files (path -> bytes): each HTML
    path reachable within `max_depth` links, with its depth. Links off the host, with a query, to
    files that do not exist or that are not HTML lead to no page."""
    origin = "http://site.invalid"
    depths = {start: 0}
    queue = deque([start])
    while queue:
        page = queue.popleft()
        if depths[page] == max_depth:
            continue
        hrefs, base = links(files[page].decode("utf-8", errors="replace"))
        for href in hrefs:
            path = site_path(files, origin, href, page, base)
            if path is not None and _is_html(path) and path not in depths:
                depths[path] = depths[page] + 1
                queue.append(path)
    return depths


def read_files(folder: Path) -> dict[str, bytes]:
    """path -> bytes for every file under `folder`, as served ("/" + its relative path)."""
    return {"/" + p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _content_type(path: str) -> bytes:
    if _is_html(path):
        return b"text/html; charset=utf-8"
    return (mimetypes.guess_type(path)[0] or "application/octet-stream").encode()


def _serve(sock: socket.socket, files: dict[str, bytes]) -> None:
    responses = {path.encode(): _response(body, _content_type(path)) for path, body in files.items()}
    not_found = _response(b"not found", b"text/plain", b"404 Not Found")

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(lambda: _Http(responses, not_found, 0.0), sock=sock)
        await server.serve_forever()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


@dataclass
class Site:
    base: str
    pid: int


@contextmanager
def serve(files: dict[str, bytes]) -> Iterator[Site]:
    """Serve `files` from memory in their own process on 127.0.0.1 (a free port)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    process = multiprocessing.get_context("fork").Process(target=_serve, args=(sock, files), daemon=True)
    process.start()
    sock.close()
    try:
        time.sleep(0.3)
        yield Site(f"http://127.0.0.1:{port}", process.pid or 0)
    finally:
        process.terminate()
        process.join(5)


@dataclass
class Run:
    tool: str
    pages: int
    seconds: float
    urls: set[str]
    # CPU seconds by process group (quaero.CpuGroups; "embedded process" for embedded Quaero,
    # "scrapy process" for Scrapy), and the site's server.
    cpu: dict[str, float] = field(default_factory=dict)
    diagnosis: str = ""

    @property
    def pps(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0


async def _embedded(base: str) -> tuple[float, set[str], float]:
    """Seconds, URLs and CPU seconds of a crawl by embedded Quaero in this process."""
    from tests.support.crawler import job_documents, run_step, running_crawler, step_call
    from tests.support.services import common_settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = CrawlerSettings(
            **common_settings(None, Path(tmp)), crawler_port=0, queue_name=f"q.{uuid.uuid4().hex[:8]}"
        )
        async with running_crawler(settings) as crawler:
            config = {"start_urls": [base + START], "max_depth": DEPTH, "max_pages": 1_000_000, "concurrency": 16}
            cpu = time.process_time()
            started = time.perf_counter()
            events = await run_step(crawler.stub, step_call(config, job_definition_id="bench"), timeout=1800)
            seconds = time.perf_counter() - started
            cpu = time.process_time() - cpu
            finished = events[-1].finished
            if not finished.ok:
                raise RuntimeError(f"the embedded crawl did not succeed: {finished}")
            urls = set(await job_documents(crawler.stub, finished.jobs[0].crawl_job_id))
    return seconds, urls, cpu


def _site_cpu(site: Site) -> float:
    return quaero._cpu_seconds(site.pid)


def run_tool(tool: str, site: Site, database_url: str, amqp_url: str, workers: int) -> Run:
    site_before = _site_cpu(site)
    if tool == "Quaero distributed":
        result = asyncio.run(
            quaero.crawl(
                site.base, DEPTH, database_url=database_url, amqp_url=amqp_url, workers=workers,
                start=START, cpu_groups=True,
            )
        )  # fmt: skip
        run = Run(tool, result.pages, result.seconds, result.urls, dict(result.cpu_by_group), result.diagnosis)
    elif tool == "Quaero embedded":
        seconds, urls, cpu = asyncio.run(_embedded(site.base))
        run = Run(tool, len(urls), seconds, urls, {"embedded process": cpu})
    else:
        children = os.times()
        seconds, urls, log = run_scrapy(site.base, DEPTH, START)
        after = os.times()
        cpu = after.children_user + after.children_system - children.children_user - children.children_system
        run = Run(tool, len(urls), seconds, urls, {"scrapy process (with start-up)": cpu}, log)
    run.cpu["site server"] = _site_cpu(site) - site_before
    return run


def report(runs: list[Run], expected: set[str], workers: int, rounds: int) -> list[str]:
    load = os.getloadavg()
    lines = [
        f"PostgreSQL manual ({PACKAGE}): {len(expected)} pages expected (breadth-first walk of the files,"
        f" depth {DEPTH}), concurrency 16, {workers} Quaero workers, {rounds} alternating rounds;"
        f" load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}",
        "",
        "| tool | pages/s (median) | each run | exact page set | CPU ms a page, by process (median) |",
        "|---|---|---|---|---|",
    ]
    medians: dict[str, float] = {}
    for tool in TOOLS:
        mine = [r for r in runs if r.tool == tool]
        if not mine:
            continue
        medians[tool] = statistics.median(r.pps for r in mine)
        groups = list(dict.fromkeys(g for r in mine for g in r.cpu))
        cpu = ", ".join(
            f"{g} {statistics.median(r.cpu.get(g, 0.0) / max(1, r.pages) * 1000 for r in mine):.2f}" for g in groups
        )
        exact = sum(r.urls == expected for r in mine)
        each = ", ".join(f"{r.pps:.0f}" for r in mine)
        lines.append(f"| {tool} | {medians[tool]:.0f} | {each} | {exact}/{len(mine)} | {cpu} |")
    if medians.get("Scrapy") and "Quaero distributed" in medians:
        ratio = medians["Quaero distributed"] / medians["Scrapy"]
        lines.append(f"\ndistributed Quaero / Scrapy: {ratio:.2f}x (target 2x)")
    return lines


def mismatches(runs: list[Run], expected: set[str], base: str) -> list[str]:
    out = []
    for i, r in enumerate(runs):
        if r.urls != expected:
            missing = sorted(u.removeprefix(base) for u in expected - r.urls)
            extra = sorted(u.removeprefix(base) for u in r.urls - expected)
            out.append(
                f"{r.tool} (run {i // len(TOOLS) + 1}): {len(r.urls)} pages, {len(missing)} missing {missing[:5]},"
                f" {len(extra)} extra {extra[:5]}\n  {r.diagnosis[-1000:] or '(nothing logged)'}"
            )
    return out


def run(
    database_url: str, amqp_url: str, *, workers: int = 2, rounds: int = 3, tools: tuple[str, ...] = TOOLS
) -> list[str]:
    """The scenario's report; raises SystemExit when a tool's page set is not the expected one."""
    folder = manual_dir()
    problem = ensure_manual(folder)
    if problem:
        return [f"PostgreSQL manual crawl: skipped, {problem}"]
    files = read_files(folder)
    expected_set = expected_paths(files)
    runs: list[Run] = []
    with serve(files) as site:
        expected = {site.base + p for p in expected_set}
        for _ in range(rounds):
            for tool in tools:
                runs.append(run_tool(tool, site, database_url, amqp_url, workers))
        wrong = mismatches(runs, expected, site.base)
    lines = report(runs, expected, workers, rounds)
    if wrong:
        raise SystemExit(
            "\n".join(lines) + "\na crawl of the manual did not store exactly its pages:\n" + "\n".join(wrong)
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated, of: " + ", ".join(TOOLS))
    args = parser.parse_args()
    database_url = os.environ.get("QUAERO_BENCH_DATABASE_URL") or os.environ.get(
        "QUAERO_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    )
    amqp_url = os.environ.get("QUAERO_BENCH_AMQP_URL") or os.environ.get(
        "QUAERO_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"
    )
    tools = tuple(t.strip() for t in args.tools.split(",") if t.strip())
    print("\n".join(run(database_url, amqp_url, workers=args.workers, rounds=args.rounds, tools=tools)))


if __name__ == "__main__":
    main()

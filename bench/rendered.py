"""The rendered scenario of `make bench`: an application-shell site (every page an empty
`#root` that /app.js fills with its text and links), crawled with `render: auto` by Quaero
(PostgreSQL + RabbitMQ; 2 worker processes, each with its Chromium rendering 4 pages at once, and
1 worker rendering 8 in one Chromium, as Crawlee does) and by Crawlee's PlaywrightCrawler on the
same Debian Chromium (one browser, 8 pages at once), if Crawlee is installed (see CRAWLEE_DIR),
in the same run: `rounds` rounds, the tools alternating (the first of a round is the last of the
one before), each run reported with the load average, and the medians. Crawlee runs twice a
round: waiting for `networkidle` after `load` (what Quaero's settle is for: content a page draws
late) and as it does by default (`load` only; exact here, where /app.js draws at once, but
nothing waits for a link drawn after a delay). Pages/s, exact result,
peak RSS of a worker with its browser's processes (Crawlee: node with its browser's processes).
Then a larger crawl with Quaero alone, to show its memory stays bounded as pages go by
(browsers are recycled).

Crawlee: `npm install crawlee@3 playwright-core` in QUAERO_BENCH_CRAWLEE_DIR (default
/tmp/render-crawlee); no browser is downloaded, it drives /usr/bin/chromium.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import uvloop

from bench import quaero
from bench.quaero import TreeRss
from bench.site import _Http, _response

DEPTH = 5
CHROMIUM = "/usr/bin/chromium"
CRAWLEE_DIR = Path(os.environ.get("QUAERO_BENCH_CRAWLEE_DIR", "/tmp/render-crawlee"))
# Pages rendered at once: Quaero's 2 workers x QUAERO_BROWSER_PAGES 4; Crawlee the same.
PAGES_AT_ONCE = 8

SHELL = (
    b'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>App</title></head><body>'
    b"<noscript>You need to enable JavaScript to run this app.</noscript>"
    b'<div id="root"></div><script src="/app.js"></script></body></html>'
)
APP_JS = """
const n = %d;
const words = ["orchard", "apple", "pear", "branch", "root", "season", "harvest", "blossom", "graft", "soil"];
const path = location.pathname;
const i = path === "/" ? 0 : parseInt(path.split("/")[2], 10);
const href = k => k === 0 ? "/" : `/page/${k}.html`;
let seed = i + 1;
const rand = () => { seed = (seed * 1103515245 + 12345) %% 2147483648; return seed / 2147483648; };
const links = [];
for (let c = 10 * i + 1; c <= 10 * i + 10 && c < n; c++) links.push(href(c));
links.push(href(0), href(Math.floor(rand() * n)), href(Math.floor(rand() * n)));
let text = "";
for (let p = 0; p < 4; p++) {
  const sentence = [];
  for (let w = 0; w < 40; w++) sentence.push(words[Math.floor(rand() * words.length)]);
  text += `<p>${sentence.join(" ")}.</p>`;
}
document.title = `Page ${i}`;
document.getElementById("root").innerHTML =
  `<main><h1>Page ${i}</h1>${text}<ul>${links.map(h => `<li><a href="${h}">${h}</a></li>`).join("")}</ul></main>`;
"""

CRAWLEE_SCRIPT = """
const { PlaywrightCrawler, Configuration } = require('crawlee');
const { chromium } = require('playwright-core');
const fs = require('fs');
const [base, out, concurrency, wait] = process.argv.slice(2);
const urls = [];
const crawler = new PlaywrightCrawler({
  launchContext: {
    launcher: chromium,
    launchOptions: { executablePath: '__CHROMIUM__', args: ['--no-sandbox', '--disable-gpu'] },
  },
  maxConcurrency: Number(concurrency), minConcurrency: Number(concurrency),
  maxRequestRetries: 2,
  preNavigationHooks: [async ({ page }) => {
    const blocked = ['image', 'media', 'font'];
    await page.route('**/*', r => blocked.includes(r.request().resourceType()) ? r.abort() : r.continue());
  }],
  async requestHandler({ page, request, enqueueLinks }) {
    if (wait === 'networkidle') await page.waitForLoadState('networkidle');
    const text = await page.evaluate(() => document.body.innerText);
    urls.push({ url: request.loadedUrl || request.url, words: text.split(/\\s+/).length });
    await enqueueLinks({ strategy: 'same-origin' });
  },
}, new Configuration({ persistStorage: false, purgeOnStart: true }));
const started = Date.now();
crawler.run([base + '/']).then(() => {
  fs.writeFileSync(out, JSON.stringify({ seconds: (Date.now() - started) / 1000, urls }));
  process.exit(0);
});
""".replace("__CHROMIUM__", CHROMIUM)


def page_path(i: int) -> str:
    return "/" if i == 0 else f"/page/{i}.html"


def expected_urls(base: str, n: int) -> set[str]:
    return {base + page_path(i) for i in range(n)}


def _serve(sock: socket.socket, n: int) -> None:
    responses = {page_path(i).encode(): _response(SHELL) for i in range(n)}
    responses[b"/app.js"] = _response((APP_JS % n).encode(), b"application/javascript")
    responses[b"/robots.txt"] = _response(b"User-agent: *\nAllow: /\n", b"text/plain")
    not_found = _response(b"not found", b"text/plain", b"404 Not Found")

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(lambda: _Http(responses, not_found, 0.0), sock=sock)
        await server.serve_forever()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


@contextlib.contextmanager
def serve(n: int) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    process = multiprocessing.get_context("fork").Process(target=_serve, args=(sock, n), daemon=True)
    process.start()
    sock.close()
    try:
        time.sleep(0.3)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.join(5)


@dataclass
class Run:
    tool: str
    pages: int
    seconds: float
    exact: bool
    peak_rss_mb: float
    peak_pss_mb: float = 0.0
    note: str = ""

    @property
    def pps(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0


def run_quaero(
    base: str, n: int, database_url: str, amqp_url: str, workers: int, recycle: int = 200, pages_at_once: int = 4
) -> Run:
    expected = expected_urls(base, n)
    result = asyncio.run(
        quaero.crawl(
            base,
            DEPTH,
            database_url=database_url,
            amqp_url=amqp_url,
            workers=workers,
            expected=expected,
            config={"render": "auto"},
            env_extra={
                "QUAERO_BROWSER_PATH": CHROMIUM,
                "QUAERO_BROWSER_RECYCLE_PAGES": str(recycle),
                "QUAERO_BROWSER_PAGES": str(pages_at_once),
            },
            tree_rss=True,
        )
    )
    return Run(
        "Quaero (render: auto)",
        result.pages,
        result.seconds,
        result.urls == expected,
        result.peak_worker_rss_mb,
        result.peak_worker_pss_mb,
    )


CRAWLEE_WAITS = {"networkidle": "Crawlee PlaywrightCrawler (networkidle)", "load": "Crawlee PlaywrightCrawler (load)"}


def run_crawlee(base: str, n: int, wait: str = "networkidle") -> Run:
    tool = CRAWLEE_WAITS[wait]
    if not (CRAWLEE_DIR / "node_modules" / "crawlee").is_dir():
        return Run(tool, 0, 0, False, 0, note=f"not installed in {CRAWLEE_DIR}")
    script = CRAWLEE_DIR / "bench_crawl.js"
    script.write_text(CRAWLEE_SCRIPT)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        env = {**os.environ, "CRAWLEE_STORAGE_DIR": str(Path(tmp) / "storage"), "CRAWLEE_LOG_LEVEL": "WARNING"}
        proc = subprocess.Popen(
            ["node", str(script), base, str(out), str(PAGES_AT_ONCE), wait],
            cwd=CRAWLEE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        sampler = TreeRss([proc.pid])
        while proc.poll() is None:
            sampler.sample()
            time.sleep(0.2)
        output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        if proc.returncode != 0 or not out.exists():
            return Run(tool, 0, 0, False, sampler.peak_mb, note=output[-500:])
        data = json.loads(out.read_text())
    urls = {u["url"] for u in data["urls"]}
    exact = urls == expected_urls(base, n)
    return Run(tool, len(urls), data["seconds"], exact, sampler.peak_mb, sampler.peak_pss_mb)


def run(
    database_url: str, amqp_url: str, *, pages: int = 300, big: int = 1000, workers: int = 2, rounds: int = 3
) -> list[str]:
    """The report's lines."""
    tools: list[tuple[str, Callable[[str], Run]]] = [
        (
            f"Quaero (render: auto), {workers} workers x 4 pages",
            lambda base: run_quaero(base, pages, database_url, amqp_url, workers),
        ),
        # One browser rendering PAGES_AT_ONCE pages, as Crawlee's.
        (
            f"Quaero (render: auto), 1 worker x {PAGES_AT_ONCE} pages",
            lambda base: run_quaero(base, pages, database_url, amqp_url, 1, pages_at_once=PAGES_AT_ONCE),
        ),
        *((name, lambda base, w=wait: run_crawlee(base, pages, w)) for wait, name in CRAWLEE_WAITS.items()),
    ]
    runs: dict[str, list[tuple[Run, float]]] = {name: [] for name, _ in tools}
    with serve(pages) as base:
        for round_ in range(rounds):
            for name, crawl in tools if round_ % 2 == 0 else tools[::-1]:
                got = crawl(base)
                got.tool = name
                runs[name].append((got, os.getloadavg()[0]))
                print(f"rendered, round {round_ + 1}: {_row(got)} load {runs[name][-1][1]:.1f}", flush=True)
    bounded = None
    if big:
        with serve(big) as base:
            bounded = run_quaero(base, big, database_url, amqp_url, workers)
            bounded.tool = f"Quaero, {big} pages (once)"
    load = os.getloadavg()[0]
    lines = [
        f"\nrendered: an app-shell site ({pages} pages, each drawn by /app.js), depth {DEPTH}, Debian Chromium,"
        f" {PAGES_AT_ONCE} pages rendered at once (Quaero: {workers} workers x QUAERO_BROWSER_PAGES 4,"
        f" or 1 x {PAGES_AT_ONCE}; Crawlee: maxConcurrency {PAGES_AT_ONCE}), median of {rounds} alternating runs;"
        f" load average {load:.1f}\n",
        "| crawler | pages | pages/s (median) | each run, pages/s (load) | exact result (every run) | peak RSS,"
        " summed with the browser's processes (max) | peak PSS (max) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, got in runs.items():
        noted = [r.note for r, _ in got if r.note]
        if noted:
            lines.append(
                f"| {name} | - | - | - | - | {noted[0].strip().splitlines()[-1] if noted[0].strip() else ''} | - |"
            )
            continue
        each = ", ".join(f"{r.pps:.1f} ({load:.0f})" for r, load in got)
        lines.append(
            f"| {name} | {got[0][0].pages} | {statistics.median(r.pps for r, _ in got):.1f} | {each} |"
            f" {'yes' if all(r.exact for r, _ in got) else 'NO'} | {max(r.peak_rss_mb for r, _ in got):.0f} MB"
            f" | {max(r.peak_pss_mb for r, _ in got):.0f} MB |"
        )
    if bounded is not None:
        lines.append(
            f"| {bounded.tool} | {bounded.pages} | {bounded.pps:.1f} | - | {'yes' if bounded.exact else 'NO'} |"
            f" {bounded.peak_rss_mb:.0f} MB | {bounded.peak_pss_mb:.0f} MB |"
        )
    return lines


def _row(r: Run) -> str:
    if r.note:
        return f"{r.tool}: {r.note.strip().splitlines()[-1] if r.note.strip() else 'failed'}"
    return f"{r.tool}: {r.pages} pages, {r.pps:.2f} pages/s, exact {r.exact}, peak RSS {r.peak_rss_mb:.0f} MB"

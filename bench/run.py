"""`make bench`: Quaero against Scrapy on a generated site served fast on loopback, then on the
PostgreSQL manual's 1,169 real pages beside embedded Quaero (bench/manual.py; `--manual-only` runs
that alone), then the executor's execute -> 202 latency under load and its post-job start delay,
then the parse step's main-content extraction scored on WCXB beside trafilatura (bench/wcxb.py;
`--wcxb-only` runs that alone), then what keeping raw HTML for `reextract` costs on a crawl of WCXB
pages (bench/html_storage.py).

For each scenario (the static site, then 20 ms added to every response) the same site is
crawled by Quaero (PostgreSQL + RabbitMQ, 2 worker processes, concurrency 16) and by Scrapy
(CONCURRENT_REQUESTS=16, CONCURRENT_REQUESTS_PER_DOMAIN=16, same depth, robots.txt obeyed, each
page turned into Markdown with the same converter), each several times, alternating, so both
meet the machine in the same moods (a shared machine's speed drifts by a third from one run to
the next). Every result is checked against the site's exact page set; the table shows the
median pages/s of each, their ratio and the peak memory of a Quaero worker.

Environment: QUAERO_BENCH_DATABASE_URL (else QUAERO_TEST_DATABASE_URL, else the local default),
QUAERO_BENCH_AMQP_URL (likewise). A fresh database and queue are made per run and removed.
QUAERO_BENCH_WCXB_DIR: the WCXB split (default ../shared/wcxb-dev beside the repository).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from bench import disturbed, html_storage, manual, quaero, recrawl, rendered, wcxb
from bench import executor as executor_bench
from bench.scrapy_spider import run_scrapy
from bench.site import expected_urls, serve

ROOT = Path(__file__).resolve().parents[1]
DEPTH = 5


@dataclass
class Row:
    scenario: str
    quaero_pps: float
    scrapy_pps: float
    quaero_exact: bool
    scrapy_exact: bool
    peak_rss_mb: float
    quaero_cpu_ms: float
    quaero_runs: list[float]
    scrapy_runs: list[float]
    timelines: list[list[int]]
    # What an inexact crawl got wrong: tool, run and a few of the URLs missing or extra.
    mismatches: list[str]

    @property
    def ratio(self) -> float:
        return self.quaero_pps / self.scrapy_pps if self.scrapy_pps else 0.0


def _env(name: str, default: str) -> str:
    return os.environ.get(f"QUAERO_BENCH_{name}") or os.environ.get(f"QUAERO_TEST_{name}") or default


def _mismatch(what: str, urls: set[str], expected: set[str], diagnosis: str) -> str:
    missing, extra = sorted(expected - urls), sorted(urls - expected)
    return (
        f"{what}: {len(urls)} pages, {len(missing)} missing {missing[:5]}, {len(extra)} extra {extra[:5]}\n"
        f"  {diagnosis or '(nothing logged)'}"
    )


def scenario(name: str, pages: int, latency: float, database_url: str, amqp_url: str, workers: int, rounds: int) -> Row:
    """Crawl the site `rounds` times with each tool, alternating (Quaero, Scrapy, Quaero, ...), so
    both see the machine in the same states; the row gives the median run of each."""
    quaero_runs: list[quaero.Result] = []
    scrapy_runs: list[tuple[float, set[str], str]] = []
    with serve(pages, latency) as site:
        time.sleep(0.3)
        expected = expected_urls(site.base, pages)
        for _ in range(rounds):
            crawl = quaero.crawl(
                site.base, DEPTH, database_url=database_url, amqp_url=amqp_url, workers=workers, expected=expected
            )
            quaero_runs.append(asyncio.run(crawl))
            scrapy_runs.append(run_scrapy(site.base, DEPTH))
    mismatches = [
        _mismatch(f"{name}: {tool} run {i + 1}", urls, expected, diagnosis)
        for tool, runs in (
            ("Quaero", [(q.urls, q.diagnosis) for q in quaero_runs]),
            ("Scrapy", [(urls, log) for _, urls, log in scrapy_runs]),
        )
        for i, (urls, diagnosis) in enumerate(runs)
        if urls != expected
    ]
    return Row(
        scenario=name,
        mismatches=mismatches,
        quaero_pps=statistics.median(q.pages_per_second for q in quaero_runs),
        scrapy_pps=statistics.median(len(urls) / seconds for seconds, urls, _ in scrapy_runs),
        quaero_exact=all(q.urls == expected for q in quaero_runs),
        scrapy_exact=all(urls == expected for _, urls, _ in scrapy_runs),
        peak_rss_mb=max(q.peak_worker_rss_mb for q in quaero_runs),
        quaero_cpu_ms=statistics.median(q.worker_cpu_seconds / max(1, q.pages) * 1000 for q in quaero_runs),
        quaero_runs=[q.pages_per_second for q in quaero_runs],
        timelines=[q.timeline for q in quaero_runs],
        scrapy_runs=[len(urls) / seconds for seconds, urls, _ in scrapy_runs],
    )


def run_recrawl(pages: int, database_url: str, amqp_url: str, workers: int) -> None:
    crawls = asyncio.run(recrawl.run(pages, database_url=database_url, amqp_url=amqp_url, workers=workers))
    load = os.getloadavg()[0]
    print(f"\nrecrawl: {pages} pages, depth {recrawl.DEPTH}, {workers} workers; load average {load:.1f}\n")
    print("\n".join(recrawl.report(crawls)))
    wrong = [f"{c.name}: {w}" for c in crawls for w in c.wrong[:5]]
    if wrong:
        raise SystemExit("a recrawl's change labels were not exact:\n" + "\n".join(wrong))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3, help="crawls of each tool per scenario (medians reported)")
    parser.add_argument("--rate", type=float, default=100.0, help="execute requests per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the execute load lasts")
    parser.add_argument("--post-job-runs", type=int, default=30)
    parser.add_argument("--skip-executor", action="store_true")
    parser.add_argument("--disturbed-only", action="store_true", help="only the disturbed crawl (bench/disturbed.py)")
    parser.add_argument("--wcxb-only", action="store_true", help="only score main-content extraction on WCXB")
    parser.add_argument("--recrawl-only", action="store_true", help="only the recrawl scenario (bench/recrawl.py)")
    parser.add_argument(
        "--manual-only", action="store_true", help="only the crawl of the PostgreSQL manual (bench/manual.py)"
    )
    parser.add_argument("--recrawl-pages", type=int, default=None, help="pages of the recrawl site (default --pages)")
    parser.add_argument(
        "--timeline", action="store_true", help="print each Quaero crawl's pages stored per quarter second"
    )
    parser.add_argument(
        "--rendered-pages", type=int, default=300, help="pages of the app-shell site (bench/rendered.py)"
    )
    parser.add_argument(
        "--rendered-big", type=int, default=1000, help="pages of the memory-bound rendered crawl (0: none)"
    )
    parser.add_argument(
        "--rendered-rounds", type=int, default=3, help="alternating rounds of the rendered scenario (each tool once)"
    )
    parser.add_argument("--rendered-only", action="store_true", help="only the rendered scenario")
    parser.add_argument("--skip-rendered", action="store_true")
    args = parser.parse_args()
    if args.manual_only:
        database_url = _env("DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
        amqp_url = _env("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
        print("\n".join(manual.run(database_url, amqp_url, workers=args.workers, rounds=args.rounds)))
        return
    # Every other `--…-only` runs that scenario alone.
    only_other = args.disturbed_only or args.wcxb_only or args.recrawl_only
    if args.rendered_only or not (args.skip_rendered or only_other):
        database_url = _env("DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
        amqp_url = _env("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
        lines = rendered.run(
            database_url,
            amqp_url,
            pages=args.rendered_pages,
            big=args.rendered_big,
            workers=args.workers,
            rounds=args.rendered_rounds,
        )
        print("\n".join(lines))
        if args.rendered_only:
            return
    if args.wcxb_only:
        print("\n".join(wcxb.run(wcxb.wcxb_dir())))
        return
    database_url = _env("DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    amqp_url = _env("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    if args.recrawl_only:
        run_recrawl(args.recrawl_pages or args.pages, database_url, amqp_url, args.workers)
        return
    disturbed_report = lambda: disturbed.run(  # noqa: E731
        args.pages, args.latency_ms / 1000, DEPTH, database_url, amqp_url, args.workers
    )
    if args.disturbed_only:
        print("\n".join(disturbed_report()))
        return

    rows = [
        scenario("static", args.pages, 0.0, database_url, amqp_url, args.workers, args.rounds),
        scenario(
            f"+{args.latency_ms:g} ms per response",
            args.pages,
            args.latency_ms / 1000,
            database_url,
            amqp_url,
            args.workers,
            args.rounds,
        ),
    ]
    load = os.getloadavg()[0]
    print(
        f"\n{args.pages} pages, depth {DEPTH}, concurrency 16, {args.workers} Quaero workers, median of {args.rounds}"
        f" alternating runs each; load average {load:.1f}\n"
    )
    columns = [
        "scenario", "Quaero pages/s", "Scrapy pages/s", "Quaero / Scrapy", "exact result (Quaero, Scrapy)",
        "peak worker RSS", "worker CPU per page",
    ]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r.scenario} | {r.quaero_pps:.0f} | {r.scrapy_pps:.0f} | {r.ratio:.2f}x | "
            f"{'yes' if r.quaero_exact else 'NO'}, {'yes' if r.scrapy_exact else 'NO'} | "
            f"{r.peak_rss_mb:.0f} MB | {r.quaero_cpu_ms:.1f} ms |"
        )
    for r in rows:
        runs = ", ".join(f"{q:.0f}/{s:.0f}" for q, s in zip(r.quaero_runs, r.scrapy_runs, strict=True))
        print(f"\n{r.scenario}, each run (Quaero/Scrapy pages/s): {runs}", end="")
        if args.timeline:
            for timeline in r.timelines:
                print("\n  Quaero pages per 0.25 s:", " ".join(map(str, timeline)), end="")
    print()
    mismatches = [m for r in rows for m in r.mismatches]
    if mismatches:
        raise SystemExit("a crawl did not store exactly the site's pages:\n" + "\n".join(mismatches))

    print("\n" + "\n".join(manual.run(database_url, amqp_url, workers=args.workers, rounds=args.rounds)))
    run_recrawl(args.recrawl_pages or args.pages, database_url, amqp_url, args.workers)
    print("\n" + "\n".join(disturbed_report()))

    if not args.skip_executor:
        latency, delays = asyncio.run(
            executor_bench.run(database_url, amqp_url, rate=args.rate, seconds=args.seconds, runs=args.post_job_runs)
        )
        load = os.getloadavg()[0]
        print(f"\nexecutor: gateway, executor and crawler as processes, load from this one; load average {load:.1f}\n")
        print("\n".join(executor_bench.report(latency, delays)))

    print("\n" + "\n".join(wcxb.run(wcxb.wcxb_dir())))
    print("\n" + "\n".join(html_storage.run(wcxb.wcxb_dir())))


if __name__ == "__main__":
    main()

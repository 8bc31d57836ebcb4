"""What keeping raw HTML for `reextract` costs: a crawl of real pages (WCXB's) and the bytes stored.

Serves up to N pages of the WCXB split (bench/wcxb.py says where it is) on 127.0.0.1 under an
index linking to them all, crawls them with the embedded crawler (SQLite), and compares the HTML
fetched, the lz4 frames kept in `document_html`, and the documents' Markdown. Then times a
`reextract` of them all (CPU of the extraction, not a fetch). Run alone:
`python -m bench.html_storage [--pages N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select

from bench import wcxb
from libs.db import Database
from services.crawler.settings import CrawlerSettings
from services.crawler.store import DOCUMENTS, HTML
from tests.support.crawler import crawler_settings, run_step, running_crawler, source, step_call
from tests.support.services import common_settings
from tests.support.site import LocalSite, Page, html_page


async def measure(folder: Path, pages: int) -> list[str]:
    files = sorted((folder / "html").glob("*.html.gz"))[:pages]
    site = LocalSite()
    paths = [f"/p/{f.name.removesuffix('.html.gz')}.html" for f in files]
    site.pages["/"] = Page(body=html_page("WCXB pages", paths))
    for path, file in zip(paths, files, strict=True):
        site.pages[path] = Page(body=gzip.decompress(file.read_bytes()))
    with tempfile.TemporaryDirectory() as tmp:
        settings = crawler_settings(common_settings(None, Path(tmp)))
        async with site.serve(), running_crawler(settings) as c:
            config = {"max_depth": 1, "max_pages": pages + 1, "follow_links": True}
            crawled = await run_step(c.stub, step_call(config, sources=[source("wcxb", site.base + "/")]), timeout=600)
            assert crawled[-1].finished.ok, crawled[-1].finished.error
            # The workers keep HTML beside their settles: the last batch lands a moment later.
            for _ in range(100):
                raw, kept, markdown, documents = await _sizes(settings)
                if raw and await _html_rows(settings) >= documents:
                    break
                await asyncio.sleep(0.1)
            started = time.perf_counter()
            result = (await run_step(c.stub, step_call({"source_id": "wcxb"}, action="reextract"), timeout=600))[
                -1
            ].finished
            reextract_seconds = time.perf_counter() - started
            sizes = await _sizes(settings)
    raw, kept, markdown, documents = sizes
    return [
        f"raw HTML kept for reextract ({documents} WCXB pages crawled, lz4 frames in document_html):",
        f"  HTML fetched {raw / 1e6:.1f} MB, kept {kept / 1e6:.1f} MB ({kept / raw:.0%} of it,"
        f" {kept / documents / 1e3:.1f} kB a page); the documents' Markdown {markdown / 1e6:.1f} MB",
        f"  reextract of them all: {reextract_seconds:.1f} s ({reextract_seconds / documents * 1e3:.1f} ms a page),"
        f" {int(result.result['changed'])} changed",
    ]


async def _sizes(settings: CrawlerSettings) -> tuple[int, int, int, int]:
    db = Database(settings.database_url_for("crawler"), "crawler")
    await db.start()
    try:
        async with db.read() as session:
            raw, kept = (await session.execute(select(func.sum(HTML.c.size), func.sum(func.length(HTML.c.body))))).one()
            raw, kept = raw or 0, kept or 0
            markdown, documents = (
                await session.execute(select(func.sum(func.length(DOCUMENTS.c.markdown)), func.count()))
            ).one()
    finally:
        await db.close()
    return int(raw), int(kept), int(markdown), int(documents)


async def _html_rows(settings: CrawlerSettings) -> int:
    db = Database(settings.database_url_for("crawler"), "crawler")
    await db.start()
    try:
        async with db.read() as session:
            return int((await session.execute(select(func.count()).select_from(HTML))).scalar_one())
    finally:
        await db.close()


def run(folder: Path | None, pages: int = 300) -> list[str]:
    if folder is None or not (folder / "html").is_dir():
        return ["raw HTML storage: the WCXB split is missing (QUAERO_BENCH_WCXB_DIR); skipped"]
    return asyncio.run(measure(folder, pages))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=300)
    args = parser.parse_args()
    print("\n".join(run(wcxb.wcxb_dir(), args.pages)))


if __name__ == "__main__":
    main()

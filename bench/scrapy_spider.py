"""The same crawl with Scrapy, run as its own process: `python -m bench.scrapy_spider BASE DEPTH OUT [START]`.

Same rules as Quaero's run: one host, robots.txt obeyed, links followed to the same depth,
16 concurrent requests (16 per domain), and each page turned into a title and Markdown with the
same converter. Items go to a JSON-lines file; the timing covers the crawl only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import html_to_markdown
import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy.linkextractors import LinkExtractor

_MARKDOWN = html_to_markdown.ConversionOptions(extract_metadata=False, skip_images=True)


class SiteSpider(scrapy.Spider):
    name = "bench"

    def __init__(self, base: str, start: str = "/", **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.start_urls = [base + start]
        self.allowed_domains = [urlsplit(base).hostname or ""]
        self.links = LinkExtractor()

    def parse(self, response):  # type: ignore[no-untyped-def]
        main = response.css("main").get() or response.text
        yield {
            "url": response.url,
            "title": response.css("title::text").get(default=""),
            "markdown": html_to_markdown.convert(main, _MARKDOWN).content,
        }
        for link in self.links.extract_links(response):
            yield response.follow(link, callback=self.parse)


def run_scrapy(base: str, depth: int, start: str = "/") -> tuple[float, set[str], str]:
    """Seconds, the URLs of the items, and what Scrapy logged (warnings and errors)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "items.jsonl"
        proc = subprocess.run(
            [sys.executable, "-m", "bench.scrapy_spider", base, str(depth), str(out), start],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"scrapy failed:\n{proc.stderr[-3000:]}")
        seconds = json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]
        urls = {json.loads(line)["url"] for line in out.read_text().splitlines() if line}
    return float(seconds), urls, proc.stderr.strip()[-1500:]


def main() -> None:
    base, depth, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    start = sys.argv[4] if len(sys.argv) > 4 else "/"
    process = CrawlerProcess(
        settings={
            "CONCURRENT_REQUESTS": 16,
            "CONCURRENT_REQUESTS_PER_DOMAIN": 16,
            "ROBOTSTXT_OBEY": True,
            "DEPTH_LIMIT": depth,
            "LOG_LEVEL": "WARNING",
            "TELNETCONSOLE_ENABLED": False,
            "COOKIES_ENABLED": False,
            "FEEDS": {out: {"format": "jsonlines"}},
            "REQUEST_FINGERPRINTER_IMPLEMENTATION": "2.7",
        }
    )
    crawler = process.create_crawler(SiteSpider)
    process.crawl(crawler, base=base, start=start)
    process.start()
    stats = crawler.stats.get_stats() if crawler.stats else {}
    print(json.dumps({"seconds": stats["elapsed_time_seconds"], "items": stats.get("item_scraped_count", 0)}))


if __name__ == "__main__":
    main()

"""The crawler's and crawl workers' settings (QUAERO_* environment variables)."""

from __future__ import annotations

from pydantic import Field

from libs.settings import CommonSettings


class CrawlerSettings(CommonSettings):
    crawler_port: int = Field(default=50052, ge=0, le=65535, description="gRPC port of the crawler (0: any free port).")
    queue_name: str = Field(default="quaero.crawl.urls", description="RabbitMQ queue carrying UrlTask messages.")
    delivery_limit: int = Field(
        default=5, ge=1, description="Deliveries of one task before it is dead-lettered (fixed when the queue is made)."
    )
    user_agent: str = Field(default="Quaero/0.1 (+https://github.com/quaero)", description="User-Agent of every fetch.")
    worker_prefetch: int = Field(default=64, ge=1, description="Tasks a worker holds at once (its fetch concurrency).")
    fetch_timeout: float = Field(default=30.0, gt=0, description="Seconds one fetch may take.")
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, description="Bodies above this are skipped.")
    max_attempts: int = Field(default=3, ge=1, description="Fetches of a URL answering 429/5xx before it fails.")
    retry_backoff: float = Field(default=2.0, gt=0, description="Seconds before the first retry; doubles each time.")
    visibility_timeout: float = Field(
        default=90.0, gt=0, description="Seconds a published task may stay unsettled before the pump republishes it."
    )
    publisher_timeout: float = Field(
        default=5.0,
        gt=0,
        description="Seconds a publishing process may miss its heartbeat before the pump republishes its leases.",
    )
    pump_interval: float = Field(default=0.5, gt=0, description="Seconds between two rounds of the dispatch pump.")
    # Parsing runs on the event loop the fetches, settles and gRPC share: 32 KiB keeps one page
    # to a few milliseconds there; larger pages go to the process pool.
    parse_inline_limit: int = Field(
        default=32 * 1024, ge=0, description="Pages up to this size are parsed inline; larger ones in a process pool."
    )
    parse_processes: int = Field(default=1, ge=0, description="Processes parsing large pages (0: parse inline).")
    robots_ttl: float = Field(default=3600.0, ge=0, description="Seconds a host's robots.txt is cached.")
    db_pool_size: int = Field(default=4, ge=1, description="Database connections of a crawler or worker process.")
    document_versions: int = Field(
        default=5, ge=0, le=1000, description="Earlier versions a changed document keeps (0: none)."
    )
    browser_path: str = Field(
        default="/usr/bin/chromium", description="Chromium executable rendering pages that need JavaScript."
    )
    browser_pages: int = Field(default=4, ge=1, le=64, description="Pages a worker renders at once in its browser.")
    browser_recycle_pages: int = Field(
        default=200, ge=1, description="Pages a browser renders before it is restarted (keeps its memory bounded)."
    )
    keep_html: bool = Field(
        default=True,
        description="Keep each fetched page's HTML (lz4-compressed), so the reextract action needs no refetch.",
    )

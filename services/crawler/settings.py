"""The crawler's and crawl workers' settings (QUAERO_* environment variables)."""

from __future__ import annotations

from pydantic import Field

from libs.settings import CommonSettings


class CrawlerSettings(CommonSettings):
    crawler_port: int = Field(default=50052, ge=0, le=65535, description="gRPC port of the crawler (0: any free port).")
    queue_name: str = Field(default="quaero.crawl.urls", description="RabbitMQ queue carrying UrlTask messages.")
    user_agent: str = Field(default="Quaero/0.1 (+https://github.com/quaero)", description="User-Agent of every fetch.")

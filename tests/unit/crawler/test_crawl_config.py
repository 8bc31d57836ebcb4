"""A crawl step's effective configuration (pure logic)."""

from __future__ import annotations

from quaero.v1 import crawl_job_pb2, source_pb2
from services.crawler.actions.crawl import DEFAULTS, effective_config

FIELDS = {f.name for f in crawl_job_pb2.CrawlConfig.DESCRIPTOR.fields}


def test_every_crawl_config_field_has_a_default() -> None:
    assert set(DEFAULTS) == FIELDS


def test_the_step_overrides_the_source_which_overrides_the_defaults() -> None:
    source = source_pb2.Source(
        crawl=crawl_job_pb2.CrawlConfig(max_depth=5, include_patterns=["/docs/"], obey_robots=False)
    )

    config = effective_config({"max_pages": 7.0, "exclude_patterns": ["/old/"], "obey_robots": True}, source)

    assert set(config) == FIELDS
    assert config["max_depth"] == 5 and config["max_pages"] == 7 and isinstance(config["max_pages"], int)
    assert config["include_patterns"] == ["/docs/"] and config["exclude_patterns"] == ["/old/"]
    assert config["obey_robots"] is True
    assert config["concurrency"] == DEFAULTS["concurrency"]

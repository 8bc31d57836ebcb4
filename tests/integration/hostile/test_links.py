"""Pages with very many links: any number settles, in bounded statements, while health answers.

Embedded mode used to wedge on a page of 20,000 links: SQLite refused the insert ("too many SQL
variables"), the settle was retried for ever, each attempt blocking the event loop, and memory
reached 1.7 GB.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from tests.support.hostile import health_answers, memory_stays_under
from tests.support.runs import define, execute, jobs, wait_for
from tests.support.services import running_stack
from tests.support.site import LocalSite, Page

MiB = 2**20


@dataclass
class LinkFarm(LocalSite):
    """/ links to `links` distinct pages /l/0, /l/1, ..., each of which exists."""

    links: int = 0

    def build(self) -> None:
        anchors = "".join(f'<a href="/l/{i}">{i}</a>' for i in range(self.links))
        self.pages["/"] = Page(body=f"<html><head><title>Farm</title></head><body>{anchors}</body></html>".encode())

    async def _answer(self, path: str) -> web.StreamResponse:
        if path.startswith("/l/"):
            return web.Response(body=LEAF, content_type="text/html")
        return await super()._answer(path)


LEAF = b"<html><head><title>Leaf</title></head><body><p>A leaf.</p></body></html>"


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """What the test process holds so far kept out of the garbage collector's sight, as every
    Quaero process does with its start-up heap (libs.grpc_server.run_process): a full collection
    then walks what the crawl allocates, not pytest's modules."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@pytest.mark.parametrize(
    ("links", "config", "expected"),
    [
        # Every link beyond the depth limit: recorded as skipped, nothing more is fetched.
        (100_000, {"max_depth": 0}, {"skipped": 100_000, "total": 1, "result": 1}),
        # Every link queued, then the page budget skips all but the few fetched meanwhile.
        (20_000, {"max_depth": 1, "max_pages": 3, "concurrency": 2}, {"skipped": 20_000 - 2, "total": 3, "result": 3}),
    ],
    ids=["100,000 links beyond max_depth", "20,000 links and a budget of 3"],
)
async def test_a_page_with_any_number_of_links_settles_while_health_answers(
    backend: dict[str, Any], links: int, config: dict[str, Any], expected: dict[str, int]
) -> None:
    site = LinkFarm(links=links)
    site.build()
    async with site.serve(), running_stack(backend) as stack:
        step = {"name": "crawl", "action": "crawl", "config": {"start_urls": [site.url("/")], **config}}
        await define(stack, {"id": "farm", "steps": [step]})
        with frozen_heap(), memory_stays_under(400 * MiB):
            async with health_answers(stack.base_url):
                started = await execute(stack, "farm")
                execution = await wait_for(stack, started["execution_id"], timeout=150)
        (job,) = await jobs(stack, execution_id=started["execution_id"])

    assert execution["status"] == "completed", execution
    progress = job["progress"]
    assert (progress["skipped_urls"], progress["total_urls"], job["result_count"]) == (
        expected["skipped"],
        expected["total"],
        expected["result"],
    )
    assert progress["pending_urls"] == 0

"""A LocalSite whose pages wait for a gate to open, so a test sees a crawl while it runs."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from tests.support.local_site import LocalSite


class GatedSite(LocalSite):
    """Pages wait for `gate` (robots.txt does not). Open by default; `close()` holds them back."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()

    def close(self) -> None:
        self.gate.clear()

    def open(self) -> None:
        self.gate.set()

    async def _handle(self, request: Request) -> Response:
        if request.url.path != "/robots.txt":
            await self.gate.wait()
        return await super()._handle(request)

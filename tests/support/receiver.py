"""A webhook receiver on 127.0.0.1 (port 0) that verifies every request with `standardwebhooks`,
as a real receiver would, and records what it got."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class Received:
    webhook_id: str
    verified: bool
    answered: int
    payload: dict[str, Any] | None


@dataclass
class Receiver:
    """`fail_first`: the first n requests for each webhook-id are answered 500."""

    secret: str = field(default_factory=new_secret)
    fail_first: int = 0
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _tries: Counter[str] = field(default_factory=Counter)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        webhook_id = request.headers.get("webhook-id", "")
        try:
            payload = Webhook(self.secret).verify(body, dict(request.headers))
            verified = True
        except WebhookVerificationError:
            payload, verified = None, False
        self._tries[webhook_id] += 1
        status = 401 if not verified else 500 if self._tries[webhook_id] <= self.fail_first else 204
        self.received.append(Received(webhook_id, verified, status, payload))
        return web.Response(status=status)

    def delivered(self) -> dict[str, dict[str, Any]]:
        """Event type -> payload of every delivery answered 2xx."""
        return {r.payload["type"]: r.payload for r in self.received if r.answered < 300 and r.payload}

    def attempts(self) -> Counter[str]:
        return Counter(r.webhook_id for r in self.received)

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[Receiver]:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            yield self
        finally:
            await runner.cleanup()

    @contextlib.contextmanager
    def serve_in_thread(self) -> Iterator[Receiver]:
        """Serve from a thread of its own, for synchronous tests that block while processes work."""
        started = threading.Event()
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()

        async def run() -> None:
            async with self.serve():
                started.set()
                await stop.wait()

        thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
        thread.start()
        started.wait(10)
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(10)
            loop.close()

"""The webhook sender: delivers the outbox at least once, signed per Standard Webhooks, with
exponential backoff, from any executor replica."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import aiohttp
from standardwebhooks.webhooks import Webhook as Signer

from libs.db import utcnow
from libs.fetch_guard import FetchGuard, blocked
from services.executor.model import WebhookDelivery
from services.executor.outbox import OUTBOX_CHANNEL, Outbox

log = logging.getLogger(__name__)
USER_AGENT = "Quaero-Webhooks/1"


@dataclass(frozen=True)
class DeliveryPolicy:
    timeout: float = 10.0
    initial_backoff: float = 5.0
    max_backoff: float = 3600.0
    # Of a receiver's answer, at most this much is read (the rest is dropped with the connection).
    max_response_bytes: int = 64 * 1024
    concurrency: int = 8
    # How often to look for due deliveries when nothing wakes the sender.
    poll: float = 5.0

    def delay(self, attempts: int) -> float:
        """The pause after the `attempts`-th failed attempt: initial, doubling, capped."""
        return float(min(self.initial_backoff * 2 ** min(attempts - 1, 40), self.max_backoff))

    @property
    def claim_seconds(self) -> float:
        # Longer than one attempt can take: a claim lapses only when its sender died.
        return self.timeout + 5.0


def signed_headers(delivery: WebhookDelivery) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt: the id is the delivery's (the same on every
    retry), the timestamp and signature this attempt's."""
    now = utcnow()
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": delivery.id,
        "webhook-timestamp": str(int(now.timestamp())),
    }
    if delivery.secret:
        headers["webhook-signature"] = Signer(delivery.secret).sign(delivery.id, now, delivery.body)
    return headers


class WebhookSender:
    def __init__(self, outbox: Outbox, guard: FetchGuard, policy: DeliveryPolicy) -> None:
        self.outbox = outbox
        self.guard = guard
        self.policy = policy

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver due deliveries until `stop`; woken at once when new ones are written."""
        notifier = self.outbox.db.notifier
        timeout = aiohttp.ClientTimeout(total=self.policy.timeout)
        async with (
            notifier.subscribe(OUTBOX_CHANNEL) as woken,
            aiohttp.ClientSession(
                connector=self.guard.connector(limit=self.policy.concurrency), timeout=timeout
            ) as http,
        ):
            while not stop.is_set():
                woken.clear()
                sent = await self.pass_once(http)
                if sent:
                    continue  # more may be due
                wait = self.policy.poll
                due = await self.outbox.next_due()
                if due is not None:
                    wait = min(wait, max((due - utcnow()).total_seconds(), 0.05))
                waiters = [asyncio.ensure_future(woken.wait()), asyncio.ensure_future(stop.wait())]
                try:
                    await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waiters:
                        w.cancel()

    async def pass_once(self, http: aiohttp.ClientSession) -> int:
        """Claim what is due and attempt each once, concurrently. Returns how many were attempted."""
        claimed = await self.outbox.claim(self.policy.concurrency, self.policy.claim_seconds)
        if claimed:
            await asyncio.gather(*(self._attempt(http, d) for d in claimed))
        return len(claimed)

    async def _attempt(self, http: aiohttp.ClientSession, delivery: WebhookDelivery) -> None:
        fields = {"delivery_id": delivery.id, "execution_id": delivery.execution_id, "url": delivery.url,
                  "event": delivery.event, "attempt": delivery.attempts}  # fmt: skip
        status: int | None = None
        error = ""
        try:
            async with http.post(
                delivery.url, data=delivery.body.encode(), headers=signed_headers(delivery), allow_redirects=False
            ) as response:
                status = response.status
                if not 200 <= status < 300:
                    # A bounded look at why; a receiver answering forever cannot hold us.
                    snippet = await response.content.read(self.policy.max_response_bytes)
                    error = f"HTTP {status}: " + snippet[:200].decode("utf-8", "replace")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            refused = blocked(exc)
            error = f"refused by the fetch guard: {refused.strerror}" if refused else f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # never let one receiver stop the others
            log.exception("webhook delivery failed unexpectedly", extra=fields)
            error = f"internal error: {type(exc).__name__}"
        if status is not None and 200 <= status < 300:
            await self.outbox.delivered(delivery, status)
            log.info("webhook delivered", extra={**fields, "status_code": status})
            return
        delay = self.policy.delay(delivery.attempts)
        with contextlib.suppress(Exception):
            await self.outbox.failed(delivery, status, error, delay)
        log.warning("webhook delivery failed; retrying later", extra={**fields, "error": error, "delay": delay})

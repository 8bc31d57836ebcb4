"""Task queues: RabbitMQ (aio-pika, quorum queue, confirms, dead letters) and an in-process twin.

Both keep one contract, so workers are tested against either:
- `publish(messages)` returns once the broker confirmed every message (confirms are pipelined);
- a consumer gets `Delivery` objects and must `ack()` or `reject(requeue=...)` each;
- a message rejected with requeue, or left unacked when its consumer goes away, comes back with
  `delivery_count` + 1; past `delivery_limit` deliveries it goes to the dead-letter queue, as does
  a message rejected without requeue;
- a consumer can stop receiving and still settle what it holds (a graceful shutdown), then be
  cancelled, which returns whatever it did not settle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from pamqp.common import FieldTable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueueSpec:
    """A work queue and its dead-letter queue. The arguments are fixed once the queue exists."""

    name: str
    delivery_limit: int = 5

    @property
    def dead_letter_name(self) -> str:
        return f"{self.name}.dead"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.name}.dlx"


@dataclass
class OutgoingMessage:
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class Delivery(Protocol):
    body: bytes
    headers: dict[str, Any]
    # How many times this message was delivered before this delivery (0 the first time).
    delivery_count: int

    async def ack(self) -> None: ...

    async def reject(self, requeue: bool) -> None: ...


Handler = Callable[[Delivery], Awaitable[None]]


class Consumer(Protocol):
    async def stop_receiving(self) -> None:
        """No more deliveries; those received can still be acked or rejected until `cancel()`."""
        ...

    async def cancel(self) -> None:
        """Stop receiving (if not done yet) and give back every delivery not settled."""
        ...


class TaskQueue(Protocol):
    spec: QueueSpec

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None: ...

    async def consume(self, handler: Handler, prefetch: int) -> Consumer: ...

    async def consume_dead_letters(self, handler: Handler) -> Consumer: ...

    async def depth(self) -> int: ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------------------- RabbitMQ


class _RabbitDelivery:
    def __init__(self, message: AbstractIncomingMessage) -> None:
        self._message = message
        self.body = message.body
        self.headers = dict(message.headers or {})
        count = self.headers.get("x-delivery-count", 0)
        self.delivery_count = int(count) if isinstance(count, int | str) else 0

    async def ack(self) -> None:
        # Straight to the channel, without waiting for the frame to reach the socket (an ack gets
        # no answer; a lost one means a redelivery, which consumers handle anyway).
        tag = self._message.delivery_tag
        if tag is None:
            raise aiormq.exceptions.ChannelInvalidStateError("a delivery without a tag cannot be acked")
        await self._message.channel.basic_ack(delivery_tag=tag, wait=False)

    async def reject(self, requeue: bool) -> None:
        await self._message.reject(requeue=requeue)


def _field_table(headers: dict[str, str]) -> FieldTable | None:
    return dict(headers) if headers else None


class _RabbitConsumer:
    def __init__(self, channel: aio_pika.abc.AbstractChannel, queue: aio_pika.abc.AbstractQueue, tag: str) -> None:
        self._channel, self._queue, self._tag = channel, queue, tag
        self._receiving = True

    async def stop_receiving(self) -> None:
        # basic.cancel only: the channel stays open, so deliveries held can still be acked.
        # Bounded: after a reconnect the robust channel may wait for a restore that never comes,
        # and closing the connection releases everything anyway.
        if self._receiving:
            self._receiving = False
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._queue.cancel(self._tag), 1)

    async def cancel(self) -> None:
        await self.stop_receiving()
        # Closing the channel returns its unacked deliveries to the queue.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._channel.close(), 1)


class RabbitQueue:
    """One robust connection per process; a confirming channel for publishing, one per consumer."""

    def __init__(self, connection: AbstractRobustConnection, spec: QueueSpec) -> None:
        self.connection = connection
        self.spec = spec
        self._publish_channel: aio_pika.abc.AbstractChannel | None = None
        self._publish_lock = asyncio.Lock()

    @classmethod
    async def connect(cls, url: str, spec: QueueSpec, *, connection_name: str = "quaero") -> RabbitQueue:
        connection = await aio_pika.connect_robust(
            url, client_properties={"connection_name": connection_name}, reconnect_interval=0.5
        )
        queue = cls(connection, spec)
        await queue.declare()
        return queue

    async def declare(self) -> None:
        channel = await self.connection.channel()
        try:
            dlx = await channel.declare_exchange(
                self.spec.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True
            )
            dead = await channel.declare_queue(
                self.spec.dead_letter_name, durable=True, arguments={"x-queue-type": "quorum"}
            )
            await dead.bind(dlx, routing_key=self.spec.dead_letter_name)
            await channel.declare_queue(
                self.spec.name,
                durable=True,
                arguments={
                    "x-queue-type": "quorum",
                    "x-delivery-limit": self.spec.delivery_limit,
                    "x-dead-letter-exchange": self.spec.dead_letter_exchange,
                    "x-dead-letter-routing-key": self.spec.dead_letter_name,
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                },
            )
        finally:
            await channel.close()

    async def _channel(self) -> aio_pika.abc.AbstractChannel:
        if self._publish_channel is None or self._publish_channel.is_closed:
            self._publish_channel = await self.connection.channel(publisher_confirms=True)
        return self._publish_channel

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        if not messages:
            return
        async with self._publish_lock:
            channel = cast(aiormq.Channel, await (await self._channel()).get_underlay_channel())
        # Straight to aiormq: aio-pika's Message and Exchange wrappers cost as much again per
        # message as the frames themselves. Every publish returns a confirmation; awaiting them
        # together pipelines the confirms.
        results = await asyncio.gather(
            *(
                channel.basic_publish(
                    m.body,
                    routing_key=self.spec.name,
                    properties=aiormq.spec.Basic.Properties(delivery_mode=2, headers=_field_table(m.headers)),
                    # The confirmation is what counts; waiting for each frame to reach the socket
                    # first only adds a round of the event loop per message.
                    wait=False,
                )
                for m in messages
            ),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
            if isinstance(result, aiormq.spec.Basic.Nack):
                raise ConnectionError("broker refused a message (nack)")

    async def _consume(self, queue_name: str, handler: Handler, prefetch: int) -> Consumer:
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        # A passive declare registers the queue with the robust channel, so the consumer is
        # restored after a reconnect (get_queue(ensure=False) would silently lose it).
        queue = await channel.declare_queue(queue_name, passive=True)

        async def on_message(message: AbstractIncomingMessage) -> None:
            await handler(_RabbitDelivery(message))

        tag = await queue.consume(on_message, no_ack=False)
        return _RabbitConsumer(channel, queue, tag)

    async def consume(self, handler: Handler, prefetch: int) -> Consumer:
        return await self._consume(self.spec.name, handler, prefetch)

    async def consume_dead_letters(self, handler: Handler) -> Consumer:
        return await self._consume(self.spec.dead_letter_name, handler, 16)

    async def depth(self) -> int:
        channel = await self.connection.channel()
        try:
            queue = await channel.declare_queue(self.spec.name, passive=True)
            return int(queue.declaration_result.message_count or 0)
        finally:
            await channel.close()

    async def delete(self) -> None:
        """Remove the queues and exchange (tests use throwaway names)."""
        channel = await self.connection.channel()
        try:
            await channel.queue_delete(self.spec.name)
            await channel.queue_delete(self.spec.dead_letter_name)
            await channel.exchange_delete(self.spec.dead_letter_exchange)
        finally:
            await channel.close()

    async def close(self) -> None:
        # Bounded like the consumers': a robust connection that reconnected can hang on close.
        if self._publish_channel is not None and not self._publish_channel.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._publish_channel.close(), 1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connection.close(), 3)


# ------------------------------------------------------------------------------------ in-process


@dataclass
class _Message:
    body: bytes
    headers: dict[str, Any]
    delivery_count: int = 0


class _InProcessDelivery:
    def __init__(self, queue: InProcessQueue, consumer: _InProcessConsumer, message: _Message) -> None:
        self._queue, self._consumer, self._message = queue, consumer, message
        self.body = message.body
        self.headers = dict(message.headers)
        self.delivery_count = message.delivery_count
        self._settled = False

    def _settle(self) -> bool:
        if self._settled:
            return False
        self._settled = True
        self._consumer.unacked.discard(self)
        self._consumer.slots.release()
        return True

    async def ack(self) -> None:
        self._settle()

    async def reject(self, requeue: bool) -> None:
        if self._settle():
            self._queue._return(self._message, self._consumer.source, requeue=requeue)


class _InProcessConsumer:
    def __init__(self, queue: InProcessQueue, source: deque[_Message], handler: Handler, prefetch: int) -> None:
        self.queue, self.source, self.handler = queue, source, handler
        self.slots = asyncio.Semaphore(prefetch)
        self.unacked: set[_InProcessDelivery] = set()
        self.task = asyncio.create_task(self._run(), name=f"consumer-{queue.spec.name}")
        self.handlers: set[asyncio.Task[None]] = set()

    async def _run(self) -> None:
        while True:
            await self.slots.acquire()
            message = await self.queue._take(self.source)
            delivery = _InProcessDelivery(self.queue, self, message)
            self.unacked.add(delivery)
            task = asyncio.create_task(self._handle(delivery))
            self.handlers.add(task)
            task.add_done_callback(self.handlers.discard)

    async def _handle(self, delivery: _InProcessDelivery) -> None:
        try:
            await self.handler(delivery)
        except Exception:
            log.exception("queue handler failed; message requeued")
            await delivery.reject(requeue=True)

    async def stop_receiving(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def cancel(self) -> None:
        await self.stop_receiving()
        for task in list(self.handlers):
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        # Like a closed AMQP channel: whatever was not acked is delivered again.
        for delivery in list(self.unacked):
            await delivery.reject(requeue=True)


class InProcessQueue:
    """RabbitMQ's contract in memory, for embedded mode and for tests of the consumers."""

    def __init__(self, spec: QueueSpec) -> None:
        self.spec = spec
        self._ready: deque[_Message] = deque()
        self._dead: deque[_Message] = deque()
        self._available = asyncio.Condition()
        self._consumers: list[_InProcessConsumer] = []

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        for m in messages:
            self._ready.append(_Message(m.body, dict(m.headers)))
        await self._notify()

    async def _notify(self) -> None:
        async with self._available:
            self._available.notify_all()

    async def _take(self, source: deque[_Message]) -> _Message:
        async with self._available:
            await self._available.wait_for(lambda: bool(source))
            return source.popleft()

    def _return(self, message: _Message, source: deque[_Message], *, requeue: bool) -> None:
        message.delivery_count += 1
        if source is self._dead:
            # Dead letters are not dead-lettered again: requeued or dropped.
            if requeue:
                self._dead.appendleft(message)
        elif requeue and message.delivery_count <= self.spec.delivery_limit:
            self._ready.appendleft(message)
        else:
            self._dead.append(message)
        asyncio.get_running_loop().create_task(self._notify())

    async def consume(self, handler: Handler, prefetch: int) -> Consumer:
        consumer = _InProcessConsumer(self, self._ready, handler, prefetch)
        self._consumers.append(consumer)
        return consumer

    async def consume_dead_letters(self, handler: Handler) -> Consumer:
        consumer = _InProcessConsumer(self, self._dead, handler, 16)
        self._consumers.append(consumer)
        return consumer

    async def depth(self) -> int:
        return len(self._ready)

    async def close(self) -> None:
        for consumer in self._consumers:
            await consumer.cancel()
        self._consumers.clear()

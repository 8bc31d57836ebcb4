"""The queue contract, run against RabbitMQ and the in-process queue alike."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from libs.amqp import Delivery, InProcessQueue, OutgoingMessage, QueueSpec, RabbitQueue, TaskQueue


@pytest.fixture(params=["inprocess", "rabbitmq"])
async def queue(request: pytest.FixtureRequest) -> AsyncIterator[TaskQueue]:
    if request.param == "inprocess":
        q: TaskQueue = InProcessQueue(QueueSpec(name="test", delivery_limit=3))
        try:
            yield q
        finally:
            await q.close()
        return
    spec = QueueSpec(name=f"quaero.test.{uuid.uuid4().hex[:12]}", delivery_limit=3)
    rabbit = await RabbitQueue.connect(request.getfixturevalue("amqp_url"), spec)
    try:
        yield rabbit
    finally:
        await rabbit.delete()
        await rabbit.close()


async def collect(queue: TaskQueue, n: int, handle, *, dead: bool = False, timeout: float = 20) -> list[Delivery]:  # type: ignore[no-untyped-def]
    got: list[Delivery] = []
    done = asyncio.Event()

    async def handler(delivery: Delivery) -> None:
        got.append(delivery)
        await handle(delivery)
        if len(got) >= n:
            done.set()

    consumer = await (queue.consume_dead_letters(handler) if dead else queue.consume(handler, prefetch=10))
    try:
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        await consumer.cancel()
    return got


async def test_published_messages_arrive_with_headers(queue: TaskQueue) -> None:
    await queue.publish([OutgoingMessage(f"m{i}".encode(), {"x-request-id": f"r{i}"}) for i in range(5)])

    async def ack(d: Delivery) -> None:
        await d.ack()

    got = await collect(queue, 5, ack)
    assert sorted(d.body for d in got) == [f"m{i}".encode() for i in range(5)]
    assert {d.headers["x-request-id"] for d in got} == {f"r{i}" for i in range(5)}
    assert all(d.delivery_count == 0 for d in got)


async def test_requeued_messages_count_deliveries(queue: TaskQueue) -> None:
    await queue.publish([OutgoingMessage(b"again")])

    async def reject_first(d: Delivery) -> None:
        await (d.reject(requeue=True) if d.delivery_count == 0 else d.ack())

    got = await collect(queue, 2, reject_first)
    assert [d.delivery_count for d in got] == [0, 1]


async def test_past_the_delivery_limit_a_message_is_dead_lettered(queue: TaskQueue) -> None:
    await queue.publish([OutgoingMessage(b"poison")])

    async def always_reject(d: Delivery) -> None:
        await d.reject(requeue=True)

    await collect(queue, queue.spec.delivery_limit + 1, always_reject)

    async def ack(d: Delivery) -> None:
        await d.ack()

    [dead] = await collect(queue, 1, ack, dead=True)
    assert dead.body == b"poison"


async def test_rejected_without_requeue_goes_straight_to_dead_letters(queue: TaskQueue) -> None:
    await queue.publish([OutgoingMessage(b"bad")])

    async def drop(d: Delivery) -> None:
        await d.reject(requeue=False)

    await collect(queue, 1, drop)

    async def ack(d: Delivery) -> None:
        await d.ack()

    [dead] = await collect(queue, 1, ack, dead=True)
    assert dead.body == b"bad"


async def test_unacked_messages_come_back_when_their_consumer_goes(queue: TaskQueue) -> None:
    await queue.publish([OutgoingMessage(b"held")])

    async def hold(_d: Delivery) -> None:
        return None  # neither ack nor reject

    await collect(queue, 1, hold)  # cancels the consumer on the way out

    async def ack(d: Delivery) -> None:
        await d.ack()

    [again] = await collect(queue, 1, ack)
    assert again.body == b"held"
    assert again.delivery_count >= 1


async def test_a_consumer_survives_a_dropped_broker_connection(amqp_url: str) -> None:
    from urllib.parse import urlsplit

    from tests.support.crawl_workers import TcpProxy

    broker = urlsplit(amqp_url)
    proxy = TcpProxy(broker.hostname or "127.0.0.1", broker.port or 5672)
    await proxy.start()
    spec = QueueSpec(name=f"quaero.test.{uuid.uuid4().hex[:12]}", delivery_limit=3)
    queue = await RabbitQueue.connect(amqp_url.replace(broker.netloc.split("@")[-1], f"127.0.0.1:{proxy.port}"), spec)
    got: list[bytes] = []
    arrived = asyncio.Event()

    async def handler(d: Delivery) -> None:
        got.append(d.body)
        await d.ack()
        arrived.set()

    consumer = await queue.consume(handler, prefetch=10)
    try:
        proxy.cut()
        for _ in range(100):  # the publisher reconnects on its own
            try:
                await queue.publish([OutgoingMessage(b"after the cut")])
                break
            except Exception:
                await asyncio.sleep(0.1)
        await asyncio.wait_for(arrived.wait(), 20)

        assert got == [b"after the cut"]
    finally:
        await consumer.cancel()
        await queue.delete()
        await queue.close()
        await proxy.close()


async def test_a_consumer_that_stopped_receiving_still_settles_what_it_holds(queue: TaskQueue) -> None:
    await queue.publish([OutgoingMessage(b"held")])
    held: asyncio.Queue[Delivery] = asyncio.Queue()

    async def hold(d: Delivery) -> None:
        held.put_nowait(d)

    consumer = await queue.consume(hold, prefetch=10)
    delivery = await asyncio.wait_for(held.get(), 20)
    await consumer.stop_receiving()
    await queue.publish([OutgoingMessage(b"after")])
    await delivery.ack()
    waiting = await queue.depth()
    await consumer.cancel()

    assert delivery.body == b"held"
    assert held.empty()  # "after" went nowhere
    assert waiting == 1
    assert await queue.depth() == 1  # "held" was acked: only "after" is left

"""serve_metrics: the /metrics endpoint of a service running as its own process."""

from __future__ import annotations

import asyncio

import httpx

from libs import metrics


async def test_serve_metrics_answers_prometheus_text_on_port_0() -> None:
    metrics.set_queue_depth("quaero.test.depth", 7)
    server = metrics.serve_metrics(0)
    try:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        server.close()

    assert response.status_code == 200
    assert 'quaero_queue_depth{queue="quaero.test.depth"} 7.0' in response.text
    assert "quaero_grpc_requests_total" in response.text


async def test_sample_queue_depth_records_until_stopped() -> None:
    stop = asyncio.Event()
    depths = iter([3, 5])

    async def depth() -> int:
        value = next(depths)
        if value == 5:
            stop.set()
        return value

    await metrics.sample_queue_depth("quaero.test.sampled", depth, stop, interval=0.01)

    assert metrics.QUEUE_DEPTH.labels("quaero.test.sampled")._value.get() == 5

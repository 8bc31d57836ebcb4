"""Helpers for tests that execute job definitions through the REST API and the executor's gRPC."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from quaero.v1 import executor_service_pb2 as ex
from tests.support.services import Stack

TERMINAL = {"completed", "failed", "cancelled"}


async def define(stack: Stack, body: dict[str, Any]) -> dict[str, Any]:
    body = {"type": "crawler", "name": body.get("id", "x").title(), **body}
    response = await stack.http.post("/api/job-definitions", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def add_source(stack: Stack, source_id: str, base_url: str, **extra: Any) -> dict[str, Any]:
    response = await stack.http.post(
        "/api/sources", json={"id": source_id, "name": source_id, "base_url": base_url, **extra}
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def execute(stack: Stack, definition_id: str, key: str | None = None) -> dict[str, Any]:
    headers = {"Idempotency-Key": key} if key else {}
    response = await stack.http.post(f"/api/job-definitions/{definition_id}/execute", headers=headers)
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


async def get_execution(stack: Stack, execution_id: str) -> dict[str, Any]:
    response = await stack.http.get(f"/api/executions/{execution_id}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def wait_for(
    stack: Stack, execution_id: str, statuses: set[str] = TERMINAL, timeout: float = 60
) -> dict[str, Any]:
    """Poll until the execution reaches one of `statuses` (a bound for hangs, not a speed check)."""
    deadline = time.monotonic() + timeout
    while True:
        execution = await get_execution(stack, execution_id)
        if execution["status"] in statuses:
            return execution
        if time.monotonic() > deadline:
            raise AssertionError(f"execution still {execution['status']} after {timeout}s: {execution}")
        await asyncio.sleep(0.05)


async def wait_until(predicate, timeout: float = 30, interval: float = 0.05) -> Any:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def events(stack: Stack, execution_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every event of a finished execution, in order, as (type, payload)."""
    from libs.proto_json import struct_to_dict

    out = []
    async for message in stack.executor.WatchExecution(ex.WatchExecutionRequest(id=execution_id, replay=True)):
        out.append((message.event.type, struct_to_dict(message.event.payload)))
    return out


async def jobs(stack: Stack, **params: Any) -> list[dict[str, Any]]:
    response = await stack.http.get("/api/jobs", params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    return response.json()["jobs"]  # type: ignore[no-any-return]


async def children(stack: Stack, parent_id: str) -> list[dict[str, Any]]:
    response = await stack.http.get("/api/executions", params={"parent_execution_id": parent_id, "order_dir": "asc"})
    return response.json()["executions"]  # type: ignore[no-any-return]

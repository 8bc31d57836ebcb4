"""The CLI's Server-Sent Events framing."""

from __future__ import annotations

from collections.abc import AsyncIterator

from cli.client import Event, _parse


async def lines(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


async def parse(*items: str) -> list[Event]:
    return [event async for event in _parse(lines(*items))]


async def test_frames_become_events_with_ids_types_and_json() -> None:
    events = await parse(
        "retry: 2000",
        "",
        "id: 7",
        "event: snapshot",
        'data: {"a": 1}',
        "",
        ": keep-alive",
        "",
        "event: end",
        "data: {}",
        "",
    )

    assert events == [Event(7, "snapshot", {"a": 1}), Event(None, "end", {})]


async def test_data_lines_are_joined() -> None:
    events = await parse("id: 3", "event: progress", 'data: {"a":', "data: 2}", "")

    assert events == [Event(3, "progress", {"a": 2})]

"""The CLI's client of the REST API: one error line for every failure, and resumable SSE streams."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from cli.errors import FAILURE, USAGE, CliError

DEFAULT_URL = "http://127.0.0.1:8080"
T = TypeVar("T")

# A stream is re-opened after a dropped connection this many times in a row before giving up.
_STREAM_RETRIES = 5


def segment(value: str) -> str:
    """An id as one path segment (spaces and the like escaped). No id holds a slash, and a
    server decodes `%2F` before routing, so one is refused here rather than reach another route."""
    if "/" in value:
        raise CliError(f"ID {value!r}: ids never contain '/'", USAGE)
    return quote(value, safe="")


@dataclass(frozen=True)
class Target:
    """Where the gateway is (QUAERO_URL) and the token it wants (QUAERO_API_TOKEN)."""

    url: str = DEFAULT_URL
    token: str | None = None


@dataclass
class Event:
    """One Server-Sent Event; `id` is None for frames without one (`end`, `error`)."""

    id: int | None
    type: str
    data: dict[str, Any]


class Api:
    def __init__(self, target: Target, *, timeout: float = 30.0) -> None:
        self.base_url = target.url.rstrip("/")
        headers = {"User-Agent": "quaero-cli"}
        if target.token:
            headers["Authorization"] = f"Bearer {target.token}"
        self._client = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout)

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._client.aclose()

    def _unreachable(self) -> CliError:
        return CliError(f"cannot reach Quaero at {self.base_url} (is it running? start it with `make run`)")

    def _error(self, response: httpx.Response) -> CliError:
        try:
            error = response.json()["error"]
            message = str(error["message"])
        except (ValueError, KeyError, TypeError):
            return CliError(f"{self.base_url} answered HTTP {response.status_code}; is QUAERO_URL a Quaero gateway?")
        if response.status_code == 401:
            message = f"{message} (set QUAERO_API_TOKEN to the gateway's token)"
        exit_code = USAGE if response.status_code in (400, 413, 415) else FAILURE
        return CliError(message, exit_code, status=response.status_code)

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON body of a 2xx answer (None for 204); any other answer raises CliError."""
        try:
            response = await self._client.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise self._unreachable() from exc
        except httpx.TransportError as exc:
            raise CliError(f"lost the connection to Quaero at {self.base_url}: {exc or type(exc).__name__}") from exc
        if response.status_code >= 400:
            raise self._error(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    async def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return await self.request("POST", path, json=body, params={k: v for k, v in params.items() if v is not None})

    async def put(self, path: str, body: Any) -> Any:
        return await self.request("PUT", path, json=body)

    async def delete(self, path: str) -> Any:
        return await self.request("DELETE", path)

    async def upsert(self, collection: str, item_id: str, body: dict[str, Any]) -> str:
        """Replace `item_id` in `collection` (`job-definitions`, `sources`), or create it when
        there is none; returns "created" or "updated"."""
        try:
            await self.put(f"/api/{collection}/{segment(item_id)}", body)
            return "updated"
        except CliError as exc:
            if exc.status != 404:
                raise
        await self.post(f"/api/{collection}", body)
        return "created"

    async def text(self, path: str, write: Callable[[str], Any]) -> None:
        """A text answer written out as it arrives (any size); an error answer raises CliError."""
        try:
            async with self._client.stream("GET", path, timeout=httpx.Timeout(30.0, read=300.0)) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._error(response)
                async for piece in response.aiter_text():
                    write(piece)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise self._unreachable() from exc
        except httpx.TransportError as exc:
            raise CliError(f"lost the connection to Quaero at {self.base_url}: {exc or type(exc).__name__}") from exc

    async def pages(self, path: str, plural: str, *, limit: int | None = None, **params: Any) -> list[Any]:
        """Every item of a list route (or the first `limit`), fetching 500 at a time."""
        items: list[Any] = []
        while limit is None or len(items) < limit:
            size = 500 if limit is None else min(500, limit - len(items))
            page = await self.get(path, limit=size, offset=len(items), **params)
            items.extend(page[plural])
            if not page[plural] or len(items) >= page["total_count"]:
                break
        return items

    async def events(self, path: str, *, after: int = 0) -> AsyncIterator[Event]:
        """The events of an SSE route, re-opening the stream with Last-Event-ID whenever it closes
        (nothing is lost or repeated) until the gateway answers 204: the resource has finished
        and nothing follows. Callers usually stop earlier, at the terminal event."""
        last, failures = after, 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last:
                headers["Last-Event-ID"] = str(last)
            received = False
            try:
                async with self._client.stream(
                    "GET", path, headers=headers, timeout=httpx.Timeout(10.0, read=60.0)
                ) as response:
                    if response.status_code == 204:
                        return
                    if response.status_code >= 400:
                        await response.aread()
                        raise self._error(response)
                    async for event in _parse(response.aiter_lines()):
                        if event.type == "error":
                            break  # the service side failed: re-open after the last event
                        received, failures = True, 0
                        if event.id is not None:
                            last = event.id
                        yield event
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if failures >= _STREAM_RETRIES:
                    raise self._unreachable() from exc
            except httpx.TransportError:
                pass  # re-open below
            if received:
                continue  # a clean close after events: re-open at once
            failures += 1
            if failures > _STREAM_RETRIES:
                raise CliError(f"lost the event stream {path} from {self.base_url}")
            await asyncio.sleep(min(0.25 * 2**failures, 4.0))


async def _parse(lines: AsyncIterator[str]) -> AsyncIterator[Event]:
    """SSE framing: `field: value` lines, a blank line ends an event, `:` lines are comments."""
    event_id: int | None = None
    event_type, data = "message", list[str]()
    async for line in lines:
        if not line:
            if data:
                yield Event(event_id, event_type, json.loads("\n".join(data)))
            event_id, event_type, data = None, "message", list[str]()
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id" and value.isdigit():
            event_id = int(value)
        elif name == "event":
            event_type = value
        elif name == "data":
            data.append(value)


def call(target: Target, work: Callable[[Api], Awaitable[T]]) -> T:
    """Run `work` with a client for `target` and close it afterwards."""

    async def run() -> T:
        async with Api(target) as api:
            return await work(api)

    return asyncio.run(run())

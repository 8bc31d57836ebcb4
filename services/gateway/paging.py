"""List parameters shared by every list route (`limit`, `offset`, `order_dir`) and the list body."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal, Protocol

from fastapi import Query

# The services take 32-bit offsets (and nobody pages two billion items deep).
MAX_OFFSET = 2**31 - 1

Limit = Annotated[int, Query(ge=1, le=500, description="Items per page (at most 500).")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip.")]
OrderDir = Annotated[Literal["asc", "desc"], Query(description="Sort direction.")]


class _Page(Protocol):
    total_count: int
    limit: int
    offset: int


def page_body(plural: str, items: Iterable[dict[str, Any]], response: _Page) -> dict[str, Any]:
    """`{<plural>: [...], total_count, limit, offset}` from a gRPC list response."""
    return {
        plural: list(items),
        "total_count": response.total_count,
        "limit": response.limit,
        "offset": response.offset,
    }

"""Path and query parameters every route shares: ids, filters by id and free text (DESIGN 11).

Each is refused with a 400 naming it before a service is asked: over 255 characters for an id,
a NUL character or a lone surrogate in any of them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from libs.bounds import MAX_ID_LENGTH, text_problem


def _storable(value: str | None) -> str | None:
    problem = text_problem(value) if value is not None else None
    if problem:
        raise PydanticCustomError("text", problem)
    return value


Storable = AfterValidator(_storable)


def id_query(description: str | None = None) -> Any:
    """A query parameter filtering by an id."""
    return Query(max_length=MAX_ID_LENGTH, description=description)


PathId = Annotated[str, Path(max_length=MAX_ID_LENGTH), Storable]
IdFilter = Annotated[str | None, id_query(), Storable]

"""Input bounds every way in shares (DESIGN 11): ids, search queries, text, nesting and numbers.

JSON, TOML and `google.protobuf.Struct` data pass `json_problems` before anything else reads them:
what it reports could not be stored (NUL on PostgreSQL), serialized (lone surrogates, numbers a
double cannot hold, protobuf's nesting limit) or compared (NaN) further in.
"""

from __future__ import annotations

import math
import re
from typing import Any

from libs.errors import FieldViolation, InvalidArgument

MAX_ID_LENGTH = 255
MAX_QUERY_LENGTH = 500
# Levels of objects and lists in one document, the document itself included: well inside
# protobuf's decoding limit (100 messages) for a Struct inside a step inside a request.
MAX_DEPTH = 32
# The walk stops after this many problems: enough to fix a document, never an answer larger than it.
MAX_PROBLEMS = 20

_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as text, or None."""
    if "\x00" in value:
        return "must not contain NUL characters"
    if _SURROGATE.search(value):
        return "must be valid Unicode (it holds a lone surrogate)"
    return None


def id_problem(value: str) -> str | None:
    """Why `value` cannot name anything (ids, and filters by id), or None. Never echoes it."""
    if len(value) > MAX_ID_LENGTH:
        return f"must be at most {MAX_ID_LENGTH} characters"
    return text_problem(value)


def query_problem(value: str) -> str | None:
    """Why `value` cannot be a full-text search query, or None."""
    if len(value) > MAX_QUERY_LENGTH:
        return f"must be at most {MAX_QUERY_LENGTH} characters"
    return text_problem(value)


def _number_problem(value: int | float) -> str | None:
    try:
        as_float = float(value)
    except OverflowError:
        return "is too large a number"
    if not math.isfinite(as_float):
        return "must be a finite number (NaN and infinities are not JSON)"
    return None


def json_problems(value: Any) -> list[FieldViolation]:
    """Problems of JSON-like data anywhere in it, each at its field path (`body` for the whole
    document): nesting deeper than MAX_DEPTH, NaN, infinities and numbers too large for a double,
    NUL characters and lone surrogates in strings and keys. Other types (TOML dates) pass."""
    problems: list[FieldViolation] = []

    def walk(item: Any, where: str, level: int) -> None:
        if len(problems) >= MAX_PROBLEMS:
            return
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                problems.append(FieldViolation(where or "body", problem))
        elif isinstance(item, bool):
            return
        elif isinstance(item, int | float):
            problem = _number_problem(item)
            if problem:
                problems.append(FieldViolation(where or "body", problem))
        elif isinstance(item, dict | list):
            if level >= MAX_DEPTH:
                problems.append(FieldViolation(where or "body", f"is nested deeper than {MAX_DEPTH} levels"))
                return
            if isinstance(item, list):
                for i, child in enumerate(item):
                    walk(child, f"{where}[{i}]", level + 1)
                return
            for key, child in item.items():
                problem = text_problem(key) if isinstance(key, str) else None
                if problem:
                    # The key stays out of the path: it could not be written in an answer either.
                    problems.append(FieldViolation(where or "body", f"has a key that {problem}"))
                    continue
                walk(child, f"{where}.{key}" if where else str(key), level + 1)

    walk(value, "", 0)
    return problems


def check_ids(request: Any, *fields: str) -> None:
    """InvalidArgument naming each of the request's `fields` (string fields holding ids, or
    filters by id) that cannot be an id; checked before a store is asked, which would echo it."""
    violations = [FieldViolation(f, problem) for f in fields if (problem := id_problem(getattr(request, f)))]
    if violations:
        raise InvalidArgument(violations=violations)

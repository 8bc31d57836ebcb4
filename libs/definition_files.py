"""Job definition and source files: TOML in the original Quaero shape, or JSON with the same fields.

A document is a job definition unless it says `kind = "source"`. TOML files hold one document;
a JSON file holds one object or a list of them.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from libs.bounds import MAX_DEPTH, json_problems
from libs.errors import FieldViolation, InvalidArgument

Kind = Literal["job_definition", "source"]
FILE_SUFFIXES = (".toml", ".json")


@dataclass
class Document:
    kind: Kind
    data: dict[str, Any]
    origin: str


def loads(text: str, fmt: Literal["toml", "json"]) -> Any:
    """Parse TOML or JSON text into plain data. Syntax errors (naming the line) and everything
    libs.bounds.json_problems finds (nesting deeper than 32 levels, NaN and infinities, NUL and
    lone surrogates) are InvalidArgument, each problem at its field path."""
    name = fmt.upper()
    try:
        raw: Any = tomllib.loads(text) if fmt == "toml" else json.loads(text)
    except RecursionError as exc:  # both parsers recurse into nested arrays and tables
        raise InvalidArgument.field("body", f"is nested deeper than {MAX_DEPTH} levels") from exc
    except ValueError as exc:  # their syntax errors, and integers of more than 4300 digits
        raise InvalidArgument.field("body", f"invalid {name}: {exc}") from exc
    problems = json_problems(raw)
    if problems:
        raise InvalidArgument(violations=problems)
    return raw


def parse_text(text: str, fmt: Literal["toml", "json"], origin: str = "<request>") -> list[Document]:
    """Parse one file's text (see `loads`) into its documents."""
    raw = loads(text, fmt)
    items = raw if isinstance(raw, list) else [raw]
    docs = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            where = f"[{i}]" if isinstance(raw, list) else "body"
            raise InvalidArgument(violations=[FieldViolation(where, "must be an object")])
        docs.append(_document(dict(item), origin))
    return docs


def _document(data: dict[str, Any], origin: str) -> Document:
    kind = data.pop("kind", "job_definition")
    if kind in ("source", "sources"):
        return Document("source", normalize_source(data), origin)
    if kind in ("job_definition", "job", "definition"):
        return Document("job_definition", data, origin)
    raise InvalidArgument(violations=[FieldViolation("kind", 'must be "source" or "job_definition"')])


def normalize_source(data: dict[str, Any]) -> dict[str, Any]:
    """Accept the Go system's spellings: `crawl_config` for `crawl`, comma-separated filter strings."""
    if "crawl_config" in data and "crawl" not in data:
        data["crawl"] = data.pop("crawl_config")
    filters = data.get("filters")
    if isinstance(filters, dict):
        for key in ("include_patterns", "exclude_patterns"):
            if isinstance(filters.get(key), str):
                filters[key] = [part.strip() for part in filters[key].split(",") if part.strip()]
    return data


def iter_files(root: Path) -> Iterator[Path]:
    """Definition files under `root`, in a stable order."""
    if root.is_file():
        yield root
        return
    yield from sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in FILE_SUFFIXES)


def read_file(path: Path) -> list[Document]:
    fmt: Literal["toml", "json"] = "toml" if path.suffix == ".toml" else "json"
    return parse_text(path.read_text(encoding="utf-8"), fmt, origin=str(path))

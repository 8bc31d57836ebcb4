"""`quaero apply -f FILE|DIR`: create or update the job definitions and sources in files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from cli import output
from cli.client import Api, call
from cli.errors import USAGE, CliError

if TYPE_CHECKING:
    from libs.definition_files import Document

_COLLECTION = {"source": "sources", "job_definition": "job-definitions"}
_NOUN = {"source": "source", "job_definition": "job definition"}


def _read(paths: list[Path]) -> list[Document]:
    """Every document in the files (folders are read recursively); a bad file stops it all
    before anything is sent, so nothing is applied half-way."""
    from libs.definition_files import iter_files, read_file
    from libs.errors import InvalidArgument

    docs: list[Document] = []
    for root in paths:
        if not root.exists():
            raise CliError(f"{root}: no such file or directory", USAGE)
        files = list(iter_files(root))
        if not files:
            raise CliError(f"{root}: no .toml or .json files", USAGE)
        for path in files:
            try:
                docs.extend(read_file(path))
            except InvalidArgument as exc:
                raise CliError(f"{path}: {exc.message}", USAGE) from exc
            except (OSError, UnicodeDecodeError) as exc:
                raise CliError(f"{path}: cannot read it: {exc}", USAGE) from exc
    return docs


def _plain(data: dict[str, Any]) -> Any:
    # TOML has dates and times; the API takes JSON, where they are strings.
    return json.loads(json.dumps(data, default=str))


async def _apply(api: Api, docs: list[Document]) -> list[tuple[Document, str]]:
    """Sources first (definitions name them); returns each document with what happened to it."""
    results: list[tuple[Document, str]] = []
    for doc in sorted(docs, key=lambda d: d.kind != "source"):
        body = _plain(doc.data)
        item_id = str(body.get("id") or "").strip()
        try:
            if item_id:
                outcome = await api.upsert(_COLLECTION[doc.kind], item_id, body)
            else:
                created = await api.post(f"/api/{_COLLECTION[doc.kind]}", body)
                item_id, outcome = created["id"], "created"
        except CliError as exc:
            if exc.status is None:
                raise  # unreachable: nothing else will work either
            results.append((doc, f"error: {exc.message}"))
            continue
        results.append((doc, f"{outcome} {_NOUN[doc.kind]} {item_id}"))
    return results


def apply(
    ctx: typer.Context,
    files: Annotated[
        list[Path],
        typer.Option("--file", "-f", help="A TOML or JSON file, or a folder of them (repeatable)."),
    ],
) -> None:
    """Create or update job definitions and sources from TOML or JSON files."""
    docs = _read(files)
    results = call(ctx.obj, lambda api: _apply(api, docs))
    console, errors = output.stdout(), output.stderr()
    failed = 0
    for doc, outcome in results:
        # One line per document: what was done, or why it was refused.
        if outcome.startswith("error: "):
            failed += 1
            errors.print(Text(f"quaero: {doc.origin}: {outcome.removeprefix('error: ')}"))
        else:
            console.print(Text(f"{outcome} ({doc.origin})"))
    if failed:
        raise typer.Exit(USAGE)

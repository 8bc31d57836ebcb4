"""`quaero docs …`: list, search, show and export documents (Markdown files or JSON lines)."""

from __future__ import annotations

import json
import re
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.text import Text

from cli import output
from cli.client import Api, call, segment
from cli.errors import USAGE, CliError

app = typer.Typer(help="Documents: the crawled pages as Markdown, searchable.", no_args_is_help=True)

JobOption = Annotated[str | None, typer.Option("--job", "-j", help="Only documents this crawl job fetched.")]
SourceOption = Annotated[str | None, typer.Option("--source", help="Only documents of this source id.")]
# The crawler marks matches in a snippet with ** on both sides.
_MATCH_MARK = "**"


@app.command("list")
def list_docs(
    ctx: typer.Context,
    job: JobOption = None,
    source: SourceOption = None,
    limit: output.LimitOption = 20,
    as_json: output.JsonFlag = False,
) -> None:
    """List documents, newest first."""
    page = call(ctx.obj, lambda api: api.get("/api/documents", job_id=job, source_id=source, limit=limit))
    if as_json:
        output.print_json(page)
        return
    output.table(
        ["ID", "TITLE", "URL", "UPDATED"],
        ([d["id"], d["title"], d["url"], output.when(d["updated_at"])] for d in page["documents"]),
        empty="no documents yet: try `quaero crawl https://…`",
    )
    output.footer(len(page["documents"]), page["total_count"], "documents")


@app.command("search")
def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="Words to find in titles and content.")],
    job: JobOption = None,
    source: SourceOption = None,
    limit: output.LimitOption = 10,
    as_json: output.JsonFlag = False,
) -> None:
    """Full-text search: best matches first, each with the passage that matched."""
    if not query.strip():
        raise CliError("QUERY: must not be empty", USAGE)
    page = call(ctx.obj, lambda api: api.get("/api/documents", q=query, job_id=job, source_id=source, limit=limit))
    if as_json:
        output.print_json(page)
        return
    console = output.stdout()
    if not page["documents"]:
        output.stderr().print(f"[dim]no documents match {query!r}[/dim]")
        return
    for d in page["documents"]:
        console.print(Text(d["title"] or d["url"], style="bold"))
        console.print(Text(f"{d['url']}  ·  {d['id']}", style="dim"))
        if d.get("heading_path"):
            console.print(Text(" › ".join(d["heading_path"]), style="cyan"))  # the best-matching section
        if d.get("snippet"):
            console.print(snippet(d["snippet"]))
        console.print()
    output.footer(len(page["documents"]), page["total_count"], "matches")


def snippet(text: str) -> Text:
    """The passage on one line, its matches in bold."""
    out = Text()
    for i, part in enumerate(" ".join(text.split()).split(_MATCH_MARK)):
        out.append(part, style="bold yellow" if i % 2 else "")
    return out


@app.command("show")
def show(
    ctx: typer.Context,
    document_id: Annotated[str, typer.Argument(metavar="ID", help="The document's id.")],
    as_json: output.JsonFlag = False,
) -> None:
    """Print a document's Markdown (with --json: every field)."""
    doc = call(ctx.obj, lambda api: api.get(f"/api/documents/{segment(document_id)}"))
    if as_json:
        output.print_json(doc)
        return
    output.stderr().print(Text(f"{doc['title']}\n{doc['url']}\n", style="dim"))
    sys.stdout.write(doc["markdown"].rstrip("\n") + "\n")


@app.command("versions")
def versions(
    ctx: typer.Context,
    document_id: Annotated[str, typer.Argument(metavar="ID", help="The document's id.")],
    limit: output.LimitOption = 20,
    as_json: output.JsonFlag = False,
) -> None:
    """A document's versions, newest first: the current one and those kept before it."""
    page = call(ctx.obj, lambda api: api.get(f"/api/documents/{segment(document_id)}/versions", limit=limit))
    if as_json:
        output.print_json(page)
        return
    output.table(
        ["VERSION", "FETCHED", "CONTENT HASH", "TITLE"],
        ([str(v["version"]), output.when(v["fetched_at"]), v["content_hash"], v["title"]] for v in page["versions"]),
        empty="no versions",
    )
    output.footer(len(page["versions"]), page["total_count"], "versions")


@app.command("diff")
def diff(
    ctx: typer.Context,
    document_id: Annotated[str, typer.Argument(metavar="ID", help="The document's id.")],
    from_version: Annotated[
        int | None, typer.Option("--from", min=1, help="The older version (default: the one before --to).")
    ] = None,
    to_version: Annotated[
        int | None, typer.Option("--to", min=1, help="The newer version (default: the current one).")
    ] = None,
    as_json: output.JsonFlag = False,
) -> None:
    """A unified diff of two versions' Markdown (nothing when they are equal)."""
    body = call(
        ctx.obj,
        lambda api: api.get(f"/api/documents/{segment(document_id)}/diff", **{"from": from_version, "to": to_version}),
    )
    if as_json:
        output.print_json(body)
        return
    if not body["diff"]:
        output.stderr().print(f"[dim]versions {body['from_version']} and {body['to_version']} are the same[/dim]")
        return
    sys.stdout.write(body["diff"])


class ExportFormat(StrEnum):
    markdown = "md"
    jsonl = "jsonl"
    llms_txt = "llms-txt"
    llms_full = "llms-full"


# The gateway route of each llms.txt format.
_LLMS_ROUTES = {ExportFormat.llms_txt: "llms.txt", ExportFormat.llms_full: "llms-full.txt"}


def _slug(doc: dict[str, Any]) -> str:
    """A file name made only of [a-z0-9-], whatever the server sent: the export never writes
    outside its directory. The id is whole (its letters and digits), so documents of one URL
    (from two sources, or two jobs) get names of their own."""
    base = re.sub(r"[^A-Za-z0-9]+", "-", re.sub(r"^https?://", "", str(doc.get("url") or ""))).strip("-").lower()
    ident = re.sub(r"[^A-Za-z0-9]+", "", str(doc.get("id") or ""))[:64].lower()
    return "-".join(part for part in (base[:80] or "document", ident) if part)


def _unique(name: str, taken: set[str]) -> str:
    """`name`, or `name-2`, `name-3`, … : the first not in `taken` (which it joins)."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    taken.add(candidate)
    return candidate


def _front_matter(doc: dict[str, Any]) -> str:
    """YAML front matter; JSON strings are valid YAML scalars, so values need no other quoting."""
    keys = ("title", "url", "id", "source_id", "job_id", "updated_at")
    return "---\n" + "".join(f"{k}: {json.dumps(doc.get(k) or '', ensure_ascii=False)}\n" for k in keys) + "---\n\n"


async def _export(api: Api, params: dict[str, Any], limit: int | None, write: Any) -> int:
    summaries = await api.pages("/api/documents", "documents", limit=limit, **params)
    for summary in summaries:
        write(await api.get(f"/api/documents/{segment(summary['id'])}"))
    return len(summaries)


@app.command("export")
def export(
    ctx: typer.Context,
    format: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            "-f",
            help=(
                "md: one Markdown file per document; jsonl: JSON lines; llms-txt / llms-full: the "
                "source's llms.txt / llms-full.txt (needs --source)."
            ),
        ),
    ] = ExportFormat.markdown,
    output_path: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="md: a directory (default ./quaero-export); jsonl, llms-txt, llms-full: a file (default stdout).",
        ),
    ] = None,
    job: JobOption = None,
    source: SourceOption = None,
    query: Annotated[str | None, typer.Option("--query", "-q", help="Only documents matching this search.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-L", min=1, help="At most this many.")] = None,
) -> None:
    """Export documents with their Markdown."""
    if format in _LLMS_ROUTES:
        _export_llms(ctx, format, output_path, source, job=job, query=query, limit=limit)
        return
    params = {"job_id": job, "source_id": source, "q": query}
    if format is ExportFormat.markdown:
        folder = output_path or Path("quaero-export")
        if folder.exists() and not folder.is_dir():
            raise CliError(f"--output {folder}: exists and is not a directory", USAGE)
        folder.mkdir(parents=True, exist_ok=True)
        # Every document gets a file of its own, even where two names would be the same.
        written: set[str] = set()

        def write_file(doc: dict[str, Any]) -> None:
            name = _unique(_slug(doc), written)
            (folder / f"{name}.md").write_text(_front_matter(doc) + doc["markdown"], encoding="utf-8")

        call(ctx.obj, lambda api: _export(api, params, limit, write_file))
        output.stderr().print(f"Exported {len(written)} documents to {folder}/")  # the files written
        return

    stream = _output_file(output_path, "JSON lines")
    try:
        count = call(ctx.obj, lambda api: _export(api, params, limit, lambda d: stream.write(json.dumps(d) + "\n")))
    finally:
        if stream is not sys.stdout:
            stream.close()
    output.stderr().print(f"Exported {count} documents" + (f" to {output_path}" if stream is not sys.stdout else ""))


def _output_file(output_path: Path | None, what: str) -> TextIO:
    if output_path is None or str(output_path) == "-":
        return sys.stdout
    if output_path.is_dir():
        raise CliError(f"--output {output_path}: is a directory; give a file name for {what}", USAGE)
    return output_path.open("w", encoding="utf-8")


def _export_llms(
    ctx: typer.Context,
    format: ExportFormat,
    output_path: Path | None,
    source: str | None,
    *,
    job: str | None,
    query: str | None,
    limit: int | None,
) -> None:
    """A source's llms.txt or llms-full.txt, written as the gateway streams it."""
    if not source:
        raise CliError(f"--format {format.value}: needs --source (llms.txt describes one source)", USAGE)
    for name, value in (("--job", job), ("--query", query), ("--limit", limit)):
        if value is not None:
            raise CliError(f"{name}: not with --format {format.value} (it holds every current document)", USAGE)
    if output_path is not None and output_path.is_dir():
        raise CliError(f"--output {output_path}: is a directory; give a file name for {format.value}", USAGE)
    # Opened with the first piece: an error answer (an unknown source) leaves no file behind.
    opened: list[TextIO] = []

    def write(piece: str) -> None:
        if not opened:
            opened.append(_output_file(output_path, format.value))
        opened[0].write(piece)

    path = f"/api/sources/{segment(source)}/{_LLMS_ROUTES[format]}"
    try:
        call(ctx.obj, lambda api: api.text(path, write))
    finally:
        if opened and opened[0] is not sys.stdout:
            opened[0].close()
    if opened and opened[0] is not sys.stdout:
        output.stderr().print(f"Exported {_LLMS_ROUTES[format]} of source {source} to {output_path}")

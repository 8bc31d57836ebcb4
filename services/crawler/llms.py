"""llms.txt and llms-full.txt (the llmstxt.org shapes) of a source's documents, written piece by piece.

llms.txt: an H1 with the source's name, a blockquote summary, then an H2 section per part of the
site (the pages at its root under "Pages" first, then one per first path segment, in URL order),
each a list of `- [title](url): description` lines. llms-full.txt: the same head, then each
document as `# title`, a `Source: url` line and its Markdown. Documents come in URL order, so a
section's pages are contiguous and the text can be written out as the documents are read.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import urlsplit

ROOT_SECTION = "Pages"
_SPACE = re.compile(r"\s+")


def head(name: str, summary: str) -> str:
    return f"# {_line(name)}\n\n> {_line(summary)}\n"


def default_summary(count: int, hosts: Iterable[str]) -> str:
    where = ", ".join(hosts)
    return f"{count} document{'s' if count != 1 else ''} crawled" + (f" from {where}" if where else "") + "."


def section_of(url: str) -> tuple[str, str]:
    """The part of the site a page is in: (host, first path segment), the segment empty for a
    page at the root ("/", "/about")."""
    parts = urlsplit(url)
    segments = parts.path.lstrip("/").split("/")
    return parts.netloc.lower(), segments[0] if len(segments) > 1 else ""


def section_title(segment: str) -> str:
    if not segment:
        return ROOT_SECTION
    words = _SPACE.sub(" ", re.sub(r"[-_.]+", " ", segment)).strip()
    return (words[:1].upper() + words[1:]) if words else segment


def link_line(doc: dict[str, Any]) -> str:
    title = _line(doc["title"]) or doc["url"]
    title = title.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    url = doc["url"].replace("(", "%28").replace(")", "%29").replace(" ", "%20")
    description = _line(doc.get("description") or "")
    return f"- [{title}]({url})" + (f": {description}" if description else "") + "\n"


def full_entry(doc: dict[str, Any]) -> str:
    title = _line(doc["title"]) or doc["url"]
    body = (doc.get("markdown") or "").strip("\n")
    return f"\n# {title}\n\nSource: {doc['url']}\n" + (f"\n{body}\n" if body else "")


async def index_pieces(
    batches_root: AsyncIterator[list[dict[str, Any]]], batches_all: AsyncIterator[list[dict[str, Any]]]
) -> AsyncIterator[str]:
    """The sections of llms.txt, a piece per batch of documents read: the root pages (from the
    first reading, in URL order), then the other pages by section (from the second)."""
    started = False
    async for batch in batches_root:
        lines = [link_line(d) for d in batch if not section_of(d["url"])[1]]
        if lines and not started:
            lines.insert(0, f"\n## {ROOT_SECTION}\n\n")
            started = True
        if lines:
            yield "".join(lines)
    current: tuple[str, str] | None = None
    async for batch in batches_all:
        out: list[str] = []
        for doc in batch:
            section = section_of(doc["url"])
            if not section[1]:
                continue
            if section != current:
                out.append(f"\n## {section_title(section[1])}\n\n")
                current = section
            out.append(link_line(doc))
        if out:
            yield "".join(out)


def _line(text: str) -> str:
    return _SPACE.sub(" ", text).strip()

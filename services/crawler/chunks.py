"""A document's Markdown split on its headings into chunks with stable ids, heading paths and token estimates.

A chunk is one section (a heading and what follows it up to the next heading) or, when the section
is longer than `max_tokens`, a run of its paragraphs; a fenced code block is one paragraph, never
split. A chunk's id is made of the document's URL, its heading path, its position among sections
with the same path, and its piece within the section: editing, adding or removing another section
leaves it as it is. Chunks are computed from the stored Markdown when asked for (cheap, and always
in step with the extraction that wrote the Markdown).
"""

from __future__ import annotations

import hashlib
import json
import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# Sections longer than this are split at paragraph boundaries.
MAX_TOKENS = 512
MIN_MAX_TOKENS = 32
MAX_MAX_TOKENS = 8192

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_CLOSING_HASHES = re.compile(r"(?:^|[ \t]+)#+[ \t]*$")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__|`)")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Chunk:
    id: str
    heading_path: tuple[str, ...]
    text: str
    tokens: int


def estimate_tokens(text: str) -> int:
    """About four characters a token (English prose and code under the common BPE vocabularies)."""
    return (len(text) + 3) // 4


def heading_text(raw: str) -> str:
    """A heading's words without closing hashes, link syntax or emphasis marks."""
    text = _CLOSING_HASHES.sub("", raw)
    text = _LINK.sub(r"\1", text)
    return " ".join(_EMPHASIS.sub("", text).split())


def _closes(fence: str, marker: re.Match[str] | None, line: str) -> bool:
    """Whether `line` closes a code block opened with `fence`: the same character, at least as
    many of it, nothing after."""
    return bool(
        marker
        and marker.group(1)[0] == fence[0]
        and len(marker.group(1)) >= len(fence)
        and not line[marker.end() :].strip()
    )


@dataclass
class _Section:
    path: tuple[str, ...]
    lines: list[str]


def _sections(markdown: str) -> Iterator[_Section]:
    """The document's sections in order, each with its heading path (the text before the first
    heading: an empty path). Lines keep their line ends, so the sections add up to the document."""
    stack: list[tuple[int, str]] = []
    current = _Section((), [])
    fence: str | None = None
    for line in markdown.splitlines(keepends=True):
        stripped = line.rstrip("\r\n")
        marker = _FENCE.match(stripped)
        if fence is not None:
            if _closes(fence, marker, stripped):
                fence = None
            current.lines.append(line)
            continue
        if marker:
            fence = marker.group(1)
            current.lines.append(line)
            continue
        heading = _HEADING.match(stripped)
        if heading:
            level = len(heading.group(1))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading_text(heading.group(2) or "")))
            if current.lines:
                yield current
            current = _Section(tuple(title for _, title in stack), [line])
            continue
        current.lines.append(line)
    if current.lines:
        yield current


def _paragraphs(lines: list[str]) -> Iterator[str]:
    """Runs of lines separated by blank lines (a fenced block whole, blank lines and all); each
    run keeps the blank lines after it, so the runs add up to the section."""
    run: list[str] = []
    fence: str | None = None
    blank_seen = False
    for line in lines:
        stripped = line.rstrip("\r\n")
        marker = _FENCE.match(stripped)
        if fence is None and not stripped.strip():
            run.append(line)
            blank_seen = True
            continue
        if blank_seen and fence is None and run:
            yield "".join(run)
            run = []
        blank_seen = False
        if fence is not None:
            if _closes(fence, marker, stripped):
                fence = None
        elif marker:
            fence = marker.group(1)
        run.append(line)
    if run:
        yield "".join(run)


def _pieces(lines: list[str], max_tokens: int) -> list[str]:
    """A section's text, whole when it fits, else its paragraphs packed into pieces of at most
    `max_tokens` (a paragraph longer than that is a piece of its own)."""
    whole = "".join(lines)
    if estimate_tokens(whole.strip()) <= max_tokens:
        return [whole]
    pieces: list[str] = []
    current = ""
    for paragraph in _paragraphs(lines):
        if current and estimate_tokens((current + paragraph).strip()) > max_tokens:
            pieces.append(current)
            current = ""
        current += paragraph
    if current:
        pieces.append(current)
    return pieces


def chunk_id(url: str, path: tuple[str, ...], ordinal: int, piece: int) -> str:
    # As JSON: no two paths share a key (joined, () and ("",) would).
    key = json.dumps(path, ensure_ascii=False)
    digest = hashlib.blake2b(f"{url}\0{key}\0{ordinal}\0{piece}".encode(), digest_size=12)
    return digest.hexdigest()


def chunks(url: str, markdown: str, max_tokens: int = MAX_TOKENS) -> list[Chunk]:
    """`markdown` (a document fetched from `url`) as chunks, in document order. Blank lines at a
    chunk's edges are left out; a chunk of only blank lines is not one."""
    out: list[Chunk] = []
    ordinals: Counter[tuple[str, ...]] = Counter()
    for section in _sections(markdown):
        ordinal = ordinals[section.path]
        ordinals[section.path] += 1
        for piece, raw in enumerate(_pieces(section.lines, max_tokens)):
            text = raw.strip("\r\n")
            if not text.strip():
                continue
            out.append(Chunk(chunk_id(url, section.path, ordinal, piece), section.path, text, estimate_tokens(text)))
    return out


def words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


# A query has at most 500 characters: up to 250 words. Those beyond this many are not looked for.
MAX_TERMS = 64


def best_chunk(doc_chunks: Iterable[Chunk], terms: Iterable[str]) -> Chunk | None:
    """The chunk where most of `terms` (lower-case words; a term also matches the words it
    begins, as stemmed search does) appear, most occurrences breaking ties, the first of equals;
    None when no chunk has any. Each term costs two binary searches per chunk."""
    wanted = sorted({t.lower() for t in terms if t})[:MAX_TERMS]
    if not wanted:
        return None
    best: tuple[int, int] = (0, 0)
    found: Chunk | None = None
    for chunk in doc_chunks:
        counts = Counter(w.lower() for w in _WORD.findall(chunk.text))
        ordered = sorted(counts)
        running = [0]
        for word in ordered:
            running.append(running[-1] + counts[word])
        distinct = total = 0
        for term in wanted:
            # The words beginning with `term` are a run of the sorted words.
            hits = running[bisect_left(ordered, term + "\U0010ffff")] - running[bisect_left(ordered, term)]
            distinct += bool(hits)
            total += hits
        if (distinct, total) > best:
            best, found = (distinct, total), chunk
    return found


def search_terms(query: str, snippet: str) -> set[str]:
    """The words a search matched: the query's, and those the snippet marks (**word**), which
    are the forms found in the document (a stemmed match)."""
    marked = re.findall(r"\*\*(.+?)\*\*", snippet)
    return words(query) | words(" ".join(marked))

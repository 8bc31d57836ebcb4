"""HTML to a document: title, description, language, canonical link, links and the Markdown of
its main content (services/crawler/extract.py chooses it, services/crawler/markdown.py writes it).

`parse_page` is a pure function of bytes, so it runs inline for ordinary pages and in a process
pool (`Parser`) for large ones: a slow page never stalls the event loop the gRPC servers share.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import multiprocessing
import os
import re
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field

from selectolax.lexbor import LexborHTMLParser, LexborNode

from services.crawler.extract import main_content
from services.crawler.frontier import resolve_link
from services.crawler.markdown import to_markdown
from services.crawler.template import fingerprints

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


@dataclass
class ParsedPage:
    title: str
    description: str
    language: str
    canonical: str
    links: list[str]
    markdown: str
    content_hash: str
    word_count: int
    # A fingerprint per block of `markdown`, in order (services/crawler/template.py): what the
    # worker counts across a host's pages to recognise the site's template.
    block_fingerprints: list[str] = field(default_factory=list)
    # Why the page looks like an application shell that scripts fill in (render: auto renders
    # it in Chromium); empty when it does not.
    app_shell: str = ""


# An application shell (DESIGN 14): little text, scripts, and a root element they mount into
# or a <noscript> asking for JavaScript. A short static page has little text too, but neither.
SHELL_MAX_WORDS = 50
SHELL_ROOTS = "#root, #app, #__next, #__nuxt, #___gatsby, #svelte, #application, app-root, [data-reactroot]"
SHELL_ROOT_MAX_TEXT = 200
_ASKS_FOR_JS = re.compile(r"javascript|\bjs\b", re.IGNORECASE)


def shell_signs(tree: LexborHTMLParser) -> list[str]:
    """What in the page (before extraction edits its tree) says scripts build it."""
    if tree.css_first("script") is None:
        return []
    signs = []
    for root in tree.css(SHELL_ROOTS):
        if len(root.text(strip=True)) <= SHELL_ROOT_MAX_TEXT and not root.css_first("a[href]"):
            name = root.attributes.get("id")
            signs.append(f"a script-mounted root ({'#' + name if name else root.tag}) with no content")
            break
    for noscript in tree.css("noscript"):
        if _ASKS_FOR_JS.search(noscript.text()[:2000]):
            signs.append("a <noscript> asking for JavaScript")
            break
    if not signs:
        return []
    # Last, as the dearest: the body's text counts the scripts' too (megabytes on some pages).
    body_words = len(tree.body.text(separator=" ").split()) if tree.body is not None else 0
    return [] if body_words >= SHELL_MAX_WORDS * 2 else signs


def app_shell(signs: list[str], word_count: int) -> str:
    """Why the page is an application shell, or "" (see SHELL_MAX_WORDS)."""
    if not signs or word_count >= SHELL_MAX_WORDS:
        return ""
    return f"application shell: {word_count} word(s) of content, " + " and ".join(signs)


def decode(body: bytes, charset: str | None) -> str:
    """The text of an HTML body: the header's charset, else a <meta charset>, else UTF-8."""
    for candidate in (charset, _sniff_charset(body), "utf-8"):
        if not candidate:
            continue
        try:
            return body.decode(candidate, errors="replace")
        except LookupError:
            continue
    return body.decode("utf-8", errors="replace")  # pragma: no cover - utf-8 always exists


def _sniff_charset(body: bytes) -> str | None:
    match = _META_CHARSET.search(body[:2048])
    return match.group(1).decode("ascii", "ignore") if match else None


@dataclass
class _Head:
    """What a page says about itself in <title>, <base>, <meta> and <link>: the first of each
    (None until seen; an empty first one still wins)."""

    title: str | None = None
    base_href: str | None = None
    description: str | None = None
    og_description: str | None = None
    content_language: str | None = None
    canonical_href: str | None = None

    def first(self, name: str, value: str) -> None:
        if getattr(self, name) is None:
            setattr(self, name, value)


# One selector for every element _Head reads: each selector costs a compilation and a walk of
# the tree, and seven of them took longer than parsing the page.
_HEAD_ELEMENTS = "title, base[href], meta[name], meta[property], meta[http-equiv], link[rel]"
_META_FIELDS = {
    ("name", "description"): "description",
    ("property", "og:description"): "og_description",
    ("http-equiv", "content-language"): "content_language",
}


def _head(tree: LexborHTMLParser) -> _Head:
    head = _Head()
    for node in tree.css(_HEAD_ELEMENTS):
        tag = node.tag
        if tag == "title":
            head.first("title", _text(node))
        elif tag == "base":
            head.first("base_href", _attr(node, "href"))
        elif tag == "link":
            if (node.attributes.get("rel") or "").strip().lower() == "canonical":
                head.first("canonical_href", _attr(node, "href"))
        elif tag == "meta":
            attributes = node.attributes
            for kind in ("name", "property", "http-equiv"):
                field = _META_FIELDS.get((kind, (attributes.get(kind) or "").strip().lower()))
                if field is not None:
                    head.first(field, _attr(node, "content"))
    return head


def _text(node: LexborNode | None) -> str:
    return " ".join(node.text(strip=True).split()) if node is not None else ""


def _attr(node: LexborNode | None, name: str) -> str:
    if node is None:
        return ""
    value = node.attributes.get(name)
    return value.strip() if value else ""


def parse_page(url: str, body: bytes, charset: str | None = None) -> ParsedPage:
    """Parse one HTML page fetched from `url` (its final URL, after redirects)."""
    tree = LexborHTMLParser(decode(body, charset))
    head = _head(tree)
    base = url
    if head.base_href:
        base = resolve_link(url, head.base_href) or url
    title = head.title or _text(tree.css_first("h1"))
    language = _attr(tree.root, "lang") or head.content_language or ""
    canonical = (resolve_link(base, head.canonical_href) or "") if head.canonical_href else ""

    links: list[str] = []
    seen: set[str] = set()
    for anchor in tree.css("a[href], area[href]"):
        link = resolve_link(base, anchor.attributes.get("href") or "")
        if link and link not in seen:
            seen.add(link)
            links.append(link)

    signs = shell_signs(tree)
    content = main_content(tree)
    markdown = to_markdown(content, base) if content is not None else ""

    word_count = len(markdown.split())
    digest = hashlib.sha256()
    digest.update(title.encode())
    digest.update(b"\0")
    digest.update(markdown.encode())
    return ParsedPage(
        title=title,
        description=head.description or head.og_description or "",
        language=language,
        canonical=canonical,
        links=links,
        markdown=markdown,
        content_hash=digest.hexdigest(),
        word_count=word_count,
        block_fingerprints=fingerprints(markdown),
        app_shell=app_shell(signs, word_count),
    )


def _started() -> None:
    """What Parser.start runs in each pool process: nothing; starting it is the point."""


# How often a pool process looks whether the worker that started it is still there.
PARENT_CHECK_SECONDS = 1.0


def _follow_parent(parent: int) -> None:
    """The pool process's initializer: it exits once the process that started it is gone. A
    worker killed with SIGKILL cannot shut its pool down, and the pool's processes would otherwise
    wait for work for as long as the machine runs (the pool's pipe stays open: they hold it too)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="follow-parent", daemon=True).start()


class Parser:
    """Parses small pages inline and large ones in a process pool (created on first need)."""

    def __init__(self, *, inline_limit: int, processes: int = 1) -> None:
        self.inline_limit = inline_limit
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> list[Future[None]]:
        """Start the pool's processes now rather than at the first large page. A spawned process
        imports the worker's modules before it parses anything: seconds of CPU where modules have
        no bytecode cache, during which every large page waits (a crawl of the PostgreSQL manual
        spent more CPU there than on parsing). Returns at once, with what is done once the
        processes have started beside."""
        if self.processes <= 0:
            return []
        pool = self._executor()
        return [pool.submit(_started) for _ in range(self.processes)]

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: the parent runs an event loop, gRPC and database threads that fork would copy.
            self._pool = ProcessPoolExecutor(
                self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_follow_parent,
                initargs=(os.getpid(),),
            )
        return self._pool

    async def parse(self, url: str, body: bytes, charset: str | None) -> ParsedPage:
        if len(body) <= self.inline_limit or self.processes <= 0:
            return parse_page(url, body, charset)
        return await asyncio.get_running_loop().run_in_executor(self._executor(), parse_page, url, body, charset)

    def close(self) -> None:
        if self._pool is not None:
            with contextlib.suppress(Exception):
                self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

"""Sitemaps: the URLs a site lists in its robots.txt `Sitemap:` lines and /sitemap.xml.

Read with bounds on everything the web controls: bytes read per sitemap (on the wire and after
gzip, so a compression bomb stays small), URLs per sitemap and per crawl, sitemaps per crawl,
index nesting, and time per sitemap. XML is parsed incrementally (lxml's pull parser, fed chunk
by chunk as the body arrives) with entities left unresolved, no DTD loaded and no network: an
entity bomb or an external entity (XXE) expands to nothing, and no chunk is large enough to hold
the event loop. lxml rather than ultimate-sitemap-parser: that library fetches by itself (with
`requests`, blocking, around the fetch guard) and reads whole bodies into memory.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from lxml import etree

from libs.fetch_guard import blocked

log = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class SitemapLimits:
    """Caps on what sitemaps may cost one crawl (sitemaps.org allows 50,000 URLs and 50 MB a file)."""

    max_bytes: int = 50 * 1024 * 1024
    max_urls_per_sitemap: int = 50_000
    max_urls: int = 100_000
    max_sitemaps: int = 20
    max_depth: int = 2  # an index of indexes, and no deeper
    timeout: float = 30.0


# (url) -> whether the sitemap may be fetched (scope, robots) and, awaited, waits for the host's
# politeness slot.
Admit = Callable[[str], Awaitable[bool]]


class _Cut(Exception):
    """A cap was reached: what was read so far is kept."""


async def _body(response: aiohttp.ClientResponse, limits: SitemapLimits) -> AsyncIterator[bytes]:
    """The body in chunks, gunzipped if it is a gzip file, never more than max_bytes either way."""
    read = 0
    inflater: zlib._Decompress | None = None
    produced = 0
    first = True
    async for chunk in response.content.iter_chunked(_CHUNK):
        read += len(chunk)
        if read > limits.max_bytes:
            raise _Cut(f"more than {limits.max_bytes} bytes")
        if first:
            first = False
            if chunk[:2] == _GZIP_MAGIC:
                inflater = zlib.decompressobj(wbits=47)
        if inflater is None:
            yield chunk
            continue
        data = chunk
        while data:
            try:
                out = inflater.decompress(data, _CHUNK)
            except zlib.error as exc:
                raise _Cut(f"bad gzip: {exc}") from exc
            produced += len(out)
            if produced > limits.max_bytes:
                raise _Cut(f"more than {limits.max_bytes} bytes after gzip")
            if out:
                yield out
            data = inflater.unconsumed_tail
            if not out and not data:
                break


def _local(tag: object) -> str:
    if not isinstance(tag, str):
        return ""  # comments, processing instructions, entity references
    return tag.rsplit("}", 1)[-1]


async def read_sitemap(
    session: aiohttp.ClientSession, url: str, limits: SitemapLimits, budget: int
) -> tuple[list[str], list[str], str]:
    """(page URLs, child sitemap URLs, problem) of one sitemap or sitemap index; at most
    `budget` page URLs. `problem` is "" when it was read whole."""
    pages: list[str] = []
    children: list[str] = []
    cap = min(budget, limits.max_urls_per_sitemap)
    parser = etree.XMLPullParser(
        events=("end",),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    problem = ""
    try:
        async with asyncio.timeout(limits.timeout):
            async with session.get(url, max_redirects=3, timeout=aiohttp.ClientTimeout(total=limits.timeout)) as r:
                if r.status != 200:
                    return [], [], f"HTTP {r.status}"
                async for chunk in _body(r, limits):
                    parser.feed(chunk)
                    for _, element in parser.read_events():
                        if _local(element.tag) == "loc":
                            parent = element.getparent()
                            text = (element.text or "").strip()
                            kind = _local(parent.tag) if parent is not None else ""
                            if text and kind == "url":
                                pages.append(text)
                            elif text and kind == "sitemap" and len(children) < limits.max_sitemaps:
                                children.append(text)
                        # Done with it (a loc is read above, before its parent ends): the tree
                        # keeps only the open elements, however many a sitemap holds.
                        element.clear(keep_tail=False)
                        parent = element.getparent()
                        if parent is not None:
                            while element.getprevious() is not None:
                                del parent[0]
                        if len(pages) >= cap:
                            raise _Cut(f"{cap} URLs read")
                    await asyncio.sleep(0)
                parser.close()
    except _Cut as cut:
        problem = str(cut)
    except etree.XMLSyntaxError as exc:
        problem = f"not XML: {exc}"
    except TimeoutError:
        problem = f"not read within {limits.timeout} s"
    except (aiohttp.ClientError, UnicodeError, ValueError) as exc:
        refused = blocked(exc)
        problem = f"blocked address: {refused.strerror}" if refused is not None else f"{type(exc).__name__}: {exc}"
    return pages[:cap], children, problem


async def sitemap_urls(
    session: aiohttp.ClientSession, first: list[str], admit: Admit, limits: SitemapLimits
) -> list[str]:
    """The page URLs of the sitemaps `first` names and of the indexes among them, breadth first;
    each sitemap is fetched once, only if `admit` lets it, within the limits."""
    urls: dict[str, None] = {}
    seen: set[str] = set()
    level = [u for u in dict.fromkeys(first)]
    fetched = 0
    for depth in range(limits.max_depth + 1):
        following: list[str] = []
        for url in level:
            if url in seen or fetched >= limits.max_sitemaps or len(urls) >= limits.max_urls:
                continue
            seen.add(url)
            if not await admit(url):
                continue
            fetched += 1
            pages, children, problem = await read_sitemap(session, url, limits, limits.max_urls - len(urls))
            if problem:
                log.info("sitemap %s: %s (%d URL(s) kept)", url, problem, len(pages))
            urls.update(dict.fromkeys(pages))
            if depth < limits.max_depth:
                following.extend(c for c in children if c not in seen)
        level = following
    return list(urls)

"""A site's template: blocks of Markdown that repeat on most pages of a host within a crawl.

Extraction works on one page at a time and cannot tell a site's "Subscribe to our newsletter"
from a paragraph; across pages the template shows itself by repeating. This module is the pure
part: `fingerprints` names each block of a document's Markdown, `TemplateCounter` counts on how
many of a host's pages each block appears, and `drop_blocks` takes the repeating ones out.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field

_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s")
# A block seen on at least this share of a host's pages, and on at least this many of them, is
# the site's, not the page's.
TEMPLATE_SHARE = 0.5
TEMPLATE_MIN_PAGES = 3


def blocks(markdown: str) -> Iterator[str]:
    """The blocks of `markdown`: runs of lines between blank lines, a fenced code block whole."""
    lines: list[str] = []
    fenced = False
    for line in markdown.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        if not line.strip() and not fenced:
            if lines:
                yield "\n".join(lines)
                lines = []
            continue
        lines.append(line)
    if lines:
        yield "\n".join(lines)


def heading_level(block: str) -> int:
    """1 to 6 for a block that is an ATX heading ("## Usage"), else 0."""
    match = _HEADING.match(block)
    return len(match.group(1)) if match and "\n" not in block else 0


def fingerprint(block: str) -> str:
    """A block's name: the same text in another page's layout (spacing, case) has the same one."""
    text = " ".join(block.lower().split())
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def fingerprints(markdown: str) -> list[str]:
    """The fingerprint of each block of `markdown`, in order (repeats included)."""
    return [fingerprint(block) for block in blocks(markdown)]


def drop_blocks(markdown: str, template: Collection[str]) -> str:
    """`markdown` without the blocks whose fingerprint is in `template`. Headings and code are
    structure, not template ("## Parameters" heads most pages of an API reference): a heading
    goes only when every block of its section went."""
    if not template:
        return markdown
    kept: list[str] = []
    heading: int | None = None  # where in `kept` the heading of the current section is
    emptied = False  # whether that section lost a block and kept none so far
    for block in blocks(markdown):
        if heading_level(block):
            _drop_emptied_heading(kept, heading, emptied)
            kept.append(block)
            heading, emptied = len(kept) - 1, False
        elif not _FENCE.match(block) and fingerprint(block) in template:
            emptied = emptied or heading == len(kept) - 1
        else:
            kept.append(block)
    _drop_emptied_heading(kept, heading, emptied)
    return ("\n\n".join(kept) + "\n") if kept else ""


def _drop_emptied_heading(kept: list[str], heading: int | None, emptied: bool) -> None:
    if emptied and heading is not None and heading == len(kept) - 1:
        kept.pop()


@dataclass
class TemplateCounter:
    """For one host in one crawl: how many pages were seen and on how many each block was."""

    pages: int = 0
    seen: Counter[str] = field(default_factory=Counter)

    def add(self, page_fingerprints: Iterable[str]) -> None:
        self.pages += 1
        self.seen.update(set(page_fingerprints))

    def template(self, share: float = TEMPLATE_SHARE, min_pages: int = TEMPLATE_MIN_PAGES) -> set[str]:
        """The fingerprints of the blocks that repeat on most of the host's pages."""
        if self.pages < min_pages:
            return set()
        least = max(min_pages, share * self.pages)
        return {name for name, count in self.seen.items() if count >= least}

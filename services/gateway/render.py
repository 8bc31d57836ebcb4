"""A document's Markdown as HTML that is safe to show: rendered by markdown-it (raw HTML in the
Markdown is escaped, not passed through) and then sanitized by nh3 (no script, no event handler,
no javascript: URL survives, whatever the crawled page carried)."""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

# CommonMark plus tables and strikethrough; "html": False escapes any raw HTML of the page.
_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(["table", "strikethrough"])
_URL_SCHEMES = {"http", "https", "mailto"}


def safe_html(markdown: str) -> str:
    """`markdown` rendered and sanitized."""
    return nh3.clean(_MARKDOWN.render(markdown), url_schemes=_URL_SCHEMES, link_rel="noopener noreferrer nofollow")

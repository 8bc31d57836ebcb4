"""A page's content as Markdown: absolute links and images, code blocks with their language,
definition lists, no permalink markers or empty links."""

from __future__ import annotations

import re
from collections.abc import Callable

import html_to_markdown
from selectolax.lexbor import LexborNode

from services.crawler.frontier import resolve_link
from services.crawler.template import blocks, heading_level

_OPTIONS = html_to_markdown.ConversionOptions(
    extract_metadata=False,
    # What is hidden and what is boilerplate is decided before (services/crawler/extract.py):
    # the converter's own guesses would drop a page revealed by a script or laid out in a form.
    hidden_content="all",
    preprocessing=html_to_markdown.PreprocessingOptions(enabled=False),
    inline_data_media="drop_element",
)


def _converter() -> Callable[[str], str]:
    """html_to_markdown.convert re-validates its options on every call (about 1 ms); with the
    pinned release we convert them once and call the Rust binding directly."""
    try:
        from html_to_markdown import _html_to_markdown as rust
        from html_to_markdown.api import _to_rust_conversion_options

        options = _to_rust_conversion_options(_OPTIONS)
        return lambda html: rust.convert(html=html, options=options, visitor=None).content or ""
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - another release
        return lambda html: html_to_markdown.convert(html, _OPTIONS).content or ""


_convert = _converter()

# Marks a heading's own link ("¶" in Sphinx, "#" in many generators): not content.
_PERMALINK_TEXT = frozenset({"¶", "§", "#", "🔗", "⚓", "⚓︎", "∞"})
_LANGUAGE = re.compile(r"(?:^|\s)(?:language|lang|highlight|brush)-([A-Za-z0-9_+#.-]+)")
_NO_LANGUAGE = frozenset({"none", "default", "text", "plain", "plaintext", "nohighlight", "source"})
_LINE_BREAK = re.compile(r"[ \t]*\n\s*")
_PRE = re.compile(r"(<pre\b.*?</pre>)", re.DOTALL)
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
# An element whose whole text is "Loading…": a placeholder the page's scripts fill or replace.
_PLACEHOLDER = re.compile(r">\s*Loading\s?(?:\.\.\.|…)\s*<", re.IGNORECASE)


def to_markdown(content: LexborNode, base: str) -> str:
    """`content` (changed in place) as Markdown, its links resolved against `base`."""
    _images(content, base)  # first: a link around an image that goes is an empty link
    _links(content, base)
    _code_languages(content)
    _definitions(content)
    html = _PLACEHOLDER.sub("> <", _whitespace(content.html or ""))
    markdown = _without_empty_sections(_convert(html).strip())
    return (markdown + "\n") if markdown else ""


def _without_empty_sections(markdown: str) -> str:
    """Headings left with nothing under them ("Related posts" once its list was dropped as
    boilerplate) go too: a heading followed by one of the same or a higher level, or by the end.
    Unless most headings would go: a page made of headings (a list of titles) keeps them."""
    kept: list[tuple[int, str]] = []
    headings = dropped = 0
    for block in blocks(markdown):
        level = heading_level(block)
        headings += bool(level)
        while level and kept and kept[-1][0] >= level:
            kept.pop()
            dropped += 1
        kept.append((level, block))
    while kept and kept[-1][0]:
        kept.pop()
        dropped += 1
    if not dropped or dropped > max(2, headings // 4):
        return markdown
    return "\n\n".join(block for _, block in kept)


def _links(content: LexborNode, base: str) -> None:
    doomed, unwrapped = [], []
    for anchor in content.css("a"):
        href = (anchor.attributes.get("href") or "").strip()
        text = anchor.text(strip=True)
        if not text and anchor.css_first("img") is None:
            doomed.append(anchor)  # an empty link: an icon font, a tracking pixel's anchor
        elif text in _PERMALINK_TEXT or (href.startswith("#") and _in_heading(anchor) and len(text) <= 1):
            doomed.append(anchor)
        elif href.startswith("#"):
            anchor.attrs["href"] = base.split("#", 1)[0] + href
        elif (link := resolve_link(base, href)) is not None:
            anchor.attrs["href"] = link
        else:
            unwrapped.append(anchor)  # javascript:, a missing href: the text without the link
    for anchor in doomed:
        anchor.decompose()
    for anchor in unwrapped:
        anchor.unwrap()


def _in_heading(node: LexborNode) -> bool:
    parent = node.parent
    for _ in range(3):
        if parent is None:
            return False
        if parent.tag in _HEADINGS:
            return True
        parent = parent.parent
    return False


def _images(content: LexborNode, base: str) -> None:
    doomed = []
    for image in content.css("img"):
        attributes = image.attributes
        src = (attributes.get("src") or "").strip()
        if not src or src.startswith("data:"):
            # Lazy loading keeps the real address aside until the image scrolls into view.
            src = (attributes.get("data-src") or attributes.get("data-lazy-src") or "").strip()
        link = resolve_link(base, src) if src and not src.startswith("data:") else None
        if link is None:
            doomed.append(image)
        else:
            image.attrs["src"] = link
    for image in doomed:
        image.decompose()


def _code_languages(content: LexborNode) -> None:
    """Give each code block the language its markup names (`language-x`, `lang-x` on the block,
    `highlight-x` on a wrapper as Sphinx writes it) in the one place the converter reads."""
    for pre in content.css("pre"):
        code = pre.css_first("code")
        language = None
        for node in (code, pre, pre.parent, pre.parent.parent if pre.parent is not None else None):
            if node is None:
                continue
            match = _LANGUAGE.search(node.attributes.get("class") or "")
            name = match.group(1).lower().removeprefix("source-") if match else ""  # GitHub: highlight-source-x
            if name and name not in _NO_LANGUAGE:
                language = name
                break
        if language is not None:
            (code or pre).attrs["class"] = f"language-{language}"


def _definitions(content: LexborNode) -> None:
    """Definition lists in the Markdown Extra shape ("term", then ": definition")."""
    for definition in content.css("dd"):
        first = definition.first_child
        if first is None:
            definition.insert_child(": ")
        else:
            first.insert_before(": ")


def _whitespace(html: str) -> str:
    """Line breaks in text are spaces in HTML; the converter would keep them inside paragraphs.
    Outside `<pre>` a run of white space with a line break is one space, in text and between
    tags alike (where it means nothing); on the markup's string, not a walk of its text nodes."""
    if "<pre" not in html:
        return _LINE_BREAK.sub(" ", html)
    parts = _PRE.split(html)  # odd indices: the preformatted blocks, kept as they are
    return "".join(part if index % 2 else _LINE_BREAK.sub(" ", part) for index, part in enumerate(parts))

"""A page's main content: the site around it (navigation, banners, sidebars...) left out.

`main_content` prunes a parsed tree in place and returns the node that holds the content; it
works on any page: the semantic containers (`main`, `article`, `[role=main]`) when a page has
a fitting one, text- and link-density of blocks either way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from selectolax.lexbor import LexborHTMLParser, LexborNode

# Never content: code, styles, embedded documents and form controls.
_NEVER = "script, style, template, svg, iframe, object, embed, canvas, button, select, input, textarea, dialog"
# Elements that hold the site around the content, by what they are.
_BOILERPLATE_ELEMENTS = (
    "nav, aside, footer, header, "
    "[role=navigation], [role=banner], [role=contentinfo], [role=complementary], [role=search], "
    "[role=dialog], [role=alertdialog], [role=menu], [role=menubar], [role=toolbar], [role=tablist]"
)
_HIDDEN = "[hidden], [aria-hidden=true], [style*='display:none'], [style*='display: none'], [style*='visibility:hidden']"
_CLASS_OR_ID = "[class], [id]"

# Words in a class or id that name boilerplate, matched whole (class "site-footer" has the
# words "site" and "footer"; "footnote" is not "footer"). Strong words are removed whatever
# they hold; weak ones only when what they hold looks like boilerplate (short or mostly links).
_STRONG_WORDS = frozenset(
    """
    nav navbar navigation menu menus menubar submenu subnav sidenav topnav breadcrumb breadcrumbs crumbs
    toc sidebar footer masthead pagination pager skip skiplink cookie cookies consent gdpr
    share sharing sharer social
    """.split()
)
_WEAK_WORDS = frozenset(
    """
    related widget widgets ad ads advert adverts advertisement sponsor sponsored promo popup modal
    overlay banner newsletter subscribe subscription
    """.split()
)
# Class tokens that name boilerplate as a whole token only ("sr-only", "visually-hidden").
_STRONG_TOKENS = frozenset(
    """
    sr-only visually-hidden visuallyhidden screen-reader-text screen-reader-only hidden d-none
    is-hidden invisible table-of-contents tableofcontents
    """.split()
)
# Substrings safe to match anywhere (vendor banners name themselves "CybotCookiebotDialog").
_STRONG_STEMS = ("cookie", "consent", "breadcrumb", "onetrust", "gdpr")
_WORD = re.compile(r"[a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")

# A candidate holding this share of the page's text is a wrapper of the content, not
# boilerplate, whatever its class says (a `<div class="has-sidebar">` around everything).
_WRAPPER_SHARE = 0.5


def _text_length(node: LexborNode) -> int:
    return len(node.text(deep=True, strip=False).split())


def _link_words(node: LexborNode) -> int:
    return sum(_text_length(a) for a in node.css("a"))


_STRONG, _WEAK = 2, 1


def _boilerplate_name(attributes: dict[str, str | None]) -> int:
    """How strongly a class or id says "boilerplate": _STRONG, _WEAK or 0."""
    names = f"{attributes.get('class') or ''} {attributes.get('id') or ''}"
    lowered = names.lower()
    if any(stem in lowered for stem in _STRONG_STEMS):
        return _STRONG
    if any(token in _STRONG_TOKENS for token in lowered.split()):
        return _STRONG
    words = set(_WORD.findall(_CAMEL.sub(" ", names).lower()))
    if words & _STRONG_WORDS:
        return _STRONG
    return _WEAK if words & _WEAK_WORDS else 0


def _remove(nodes: list[LexborNode]) -> None:
    """Decompose nodes, outermost first (a node inside a decomposed one is freed memory)."""
    ids = {node.mem_id for node in nodes}
    outermost = [node for node in nodes if not _inside(node, ids)]
    for node in outermost:
        node.decompose()


def _inside(node: LexborNode, ids: set[int]) -> bool:
    ancestor = node.parent
    while ancestor is not None:
        if ancestor.mem_id in ids:
            return True
        ancestor = ancestor.parent
    return False


def _prune(scope: LexborNode, candidates: list[LexborNode], weak: set[int]) -> None:
    """Remove the candidates inside `scope`, except wrappers of most of its text; the weak ones
    only when they look like boilerplate."""
    total = max(1, _text_length(scope))
    removed: set[int] = set()
    doomed = []
    for node in candidates:
        if node.mem_id == scope.mem_id or _inside(node, removed):
            continue
        words = _text_length(node)
        links = _link_words(node) if words else 0
        if words >= _WRAPPER_SHARE * total and links < 0.5 * words:
            continue
        if node.mem_id in weak and words >= 25 and links < 0.35 * words:
            continue
        removed.add(node.mem_id)
        doomed.append(node)
    for node in doomed:
        node.decompose()


def main_content(tree: LexborHTMLParser) -> LexborNode | None:
    """Prune `tree` of everything that is not the page's content and return the node that
    holds the content (None for a page without a body)."""
    body = tree.body
    if body is None:
        return None
    for node in tree.css(_NEVER):
        node.decompose()
    for node in tree.css("noscript"):
        # A page built by scripts often puts its text for crawlers here; otherwise it says
        # "enable JavaScript" or holds a tracking pixel.
        if _text_length(node) >= 50:
            node.unwrap()
        else:
            node.decompose()
    # What the markup says: hidden, navigation, banners, sidebars, footers.
    _prune(body, body.css(f"{_HIDDEN}, {_BOILERPLATE_ELEMENTS}"), set())
    container = _container(body)
    # What the class names say, inside the content only: a class is a weaker hint than an
    # element, and a page's outer wrappers carry every name under the sun.
    candidates, weak = [], set()
    for node in container.css(_CLASS_OR_ID):
        strength = _boilerplate_name(node.attributes)
        if strength:
            candidates.append(node)
            if strength == _WEAK:
                weak.add(node.mem_id)
    _prune(container, candidates, weak)
    return container


_SEMANTIC = "main, [role=main], article, [itemprop=articleBody]"


def _container(body: LexborNode) -> LexborNode:
    total = max(1, _text_length(body))
    best: LexborNode | None = None
    best_words = 0
    for node in body.css(_SEMANTIC):
        words = _text_length(node)
        if words > best_words:
            best, best_words = node, words
    if best is not None and best_words >= 0.3 * total:
        return best
    return body

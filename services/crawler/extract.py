"""A page's main content: the site around it (navigation, banners, sidebars...) left out.

`main_content` prunes a parsed tree in place and returns the node that holds the content; it
works on any page: the semantic containers (`main`, `article`, `[role=main]`) when a page has
a fitting one, text- and link-density of blocks either way.
"""

from __future__ import annotations

import enum
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
_HIDDEN = (
    "[hidden], [aria-hidden=true], [style*='display:none'], [style*='display: none'], [style*='visibility:hidden']"
)
_CLASS_OR_ID = "[class], [id]"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words in a class or id that name boilerplate, matched whole (class "site-footer" has the
# words "site" and "footer"; "footnote" is not "footer"). Strong words are removed whatever
# they hold; weak ones only when what they hold looks like boilerplate (short or mostly links).
_STRONG_WORDS = _words(
    """
    nav navbar navigation menu menus menubar submenu subnav sidenav topnav breadcrumb breadcrumbs
    crumbs toc sidebar footer masthead pagination pager skip skiplink cookie cookies consent gdpr
    share sharing sharer social
    """
)
_WEAK_WORDS = _words(
    """
    related widget widgets ad ads advert adverts advertisement sponsor sponsored promo popup modal
    overlay banner newsletter subscribe subscription
    """
)
# Class tokens that name boilerplate as a whole token only ("sr-only", "visually-hidden").
_TOKENS = _words(
    """
    sr-only visually-hidden visuallyhidden screen-reader-text screen-reader-only hidden d-none
    is-hidden invisible table-of-contents tableofcontents
    """
)
# Substrings safe to match anywhere (vendor banners name themselves "CybotCookiebotDialog").
_STEMS = ("cookie", "consent", "breadcrumb", "onetrust", "gdpr")
_WORD = re.compile(r"[a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")

# A candidate holding this share of the page's text is a wrapper of the content, not
# boilerplate, whatever its class says (a `<div class="has-sidebar">` around everything).
_WRAPPER_SHARE = 0.5


def _text_length(node: LexborNode) -> int:
    return len(node.text(deep=True, strip=False).split())


def _link_words(node: LexborNode) -> int:
    return sum(_text_length(a) for a in node.css("a"))


class _Kind(enum.IntEnum):
    """Why a node is a candidate for removal, weakest first."""

    WEAK_NAME = 1  # a class or id word that often names boilerplate ("related", "widget")
    STRONG_NAME = 2  # one that nearly always does ("breadcrumb", "sidebar", "menu")
    ELEMENT = 3  # an element or role that is the site's, not the content's (nav, footer)
    HIDDEN = 4  # not shown


def _name_kind(attributes: dict[str, str | None]) -> _Kind | None:
    names = f"{attributes.get('class') or ''} {attributes.get('id') or ''}"
    lowered = names.lower()
    if any(stem in lowered for stem in _STEMS) or any(token in _TOKENS for token in lowered.split()):
        return _Kind.ELEMENT
    words = set(_WORD.findall(_CAMEL.sub(" ", names).lower()))
    if words & _STRONG_WORDS:
        return _Kind.STRONG_NAME
    return _Kind.WEAK_NAME if words & _WEAK_WORDS else None


def _is_boilerplate(kind: _Kind, words: int, links: int, total: int) -> bool:
    """Whether a candidate of `kind` holding `words` words (`links` of them in links) goes,
    on a page part of `total` words."""
    if words >= _WRAPPER_SHARE * total and (kind == _Kind.HIDDEN or links < 0.5 * words):
        return False  # it wraps the content: a page revealed by script, a "has-sidebar" layout
    if kind >= _Kind.ELEMENT:
        return True
    if kind == _Kind.STRONG_NAME:
        return words < 60 or links >= 0.3 * words
    return words < 25 or links >= 0.5 * words


def _inside(node: LexborNode, ids: set[int]) -> bool:
    ancestor = node.parent
    while ancestor is not None:
        if ancestor.mem_id in ids:
            return True
        ancestor = ancestor.parent
    return False


def _prune(scope: LexborNode, candidates: Iterable[tuple[LexborNode, _Kind]]) -> None:
    """Remove the candidates inside `scope` that are boilerplate, outermost first: all is decided
    before the tree changes, since a node inside a decomposed one is freed memory."""
    total = max(1, _text_length(scope))
    decided: set[int] = set()
    removed: set[int] = set()
    doomed = []
    for node, kind in candidates:
        if node.mem_id in decided or node.mem_id == scope.mem_id or _inside(node, removed):
            continue
        decided.add(node.mem_id)
        words = _text_length(node)
        if _is_boilerplate(kind, words, _link_words(node) if words else 0, total):
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
    _prune(body, ((node, _Kind.HIDDEN) for node in body.css(_HIDDEN)))
    _prune(body, ((node, _Kind.ELEMENT) for node in body.css(_BOILERPLATE_ELEMENTS)))
    container = _container(body)
    # What the class names say, inside the content only: a page's outer wrappers carry every
    # name under the sun.
    named = ((node, _name_kind(node.attributes)) for node in container.css(_CLASS_OR_ID))
    _prune(container, ((node, kind) for node, kind in named if kind is not None))
    doomed: list[tuple[LexborNode, int]] = []
    _link_dense(container, doomed)
    # On a page that is a list of links (an index, a category, search results) the links are
    # the content.
    if sum(words for _, words in doomed) < _LINK_PAGE * _text_length(container):
        for node, _ in doomed:
            node.decompose()
    return container


_BLOCKS = _words("div section ul ol dl table tbody tr td p form header aside span center")
_LINK_DENSE = 0.6
# Link-dense blocks holding this share of the content's words are the content.
_LINK_PAGE = 0.5


def _link_dense(node: LexborNode, doomed: list[tuple[LexborNode, int]]) -> None:
    """Collect the blocks under `node` made mostly of links: menus, link lists, tag clouds,
    "read more" lines. Only mixed blocks are looked into."""
    for child in node.iter():
        if child.tag not in _BLOCKS:
            continue
        words = _text_length(child)
        if not words:
            continue
        links = _link_words(child)
        if links >= _LINK_DENSE * words:
            doomed.append((child, words))
        elif links:
            _link_dense(child, doomed)


# A container this small is a widget that happens to be marked up as one (a modal's `main`).
_MIN_CONTAINER_WORDS = 50


def _container(body: LexborNode) -> LexborNode:
    """The node holding the content: the page's one article when it has one that dominates
    (a story with its comments below), else its main element, else the body."""
    total = max(1, _text_length(body))
    articles = [(node, _text_length(node)) for node in body.css("article, [itemprop=articleBody]")]
    articles = [(node, words) for node, words in articles if words]
    mains = [(node, _text_length(node)) for node in body.css("main, [role=main]")]
    main = max(mains, key=lambda item: item[1], default=None)
    if articles:
        article, words = max(articles, key=lambda item: item[1])
        # Articles inside the biggest one (comments, quoted posts) do not compete with it.
        rivals = sum(w for node, w in articles if node.mem_id != article.mem_id and not _inside(node, {article.mem_id}))
        if words >= _MIN_CONTAINER_WORDS and words >= 2 * rivals:
            return article
    if main is not None and main[1] >= max(_MIN_CONTAINER_WORDS, 0.1 * total):
        return main[0]
    return body

"""A page's main content: the site around it (navigation, banners, sidebars...) left out.

`main_content` prunes a parsed tree in place and returns the node that holds the content. It
works in passes, each on the evidence it trusts:

1. what the markup says: never-content elements, hidden ones, the site's elements and roles
   (`nav`, `header`, `footer`, `aside`, `[role=navigation]`...), skip links, previous/next bars;
2. which container holds the content: the page's one dominant `article`, else its `main`,
   else the body;
3. inside that container only, what class and id names say ("breadcrumb", "sidebar",
   "cookie-banner"...), weighed against what the named block holds;
4. inside it too, text and link density: blocks made mostly of links go, unless they are most
   of the content (an index page).

A block holding most of the text of what is being pruned is never removed by a name or a
hidden style, nor by being a site element unless it is mostly links: it wraps the content (a
layout called "has-sidebar", a page a script reveals).
Sizes are in characters of text, which lexbor counts without building Python strings per word.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable

from selectolax.lexbor import LexborHTMLParser, LexborNode


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Never content: code, styles, embedded documents and media, and form controls.
_NEVER = (
    "script, style, template, svg, iframe, object, embed, canvas, video, audio, button, select, input, textarea, dialog"
)
_HIDDEN = (
    "[hidden], [aria-hidden=true], [style*='display:none'], [style*='display: none'], [style*='visibility:hidden']"
)
# Elements and roles that hold the site around the content.
_SITE_ELEMENTS = (
    "nav, aside, footer, header, "
    "[role=navigation], [role=banner], [role=contentinfo], [role=complementary], [role=search], "
    "[role=dialog], [role=alertdialog], [role=menu], [role=menubar], [role=toolbar], [role=tablist]"
)
# Links within the page that are not about it: "Skip to content", "Skip navigation", "Jump to
# search" (for keyboards, past the site's header), "Back to top".
_SKIP_LINK = re.compile(r"skip\b|jump to\b|(back )?to (the )?top\b|top\W*$", re.IGNORECASE)

# Words in a class or id that name boilerplate, matched whole (class "site-footer" has the
# words "site" and "footer"; "footnote" is not "footer"). A strong word is believed unless the
# block holds a good deal of text that is not links; a weak one only for a short or link-heavy
# block.
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
    overlay banner newsletter subscribe subscription feedback helpful tagline slogan
    """
)
# Class names that mean "not shown", or as good as a site element: text for screen readers only,
# hidden blocks, tables of contents.
_HIDDEN_CLASSES = (
    ".sr-only, .visually-hidden, .visuallyhidden, .screen-reader-text, .screen-reader-only, .hidden, .d-none,"
    " .is-hidden, .invisible, .printfooter, .print-only, .printonly"
)
_SITE_CLASSES = ".table-of-contents, .tableofcontents"
# Substrings as good as an element wherever they appear (banners of consent platforms name
# themselves "CybotCookiebotDialog", "onetrust-consent-sdk"; MediaWiki's banner above every
# page is "siteNotice", "Want to edit?").
_STEMS = (
    *("cookie", "consent", "breadcrumb", "onetrust", "gdpr", "backtotop", "back-to-top", "scroll-to-top"),
    "sitenotice",
)
_WORD = re.compile(r"[a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")

# Links that step through a sequence of pages: by their markup, or by their whole text.
_STEP_LINKS = "a[rel~=prev], a[rel~=next], a[rel~=previous], a[accesskey]"
_STEP_WORDS = _words("prev previous next older newer « » ‹ › ← →")
_ARROWS = "«»‹›←→<> "
# Links to the site's account pages, by their whole text: "Sign in", "Log in or sign up", "Register
# now", "Subscribe", "Open in app". The site's, wherever they are; the page they sit on is not them.
_ACCOUNT_LINK = re.compile(
    r"(?:(?:sign|log)\s?(?:in|on|up)|register|subscribe|join)(?:\s(?:now|here|today|free|for free))?"
    r"|(?:sign|log)\s?in or (?:join|register|sign up|create an account)|create (?:an? |your )?(?:free )?account"
    r"|my account|open in(?: the)? app",
    re.IGNORECASE,
)
_LINK_PUNCTUATION = " .!»›→>"
_ACCOUNT_LINK_MARK = "data-quaero-account-link"

# Forms with fields for an e-mail address or a password: sign-up, newsletter and log-in boxes.
_ACCOUNT_FORMS = "form:has(input[type=email], input[type=password], input[name*=email i], input[autocomplete=email])"
_ACCOUNT_MARK = "data-quaero-account-form"
# Headings that open a section about other pages or the site, not about this page: "Related
# articles", "You may also like", "3 Comments", "Leave a reply", "Subscribe to our newsletter".
_SITE_HEADING = re.compile(
    r"(related\b|you (may|might|will|'ll) (also )?(like|enjoy|love)"
    r"|recommended (for you|articles|posts|products|reading)"
    r"|more (from|stories|articles|posts|news|like this|to (read|explore))\b"
    r"|(most )?popular (posts|articles|stories|now)"
    r"|trending\b|read (next|more)\b|up next\b|what to read next|share (this|the|on)\b|share$|follow us\b"
    r"|(\d+ )?(comments?|responses?|replies)\b|leave a (reply|comment)|join the (conversation|discussion)"
    r"|(subscribe|sign up)\b|(get )?(our|the) newsletter|newsletter\b|customers (also|who)\b|frequently bought"
    r"|people (also|who)\b|about the author\b|recent (posts|articles|stories)\b|latest (posts|articles|stories|news)\b"
    r"|don.t miss\b|also read\b|keep reading\b"
    # Calls to action: the site's offer, not the page's subject.
    r"|try it (for )?free\b|start (your|a) free trial"
    r"|ready to get started|join (our|the) (community|discord|slack)\b|get (answers|help|support) (on|in|from) our\b)",
    re.IGNORECASE,
)
_SECTION_HEADINGS = "h2, h3, h4, h5, h6"
_ALL_HEADINGS = "h1, h2, h3, h4, h5, h6"
_HEADING_RANKS = {f"h{n}": n for n in range(1, 7)}
# A line about the page rather than of it: who wrote it and when, how long it takes to read.
# Found by the words lexbor looks for in an element's own text, then read whole.
_BYLINE_WORDS = ("min read", "mins read", "minute read", "written by", "posted", "published", "updated", "by ")
_BYLINE_TAGS = ":is(p, div, span, li, small, time, address)"
_BYLINE_BLOCKS = ", ".join(f'{_BYLINE_TAGS}:lexbor-contains("{w}" i)' for w in _BYLINE_WORDS)
_BYLINE = re.compile(
    r"(?i:posted|written|published|updated|last updated|reviewed|fact.checked|edited)\b|(?i:by)\s+[A-Z]"
    r"|\d+\s*(?i:min(?:ute)?s?\s+read)\b",
)
_BYLINE_TEXT = 80  # a byline is a line

# The elements whose names are read (not all: icons and other inline ones carry names by the hundred).
_NAMED_TAGS = ":is(div, section, ul, ol, dl, table, form, p, figure, span, li, a)"
_NAMED_BLOCKS = f"{_NAMED_TAGS}:is([class], [id])"
# Comments, by the same names (lexbor matches `:is()` far faster than a list of selectors).
_COMMENT_BLOCKS = f"{_NAMED_TAGS}:is([class*=comment i], [id*=comment i], [class*=disqus i], [id*=disqus i])"
_BLOCKS = _words("div section ul ol dl table tbody tr td p form header aside span center")

# Sizes, in characters of text.
_CRAWLER_TEXT = 300  # a <noscript> with this much text is the page for clients without scripts
_FORM_BOX = 400  # a sign-up box: its form with a heading and a line or two about it
_SITE_HEADING_TEXT = 60  # a heading naming a section of the site is short
_BAR = 240  # a previous/next bar holds little else than its links and their pages' titles
_BAR_DEPTH = 8  # and sits a few levels above them
# Blocks are looked for this many levels below the body or the container at most: a page
# nested by the thousand costs no more than an ordinary one.
_DEPTH = 64
# At most this many containers (article, main) or previous/next links are weighed: a page with
# more is a list of them, and weighing each costs a walk of its subtree.
_MAX_CONTAINERS = 100
_MIN_CONTAINER = 300  # a smaller `main` or `article` is a widget marked up as one (a modal)
_WEAK_BLOCK = 150  # a weakly named block this short is boilerplate whatever its links
_STRONG_BLOCK = 360  # likewise for a strongly named one
# Shares.
_WRAPPER = 0.5  # of the text being pruned: a block holding this much wraps the content
_LINK_DENSE = 0.6  # of a block's text in links: a menu, a link list, a tag cloud
_LINK_PAGE = 0.5  # of the content in link-dense blocks: the page is an index, the links stay
_THREAD = 0.5  # of the content in comments: the page is a thread, the comments stay


class _Kind(enum.IntEnum):
    """Why a node is a candidate for removal, weakest first."""

    WEAK_NAME = 1  # a class or id word that often names boilerplate ("related", "widget")
    STRONG_NAME = 2  # one that nearly always does ("breadcrumb", "sidebar", "menu")
    ELEMENT = 3  # an element or role that is the site's (nav, footer), or a name as good
    HIDDEN = 4  # not shown


def main_content(tree: LexborHTMLParser) -> LexborNode | None:
    """Prune `tree` of everything that is not the page's content and return the node that
    holds the content (None for a page without a body)."""
    body = tree.body
    if body is None:
        return None
    # Forms asking for an address or a password (sign-up, newsletter, log-in boxes) are known by
    # their fields, which go with the never-content: marked first, weighed once they are gone.
    for form in body.css(_ACCOUNT_FORMS):
        form.attrs[_ACCOUNT_MARK] = ""
    for node in tree.css(_NEVER):
        node.decompose()
    for node in tree.css("noscript"):
        # A page built by scripts often puts its text for crawlers here; otherwise it says
        # "enable JavaScript" or holds a tracking pixel.
        if _size(node) >= _CRAWLER_TEXT:
            node.unwrap()
        else:
            node.decompose()

    # The text left to prune, kept up to date as blocks go: sizes add up (a removed block's
    # text was part of every block around it), so no pass walks the whole page again to know it.
    total = _size(body)
    # An inactive tab's panel is hidden until its tab is chosen: a reader reaches it.
    hidden = body.css(f":is({_HIDDEN}, {_HIDDEN_CLASSES}):not([role=tabpanel])")
    total -= _prune(body, ((node, _Kind.HIDDEN) for node in hidden), total)
    total -= _prune(body, ((node, _Kind.ELEMENT) for node in body.css(f"{_SITE_ELEMENTS}, {_SITE_CLASSES}")), total)
    for link in body.css("a[href^='#']"):
        if _SKIP_LINK.match(text := link.text(strip=True)):
            total -= len(text)
            link.replace_with(" ")
    bars, accounts = _site_links(body)
    for link in accounts:
        link.attrs[_ACCOUNT_LINK_MARK] = ""
    total -= _prune(body, ((bar, _Kind.ELEMENT) for bar in bars), total)
    total -= _prune(
        body, ((box, _Kind.ELEMENT) for box in _boxes(body.css(f"[{_ACCOUNT_MARK}]"), body, _FORM_BOX)), total
    )

    container = _container(body, total)
    if container.mem_id != body.mem_id:
        total = _size(container)
    # Names only inside the content: a page's outer wrappers carry every name under the sun.
    named = ((node, _name_kind(_names(node))) for node in container.css(_NAMED_BLOCKS))
    total -= _prune(container, ((node, kind) for node, kind in named if kind is not None), total)
    # Comments below an article are not the article; on a forum they are the thread.
    comments = _outermost(container.css(_COMMENT_BLOCKS), container)
    if (thread := sum(_size(node) for node in comments)) < _THREAD * total:
        total -= thread
        for node in comments:
            node.replace_with(" ")

    total -= _drop_sections(container, total)
    total -= _prune(container, ((line, _Kind.ELEMENT) for line in _bylines(container)), total)

    dense: list[tuple[LexborNode, int]] = []
    _link_dense(container, dense)
    if sum(size for _, size in dense) < _LINK_PAGE * total:
        for node, _ in dense:
            node.replace_with(" ")
    # Last: until now they count as links, which a menu of them is made of.
    for link in container.css(f"[{_ACCOUNT_LINK_MARK}]"):
        link.replace_with(" ")
    return container


def _names(node: LexborNode) -> str:
    attributes = node.attributes  # a dict: faster to build than `attrs` for two look-ups
    return f"{attributes.get('class') or ''} {attributes.get('id') or ''}"


def _size(node: LexborNode) -> int:
    return len(node.text(deep=True, strip=True))


def _link_size(node: LexborNode) -> int:
    return sum(len(anchor.text(deep=True, strip=True)) for anchor in node.css("a"))


@functools.lru_cache(maxsize=4096)
def _name_kind(names: str) -> _Kind | None:
    """What the class and id names of a node (`names`, space-separated) say it is."""
    lowered = names.lower()
    if any(stem in lowered for stem in _STEMS):
        return _Kind.ELEMENT
    words = set(_WORD.findall(_CAMEL.sub(" ", names).lower()))
    if words & _STRONG_WORDS:
        return _Kind.STRONG_NAME
    return _Kind.WEAK_NAME if words & _WEAK_WORDS else None


def _boilerplate_size(kind: _Kind, node: LexborNode, total: int) -> int:
    """The size of `node`, a candidate of `kind`, if it goes from a part of the page with `total`
    characters of text, else -1. Its links are counted only when they decide (a walk of its
    anchors)."""
    size = _size(node)
    if size >= _WRAPPER * total and (kind != _Kind.ELEMENT or _link_size(node) < 0.5 * size):
        # It wraps the content: a page revealed by a script, a "has-sidebar" layout, the table
        # of contents that is the whole page.
        return -1
    if kind >= _Kind.ELEMENT:
        goes = True
    elif kind == _Kind.STRONG_NAME:
        goes = size < _STRONG_BLOCK or _link_size(node) >= 0.3 * size
    else:
        goes = size < _WEAK_BLOCK or _link_size(node) >= 0.5 * size
    return size if goes else -1


def _prune(scope: LexborNode, candidates: Iterable[tuple[LexborNode, _Kind]], total: int) -> int:
    """Remove the candidates inside `scope` (holding `total` characters of text) that are
    boilerplate, outermost first, and return how much text went. All is decided before the tree
    changes: a node inside a decomposed one is freed memory."""
    total = max(1, total)
    removed_size = 0
    decided: set[int] = set()
    removed: set[int] = set()
    doomed = []
    for node, kind in candidates:
        if node.mem_id in decided:
            continue
        decided.add(node.mem_id)
        ancestors = _ancestors(node, scope)
        if ancestors is None or not removed.isdisjoint(ancestors):
            continue
        if (size := _boilerplate_size(kind, node, total)) >= 0:
            removed.add(node.mem_id)
            doomed.append(node)
            removed_size += size
    for node in doomed:
        # A space in its place: the words on either side of a removed inline element stay apart.
        node.replace_with(" ")
    return removed_size


def _outermost(nodes: list[LexborNode], scope: LexborNode) -> list[LexborNode]:
    """The nodes within reach of `scope` that are not inside another of them."""
    ids = {node.mem_id for node in nodes}
    paths = ((node, _ancestors(node, scope)) for node in nodes)
    return [node for node, ancestors in paths if ancestors is not None and ids.isdisjoint(ancestors)]


def _ancestors(node: LexborNode, scope: LexborNode) -> list[int] | None:
    """The ids of the nodes between `node` and `scope` (below it), or None when `node` is not
    within _DEPTH levels of `scope`: deeper nodes are left alone, so that no walk up a tree
    nested by the thousand costs more than _DEPTH steps."""
    ids: list[int] = []
    ancestor = node.parent
    while ancestor is not None and len(ids) <= _DEPTH:
        if ancestor.mem_id == scope.mem_id:
            return ids
        ids.append(ancestor.mem_id)
        ancestor = ancestor.parent
    return None


def _site_links(body: LexborNode) -> tuple[list[LexborNode], list[LexborNode]]:
    """The outermost short blocks around links to the previous and next page ("Prev Up Home
    Next" tables of DocBook manuals, "← Older posts" bars), and the links to the site's account
    pages (_ACCOUNT_LINK), read in one pass over the links."""
    links = body.css(_STEP_LINKS)
    accounts = []
    for link in body.css("a"):
        text = link.text(strip=True).lower()
        if len(text) >= 40:
            continue
        if len(text) < 20 and (text in _STEP_WORDS or text.strip(_ARROWS).split(" ", 1)[0] in _STEP_WORDS):
            links.append(link)
        elif _ACCOUNT_LINK.fullmatch(text.strip(_LINK_PUNCTUATION)):
            accounts.append(link)
    bars = []
    for link in links[:_MAX_CONTAINERS]:
        bar = None
        node = link.parent
        for _ in range(_BAR_DEPTH):
            if node is None or node.mem_id == body.mem_id or _size(node) > _BAR:
                break
            bar, node = node, node.parent
        if bar is not None:
            bars.append(bar)
    return bars, accounts


def _boxes(nodes: list[LexborNode], scope: LexborNode, limit: int) -> list[LexborNode]:
    """Each of `nodes` with the blocks around it that hold at most `limit` characters of text
    (its heading, a line about it): the outermost such block, below `scope`."""
    boxes = []
    for node in nodes[:_MAX_CONTAINERS]:
        box, parent = node, node.parent
        for _ in range(_BAR_DEPTH):
            if parent is None or parent.mem_id == scope.mem_id or _size(parent) > limit:
                break
            box, parent = parent, parent.parent
        boxes.append(box)
    return boxes


def _bylines(container: LexborNode) -> list[LexborNode]:
    """Short lines saying who wrote the page, when, or how long it takes to read ("By Ann Lee",
    "Posted on May 2, 2024", "7 min read"), with a line around them as short (the date beside
    the author), never one holding a heading."""
    lines = []
    for node in container.css(_BYLINE_BLOCKS)[:_MAX_CONTAINERS]:
        text = " ".join(node.text().split())
        if len(text) > _BYLINE_TEXT or not _BYLINE.match(text.lstrip("·•|-–— ")):
            continue
        line, parent = node, node.parent
        for _ in range(_BAR_DEPTH):
            if parent is None or parent.mem_id == container.mem_id or _size(parent) > _BYLINE_TEXT:
                break
            if parent.css_first(_ALL_HEADINGS) is not None:
                break
            line, parent = parent, parent.parent
        lines.append(line)
    return lines


def _drop_sections(container: LexborNode, total: int) -> int:
    """Remove the sections under headings that name the site's blocks ("Related articles",
    "Comments", "Newsletter"): the heading's own wrapper when it opens one, else the heading
    and what follows it up to the next heading of its rank or higher. Never a section holding
    half of the content (a forum's replies are its page); `total` is the container's size.
    Returns how much text went."""
    total = max(1, total)
    gone = 0
    removed: set[int] = set()
    doomed: list[LexborNode] = []
    for heading in container.css(_SECTION_HEADINGS)[:_MAX_CONTAINERS]:
        text = heading.text(strip=True)
        if not text or len(text) > _SITE_HEADING_TEXT or not _SITE_HEADING.match(text.lstrip("#*-–— ")):
            continue
        ancestors = _ancestors(heading, container)
        if ancestors is None or heading.mem_id in removed or not removed.isdisjoint(ancestors):
            continue
        section = _section(heading, container, text)
        if (size := sum(_size(node) for node in section)) >= _WRAPPER * total:
            continue
        gone += size
        removed.update(node.mem_id for node in section)
        doomed.extend(section)
    for node in doomed:
        node.replace_with(" ")
    return gone


def _section(heading: LexborNode, container: LexborNode, text: str) -> list[LexborNode]:
    """The nodes making up the section `heading` (with `text`) opens."""
    rank = _HEADING_RANKS.get(heading.tag or "", 6)
    node = heading
    parent = node.parent
    # A wrapper the heading opens: its text starts with the heading's, and no other heading
    # of its rank or higher opens a section of it.
    while parent is not None and parent.mem_id != container.mem_id:
        if not parent.text(strip=True).startswith(text) or _rival_headings(parent, rank) > 1:
            break
        node, parent = parent, parent.parent
    if node.mem_id != heading.mem_id:
        return [node]
    section = [node]
    sibling = node.next
    while sibling is not None:
        if not (sibling.tag or "-").startswith("-") and _rival_headings(sibling, rank, include_self=True):
            break
        section.append(sibling)
        sibling = sibling.next
    return section


def _rival_headings(node: LexborNode, rank: int, *, include_self: bool = False) -> int:
    """How many headings of `rank` or higher `node` holds (or is, with `include_self`)."""
    rivals = int(include_self and _HEADING_RANKS.get(node.tag or "", 7) <= rank)
    return rivals + sum(1 for h in node.css(_ALL_HEADINGS) if _HEADING_RANKS.get(h.tag or "", 7) <= rank)


def _container(body: LexborNode, total: int) -> LexborNode:
    """The node holding the content: the page's one article when it has one that dominates
    (a story with its comments below), else its main element, else the body (of `total`
    characters)."""
    articles = [
        (node, _size(node), ancestors)
        for node in _capped(body.css("article, [itemprop=articleBody]"))
        if (ancestors := _ancestors(node, body)) is not None
    ]
    if articles:
        article, size, _ = max(articles, key=lambda item: item[1])
        # Articles inside the biggest one (comments, quoted posts) do not compete with it.
        rivals = sum(s for node, s, up in articles if node.mem_id != article.mem_id and article.mem_id not in up)
        if size >= _MIN_CONTAINER and size >= 2 * rivals:
            return article
    mains = [(node, _size(node)) for node in _capped(body.css("main, [role=main]"))]
    if mains:
        main, size = max(mains, key=lambda item: item[1])
        if size >= max(_MIN_CONTAINER, 0.1 * total):
            return main
    return body


def _capped(nodes: list[LexborNode]) -> list[LexborNode]:
    """The first _MAX_CONTAINERS of `nodes`, in document order."""
    return nodes[:_MAX_CONTAINERS]


def _link_dense(node: LexborNode, dense: list[tuple[LexborNode, int]], depth: int = 0) -> None:
    """Collect the blocks under `node` made mostly of links, with their sizes: menus, link
    lists, tag clouds, "read more" lines. Only blocks mixing links and text are looked into,
    down to _DEPTH levels."""
    if depth > _DEPTH:
        return
    for child in node.iter():
        if child.tag not in _BLOCKS:
            continue
        size = _size(child)
        if not size:
            continue
        links = _link_size(child)
        if links >= _LINK_DENSE * size:
            dense.append((child, size))
        elif links:
            _link_dense(child, dense, depth + 1)

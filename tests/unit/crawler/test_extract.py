"""Main-content extraction: each kind of boilerplate is left out, the content stays."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from selectolax.lexbor import LexborHTMLParser

from services.crawler.parse import parse_page

CONTENT = (
    "<h1>Pelicans</h1>"
    "<p>Pelicans are large water birds with a long beak and a big throat pouch used for catching"
    " prey and draining water from the scooped-up contents before swallowing.</p>"
    "<p>They have predominantly pale plumage, the exceptions being the brown and Peruvian"
    " pelicans. The bills, pouches and bare facial skin of all species become brightly coloured"
    " before the breeding season.</p>"
)
WORDS = ("Pelicans are large water birds", "predominantly pale plumage")


def markdown_of(body: str, *, wrap: str = "main") -> str:
    """The Markdown of a page whose body is `body`, the content (CONTENT) inside `wrap`."""
    page = body.replace("{content}", f"<{wrap}>{CONTENT}</{wrap}>" if wrap else CONTENT)
    return parse_page("http://h.test/birds/pelican", f"<html><body>{page}</body></html>".encode()).markdown


def assert_content_only(markdown: str, *boilerplate: str) -> None:
    for words in WORDS:
        assert words in markdown
    for words in boilerplate:
        assert words not in markdown


BOILERPLATE = {
    "nav": '<nav><a href="/">Home</a> <a href="/birds">All birds</a></nav>{content}',
    "header": '<header><a href="/">Bird Site</a> <span>Everything about birds</span></header>{content}',
    "footer": "{content}<footer><p>Copyright Bird Site, all rights reserved</p></footer>",
    "aside": "{content}<aside><h3>Popular today</h3><p>Herons in winter</p></aside>",
    "role=navigation": '<div role="navigation"><a href="/">Home</a> <a href="/x">Ducks and geese</a></div>{content}',
    "role=contentinfo": '{content}<div role="contentinfo">Copyright Bird Site, all rights reserved</div>',
    "breadcrumbs": '<ol class="breadcrumb"><li><a href="/">Home</a></li><li>Birds of the world</li></ol>{content}',
    "table of contents": (
        '<div id="toc"><b>Contents</b><ol><li><a href="#a">Description and anatomy</a></li>'
        '<li><a href="#b">Distribution</a></li></ol></div>{content}'
    ),
    "previous/next bar": (
        '{content}<div class="pagination"><a href="/birds/heron" rel="prev">Previous: Heron</a>'
        ' <a href="/birds/stork" rel="next">Next: Stork</a></div>'
    ),
    "cookie banner": (
        '<div id="cookie-banner"><p>We use cookies to improve your experience on our site and to'
        " show you relevant advertising; by continuing you agree to our use of them.</p>"
        "<button>Accept all</button></div>{content}"
    ),
    "consent dialog": (
        '<div class="CybotCookiebotDialog"><p>This website uses tracking technologies that need'
        " your consent before they are used.</p></div>{content}"
    ),
    "skip link by class": '<a class="skip-link" href="#main">Skip to content</a>{content}',
    "skip link by text": '<a href="#main">Skip to main content</a>{content}',
    "hidden attribute": "<div hidden><p>A search dialog that opens later</p></div>{content}",
    "aria-hidden": '<div aria-hidden="true"><p>Decorative duplicate of the menu</p></div>{content}',
    "display:none": '<div style="display: none"><p>Mobile menu markup for later</p></div>{content}',
    "screen-reader text": '<span class="sr-only">Opens in a new window</span>{content}',
    "share buttons": '{content}<div class="share-buttons"><a href="/s/fb">Share on Facebook</a></div>',
    "back to top": '{content}<p><a href="#top">Back to top ↑</a></p>',
    "feedback widget": '{content}<div class="page-feedback"><p>Was this page helpful?</p></div>',
    "jump link": '<a href="#search">Jump to search</a>{content}',
    "site tagline": '<div class="tagline">Small birds. Big wings. Choose any two.</div>{content}',
    "site notice": (
        '<div id="siteNotice"><p>Want to edit, but see no edit button? <a href="/wiki/Help">Help</a></p></div>{content}'
    ),
    "print-only footer": '{content}<div class="printfooter">Retrieved from "http://h.test/birds/pelican"</div>',
}
BOILERPLATE_WORDS = {
    "nav": ["All birds"],
    "header": ["Everything about birds"],
    "footer": ["all rights reserved"],
    "aside": ["Herons in winter"],
    "role=navigation": ["Ducks and geese"],
    "role=contentinfo": ["all rights reserved"],
    "breadcrumbs": ["Birds of the world"],
    "table of contents": ["Description and anatomy", "Contents"],
    "previous/next bar": ["Previous: Heron", "Next: Stork"],
    "cookie banner": ["We use cookies", "Accept all"],
    "consent dialog": ["tracking technologies"],
    "skip link by class": ["Skip to content"],
    "skip link by text": ["Skip to main content"],
    "hidden attribute": ["search dialog"],
    "aria-hidden": ["Decorative duplicate"],
    "display:none": ["Mobile menu"],
    "screen-reader text": ["new window"],
    "share buttons": ["Share on Facebook"],
    "back to top": ["Back to top"],
    "feedback widget": ["Was this page helpful?"],
    "jump link": ["Jump to search"],
    "site tagline": ["Big wings"],
    "site notice": ["Want to edit"],
    "print-only footer": ["Retrieved from"],
}


@pytest.mark.parametrize("kind", BOILERPLATE, ids=list(BOILERPLATE))
@pytest.mark.parametrize("wrap", ["main", "article", "div"], ids=["in main", "in article", "no container"])
def test_boilerplate_is_left_out(kind: str, wrap: str) -> None:
    markdown = markdown_of(BOILERPLATE[kind], wrap=wrap)

    assert_content_only(markdown, *BOILERPLATE_WORDS[kind])


def test_docbook_navigation_tables_are_left_out() -> None:
    """The PostgreSQL manual's Prev/Up/Home/Next tables, above and below every page."""
    header = (
        '<div class="navheader"><table width="100%" summary="Navigation header">'
        '<tr><th colspan="5" align="center">SELECT</th></tr><tr>'
        '<td width="10%" align="left"><a accesskey="p" href="sql-security-label.html">Prev</a></td>'
        '<td width="10%" align="left"><a accesskey="u" href="sql-commands.html">Up</a></td>'
        '<th width="60%" align="center">SQL Commands</th>'
        '<td width="20%" align="right"><a accesskey="h" href="index.html">Home</a></td>'
        '<td width="10%" align="right"> <a accesskey="n" href="sql-selectinto.html">Next</a></td>'
        "</tr></table><hr></div>"
    )
    footer = (
        '<div class="navfooter"><hr><table width="100%" summary="Navigation footer"><tr>'
        '<td width="40%" align="left"><a accesskey="p" href="sql-security-label.html">Prev</a> </td>'
        '<td width="20%" align="center"><a accesskey="u" href="sql-commands.html">Up</a></td>'
        '<td width="40%" align="right"> <a accesskey="n" href="sql-selectinto.html">Next</a></td></tr><tr>'
        '<td width="40%" align="left" valign="top">SECURITY LABEL </td>'
        '<td width="20%" align="center"><a accesskey="h" href="index.html">Home</a></td>'
        '<td width="40%" align="right" valign="top"> SELECT INTO</td></tr></table></div>'
    )
    markdown = markdown_of(f'{header}<div class="refentry">{{content}}</div>{footer}', wrap="")

    assert_content_only(markdown, "Prev", "Home", "SQL Commands", "SECURITY LABEL", "SELECT INTO")


def test_on_a_page_without_containers_link_dense_blocks_are_left_out() -> None:
    menu = "".join(f'<li><a href="/birds/{n}">Bird number {n}</a></li>' for n in range(12))
    markdown = markdown_of(f'<div class="top"><ul>{menu}</ul></div><div class="text">{{content}}</div>', wrap="")

    assert_content_only(markdown, "Bird number 3")


def test_a_page_that_is_a_list_of_links_keeps_them() -> None:
    items = "".join(f'<li><a href="/birds/{n}">Bird species number {n}</a></li>' for n in range(40))
    html = f"<html><body><nav><a href='/'>Home</a></nav><main><h1>All birds</h1><ul>{items}</ul></main></body></html>"

    markdown = parse_page("http://h.test/birds/", html.encode()).markdown

    assert "Bird species number 0" in markdown and "Bird species number 39" in markdown
    assert "Home" not in markdown


def test_the_dominant_article_wins_over_the_comments_around_it() -> None:
    comments = "".join(f"<div class='comment'><p>Comment {n}: {'words ' * 40}</p></div>" for n in range(10))
    markdown = markdown_of(f"{{content}}<section>{comments}</section>", wrap="article")

    assert_content_only(markdown, "Comment 3")


@pytest.mark.parametrize(
    "wrapper",
    [
        '<div style="visibility:hidden">{content}</div>',  # revealed by a script once it runs
        '<div class="layout has-sidebar">{content}</div>',
        '<div class="site-content widget-area">{content}</div>',
    ],
    ids=["hidden until a script runs", "named like a sidebar", "named like a widget"],
)
def test_a_wrapper_of_the_content_is_kept_whatever_it_is_called(wrapper: str) -> None:
    markdown = markdown_of(f"<nav><a href='/'>Home</a></nav>{wrapper}", wrap="")

    assert_content_only(markdown, "Home")


def test_text_for_crawlers_in_noscript_is_kept_and_a_javascript_notice_is_not() -> None:
    markdown = markdown_of("<noscript>Please enable JavaScript.</noscript><noscript>{content}</noscript>", wrap="")

    assert_content_only(markdown, "enable JavaScript")


def test_links_are_taken_from_the_whole_page_boilerplate_included() -> None:
    html = (
        f"<nav><a href='/birds/heron'>Heron</a></nav><main>{CONTENT}</main><footer><a href='/about'>About</a></footer>"
    )

    page = parse_page("http://h.test/birds/pelican", html.encode())

    assert page.links == ["http://h.test/birds/heron", "http://h.test/about"]


def test_comments_below_an_article_are_left_out() -> None:
    comments = "".join(f"<li class='comment'><p>Reader {n} says: lovely birds.</p></li>" for n in range(3))
    markdown = markdown_of(f"{{content}}<div id='comments'><ol class='comment-list'>{comments}</ol></div>", wrap="div")

    assert_content_only(markdown, "Reader 1 says")


def test_a_thread_of_comments_that_is_the_page_is_kept() -> None:
    posts = "".join(
        f"<div class='comment'><p>Post {n}: {'I saw a pelican at the lake today. ' * 5}</p></div>" for n in range(6)
    )
    html = (
        f"<html><body><nav><a href='/'>Forum home</a></nav><main><h1>Pelican sightings</h1>{posts}</main></body></html>"
    )

    markdown = parse_page("http://h.test/t/1", html.encode()).markdown

    assert "Post 0:" in markdown and "Post 5:" in markdown and "Forum home" not in markdown


def test_an_inactive_tab_panel_is_kept() -> None:
    tabs = (
        '<div role="tablist"><span role="tab">Python</span><span role="tab">Node</span></div>'
        '<div role="tabpanel"><pre>pip install birds</pre></div>'
        '<div role="tabpanel" hidden><pre>npm install birds</pre></div>'
    )
    markdown = markdown_of(f"<main>{CONTENT}{tabs}</main>", wrap="")

    assert "pip install birds" in markdown and "npm install birds" in markdown


_TAGS = [
    *("div", "nav", "main", "article", "aside", "section", "ul", "li", "p", "a", "span", "header", "footer", "table"),
    "video",
]
_ATTRIBUTES = [
    "",
    ' class="menu"',
    ' class="content"',
    ' class="comment"',
    ' id="sidebar"',
    " hidden",
    ' aria-hidden="true"',
    ' role="navigation"',
    ' style="display:none"',
    ' rel="next"',
    ' src="/p/7"',
]


@st.composite
def pages(draw: st.DrawFn, depth: int = 0) -> str:
    """Random markup: nested elements with names, roles and links, text between them."""
    parts = []
    for _ in range(draw(st.integers(0, 4 if depth < 4 else 0))):
        tag = draw(st.sampled_from(_TAGS))
        attributes = draw(st.sampled_from(_ATTRIBUTES))
        if tag == "a":
            attributes += f' href="/p/{draw(st.integers(0, 30))}"'
        text = draw(st.sampled_from(["", "Next", "Skip to content", "words of text here", "x " * 40]))
        parts.append(f"<{tag}{attributes}>{text}{draw(pages(depth + 1))}</{tag}>")
    return "".join(parts)


@given(pages())
@settings(max_examples=100, deadline=None)
def test_extraction_never_changes_the_links_and_keeps_no_hidden_text(body: str) -> None:
    # Hidden text that is most of a page is kept (a script reveals it): here it is a minority.
    html = f"<html><body>{body}<p>{'visible text ' * 200}</p><p hidden>secret words</p></body></html>"
    tree = LexborHTMLParser(html)
    expected = list(dict.fromkeys(f"http://h.test{a.attributes['href']}" for a in tree.css("a[href]")))

    page = parse_page("http://h.test/", html.encode())

    assert page.links == expected
    assert "secret words" not in page.markdown


@pytest.mark.parametrize(
    "layer",
    ['<div class="menu">', "<article>", '<div aria-hidden="true">', '<div><a href="/n" rel="next">Next</a>'],
    ids=["named", "articles", "hidden", "previous/next links"],
)
def test_a_page_nested_thousands_deep_is_parsed(layer: str) -> None:
    """Walks up the tree stop _DEPTH levels below the body: nesting costs no more than size."""
    html = "<html><body>" + layer * 3000 + "deep text</body></html>"

    page = parse_page("http://h.test/", html.encode())

    assert page.title == ""


@given(pages())
# Found by hypothesis: a comment block between two words, each removal path leaves a space.
@example('<table>Next<div class="comment">Skip to content<table>Next</table></div></table>')
@settings(max_examples=100, deadline=None)
def test_extraction_never_invents_text(body: str) -> None:
    """Every word of the document is a word of the page (or of a link target it resolved)."""
    html = f"<html><body>{body}<p>{'visible text ' * 50}</p></body></html>"
    page = parse_page("http://h.test/", html.encode())
    body_node = LexborHTMLParser(html).body
    assert body_node is not None
    # Adjacent inline elements run their words together, as on screen: compare without spaces.
    text = "".join(body_node.text(separator="").lower().split())
    links = {"http", "h", "test", "p", *(str(n) for n in range(31))}

    for word in re.findall(r"\w+", page.markdown.lower()):
        assert word in links or word in text, word


def markdown_with(extra: str, *, before: bool = False, wrap: str = "main") -> str:
    """The Markdown of a page whose container holds CONTENT and `extra` (after it, or before)."""
    inner = extra + CONTENT if before else CONTENT + extra
    body = f"<{wrap}>{inner}</{wrap}>" if wrap else inner
    return parse_page("http://h.test/birds/pelican", f"<html><body>{body}</body></html>".encode()).markdown


ACCOUNT_FORMS = {
    "newsletter box": (
        "<div><h3>Our weekly letter</h3><p>The best bird stories of the week, straight to you.</p>"
        '<form action="/letter"><input type="email" name="address"><button>Go</button></form></div>'
    ),
    "log-in form": (
        '<form action="/login"><p>Members see the ringing records of every bird here.</p>'
        '<input type="text" name="user"><input type="password" name="pw"></form>'
    ),
    "address field by name": (
        '<form action="/join"><p>Join the bird watchers club today for free.</p><input name="your-email"></form>'
    ),
}
ACCOUNT_WORDS = {
    "newsletter box": ["Our weekly letter", "best bird stories"],
    "log-in form": ["ringing records"],
    "address field by name": ["bird watchers club"],
}


@pytest.mark.parametrize("kind", ACCOUNT_FORMS, ids=list(ACCOUNT_FORMS))
@pytest.mark.parametrize("wrap", ["main", ""], ids=["in main", "no container"])
def test_forms_asking_for_an_address_or_a_password_are_left_out_with_their_box(kind: str, wrap: str) -> None:
    assert_content_only(markdown_with(ACCOUNT_FORMS[kind], wrap=wrap), *ACCOUNT_WORDS[kind])


def test_a_page_that_is_a_form_keeps_it() -> None:
    """An ASP.NET page wraps the whole page in its <form>; the form with a log-in box is the page."""
    html = f'<html><body><form action="/"><input type="password" name="pw">{CONTENT}</form></body></html>'

    assert_content_only(parse_page("http://h.test/birds/pelican", html.encode()).markdown)


SITE_SECTIONS = {
    "related, wrapped": (
        '<div class="more"><h2>Related articles</h2><p><a href="/heron">Herons</a>: how the grey heron'
        " hunts in shallow water at dawn and dusk.</p></div>"
    ),
    "you may also like, flat": (
        "<h2>You may also like</h2><p>Storks and cranes, a look at the long-legged birds of the marshes.</p>"
    ),
    "comments heading": (
        "<section><h2>3 Comments</h2><p>Lovely photographs of the pelicans, thank you for sharing them.</p></section>"
    ),
    "leave a reply": "<div><h3>Leave a reply</h3><p>Your address will not be published anywhere at all.</p></div>",
    "free trial": "<div><h2>Start your free trial</h2><p>Thirty days of every bird guide, no card needed.</p></div>",
    "community": "<section><h3>Join our community</h3><p>Bird watchers share their sightings every day.</p></section>",
}
SITE_SECTION_WORDS = {
    "related, wrapped": ["Related articles", "grey heron"],
    "you may also like, flat": ["You may also like", "long-legged birds"],
    "comments heading": ["3 Comments", "Lovely photographs"],
    "leave a reply": ["Leave a reply", "will not be published"],
    "free trial": ["free trial", "Thirty days"],
    "community": ["Join our community", "share their sightings"],
}


@pytest.mark.parametrize("kind", SITE_SECTIONS, ids=list(SITE_SECTIONS))
@pytest.mark.parametrize("wrap", ["main", "article", ""], ids=["in main", "in article", "no container"])
def test_sections_under_headings_about_other_pages_are_left_out(kind: str, wrap: str) -> None:
    assert_content_only(markdown_with(SITE_SECTIONS[kind], wrap=wrap), *SITE_SECTION_WORDS[kind])


def test_a_section_under_such_a_heading_stops_at_the_next_heading_of_its_rank() -> None:
    extra = (
        "<h2>Related reading</h2><p>Storks and cranes of the marshes.</p>"
        "<h2>Breeding</h2><p>Pelicans nest in colonies on islands far from predators.</p>"
    )

    markdown = markdown_with(extra)

    assert_content_only(markdown, "Related reading", "Storks and cranes")
    assert "## Breeding" in markdown and "nest in colonies" in markdown


def test_a_section_that_is_most_of_the_page_is_kept() -> None:
    """A forum thread: the replies under "12 replies" are the page."""
    replies = "".join(f"<p>Reply {n}: {'I saw one at the lake last spring. ' * 4}</p>" for n in range(8))
    markdown = markdown_with(f"<div><h2>12 replies</h2>{replies}</div>")

    assert "Reply 7" in markdown and "12 replies" in markdown


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('<p class="x">By <a href="/ann">Ann Lee</a> · Updated May 2, 2024</p>', ["Ann Lee", "May 2"]),
        ("<div><span>Posted on March 3, 2025</span> <span>4 min read</span></div>", ["March 3", "min read"]),
        ("<p>Written by the Bird Team</p>", ["Bird Team"]),
    ],
    ids=["author and date", "date and reading time", "written by"],
)
def test_bylines_are_left_out(line: str, words: list[str]) -> None:
    assert_content_only(markdown_with(line, before=True), *words)


def test_a_sentence_starting_like_a_byline_is_kept() -> None:
    extra = "<p>By 2030 the pelican colonies of the lake may have doubled, say the rangers who count them.</p>"

    assert "By 2030" in markdown_with(extra)


def test_words_around_a_removed_inline_element_stay_apart() -> None:
    """Found by test_extraction_never_invents_text: "Next<span class=menu>…</span>Next"."""
    markdown = markdown_with('<p>Heron<span class="menu">Skip to content</span>Stork</p>')

    assert "HeronStork" not in markdown and "Heron Stork" in markdown


@pytest.mark.parametrize("media", ["video", "audio"])
def test_embedded_media_leave_no_text(media: str) -> None:
    """A player's fallback text is for browsers without one, and the converter would write the
    element as a link named after it ("[video](…)"), a word the page never shows."""
    extra = f'<{media} src="/media/pelican.mp4" controls>Your browser cannot play this file.</{media}>'

    markdown = markdown_with(extra)

    assert_content_only(markdown, "cannot play", f"[{media}]", "pelican.mp4")


@pytest.mark.parametrize("label", ["Sign in", "Log in or sign up", "Register now", "Subscribe", "Open in app"])
@pytest.mark.parametrize("wrap", ["main", ""], ids=["in main", "no container"])
def test_links_to_the_sites_account_pages_are_left_out(label: str, wrap: str) -> None:
    extra = f'<div class="user"><span>Welcome to the pelican pages, dear guest.</span> <a href="/a">{label}</a></div>'

    markdown = markdown_with(extra, wrap=wrap)

    assert_content_only(markdown, label)
    assert "dear guest" in markdown


def test_a_menu_of_account_links_goes_as_a_menu() -> None:
    """Account links count as links until the menus are gone: without them this menu would be
    its label and one link, no longer mostly links."""
    menu = (
        '<div>Account: <a href="/in">Sign in</a> · <a href="/up">Register</a> · <a href="/s">Subscribe</a>'
        ' · <a href="/help">Help</a></div>'
    )

    assert_content_only(markdown_with(menu), "Account:", "Help")


def test_a_link_that_mentions_signing_in_is_kept() -> None:
    extra = (
        '<p>Ringers who want the records of every bird they ringed should read <a href="/guide">how to sign in'
        " to the ringing database</a> before the season starts, as the office is closed from May.</p>"
    )

    assert "how to sign in to the ringing database" in markdown_with(extra)


_MARKUP = st.lists(
    st.sampled_from(
        [
            *"<>/=\"' \n#",
            *("a", "p", "div", "nav", "main", "li", "ul", "h2", "video", "href", "class", "menu", "Sign in"),
            *(" Next", " Loading", "word", "Pelican", "<!--", "-->", "<script>", "</script>", "hidden", "src"),
        ]
    ),
    max_size=80,
).map("".join)


@given(_MARKUP)
@settings(max_examples=300, deadline=None)
def test_extraction_of_any_markup_never_raises_or_invents_words(markup: str) -> None:
    """Broken markup, unclosed tags, stray quotes: the parse gives a document whose every word
    is in the markup (or the page's address, which links resolve against)."""
    html = f"<html><body>{markup}</body></html>"
    page = parse_page("http://h.test/", html.encode())

    # As the browser reads it: its text (adjacent inline elements run their words together) and
    # the attributes Markdown shows (link targets, image sources and names).
    tree = LexborHTMLParser(html)
    for script in tree.css("script"):
        script.decompose()
    attributes = " ".join(str(value) for node in tree.css("*") for value in node.attributes.values())
    text = "".join((tree.body.text(separator="") if tree.body else "").lower().split())
    for word in re.findall(r"\w+", page.markdown.lower()):
        assert word in text or word in attributes.lower() or word in {"http", "h", "test"}, word


@pytest.mark.parametrize("placeholder", ["Loading...", "Loading…", "loading ..."])
def test_loading_placeholders_are_left_out(placeholder: str) -> None:
    markdown = markdown_with(f'<div class="reviews"><span>{placeholder}</span></div>')

    assert_content_only(markdown, placeholder)


def test_a_sentence_about_loading_is_kept() -> None:
    extra = "<h2>Loading</h2><p>Loading... the boats at dawn is when the pelicans gather round.</p>"

    markdown = markdown_with(extra)

    assert "## Loading" in markdown and "Loading... the boats" in markdown

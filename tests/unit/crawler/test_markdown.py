"""Markdown fidelity: what a page's content becomes in its document."""

from __future__ import annotations

import pytest

from services.crawler.parse import parse_page

URL = "http://h.test/docs/guide/page.html"


def markdown_of(content: str, *, head: str = "") -> str:
    html = f"<html><head>{head}</head><body><main>{content}</main></body></html>"
    return parse_page(URL, html.encode()).markdown


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        ("other.html", "http://h.test/docs/guide/other.html"),
        ("../api/", "http://h.test/docs/api/"),
        ("/start", "http://h.test/start"),
        ("//cdn.test/x", "http://cdn.test/x"),
        ("#usage", "http://h.test/docs/guide/page.html#usage"),
        ("https://elsewhere.test/a?b=1", "https://elsewhere.test/a?b=1"),
    ],
    ids=["relative", "parent", "root", "scheme-relative", "fragment", "absolute"],
)
def test_links_are_absolute(href: str, expected: str) -> None:
    assert f"[the link]({expected})" in markdown_of(f'<p>Read <a href="{href}">the link</a> now.</p>')


def test_links_resolve_against_the_pages_base() -> None:
    markdown = markdown_of('<p><a href="x.html">the link</a></p>', head='<base href="http://h.test/v2/">')

    assert "[the link](http://h.test/v2/x.html)" in markdown


def test_a_javascript_link_keeps_its_text_only() -> None:
    markdown = markdown_of('<p>Press <a href="javascript:go()">here</a> to go.</p>')

    assert "Press here to go." in markdown and "javascript" not in markdown


def test_images_are_kept_with_absolute_urls() -> None:
    markdown = markdown_of(
        '<p><img src="img/pelican.png" alt="A pelican"></p>'
        '<p><img src="data:image/gif;base64,R0lGOD" data-src="/img/lazy.png" alt="Lazy"></p>'
        '<p><img src="data:image/png;base64,iVBORw0KGgo=" alt="Inline pixel"></p>'
    )

    assert "![A pelican](http://h.test/docs/guide/img/pelican.png)" in markdown
    assert "![Lazy](http://h.test/img/lazy.png)" in markdown
    assert "data:" not in markdown and "Inline pixel" not in markdown


@pytest.mark.parametrize(
    "html",
    [
        '<pre><code class="language-python">print("hi")</code></pre>',
        '<pre><code class="lang-python">print("hi")</code></pre>',
        '<pre class="language-python">print("hi")</pre>',
        '<div class="highlight-python notranslate"><div class="highlight"><pre>print("hi")</pre></div></div>',
        '<div class="highlight highlight-source-python"><pre>print("hi")</pre></div>',
    ],
    ids=["language-x on code", "lang-x on code", "language-x on pre", "highlight-x (Sphinx)", "highlight-x wrapper"],
)
def test_code_blocks_keep_their_language(html: str) -> None:
    assert '```python\nprint("hi")\n```' in markdown_of(html)


def test_a_code_block_without_a_language_has_none_and_keeps_its_lines() -> None:
    markdown = markdown_of('<div class="highlight-default"><pre>a = 1\n    b = 2</pre></div>')

    assert "```\na = 1\n    b = 2\n```" in markdown


def test_tables_survive() -> None:
    markdown = markdown_of(
        "<table><thead><tr><th>Name</th><th>Size</th></tr></thead>"
        "<tbody><tr><td>smallint</td><td>2 bytes</td></tr><tr><td>integer</td><td>4 bytes</td></tr></tbody></table>"
    )

    rows = [" ".join(line.split()) for line in markdown.splitlines()]
    assert rows[:4] == ["| Name | Size |", "| -------- | ------- |", "| smallint | 2 bytes |", "| integer | 4 bytes |"]


def test_lists_survive() -> None:
    markdown = markdown_of(
        "<ul><li>one<ul><li>nested</li></ul></li><li>two</li></ul><ol><li>first</li><li>second</li></ol>"
    )

    assert "- one\n" in markdown and "nested" in markdown and "- two" in markdown
    assert "1. first\n2. second" in markdown


def test_definition_lists_survive() -> None:
    markdown = markdown_of(
        "<dl><dt>max_depth</dt><dd>How far links are followed.</dd><dt>max_pages</dt><dd>The budget.</dd></dl>"
    )

    assert "max_depth\n\n: How far links are followed." in markdown
    assert "max_pages\n\n: The budget." in markdown


def test_headings_survive() -> None:
    markdown = markdown_of("<h1>Guide</h1><p>Intro text.</p><h2>Install</h2><p>Steps.</p><h3>On Debian</h3><p>apt.</p>")

    assert "# Guide" in markdown and "## Install" in markdown and "### On Debian" in markdown


@pytest.mark.parametrize(
    "heading",
    [
        '<h2 id="install">Install<a class="headerlink" href="#install" title="Link to this heading">¶</a></h2>',
        '<h2 id="install"><a class="anchor" href="#install">#</a>Install</h2>',
        '<h2 id="install">Install <a href="#install" aria-label="Permalink"><span class="icon"></span></a></h2>',
        '<h2 id="install">Install<a href="#install">§</a></h2>',
    ],
    ids=["pilcrow (Sphinx)", "hash anchor", "icon anchor", "section sign"],
)
def test_permalink_markers_are_dropped(heading: str) -> None:
    markdown = markdown_of(f"{heading}<p>Steps to follow.</p>")

    assert "## Install\n" in markdown
    assert "¶" not in markdown and "§" not in markdown and "](http" not in markdown


def test_empty_links_are_dropped() -> None:
    markdown = markdown_of('<p>Text <a href="/x"></a><a href="/y"> </a><a href="/z"><i class="icon"></i></a>end.</p>')

    assert "[]" not in markdown and "[ ]" not in markdown
    assert "Text end." in markdown


def test_a_link_around_an_image_is_kept() -> None:
    markdown = markdown_of('<p><a href="/big.png"><img src="/small.png" alt="Map"></a></p>')

    assert "[![Map](http://h.test/small.png)](http://h.test/big.png)" in markdown


def test_line_breaks_inside_text_are_spaces_outside_code() -> None:
    markdown = markdown_of(
        "<p>A sentence broken\n   over two lines, <code>NOT\n   NULL</code>.</p><pre>keep\n  this</pre>"
    )

    assert "A sentence broken over two lines, `NOT NULL`." in markdown
    assert "keep\n  this" in markdown


def test_a_heading_left_without_its_section_goes() -> None:
    related = "".join(f'<li><a href="/p/{n}">Other post {n}</a></li>' for n in range(5))
    text = "The guide's text, long enough to be the content of this page. " * 5

    markdown = markdown_of(f"<h1>Guide</h1><p>{text}</p><h2>Related posts</h2><ul>{related}</ul>")

    assert markdown == f"# Guide\n\n{text.strip()}\n"


def test_a_page_made_of_headings_keeps_them() -> None:
    markdown = markdown_of("<h1>Products</h1>" + "".join(f"<h3>Product {n}</h3>" for n in range(8)))

    assert all(f"### Product {n}" in markdown for n in range(8))

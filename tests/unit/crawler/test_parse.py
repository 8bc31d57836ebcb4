"""HTML pages to documents (pure functions)."""

from __future__ import annotations

import asyncio

from services.crawler.parse import Parser, decode, parse_page

PAGE = b"""<!doctype html>
<html lang="de"><head>
<meta charset="utf-8">
<title>
  Guide to   Things
</title>
<meta name="Description" content="All about things">
<link rel="canonical" href="/guide">
<base href="/docs/">
<script>var x = "<a href='/not-a-link'>";</script>
</head><body>
<nav><a href="/nav">Nav</a></nav>
<main><h1>Heading</h1><p>Some <strong>bold</strong> text with <a href="page.html#part">a link</a>.</p>
<a href="page.html">again</a> <a href="mailto:x@y.test">mail</a> <a href="javascript:go()">js</a></main>
</body></html>"""


def test_metadata_is_extracted() -> None:
    page = parse_page("http://h.test/start", PAGE)

    assert page.title == "Guide to Things"
    assert page.description == "All about things"
    assert page.language == "de"
    assert page.canonical == "http://h.test/guide"


def test_links_resolve_against_the_base_once_each_in_page_order() -> None:
    page = parse_page("http://h.test/start", PAGE)

    assert page.links == [
        "http://h.test/nav",
        "http://h.test/docs/page.html#part",
        "http://h.test/docs/page.html",
        "mailto:x@y.test",
    ]


def test_markdown_keeps_the_main_content_only() -> None:
    page = parse_page("http://h.test/start", PAGE)

    assert page.markdown.startswith("# Heading")
    assert "**bold**" in page.markdown
    assert "Nav" not in page.markdown and "var x" not in page.markdown
    assert page.word_count > 5
    assert len(page.content_hash) == 64


def test_the_content_hash_changes_with_the_content_only() -> None:
    a = parse_page("http://h.test/a", b"<title>T</title><p>one</p>")
    b = parse_page("http://h.test/b", b"<title>T</title><p>one</p>")
    c = parse_page("http://h.test/a", b"<title>T</title><p>two</p>")

    assert a.content_hash == b.content_hash != c.content_hash


def test_a_page_without_title_uses_its_first_heading() -> None:
    assert parse_page("http://h.test/", b"<body><h1>Only heading</h1></body>").title == "Only heading"


def test_decoding_follows_the_header_then_the_meta_charset() -> None:
    latin = "café".encode("latin-1")

    assert decode(latin, "latin-1") == "café"
    assert decode(b'<meta charset="iso-8859-1">' + latin, None).endswith("café")
    assert decode("café".encode(), None) == "café"


def test_a_started_parser_has_its_pool_process_before_the_first_large_page() -> None:
    parser = Parser(inline_limit=16, processes=1)
    try:
        parser.start()
        pool = parser._pool
        assert pool is not None
        processes = list(pool._processes.values())  # spawned at submit, before any page
        assert len(processes) == 1 and processes[0].is_alive()
        parsed = asyncio.run(parser.parse("http://h.test/start", PAGE, None))
        assert parsed == parse_page("http://h.test/start", PAGE)
        assert list(pool._processes.values()) == processes  # the same process parsed it
    finally:
        parser.close()

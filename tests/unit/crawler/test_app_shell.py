"""Which pages `render: auto` renders: application shells, and nothing else (DESIGN 14)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.crawler.parse import SHELL_MAX_WORDS, parse_page

URL = "https://example.com/app"
CRA = (
    b"<!doctype html><html><head><title>React App</title></head><body><noscript>You need to enable "
    b'JavaScript to run this app.</noscript><div id="root"></div><script src="/static/js/main.js"></script>'
    b"</body></html>"
)


@pytest.mark.parametrize(
    "body",
    [
        CRA,
        b'<html><body><div id="__next"></div><script src="/_next/main.js"></script></body></html>',
        b'<html><body><div id="app">Loading...</div><script src="/app.js"></script></body></html>',
        b"<html><body><app-root></app-root><script src=main.js></script></body></html>",
        b"<html><body><noscript>Please enable JS.</noscript><div></div><script>boot()</script></body></html>",
    ],
)
def test_application_shells_are_recognised(body: bytes) -> None:
    assert parse_page(URL, body).app_shell.startswith("application shell")


@pytest.mark.parametrize(
    "body",
    [
        # Short static pages, with scripts or not.
        b"<html><body><main><h1>Hi</h1><p>Short.</p></main><script src=/analytics.js></script></body></html>",
        b"<html><body><p>Nothing else</p></body></html>",
        # An empty root but no script to fill it.
        b'<html><body><div id="root"></div></body></html>',
        # Server-rendered into the root: content and links are there already.
        b'<html><body><div id="app"><main><h1>Docs</h1><a href="/a">A</a></main></div><script src=/h.js></script>'
        b"</body></html>",
    ],
)
def test_other_pages_are_not_shells(body: bytes) -> None:
    assert parse_page(URL, body).app_shell == ""


@settings(max_examples=60, deadline=None)
@given(
    words=st.lists(
        st.text("abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=9), min_size=SHELL_MAX_WORDS, max_size=200
    )
)
def test_a_page_with_enough_text_is_never_a_shell(words: list[str]) -> None:
    text = " ".join(words)
    body = CRA.replace(b'<div id="root"></div>', f'<div id="root"></div><main><p>{text}</p></main>'.encode())
    assert parse_page(URL, body).app_shell == ""


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=2000) | st.text(max_size=2000).map(str.encode))
def test_any_body_parses_with_a_shell_verdict(body: bytes) -> None:
    verdict = parse_page(URL, b"<script>x()</script>" + body).app_shell
    assert verdict == "" or verdict.startswith("application shell")

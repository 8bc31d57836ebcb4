"""`quaero crawl` turns a URL and options into the definition crawl-<host>."""

from __future__ import annotations

import pytest

from cli.errors import USAGE, CliError
from cli.execute import crawl_definition, crawl_definition_id


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://docs.python.org/3/", "crawl-docs.python.org"),
        ("http://127.0.0.1:8000/", "crawl-127.0.0.1-8000"),
        ("http://[::1]:9000/x", "crawl---1-9000"),
        ("HTTPS://Example.COM", "crawl-example.com"),
    ],
    ids=["host", "host-and-port", "ipv6", "case"],
)
def test_definition_id_is_crawl_host(url: str, expected: str) -> None:
    assert crawl_definition_id(url) == expected


def test_only_given_options_are_set() -> None:
    definition = crawl_definition("https://example.com/docs/", 3, None, ["/docs/"], [])

    assert definition["id"] == "crawl-example.com"
    assert definition["type"] == "crawler"
    assert definition["steps"] == [
        {
            "name": "crawl",
            "action": "crawl",
            "config": {"start_urls": ["https://example.com/docs/"], "max_depth": 3, "include_patterns": ["/docs/"]},
        }
    ]


@pytest.mark.parametrize(
    ("url", "include", "message"),
    [
        ("ftp://example.com/", [], "URL: must be an http:// or https:// URL"),
        ("example.com", [], "URL: must be an http:// or https:// URL"),
        ("https://example.com/", ["(unclosed"], "--include '(unclosed': is not a valid regular expression"),
        ("https://example.com/", ["(?<=/)docs"], "--include '(?<=/)docs': is not a valid regular expression"),
    ],
    ids=["scheme", "no-scheme", "bad-regex", "lookbehind-re2-cannot-run"],
)
def test_bad_input_is_a_usage_error_naming_it(url: str, include: list[str], message: str) -> None:
    with pytest.raises(CliError) as caught:
        crawl_definition(url, None, None, include, [])

    assert caught.value.message.startswith(message)
    assert caught.value.exit_code == USAGE

"""`quaero docs export` names files from what the server sent; the names must stay inside the
export directory whatever the URL or id holds."""

from __future__ import annotations

import pytest

from cli.docs import _slug


@pytest.mark.parametrize(
    ("doc", "name"),
    [
        (
            {"url": "https://docs.example.com/guide/intro?x=1", "id": "0f3a9c1e-77"},
            "docs-example-com-guide-intro-x-1-0f3a9c1e",
        ),
        ({"url": "http://h/", "id": "../../etc/passwd"}, "h-etcpassw"),
        ({"url": "", "id": "/"}, "document"),
        ({"url": None, "id": None}, "document"),
        ({"url": "https://h/ü/..", "id": "AB/cd"}, "h-abcd"),
    ],
)
def test_export_file_names_are_plain_and_relative(doc: dict[str, object], name: str) -> None:
    slug = _slug(doc)
    assert slug == name
    assert set(slug) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")

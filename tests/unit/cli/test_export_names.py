"""`quaero docs export` names files from what the server sent; the names must stay inside the
export directory whatever the URL or id holds."""

from __future__ import annotations

import pytest

from cli.docs import _slug, _unique


@pytest.mark.parametrize(
    ("doc", "name"),
    [
        (
            {"url": "https://docs.example.com/guide/intro?x=1", "id": "0f3a9c1e-77"},
            "docs-example-com-guide-intro-x-1-0f3a9c1e77",
        ),
        ({"url": "http://h/", "id": "../../etc/passwd"}, "h-etcpasswd"),
        ({"url": "", "id": "/"}, "document"),
        ({"url": None, "id": None}, "document"),
        ({"url": "https://h/ü/..", "id": "AB/cd"}, "h-abcd"),
    ],
)
def test_export_file_names_are_plain_and_relative(doc: dict[str, object], name: str) -> None:
    slug = _slug(doc)
    assert slug == name
    assert set(slug) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")


def test_documents_of_one_url_whose_ids_share_a_prefix_get_files_of_their_own() -> None:
    first = {"url": "https://h/page", "id": "0f3a9c1e-0000-4000-8000-000000000001"}
    second = {"url": "https://h/page", "id": "0f3a9c1e-0000-4000-8000-000000000002"}

    assert _slug(first) != _slug(second)


def test_names_that_would_be_the_same_are_made_unique() -> None:
    taken: set[str] = set()
    # Ids that differ only in what a file name cannot hold.
    names = [_unique(_slug({"url": "https://h/", "id": i}), taken) for i in ("a/b", "a-b", "AB", "ab-2")]

    assert names == ["h-ab", "h-ab-2", "h-ab-3", "h-ab2"]
    assert taken == set(names)

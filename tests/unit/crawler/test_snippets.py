"""Search snippets are plain text: no link, table or heading syntax survives; every word does."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.crawler.snippets import MARK, START, STOP, plain_snippet

WORD = st.from_regex(r"[A-Za-z][a-z0-9]{0,8}", fullmatch=True)
WORDS = st.lists(WORD, min_size=1, max_size=4).map(" ".join)
URL = st.builds(lambda w: f"https://example.org/{w}?a=1#x", WORD)


def _blocks() -> st.SearchStrategy[tuple[str, list[str]]]:
    """A Markdown construct and the words a reader sees in it."""
    return st.one_of(
        WORDS.map(lambda w: (w, w.split())),
        st.builds(lambda level, w: ("#" * level + " " + w, w.split()), st.integers(1, 6), WORDS),
        st.builds(lambda w, u: (f"[{w}]({u})", w.split()), WORDS, URL),
        st.builds(lambda w, u: (f"![{w}]({u})", w.split()), WORDS, URL),
        st.builds(lambda a, b: (f"| {a} | {b} |\n|---|:---:|", a.split() + b.split()), WORDS, WORDS),
        st.builds(lambda w: (f"**{w}**", w.split()), WORDS),
        st.builds(lambda w: (f"_{w}_", w.split()), WORDS),
        st.builds(lambda w: (f"`{w}`", w.split()), WORDS),
        st.builds(lambda w: (f"> {w}", w.split()), WORDS),
        st.builds(lambda w: (f"- {w}", w.split()), WORDS),
        st.builds(lambda w: (f"1. {w}", w.split()), WORDS),
        st.builds(lambda w: (f"```python\n{w}\n```", w.split()), WORDS),
        st.builds(lambda w: (f"{START}{w}{STOP}", w.split()), WORDS),
    )


@given(st.lists(_blocks(), min_size=1, max_size=8), st.integers(0, 40))
def test_no_syntax_survives_and_every_word_does(blocks: list[tuple[str, list[str]]], cut: int) -> None:
    markdown = "\n".join(b for b, _ in blocks)
    words = [w for _, ws in blocks for w in ws]

    whole = plain_snippet(markdown)
    # A passage cut anywhere (inside a link, a table row) still shows no syntax.
    partial = plain_snippet(markdown[cut:])

    for text in (whole, partial):
        assert "](" not in text and "|" not in text
        assert not re.search(r"(^|\s)#{1,6}(\s|$)", text)
        assert "```" not in text and START not in text and STOP not in text
    assert re.findall(r"[A-Za-z0-9]+", whole.replace(MARK, " ")) == [
        t for w in words for t in re.findall(r"[A-Za-z0-9]+", w)
    ]


@given(st.text())
def test_on_any_text_no_link_or_table_syntax_survives(text: str) -> None:
    out = plain_snippet(text)
    assert "](" not in out and "|" not in out


@pytest.mark.parametrize(
    ("passage", "expected"),
    [
        ("| Name | Value |\n|---|---|\n| a | b |", "Name Value a b"),
        ("[Prev](https://x.org/a) | [Next](https://x.org/b)", "Prev Next"),
        ("ous](https://x.org/p) \ue000pelicans\ue001 dive", "ous **pelicans** dive"),
        ("## Installing\n\nRun `pip install x`", "Installing Run pip install x"),
        ("C# and F# are languages", "C# and F# are languages"),
    ],
    ids=["table", "prev-next-bar", "cut-inside-a-link", "heading-and-code", "hash-inside-a-word"],
)
def test_examples(passage: str, expected: str) -> None:
    assert plain_snippet(passage) == expected

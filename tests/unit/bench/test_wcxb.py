"""The WCXB scenario of `make bench`: Markdown stripped for scoring, a split scored, a missing one skipped."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from bench import wcxb

# The shape of WCXB's evaluate.py (the real one lives beside the split, outside the repository).
EVALUATE = """
import re
from collections import Counter

def tokenize(text):
    return re.findall(r"\\w+", text.lower()) if text else []

def word_f1(predicted, reference):
    pred, ref = tokenize(predicted), tokenize(reference)
    if not ref:
        return (1.0, 1.0, 1.0) if not pred else (0.0, 0.0, 0.0)
    if not pred:
        return (0.0, 0.0, 0.0)
    overlap = sum((Counter(pred) & Counter(ref)).values())
    p, r = overlap / len(pred), overlap / len(ref)
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)

def snippet_check(text, snippets):
    if not snippets:
        return 1.0
    return sum(1 for s in snippets if s.lower() in text.lower()) / len(snippets)

def get_page_type(data):
    return data.get("_internal", {}).get("page_type", {}).get("primary", "article")
"""


@pytest.mark.parametrize(
    ("markdown", "text"),
    [
        ("# Title\n\nSome **bold** and *em* text.", "Title\n\nSome bold and em text."),
        ("See [the docs](http://h.test/a/b-c.html) now.", "See the docs now."),
        ('A [link](http://h.test/x "with a title").', "A link."),
        ("![A pelican](http://h.test/p.png) flies.", "  flies."),
        ("```python\nx = 1\n```", "\nx = 1\n"),
        ("| a | b |\n| --- | --- |\n| 1 | 2 |", "  a   b  \n\n  1   2  "),
        ("- one\n  - two\n1. three\n> quoted", "one\ntwo\nthree\nquoted"),
        ("`code` and snake_case", "code and snake_case"),
    ],
    ids=["heading and emphasis", "link", "link title", "image", "code fence", "table", "lists and quotes", "code"],
)
def test_markdown_is_stripped_to_its_text(markdown: str, text: str) -> None:
    assert wcxb.strip_markdown(markdown) == text


def test_a_missing_split_is_skipped_saying_where_it_was_looked_for(tmp_path: Path) -> None:
    lines = wcxb.run(tmp_path / "nowhere")

    assert lines == [f"WCXB: skipped, no split at {tmp_path / 'nowhere'} (set QUAERO_BENCH_WCXB_DIR)"]


def write_page(folder: Path, file_id: str, html: str, truth: dict[str, object], page_type: str) -> None:
    (folder / "html" / f"{file_id}.html.gz").write_bytes(gzip.compress(html.encode()))
    data = {
        "url": f"http://h.test/{file_id}",
        "_internal": {"page_type": {"primary": page_type}},
        "ground_truth": truth,
    }
    (folder / "ground-truth" / f"{file_id}.json").write_text(json.dumps(data))


def test_a_split_is_scored_per_page_type_and_overall_beside_trafilatura(tmp_path: Path) -> None:
    (tmp_path / "html").mkdir()
    (tmp_path / "ground-truth").mkdir()
    (tmp_path / "evaluate.py").write_text(EVALUATE)
    article = "Pelicans are large water birds. " * 20
    write_page(
        tmp_path,
        "0001",
        f"<body><nav><a href='/'>Home</a> <a href='/b'>Birds</a></nav><main><p>{article}</p></main></body>",
        {"main_content": article, "with": ["Pelicans are large water birds."], "without": ["Home"]},
        "article",
    )
    write_page(
        tmp_path,
        "0002",
        "<html><body><main><h1>Install</h1><p>Run the installer and follow its steps.</p></main></body></html>",
        {"main_content": "Install\nRun the installer and follow its steps.", "with": [], "without": ["Cookies"]},
        "documentation",
    )

    lines = wcxb.run(tmp_path)

    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in lines if line.startswith("| ")}
    assert set(rows) >= {"pages", "article", "documentation", "all", "all, even files", "all, odd files"}
    assert "Quaero F1" in rows["pages"] and "trafilatura F1" in rows["pages"]
    article_row = rows["article"]
    assert (
        article_row[1] == "1" and article_row[2] == "1.000" and article_row[3] == "100.0%" and article_row[4] == "0.0%"
    )
    assert rows["documentation"][2] == "1.000"

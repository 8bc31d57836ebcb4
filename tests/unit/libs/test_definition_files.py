from __future__ import annotations

from pathlib import Path

import pytest

from libs.definition_files import iter_files, parse_text
from libs.errors import InvalidArgument

ORIGINAL_SHAPE = """
id = "news-crawler"
name = "News crawler"
type = "crawler"
description = "Crawl the news"
sources = ["news"]
schedule = "*/30 * * * *"
timeout = "10m"
enabled = true
auto_start = false
post_jobs = ["corpus-summary"]

[[steps]]
name = "crawl"
action = "crawl"
on_error = "retry"

[steps.config]
max_depth = 2
max_retries = 3
include_patterns = ["/news/"]

[[steps]]
name = "summary"
action = "corpus_summary"
on_error = "continue"
"""


def test_original_toml_shape() -> None:
    [doc] = parse_text(ORIGINAL_SHAPE, "toml")
    assert doc.kind == "job_definition"
    assert doc.data["steps"][0]["config"] == {"max_depth": 2, "max_retries": 3, "include_patterns": ["/news/"]}
    assert doc.data["post_jobs"] == ["corpus-summary"]


def test_source_files_accept_the_go_spellings() -> None:
    text = """
kind = "source"
id = "news"
name = "News"
base_url = "https://n/"
[crawl_config]
max_depth = 1
[filters]
include_patterns = "a, b"
"""
    [doc] = parse_text(text, "toml")
    assert doc.kind == "source"
    assert doc.data["crawl"] == {"max_depth": 1}
    assert doc.data["filters"]["include_patterns"] == ["a", "b"]
    assert "kind" not in doc.data


def test_json_may_hold_a_list() -> None:
    docs = parse_text('[{"id": "a"}, {"kind": "source", "id": "s"}]', "json")
    assert [d.kind for d in docs] == ["job_definition", "source"]


@pytest.mark.parametrize(
    ("text", "fmt"), [("id = ", "toml"), ("{", "json"), ("[1]", "json"), ('kind = "robot"', "toml")]
)
def test_bad_files_are_invalid_arguments(text: str, fmt: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_text(text, fmt)  # type: ignore[arg-type]


def test_iter_files_is_sorted_and_filtered(tmp_path: Path) -> None:
    for name in ("b.toml", "a.json", "notes.md", "sub/c.toml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    assert [p.relative_to(tmp_path).as_posix() for p in iter_files(tmp_path)] == ["a.json", "b.toml", "sub/c.toml"]

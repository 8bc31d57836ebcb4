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


def _deep_toml_table(levels: int) -> str:
    return "config = " + "{a = " * levels + "1" + " }" * levels


@pytest.mark.parametrize(
    ("text", "fmt", "field", "description"),
    [
        ('{"id": "x", "config": {"x": NaN}}', "json", "config.x", "must be a finite number"),
        ('{"id": "x", "config": {"x": -Infinity}}', "json", "config.x", "must be a finite number"),
        ('{"id": "x", "config": {"x": 1e400}}', "json", "config.x", "must be a finite number"),
        ('{"name": "\\ud800"}', "json", "name", "must be valid Unicode"),
        ('{"name": "a\\u0000"}', "json", "name", "must not contain NUL"),
        ('{"x": ' + "9" * 5000 + "}", "json", "body", "invalid JSON"),
        ("[" * 100_000 + "]" * 100_000, "json", "body", "is nested deeper than 32 levels"),
        ("id = 'x'\n[config]\nx = nan", "toml", "config.x", "must be a finite number"),
        ("x = " + "9" * 5000, "toml", "body", "invalid TOML"),
        ("x = " + "[" * 5000 + "]" * 5000, "toml", "body", "is nested deeper than 32 levels"),
        (_deep_toml_table(40), "toml", "config" + ".a" * 31, "is nested deeper than 32 levels"),
    ],
    ids=[
        "json-nan", "json-infinity", "json-overflow", "json-surrogate", "json-nul", "json-5000-digits",
        "json-100000-levels", "toml-nan", "toml-5000-digits", "toml-5000-levels", "toml-40-inline-tables",
    ],
)  # fmt: skip
def test_what_no_definition_may_hold_is_refused_naming_the_field(
    text: str, fmt: str, field: str, description: str
) -> None:
    with pytest.raises(InvalidArgument) as raised:
        parse_text(text, fmt)  # type: ignore[arg-type]
    [problem] = raised.value.violations
    assert problem.field == field
    assert problem.description.startswith(description)


def test_nesting_up_to_the_limit_is_read() -> None:
    [doc] = parse_text(_deep_toml_table(31), "toml")  # 32 levels with the document itself
    assert doc.data["config"]["a"]

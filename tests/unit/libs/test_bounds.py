"""What every way in refuses: ids, queries, text, nesting and numbers JSON cannot hold."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.bounds import MAX_DEPTH, MAX_PROBLEMS, check_ids, id_problem, json_problems, query_problem
from libs.errors import InvalidArgument
from quaero.v1 import crawler_service_pb2


def nested(levels: int, leaf: Any = 1) -> Any:
    """`levels` objects one inside the other: {"a": {"a": … leaf}}."""
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


def test_a_document_of_exactly_the_limit_passes_and_one_level_more_does_not() -> None:
    assert json_problems(nested(MAX_DEPTH)) == []
    [problem] = json_problems(nested(MAX_DEPTH + 1))
    assert problem.field == ".".join(["a"] * MAX_DEPTH)
    assert problem.description == f"is nested deeper than {MAX_DEPTH} levels"


def test_lists_count_as_levels_too() -> None:
    value: Any = 1
    for _ in range(MAX_DEPTH + 1):
        value = [value]
    [problem] = json_problems({"x": value})
    assert problem.field.startswith("x[0]")


@pytest.mark.parametrize(
    ("value", "field", "description"),
    [
        ({"name": "a\x00b"}, "name", "must not contain NUL characters"),
        ({"name": "\ud800"}, "name", "must be valid Unicode (it holds a lone surrogate)"),
        ({"steps": [{"config": {"x": float("nan")}}]}, "steps[0].config.x", "must be a finite number"),
        ({"x": [1, float("-inf")]}, "x[1]", "must be a finite number"),
        ({"x": 10**400}, "x", "is too large a number"),
        ({"config": {"a\x00": 1}}, "config", "has a key that must not contain NUL characters"),
        ({"\udc80": 1}, "body", "has a key that must be valid Unicode"),
        ("\x00", "body", "must not contain NUL"),
    ],
    ids=["nul", "surrogate", "nan", "infinity", "huge-int", "nul-key", "surrogate-key", "top-level"],
)
def test_problems_name_their_field(value: Any, field: str, description: str) -> None:
    [problem] = json_problems(value)
    assert problem.field == field
    assert problem.description.startswith(description)


def test_plain_values_pass() -> None:
    value = {"a": [1, 2.5, -3, True, None, "text ü ✓", {"b": []}], "c": 2**53}
    assert json_problems(value) == []


def test_the_walk_stops_after_enough_problems() -> None:
    assert len(json_problems(["\x00"] * 10_000)) == MAX_PROBLEMS


@pytest.mark.parametrize(
    ("value", "problem"),
    [("a" * 255, None), ("a" * 256, "must be at most 255 characters"), ("a\x00", "must not contain NUL characters")],
    ids=["255", "256", "nul"],
)
def test_ids(value: str, problem: str | None) -> None:
    assert id_problem(value) == problem


def test_queries_are_at_most_500_characters() -> None:
    assert query_problem("pelican " * 62) is None  # 496 characters
    assert query_problem("x" * 501) == "must be at most 500 characters"


def test_check_ids_names_every_bad_field_and_never_the_value() -> None:
    request = crawler_service_pb2.ListCrawlJobsRequest(job_definition_id="x" * 5000, source_id="s\x00")
    with pytest.raises(InvalidArgument) as raised:
        check_ids(request, "job_definition_id", "execution_id", "source_id")
    assert [v.field for v in raised.value.violations] == ["job_definition_id", "source_id"]
    assert "xxx" not in raised.value.message


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=40,
)


@settings(max_examples=300)
@given(JSON)
def test_whatever_passes_is_json_and_whatever_fails_says_where(value: Any) -> None:
    problems = json_problems(value)
    if not problems:
        # What passes can be written as strict JSON (UTF-8, no NaN) and read back.
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")
        json.loads(text)
    for problem in problems:
        assert problem.field
        assert problem.field.encode("utf-8") and problem.description

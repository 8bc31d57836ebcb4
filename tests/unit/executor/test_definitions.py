from __future__ import annotations

import pytest

from services.executor.definitions import (
    JobDefinition,
    Source,
    Step,
    check_schedule,
    find_cycle,
    validate_definition,
    validate_source,
)

ACTIONS = {"crawl", "corpus_summary", "reindex"}


def definition(**overrides: object) -> JobDefinition:
    fields: dict[str, object] = {
        "id": "docs",
        "name": "Docs",
        "type": "crawler",
        "steps": [Step(name="crawl", action="crawl", config={"start_urls": ["https://example.com/"]})],
    }
    fields.update(overrides)
    return JobDefinition(**fields)  # type: ignore[arg-type]


def fields_of(
    d: JobDefinition, graph: dict[str, list[str]] | None = None, sources: set[str] | None = None
) -> list[str]:
    return [v.field for v in validate_definition(d, actions=ACTIONS, known_sources=sources or set(), graph=graph or {})]


def test_a_complete_definition_is_valid() -> None:
    assert fields_of(definition(schedule="*/5 * * * *", timeout="30m")) == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"id": ""}, "id"),
        ({"id": "has space"}, "id"),
        ({"name": "  "}, "name"),
        ({"type": ""}, "type"),
        ({"type": "robot"}, "type"),
        ({"steps": []}, "steps"),
        ({"steps": [Step(name="", action="crawl", config={"start_urls": ["http://a/"]})]}, "steps[0].name"),
        ({"steps": [Step(name="x", action="transform")]}, "steps[0].action"),
        ({"steps": [Step(name="x", action="reindex", on_error="ignore")]}, "steps[0].on_error"),
        ({"steps": [Step(name="x", action="crawl")]}, "steps[0].config.start_urls"),
        (
            {"steps": [Step(name="x", action="crawl", config={"start_urls": ["ftp://a/"]})]},
            "steps[0].config.start_urls[0]",
        ),
        (
            {"steps": [Step(name="x", action="crawl", config={"start_urls": ["http://a/"], "max_depth": -1})]},
            "steps[0].config.max_depth",
        ),
        (
            {
                "steps": [
                    Step(name="x", action="crawl", config={"start_urls": ["http://a/"], "include_patterns": ["("]})
                ]
            },
            "steps[0].config.include_patterns[0]",
        ),
        (
            {"steps": [Step(name="x", action="reindex", config={"initial_backoff": "soon"})]},
            "steps[0].config.initial_backoff",
        ),
        ({"steps": [Step(name="x", action="reindex", config={"max_retries": 1.5})]}, "steps[0].config.max_retries"),
        (
            {"steps": [Step(name="x", action="crawl", config={"start_urls": ["http://a/"], "max_dept": 2})]},
            "steps[0].config.max_dept",
        ),
        ({"schedule": "every day"}, "schedule"),
        ({"schedule": "61 * * * *"}, "schedule"),
        ({"timeout": "ten minutes"}, "timeout"),
        ({"timeout": "0s"}, "timeout"),
        ({"timeout": "721h"}, "timeout"),
        ({"timeout": "99999999999999999999h"}, "timeout"),
        ({"name": "a\x00b"}, "name"),
        ({"description": "a\x00b"}, "description"),
        (
            {"steps": [Step(name="x", action="crawl", config={"start_urls": ["http://a/\x00"]})]},
            "steps[0].config.start_urls[0]",
        ),
        ({"steps": [Step(name="x", action="reindex", config={"max_retries": 1001})]}, "steps[0].config.max_retries"),
        ({"config": {"x": float("nan")}}, "config.x"),
        ({"type": "#7"}, "type"),
        ({"sources": ["nope"]}, "sources[0]"),
        ({"post_jobs": [""]}, "post_jobs[0]"),
    ],
    ids=lambda value: str(value)[:40] if not isinstance(value, str) else value,
)
def test_each_problem_names_its_field(overrides: dict[str, object], field: str) -> None:
    assert field in fields_of(definition(**overrides))


def test_every_problem_is_reported_at_once() -> None:
    d = definition(name="", schedule="bad", steps=[Step(name="s", action="nope", on_error="never")])
    assert set(fields_of(d)) >= {"name", "schedule", "steps[0].action", "steps[0].on_error"}


def test_known_sources_are_accepted() -> None:
    d = definition(sources=["python-docs"], steps=[Step(name="c", action="crawl")])
    assert fields_of(d, sources={"python-docs"}) == []


@pytest.mark.parametrize(
    ("expr", "ok"),
    [
        ("*/5 * * * *", True),
        ("0 2 * * 0", True),
        ("*/10 * * * * *", True),  # seconds first
        ("@hourly", True),
        ("* * * *", False),
        ("0 25 * * *", False),
        ("* * * * * * *", False),
    ],
)
def test_schedules(expr: str, ok: bool) -> None:
    assert (check_schedule(expr) is None) is ok


def test_self_reference_is_a_cycle() -> None:
    v = validate_definition(definition(id="a", post_jobs=["a"]), actions=ACTIONS, known_sources=set(), graph={})
    assert [(x.field, x.description) for x in v] == [("post_jobs", "cycle a -> a")]


def test_cycle_through_other_definitions_names_the_path() -> None:
    v = validate_definition(
        definition(id="a", post_jobs=["b"]), actions=ACTIONS, known_sources=set(), graph={"b": ["c"], "c": ["a"]}
    )
    assert [(x.field, x.description) for x in v] == [("post_jobs", "cycle a -> b -> c -> a")]


def test_unknown_post_jobs_are_accepted() -> None:
    assert fields_of(definition(id="a", post_jobs=["not-yet-defined"])) == []


def test_find_cycle_ignores_cycles_not_through_start() -> None:
    assert find_cycle("a", {"a": ["b"], "b": ["c"], "c": ["b"]}) is None


def test_find_cycle_returns_the_shortest_path() -> None:
    assert find_cycle("a", {"a": ["b", "c"], "b": ["d"], "d": ["a"], "c": ["a"]}) == ["a", "c", "a"]


def web(**overrides: object) -> Source:
    """A valid web source, but for `overrides`."""
    return Source(**{"id": "s", "name": "S", "type": "web", "base_url": "https://a/", **overrides})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("source", "field"),
    [
        (Source(id="s", name="", type="web", base_url="https://a/"), "name"),
        (Source(id="s", name="S", type="ftp", base_url="https://a/"), "type"),
        (Source(id="s", name="S", type="web", base_url=""), "base_url"),
        (Source(id="s", name="S", type="web", base_url="mailto:x@y"), "base_url"),
        (Source(id="s", name="S", type="web", base_url="https://a/", crawl={"concurrency": 0}), "crawl.concurrency"),
        (
            Source(id="s", name="S", type="web", base_url="https://a/", exclude_patterns=["[a-"]),
            "filters.exclude_patterns[0]",
        ),
        (
            Source(id="s", name="S", type="web", base_url="https://a/", include_patterns=["/a/", "/docs/(?!old)"]),
            "filters.include_patterns[1]",
        ),
        (
            Source(id="s", name="S", type="web", base_url="https://a/", auth_headers={"Bad Header": "x"}),
            "auth.headers.Bad Header",
        ),
        (web(auth_headers={"X-A": "a\r\nX-Evil: 1"}), "auth.headers.X-A"),
        (web(auth_headers={"X-A": "a\x00"}), "auth.headers.X-A"),
        (web(auth_cookies={"a b": "x"}), "auth.cookies.a b"),
        (web(auth_cookies={"sid": "x; admin=1"}), "auth.cookies.sid"),
        (web(auth_cookies={"sid": "x\n"}), "auth.cookies.sid"),
        (web(crawl={"rate_limit": 3_600_001}), "crawl.rate_limit"),
        (web(name="S\x00"), "name"),
        (web(base_url="https://a/\x00"), "base_url"),
        (web(type="#9"), "type"),
    ],
    ids=[
        "name", "type", "base_url", "scheme", "concurrency", "regex", "lookahead-re2-cannot-run", "header",
        "header-crlf", "header-nul", "cookie-name", "cookie-semicolon", "cookie-lf", "rate-limit", "name-nul",
        "base-url-nul", "type-number",
    ],
)  # fmt: skip
def test_source_problems_name_their_field(source: Source, field: str) -> None:
    assert field in [v.field for v in validate_source(source)]


def test_a_refused_credential_is_never_repeated_in_the_error() -> None:
    [problem] = validate_source(web(auth_headers={"Authorization": "s3cret\r\n"}))
    assert "s3cret" not in problem.field + problem.description


def test_a_thirty_day_timeout_is_the_longest() -> None:
    assert fields_of(definition(timeout="720h")) == []

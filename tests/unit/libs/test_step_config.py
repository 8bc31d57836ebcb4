from __future__ import annotations

from typing import Any

import pytest

from libs.step_config import RetryPolicy, check_step_config, parse_duration, parse_retry_policy
from quaero.v1 import crawl_job_pb2


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(3, 3.0), (0.5, 0.5), ("5s", 5.0), ("2m", 120.0), ("500ms", 0.5), ("1h30m", 5400.0), ("1.5s", 1.5)],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "soon", "5", "5 s", "-1s", True, None, -2, float("nan"), float("inf"), 10**400])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_retry_policy_reads_explicit_values() -> None:
    config = {"max_retries": 5, "initial_backoff": 3, "max_backoff": 120, "backoff_multiplier": 3.0}
    policy, problems = parse_retry_policy(config)
    assert problems == []
    assert policy == RetryPolicy(max_retries=5, initial_backoff=3.0, max_backoff=120.0, backoff_multiplier=3.0)


def test_retry_policy_defaults() -> None:
    assert parse_retry_policy({}) == (RetryPolicy(3, 2.0, 60.0, 2.0), [])


def test_retry_policy_accepts_duration_strings() -> None:
    policy, _ = parse_retry_policy({"initial_backoff": "5s", "max_backoff": "2m"})
    assert (policy.initial_backoff, policy.max_backoff) == (5.0, 120.0)


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(max_retries=5, initial_backoff=2, max_backoff=10, backoff_multiplier=2)
    assert [policy.delay(n) for n in range(1, 6)] == [2, 4, 8, 10, 10]


def test_options_of_actions_this_release_does_not_know_are_accepted() -> None:
    assert check_step_config("future_action", {"anything": 1}, "config") == []


@pytest.mark.parametrize("field", [f.name for f in crawl_job_pb2.CrawlConfig.DESCRIPTOR.fields])
def test_every_crawl_config_field_is_a_checked_option_of_the_crawl_action(field: str) -> None:
    bad = "div >" if field == "wait_for" else "not right"  # "not right" is a CSS selector
    assert check_step_config("crawl", {field: bad}, "config")[0].field == f"config.{field}"


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"render": "sometimes"}, "must be one of never, auto, always"),
        ({"render": True}, "must be one of never, auto, always"),
        ({"wait_for": "div >"}, "is not a CSS selector"),
        ({"wait_for": 7}, "must be a CSS selector string"),
        ({"wait_for": "x" * 1001}, "at most 1000 characters"),
        ({"wait_for": "#a\nb"}, "must be a CSS selector such as"),
    ],
)
def test_render_options_are_checked_at_save(config: dict[str, Any], problem: str) -> None:
    (violation,) = check_step_config("crawl", config, "config")
    assert violation.field == f"config.{next(iter(config))}" and problem in violation.description


@pytest.mark.parametrize(
    "config", [{"render": m} for m in ("never", "auto", "always")] + [{"wait_for": "main article h1"}]
)
def test_good_render_options_pass(config: dict[str, Any]) -> None:
    assert check_step_config("crawl", config, "config") == []


@pytest.mark.parametrize(
    ("key", "low", "high"),
    [("max_depth", 0, 100), ("max_pages", 1, 10_000_000), ("concurrency", 1, 1_000), ("rate_limit", 0, 3_600_000)],
)
def test_crawl_numbers_are_checked_against_their_documented_range(key: str, low: int, high: int) -> None:
    assert check_step_config("crawl", {key: low}, "config") == []
    assert check_step_config("crawl", {key: float(high)}, "config") == []  # a Struct's numbers are doubles
    for bad in (low - 1, high + 1, 10**12, 99999999999999999999, 1.5, float("nan"), float("inf"), True, "2"):
        [problem] = check_step_config("crawl", {key: bad}, "config")
        assert problem.field == f"config.{key}", bad
        assert problem.description == f"must be a whole number from {low} to {high:,}"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"max_retries": 101}, "max_retries"),
        ({"max_retries": 1001}, "max_retries"),
        ({"max_retries": float("nan")}, "max_retries"),
        ({"initial_backoff": "25h"}, "initial_backoff"),
        ({"max_backoff": 86401}, "max_backoff"),
        ({"max_backoff": float("inf")}, "max_backoff"),
        ({"max_backoff": 10**400}, "max_backoff"),
        ({"backoff_multiplier": 1e308}, "backoff_multiplier"),
        ({"backoff_multiplier": 0.5}, "backoff_multiplier"),
        ({"backoff_multiplier": float("nan")}, "backoff_multiplier"),
    ],
    ids=[
        "retries-101", "retries-1001", "retries-nan", "backoff-25h", "max-backoff-over-a-day", "backoff-infinite",
        "backoff-huge-int", "multiplier-1e308", "multiplier-under-1", "multiplier-nan",
    ],
)  # fmt: skip
def test_retry_numbers_out_of_range_are_refused_and_the_default_kept(config: dict[str, object], field: str) -> None:
    policy, [problem] = parse_retry_policy(config)
    assert problem.field == f"config.{field}"
    assert getattr(policy, field) == getattr(RetryPolicy(), field)


def test_retry_numbers_at_the_ends_of_their_ranges_are_accepted() -> None:
    config = {"max_retries": 100, "initial_backoff": "24h", "max_backoff": 86400, "backoff_multiplier": 10}
    assert parse_retry_policy(config) == (RetryPolicy(100, 86400.0, 86400.0, 10.0), [])


def test_an_unclosed_ipv6_host_is_a_bad_url_not_an_error() -> None:
    [problem] = check_step_config("crawl", {"start_urls": ["http://[::1/"]}, "config")
    assert problem.field == "config.start_urls[0]"


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("/docs/(?!old/)", "invalid perl operator: (?!"),
        ("(?<=/)v2", "invalid perl operator: (?<="),
        (r"/(\w+)/\1/", r"invalid escape sequence: \1"),
        ("/docs/.*+", "bad repetition operator: *+"),
        (r"\.html\Z", r"invalid escape sequence: \Z"),
        ("/docs/(", "missing ): /docs/("),
    ],
    ids=["lookahead", "lookbehind", "backreference", "possessive", "python-end-anchor", "unbalanced"],
)
def test_patterns_re2_cannot_run_are_refused_naming_the_pattern(pattern: str, why: str) -> None:
    (violation,) = check_step_config("crawl", {"include_patterns": ["/docs/", pattern]}, "steps[0].config")

    assert violation.field == "steps[0].config.include_patterns[1]"
    assert violation.description.startswith(f"is not a valid regular expression: {why}")


def test_the_refusal_of_python_only_syntax_says_what_re2_lacks() -> None:
    (violation,) = check_step_config("crawl", {"exclude_patterns": ["(?<=/)v2"]}, "config")

    assert "RE2 syntax: no lookaround, backreferences" in violation.description


@pytest.mark.parametrize("value", ["include", "skip", "only"])
def test_each_sitemap_mode_is_accepted(value: str) -> None:
    assert check_step_config("crawl", {"sitemap": value}, "config") == []


@pytest.mark.parametrize("value", ["all", "", "INCLUDE", True, 1, ["only"]], ids=repr)
def test_any_other_sitemap_value_is_refused_naming_the_field_and_the_choices(value: object) -> None:
    (violation,) = check_step_config("crawl", {"sitemap": value}, "config")
    assert violation.field == "config.sitemap"
    assert "include, skip, only" in violation.description

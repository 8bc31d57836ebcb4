"""The REST API for job definitions and sources, through a real executor and crawler, on
embedded SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.services import Stack, running_stack

CRAWL = {
    "id": "docs",
    "name": "Docs",
    "type": "crawler",
    "steps": [{"name": "crawl", "action": "crawl", "config": {"start_urls": ["https://example.com/"], "max_depth": 2}}],
}
TOML = """
id = "nightly"
name = "Nightly"
type = "crawler"
schedule = "0 3 * * *"
timeout = "30m"
post_jobs = ["summary"]

[[steps]]
name = "crawl"
action = "crawl"
on_error = "retry"

[steps.config]
start_urls = ["https://example.com/docs/"]
max_depth = 3
max_pages = 250
max_retries = 2
initial_backoff = "5s"
"""


@pytest.fixture
async def stack(backend: dict[str, Any]) -> AsyncIterator[Stack]:
    async with running_stack(backend) as s:
        yield s


def fields(response: Any) -> list[str]:
    body = response.json()
    return [d["field"] for d in body["error"]["details"]]


async def test_create_json_reads_back_the_same_values(stack: Stack) -> None:
    created = await stack.http.post("/api/job-definitions", json=CRAWL)
    assert created.status_code == 201, created.text
    got = (await stack.http.get("/api/job-definitions/docs")).json()
    assert got == created.json()
    assert got["steps"][0]["config"] == {"start_urls": ["https://example.com/"], "max_depth": 2}
    assert isinstance(got["steps"][0]["config"]["max_depth"], int)
    assert got["enabled"] is True
    assert got["steps"][0]["on_error"] == "fail"
    assert got["created_at"].endswith("Z")


async def test_create_toml_reads_back_the_same_values(stack: Stack) -> None:
    created = await stack.http.post("/api/job-definitions", content=TOML, headers={"Content-Type": "application/toml"})
    assert created.status_code == 201, created.text
    got = (await stack.http.get("/api/job-definitions/nightly")).json()
    assert got["schedule"] == "0 3 * * *" and got["timeout"] == "30m"
    assert got["steps"][0]["on_error"] == "retry"
    config = got["steps"][0]["config"]
    assert config == {
        "start_urls": ["https://example.com/docs/"],
        "max_depth": 3,
        "max_pages": 250,
        "max_retries": 2,
        "initial_backoff": "5s",
    }
    assert all(isinstance(config[k], int) for k in ("max_depth", "max_pages", "max_retries"))
    assert got["post_jobs"] == ["summary"]  # unknown post-job ids are accepted
    assert got["enabled"] is True


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": None}, "name"),
        ({"steps": [{"name": "s", "action": "transform"}]}, "steps[0].action"),
        ({"schedule": "every monday"}, "schedule"),
        ({"steps": [{"name": "s", "action": "reindex", "on_error": "explode"}]}, "steps[0].on_error"),
        ({"type": "robot"}, "type"),
        ({"steps": []}, "steps"),
        ({"timeout": "forever"}, "timeout"),
        (
            {"steps": [{"name": "s", "action": "crawl", "config": {"start_urls": "https://x/"}}]},
            "steps[0].config.start_urls",
        ),
        ({"enabled": "yes"}, "enabled"),
    ],
    ids=[
        "missing-name",
        "unknown-action",
        "bad-cron",
        "bad-on-error",
        "bad-type",
        "no-steps",
        "bad-timeout",
        "urls-not-list",
        "enabled-string",
    ],
)
async def test_invalid_definitions_are_400_naming_the_field(stack: Stack, change: dict[str, Any], field: str) -> None:
    body = {**CRAWL, **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = await stack.http.post("/api/job-definitions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert field in fields(response)
    assert (await stack.http.get("/api/job-definitions/docs")).status_code == 404  # nothing half-written


async def test_duplicate_id_is_409(stack: Stack) -> None:
    assert (await stack.http.post("/api/job-definitions", json=CRAWL)).status_code == 201
    again = await stack.http.post("/api/job-definitions", json={**CRAWL, "name": "Changed"})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "ALREADY_EXISTS"
    assert (await stack.http.get("/api/job-definitions/docs")).json()["name"] == "Docs"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_unknown_id_is_404(stack: Stack, method: str) -> None:
    response = await stack.http.request(method, "/api/job-definitions/ghost", json=CRAWL if method == "PUT" else None)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_post_job_cycle_is_400_naming_the_cycle(stack: Stack) -> None:
    a = {**CRAWL, "id": "a", "post_jobs": ["b"]}
    b = {**CRAWL, "id": "b", "post_jobs": ["a"]}
    assert (await stack.http.post("/api/job-definitions", json=a)).status_code == 201
    response = await stack.http.post("/api/job-definitions", json=b)
    assert response.status_code == 400
    [detail] = response.json()["error"]["details"]
    assert detail == {"field": "post_jobs", "message": "cycle b -> a -> b"}


async def test_self_reference_is_400(stack: Stack) -> None:
    response = await stack.http.post("/api/job-definitions", json={**CRAWL, "post_jobs": ["docs"]})
    assert response.status_code == 400
    assert response.json()["error"]["details"] == [{"field": "post_jobs", "message": "cycle docs -> docs"}]


async def test_update_replaces_and_keeps_created_at(stack: Stack) -> None:
    created = (await stack.http.post("/api/job-definitions", json=CRAWL)).json()
    updated = await stack.http.put("/api/job-definitions/docs", json={**CRAWL, "id": "ignored", "enabled": False})
    assert updated.status_code == 200
    body = updated.json()
    assert body["id"] == "docs" and body["enabled"] is False and body["created_at"] == created["created_at"]


async def test_delete_then_gone(stack: Stack) -> None:
    await stack.http.post("/api/job-definitions", json=CRAWL)
    assert (await stack.http.delete("/api/job-definitions/docs")).status_code == 204
    assert (await stack.http.get("/api/job-definitions/docs")).status_code == 404


async def test_list_shape_filters_and_pagination(stack: Stack) -> None:
    for i in range(3):
        await stack.http.post("/api/job-definitions", json={**CRAWL, "id": f"d{i}", "name": f"D{i}", "enabled": i != 1})
    body = (
        await stack.http.get("/api/job-definitions", params={"limit": 1, "order_by": "name", "order_dir": "asc"})
    ).json()
    assert [d["id"] for d in body["job_definitions"]] == ["d0"]
    assert (body["total_count"], body["limit"], body["offset"]) == (3, 1, 0)
    disabled = (await stack.http.get("/api/job-definitions", params={"enabled": "false"})).json()
    assert [d["id"] for d in disabled["job_definitions"]] == ["d1"] and disabled["total_count"] == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"order_by": "id; drop"}, "order_by"),
        ({"order_dir": "up"}, "order_dir"),
    ],
)
async def test_bad_list_parameters_are_400(stack: Stack, params: dict[str, Any], field: str) -> None:
    response = await stack.http.get("/api/job-definitions", params=params)
    assert response.status_code == 400
    assert fields(response) == [field]


async def test_unsupported_and_malformed_bodies(stack: Stack) -> None:
    bad_json = await stack.http.post("/api/job-definitions", content="{", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400 and fields(bad_json) == ["body"]
    bad_toml = await stack.http.post(
        "/api/job-definitions", content="id =", headers={"Content-Type": "application/toml"}
    )
    assert bad_toml.status_code == 400
    xml = await stack.http.post("/api/job-definitions", content="<a/>", headers={"Content-Type": "application/xml"})
    assert xml.status_code == 415 and xml.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


async def test_unknown_routes_and_methods_use_the_error_shape(stack: Stack) -> None:
    missing = await stack.http.get("/api/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
    wrong = await stack.http.patch("/api/job-definitions")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


async def test_request_id_is_echoed(stack: Stack) -> None:
    response = await stack.http.get("/healthz", headers={"X-Request-ID": "abc123"})
    assert response.headers["x-request-id"] == "abc123"
    assert (await stack.http.get("/healthz")).headers["x-request-id"]


async def test_sources_crud_never_returns_secrets(stack: Stack) -> None:
    body = {
        "id": "python-docs",
        "name": "Python docs",
        "type": "web",
        "base_url": "https://docs.python.org/3/",
        "crawl": {"max_depth": 1, "rate_limit": 250},
        "filters": {"include_patterns": ["/3/"]},
        "auth": {"headers": {"Authorization": "Bearer s3cret"}, "cookies": {"session": "c00kie"}},
    }
    created = await stack.http.post("/api/sources", json=body)
    assert created.status_code == 201, created.text
    assert "s3cret" not in created.text and "c00kie" not in created.text
    got = (await stack.http.get("/api/sources/python-docs")).json()
    assert got["has_auth"] is True and "auth" not in got
    assert got["crawl"]["max_depth"] == 1 and got["crawl"]["rate_limit"] == 250
    # A PUT without auth keeps it; one with auth replaces it.
    kept = (await stack.http.put("/api/sources/python-docs", json={**body, "auth": None, "name": "Py"})).json()
    assert kept["has_auth"] is True and kept["name"] == "Py"
    listed = await stack.http.get("/api/sources")
    assert "s3cret" not in listed.text and listed.json()["total_count"] == 1
    # A definition may name it; a missing source is refused.
    definition = {**CRAWL, "sources": ["python-docs"], "steps": [{"name": "c", "action": "crawl"}]}
    assert (await stack.http.post("/api/job-definitions", json=definition)).status_code == 201
    missing = await stack.http.post("/api/job-definitions", json={**definition, "id": "x", "sources": ["nope"]})
    assert fields(missing) == ["sources[0]"]
    assert (await stack.http.delete("/api/sources/python-docs")).status_code == 204
    assert (await stack.http.get("/api/sources/python-docs")).status_code == 404


async def test_sources_get_an_id_when_none_is_given(stack: Stack) -> None:
    created = await stack.http.post("/api/sources", json={"name": "S", "base_url": "https://s.example/"})
    assert created.status_code == 201
    assert created.json()["id"] and created.json()["type"] == "web"


async def test_invalid_source_is_400(stack: Stack) -> None:
    response = await stack.http.post("/api/sources", json={"name": "", "base_url": "nope", "crawl": {"concurrency": 0}})
    assert response.status_code == 400
    assert set(fields(response)) == {"name", "base_url", "crawl.concurrency"}


async def test_patterns_re2_cannot_run_are_400_naming_the_pattern(stack: Stack) -> None:
    config = {"start_urls": ["https://example.com/"], "include_patterns": ["/docs/", "/docs/(?!old/)"]}
    definition = {**CRAWL, "steps": [{"name": "crawl", "action": "crawl", "config": config}]}
    source = {"name": "Docs", "base_url": "https://example.com/", "filters": {"exclude_patterns": [r"/(\w+)/\1/"]}}

    refused = [
        await stack.http.post("/api/job-definitions", json=definition),
        await stack.http.post("/api/sources", json=source),
    ]

    assert [r.status_code for r in refused] == [400, 400]
    details = [d for r in refused for d in r.json()["error"]["details"]]
    assert [d["field"] for d in details] == ["steps[0].config.include_patterns[1]", "filters.exclude_patterns[0]"]
    assert details[0]["message"].startswith("is not a valid regular expression: invalid perl operator: (?!")
    assert details[1]["message"].startswith("is not a valid regular expression: invalid escape sequence: \\1")
    assert (await stack.http.get("/api/job-definitions/docs")).status_code == 404


async def test_openapi_and_docs_are_served(stack: Stack) -> None:
    spec = (await stack.http.get("/openapi.json")).json()
    assert "/api/job-definitions" in spec["paths"]
    assert "JobDefinitionInput" in spec["components"]["schemas"]
    assert (await stack.http.get("/docs")).status_code == 200


@pytest.mark.parametrize("hostile", ["a" * 100, "café", "two words"], ids=["too-long", "non-ascii", "space"])
async def test_unusable_request_ids_are_replaced_and_crawls_still_run(backend: dict[str, Any], hostile: str) -> None:
    """A caller's X-Request-ID travels to every service and into the crawler's tables: one that
    could not (too long for the column, not valid in gRPC metadata) is replaced, never fatal."""
    from tests.support.runs import define, wait_for
    from tests.support.site import small_site

    site = small_site(2)
    async with site.serve(), running_stack(backend) as stack:
        await define(
            stack, {"id": "rid", "steps": [{"name": "c", "action": "crawl", "config": {"start_urls": [site.url()]}}]}
        )
        started = await stack.http.post("/api/job-definitions/rid/execute", headers={"X-Request-ID": hostile.encode()})
        assert started.status_code == 202, started.text
        assert started.headers["x-request-id"] != hostile
        assert (await wait_for(stack, started.json()["execution_id"]))["status"] == "completed"

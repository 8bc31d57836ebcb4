"""The OpenAPI document: every route of the design, an example for every JSON answer (each one
valid against the route's model), and nothing FastAPI documents that Quaero never answers."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import APIRoute

from services.gateway.app import create_app
from services.gateway.routes import definitions, documents, executions, jobs, sources
from services.gateway.routes import operations as operations_routes

ROUTES = [
    ("get", "/api/job-definitions"),
    ("post", "/api/job-definitions"),
    ("get", "/api/job-definitions/{id}"),
    ("put", "/api/job-definitions/{id}"),
    ("delete", "/api/job-definitions/{id}"),
    ("post", "/api/job-definitions/{id}/execute"),
    ("get", "/api/sources"),
    ("post", "/api/sources"),
    ("get", "/api/sources/{id}"),
    ("put", "/api/sources/{id}"),
    ("delete", "/api/sources/{id}"),
    ("get", "/api/executions"),
    ("get", "/api/executions/{id}"),
    ("post", "/api/executions/{id}/cancel"),
    ("get", "/api/executions/{id}/events"),
    ("get", "/api/jobs"),
    ("get", "/api/jobs/{id}"),
    ("post", "/api/jobs/{id}/cancel"),
    ("post", "/api/jobs/{id}/rerun"),
    ("delete", "/api/jobs/{id}"),
    ("get", "/api/jobs/{id}/logs"),
    ("get", "/api/jobs/{id}/urls"),
    ("get", "/api/jobs/{id}/documents"),
    ("get", "/api/jobs/{id}/events"),
    ("get", "/api/jobs/stats"),
    ("get", "/api/documents"),
    ("get", "/api/documents/{id}"),
    ("get", "/api/documents/{id}/chunks"),
    ("get", "/api/sources/{id}/llms.txt"),
    ("get", "/api/sources/{id}/llms-full.txt"),
    ("get", "/healthz"),
    ("get", "/metrics"),
]


@pytest.fixture(scope="module")
def app() -> Any:
    return create_app(None, None)  # type: ignore[arg-type]  # no calls are made


@pytest.fixture(scope="module")
def spec(app: Any) -> dict[str, Any]:
    return app.openapi()  # type: ignore[no-any-return]


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, item in spec["paths"].items() for method, op in item.items()]


def test_every_route_of_the_design_is_documented(spec: dict[str, Any]) -> None:
    documented = {(method, path) for method, path, _ in operations(spec)}

    assert set(ROUTES) <= documented
    assert all(op.get("summary") for _, _, op in operations(spec))


def test_every_json_answer_has_an_example(spec: dict[str, Any]) -> None:
    missing = []
    for method, path, op in operations(spec):
        for status, response in op["responses"].items():
            json_body = response.get("content", {}).get("application/json")
            if status.startswith("2") and json_body is not None and "example" not in json_body:
                missing.append(f"{method} {path} {status}")

    assert missing == []


def test_examples_are_valid_against_their_models() -> None:
    checked = 0
    routes = [
        r for m in (definitions, sources, executions, jobs, documents, operations_routes) for r in m.router.routes
    ]
    for route in routes:
        if not isinstance(route, APIRoute) or route.response_model is None:
            continue
        for status, response in route.responses.items():
            example = response.get("content", {}).get("application/json", {}).get("example")
            if example is not None and str(status).startswith("2"):
                route.response_model.model_validate(example)
                checked += 1

    assert checked >= 20


def test_no_undocumented_422_and_errors_have_one_shape(spec: dict[str, Any]) -> None:
    for method, path, op in operations(spec):
        assert "422" not in op["responses"], f"{method} {path}"
        for status in ("400", "404"):
            if status in op["responses"]:
                content = op["responses"][status]["content"]
                assert content == {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def test_sse_routes_are_documented_as_event_streams(spec: dict[str, Any]) -> None:
    for path in ("/api/jobs/{id}/events", "/api/executions/{id}/events"):
        op = spec["paths"][path]["get"]
        assert list(op["responses"]["200"]["content"]) == ["text/event-stream"]
        names = {p["name"] for p in op["parameters"]}
        assert {"Last-Event-ID", "last_event_id"} <= names


def test_list_items_never_carry_markdown(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]

    assert "markdown" not in schemas["DocumentSummary"]["properties"]
    assert "markdown" in schemas["Document"]["properties"]
    assert schemas["DocumentList"]["properties"]["documents"]["items"] == {
        "$ref": "#/components/schemas/DocumentSummary"
    }

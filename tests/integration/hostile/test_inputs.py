"""Hostile request bodies, path ids and queries through a real stack, on SQLite and PostgreSQL:
every one is a 4xx (gRPC INVALID_ARGUMENT) naming the field, nothing is stored, `/healthz`
keeps answering within a second. The same inputs through REST JSON, REST TOML and gRPC, then
the other ways in (definition files at start-up, `quaero apply`), and a crawl job stored with
numbers out of range by an older release."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
import httpx
import pytest
import pytest_asyncio
from google.rpc import status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from libs.db import Database
from libs.errors import violations_from_status
from libs.proto_json import from_dict
from quaero.v1 import crawler_service_pb2 as cr
from quaero.v1 import crawler_service_pb2_grpc, executor_service_pb2_grpc, job_definition_pb2, source_pb2
from quaero.v1 import executor_service_pb2 as ex
from services.crawler.store import CrawlJobRow
from services.gateway.bodies import MAX_BODY
from tests.integration.cli.conftest import invoke
from tests.support.hostile import HealthWatch, health_answers, memory_stays_under
from tests.support.runs import define, execute, jobs, wait_for
from tests.support.services import Stack, common_settings, running_stack
from tests.support.site import small_site

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOML = {"Content-Type": "application/toml"}
UNREACHABLE = "http://127.0.0.1:9/"


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgres"])
async def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """One stack per backend for the module: every test uses ids of its own."""
    url = request.getfixturevalue("postgres").create() if request.param == "postgres" else None
    common = common_settings(url, tmp_path_factory.mktemp("data"))
    try:
        async with running_stack(common) as s:
            yield s
    finally:
        if url:
            request.getfixturevalue("postgres").drop(url)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def embedded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """A stack on SQLite, for what only the gateway handles (the same on every backend)."""
    async with running_stack(common_settings(None, tmp_path_factory.mktemp("embedded"))) as s:
        yield s


def healthy(stack: Stack) -> contextlib.AbstractAsyncContextManager[HealthWatch]:
    return health_answers(stack.base_url)


def fields(response: httpx.Response) -> list[str]:
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"]), body
    return [d["field"] for d in body["error"]["details"]]


def grpc_fields(error: grpc.aio.AioRpcError) -> list[str]:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return [v.field for v in violations_from_status(status_pb2.Status.FromString(value))]
    return []


def definition_toml(definition_id: str, top: str = "", step_config: str = "") -> str:
    """A crawl definition in the original TOML shape, with lines of its own at the top and in the
    step's config (start_urls too, or a valid one)."""
    start_urls = "" if "start_urls" in step_config else f'start_urls = ["{UNREACHABLE}"]\n'
    return (
        f'id = "{definition_id}"\nname = "Hostile"\ntype = "crawler"\n{top}\n'
        f'[[steps]]\nname = "crawl"\naction = "crawl"\n\n[steps.config]\n{start_urls}{step_config}\n'
    )


def nested_toml(levels: int, *, table: bool) -> str:
    """`levels` inline tables ({a = {a = …}}) or arrays ([[…]]) one inside the other."""
    return "{a = " * levels + "1" + "}" * levels if table else "[" * levels + "]" * levels


def deep_path(prefix: str, levels: int, *, table: bool) -> str:
    """Where a document's 33rd level is, for nesting that starts at `prefix` (level 2)."""
    return prefix + (".a" if table else "[0]") * levels


# (TOML at the top, TOML in the step's config, the field named): each sent as TOML, and as the
# same document in JSON (NaN and Infinity written as JavaScript would).
REFUSED = [
    pytest.param("", "max_depth = 1000000000000", "steps[0].config.max_depth", id="max-depth-1e12"),
    pytest.param("", "max_pages = 99999999999999999999", "steps[0].config.max_pages", id="max-pages-20-digits"),
    pytest.param("", "rate_limit = 1000000000000", "steps[0].config.rate_limit", id="rate-limit-1e12"),
    pytest.param("", "concurrency = 1001", "steps[0].config.concurrency", id="concurrency-1001"),
    pytest.param("", "max_retries = 1001", "steps[0].config.max_retries", id="max-retries-1001"),
    pytest.param("", 'initial_backoff = "25h"', "steps[0].config.initial_backoff", id="backoff-25h"),
    pytest.param("", "max_backoff = 86401", "steps[0].config.max_backoff", id="max-backoff-over-a-day"),
    pytest.param("", "backoff_multiplier = 1e308", "steps[0].config.backoff_multiplier", id="multiplier-1e308"),
    pytest.param('timeout = "721h"', "", "timeout", id="timeout-over-30-days"),
    pytest.param("", "max_depth = nan", "steps[0].config.max_depth", id="nan"),
    pytest.param("[config]\nx = inf", "", "config.x", id="infinity"),
    pytest.param(f"config = {nested_toml(50, table=True)}", "", deep_path("config", 31, table=True), id="tables-50"),
    pytest.param(
        f"[config]\nx = {nested_toml(50, table=False)}", "", deep_path("config.x", 30, table=False), id="arrays-50"
    ),
    pytest.param('description = "a\\u0000b"', "", "description", id="nul-in-description"),
    pytest.param(
        "", 'start_urls = ["http://127.0.0.1:9/\\u0000"]', "steps[0].config.start_urls[0]", id="nul-in-start-url"
    ),
]


def _as_json(toml_text: str) -> bytes:
    return json.dumps(tomllib.loads(toml_text)).encode()


@pytest.mark.parametrize("fmt", ["json", "toml"])
@pytest.mark.parametrize(("top", "step_config", "field"), REFUSED)
async def test_refused_definitions_are_400_naming_the_field_and_store_nothing(
    stack: Stack, request: pytest.FixtureRequest, fmt: str, top: str, step_config: str, field: str
) -> None:
    definition_id = f"refused-{request.node.callspec.id}"
    text = definition_toml(definition_id, top, step_config)
    body, headers = (text.encode(), TOML) if fmt == "toml" else (_as_json(text), {"Content-Type": "application/json"})

    async with healthy(stack):
        created = await stack.http.post("/api/job-definitions", content=body, headers=headers)
        replaced = await stack.http.put(f"/api/job-definitions/{definition_id}", content=body, headers=headers)

    for response in (created, replaced):
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "INVALID_ARGUMENT"
        assert field in fields(response)
    assert (await stack.http.get(f"/api/job-definitions/{definition_id}")).status_code == 404


async def test_nesting_of_exactly_32_levels_is_stored_and_reads_back(stack: Stack) -> None:
    # The document (1), `config` (2) and 30 tables inside it.
    text = definition_toml("nested-32", f"config = {nested_toml(31, table=True)}")

    created = await stack.http.post("/api/job-definitions", content=text, headers=TOML)

    assert created.status_code == 201, created.text
    got = (await stack.http.get("/api/job-definitions/nested-32")).json()
    assert got["config"] == tomllib.loads(text)["config"]


@pytest.mark.parametrize(
    "change",
    [
        {"id": "i" * 5000},
        {"steps": [{"name": "s", "action": "crawl", "config": {"start_urls": [UNREACHABLE], "k" * 5000: 1}}]},
    ],
    ids=["id-5000", "config-key-5000"],
)
async def test_a_5000_character_id_or_key_is_a_400_not_a_429(stack: Stack, change: dict[str, Any]) -> None:
    body = {"id": "long", "name": "N", "type": "crawler", "steps": [{"name": "s", "action": "reindex"}], **change}
    response = await stack.http.post("/api/job-definitions", json=body)
    assert response.status_code == 400, response.text
    [field] = fields(response)  # cut short (it travelled in gRPC trailers), but there
    assert field == "id" or field.startswith("steps[0].config.kkk")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (rb'"name": "\ud800"', "name"),
        (rb'"name": "a\u0000b"', "name"),
        (rb'"description": "\udc80 and more"', "description"),
        (rb'"config": {"\ud800": 1}', "config"),
        (rb'"config": {"x": NaN}', "config.x"),
        (rb'"config": {"x": -Infinity}', "config.x"),
        (rb'"config": {"x": 1e999}', "config.x"),
    ],
    ids=["surrogate-name", "nul-name", "surrogate-description", "surrogate-key", "nan", "minus-infinity", "1e999"],
)
async def test_json_that_is_no_text_or_number_is_400_naming_the_field(
    stack: Stack, request: pytest.FixtureRequest, raw: bytes, field: str
) -> None:
    definition_id = f"json-{request.node.callspec.id}"
    name = b"" if raw.startswith(b'"name"') else b'"name": "N", '
    head = b'{"id": "%s", "type": "crawler", "steps": [{"name": "s", "action": "reindex"}], ' % definition_id.encode()
    body = head + name + raw + b"}"
    async with healthy(stack):
        response = await stack.http.post(
            "/api/job-definitions", content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400, response.text
    assert field in fields(response)
    assert (await stack.http.get(f"/api/job-definitions/{definition_id}")).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"auth": {"headers": {"Authorization": "Bearer x\r\nX-Injected: 1"}}}, "auth.headers.Authorization"),
        ({"auth": {"headers": {"X-Token": "x\nmore"}}}, "auth.headers.X-Token"),
        ({"auth": {"headers": {"X-Token": "x\x00"}}}, "auth.headers.X-Token"),
        ({"auth": {"headers": {"Bad Name": "x"}}}, "auth.headers.Bad Name"),
        ({"auth": {"cookies": {"sid": "x\r\nSet-Cookie: a=b"}}}, "auth.cookies.sid"),
        ({"auth": {"cookies": {"sid": "x; admin=1"}}}, "auth.cookies.sid"),
        ({"auth": {"cookies": {"s id": "x"}}}, "auth.cookies.s id"),
        ({"crawl": {"max_depth": 101}}, "crawl.max_depth"),
        ({"crawl": {"rate_limit": 2**31 - 1}}, "crawl.rate_limit"),
        ({"crawl": {"max_pages": 0}}, "crawl.max_pages"),
        ({"name": "a\x00"}, "name"),
        ({"base_url": "http://[::1/"}, "base_url"),
    ],
    ids=[
        "header-crlf", "header-lf", "header-nul", "header-name", "cookie-crlf", "cookie-semicolon", "cookie-name",
        "max-depth-101", "rate-limit-int32-max", "max-pages-0", "nul-name", "unclosed-ipv6",
    ],
)  # fmt: skip
async def test_refused_sources_are_400_naming_the_field_and_store_nothing(
    stack: Stack, request: pytest.FixtureRequest, body: dict[str, Any], field: str
) -> None:
    source_id = f"source-{request.node.callspec.id}"
    source = {"id": source_id, "name": "S", "base_url": UNREACHABLE, **body}
    async with healthy(stack):
        response = await stack.http.post("/api/sources", json=source)
    assert response.status_code == 400, response.text
    assert field in fields(response)
    assert "Injected" not in response.text and "admin" not in response.text  # secrets are never echoed
    assert (await stack.http.get(f"/api/sources/{source_id}")).status_code == 404


async def test_a_refused_source_file_in_toml_is_400_too(stack: Stack) -> None:
    text = f'kind = "source"\nid = "toml-source"\nname = "S"\nbase_url = "{UNREACHABLE}"\n[crawl]\nmax_depth = 101\n'
    response = await stack.http.post("/api/sources", content=text, headers=TOML)
    assert response.status_code == 400, response.text
    assert fields(response) == ["crawl.max_depth"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/job-definitions/a%00b",
        "/api/job-definitions/" + "a" * 5000,
        "/api/sources/" + "s" * 256,
        "/api/executions/e%00",
        "/api/jobs/j%00",
        "/api/jobs/" + "j" * 5000 + "/logs",
        "/api/documents/d%00",
        "/api/documents?q=a%00b",
        "/api/documents?q=" + "pelican+" * 63,
        "/api/documents?job_id=" + "j" * 256,
        "/api/jobs?execution_id=e%00",
        "/api/executions?parent_execution_id=" + "p" * 5000,
        "/api/jobs/j/urls?reason=a%00",
    ],
    ids=[
        "definition-nul", "definition-5000", "source-256", "execution-nul", "job-nul", "job-logs-5000",
        "document-nul", "q-nul", "q-504", "job-filter-256", "execution-filter-nul", "parent-filter-5000",
        "reason-nul",
    ],
)  # fmt: skip
async def test_bad_path_ids_and_queries_are_400_naming_the_parameter(stack: Stack, path: str) -> None:
    async with healthy(stack):
        response = await stack.http.get(path)
    assert response.status_code == 400, response.text
    [field] = fields(response)
    assert field == (path.split("?")[1].split("=", maxsplit=1)[0] if "?" in path else "id")


# ---------------------------------------------------------------------------------------- gRPC


def _frame(field_number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, for requests a client builds without copying them (a
    copy is parsed, and protobuf will not parse what is nested this deep)."""
    size, varint = len(payload), b""
    while True:
        byte, size = size & 0x7F, size >> 7
        varint += bytes([byte | (0x80 if size else 0)])
        if not size:
            return bytes([field_number << 3 | 2]) + varint + payload


async def _raw_call(port: int, method: str, payload: bytes) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)(payload)


# Over gRPC a document nested 50 levels deep does not even decode (protobuf's limit is 100
# messages, and each level of a Struct is three): it is refused as a whole. Up to that, the field.
GRPC_REFUSED = [
    *(p for p in REFUSED if p.id not in ("tables-50", "arrays-50")),
    pytest.param(f"config = {nested_toml(32, table=True)}", "", deep_path("config", 31, table=True), id="tables-33"),
    pytest.param(
        f"[config]\nx = {nested_toml(31, table=False)}", "", deep_path("config.x", 30, table=False), id="arrays-33"
    ),
    pytest.param(f"config = {nested_toml(50, table=True)}", "", "request", id="tables-50"),
]


@pytest.mark.parametrize(("top", "step_config", "field"), GRPC_REFUSED)
async def test_refused_definitions_over_grpc_are_invalid_argument_naming_the_field(
    stack: Stack, request: pytest.FixtureRequest, top: str, step_config: str, field: str
) -> None:
    definition_id = f"grpc-{request.node.callspec.id}"
    text = definition_toml(definition_id, top, step_config)
    message = from_dict(tomllib.loads(text), job_definition_pb2.JobDefinition)
    create = _frame(1, message.SerializeToString())  # CreateJobDefinitionRequest.job_definition

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _raw_call(stack.executor_port, "/quaero.v1.ExecutorService/CreateJobDefinition", create)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    assert field in grpc_fields(raised.value)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stack.executor.GetJobDefinition(ex.GetJobDefinitionRequest(id=definition_id))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_request_nested_past_what_protobuf_decodes_is_invalid_argument(stack: Stack) -> None:
    message = job_definition_pb2.JobDefinition(
        id="too-deep", name="N", type=job_definition_pb2.JOB_DEFINITION_TYPE_CRAWLER
    )
    value: Any = 1
    for _ in range(60):
        value = {"a": value}
    message.config.update(value)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _raw_call(
            stack.executor_port,
            "/quaero.v1.ExecutorService/CreateJobDefinition",
            _frame(1, message.SerializeToString()),
        )

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_fields(raised.value) == ["request"]


async def test_a_string_that_is_not_utf8_over_grpc_is_invalid_argument(stack: Stack) -> None:
    lone_surrogate = b"\xed\xa0\x80"  # how a client that does not check would encode "\ud800"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _raw_call(stack.crawler_port, "/quaero.v1.CrawlerService/GetCrawlJob", _frame(1, lone_surrogate))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_fields(raised.value) == ["request"]


@pytest.mark.parametrize(
    ("definition", "field"),
    [
        ({"name": "a\x00b"}, "name"),
        ({"steps": [{"name": "s", "action": "reindex", "on_error": 77}]}, "steps[0].on_error"),
        ({"type": 42}, "type"),
    ],
    ids=["nul-name", "unknown-on-error-number", "unknown-type-number"],
)
async def test_definition_fields_over_grpc_are_checked_like_rest(
    stack: Stack, definition: dict[str, Any], field: str
) -> None:
    message = job_definition_pb2.JobDefinition(
        id="grpc-fields", name="N", type=job_definition_pb2.JOB_DEFINITION_TYPE_CRAWLER,
        steps=[job_definition_pb2.JobStep(name="s", action="reindex")],
    )  # fmt: skip
    for key, value in definition.items():
        if key == "steps":
            del message.steps[:]
            message.steps.add(**value[0])
        else:
            setattr(message, key, value)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stack.executor.CreateJobDefinition(ex.CreateJobDefinitionRequest(job_definition=message))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in grpc_fields(raised.value)


async def test_a_source_over_grpc_with_crlf_in_a_header_is_invalid_argument(stack: Stack) -> None:
    source = source_pb2.Source(id="grpc-source", name="S", base_url=UNREACHABLE, type=source_pb2.SOURCE_TYPE_WEB)
    source.auth.headers["X-Token"] = "x\r\nX-Injected: 1"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stack.executor.CreateSource(ex.CreateSourceRequest(source=source))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_fields(raised.value) == ["auth.headers.X-Token"]
    assert "Injected" not in raised.value.details()


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s: s.executor.GetJobDefinition(ex.GetJobDefinitionRequest(id="a" * 5000)), "id"),
        (lambda s: s.executor.ExecuteJobDefinition(ex.ExecuteJobDefinitionRequest(job_definition_id="a\x00")),
         "job_definition_id"),
        (lambda s: s.executor.ListExecutions(ex.ListExecutionsRequest(parent_execution_id="p" * 256)),
         "parent_execution_id"),
        (lambda s: s.crawler.GetCrawlJob(cr.GetCrawlJobRequest(id="j\x00")), "id"),
        (lambda s: s.crawler.ListCrawlJobs(cr.ListCrawlJobsRequest(source_id="s" * 5000)), "source_id"),
        (lambda s: s.crawler.GetDocument(cr.GetDocumentRequest(id="d" * 256)), "id"),
        (lambda s: s.crawler.SearchDocuments(cr.SearchDocumentsRequest(query="x" * 501)), "query"),
        (lambda s: s.crawler.SearchDocuments(cr.SearchDocumentsRequest(query="pelican " * 50_000)), "query"),
        (lambda s: s.crawler.SearchDocuments(cr.SearchDocumentsRequest(query="a\x00b")), "query"),
        (lambda s: s.crawler.ListCrawlUrls(cr.ListCrawlUrlsRequest(job_id="j", reason="a\x00")), "reason"),
    ],
    ids=[
        "definition-id-5000", "execute-nul", "parent-filter-256", "job-nul", "source-filter-5000",
        "document-256", "query-501", "query-50000-terms", "query-nul", "reason-nul",
    ],
)  # fmt: skip
async def test_bad_ids_and_queries_over_grpc_are_invalid_argument_naming_the_field(
    stack: Stack, call: Any, field: str
) -> None:
    async with healthy(stack):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call(stack)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    assert grpc_fields(raised.value) == [field]


# -------------------------------------------------------------------------------- large bodies

HUGE = 500 * 2**20


async def _stream(total: int, chunk: int = 2**20) -> AsyncIterator[bytes]:
    """`total` bytes of a JSON-looking body, made as they are sent (never held whole)."""
    head = b'{"id": "huge", "description": "'
    yield head
    block, left = b" " * chunk, total - len(head)
    while left > 0:
        yield block[:left]
        left -= chunk


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_500_mb_body_is_413_and_never_held_in_memory(embedded: Stack, declared: bool) -> None:
    stack = embedded
    headers = {"Content-Type": "application/json"}
    if declared:
        headers["Content-Length"] = str(HUGE)
    async with healthy(stack):
        with memory_stays_under(64 * 2**20):
            response = await stack.http.post("/api/job-definitions", content=_stream(HUGE), headers=headers)

    assert response.status_code == 413, response.text
    assert response.json()["error"] == {
        "code": "PAYLOAD_TOO_LARGE",
        "message": f"request body is larger than {MAX_BODY} bytes",
        "details": [],
    }
    assert (await stack.http.get("/api/job-definitions/huge")).status_code == 404


# ----------------------------------------------------------------------- the other ways in


async def test_definition_files_out_of_range_are_rejected_at_start_up(tmp_path: Path) -> None:
    files = tmp_path / "definitions"
    files.mkdir()
    (files / "deep.toml").write_text(definition_toml("deep", step_config="max_depth = 1000000000000"))
    (files / "pages.toml").write_text(definition_toml("pages", step_config="max_pages = 99999999999999999999"))
    (files / "nested.json").write_text(
        _as_json(definition_toml("nested", f"config = {nested_toml(40, table=True)}")).decode()
    )
    (files / "fine.toml").write_text(definition_toml("fine", step_config="max_depth = 100"))
    common = common_settings(None, tmp_path / "data")

    async with running_stack(common, definitions_dir=files) as s:
        listed = (await s.http.get("/api/job-definitions")).json()

    assert [d["id"] for d in listed["job_definitions"]] == ["fine"]


async def test_apply_refuses_a_file_out_of_range_naming_the_field_and_applies_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    (tmp_path / "a-fine.toml").write_text(definition_toml("apply-fine"))
    (tmp_path / "b-huge.toml").write_text(definition_toml("apply-huge", step_config="max_pages = 99999999999999999999"))
    (tmp_path / "c-nan.toml").write_text(definition_toml("apply-nan", "[config]\nx = nan"))

    huge = await invoke("apply", "-f", str(tmp_path / "b-huge.toml"), url=stack.base_url)
    nan = await invoke("apply", "-f", str(tmp_path), url=stack.base_url)

    assert huge.code == 2
    assert huge.err_lines == [
        f"quaero: {tmp_path / 'b-huge.toml'}: steps[0].config.max_pages: must be a whole number from 1 to 10,000,000"
    ]
    assert nan.code == 2  # the whole folder is read before anything is sent
    assert nan.err_lines == [
        f"quaero: {tmp_path / 'c-nan.toml'}: config.x: must be a finite number (NaN and infinities are not JSON)"
    ]
    for definition_id in ("apply-fine", "apply-huge", "apply-nan"):
        assert (await stack.http.get(f"/api/job-definitions/{definition_id}")).status_code == 404


async def test_a_crawl_job_stored_with_numbers_out_of_range_still_lists(stack: Stack, tmp_path: Path) -> None:
    """A release that did not check ranges at save stored such jobs: they list with each number
    at the nearest end of its documented range, and every other job lists with them."""
    async with small_site(1).serve() as site:
        await define(stack, {"id": "old-release", "steps": [{"name": "c", "action": "crawl",
                                                             "config": {"start_urls": [site.url("/")]}}]})  # fmt: skip
        execution = await wait_for(stack, (await execute(stack, "old-release"))["execution_id"])
    (job,) = await jobs(stack, execution_id=execution["id"])
    # The crawler's database: the shared PostgreSQL one, or the SQLite file beside the executor's.
    crawler_db = Database(stack.database_url.replace("/executor.db", "/crawler.db"), "crawler")
    try:
        async with crawler_db.session() as session:
            row = (await session.execute(select(CrawlJobRow).where(CrawlJobRow.id == job["id"]))).scalar_one()
            out_of_range = {"max_depth": 10**12, "max_pages": 10**20, "rate_limit": 10**12}
            await session.execute(
                update(CrawlJobRow).where(CrawlJobRow.id == job["id"]).values(config={**row.config, **out_of_range})
            )
    finally:
        await crawler_db.close()

    async with healthy(stack):
        listed = [await stack.http.get("/api/jobs") for _ in range(3)]
        got = await stack.http.get(f"/api/jobs/{job['id']}")

    assert [r.status_code for r in listed] == [200, 200, 200]
    (row,) = [j for j in listed[-1].json()["jobs"] if j["id"] == job["id"]]
    assert (row["config"]["max_depth"], row["config"]["max_pages"], row["config"]["rate_limit"]) == (
        100, 10_000_000, 3_600_000,
    )  # fmt: skip
    assert got.status_code == 200 and got.json()["config"] == row["config"]


# -------------------------------------------------------------------------------- properties


# Any JSON value (NaN and infinities included); any text, lone surrogates included.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=300)
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(ANY_TEXT, children, max_size=3),
    max_leaves=30,
)


def _url_text(text: str) -> str:
    """`text` percent-encoded for a URL, as a client that does not check would send it."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def _no_5xx(stack: Stack) -> None:
    """The property, with synchronous clients (hypothesis drives it from a worker thread while
    the stack serves from the test's event loop)."""
    with (
        httpx.Client(base_url=stack.base_url, timeout=30) as http,
        grpc.insecure_channel(f"127.0.0.1:{stack.executor_port}") as executor_channel,
        grpc.insecure_channel(f"127.0.0.1:{stack.crawler_port}") as crawler_channel,
    ):
        executor = executor_service_pb2_grpc.ExecutorServiceStub(executor_channel)
        crawler = crawler_service_pb2_grpc.CrawlerServiceStub(crawler_channel)

        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(config=ANY_JSON, step_config=ANY_JSON, name=ANY_TEXT, some_id=ANY_TEXT)
        def check(config: Any, step_config: Any, name: str, some_id: str) -> None:
            body = {"id": some_id, "name": name, "type": "crawler", "config": config,
                    "steps": [{"name": name, "action": "crawl", "config": step_config}]}  # fmt: skip
            answers = [
                http.post(
                    "/api/job-definitions", content=json.dumps(body), headers={"Content-Type": "application/json"}
                ),
                http.get(f"/api/job-definitions/{_url_text(some_id) or 'x'}"),
                http.get(f"/api/jobs?execution_id={_url_text(some_id)}"),
                http.get(f"/api/documents?q={_url_text(name)}"),
            ]
            for answer in answers:
                assert answer.status_code < 500, (answer.request.url, answer.text)
            text = some_id.encode("utf-8", "replace").decode()  # what protobuf can carry
            for call in (
                lambda: executor.GetJobDefinition(ex.GetJobDefinitionRequest(id=text)),
                lambda: crawler.GetCrawlJob(cr.GetCrawlJobRequest(id=text)),
                lambda: crawler.SearchDocuments(cr.SearchDocumentsRequest(query=text)),
            ):
                try:
                    call()
                except grpc.RpcError as exc:
                    assert exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), exc  # type: ignore[attr-defined]

        check()


async def test_no_json_in_a_config_and_no_text_in_a_name_or_id_makes_a_5xx(stack: Stack) -> None:
    async with healthy(stack):
        await asyncio.to_thread(_no_5xx, stack)

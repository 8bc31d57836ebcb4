"""Schemathesis against /openapi.json of a real stack that holds real data: no 5xx, and every
response matches the documented status codes, content types, headers and schemas.

The stack is seeded with a crawl of a local site, and the seeded ids become the path
parameters' examples, so every route is exercised on a real object as well as on generated
(valid and invalid) input. Server-Sent Events routes are skipped (their bodies do not end while
the resource runs). Examples per operation are bounded and the seed fixed.

Schemathesis runs as its command line (`schemathesis run`) in its own process: its pytest
plugin does not run under this pytest, and the process keeps its synchronous calls off the
stack's event loop.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from tests.support.runs import add_source, define, execute, jobs, wait_for
from tests.support.services import Stack, common_settings, running_stack
from tests.support.site import small_site

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
ROOT = Path(__file__).resolve().parents[3]
MAX_EXAMPLES = 15
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
]


# Which seeded object a path's {id} names.
_ID_OWNERS = {
    "/api/job-definitions/": "definition",
    "/api/sources/": "source",
    "/api/executions/": "execution",
    "/api/jobs/": "job",
    "/api/documents/": "document",
}


def prepared(spec: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    """The document, with each `{id}` path parameter exemplified by a seeded object's id.

    TOML request examples are dropped: schemathesis cannot send a text example for a media
    type it does not know; the hooks' strategy writes TOML bodies instead."""
    for path, item in spec["paths"].items():
        owner = next((ids[o] for prefix, o in _ID_OWNERS.items() if path.startswith(prefix + "{id}")), None)
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if owner and parameter["in"] == "path" and parameter["name"] == "id":
                    parameter["example"] = owner
            operation.get("requestBody", {}).get("content", {}).get("application/toml", {}).pop("example", None)
    return spec


async def seed(stack: Stack, site_url: str) -> dict[str, str]:
    """A source, a definition crawling it, its completed execution, crawl job and documents."""
    await add_source(stack, "fuzz-source", site_url)
    await define(stack, {"id": "fuzz", "sources": ["fuzz-source"], "steps": [{"name": "c", "action": "crawl"}]})
    execution = await wait_for(stack, (await execute(stack, "fuzz"))["execution_id"])
    (job,) = await jobs(stack, execution_id=execution["id"])
    docs = (await stack.http.get("/api/documents", params={"job_id": job["id"]})).json()["documents"]
    return {
        "definition": "fuzz",
        "source": "fuzz-source",
        "execution": execution["id"],
        "job": job["id"],
        "document": docs[0]["id"],
    }


async def test_api_has_no_5xx_and_matches_its_schema(tmp_path: Path) -> None:
    async with small_site(3).serve() as site, running_stack(common_settings(None, tmp_path / "data")) as stack:
        ids = await seed(stack, site.url("/"))
        spec = prepared((await stack.http.get("/openapi.json")).json(), ids)
        schema_file = tmp_path / "openapi.json"
        schema_file.write_text(json.dumps(spec))
        process = await asyncio.create_subprocess_exec(
            str(SCHEMATHESIS),
            "run",
            str(schema_file),
            "--url",
            stack.base_url,
            "--checks",
            ",".join(CHECKS),
            "--exclude-path-regex",
            "/events$",
            "--phases",
            "examples,fuzzing",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            "20260101",
            "--workers",
            "2",
            "--suppress-health-check",
            "all",
            "--request-timeout",
            "30",
            "--report-dir",
            str(tmp_path / "report"),
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={
                "NO_COLOR": "1",
                "PATH": str(SCHEMATHESIS.parent),
                "HOME": str(tmp_path),
                "COLUMNS": "160",
                "PYTHONPATH": str(ROOT),
                "SCHEMATHESIS_HOOKS": "tests.integration.gateway.schemathesis_hooks",
            },
        )
        output, _ = await asyncio.wait_for(process.communicate(), 600)

    report = output.decode(errors="replace")
    assert process.returncode == 0, report
    assert "No issues found" in report or "passed" in report, report

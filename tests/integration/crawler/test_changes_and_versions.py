"""What a recrawl changed, and the versions it kept, served over gRPC: ListJobChanges (with its
`change` filter), ListDocumentVersions, GetDocumentVersion and DiffDocumentVersions, after two
crawls of a local site changed in between (the site of test_recrawl)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from quaero.v1 import crawl_job_pb2, crawler_service_pb2
from tests.integration.crawler.test_recrawl import crawl, documents, first_version, second_version
from tests.support.runs import define
from tests.support.services import Stack, running_stack
from tests.support.site import LocalSite

cr = crawler_service_pb2


def kind(number: int) -> str:
    return crawl_job_pb2.DocumentChangeKind.Name(number).removeprefix("DOCUMENT_CHANGE_KIND_").lower()


async def two_crawls(stack: Stack, site: LocalSite) -> tuple[dict[str, Any], dict[str, Any]]:
    step = {"name": "crawl", "action": "crawl", "config": {"start_urls": [site.url("/")], "max_depth": 1}}
    await define(stack, {"id": "docs", "steps": [step]})
    first = await crawl(stack)
    second_version(site)
    return first, await crawl(stack)


async def refused(call: Any, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, err.value.details()
    return err.value.details() or ""


async def test_a_recrawls_changes_versions_and_diffs_are_served(backend: dict[str, Any]) -> None:
    site = LocalSite()
    first_version(site)
    async with site.serve(), running_stack(backend) as stack:
        _, second = await two_crawls(stack, site)
        url = site.url
        docs = await documents(stack, include_removed=True)

        listed = await stack.crawler.ListJobChanges(cr.ListJobChangesRequest(job_id=second["id"], limit=500))
        removed_only = await stack.crawler.ListJobChanges(
            cr.ListJobChangesRequest(job_id=second["id"], change=crawl_job_pb2.DOCUMENT_CHANGE_KIND_REMOVED)
        )
        paged = await stack.crawler.ListJobChanges(cr.ListJobChangesRequest(job_id=second["id"], limit=3, offset=6))
        edited = docs[url("/edited-etag")].id
        versions = await stack.crawler.ListDocumentVersions(cr.ListDocumentVersionsRequest(document_id=edited))
        older_page = await stack.crawler.ListDocumentVersions(
            cr.ListDocumentVersionsRequest(document_id=edited, limit=1, offset=1)
        )
        v1 = await stack.crawler.GetDocumentVersion(cr.GetDocumentVersionRequest(document_id=edited, version=1))
        v2 = await stack.crawler.GetDocumentVersion(cr.GetDocumentVersionRequest(document_id=edited, version=2))
        diff = await stack.crawler.DiffDocumentVersions(cr.DiffDocumentVersionsRequest(document_id=edited))
        same = await stack.crawler.DiffDocumentVersions(
            cr.DiffDocumentVersionsRequest(document_id=edited, from_version=2, to_version=2)
        )

    # Every label of the second crawl, the unreached removal included, with its hashes.
    by_url = {c.url: c for c in listed.changes}
    assert {u: kind(c.change) for u, c in by_url.items()} == {
        url("/"): "changed",
        url("/etag"): "unchanged",
        url("/modified"): "unchanged",
        url("/plain"): "unchanged",
        url("/edited-etag"): "changed",
        url("/edited-plain"): "changed",
        url("/gone"): "removed",
        url("/unlinked"): "removed",
        url("/added"): "new",
    }
    assert listed.total_count == 9
    assert by_url[url("/added")].previous_hash == ""
    assert by_url[url("/edited-etag")].previous_hash not in ("", by_url[url("/edited-etag")].content_hash)
    assert by_url[url("/etag")].previous_hash == by_url[url("/etag")].content_hash
    assert by_url[url("/unlinked")].document_id == docs[url("/unlinked")].id
    # The filter, and paging like every list.
    assert {c.url for c in removed_only.changes} == {url("/gone"), url("/unlinked")}
    assert removed_only.total_count == 2
    assert (paged.total_count, paged.limit, paged.offset) == (9, 3, 6)
    assert [c.url for c in paged.changes] == [c.url for c in listed.changes][6:9]
    # Versions newest first: the current one and the one it replaced.
    assert [v.version for v in versions.versions] == [2, 1]
    assert versions.total_count == 2
    assert [v.version for v in older_page.versions] == [1]
    assert versions.versions[0].content_hash == docs[url("/edited-etag")].metadata["content_hash"]
    assert "first words" in v1.version.markdown and "second words" in v2.version.markdown
    assert versions.versions[0].markdown == ""
    # The diff: version 1 to the current one, by default.
    assert (diff.from_version, diff.to_version) == (1, 2)
    assert diff.diff.startswith("--- version 1\n+++ version 2\n")
    assert "\n-" in diff.diff and "first words" in diff.diff and "\n+" in diff.diff and "second words" in diff.diff
    assert same.diff == ""


@pytest.mark.parametrize(
    ("request_", "code", "field"),
    [
        (cr.ListJobChangesRequest(job_id="nope"), grpc.StatusCode.NOT_FOUND, "nope"),
        (cr.ListJobChangesRequest(job_id=""), grpc.StatusCode.INVALID_ARGUMENT, "job_id"),
        (cr.ListJobChangesRequest(job_id="x", change=99), grpc.StatusCode.INVALID_ARGUMENT, "change"),
        (cr.ListJobChangesRequest(job_id="x", limit=501), grpc.StatusCode.INVALID_ARGUMENT, "limit"),
        (cr.ListDocumentVersionsRequest(document_id="nope"), grpc.StatusCode.NOT_FOUND, "nope"),
        (cr.ListDocumentVersionsRequest(document_id=" "), grpc.StatusCode.INVALID_ARGUMENT, "document_id"),
        (cr.GetDocumentVersionRequest(document_id="nope", version=1), grpc.StatusCode.NOT_FOUND, "nope"),
        (cr.DiffDocumentVersionsRequest(document_id="nope"), grpc.StatusCode.NOT_FOUND, "nope"),
        (cr.DiffDocumentVersionsRequest(document_id="x", to_version=-1), grpc.StatusCode.INVALID_ARGUMENT,
         "to_version"),
    ],
    ids=[
        "changes-unknown-job", "changes-no-job", "changes-bad-kind", "changes-limit", "versions-unknown",
        "versions-blank", "version-unknown-document", "diff-unknown-document", "diff-negative-to",
    ],
)  # fmt: skip
async def test_refused_requests_name_what_is_wrong(
    backend: dict[str, Any], request_: Any, code: grpc.StatusCode, field: str
) -> None:
    method = {
        cr.ListJobChangesRequest: "ListJobChanges",
        cr.ListDocumentVersionsRequest: "ListDocumentVersions",
        cr.GetDocumentVersionRequest: "GetDocumentVersion",
        cr.DiffDocumentVersionsRequest: "DiffDocumentVersions",
    }[type(request_)]
    async with running_stack(backend) as stack:
        assert field in await refused(getattr(stack.crawler, method)(request_), code)


async def test_versions_out_of_range_are_refused_naming_the_field(backend: dict[str, Any]) -> None:
    site = LocalSite()
    first_version(site)
    async with site.serve(), running_stack(backend) as stack:
        step = {"name": "crawl", "action": "crawl", "config": {"start_urls": [site.url("/")], "max_depth": 1}}
        await define(stack, {"id": "docs", "steps": [step]})
        await crawl(stack)
        doc = (await documents(stack))[site.url("/etag")].id
        messages = [
            await refused(stack.crawler.GetDocumentVersion(cr.GetDocumentVersionRequest(document_id=doc, version=0)),
                          grpc.StatusCode.INVALID_ARGUMENT),
            await refused(stack.crawler.GetDocumentVersion(cr.GetDocumentVersionRequest(document_id=doc, version=2)),
                          grpc.StatusCode.INVALID_ARGUMENT),
            await refused(stack.crawler.DiffDocumentVersions(cr.DiffDocumentVersionsRequest(document_id=doc)),
                          grpc.StatusCode.INVALID_ARGUMENT),
            await refused(stack.crawler.DiffDocumentVersions(
                cr.DiffDocumentVersionsRequest(document_id=doc, from_version=1, to_version=3)),
                grpc.StatusCode.INVALID_ARGUMENT),
            await refused(stack.crawler.DiffDocumentVersions(
                cr.DiffDocumentVersionsRequest(document_id=doc, from_version=4, to_version=1)),
                grpc.StatusCode.INVALID_ARGUMENT),
        ]  # fmt: skip
    assert [m.split(":")[0] for m in messages] == ["version", "version", "from_version", "to_version", "from_version"]

"""A recrawl's changes and a document's versions over REST: /api/jobs/{id}/changes,
/api/documents/{id}/versions[/{version}], /api/documents/{id}/diff and `include_removed`, after two
crawls of a local site changed in between (the site of test_recrawl)."""

from __future__ import annotations

from typing import Any

from tests.integration.crawler.test_changes_and_versions import two_crawls
from tests.integration.crawler.test_recrawl import first_version
from tests.support.services import running_stack
from tests.support.site import LocalSite


async def test_changes_versions_and_diffs_over_rest(backend: dict[str, Any]) -> None:
    site = LocalSite()
    first_version(site)
    async with site.serve(), running_stack(backend) as stack:
        _, second = await two_crawls(stack, site)
        get = stack.http.get
        job = (await get(f"/api/jobs/{second['id']}")).json()
        changes = (await get(f"/api/jobs/{second['id']}/changes", params={"limit": 500})).json()
        changed = (await get(f"/api/jobs/{second['id']}/changes", params={"change": "changed"})).json()
        bad_change = await get(f"/api/jobs/{second['id']}/changes", params={"change": "moved"})
        unknown_job = await get("/api/jobs/nope/changes")
        listed = (await get("/api/documents", params={"limit": 500})).json()
        with_removed = (await get("/api/documents", params={"limit": 500, "include_removed": "true"})).json()
        searched = (await get("/api/documents", params={"q": "zanzibar"})).json()
        searched_removed = (await get("/api/documents", params={"q": "zanzibar", "include_removed": "true"})).json()
        edited = next(c["document_id"] for c in changes["changes"] if c["url"] == site.url("/edited-etag"))
        versions = (await get(f"/api/documents/{edited}/versions")).json()
        v1 = (await get(f"/api/documents/{edited}/versions/1")).json()
        v3 = await get(f"/api/documents/{edited}/versions/3")
        v0 = await get(f"/api/documents/{edited}/versions/0")
        diff = (await get(f"/api/documents/{edited}/diff")).json()
        diff_explicit = (await get(f"/api/documents/{edited}/diff", params={"from": 1, "to": 2})).json()
        diff_bad = await get(f"/api/documents/{edited}/diff", params={"from": 5})
        document = (await get(f"/api/documents/{edited}")).json()
        unknown_doc = await get("/api/documents/nope/versions")
        rendered = (await get(f"/api/documents/{edited}/html")).json()

    assert job["changes"] == {"new": 1, "changed": 3, "unchanged": 3, "removed": 2}
    assert changes["total_count"] == 9
    assert set(changes["changes"][0]) == {"url", "document_id", "change", "content_hash", "previous_hash"}
    assert {c["url"]: c["change"] for c in changes["changes"]}[site.url("/unlinked")] == "removed"
    assert {c["url"] for c in changed["changes"]} == {site.url(p) for p in ("/", "/edited-etag", "/edited-plain")}
    assert changed["total_count"] == 3
    assert bad_change.status_code == 400 and bad_change.json()["error"]["details"][0]["field"] == "change"
    assert unknown_job.status_code == 404
    assert site.url("/gone") not in {d["url"] for d in listed["documents"]}
    gone = {d["url"]: d for d in with_removed["documents"]}[site.url("/gone")]
    assert gone["removed_at"] is not None
    assert (searched["total_count"], searched_removed["total_count"]) == (0, 1)
    assert [v["version"] for v in versions["versions"]] == [2, 1]
    assert set(versions["versions"][0]) == {"version", "content_hash", "fetched_at", "title"}
    assert "first words" in v1["markdown"]
    assert v3.status_code == 400 and v3.json()["error"]["details"][0]["field"] == "version"
    assert v0.status_code == 400
    assert diff == diff_explicit
    assert diff["diff"].startswith("--- version 1\n+++ version 2\n") and "second words" in diff["diff"]
    assert diff_bad.status_code == 400 and diff_bad.json()["error"]["details"][0]["field"] == "from_version"
    assert document["version"] == 2 and document["etag"] == '"x2"'
    assert "last_modified" in document and document["removed_at"] is None
    assert unknown_doc.status_code == 404
    assert rendered["html"].startswith("<h1>Edited</h1>") and "second words" in rendered["html"]

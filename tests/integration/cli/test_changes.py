"""`quaero crawl` ends with the change counts; `quaero docs versions` and `quaero docs diff` show
what a recrawl changed in a document."""

from __future__ import annotations

from typing import Any

from tests.support.services import Stack
from tests.support.site import LocalSite, Page, html_page


async def test_a_recrawl_reports_its_changes_and_the_diff_of_a_changed_page(
    stack: Stack, site: LocalSite, quaero: Any
) -> None:
    first = await quaero("crawl", site.url("/"), "--depth", "1")
    site.pages["/pelicans.html"] = Page(body=html_page("Pelicans", ["/"], "White pelicans fish in groups on lakes"))
    del site.pages["/herons.html"]
    second = await quaero("crawl", site.url("/"), "--depth", "1")
    docs = (await stack.http.get("/api/documents", params={"limit": 500})).json()["documents"]
    pelicans = next(d["id"] for d in docs if d["url"] == site.url("/pelicans.html"))
    versions = await quaero("docs", "versions", pelicans)
    diff = await quaero("docs", "diff", pelicans)
    explicit = await quaero("docs", "diff", pelicans, "--from", "1", "--to", "2")
    same = await quaero("docs", "diff", pelicans, "--from", "2", "--to", "2")
    out_of_range = await quaero("docs", "diff", pelicans, "--to", "9")

    assert first.code == 0, first.err
    assert first.out.startswith("Completed: 4 documents (4 new, 0 changed, 0 unchanged, 0 removed) from 1 crawl job")
    assert second.code == 0, second.err
    assert "(0 new, 1 changed, 2 unchanged, 1 removed) from 1 crawl job" in second.out
    assert [line.split()[0] for line in versions.out.strip().splitlines()[1:3]] == ["2", "1"]
    assert diff.code == 0 and diff.out == explicit.out
    assert diff.out.startswith("--- version 1\n+++ version 2\n")
    assert "-Brown pelicans dive for fish along the coast" in diff.out
    assert "+White pelicans fish in groups on lakes" in diff.out
    assert same.code == 0 and same.out == "" and "are the same" in same.err
    assert out_of_range.code != 0 and "to_version" in out_of_range.err

"""The PostgreSQL-manual scenario of `make bench`: the pages a crawl must store, from a walk of the files."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import manual


def page(*hrefs: str, base: str = "") -> bytes:
    anchors = "".join(f'<a href="{h}">{h}</a>' for h in hrefs)
    head = f'<base href="{base}">' if base else ""
    return f"<html><head>{head}<link href='style.css' rel='stylesheet'></head><body>{anchors}</body></html>".encode()


SITE = {
    "/index.html": page("a.html", "b.html#part", "sub/c.html", "https://postgr.es/x", "mailto:x@y.z", "#top"),
    "/a.html": page(
        "index.html", "missing.html", "picture.svg", "orphan.html?q=1", "/a.html"
    ),  # a query: a URL the server does not know
    "/b.html": page("http://site.invalid/d.html", "http://other.invalid/orphan.html"),
    "/sub/c.html": page("../e.html", "f.html"),
    "/sub/f.html": page("g.html"),
    "/sub/g.html": page(),
    "/d.html": page(),
    "/e.html": page(),
    "/orphan.html": page("a.html"),
    "/picture.svg": b"<svg/>",
    "/style.css": b"p {}",
}


def test_the_walk_follows_links_on_the_host_to_html_files_that_exist():
    assert manual.expected_paths(SITE, "/index.html", 10) == {
        "/index.html": 0,
        "/a.html": 1,
        "/b.html": 1,  # its fragment dropped
        "/sub/c.html": 1,
        "/d.html": 2,  # an absolute link on the same origin
        "/e.html": 2,  # a relative link up from a subfolder
        "/sub/f.html": 2,
        "/sub/g.html": 3,
    }


def test_the_walk_stops_at_the_depth_limit():
    assert set(manual.expected_paths(SITE, "/index.html", 1)) == {"/index.html", "/a.html", "/b.html", "/sub/c.html"}


def test_a_base_href_resolves_the_links_of_its_page():
    files = {"/index.html": page("x.html", base="/docs/"), "/docs/x.html": page(), "/x.html": page()}
    assert set(manual.expected_paths(files, "/index.html", 5)) == {"/index.html", "/docs/x.html"}


def test_the_files_are_read_as_served(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "index.html").write_bytes(b"<a href='sub/x.html'>x</a>")
    (tmp_path / "sub" / "x.html").write_bytes(b"x")
    assert manual.read_files(tmp_path) == {"/index.html": b"<a href='sub/x.html'>x</a>", "/sub/x.html": b"x"}


def test_a_folder_without_the_manual_is_reported_not_crawled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("QUAERO_BENCH_MANUAL_DIR", str(tmp_path))
    lines = manual.run("postgresql+asyncpg://unused/x", "amqp://unused/", rounds=1)
    assert lines == [f"PostgreSQL manual crawl: skipped, {tmp_path} has no index.html (QUAERO_BENCH_MANUAL_DIR)"]


# Random sites of up to 12 pages: each page links to some others by name.
graphs = st.integers(1, 12).flatmap(
    lambda n: st.lists(st.lists(st.integers(0, n - 1), max_size=5), min_size=n, max_size=n)
)


@settings(max_examples=200, deadline=None)
@given(graphs, st.integers(0, 6))
def test_each_page_has_the_depth_of_its_shortest_path_from_the_start(graph: list[list[int]], max_depth: int):
    files = {f"/p{i}.html": page(*(f"p{j}.html" for j in targets)) for i, targets in enumerate(graph)}
    depths = {int(p[2:-5]): d for p, d in manual.expected_paths(files, "/p0.html", max_depth).items()}
    assert depths[0] == 0
    for i, d in depths.items():
        assert d <= max_depth
        # Reached from a page one link nearer (a shortest path's last step)...
        assert d == 0 or any(depths.get(j) == d - 1 for j, targets in enumerate(graph) if i in targets)
        # ...and every page it links to is reached no later than one link further, if within the limit.
        if d < max_depth:
            assert all(j in depths and depths[j] <= d + 1 for j in graph[i])

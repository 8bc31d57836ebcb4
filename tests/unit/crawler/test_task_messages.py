"""UrlTask messages: what a task carries arrives as it was sent."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given

from services.crawler import queue
from services.crawler.store import Stored, Task
from services.crawler.worker import body_hash

TEXT = st.text(max_size=20)
STORED = st.builds(
    Stored,
    id=st.uuids().map(str),
    content_hash=st.text("0123456789abcdef", min_size=64, max_size=64),
    etag=st.none() | TEXT,
    last_modified=st.none() | TEXT,
    has_links=st.booleans(),
    links=st.none() | st.lists(st.text(min_size=1, max_size=30), max_size=5),
    body_hash=st.none() | st.text("0123456789abcdef", min_size=64, max_size=64),
)


@given(
    known=st.booleans(),
    stored=st.none() | STORED,
    attempts=st.none() | st.integers(0, 10),
)
def test_a_task_carries_its_stored_document_through_the_queue(
    known: bool, stored: Stored | None, attempts: int | None
) -> None:
    """None and "" stay apart (an ETag may be empty, a document may keep no links), and a task
    that carries nothing says so, so its worker looks the document up."""
    task = Task(
        "job", 7, "http://docs.test/", 1, "", attempts, 0, None, stored_known=known, stored=stored if known else None
    )
    assert queue.carried(queue.decode(queue.encode(task).body)) == (known, stored if known else None)


@given(st.binary(max_size=200), st.none() | st.sampled_from(["utf-8", "iso-8859-1", ""]))
def test_the_same_bytes_in_another_charset_are_another_body(body: bytes, charset: str | None) -> None:
    assert body_hash(body, charset) == body_hash(body, charset)
    other = "windows-1252" if charset != "windows-1252" else "utf-8"
    assert body_hash(body, charset) != body_hash(body, other)
    assert body_hash(body, charset) != body_hash(body + b" ", charset)

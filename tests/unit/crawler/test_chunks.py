"""Chunks: a document split on its headings, with stable ids (pure part)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.crawler.chunks import best_chunk, chunks, estimate_tokens, heading_text, search_terms

URL = "https://docs.test/guide/"


def squeeze(text: str) -> str:
    return "".join(text.split())


def test_a_document_splits_on_its_headings_with_heading_paths() -> None:
    markdown = "Intro text.\n\n# Guide\n\nAbout.\n\n## Install\n\npip it.\n\n### On Linux\n\napt.\n\n## Use\n\nRun.\n"

    got = [(c.heading_path, c.text) for c in chunks(URL, markdown)]

    assert got == [
        ((), "Intro text."),
        (("Guide",), "# Guide\n\nAbout."),
        (("Guide", "Install"), "## Install\n\npip it."),
        (("Guide", "Install", "On Linux"), "### On Linux\n\napt."),
        (("Guide", "Use"), "## Use\n\nRun."),
    ]


def test_a_heading_inside_a_code_block_is_code() -> None:
    markdown = "# Shell\n\n```bash\n# not a heading\necho hi\n```\n"

    got = chunks(URL, markdown)

    assert [c.heading_path for c in got] == [("Shell",)]


def test_a_large_section_splits_at_paragraphs_and_never_inside_a_code_block() -> None:
    code = "```python\n" + "\n\n".join(f"x_{i} = {i}  # a line of code" for i in range(40)) + "\n```"
    paragraphs = [f"Paragraph {i} " + "word " * 40 for i in range(6)]
    markdown = "## Big\n\n" + "\n\n".join(paragraphs[:3]) + "\n\n" + code + "\n\n" + "\n\n".join(paragraphs[3:]) + "\n"

    got = chunks(URL, markdown, max_tokens=100)

    assert len(got) > 2
    assert all(c.heading_path == ("Big",) for c in got)
    assert next(c for c in got if "```python" in c.text).text.count("```") == 2
    assert len({c.id for c in got}) == len(got)
    assert squeeze("".join(c.text for c in got)) == squeeze(markdown)


def test_a_heading_text_loses_closing_hashes_links_and_marks() -> None:
    assert heading_text("The **`run`** [command](https://x.test/run) ##") == "The run command"


def test_tokens_are_estimated_at_four_characters_each() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert chunks(URL, "# T\n\n" + "a" * 400)[0].tokens == estimate_tokens("# T\n\n" + "a" * 400)


def test_the_best_chunk_holds_most_of_the_search_terms() -> None:
    doc = chunks(URL, "# A\n\nPelicans fish.\n\n# B\n\nHerons wait and herons fish.\n\n# C\n\nNothing.\n")

    assert best_chunk(doc, search_terms("heron fishing", "**herons** wait")).heading_path == ("B",)
    assert best_chunk(doc, {"albatross"}) is None


# ------------------------------------------------------------------------------ properties

_words = st.text(alphabet="abcdefghij ", min_size=1, max_size=30).map(lambda s: " ".join(s.split()) or "w")
_body = st.lists(
    st.one_of(_words, _words.map(lambda w: f"```\n# {w}\n\n{w}\n```"), _words.map(lambda w: f"- {w}\n- {w}")),
    max_size=5,
).map("\n\n".join)
# Sections of a document: a level and a body; titles are made unique per document below.
_sections = st.lists(st.tuples(st.integers(1, 4), _body), min_size=1, max_size=8)


def render(sections: list[tuple[int, str, str]]) -> str:
    return "".join(f"{'#' * level} {title}\n\n{body}\n\n" for level, title, body in sections)


def titled(sections: list[tuple[int, str]]) -> list[tuple[int, str, str]]:
    return [(level, f"Section {i}", body) for i, (level, body) in enumerate(sections)]


def subtree(sections: list[tuple[int, str, str]], i: int) -> range:
    """Section i and the deeper sections after it: what removing its heading takes along."""
    end = i + 1
    while end < len(sections) and sections[end][0] > sections[i][0]:
        end += 1
    return range(i, end)


def ids_by_title(markdown: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in chunks(URL, markdown, max_tokens=40):
        out.setdefault(c.heading_path[-1] if c.heading_path else "", []).append(c.id)
    return out


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # no timing: a loaded machine is slow
@given(st.text(max_size=400), st.integers(32, 600))
def test_chunks_cover_the_document_and_their_ids_are_unique(markdown: str, max_tokens: int) -> None:
    got = chunks(URL, markdown, max_tokens)

    assert squeeze("".join(c.text for c in got)) == squeeze(markdown)
    assert len({c.id for c in got}) == len(got)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # no timing: a loaded machine is slow
@given(_sections, st.integers(32, 200))
def test_chunks_of_sectioned_documents_cover_them_with_unique_ids(
    sections: list[tuple[int, str]], max_tokens: int
) -> None:
    markdown = render(titled(sections))

    got = chunks(URL, markdown, max_tokens)

    assert squeeze("".join(c.text for c in got)) == squeeze(markdown)
    assert len({c.id for c in got}) == len(got)
    assert all(c.tokens == estimate_tokens(c.text) for c in got)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # no timing: a loaded machine is slow
@given(_sections, st.data())
def test_ids_stay_when_another_section_is_edited(sections: list[tuple[int, str]], data: st.DataObject) -> None:
    doc = titled(sections)
    i = data.draw(st.integers(0, len(doc) - 1))
    edited = list(doc)
    edited[i] = (doc[i][0], doc[i][1], doc[i][2] + "\n\nan added paragraph " + data.draw(_words))

    before, after = ids_by_title(render(doc)), ids_by_title(render(edited))

    assert {t: v for t, v in before.items() if t != doc[i][1]} == {t: v for t, v in after.items() if t != doc[i][1]}


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # no timing: a loaded machine is slow
@given(_sections, st.data())
def test_ids_stay_when_a_section_is_removed(sections: list[tuple[int, str]], data: st.DataObject) -> None:
    doc = titled(sections)
    i = data.draw(st.integers(0, len(doc) - 1))
    gone = subtree(doc, i)
    kept = [s for n, s in enumerate(doc) if n not in gone]

    before, after = ids_by_title(render(doc)), ids_by_title(render(kept))

    assert after == {t: v for t, v in before.items() if t not in {doc[n][1] for n in gone}}


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # no timing: a loaded machine is slow
@given(_sections, st.data())
def test_ids_stay_when_a_section_is_added(sections: list[tuple[int, str]], data: st.DataObject) -> None:
    doc = titled(sections)
    i = data.draw(st.integers(0, len(doc)))
    # A new section of the deepest level around it: it takes no existing section under it.
    level = max([doc[n][0] for n in (i - 1, i) if 0 <= n < len(doc)], default=1)
    added = [*doc[:i], (level, "Added section", data.draw(_body)), *doc[i:]]

    before, after = ids_by_title(render(doc)), ids_by_title(render(added))

    assert {t: v for t, v in after.items() if t != "Added section"} == before


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # no timing: a loaded machine is slow
@given(st.lists(st.tuples(st.integers(1, 3), st.sampled_from(["Example", "Notes"]), _body), min_size=1, max_size=8))
def test_sections_with_the_same_heading_path_get_ids_of_their_own(sections: list[tuple[int, str, str]]) -> None:
    got = chunks(URL, render(sections), max_tokens=40)

    assert len({c.id for c in got}) == len(got)


def test_a_repeated_heading_keeps_its_id_when_a_section_after_it_changes() -> None:
    first = "# API\n\n## Example\n\none\n\n## Example\n\ntwo\n\n## Tail\n\nend\n"
    edited = first.replace("end", "the end, rewritten")

    assert [c.id for c in chunks(URL, first)][:3] == [c.id for c in chunks(URL, edited)][:3]


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # no timing: a loaded machine is slow
@given(
    st.lists(st.text(alphabet="abc", min_size=1, max_size=4), min_size=1, max_size=6),
    st.lists(st.text(alphabet="abc ", max_size=40), min_size=1, max_size=5),
)
def test_the_best_chunk_counts_each_term_as_a_word_prefix(terms: list[str], texts: list[str]) -> None:
    doc = [chunks(URL, f"# S{i}\n\n{t}")[0] for i, t in enumerate(texts)]

    def score(text: str) -> tuple[int, int]:
        found = [sum(w.startswith(t) for w in text.lower().split()) for t in sorted(set(terms))]
        return sum(bool(n) for n in found), sum(found)

    scores = [score(t) for t in texts]
    best = best_chunk(doc, terms)

    if max(scores) == (0, 0):
        assert best is None
    else:
        assert best is not None and best.id == doc[scores.index(max(scores))].id


def test_an_empty_heading_is_a_path_of_its_own() -> None:
    got = chunks(URL, "0\r#")

    assert [c.heading_path for c in got] == [(), ("",)]
    assert len({c.id for c in got}) == 2

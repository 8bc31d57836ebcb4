"""Template detection: blocks that repeat on most pages of a host are dropped (pure part)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.crawler.parse import parse_page
from services.crawler.template import TemplateCounter, blocks, drop_blocks, fingerprint, fingerprints

TEMPLATE = "Subscribe to our newsletter for the latest bird news."


def page(n: int) -> str:
    return f"# Bird {n}\n\nBird {n} lives near water and eats fish number {n}.\n\n{TEMPLATE}\n"


def test_blocks_split_on_blank_lines_and_keep_code_blocks_whole() -> None:
    markdown = "# Title\n\nOne line\nand its continuation\n\n```\ncode\n\nmore code\n```\n\n- a\n- b\n"

    assert list(blocks(markdown)) == [
        "# Title",
        "One line\nand its continuation",
        "```\ncode\n\nmore code\n```",
        "- a\n- b",
    ]


def test_a_fingerprint_ignores_spacing_and_case() -> None:
    assert fingerprint("Subscribe  to our\nNewsletter") == fingerprint("subscribe to our newsletter")
    assert fingerprint("Subscribe to our newsletter") != fingerprint("Subscribe to our podcast")


def test_a_parsed_page_carries_the_fingerprint_of_each_block() -> None:
    parsed = parse_page("http://h.test/", b"<main><h1>Birds</h1><p>Pelicans fish.</p><p>Herons wait.</p></main>")

    assert parsed.block_fingerprints == [
        fingerprint("# Birds"),
        fingerprint("Pelicans fish."),
        fingerprint("Herons wait."),
    ]
    assert parsed.block_fingerprints == fingerprints(parsed.markdown)


def test_blocks_on_most_pages_of_a_host_are_its_template() -> None:
    counter = TemplateCounter()
    for n in range(10):
        counter.add(fingerprints(page(n)))

    template = counter.template()

    assert template == {fingerprint(TEMPLATE)}
    assert drop_blocks(page(3), template) == "# Bird 3\n\nBird 3 lives near water and eats fish number 3.\n"


def test_nothing_is_template_before_enough_pages_were_seen() -> None:
    counter = TemplateCounter()
    counter.add(fingerprints(page(1)))
    counter.add(fingerprints(page(2)))

    assert counter.template() == set()


def test_a_block_repeated_within_one_page_counts_once() -> None:
    counter = TemplateCounter()
    counter.add(fingerprints(f"{TEMPLATE}\n\n{TEMPLATE}\n\n{TEMPLATE}\n"))
    for n in range(5):
        counter.add(fingerprints(page(n)[: -len(TEMPLATE) - 1]))

    assert counter.template() == set()


def test_headings_and_code_stay_unless_their_whole_section_goes() -> None:
    markdown = "## Parameters\n\nurl: where to go.\n\n```\ncurl x\n```\n\n## Related\n\nMore birds here.\n\nAnd here.\n"
    template = {
        fingerprint("## Parameters"),
        fingerprint("```\ncurl x\n```"),
        fingerprint("More birds here."),
        fingerprint("And here."),
    }

    assert drop_blocks(markdown, template) == "## Parameters\n\nurl: where to go.\n\n```\ncurl x\n```\n"


def test_a_heading_whose_section_kept_a_block_stays() -> None:
    markdown = "## Related\n\nMore birds here.\n\nA paragraph of this page.\n"

    assert drop_blocks(markdown, {fingerprint("More birds here.")}) == "## Related\n\nA paragraph of this page.\n"


_TEXT = st.text(alphabet=st.sampled_from("ab #`\n-"), max_size=12)
_MARKDOWN = st.lists(_TEXT, max_size=12).map("\n\n".join)


@given(_MARKDOWN)
def test_an_empty_template_changes_nothing(markdown: str) -> None:
    assert drop_blocks(markdown, set()) == markdown


@given(_MARKDOWN, st.data())
def test_dropping_keeps_the_other_blocks_in_order_and_is_idempotent(markdown: str, data: st.DataObject) -> None:
    names = fingerprints(markdown)
    template = set(data.draw(st.lists(st.sampled_from(names), max_size=len(names))) if names else [])

    once = drop_blocks(markdown, template)

    kept = list(blocks(once))
    rest = iter(blocks(markdown))
    assert all(block in rest for block in kept)  # a subsequence of the original blocks
    assert all(fingerprint(block) not in template or block.lstrip().startswith(("#", "```", "~~~")) for block in kept)
    assert drop_blocks(once, template) == once

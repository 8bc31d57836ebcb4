"""Search snippets as plain text: the Markdown syntax of a passage cut out of a document (links,
images, tables, headings, emphasis, code, quotes, lists) is left out, its words kept, and the
matches marked with ** on both sides."""

from __future__ import annotations

import re

# What the database puts around each match: characters no page's Markdown carries (private use),
# so the match marks survive the stripping and nothing of the page reads as one.
START = "\ue000"
STOP = "\ue001"
MARK = "**"

_IMAGE = re.compile(r"!\[([^\]\n]*)\]\([^)\n]*\)?")
_LINK = re.compile(r"\[([^\]\n]*)\]\([^)\n]*\)?")
_REFERENCE = re.compile(r"\[([^\]\n]*)\]\[[^\]\n]*\]")
# A passage may start inside a link: `Prev](https://…)`: the target and its bracket go.
_TARGET = re.compile(r"\]\([^)\s]*\)?")
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]*)>")
_HTML_TAG = re.compile(r"</?[A-Za-z][^>\n]*>")
_TABLE_RULE = re.compile(r"(?<![\w])[:\-]*-{3,}[:\-]*(?![\w])")
_HEADING = re.compile(r"(?:^|(?<=\s))#{1,6}(?=\s|$)")
_QUOTE = re.compile(r"(?:^|(?<=\n))[ \t]*(?:>[ \t]?)+")
_BULLET = re.compile(r"(?:^|(?<=\n))[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+")
_FENCE = re.compile(r"(?:`{3,}|~{3,})[\w+-]*")
_EMPHASIS = re.compile(r"(?<![\w\\])(?:\*{1,3}|_{1,3})(?=\S)|(?<=\S)(?:\*{1,3}|_{1,3})(?![\w])")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~])")


def plain_snippet(passage: str) -> str:
    """`passage` (Markdown, matches between START and STOP) as one line of plain text."""
    text = passage.replace(MARK, " ")
    text = _FENCE.sub(" ", text)
    text = _IMAGE.sub(r" \1 ", text)
    text = _LINK.sub(r"\1", text)
    text = _REFERENCE.sub(r"\1", text)
    text = _TARGET.sub(" ", text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _HTML_TAG.sub(" ", text)
    text = _QUOTE.sub(" ", text)
    text = _BULLET.sub(" ", text)
    text = _HEADING.sub(" ", text)
    text = _TABLE_RULE.sub(" ", text)
    text = _EMPHASIS.sub("", text)
    text = _ESCAPE.sub(r"\1", text)
    text = text.replace("`", "")
    # Whatever is left of the syntax that made it a link or a table cell: no `](`, no pipe.
    text = text.replace("|", " ").replace("[", " ").replace("]", " ")
    text = text.replace(MARK, " ")
    text = " ".join(text.split())
    return text.replace(START, MARK).replace(STOP, MARK)

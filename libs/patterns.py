"""URL patterns (include_patterns, exclude_patterns): regular expressions run by RE2, in time
linear in the URL whatever the pattern, checked the same way when a definition is saved and when
a crawl runs."""

from __future__ import annotations

from typing import Protocol

import re2

# RE2 keeps a compiled pattern (and the automata it builds while searching) within this much
# memory: a pattern that needs more to compile is refused; a search that outgrows it falls back
# to a slower automaton, still linear. This is RE2's default, stated so it cannot drift.
MAX_MEMORY = 8 << 20
# What RE2 reports for the Python syntax it does not have, and what to say about it.
_UNSUPPORTED = ("invalid perl operator", "invalid escape sequence", "bad repetition operator")
_SYNTAX = " (patterns use RE2 syntax: no lookaround, backreferences, possessive quantifiers or \\Z; use \\z)"


class Pattern(Protocol):
    def search(self, text: str) -> object | None: ...


class PatternError(ValueError):
    """A pattern RE2 cannot run; the message says why, ready to follow a field name."""


def compile_pattern(pattern: str) -> Pattern:
    options = re2.Options()
    options.max_mem = MAX_MEMORY
    # The error comes back as an exception; RE2 would also print it to stderr, outside our logs.
    options.log_errors = False
    try:
        return re2.compile(pattern, options)  # type: ignore[no-any-return]
    except UnicodeEncodeError:
        raise PatternError("is not valid text (it holds a lone surrogate)") from None
    except re2.error as exc:
        raw = exc.args[0] if exc.args else ""
        detail = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        hint = _SYNTAX if detail.startswith(_UNSUPPORTED) else ""
        raise PatternError(f"is not a valid regular expression: {detail}{hint}") from None

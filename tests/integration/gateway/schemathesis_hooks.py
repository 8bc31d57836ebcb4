"""Schemathesis hooks for the fuzz test (loaded through SCHEMATHESIS_HOOKS).

- TOML bodies: schemathesis cannot write application/toml by itself; it gets real definition
  files, broken ones and arbitrary text.
- A known crawler bug is kept out of the run so everything else stays checked: on SQLite, a
  search narrowed by `job_id` or `source_id` fails (500). `test_jobs_api.py::
  test_search_within_a_job_or_source` marks it as an expected failure; when the crawler is
  fixed, that test fails as an unexpected pass, and this filter goes with its xfail.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import strategies as st

TOML_DEFINITIONS = [
    b'id = "fuzz-toml"\nname = "Fuzz"\ntype = "crawler"\n[[steps]]\nname = "r"\naction = "reindex"\n',
    b'id = "fuzz-toml"\nname = "Fuzz"\ntype = "custom"\nschedule = "0 3 * * *"\n'
    b'[[steps]]\nname = "s"\naction = "corpus_summary"\non_error = "continue"\n',
    b'kind = "source"\nid = "fuzz-toml-source"\nname = "S"\nbase_url = "https://example.invalid/"\n',
    b'id = "broken\nname = ',
    b"[[steps]]\n[[steps]]\n",
]

schemathesis.openapi.media_type(
    "application/toml",
    st.one_of(st.sampled_from(TOML_DEFINITIONS), st.text(max_size=200).map(lambda text: text.encode())),
)


@schemathesis.hook
def filter_query(ctx: Any, query: dict[str, Any] | None) -> bool:
    if not query or ctx.operation.path != "/api/documents":
        return True
    return not (str(query.get("q") or "").strip() and (query.get("job_id") or query.get("source_id")))

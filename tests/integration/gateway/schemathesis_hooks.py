"""Schemathesis hooks for the fuzz test (loaded through SCHEMATHESIS_HOOKS).

TOML bodies: schemathesis cannot write application/toml by itself; it gets real definition
files, broken ones and arbitrary text.
"""

from __future__ import annotations

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

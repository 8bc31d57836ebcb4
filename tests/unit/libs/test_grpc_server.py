"""Who a server admits: the bearer-token rule of libs/grpc_server.py, on any input."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from libs.grpc_server import refusal

METHOD = "/quaero.v1.ExecutorService/DeleteJobDefinition"
tokens = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64)


@given(tokens)
def test_the_token_under_the_bearer_scheme_is_admitted(token: str) -> None:
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert refusal(METHOD, [("authorization", f"{scheme} {token}")], token) is None


@given(tokens, tokens)
def test_any_other_token_is_refused(token: str, presented: str) -> None:
    if presented != token:
        assert refusal(METHOD, [("authorization", f"Bearer {presented}")], token) == "wrong API token"


@given(tokens, st.text(max_size=80))
def test_a_value_that_is_not_bearer_and_the_token_is_never_admitted(token: str, value: str) -> None:
    if value.partition(" ")[2].strip() != token or value.partition(" ")[0].lower() != "bearer":
        assert refusal(METHOD, [("authorization", value)], token) is not None


@given(tokens)
def test_no_token_at_all_is_refused_saying_what_to_send(token: str) -> None:
    assert refusal(METHOD, [("x-request-id", "r1")], token) == (
        "an API token is required: send `authorization: Bearer <token>` metadata"
    )


@given(st.sampled_from(["Check", "Watch"]), tokens)
def test_health_checking_is_always_admitted(method: str, token: str) -> None:
    assert refusal(f"/grpc.health.v1.Health/{method}", None, token) is None


@given(st.text(max_size=80))
def test_without_a_token_configured_everyone_is_admitted(value: str) -> None:
    assert refusal(METHOD, [("authorization", value)], None) is None

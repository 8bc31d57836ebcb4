"""Domain errors as gRPC statuses: whatever they say, a status fits in a client's trailers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from libs.errors import FieldViolation, InvalidArgument, NotFound, violations_from_status

# gRPC clients refuse trailers past 8 KiB; the message is percent-encoded there (up to 3 bytes
# a byte) and the details base64 (4 bytes for 3).
TRAILER_LIMIT = 8192


def trailer_size(error: InvalidArgument | NotFound) -> int:
    status = error.to_status()
    details = status.SerializeToString()
    return 3 * len(status.message.encode()) + (len(details) * 4 + 2) // 3


def test_a_short_error_is_carried_whole() -> None:
    error = InvalidArgument(violations=[FieldViolation("steps[0].action", "unknown action 'x'")])
    status = error.to_status()
    assert status.message == "steps[0].action: unknown action 'x'"
    assert violations_from_status(status) == error.violations


def test_a_message_echoing_a_long_value_is_cut() -> None:
    status = NotFound(f"job definition {'a' * 5000!r} not found").to_status()
    assert len(status.message.encode()) <= 600 and status.message.endswith("…")


@settings(max_examples=100)
@given(
    st.lists(
        st.tuples(st.text(max_size=3000), st.text(max_size=3000)).map(lambda t: FieldViolation(*t)),
        min_size=1,
        max_size=60,
    )
)
def test_any_violations_fit_in_the_trailers(violations: list[FieldViolation]) -> None:
    error = InvalidArgument(violations=violations)
    assert trailer_size(error) < TRAILER_LIMIT // 2
    carried = violations_from_status(error.to_status())
    assert 1 <= len(carried) <= len(violations)
    assert carried[0].field[:50] == violations[0].field.encode("utf-8", "replace").decode()[:50]

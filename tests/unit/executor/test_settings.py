"""Go executor test 1 (constructor refuses missing dependencies) as settings checks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.executor.scheduler import next_fire
from services.executor.settings import ExecutorSettings


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("executor_self_addr", "executor"),
        ("executor_self_addr", "executor:http"),
        ("crawler_addr", ":50052"),
        ("executor_addr", "host:70000"),
        ("execution_lease_seconds", 0),
        ("executor_port", -1),
    ],
)
def test_bad_settings_are_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as err:
        ExecutorSettings(**{field: value})
    assert field in str(err.value)


def test_good_settings() -> None:
    settings = ExecutorSettings(executor_self_addr="executor:50051", crawler_addr="crawler:50052")
    assert settings.executor_self_addr == "executor:50051"


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        ("*/5 * * * *", "2026-11-22T10:03:10", "2026-11-22T10:05:00"),
        ("*/5 * * * *", "2026-11-22T10:05:00", "2026-11-22T10:10:00"),
        ("*/10 * * * * *", "2026-11-22T10:00:01", "2026-11-22T10:00:10"),
        ("0 2 * * 0", "2026-11-22T03:00:00", "2026-11-29T02:00:00"),
        ("@hourly", "2026-11-22T10:30:00", "2026-11-22T11:00:00"),
    ],
)
def test_next_fire(schedule: str, after: str, expected: str) -> None:
    from datetime import UTC, datetime

    got = next_fire(schedule, datetime.fromisoformat(after).replace(tzinfo=UTC))
    assert got == datetime.fromisoformat(expected).replace(tzinfo=UTC)

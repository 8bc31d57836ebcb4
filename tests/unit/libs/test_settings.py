from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from libs.settings import CommonSettings


def test_embedded_defaults_use_one_sqlite_file_per_service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("QUAERO_DATABASE_URL", raising=False)
    settings = CommonSettings(data_dir=tmp_path)
    assert settings.embedded
    assert settings.database_url_for("crawler") == f"sqlite+aiosqlite:///{tmp_path / 'crawler.db'}"


def test_plain_postgres_urls_get_the_async_driver() -> None:
    settings = CommonSettings(database_url="postgresql://u@h/db")
    assert settings.database_url == "postgresql+asyncpg://u@h/db"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("database_url", "mysql://u@h/db"),
        ("amqp_url", "http://rabbit/"),
        ("log_level", "chatty"),
        ("shutdown_grace", 0),
        ("fetch_deny", "10.0.0.0/8, intranet"),
        ("fetch_allow", "10.0.0.0/33"),
    ],
)
def test_bad_settings_name_the_variable(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as err:
        CommonSettings(**{field: value})
    assert field in str(err.value)


def test_fetch_ranges_are_comma_separated_cidrs_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUAERO_FETCH_DENY", "127.0.0.0/8, ::1 ,10.1.2.3/16")
    monkeypatch.setenv("QUAERO_BLOCK_PRIVATE_NETWORKS", "true")

    settings = CommonSettings()

    assert [str(n) for n in settings.fetch_deny] == ["127.0.0.0/8", "::1/128", "10.1.0.0/16"]
    assert settings.fetch_allow == []
    assert settings.block_private_networks is True


def test_separate_processes_need_postgres_and_rabbitmq() -> None:
    with pytest.raises(SystemExit) as err:
        CommonSettings(database_url=None, amqp_url=None).require_shared_infrastructure(amqp=True)
    assert "QUAERO_DATABASE_URL and QUAERO_AMQP_URL" in str(err.value)


@pytest.mark.parametrize(
    ("given", "adopted"),
    [
        ("req-42", "req-42"),
        ("4f6a:b.c_d", "4f6a:b.c_d"),
        ("a" * 64, "a" * 64),
        ("a" * 65, None),
        ("café", None),
        ("has space", None),
        ("", None),
        (None, None),
        (b"bytes-ok", "bytes-ok"),
    ],
)
def test_request_ids_are_adopted_only_when_safe_everywhere(given: object, adopted: str | None) -> None:
    from libs.logs import adopt_request_id

    assert adopt_request_id(given) == adopted  # type: ignore[arg-type]

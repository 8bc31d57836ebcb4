from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
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


# ------------------------------------------------------------------ who may reach the servers

NOT_LOOPBACK = ["0.0.0.0", "::", "", "10.1.2.3", "192.168.0.7", "2001:db8::1", "executor", "example.org"]
LOOPBACK = ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"]


@pytest.mark.parametrize("host", NOT_LOOPBACK)
def test_listening_beyond_loopback_without_a_token_is_refused_saying_how_to_fix_it(host: str) -> None:
    with pytest.raises(ValidationError) as err:
        CommonSettings(bind_host=host)

    message = str(err.value)
    assert f"QUAERO_BIND_HOST={host!r}" in message
    assert "QUAERO_API_TOKEN" in message and "QUAERO_ALLOW_UNAUTHENTICATED=true" in message


@pytest.mark.parametrize("host", NOT_LOOPBACK)
def test_listening_beyond_loopback_takes_a_token_or_an_explicit_choice(host: str) -> None:
    assert CommonSettings(bind_host=host, api_token="s3cret").bind_host == host
    assert CommonSettings(bind_host=host, allow_unauthenticated=True).bind_host == host


@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_needs_no_token(host: str) -> None:
    assert CommonSettings(bind_host=host).api_token is None


@given(st.ip_addresses())
def test_any_address_but_loopback_needs_a_token(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    host = str(address)
    if address.is_loopback:
        CommonSettings(bind_host=host)
    else:
        with pytest.raises(ValidationError):
            CommonSettings(bind_host=host)


@pytest.mark.parametrize("token", ["has space", "café", "tab\there", "line\nbreak"])
def test_a_token_that_cannot_travel_in_a_header_is_refused(token: str) -> None:
    with pytest.raises(ValidationError) as err:
        CommonSettings(api_token=token)
    assert "api_token" in str(err.value)


def test_an_empty_token_means_none() -> None:
    assert CommonSettings(api_token="").api_token is None


@pytest.mark.parametrize("present", ["grpc_tls_cert", "grpc_tls_key"])
def test_a_tls_certificate_and_its_key_go_together(present: str, tmp_path: Path) -> None:
    pem = tmp_path / "file.pem"
    pem.write_text("-----BEGIN-----")
    with pytest.raises(ValidationError) as err:
        CommonSettings(**{present: pem})
    assert "QUAERO_GRPC_TLS_CERT and QUAERO_GRPC_TLS_KEY go together" in str(err.value)


def test_a_missing_tls_file_is_refused_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as err:
        CommonSettings(grpc_tls_ca=tmp_path / "nowhere.pem")
    assert "grpc_tls_ca" in str(err.value)

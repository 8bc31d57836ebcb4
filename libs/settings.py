"""Settings shared by every Quaero process, read from QUAERO_* environment variables."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import Field, FilePath, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
# The token travels in an HTTP header and in gRPC metadata: printable ASCII, no spaces.
_TOKEN = re.compile(r"[\x21-\x7e]+")


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine ("0.0.0.0", "" and any
    name but localhost do not: a name may resolve to anything)."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class CommonSettings(BaseSettings):
    """Fields every service reads; each service extends this with its own."""

    # Errors leave the values out: they may be the token, or a URL with a password.
    model_config = SettingsConfigDict(env_prefix="QUAERO_", extra="ignore", hide_input_in_errors=True)

    database_url: str | None = Field(
        default=None,
        description="postgresql+asyncpg://user@host/db. Unset: one SQLite file per service under data_dir.",
    )
    amqp_url: str | None = Field(
        default=None, description="amqp://user:pass@host/. Unset: an in-process queue (embedded mode only)."
    )
    data_dir: Path = Field(default=Path("data"), description="Where embedded SQLite files live.")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    bind_host: str = Field(default="127.0.0.1", description="Interface the servers listen on (0.0.0.0 in containers).")
    executor_addr: str = Field(default="127.0.0.1:50051", description="host:port where the executor is reached.")
    crawler_addr: str = Field(default="127.0.0.1:50052", description="host:port where the crawler is reached.")
    shutdown_grace: float = Field(default=10.0, gt=0, description="Seconds in-flight work gets after SIGTERM.")
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Serve this process's Prometheus metrics at :port/metrics (executor, crawler and workers; "
        "the gateway serves /metrics on its own port). Unset: no endpoint.",
    )
    # The fetch guard (libs/fetch_guard.py): where pages, robots.txt, sitemaps and webhooks may go.
    block_private_networks: bool = Field(
        default=False,
        description="Refuse fetches to loopback, private and other non-public addresses (link-local and cloud "
        "metadata addresses are refused whatever this says).",
    )
    fetch_allow: Annotated[list[ipaddress.IPv4Network | ipaddress.IPv6Network], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated CIDR ranges fetches may reach even with block_private_networks (10.1.0.0/16).",
    )
    fetch_deny: Annotated[list[ipaddress.IPv4Network | ipaddress.IPv6Network], NoDecode] = Field(
        default_factory=list, description="Comma-separated CIDR ranges fetches never reach (wins over fetch_allow)."
    )
    api_token: str | None = Field(
        default=None,
        description="Bearer token required on every REST route but /healthz and every gRPC method but health "
        "checking; the services send it to each other. Unset: no authentication, and servers must bind loopback.",
    )
    allow_unauthenticated: bool = Field(
        default=False,
        description="Let servers listen on a non-loopback bind_host without api_token (a network you trust entirely).",
    )
    grpc_tls_cert: FilePath | None = Field(
        default=None,
        description="PEM certificate (chain) the gRPC servers present; with grpc_tls_key they accept TLS only, "
        "and the gRPC clients of the process use TLS.",
    )
    grpc_tls_key: FilePath | None = Field(default=None, description="PEM private key of grpc_tls_cert.")
    grpc_tls_ca: FilePath | None = Field(
        default=None,
        description="PEM certificates gRPC clients trust for the servers' (unset: the system's roots). Setting it "
        "makes the clients use TLS; for a self-signed certificate, the certificate itself.",
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in _LEVELS:
            raise ValueError(f"must be one of {', '.join(sorted(_LEVELS))}")
        return value.upper()

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str | None) -> str | None:
        if not value:
            return None
        if value.startswith(("postgres://", "postgresql://")):
            # Accept the usual spelling and pick the async driver ourselves.
            value = "postgresql+asyncpg://" + value.split("://", 1)[1]
        if not value.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise ValueError("must be a postgresql+asyncpg:// or sqlite+aiosqlite:// URL")
        return value

    @field_validator("fetch_allow", "fetch_deny", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        """`10.0.0.0/8, 192.168.1.5` from the environment (a bare address is its own /32 or /128)."""
        items = [v for v in re.split(r"[,\s]+", value) if v] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            return value
        networks = []
        for item in items:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except (TypeError, ValueError):
                raise ValueError(f"{item!r} is not an IP address or CIDR range such as 10.0.0.0/8") from None
        return networks

    @field_validator("amqp_url")
    @classmethod
    def _amqp_scheme(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("amqp://", "amqps://")):
            raise ValueError("must be an amqp:// or amqps:// URL")
        return value

    @field_validator("api_token")
    @classmethod
    def _usable_token(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not _TOKEN.fullmatch(value):
            raise ValueError("must be printable ASCII without spaces (it is sent in HTTP headers and gRPC metadata)")
        return value

    @model_validator(mode="after")
    def _exposed_only_with_a_token(self) -> Self:
        if not self.api_token and not self.allow_unauthenticated and not is_loopback(self.bind_host):
            raise ValueError(
                f"QUAERO_BIND_HOST={self.bind_host!r} accepts connections from other machines, but QUAERO_API_TOKEN "
                "is unset, so anyone reaching the ports could drive Quaero and make it fetch for them: set "
                "QUAERO_API_TOKEN, bind 127.0.0.1, or set QUAERO_ALLOW_UNAUTHENTICATED=true on a network you trust"
            )
        if (self.grpc_tls_cert is None) != (self.grpc_tls_key is None):
            raise ValueError("QUAERO_GRPC_TLS_CERT and QUAERO_GRPC_TLS_KEY go together: set both or neither")
        return self

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    def database_url_for(self, service: str) -> str:
        """The database a service uses: the shared PostgreSQL, or its own SQLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{service}.db').resolve()}"

    def require_shared_infrastructure(self, *, amqp: bool) -> None:
        """Separate processes only meet through PostgreSQL (and RabbitMQ): refuse to start without."""
        missing = []
        if not self.database_url:
            missing.append("QUAERO_DATABASE_URL")
        if amqp and not self.amqp_url:
            missing.append("QUAERO_AMQP_URL")
        if missing:
            raise SystemExit(
                f"{' and '.join(missing)} must be set to run this service as its own process "
                "(use `quaero up` for the embedded single-process mode)"
            )

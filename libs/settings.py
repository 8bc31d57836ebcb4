"""Settings shared by every Quaero process, read from QUAERO_* environment variables."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


class CommonSettings(BaseSettings):
    """Fields every service reads; each service extends this with its own."""

    model_config = SettingsConfigDict(env_prefix="QUAERO_", extra="ignore")

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

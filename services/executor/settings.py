"""The executor's settings (QUAERO_* environment variables)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from libs.settings import CommonSettings


class ExecutorSettings(CommonSettings):
    executor_port: int = Field(
        default=50051, ge=0, le=65535, description="gRPC port of the executor (0: any free port)."
    )
    executor_self_addr: str | None = Field(
        default=None,
        description="host:port other replicas and the executor itself use to call TriggerPostJobs. "
        "Unset: 127.0.0.1 and the bound port.",
    )
    execution_lease_seconds: float = Field(
        default=15.0,
        gt=0,
        description="How long an executor owns a running execution without renewing; after it, another resumes it.",
    )
    scheduler_enabled: bool = Field(default=True, description="Run cron schedules and auto_start in this process.")
    definitions_dir: Path | None = Field(
        default=None, description="Definition and source files (TOML or JSON) upserted at start-up."
    )

    @field_validator("executor_self_addr", "executor_addr", "crawler_addr")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be host:port, for example executor:50051")
        return value

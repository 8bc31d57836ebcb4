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

    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="How long one webhook delivery attempt may take, answer included."
    )
    webhook_retry_initial_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Pause after a webhook delivery's first failed attempt; it doubles after each (for up to 24 h).",
    )
    webhook_retry_max_seconds: float = Field(
        default=3600.0, gt=0, description="Longest pause between two attempts of a webhook delivery."
    )
    webhook_max_response_bytes: int = Field(
        default=65536, ge=0, description="Most of a webhook receiver's answer read (the rest is dropped)."
    )
    webhook_concurrency: int = Field(
        default=8, ge=1, le=256, description="Webhook deliveries this executor attempts at once."
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

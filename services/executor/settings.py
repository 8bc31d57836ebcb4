"""The executor's settings (QUAERO_* environment variables)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

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
    definitions_dir: Path | None = Field(
        default=None, description="Definition and source files (TOML or JSON) upserted at start-up."
    )

"""The gateway's settings (QUAERO_* environment variables)."""

from __future__ import annotations

from pydantic import Field

from libs.settings import CommonSettings


class GatewaySettings(CommonSettings):
    gateway_port: int = Field(
        default=8080, ge=0, le=65535, description="HTTP port of the REST API and web UI (0: any free port)."
    )
    gateway_grpc_port: int = Field(
        default=50050, ge=0, le=65535, description="gRPC port of the gateway's health checking and reflection."
    )
    rpc_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds the gateway waits for the executor or crawler to answer a request before it answers 504.",
    )

"""`python -m libs.healthcheck HOST:PORT [SERVICE]`: exit 0 if the gRPC server reports SERVING.

Used by container healthchecks, so images need no extra probe binary. Health checking needs no
token; with QUAERO_GRPC_TLS_* set the probe speaks TLS as the services do (so the certificate must
name the address probed, 127.0.0.1 in docker-compose.yml).
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.grpc_server import GrpcAccess
from libs.settings import CommonSettings


def check(target: str, service: str = "", timeout: float = 3.0, access: GrpcAccess | None = None) -> bool:
    credentials = (access or GrpcAccess()).channel_credentials()
    with grpc.insecure_channel(target) if credentials is None else grpc.secure_channel(target, credentials) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print("usage: python -m libs.healthcheck HOST:PORT [SERVICE]", file=sys.stderr)
        return 2
    access = GrpcAccess.from_settings(CommonSettings())
    return 0 if check(argv[0], argv[1] if len(argv) > 1 else "", access=access) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

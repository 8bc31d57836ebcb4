"""Prometheus metrics shared by every service (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

GRPC_REQUESTS = Counter(
    "quaero_grpc_requests_total",
    "gRPC calls served, by service, method and status code.",
    ["service", "method", "code"],
)
GRPC_LATENCY = Histogram(
    "quaero_grpc_request_duration_seconds",
    "Time spent serving a gRPC call (whole stream for streaming calls).",
    ["service", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600),
)


def observe_rpc(service: str, method: str, code: str, seconds: float) -> None:
    GRPC_REQUESTS.labels(service, method, code).inc()
    GRPC_LATENCY.labels(service, method).observe(seconds)

"""Prometheus metrics, every one of them defined here (one registry per process).

In embedded mode (`quaero up`) every service shares the process, so the gateway's `/metrics`
shows them all; a service running as its own process exposes them with `serve_metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from libs.settings import CommonSettings

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600)

# ------------------------------------------------------------------------------ gRPC (every service)

GRPC_REQUESTS = Counter(
    "quaero_grpc_requests_total",
    "gRPC calls served, by service, method and status code.",
    ["service", "method", "code"],
)
GRPC_ERRORS = Counter(
    "quaero_grpc_errors_total",
    "gRPC calls served that did not end OK, by service, method and status code.",
    ["service", "method", "code"],
)
GRPC_LATENCY = Histogram(
    "quaero_grpc_request_duration_seconds",
    "Time spent serving a gRPC call (whole stream for streaming calls).",
    ["service", "method"],
    buckets=_LATENCY_BUCKETS,
)


def observe_rpc(service: str, method: str, code: str, seconds: float) -> None:
    GRPC_REQUESTS.labels(service, method, code).inc()
    if code != "OK":
        GRPC_ERRORS.labels(service, method, code).inc()
    GRPC_LATENCY.labels(service, method).observe(seconds)


# ---------------------------------------------------------------------------------- HTTP (gateway)

HTTP_REQUESTS = Counter(
    "quaero_http_requests_total",
    "REST requests answered by the gateway, by method, route template and HTTP status.",
    ["method", "route", "status"],
)
HTTP_ERRORS = Counter(
    "quaero_http_errors_total",
    "REST requests answered with a 4xx or 5xx status, by method, route template and HTTP status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "quaero_http_request_duration_seconds",
    "Time until the gateway sent the response head (Server-Sent Events streams count until then).",
    ["method", "route"],
    buckets=_LATENCY_BUCKETS,
)
SSE_STREAMS = Gauge("quaero_sse_streams", "Server-Sent Events streams open now.")


def observe_http(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    if status >= 400:
        HTTP_ERRORS.labels(method, route, str(status)).inc()
    HTTP_LATENCY.labels(method, route).observe(seconds)


# ------------------------------------------- executions and crawl jobs (read by the gateway at scrape)

EXECUTIONS = Gauge("quaero_executions", "Executions in the run ledger, by status.", ["status"])
CRAWL_JOBS = Gauge("quaero_crawl_jobs", "Crawl jobs, by status.", ["status"])
SERVICE_UP = Gauge(
    "quaero_service_up", "1 when the gateway could read the service's counts at this scrape, else 0.", ["service"]
)

# ------------------------------------------------------------------------ crawling (crawler, workers)

PAGES_FETCHED = Counter(
    "quaero_pages_fetched_total",
    "Page fetches by HTTP status class (2xx, 3xx, 4xx, 5xx) or `error` (timeout, connection, TLS).",
    ["status_class"],
)
FETCH_LATENCY = Histogram(
    "quaero_fetch_duration_seconds",
    "Time to fetch one page: request sent to body read, redirects included.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
PAGES_RENDERED = Counter(
    "quaero_pages_rendered_total",
    "Pages rendered in headless Chromium, by outcome: `ok`, or `error` (a crash, a hang, a page that did not load).",
    ["outcome"],
)
RENDER_LATENCY = Histogram(
    "quaero_render_duration_seconds",
    "Time to render one page in Chromium: a page slot taken to its DOM read.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SETTLES = Counter(
    "quaero_settles_total",
    "Settle transactions of crawl workers: `fast` (one call of crawl_settle) or `full` (the whole transaction, "
    "when the fast one cannot settle a batch, or on SQLite).",
    ["kind"],
)
QUEUE_DEPTH = Gauge("quaero_queue_depth", "URL tasks ready in the queue, waiting for a worker.", ["queue"])


def status_class(status: int | None) -> str:
    """`2xx` … `5xx` for an HTTP status; `error` when no response came back (None or not HTTP)."""
    if status is None or not 100 <= status <= 599:
        return "error"
    return f"{status // 100}xx"


def observe_fetch(status: int | None, seconds: float) -> None:
    """Count one fetch: its HTTP status (None when the request failed) and how long it took."""
    PAGES_FETCHED.labels(status_class(status)).inc()
    FETCH_LATENCY.observe(seconds)


def observe_render(ok: bool, seconds: float) -> None:
    """Count one page rendered in the browser, and how long it took."""
    PAGES_RENDERED.labels("ok" if ok else "error").inc()
    RENDER_LATENCY.observe(seconds)


def set_queue_depth(queue: str, depth: int) -> None:
    QUEUE_DEPTH.labels(queue).set(depth)


async def sample_queue_depth(
    queue: str, depth: Callable[[], Awaitable[int]], stop: asyncio.Event, interval: float = 5.0
) -> None:
    """Record `await depth()` as the queue's depth every `interval` seconds until `stop` is set.

    A failed sample (a broker reconnecting) is skipped: the gauge keeps its last value."""
    while not stop.is_set():
        try:
            set_queue_depth(queue, await depth())
        except Exception:
            log.debug("queue depth sample failed", exc_info=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


# ----------------------------------------------------------------------- the endpoint of a service


@dataclass
class MetricsServer:
    """A `/metrics` HTTP endpoint running in a daemon thread."""

    server: WSGIServer
    port: int

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_metrics(port: int, host: str = "127.0.0.1") -> MetricsServer:
    """Serve this process's metrics at http://host:port/metrics (port 0 picks a free port).

    For services running as their own processes; the gateway serves `/metrics` on its HTTP port."""
    server, _thread = start_http_server(port, addr=host)
    bound = server.server_port
    log.info("metrics endpoint listening", extra={"address": f"{host}:{bound}"})
    return MetricsServer(server, bound)


def serve_process_metrics(settings: CommonSettings) -> MetricsServer | None:
    """A service running as its own process serves /metrics when QUAERO_METRICS_PORT is set.

    (In embedded mode every service shares one process and one registry, which the gateway
    serves on its own port.)"""
    if settings.metrics_port is None:
        return None
    return serve_metrics(settings.metrics_port, settings.bind_host)

"""JSON-lines logging with a request id and resource ids carried in context variables."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

REQUEST_ID_HEADER = "x-request-id"

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_fields_var: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("log_fields", default=None)

# Attributes every LogRecord has; anything else passed with `extra=` is emitted as a field.
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def new_request_id() -> str:
    return uuid.uuid4().hex


def adopt_request_id(value: str | bytes | None) -> str | None:
    """A caller's request id if it is safe to carry everywhere (gRPC metadata, log lines, a
    database column): 1-64 letters, digits, '.', '_', ':' or '-'. Anything else is replaced."""
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    return value if value and _REQUEST_ID.match(value) else None


def current_request_id() -> str | None:
    return request_id_var.get()


@contextmanager
def request_context(request_id: str | None) -> Iterator[str]:
    """Run a block under a request id (a new one when None)."""
    rid = request_id or new_request_id()
    token = request_id_var.set(rid)
    try:
        yield rid
    finally:
        request_id_var.reset(token)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add fields such as execution_id or job_id to every log line written inside the block."""
    merged = {**(_fields_var.get() or {}), **{k: v for k, v in fields.items() if v not in (None, "")}}
    token = _fields_var.set(merged)
    try:
        yield
    finally:
        _fields_var.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, service, logger, message and context fields."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": getattr(record, "service", None) or self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            entry["request_id"] = rid
        entry.update(_fields_var.get() or {})
        for key, value in vars(record).items():
            if key not in _RESERVED and key != "service":
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class _ServiceFilter(logging.Filter):
    """Tags records with the service of the task that logged them (embedded mode runs several)."""

    def filter(self, record: logging.LogRecord) -> bool:
        service = service_var.get()
        if service and not hasattr(record, "service"):
            record.service = service
        return True


service_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("service", default=None)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record to stdout as JSON lines. Safe to call more than once."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(_ServiceFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries that narrate every connection at INFO, and aiosqlite, whose DEBUG lines carry SQL
    # parameters (source auth among them): secrets must not reach the logs at any level.
    for noisy in (
        "aio_pika",
        "aiormq",
        "httpx",
        "httpcore",
        "uvicorn.access",
        "alembic.runtime.migration",
        "aiosqlite",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))

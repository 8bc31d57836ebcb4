"""One error shape for every route, and the table mapping gRPC status codes to HTTP."""

from __future__ import annotations

import logging
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.rpc import status_pb2
from starlette.exceptions import HTTPException as StarletteHTTPException

from libs.errors import FieldViolation, QuaeroError, violations_from_status

log = logging.getLogger(__name__)

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
_HTTP_CODE_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED", 409: "ALREADY_EXISTS", 413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}  # fmt: skip


class ApiError(Exception):
    """An error the gateway itself raises (not one from a service)."""

    def __init__(
        self, status: int, message: str, details: list[FieldViolation] | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.details = status, message, details or []
        self.code = code or _HTTP_CODE_NAMES.get(status, "ERROR")


def error_body(code: str, message: str, details: list[FieldViolation] | None = None) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": [{"field": d.field, "message": d.description} for d in details or []],
        }
    }


def error_response(status: int, code: str, message: str, details: list[FieldViolation] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status)


def _status_details(exc: grpc.aio.AioRpcError) -> list[FieldViolation]:
    for key, value in exc.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            return violations_from_status(status_pb2.Status.FromString(value))
    return []


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(grpc.aio.AioRpcError)
    async def _grpc(_request: Request, exc: grpc.aio.AioRpcError) -> JSONResponse:
        code = exc.code()
        status = HTTP_STATUS.get(code, 500)
        if status >= 500:
            log.warning("service call failed", extra={"grpc_code": code.name, "grpc_message": exc.details()})
        message = exc.details() or code.name.lower()
        if code == grpc.StatusCode.UNAVAILABLE:
            message = "a Quaero service is unavailable; try again shortly"
        elif status == 500:
            message = "internal error"
        return error_response(status, code.name, message, _status_details(exc))

    @app.exception_handler(QuaeroError)
    async def _domain(_request: Request, exc: QuaeroError) -> JSONResponse:
        return error_response(
            HTTP_STATUS.get(exc.code, 500), exc.code.name, exc.message, getattr(exc, "violations", None)
        )

    @app.exception_handler(ApiError)
    async def _api(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            FieldViolation(_field_path(tuple(e.get("loc", ()))), str(e.get("msg", "invalid"))) for e in exc.errors()
        ]
        message = "; ".join(str(d) for d in details) or "invalid request"
        return error_response(400, "INVALID_ARGUMENT", message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such route"
        return JSONResponse(
            error_body(_HTTP_CODE_NAMES.get(exc.status_code, "ERROR"), message),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return error_response(500, "INTERNAL", "internal error")

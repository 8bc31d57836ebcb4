"""Request bodies: JSON, or TOML with Content-Type application/toml, into protobuf messages."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from google.protobuf.message import Message

from libs.definition_files import Kind, loads, parse_text
from libs.errors import FieldViolation
from libs.proto_json import from_dict
from services.gateway.errors import ApiError

M = TypeVar("M", bound=Message)

MAX_BODY = 5 * 1024 * 1024
TOML_TYPES = {"application/toml", "text/toml", "application/x-toml"}


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "application/json").split(";")[0].strip().lower()


def _too_large() -> ApiError:
    # The connection stays open: the server reads what the client still sends and drops it (never
    # holding it) before the next request. Closed now, the kernel would reset it, and a client still
    # sending (most do not read before they have sent) would never see the 413.
    return ApiError(413, f"request body is larger than {MAX_BODY} bytes")


async def _read_body(request: Request) -> bytes:
    """The body, refused (413) from its Content-Length before anything is read, or once the
    chunks read pass MAX_BODY: never more than that is held."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and (len(declared) > 12 or int(declared) > MAX_BODY):
        raise _too_large()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


async def read_document(request: Request, kind: Kind) -> dict[str, Any]:
    """The body as one JSON object; TOML is read in the original Quaero file shape."""
    body = await _read_body(request)
    media = _media_type(request)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "request body is not UTF-8", [FieldViolation("body", "is not UTF-8")]) from exc
    if not text.strip():
        raise ApiError(400, "request body is empty", [FieldViolation("body", "is required")])
    if media in TOML_TYPES:
        docs = parse_text(text, "toml")
        if len(docs) != 1 or docs[0].kind != kind:
            want = 'a source (kind = "source")' if kind == "source" else "a job definition"
            raise ApiError(400, f"the TOML document is not {want}", [FieldViolation("kind", f"must describe {want}")])
        return docs[0].data
    if media == "application/json" or media.endswith("+json"):
        data = loads(text, "json")
        if not isinstance(data, dict):
            raise ApiError(400, "request body must be a JSON object", [FieldViolation("body", "must be an object")])
        data.pop("kind", None)
        return data
    raise ApiError(415, f"unsupported Content-Type {media!r}: send application/json or application/toml")


async def read_message(
    request: Request, kind: Kind, cls: type[M], *, ignore: tuple[str, ...] = ()
) -> tuple[M, dict[str, Any]]:
    """Parse and type-check the body into `cls`; output-only keys in `ignore` are dropped."""
    data = await read_document(request, kind)
    for key in ignore:
        data.pop(key, None)
    return from_dict(data, cls), data

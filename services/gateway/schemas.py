"""OpenAPI models generated from the protobuf contract, so the REST schema cannot drift from it.

Response models list every key `libs.proto_json.to_dict` writes; request models make every field
optional (the executor decides what is required and says which field is missing).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from pydantic import BaseModel, ConfigDict, Field, create_model

from libs.proto_json import enum_choices
from services.gateway.bodies import MAX_BODY

_TIMESTAMP = "google.protobuf.Timestamp"
_STRUCT = "google.protobuf.Struct"
_INTS = {
    FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64,
}  # fmt: skip
_cache: dict[tuple[str, str, frozenset[str], frozenset[str], str], type[BaseModel]] = {}


def _scalar(field: FieldDescriptor, mode: Literal["response", "request"]) -> Any:
    t = field.type
    if t == FieldDescriptor.TYPE_STRING:
        return str
    if t == FieldDescriptor.TYPE_BOOL:
        return bool
    if t in _INTS:
        return int
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return float
    if t == FieldDescriptor.TYPE_ENUM:
        return Literal[tuple(enum_choices(field.enum_type))]  # type: ignore[misc]
    if t == FieldDescriptor.TYPE_MESSAGE:
        name = field.message_type.full_name
        if name == _TIMESTAMP:
            return datetime
        if name == _STRUCT:
            return dict[str, Any]
        return model_for(field.message_type, mode=mode)
    raise TypeError(f"unsupported field type {t}")  # pragma: no cover


def model_for(
    descriptor: Descriptor,
    *,
    mode: Literal["response", "request"] = "response",
    omit: frozenset[str] = frozenset(),
    nullable: frozenset[str] = frozenset(),
    name: str | None = None,
) -> type[BaseModel]:
    """A pydantic model describing `descriptor` as REST JSON.

    `nullable` names fields a route writes as null when unset (an execution's
    `parent_execution_id` and `error`), which the protobuf types alone cannot tell."""
    model_name = name or (descriptor.name if mode == "response" else f"{descriptor.name}Input")
    key = (descriptor.full_name, mode, omit, nullable, model_name)
    if key in _cache:
        return _cache[key]
    fields: dict[str, Any] = {}
    for field in descriptor.fields:
        if field.name in omit:
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            annotation: Any = dict[str, _scalar(field.message_type.fields_by_name["value"], mode)]  # type: ignore[misc]
            is_nullable = False
        elif field.is_repeated:
            annotation = list[_scalar(field, mode)]  # type: ignore[misc]
            is_nullable = False
        else:
            annotation = _scalar(field, mode)
            is_nullable = (
                field.name in nullable
                or field.type == FieldDescriptor.TYPE_ENUM
                or (field.has_presence and field.type != FieldDescriptor.TYPE_MESSAGE)
                or (field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.full_name == _TIMESTAMP)
            )
        if mode == "request":
            fields[field.name] = (annotation | None, Field(default=None))
        elif is_nullable:
            fields[field.name] = (annotation | None, Field(...))
        else:
            fields[field.name] = (annotation, Field(...))
    model = create_model(model_name, __config__=ConfigDict(extra="forbid" if mode == "request" else "ignore"), **fields)
    _cache[key] = model
    return model


def add_component_schemas(openapi: dict[str, Any], models: list[type[BaseModel]]) -> None:
    """Register request models that routes read by hand (JSON or TOML bodies) as components."""
    components = openapi.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema


def list_model(name: str, plural: str, item: type[BaseModel]) -> type[BaseModel]:
    """`{<plural>: [...], total_count, limit, offset}`."""
    fields: dict[str, Any] = {
        plural: (list[item], Field(...)),  # type: ignore[valid-type]
        "total_count": (int, Field(...)),
        "limit": (int, Field(...)),
        "offset": (int, Field(...)),
    }
    return create_model(name, **fields)


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail]


class Error(BaseModel):
    """The body of every error response."""

    error: ErrorInfo


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Error, "description": text}
    for status, text in (
        (400, "Invalid input; `details` name the fields."),
        (401, "Missing or wrong bearer token."),
        (404, "No such resource."),
        (503, "A Quaero service is unavailable."),
    )
}
CONFLICT_RESPONSE: dict[str, Any] = {"model": Error, "description": "The resource's state forbids it."}
TOO_LARGE_RESPONSE: dict[str, Any] = {"model": Error, "description": f"The body is larger than {MAX_BODY} bytes."}

SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-Sent Events: a `snapshot` (unless resuming), then one event per state change; "
        "the stream closes after the terminal event. Each `data` is JSON; each `id` is the event id to "
        "resume after.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    204: {"description": "Resuming a finished resource with no event after Last-Event-ID: stop reconnecting."},
    # Errors come before the stream starts, as JSON (spelled out: the route's media type is SSE).
    **{
        status: {
            "description": entry["description"],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for status, entry in ERROR_RESPONSES.items()
    },
}


def drop_validation_responses(openapi: dict[str, Any]) -> None:
    """FastAPI documents a 422 on every route with parameters; Quaero answers 400 instead."""
    for operations in openapi.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    schemas = openapi.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)

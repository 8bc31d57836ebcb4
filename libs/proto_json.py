"""Protobuf messages to and from Quaero's REST JSON: snake_case, lower-case enums, RFC 3339 times.

Whole numbers that travel through a `google.protobuf.Struct` (stored as doubles) come back as
integers, so `max_depth = 2` reads back as `2`, not `2.0`.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from libs.errors import FieldViolation, InvalidArgument

M = TypeVar("M", bound=Message)

_TIMESTAMP = timestamp_pb2.Timestamp.DESCRIPTOR.full_name
_STRUCT = struct_pb2.Struct.DESCRIPTOR.full_name
_INT_TYPES = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
}
_FLOAT_TYPES = {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT}


def _enum_prefix(enum: EnumDescriptor) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"


def enum_to_str(enum: EnumDescriptor, number: int) -> str | None:
    """`JOB_DEFINITION_TYPE_CRAWLER` -> `crawler`; UNSPECIFIED -> None."""
    value = enum.values_by_number.get(number)
    if value is None or value.name.endswith("_UNSPECIFIED"):
        return None
    return value.name.removeprefix(_enum_prefix(enum)).lower()


def enum_from_str(enum: EnumDescriptor, text: str) -> Any:
    """`crawler` (any case, or the full constant name) -> the enum number; unknown -> None."""
    wanted = text.strip().upper()
    prefix = _enum_prefix(enum)
    for value in enum.values:
        if value.name.endswith("_UNSPECIFIED"):
            continue
        if value.name == wanted or value.name == prefix + wanted:
            return value.number
    return None


def enum_value(enum: EnumDescriptor, text: str) -> Any:
    """Like enum_from_str, with 0 (UNSPECIFIED) for an unknown name."""
    return enum_from_str(enum, text) or 0


def enum_choices(enum: EnumDescriptor) -> list[str]:
    return [n for n in (enum_to_str(enum, v.number) for v in enum.values) if n]


def plain(value: Any) -> Any:
    """JSON-ish data with integral floats turned back into ints (Struct stores only doubles)."""
    if isinstance(value, float) and value.is_integer() and math.isfinite(value) and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return {k: _value(v) for k, v in value.struct_value.fields.items()}
    if kind == "list_value":
        return [_value(v) for v in value.list_value.values]
    if kind == "number_value":
        return plain(value.number_value)
    if kind in ("string_value", "bool_value"):
        return getattr(value, kind)
    return None


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """The Struct as Python data. Unlike json_format, NaN and infinities come through as floats
    (a gRPC client can send them), for validation to name the field."""
    return {k: _value(v) for k, v in struct.fields.items()}


def dict_to_struct(data: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(data)
    return struct


def timestamp_to_str(ts: timestamp_pb2.Timestamp) -> str:
    dt = ts.ToDatetime(tzinfo=UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def set_timestamp(ts: timestamp_pb2.Timestamp, value: datetime | None) -> None:
    if value is not None:
        ts.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))


# ------------------------------------------------------------------------------------- to JSON


def _scalar_out(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return enum_to_str(field.enum_type, value)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _message_out(value)
    return value


def _message_out(msg: Message) -> Any:
    name = msg.DESCRIPTOR.full_name
    if name == _TIMESTAMP:
        return timestamp_to_str(msg) if (msg.seconds or msg.nanos) else None  # type: ignore[attr-defined]
    if name == _STRUCT:
        return struct_to_dict(msg)  # type: ignore[arg-type]
    return to_dict(msg)


def to_dict(msg: Message, *, omit: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Every field of `msg` as REST JSON; unset optional scalars and timestamps become None."""
    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        if field.name in omit:
            continue
        value = getattr(msg, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[field.name] = {k: _scalar_out(value_field, v) for k, v in value.items()}
        elif field.is_repeated:
            out[field.name] = [_scalar_out(field, v) for v in value]
        elif field.has_presence and field.type != FieldDescriptor.TYPE_MESSAGE and not msg.HasField(field.name):
            out[field.name] = None
        elif field.type == FieldDescriptor.TYPE_MESSAGE and not msg.HasField(field.name):
            name = field.message_type.full_name
            out[field.name] = None if name == _TIMESTAMP else ({} if name == _STRUCT else to_dict(value))
        else:
            out[field.name] = _scalar_out(field, value)
    return out


# ----------------------------------------------------------------------------------- from JSON


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


class _Reader:
    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def bad(self, path: str, description: str) -> None:
        self.violations.append(FieldViolation(path, description))

    def scalar(self, field: FieldDescriptor, value: Any, path: str) -> Any:
        t = field.type
        if t == FieldDescriptor.TYPE_STRING:
            if not isinstance(value, str):
                return self.bad(path, f"must be a string, not {_kind(value)}")
            return value
        if t == FieldDescriptor.TYPE_BOOL:
            if not isinstance(value, bool):
                return self.bad(path, f"must be true or false, not {_kind(value)}")
            return value
        if t in _INT_TYPES:
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or (isinstance(value, float) and not value.is_integer())
            ):
                return self.bad(path, f"must be a whole number, not {_kind(value)}")
            limit = 2**31 if t in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32) else 2**63
            if not -limit <= int(value) < limit:
                return self.bad(path, "is out of range")
            return int(value)
        if t in _FLOAT_TYPES:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return self.bad(path, f"must be a number, not {_kind(value)}")
            return float(value)
        if t == FieldDescriptor.TYPE_ENUM:
            number = enum_from_str(field.enum_type, value) if isinstance(value, str) else None
            if number is None:
                return self.bad(path, f"must be one of {', '.join(enum_choices(field.enum_type))}")
            return number
        return self.bad(path, "unsupported field type")  # pragma: no cover

    def message(self, descriptor: Descriptor, data: Any, target: Message, path: str) -> None:
        name = descriptor.full_name
        if name == _STRUCT:
            if not isinstance(data, dict):
                return self.bad(path, f"must be an object, not {_kind(data)}")
            try:
                target.update(data)  # type: ignore[attr-defined]
            except (ValueError, TypeError) as exc:
                self.bad(path, f"holds a value that is not JSON: {exc}")
            return None
        if name == _TIMESTAMP:
            try:
                target.FromJsonString(data)  # type: ignore[attr-defined]
            except (ValueError, TypeError, AttributeError):
                self.bad(path, "must be an RFC 3339 timestamp")
            return None
        if not isinstance(data, dict):
            return self.bad(path, f"must be an object, not {_kind(data)}")
        prefix = f"{path}." if path else ""
        for key, value in data.items():
            field = descriptor.fields_by_name.get(key)
            fpath = f"{prefix}{key}"
            if field is None:
                self.bad(fpath, "unknown field")
                continue
            if value is None:
                continue
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                if not isinstance(value, dict):
                    self.bad(fpath, f"must be an object, not {_kind(value)}")
                    continue
                value_field = field.message_type.fields_by_name["value"]
                for k, v in value.items():
                    parsed = self.scalar(value_field, v, f"{fpath}.{k}")
                    if parsed is not None:
                        getattr(target, key)[str(k)] = parsed
            elif field.is_repeated:
                if not isinstance(value, list):
                    self.bad(fpath, f"must be a list, not {_kind(value)}")
                    continue
                container = getattr(target, key)
                for i, item in enumerate(value):
                    ipath = f"{fpath}[{i}]"
                    if field.type == FieldDescriptor.TYPE_MESSAGE:
                        self.message(field.message_type, item, container.add(), ipath)
                    elif item is not None:
                        parsed = self.scalar(field, item, ipath)
                        if parsed is not None:
                            container.append(parsed)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                sub = getattr(target, key)
                sub.SetInParent()
                self.message(field.message_type, value, sub, fpath)
            else:
                parsed = self.scalar(field, value, fpath)
                if parsed is not None:
                    setattr(target, key, parsed)
        return None


def from_dict(data: Any, cls: type[M], *, path: str = "") -> M:
    """Build a `cls` message from REST JSON; every type error is reported with its field path."""
    reader = _Reader()
    msg = cls()
    reader.message(cls.DESCRIPTOR, data, msg, path)
    if reader.violations:
        raise InvalidArgument(violations=reader.violations)
    return msg

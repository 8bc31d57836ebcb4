"""Domain errors raised by services, and their mapping to gRPC status codes."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

# What a status may carry, in UTF-8 bytes: it travels in gRPC trailers, which a client refuses
# past 8 KiB (as RESOURCE_EXHAUSTED, whatever the error was), the message percent-encoded and the
# details in base64.
_MAX_MESSAGE = 600
_MAX_TEXT = 400
_MAX_DETAILS = 2000


def _shorten(text: str, limit: int) -> str:
    """`text` in at most `limit` UTF-8 bytes, cut with an ellipsis (and never inside a character)."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return data.decode("utf-8")
    return data[: limit - 3].decode("utf-8", "ignore") + "…"


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field: `field` is a path such as `steps[1].action`."""

    field: str
    description: str

    def __str__(self) -> str:
        return f"{self.field}: {self.description}" if self.field else self.description


class QuaeroError(Exception):
    """A failure the caller caused or can act on; mapped to a gRPC status by one interceptor."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_status(self) -> status_pb2.Status:
        return status_pb2.Status(code=self.code.value[0], message=_shorten(self.message, _MAX_MESSAGE))


class InvalidArgument(QuaeroError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str | None = None, violations: list[FieldViolation] | None = None) -> None:
        self.violations = list(violations or [])
        if message is None:
            message = "; ".join(str(v) for v in self.violations) or "invalid argument"
        super().__init__(message)

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        return cls(violations=[FieldViolation(field, description)])

    def to_status(self) -> status_pb2.Status:
        status = super().to_status()
        if self.violations:
            bad = error_details_pb2.BadRequest()
            for v in self.violations:
                bad.field_violations.add(
                    field=_shorten(v.field, _MAX_TEXT), description=_shorten(v.description, _MAX_TEXT)
                )
                if bad.ByteSize() > _MAX_DETAILS:
                    del bad.field_violations[-1]
                    break
            detail = any_pb2.Any()
            detail.Pack(bad)
            status.details.append(detail)
        return status


class NotFound(QuaeroError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(QuaeroError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(QuaeroError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(QuaeroError):
    """The resource's state forbids the operation (cancel a finished job, delete a running one)."""

    code = grpc.StatusCode.ABORTED


class Unauthenticated(QuaeroError):
    code = grpc.StatusCode.UNAUTHENTICATED


class ResourceExhausted(QuaeroError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


def violations_from_status(status: status_pb2.Status) -> list[FieldViolation]:
    """The field violations carried in a google.rpc.Status's BadRequest details."""
    out: list[FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
    return out


INTERNAL_STATUS = status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")

"""Domain errors raised by services, and their mapping to gRPC status codes."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2


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
        return status_pb2.Status(code=self.code.value[0], message=self.message)


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
            detail = any_pb2.Any()
            detail.Pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                        for v in self.violations
                    ]
                )
            )
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

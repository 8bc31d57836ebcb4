"""Protobuf to the executor's domain: enum numbers this release does not know stay visible, so
validation names the field instead of a default being taken."""

from __future__ import annotations

from quaero.v1 import job_definition_pb2, source_pb2
from services.executor.convert import definition_from_proto, source_from_proto


def test_unknown_enum_numbers_reach_validation() -> None:
    d = definition_from_proto(
        job_definition_pb2.JobDefinition(type=42, steps=[job_definition_pb2.JobStep(on_error=9)])  # type: ignore[arg-type]
    )
    s = source_from_proto(source_pb2.Source(type=17))  # type: ignore[arg-type]
    assert (d.type, d.steps[0].on_error, s.type) == ("#42", "#9", "#17")


def test_unset_enums_take_their_defaults() -> None:
    d = definition_from_proto(job_definition_pb2.JobDefinition(steps=[job_definition_pb2.JobStep()]))
    assert (d.type, d.steps[0].on_error, source_from_proto(source_pb2.Source()).type) == ("", "fail", "web")

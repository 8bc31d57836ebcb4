from __future__ import annotations

import math

import pytest

from libs.errors import InvalidArgument
from libs.proto_json import from_dict, plain, to_dict
from quaero.v1 import job_definition_pb2, source_pb2


def test_round_trip_keeps_integers_and_enums() -> None:
    data = {
        "id": "a",
        "type": "crawler",
        "steps": [
            {"name": "c", "action": "crawl", "config": {"max_depth": 2, "ratio": 0.5, "n": [1, 2]}, "on_error": "retry"}
        ],
        "enabled": False,
    }
    out = to_dict(from_dict(data, job_definition_pb2.JobDefinition))
    assert out["steps"][0]["config"] == {"max_depth": 2, "ratio": 0.5, "n": [1, 2]}
    assert isinstance(out["steps"][0]["config"]["max_depth"], int)
    assert out["type"] == "crawler"
    assert out["steps"][0]["on_error"] == "retry"
    assert out["enabled"] is False


def test_unset_optional_fields_are_null() -> None:
    out = to_dict(job_definition_pb2.JobDefinition(id="a"))
    assert out["enabled"] is None
    assert out["created_at"] is None
    assert out["config"] == {}


def test_type_errors_name_every_field() -> None:
    with pytest.raises(InvalidArgument) as err:
        from_dict(
            {"id": 3, "type": "robot", "steps": [{"on_error": "never"}], "post_jobs": "b", "extra": 1},
            job_definition_pb2.JobDefinition,
        )
    assert [v.field for v in err.value.violations] == ["id", "type", "steps[0].on_error", "post_jobs", "extra"]


def test_enums_accept_any_case_and_full_names() -> None:
    msg = from_dict({"type": "CONFLUENCE"}, source_pb2.Source)
    assert msg.type == source_pb2.SOURCE_TYPE_CONFLUENCE
    assert from_dict({"type": "SOURCE_TYPE_WEB"}, source_pb2.Source).type == source_pb2.SOURCE_TYPE_WEB


def test_whole_numbers_reject_fractions_and_booleans() -> None:
    with pytest.raises(InvalidArgument) as err:
        from_dict({"crawl": {"max_depth": 1.5, "max_pages": True}}, source_pb2.Source)
    assert [v.field for v in err.value.violations] == ["crawl.max_depth", "crawl.max_pages"]


def test_maps_and_explicit_zero_presence() -> None:
    msg = from_dict({"crawl": {"max_depth": 0}, "auth": {"headers": {"X-Token": "t"}}}, source_pb2.Source)
    assert msg.crawl.HasField("max_depth") and msg.crawl.max_depth == 0
    assert dict(msg.auth.headers) == {"X-Token": "t"}


def test_plain_turns_whole_floats_into_ints() -> None:
    assert plain({"a": 2.0, "b": [1.0, 1.5], "c": {"d": 3.0}}) == {"a": 2, "b": [1, 1.5], "c": {"d": 3}}


def test_struct_values_read_back_as_json_data_and_non_finite_numbers_as_floats() -> None:
    from libs.proto_json import dict_to_struct, struct_to_dict

    data = {"n": 2.0, "half": 0.5, "list": [1.0, "a", None, True, {"deep": []}], "empty": {}}
    assert struct_to_dict(dict_to_struct(data)) == {**data, "n": 2, "list": [1, "a", None, True, {"deep": []}]}
    # A gRPC client can send them; validation, not conversion, refuses them (naming the field).
    out = struct_to_dict(dict_to_struct({"nan": float("nan"), "inf": float("inf")}))
    assert math.isnan(out["nan"]) and out["inf"] == float("inf")

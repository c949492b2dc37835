"""The JSON serializer: strict types, arguments named in errors, a size limit."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any

import pytest

from underway.errors import (
    DeserializationError,
    PayloadTooLargeError,
    SerializationError,
    UnderwayError,
)
from underway.serializers import JsonSerializer


class Colour(str, enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int


def test_call_round_trips_json_values() -> None:
    s = JsonSerializer()
    args = [1, 2.5, "x", None, True, [1, [2]], {"a": {"b": [None]}}]
    payload = s.dumps_call("t", args, {"k": "v", "n": (1, 2)})
    assert s.loads_call(payload) == (args, {"k": "v", "n": [1, 2]})


def test_enums_and_uuids_are_written_as_their_value() -> None:
    s = JsonSerializer()
    u = uuid.UUID(int=7)
    assert s.loads_call(s.dumps_call("t", [Colour.RED, u], {})) == (["red", str(u)], {})


def test_a_date_argument_is_refused_naming_the_parameter() -> None:
    s = JsonSerializer()
    with pytest.raises(SerializationError) as info:
        s.dumps_call("send_email", ["a@b.c", dt.date(2026, 1, 2)], {}, ["to", "when"])
    message = str(info.value)
    assert "argument 'when' of task 'send_email'" in message
    assert "datetime.date" in message
    assert "when.isoformat()" in message
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, UnderwayError)


@pytest.mark.parametrize(
    ("value", "path", "hint"),
    [
        ({"at": dt.datetime(2026, 1, 1)}, "opts['at'] is a datetime.datetime", "isoformat"),
        ([Point(1)], "opts[0] is a tests.test_serializers.Point", "dataclasses.asdict"),
        ({1, 2}, "opts is a set", "list(opts)"),
        (b"raw", "opts is a bytes", "base64"),
        (Decimal("1.5"), "opts is a decimal.Decimal", "str(opts)"),
        ({1: "a"}, "opts key 1", "str keys"),
        (2**70, "outside the 64-bit range", "str(opts)"),
        (dt.timedelta(seconds=3), "opts is a datetime.timedelta", "total_seconds"),
        (object(), "opts is a object", "JSON types only"),
    ],
)
def test_refused_keyword_arguments_name_the_path_and_a_fix(
    value: Any, path: str, hint: str
) -> None:
    with pytest.raises(SerializationError) as info:
        JsonSerializer().dumps_call("t", [], {"opts": value})
    assert "argument 'opts' of task 't'" in str(info.value)
    assert path in str(info.value)
    assert hint in str(info.value)


def test_positional_argument_without_a_known_name_is_numbered() -> None:
    with pytest.raises(SerializationError, match=r"argument '#2 \(positional\)'"):
        JsonSerializer().dumps_call("t", [1, {1.5}], {})


def test_payload_over_the_limit_is_refused() -> None:
    s = JsonSerializer(max_payload_bytes=100)
    s.dumps_call("t", ["x" * 50], {})
    with pytest.raises(PayloadTooLargeError, match=r"arguments of task 't'.*over the limit of 100"):
        s.dumps_call("t", ["x" * 100], {})
    with pytest.raises(PayloadTooLargeError, match="return value"):
        s.dumps_result("t", "y" * 200)
    with pytest.raises(ValueError, match="positive"):
        JsonSerializer(max_payload_bytes=0)


def test_results_round_trip_and_refuse_non_json() -> None:
    s = JsonSerializer()
    assert s.loads_result(s.dumps_result("t", {"ok": [1, 2]})) == {"ok": [1, 2]}
    with pytest.raises(SerializationError, match=r"return value of task 't'.*result\['d'\]"):
        s.dumps_result("t", {"d": dt.date(2026, 1, 1)})


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b'{"args": {}, "kwargs": {}}'])
def test_malformed_payloads_raise_deserialization_error(payload: bytes) -> None:
    with pytest.raises(DeserializationError):
        JsonSerializer().loads_call(payload)
    if payload == b"not json":
        with pytest.raises(DeserializationError):
            JsonSerializer().loads_result(payload)

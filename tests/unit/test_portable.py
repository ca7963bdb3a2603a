"""Tests for portable JSON (dbos_async._core._portable and its place in the Codec): the value
forms, workflow inputs in every shape, errors, type hints, format names, and the SQL functions'
agreement with the engine's channel names and topic sentinel."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import pickle
import uuid
from importlib import resources
from typing import Any

import pytest

from dbos_async import (
    DBOSPortableJSONSerializer,
    PortableWorkflowError,
    WorkflowSerializationFormat,
)
from dbos_async._core._errors import (
    DBOSConfigurationError,
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
    DBOSSerializationError,
)
from dbos_async._core._portable import (
    PORTABLE_JSON,
    coerce_to_hints,
    error_data,
    format_name,
    inputs_from,
    to_portable,
)
from dbos_async._core._serialization import Codec, Serializer, as_bytes_serializer
from dbos_async._sysdb._messages import NULL_TOPIC
from dbos_async._sysdb._notify import MESSAGES, QUEUES


class Mood(enum.StrEnum):
    HAPPY = "happy"


def test_values_take_their_portable_forms() -> None:
    value = {
        "at": dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "naive": dt.datetime(2024, 1, 2, 3, 4, 5),
        "day": dt.date(2024, 1, 2),
        "amount": decimal.Decimal("1E+2"),
        "items": (1, [2.5, None], {"x"}, frozenset()),
        "flag": True,
        "mood": Mood.HAPPY,
    }
    assert to_portable(value) == {
        "at": "2024-01-02T01:04:05.678Z",
        "naive": "2024-01-02T03:04:05.000Z",
        "day": "2024-01-02",
        "amount": "100",
        "items": [1, [2.5, None], ["x"], []],
        "flag": True,
        "mood": "happy",
    }


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (uuid.uuid4(), "UUID"),
        ({"a": [b"raw"]}, "value['a'][0]"),
        ({1: "x"}, "not a string"),
        (object(), "object"),
    ],
)
def test_values_without_a_portable_form_are_refused(value: Any, where: str) -> None:
    with pytest.raises(DBOSSerializationError, match="portable JSON") as raised:
        to_portable(value)
    assert where in str(raised.value)


def test_the_codec_writes_compact_utf8_json_and_reads_it_by_name() -> None:
    codec = Codec()
    data = codec.dumps({"é": [1, 2]}, PORTABLE_JSON)
    assert data == '{"é":[1,2]}'.encode()
    assert codec.loads(data, PORTABLE_JSON) == {"é": [1, 2]}
    assert codec.name == "msgpack" and codec.name_of(PORTABLE_JSON) == PORTABLE_JSON
    with pytest.raises(DBOSSerializationError):
        codec.dumps(float("inf"), PORTABLE_JSON)
    with pytest.raises(DBOSSerializationError, match="Unknown serializer"):
        codec.dumps(1, "yaml")
    assert codec.knows(PORTABLE_JSON) and codec.knows(None) and not codec.knows("yaml")


def test_workflow_inputs_in_every_shape() -> None:
    codec = Codec()
    portable = codec.dumps_inputs((1, "a"), {"k": None}, PORTABLE_JSON)
    assert portable == b'{"positionalArgs":[1,"a"],"namedArgs":{"k":null}}'
    assert codec.loads_inputs(portable, PORTABLE_JSON) == ((1, "a"), {"k": None})
    native = codec.dumps_inputs((1, "a"), {"k": None})
    assert codec.loads_inputs(native, "msgpack") == ((1, "a"), {"k": None})
    assert inputs_from({}) == ((), {})
    assert inputs_from({"positionalArgs": None, "namedArgs": None}) == ((), {})
    assert inputs_from({"args": (1,), "kwargs": {"x": 2}}) == ((1,), {"x": 2})
    malformed: list[Any] = ["text", {"positionalArgs": {}}, {"namedArgs": []}, [1, 2, 3]]
    for bad in malformed:
        with pytest.raises(DBOSSerializationError):
            inputs_from(bad)


class Refused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.status_code = 409
        self.details = {"retry": False, "when": dt.date(2024, 1, 2)}


def test_errors_become_portable_error_data_and_come_back_as_portable_workflow_errors() -> None:
    assert error_data(Refused("no room")) == {
        "name": "Refused",
        "message": "no room",
        "code": 409,
        "data": {"retry": False, "when": "2024-01-02"},
    }
    # A DBOS error's code is its DBOS error code, not its HTTP status.
    error = DBOSNonExistentWorkflowError("w")
    assert error_data(error)["code"] == error.dbos_error_code != error.status_code
    unportable = ValueError("x")
    unportable.data = object()  # type: ignore[attr-defined]
    assert error_data(unportable)["data"].startswith("<object")

    codec = Codec()
    stored = codec.dumps_exception(Refused("no room"), PORTABLE_JSON)
    error = codec.loads_exception(stored, PORTABLE_JSON)
    assert isinstance(error, PortableWorkflowError)
    assert (error.name, error.message, error.code) == ("Refused", "no room", 409)
    # Data written by another language, with fields missing.
    assert str(codec.loads_exception(b'{"message": "boom"}', PORTABLE_JSON)) == "boom"
    assert codec.loads_exception(b'"just text"', PORTABLE_JSON).message == "just text"


def test_a_portable_workflow_error_survives_pickle_and_msgpack() -> None:
    error = PortableWorkflowError("m", "RemoteError", "E1", {"k": [1]})
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.name, copy.code, copy.data) == ("m", "RemoteError", "E1", {"k": [1]})
    codec = Codec()
    again = codec.loads(codec.dumps_exception(error), "msgpack")
    assert isinstance(again, PortableWorkflowError)
    assert (again.message, again.name, again.code, again.data) == (
        "m",
        "RemoteError",
        "E1",
        {"k": [1]},
    )
    assert error_data(error)["name"] == "RemoteError"  # re-raised, it keeps its name


def typed(
    when: dt.datetime,
    day: dt.date,
    maybe: decimal.Decimal | None = None,
    *rest: Any,
    ident: uuid.UUID,
    mood: Mood,
    other: str = "",
) -> None:
    pass


class Owner:
    def method(self, day: dt.date) -> None:
        pass


def test_portable_arguments_get_their_types_back_from_the_hints() -> None:
    ident = uuid.uuid4()
    args, kwargs = coerce_to_hints(
        typed,
        ("2024-01-02T03:04:05.678Z", "2024-01-02", "1.5", "2024-01-02"),
        {"ident": str(ident), "mood": "happy", "other": "2024-01-02"},
        skip_first=False,
    )
    assert args == (
        dt.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC),
        dt.date(2024, 1, 2),
        decimal.Decimal("1.5"),
        "2024-01-02",  # *rest: no hint to go by
    )
    assert kwargs == {"ident": ident, "mood": Mood.HAPPY, "other": "2024-01-02"}
    # What does not parse is passed on as recorded.
    assert coerce_to_hints(typed, ("soon", 3), {}, skip_first=False) == (("soon", 3), {})
    assert coerce_to_hints(Owner.method, ("2024-01-02",), {}, skip_first=True) == (
        (dt.date(2024, 1, 2),),
        {},
    )


@pytest.mark.parametrize(
    ("given", "name"),
    [
        (None, None),
        (WorkflowSerializationFormat.DEFAULT, None),
        (WorkflowSerializationFormat.PORTABLE, PORTABLE_JSON),
        (WorkflowSerializationFormat.NATIVE, "msgpack"),
        ("portable", PORTABLE_JSON),
        ("PORTABLE", PORTABLE_JSON),
        ("default", None),
        ("None", None),
    ],
)
def test_serialization_types_name_a_format(given: Any, name: str | None) -> None:
    assert format_name(given) == name


@pytest.mark.parametrize("given", ["json", 1, PORTABLE_JSON])
def test_unknown_serialization_types_are_refused(given: Any) -> None:
    with pytest.raises(DBOSInvalidArgumentError, match="serialization_type"):
        format_name(given)


def test_the_enum_matches_dbos() -> None:
    assert [(f.name, f.value) for f in WorkflowSerializationFormat] == [
        ("PORTABLE", "portable"),
        ("NATIVE", "native"),
        ("DEFAULT", "None"),
    ]


def test_portable_json_as_the_configured_serializer() -> None:
    serializer = DBOSPortableJSONSerializer()
    assert serializer.name() == PORTABLE_JSON
    assert serializer.serialize({"d": dt.date(2024, 1, 2)}) == '{"d":"2024-01-02"}'
    assert serializer.deserialize("[1]") == [1]
    codec = Codec(serializer)
    assert codec.name == PORTABLE_JSON
    assert codec.dumps_inputs((1,), {}) == b'{"positionalArgs":[1],"namedArgs":{}}'
    assert isinstance(
        codec.loads_exception(codec.dumps_exception(ValueError("v")), None), Exception
    )
    assert as_bytes_serializer(serializer).name == PORTABLE_JSON


class Impostor(Serializer):
    def serialize(self, data: Any) -> str:
        return str(data)

    def deserialize(self, serialized_data: str) -> Any:
        return serialized_data

    def name(self) -> str:
        return PORTABLE_JSON


def test_another_serializer_cannot_take_the_portable_name() -> None:
    with pytest.raises(DBOSConfigurationError, match="portable_json"):
        as_bytes_serializer(Impostor())


def test_the_sql_functions_use_the_engines_channels_and_topic_sentinel() -> None:
    migration = (
        resources.files("dbos_async._sysdb")
        .joinpath("migrations", "0006_sql_functions.sql")
        .read_text(encoding="utf-8")
    )
    assert f"'{QUEUES}'" in migration
    assert f"'{MESSAGES}'" in migration
    assert f"'{NULL_TOPIC}'" in migration
    assert f"'{PORTABLE_JSON}'" in migration

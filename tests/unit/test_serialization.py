"""Tests for dbos_async._core._serialization: round-trips, errors, pickle opt-in, custom serializers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import io
import json
import threading
import uuid
import zoneinfo
from collections import OrderedDict, namedtuple
from typing import Any

import msgpack
import pydantic
import pytest

from dbos_async._core._errors import (
    DBOSConfigurationError,
    DBOSMaxStepRetriesExceeded,
    DBOSNonExistentWorkflowError,
    DBOSSerializationError,
    DBOSWorkflowCancelledError,
)
from dbos_async._core._serialization import (
    BytesSerializer,
    Codec,
    MsgpackSerializer,
    PickleSerializer,
    Serializer,
)


class Color(enum.Enum):
    RED = "red"
    PAIR = (1, 2)


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass(frozen=True)
class Shape:
    name: str
    points: list[Point]
    origin: Point | None = None
    tags: tuple[str, ...] = ()
    area: float = dataclasses.field(init=False, default=0.0)


class Address(pydantic.BaseModel):
    city: str
    zip_code: str


class User(pydantic.BaseModel):
    name: str
    created: dt.datetime
    address: Address
    scores: tuple[int, ...] = ()


class PaymentError(Exception):
    """An exception whose __init__ does not take the message."""

    def __init__(self, order_id: int, amount: decimal.Decimal, *, retryable: bool) -> None:
        self.order_id = order_id
        self.amount = amount
        self.retryable = retryable
        super().__init__(f"payment for order {order_id} failed ({amount})")


class NotAnException:
    pass


class JsonSerializer:
    """A tiny custom serializer for the tests."""

    name = "json"

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data)


Pair = namedtuple("Pair", "a b")


@pytest.fixture
def codec() -> Codec:
    return Codec()


def roundtrip(codec: Codec, value: Any) -> Any:
    return codec.loads(codec.dumps(value), codec.name)


# -- round-trips ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(2**63),
        2**64 - 1,
        1.5,
        "héllo",
        b"\x00\xff",
        [1, "a", None],
        {"a": {"b": [1, 2]}},
        (),
        (1, "a", None),
        {1, 2, 3},
        frozenset({"x", "y"}),
        set(),
        decimal.Decimal("3.14159265358979323846264338327950288"),
        decimal.Decimal("-0"),
        decimal.Decimal("Infinity"),
        uuid.UUID("f41b8b5c-c4df-480f-a787-1770f0dc3d61"),
        dt.date(2024, 2, 29),
        dt.time(13, 45, 1, 123456),
        dt.timedelta(days=-3, seconds=5, microseconds=7),
        dt.timedelta.max,
        dt.datetime(2024, 5, 17, 8, 30, 15, 999999),
        dt.datetime.min,
    ],
    ids=lambda value: type(value).__name__,  # repr() of a set varies between processes
)
def test_roundtrip_same_type_and_value(codec: Codec, value: Any) -> None:
    result = roundtrip(codec, value)
    assert type(result) is type(value)
    assert result == value


def test_nested_containers_keep_tuples(codec: Codec) -> None:
    value = {
        "args": (1, (2, (3, [4, (5,)])), {"k": (6, 7)}),
        "list": [(1, 2), [(3,)], {"t": ()}],
        "set": {(1, 2), (3, 4)},
    }
    result = roundtrip(codec, value)
    assert result == value
    assert type(result["args"]) is tuple
    assert type(result["args"][1][1]) is tuple
    assert type(result["args"][1][1][1][1]) is tuple
    assert type(result["args"][2]["k"]) is tuple
    assert all(type(t) is tuple for t in result["list"][:1])
    assert type(result["list"][1][0]) is tuple
    assert type(result["list"][2]["t"]) is tuple


def test_dict_with_non_str_keys(codec: Codec) -> None:
    value = {1: "one", (2, "b"): [2], -5: {None: True}, 2.5: "f", frozenset({1}): "fs"}
    result = roundtrip(codec, value)
    assert result == value
    assert (2, "b") in result


@pytest.mark.parametrize("n", [2**64, -(2**63) - 1, 2**200, -(3**150), 10**1000])
def test_big_ints(codec: Codec, n: int) -> None:
    assert roundtrip(codec, n) == n
    assert roundtrip(codec, [n, {"n": (n,)}]) == [n, {"n": (n,)}]


@pytest.mark.parametrize(
    "tz",
    [
        dt.UTC,
        dt.timezone(dt.timedelta(hours=5, minutes=30)),
        dt.timezone(dt.timedelta(hours=-8), "PST"),
        dt.timezone(dt.timedelta(seconds=1, microseconds=5)),
        zoneinfo.ZoneInfo("Europe/Paris"),
        zoneinfo.ZoneInfo("America/New_York"),
    ],
    ids=str,
)
def test_tz_aware_datetime_and_time(codec: Codec, tz: dt.tzinfo) -> None:
    value = dt.datetime(2024, 3, 31, 2, 30, 0, 12, tzinfo=tz)
    result = roundtrip(codec, value)
    assert result == value
    assert result.tzinfo == tz
    assert result.utcoffset() == value.utcoffset()
    assert result.tzname() == value.tzname()
    if isinstance(tz, zoneinfo.ZoneInfo):
        assert isinstance(result.tzinfo, zoneinfo.ZoneInfo)
        assert result.tzinfo.key == tz.key
    time_value = dt.time(4, 5, 6, 7, tzinfo=tz)
    assert roundtrip(codec, time_value).tzinfo == tz


def test_datetime_fold_and_utc_singleton(codec: Codec) -> None:
    ny = zoneinfo.ZoneInfo("America/New_York")
    value = dt.datetime(2024, 11, 3, 1, 30, tzinfo=ny, fold=1)
    result = roundtrip(codec, value)
    assert result.fold == 1
    assert result.utcoffset() == value.utcoffset()
    assert roundtrip(codec, dt.datetime.now(dt.UTC)).tzinfo is dt.UTC


def test_enum_members(codec: Codec) -> None:
    for member in (Color.RED, Color.PAIR, Level.HIGH):
        result = roundtrip(codec, member)
        assert result is member
    assert roundtrip(codec, {Level.LOW: [Color.RED]}) == {Level.LOW: [Color.RED]}


def test_nested_dataclasses(codec: Codec) -> None:
    shape = Shape("tri", [Point(0, 0), Point(1, 0)], origin=Point(5, 5), tags=("a", "b"))
    object.__setattr__(shape, "area", 0.5)
    result = roundtrip(codec, {"shape": shape, "points": (Point(1, 2),)})
    assert result["shape"] == shape
    assert type(result["shape"].points[0]) is Point
    assert type(result["shape"].origin) is Point
    assert type(result["shape"].tags) is tuple
    assert result["shape"].area == 0.5
    assert result["points"] == (Point(1, 2),)


def test_pydantic_model(codec: Codec) -> None:
    user = User(
        name="ada",
        created=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        address=Address(city="Paris", zip_code="75001"),
        scores=(3, 4),
    )
    result = roundtrip(codec, [user])[0]
    assert type(result) is User
    assert result == user
    assert type(result.address) is Address
    assert result.scores == (3, 4)


def test_builtin_subclasses_are_stored_as_base_type(codec: Codec) -> None:
    assert roundtrip(codec, Pair(1, 2)) == (1, 2)
    result = roundtrip(codec, OrderedDict(a=1))
    assert result == {"a": 1}
    assert type(result) is dict

    class Name(str):
        pass

    class Big(int):
        pass

    assert type(roundtrip(codec, Name("x"))) is str
    assert roundtrip(codec, [Big(7), Big(2**70)]) == [7, 2**70]


# -- exceptions -------------------------------------------------------------------------------


def test_builtin_exception(codec: Codec) -> None:
    result = roundtrip(codec, ValueError("bad value", 3))
    assert type(result) is ValueError
    assert result.args == ("bad value", 3)


def test_oserror_subclass(codec: Codec) -> None:
    result = roundtrip(codec, FileNotFoundError(2, "No such file"))
    assert type(result) is FileNotFoundError
    assert result.errno == 2
    assert result.strerror == "No such file"


def test_custom_exception_with_custom_init(codec: Codec) -> None:
    error = PaymentError(42, decimal.Decimal("9.99"), retryable=True)
    error.add_note("a note")
    result = roundtrip(codec, error)
    assert type(result) is PaymentError
    assert str(result) == str(error)
    assert result.args == error.args
    assert (result.order_id, result.amount, result.retryable) == (42, decimal.Decimal("9.99"), True)
    assert result.__notes__ == ["a note"]


def test_max_step_retries_with_nested_errors(codec: Codec) -> None:
    errors: list[BaseException] = [
        ValueError("first"),
        PaymentError(1, decimal.Decimal(1), retryable=False),
    ]
    error = DBOSMaxStepRetriesExceeded("charge", 2, errors)
    result = roundtrip(codec, error)
    assert type(result) is DBOSMaxStepRetriesExceeded
    assert str(result) == str(error)
    assert (result.step_name, result.max_attempts) == ("charge", 2)
    assert [type(e) for e in result.errors] == [ValueError, PaymentError]
    assert [str(e) for e in result.errors] == [str(e) for e in errors]
    assert result.dbos_error_code == error.dbos_error_code


def test_dbos_error_keeps_attributes(codec: Codec) -> None:
    result = roundtrip(codec, DBOSNonExistentWorkflowError("wf-1"))
    assert type(result) is DBOSNonExistentWorkflowError
    assert result.workflow_id == "wf-1"
    assert str(result) == str(DBOSNonExistentWorkflowError("wf-1"))


def test_base_exception_subclass(codec: Codec) -> None:
    result = roundtrip(codec, DBOSWorkflowCancelledError("stop"))
    assert type(result) is DBOSWorkflowCancelledError
    assert result.message == "stop"


def test_exception_class_not_importable_becomes_plain_exception(codec: Codec) -> None:
    class LocalError(Exception):
        pass

    result = roundtrip(codec, LocalError("boom"))
    assert type(result) is Exception
    assert str(result) == f"{__name__}.{LocalError.__qualname__}: boom"


def test_exception_path_to_non_exception_class_is_refused(codec: Codec) -> None:
    serializer = MsgpackSerializer()
    payload = serializer.dumps([f"{__name__}:NotAnException", (), {}, "x"])
    data = msgpack.packb(msgpack.ExtType(14, payload))
    with pytest.raises(DBOSSerializationError, match="not an exception class"):
        codec.loads(data, "msgpack")


def test_enum_path_to_non_enum_class_is_refused(codec: Codec) -> None:
    payload = MsgpackSerializer().dumps([f"{__name__}:Point", 1])
    with pytest.raises(DBOSSerializationError, match="not a subclass of Enum"):
        codec.loads(msgpack.packb(msgpack.ExtType(11, payload)), "msgpack")


def test_dumps_exception_with_unencodable_attribute(codec: Codec) -> None:
    error = PaymentError(7, decimal.Decimal(1), retryable=False)
    error.lock = threading.Lock()  # type: ignore[attr-defined]
    with pytest.raises(DBOSSerializationError):
        codec.dumps(error)
    result = codec.loads(codec.dumps_exception(error), codec.name)
    assert type(result) is Exception
    assert str(result) == f"{__name__}.PaymentError: {error}"


def test_dumps_exception_unpicklable_even_with_pickle() -> None:
    codec = Codec(allow_pickle=True)
    error = ValueError("bad", lambda: 1)
    result = codec.loads(codec.dumps_exception(error), codec.name)
    assert type(result) is Exception
    assert "builtins.ValueError" in str(result)
    assert "bad" in str(result)


def test_dumps_exception_plain_case(codec: Codec) -> None:
    result = codec.loads(codec.dumps_exception(KeyError("k")), None)
    assert type(result) is KeyError
    assert result.args == ("k",)


# -- unsupported values, pickle opt-in ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (object(), "builtins.object"),
        (lambda: 1, "builtins.function"),
        (NotAnException(), f"{__name__}.NotAnException"),
        (io.StringIO(), "_io.StringIO"),
        (Point, "builtins.type"),
        (1 + 2j, "builtins.complex"),
    ],
    ids=lambda v: type(v).__name__,
)
def test_unsupported_value_raises(codec: Codec, value: Any, type_name: str) -> None:
    with pytest.raises(DBOSSerializationError) as info:
        codec.dumps({"nested": [value]})
    assert info.value.type_name == type_name
    assert type_name in str(info.value)
    assert "allow_pickle" in str(info.value)


def test_open_file_unsupported_even_with_pickle(tmp_path: Any) -> None:
    with open(tmp_path / "f.txt", "w") as handle, pytest.raises(DBOSSerializationError) as info:
        Codec(allow_pickle=True).dumps(handle)
    assert info.value.type_name == "_io.TextIOWrapper"


def test_local_dataclass_is_refused_at_dump_time(codec: Codec) -> None:
    @dataclasses.dataclass
    class Local:
        x: int

    with pytest.raises(DBOSSerializationError, match="defined in a function"):
        codec.dumps(Local(1))


def test_allow_pickle_falls_back_to_pickle_inside_msgpack() -> None:
    codec = Codec(allow_pickle=True)
    assert codec.name == "msgpack"
    value = {"obj": NotAnException(), "c": 1 + 2j, "t": (1, 2)}
    result = codec.loads(codec.dumps(value), "msgpack")
    assert type(result["obj"]) is NotAnException
    assert result["c"] == 1 + 2j
    assert result["t"] == (1, 2)
    # A reader without the opt-in refuses the embedded pickle.
    with pytest.raises(DBOSSerializationError, match="allow_pickle"):
        Codec().loads(codec.dumps(value), "msgpack")


def test_pickle_serializer_counts_as_opt_in() -> None:
    codec = Codec(PickleSerializer())
    assert codec.name == "pickle"
    assert codec.allow_pickle
    value = {"obj": NotAnException(), "t": (1,)}
    result = codec.loads(codec.dumps(value), "pickle")
    assert type(result["obj"]) is NotAnException
    assert codec.loads(Codec().dumps((1, 2)), "msgpack") == (1, 2)


def test_pickle_row_refused_without_opt_in(codec: Codec) -> None:
    data = PickleSerializer().dumps({"a": 1})
    with pytest.raises(DBOSSerializationError, match="pickle"):
        codec.loads(data, "pickle")
    assert Codec(allow_pickle=True).loads(data, "pickle") == {"a": 1}


def test_unknown_serializer_name(codec: Codec) -> None:
    with pytest.raises(DBOSSerializationError, match="yaml"):
        codec.loads(b"x", "yaml")


def test_loads_none_and_default_name(codec: Codec) -> None:
    assert codec.loads(None, "msgpack") is None
    assert codec.loads(None, None) is None
    assert codec.loads(codec.dumps((1,)), None) == (1,)


def test_corrupt_data_raises_serialization_error(codec: Codec) -> None:
    with pytest.raises(DBOSSerializationError):
        codec.loads(b"\xc1", "msgpack")
    with pytest.raises(DBOSSerializationError, match="extension type code 99"):
        codec.loads(msgpack.packb(msgpack.ExtType(99, b"")), "msgpack")


# -- custom serializers -----------------------------------------------------------------------


def test_custom_serializer() -> None:
    json_serializer = JsonSerializer()
    assert isinstance(json_serializer, BytesSerializer)
    codec = Codec(json_serializer)
    assert codec.name == "json"
    data = codec.dumps({"a": [1, 2]})
    assert data == b'{"a": [1, 2]}'
    assert codec.loads(data, "json") == {"a": [1, 2]}
    assert codec.loads(data, None) == {"a": [1, 2]}
    # Rows written by msgpack stay readable.
    assert codec.loads(Codec().dumps((1, 2)), "msgpack") == (1, 2)
    with pytest.raises(DBOSSerializationError, match="json") as info:
        codec.dumps(object())
    assert info.value.type_name == "builtins.object"


def test_custom_serializer_dumps_exception_never_raises() -> None:
    codec = Codec(JsonSerializer())
    assert codec.loads(codec.dumps_exception(ValueError("x")), "json") == "builtins.ValueError: x"


def test_invalid_serializer_rejected() -> None:
    with pytest.raises(DBOSConfigurationError):
        Codec(object())  # type: ignore[arg-type]


# -- serializers written for DBOS 3.x (text, name() a method) -----------------------------------


class TextJson(Serializer):
    """A serializer as DBOS 3.x code writes one."""

    def serialize(self, data: Any) -> str:
        return json.dumps(data, ensure_ascii=False)

    def deserialize(self, serialized_data: str) -> Any:
        return json.loads(serialized_data)

    def name(self) -> str:
        return "text_json"


class Unnamed(Serializer):
    def serialize(self, data: Any) -> str:
        return repr(data)

    def deserialize(self, serialized_data: str) -> Any:
        return serialized_data


class DuckText:
    """No base class, only DBOS 3.x's three methods."""

    def serialize(self, data: Any) -> str:
        return json.dumps(data)

    def deserialize(self, serialized_data: str) -> Any:
        return json.loads(serialized_data)

    def name(self) -> str:
        return "duck_json"


def test_dbos3_serializer_is_recorded_by_its_name_and_stored_as_utf8() -> None:
    codec = Codec(TextJson())
    assert codec.name == "text_json"
    value = {"città": ["é", 1, None], "lone": "\ud800"}
    data = codec.dumps(value)
    assert data.startswith('{"città"'.encode())
    assert codec.loads(data, "text_json") == value
    assert codec.loads(data, None) == value
    assert codec.loads(Codec().dumps((1, 2)), "msgpack") == (1, 2)
    assert codec.loads(codec.dumps_exception(ValueError("x")), "text_json") == (
        "builtins.ValueError: x"
    )


def test_dbos3_serializer_name_defaults_as_in_dbos() -> None:
    assert Codec(Unnamed()).name == "custom_serializer"


def test_duck_typed_dbos3_serializer() -> None:
    codec = Codec(DuckText())  # type: ignore[arg-type]
    assert codec.name == "duck_json"
    assert codec.loads(codec.dumps([1, "a"]), "duck_json") == [1, "a"]


def test_an_object_with_both_shapes_is_read_by_its_name() -> None:
    class Both(DuckText):
        def dumps(self, value: Any) -> bytes:
            raise AssertionError("name() is a method: the DBOS shape is used")

        def loads(self, data: bytes) -> Any:
            raise AssertionError("name() is a method: the DBOS shape is used")

    codec = Codec(Both())  # type: ignore[arg-type]
    assert codec.loads(codec.dumps({"a": 1}), "duck_json") == {"a": 1}


def test_dbos3_serializer_must_implement_both_methods() -> None:
    class OnlySerialize(Serializer):
        def serialize(self, data: Any) -> str:
            return ""

    with pytest.raises(TypeError, match="deserialize"):
        OnlySerialize()  # type: ignore[abstract]


class _NoDeserialize:
    def serialize(self, data: Any) -> str:
        return ""

    def name(self) -> str:
        return "half"


class _NoName:
    def serialize(self, data: Any) -> str:
        return ""

    def deserialize(self, serialized_data: str) -> Any:
        return None


class _BadName(TextJson):
    def name(self) -> str:
        raise RuntimeError("no name today")


class _NameNotStr(TextJson):
    def name(self) -> Any:
        return 7


class _ReservedName(TextJson):
    def name(self) -> str:
        return "msgpack"


class _BytesNoName:
    def dumps(self, value: Any) -> bytes:
        return b""

    def loads(self, data: bytes) -> Any:
        return None


@pytest.mark.parametrize(
    ("serializer", "match"),
    [
        (_NoDeserialize(), "Not a serializer"),
        (_NoName(), "name"),
        (_BadName(), "no name today"),
        (_NameNotStr(), "non-empty string"),
        (_ReservedName(), "'msgpack' is dbos_async's own"),
        (_BytesNoName(), "non-empty string"),
        ("json", "Not a serializer"),
    ],
)
def test_bad_serializers_are_configuration_errors(serializer: object, match: str) -> None:
    with pytest.raises(DBOSConfigurationError, match=match):
        Codec(serializer)  # type: ignore[arg-type]


def test_serialize_that_does_not_return_str_fails_on_use() -> None:
    class Bytesy(TextJson):
        def serialize(self, data: Any) -> str:
            return json.dumps(data).encode()  # type: ignore[return-value]

    codec = Codec(Bytesy())
    with pytest.raises(DBOSSerializationError, match=r"serialize\(\) returned builtins.bytes"):
        codec.dumps({"a": 1})


def test_dbos3_serializer_failures_are_serialization_errors() -> None:
    codec = Codec(TextJson())
    with pytest.raises(DBOSSerializationError, match="text_json") as info:
        codec.dumps(object())
    assert info.value.type_name == "builtins.object"
    with pytest.raises(DBOSSerializationError, match="text_json"):
        codec.loads(b"{not json", "text_json")


def test_reentrant_and_threaded_dumps() -> None:
    codec = Codec()
    value = {"t": (1, 2), "d": dt.date(2024, 1, 1)}
    results: list[Any] = []

    def work() -> None:
        for _ in range(200):
            results.append(codec.loads(codec.dumps(value), "msgpack"))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 800
    assert all(r == value for r in results)


def test_json_like_values_skip_python_hooks() -> None:
    serializer = MsgpackSerializer()
    seen: list[Any] = []
    hook = serializer._default

    def spy(obj: Any) -> Any:
        seen.append(obj)
        return hook(obj)

    serializer._default = spy  # type: ignore[method-assign]
    value = {"a": [1, -2, 2**64 - 1, 1.5, "s", b"b", None, True], "b": {"c": {}}}
    assert serializer.loads(serializer.dumps(value)) == value
    assert seen == []
    serializer.dumps([(1,)])
    assert seen == [(1,)]


def test_packer_is_clean_after_a_failed_dumps(codec: Codec) -> None:
    expected = codec.dumps({"a": (1, 2)})
    for _ in range(3):
        with pytest.raises(DBOSSerializationError):
            codec.dumps({"a": (1, [object()])})
        assert codec.dumps({"a": (1, 2)}) == expected

"""Checkpoint serialization: msgpack with extension types, pickle only on opt-in.

A user's format comes in one of two shapes, both recorded by name on every row they write:
DBOS 3.x's :class:`Serializer` (``serialize(data) -> str``, ``deserialize(text)``, ``name()``),
or a :class:`BytesSerializer` (a ``name`` attribute, ``dumps(value) -> bytes``, ``loads(data)``).
:func:`as_bytes_serializer` checks either and turns the first into the second. Portable JSON
(``_portable``) is always readable, and written where a workflow or a call asks for it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import functools
import importlib
import json
import pickle
import sys
import threading
import uuid
import zoneinfo
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Protocol, cast, runtime_checkable

import msgpack

from ._errors import DBOSConfigurationError, DBOSSerializationError
from ._portable import (
    PORTABLE_JSON,
    PortableJSON,
    error_data,
    error_from_data,
    inputs_from,
    portable_inputs,
)

__all__ = [
    "Serializer",
    "BytesSerializer",
    "DBOSPortableJSONSerializer",
    "MsgpackSerializer",
    "PickleSerializer",
    "Codec",
    "as_bytes_serializer",
]

# msgpack extension type codes. They are persisted in every checkpoint: never renumber or reuse.
_TUPLE = 1  # msgpack array of the items
_SET = 2  # msgpack array of the items
_FROZENSET = 3  # msgpack array of the items
_BIGINT = 4  # two's-complement big-endian bytes (ints outside msgpack's 64-bit range)
_DATETIME = 5  # [year, month, day, hour, minute, second, microsecond, fold, tz]
_DATE = 6  # proleptic Gregorian ordinal
_TIME = 7  # [hour, minute, second, microsecond, fold, tz]
_TIMEDELTA = 8  # [days, seconds, microseconds]
_DECIMAL = 9  # ASCII str(value)
_UUID = 10  # the 16 raw bytes
_ENUM = 11  # ["module:qualname", value]
_DATACLASS = 12  # ["module:qualname", {field: value}]
_PYDANTIC = 13  # ["module:qualname", model_dump(mode="python")]
_EXCEPTION = 14  # ["module:qualname", args, __dict__, str(error)]
_PICKLE = 15  # pickle bytes (only written and read when pickle is allowed)
# A tz above is None (naive), a str (zoneinfo key) or [utcoffset in microseconds, name or None].

_PICKLE_PROTOCOL = 5  # fixed, so rows stay readable across Python upgrades
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_PICKLE_REFUSED = "{what} with pickle, which is not enabled (pass allow_pickle=True to read it)"
_Encoder = Callable[[Any], Any]
_PLAIN_BASES: tuple[type[Any], ...] = (str, float, bytes, list, dict)
_PACKER_OPTIONS: dict[str, Any] = {"use_bin_type": True, "strict_types": True}
try:  # msgpack >= 1.1 lets a packer start small rather than allocate 256 KiB
    msgpack.Packer(buf_size=256)
    _PACKER_OPTIONS["buf_size"] = 256
except TypeError:
    pass


class Serializer(ABC):
    """A value format written as for DBOS 3.x: values to text and back, under a name.

    Subclass it, implement :meth:`serialize` and :meth:`deserialize`, and pass an instance as
    ``DBOSConfig(serializer=...)``. The text is stored as UTF-8; :meth:`name` is recorded on
    every row written with it, and rows are read back by the serializer of that name.
    """

    @abstractmethod
    def serialize(self, data: Any) -> str:
        """Encode ``data`` (workflow inputs, outputs, exceptions, messages...) as text."""

    @abstractmethod
    def deserialize(self, serialized_data: str) -> Any:
        """Decode text written by :meth:`serialize`."""

    def name(self) -> str:
        """The name recorded on rows; override it to tell your formats apart."""
        return "custom_serializer"


@runtime_checkable
class BytesSerializer(Protocol):
    """dbos_async's own serializer shape: a ``name`` attribute recorded on every row it writes."""

    name: str

    def dumps(self, value: Any) -> bytes:
        """Encode ``value`` to bytes."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode bytes written by :meth:`dumps`."""
        ...


class _TextSerializer:
    """A DBOS 3.x-style (text) serializer seen as a bytes one: its text is stored as UTF-8."""

    def __init__(self, serializer: Any, name: str) -> None:
        self.name = name
        self._serialize: Callable[[Any], Any] = serializer.serialize
        self._deserialize: Callable[[str], Any] = serializer.deserialize

    def dumps(self, value: Any) -> bytes:
        """``serialize(value)``, which must return a str, as UTF-8."""
        text = self._serialize(value)
        if not isinstance(text, str):
            raise DBOSSerializationError(
                f"Serializer {self.name!r}: serialize() returned {_dotted(type(text))}, not str",
                _dotted(type(value)),
            )
        # surrogatepass: any Python str round-trips, even one json.dumps left a lone surrogate in
        return text.encode("utf-8", "surrogatepass")

    def loads(self, data: bytes) -> Any:
        """``deserialize()`` of the stored text."""
        return self._deserialize(data.decode("utf-8", "surrogatepass"))


class DBOSPortableJSONSerializer(Serializer):
    """Portable JSON as a DBOS 3.x serializer: compact JSON text any DBOS language reads.

    Pass it as ``DBOSConfig(serializer=...)`` to write every value as portable JSON (only JSON
    types, ``datetime``, ``date``, ``Decimal``, tuples and sets; anything else is refused).
    """

    def serialize(self, data: Any) -> str:
        """``data`` as compact JSON text; raises DBOSSerializationError without a portable form."""
        return PortableJSON().dumps(data).decode("utf-8")

    def deserialize(self, serialized_data: str) -> Any:
        """Parse JSON text (None stays None)."""
        return None if serialized_data is None else json.loads(serialized_data)

    def name(self) -> str:
        """``"portable_json"``, the name every DBOS language records for this format."""
        return PORTABLE_JSON


_BUILTIN_NAMES = frozenset({"msgpack", "pickle", PORTABLE_JSON})


def _has_methods(obj: object, *names: str) -> bool:
    return all(callable(getattr(obj, n, None)) for n in names)


def as_bytes_serializer(serializer: object) -> BytesSerializer:
    """Check a user's serializer, in either shape, and return it as a :class:`BytesSerializer`.

    Raises :class:`DBOSConfigurationError` naming what is missing or wrong.
    """
    if isinstance(serializer, (MsgpackSerializer, PickleSerializer, PortableJSON)):
        return serializer
    if isinstance(serializer, DBOSPortableJSONSerializer):
        return PortableJSON()
    kind = _dotted(type(serializer))
    raw_name: Any = getattr(serializer, "name", None)
    # DBOS's shape wins unless the object is plainly ours (dumps, loads and a str name).
    bytes_form = _has_methods(serializer, "dumps", "loads") and isinstance(raw_name, str)
    text_form = isinstance(serializer, Serializer) or (
        not bytes_form and _has_methods(serializer, "serialize", "deserialize")
    )
    if text_form:
        try:
            name = raw_name() if callable(raw_name) else raw_name
        except Exception as exc:
            raise DBOSConfigurationError(f"Serializer {kind}: name() raised {exc!r}") from exc
    elif _has_methods(serializer, "dumps", "loads"):
        name = raw_name
    else:
        raise DBOSConfigurationError(
            f"Not a serializer: {kind} needs serialize(), deserialize() and name() "
            "(DBOS 3.x, or subclass dbos_async.Serializer), or a name with dumps() and loads()"
        )
    if not isinstance(name, str) or not name.strip():
        raise DBOSConfigurationError(
            f"Serializer {kind}: its name must be a non-empty string, got {name!r}"
        )
    if name in _BUILTIN_NAMES:
        raise DBOSConfigurationError(
            f"Serializer {kind}: the name {name!r} is dbos_async's own; choose another"
        )
    return _TextSerializer(serializer, name) if text_form else cast(BytesSerializer, serializer)


def _dotted(cls: type, sep: str = ".") -> str:
    """``module.QualName`` (for messages) or, with ``sep=":"``, the persisted type path."""
    return f"{cls.__module__}{sep}{cls.__qualname__}"


def _resolve(path: str, base: type) -> Any:
    """Import the class a ``module:qualname`` path names; refuse anything but a ``base`` subclass."""
    module_name, _, qualname = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise DBOSSerializationError(f"Cannot import {path}: {exc}", path) from exc
    if not isinstance(obj, type) or not issubclass(obj, base):
        raise DBOSSerializationError(f"{path} is not a subclass of {base.__qualname__}", path)
    return obj


def _safe_str(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:
        return f"<unprintable {_dotted(type(error))}>"


def _td_micros(delta: dt.timedelta) -> int:
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _tz_spec(tz: dt.tzinfo | None, offset: dt.timedelta | None) -> Any:
    if tz is None:
        return None
    if isinstance(tz, zoneinfo.ZoneInfo) and tz.key is not None:
        return tz.key
    if isinstance(tz, dt.timezone):
        offset = tz.utcoffset(None)
        name = tz.tzname(None)
        return [_td_micros(offset), None if name == dt.timezone(offset).tzname(None) else name]
    if offset is None:  # a time whose tzinfo needs a date to know its offset
        raise DBOSSerializationError(f"Cannot serialize tzinfo {tz!r}", _dotted(type(tz)))
    return [_td_micros(offset), None]  # other tzinfo implementations: kept as a fixed offset


def _tz_load(spec: Any) -> dt.tzinfo | None:
    if spec is None:
        return None
    if isinstance(spec, str):
        return zoneinfo.ZoneInfo(spec)
    offset = dt.timedelta(microseconds=spec[0])
    return dt.timezone(offset) if spec[1] is None else dt.timezone(offset, spec[1])


def _pydantic_base() -> type | None:
    # A BaseModel instance can only exist once pydantic is imported; never import it ourselves.
    base = getattr(sys.modules.get("pydantic.main"), "BaseModel", None)
    return base if isinstance(base, type) else None


class MsgpackSerializer:
    """The default format: msgpack plus extension types for common Python values.

    JSON-like values are packed in C without Python hooks; tuples, sets, dates, Decimals, UUIDs,
    Enums, dataclasses, pydantic models, exceptions and big ints use extension types. Subclasses
    of builtin containers/scalars are stored as their base type. Anything else raises
    DBOSSerializationError, or is pickled inside an extension type when ``allow_pickle`` is set.
    """

    name: str = "msgpack"

    def __init__(self, *, allow_pickle: bool = False) -> None:
        self.allow_pickle = allow_pickle
        self._local = threading.local()
        self._unpackb: Callable[[bytes], Any] = functools.partial(
            msgpack.unpackb, ext_hook=self._ext_hook, raw=False, strict_map_key=False
        )
        ext, pack = msgpack.ExtType, self.dumps
        # Exact-type dispatch; datetime precedes date so the isinstance fallback picks it first.
        self._encoders: dict[type, _Encoder] = {
            tuple: lambda o: ext(_TUPLE, pack(list(o))),
            set: lambda o: ext(_SET, pack(list(o))),
            frozenset: lambda o: ext(_FROZENSET, pack(list(o))),
            int: lambda o: ext(_BIGINT, o.to_bytes((o.bit_length() + 8) // 8, "big", signed=True)),
            dt.datetime: self._dump_datetime,
            dt.date: lambda o: ext(_DATE, pack(o.toordinal())),
            dt.time: self._dump_time,
            dt.timedelta: lambda o: ext(_TIMEDELTA, pack([o.days, o.seconds, o.microseconds])),
            decimal.Decimal: lambda o: ext(_DECIMAL, str(o).encode()),
            uuid.UUID: lambda o: ext(_UUID, o.bytes),
        }
        unpack = self._unpackb
        self._decoders: dict[int, Callable[[bytes], Any]] = {
            _TUPLE: lambda d: tuple(unpack(d)),
            _SET: lambda d: set(unpack(d)),
            _FROZENSET: lambda d: frozenset(unpack(d)),
            _BIGINT: lambda d: int.from_bytes(d, "big", signed=True),
            _DATETIME: lambda d: self._load_datetime(unpack(d)),
            _DATE: lambda d: dt.date.fromordinal(unpack(d)),
            _TIME: lambda d: self._load_time(unpack(d)),
            _TIMEDELTA: lambda d: dt.timedelta(*unpack(d)),
            _DECIMAL: lambda d: decimal.Decimal(d.decode()),
            _UUID: lambda d: uuid.UUID(bytes=d),
            _ENUM: self._load_enum,
            _DATACLASS: self._load_dataclass,
            _PYDANTIC: self._load_pydantic,
            _EXCEPTION: self._load_exception,
            _PICKLE: self._load_pickle,
        }

    def dumps(self, value: Any) -> bytes:
        """Encode ``value``; raises DBOSSerializationError naming the first unsupported type."""
        # Packers are costly to create and hooks pack nested values, so each thread keeps a few.
        try:
            pool: list[Any] = self._local.pool
        except AttributeError:
            pool = self._local.pool = []
        packer = pool.pop() if pool else msgpack.Packer(default=self._default, **_PACKER_OPTIONS)
        try:
            data: bytes = packer.pack(value)
        finally:
            if len(pool) < 8:
                pool.append(packer)
        return data

    def loads(self, data: bytes) -> Any:
        """Decode bytes written by :meth:`dumps`."""
        return self._unpackb(data)

    # -- encoding ------------------------------------------------------------------------------

    def _dump_datetime(self, o: dt.datetime) -> Any:
        tz = _tz_spec(o.tzinfo, o.utcoffset())
        fields = [o.year, o.month, o.day, o.hour, o.minute, o.second, o.microsecond, o.fold, tz]
        return msgpack.ExtType(_DATETIME, self.dumps(fields))

    def _dump_time(self, o: dt.time) -> Any:
        tz = _tz_spec(o.tzinfo, o.utcoffset())
        fields = [o.hour, o.minute, o.second, o.microsecond, o.fold, tz]
        return msgpack.ExtType(_TIME, self.dumps(fields))

    def _default(self, obj: Any) -> Any:
        encoder = self._encoders.get(type(obj))
        if encoder is not None:
            return encoder(obj)
        return self._fallback(obj)

    def _fallback(self, obj: Any) -> Any:
        ext, pack = msgpack.ExtType, self.dumps
        cls = type(obj)
        if isinstance(obj, BaseException):
            state = [_dotted(cls, ":"), obj.args, dict(vars(obj)), _safe_str(obj)]
            return ext(_EXCEPTION, pack(state))
        local_class = "<locals>" in cls.__qualname__
        if isinstance(obj, enum.Enum) and not local_class:
            return ext(_ENUM, pack([_dotted(cls, ":"), obj.value]))
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type) and not local_class:
            fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
            return ext(_DATACLASS, pack([_dotted(cls, ":"), fields]))
        base_model = _pydantic_base()
        if base_model is not None and isinstance(obj, base_model) and not local_class:
            model: Any = obj
            return ext(_PYDANTIC, pack([_dotted(cls, ":"), model.model_dump(mode="python")]))
        for base, encoder in self._encoders.items():  # subclasses of the types handled above
            if base is not int and isinstance(obj, base):
                return encoder(obj)
        if isinstance(obj, int):  # an int subclass (IntEnum was handled above): store a plain int
            value = int(obj)
            return value if _INT_MIN <= value <= _INT_MAX else self._encoders[int](value)
        for plain in _PLAIN_BASES:
            if isinstance(obj, plain):
                return plain(obj)
        return self._unsupported(obj, local_class)

    def _unsupported(self, obj: Any, local_class: bool) -> Any:
        type_name = _dotted(type(obj))
        reason = "msgpack has no extension type for it"
        if local_class:
            reason = "its class is defined in a function, so it cannot be imported on load"
        try:
            if self.allow_pickle:
                return msgpack.ExtType(_PICKLE, pickle.dumps(obj, protocol=_PICKLE_PROTOCOL))
            reason += " (pass allow_pickle=True / a custom serializer)"
        except Exception as exc:
            reason += f", and pickle failed: {exc}"
        raise DBOSSerializationError(
            f"Cannot serialize a value of type {type_name}: {reason}", type_name
        )

    # -- decoding ------------------------------------------------------------------------------

    def _ext_hook(self, code: int, data: bytes) -> Any:
        decoder = self._decoders.get(code)
        if decoder is None:
            raise DBOSSerializationError(f"Unknown msgpack extension type code {code}")
        return decoder(data)

    @staticmethod
    def _load_datetime(v: list[Any]) -> dt.datetime:
        tz = _tz_load(v[8])
        return dt.datetime(v[0], v[1], v[2], v[3], v[4], v[5], v[6], tz, fold=v[7])

    @staticmethod
    def _load_time(v: list[Any]) -> dt.time:
        return dt.time(v[0], v[1], v[2], v[3], _tz_load(v[5]), fold=v[4])

    def _load_enum(self, data: bytes) -> Any:
        path, value = self._unpackb(data)
        return _resolve(path, enum.Enum)(value)

    def _load_dataclass(self, data: bytes) -> Any:
        path, values = self._unpackb(data)
        cls = _resolve(path, object)
        if not hasattr(cls, "__dataclass_fields__"):  # what dataclasses.is_dataclass checks
            raise DBOSSerializationError(f"{path} is not a dataclass", path)
        init = {f.name for f in dataclasses.fields(cls) if f.init}
        obj = cls(**{k: v for k, v in values.items() if k in init})
        for key, value in values.items():
            if key not in init:
                object.__setattr__(obj, key, value)
        return obj

    def _load_pydantic(self, data: bytes) -> Any:
        path, values = self._unpackb(data)
        cls = _resolve(path, object)  # imports the model's module, and with it pydantic
        base_model = _pydantic_base()
        if base_model is None or not issubclass(cls, base_model):
            raise DBOSSerializationError(f"{path} is not a pydantic model", path)
        return cls.model_validate(values)

    def _load_exception(self, data: bytes) -> BaseException:
        path, args, state, message = self._unpackb(data)
        fallback = Exception(f"{path.replace(':', '.')}: {message}")
        try:
            cls = _resolve(path, object)
        except DBOSSerializationError:
            return fallback
        if not issubclass(cls, BaseException):
            raise DBOSSerializationError(f"{path} is not an exception class", path)
        try:
            try:
                error: BaseException = cls.__new__(cls, *args)  # OSError & co. read args here
            except TypeError:
                error = cls.__new__(cls)
            BaseException.__init__(error, *args)
            error.__dict__.update(state)
        except Exception:
            return fallback
        return error

    def _load_pickle(self, data: bytes) -> Any:
        if not self.allow_pickle:
            raise DBOSSerializationError(
                _PICKLE_REFUSED.format(what="This value holds an object pickled")
            )
        return pickle.loads(data)


class PickleSerializer:
    """Plain pickle, for values msgpack cannot carry; used only when the user opts in."""

    name: str = "pickle"

    def dumps(self, value: Any) -> bytes:
        """Pickle ``value`` with a fixed protocol."""
        return pickle.dumps(value, protocol=_PICKLE_PROTOCOL)

    def loads(self, data: bytes) -> Any:
        """Unpickle ``data`` (trusted: written by this application)."""
        return pickle.loads(data)


class Codec:
    """Encodes with the configured serializer (or a format a caller names); decodes by the
    serializer name recorded on the row, portable JSON included."""

    def __init__(
        self,
        serializer: Serializer | BytesSerializer | None = None,
        *,
        allow_pickle: bool = False,
    ) -> None:
        chosen = None if serializer is None else as_bytes_serializer(serializer)
        self._allow_pickle = allow = (
            allow_pickle
            or isinstance(chosen, PickleSerializer)
            or (isinstance(chosen, MsgpackSerializer) and chosen.allow_pickle)
        )
        if isinstance(chosen, MsgpackSerializer) and chosen.allow_pickle == allow:
            msgpack_serializer = chosen
        else:
            msgpack_serializer = MsgpackSerializer(allow_pickle=allow)
        self._serializer: BytesSerializer = (
            msgpack_serializer
            if chosen is None or isinstance(chosen, MsgpackSerializer)
            else chosen
        )
        self._by_name: dict[str, BytesSerializer] = {
            "msgpack": msgpack_serializer,
            PORTABLE_JSON: PortableJSON(),
        }
        if allow:
            self._by_name["pickle"] = PickleSerializer()
        self._by_name[self._serializer.name] = self._serializer

    @property
    def name(self) -> str:
        """The name of the configured serializer (record it on every row written)."""
        return self._serializer.name

    @property
    def allow_pickle(self) -> bool:
        """Whether pickle is enabled, for writing fallbacks and reading pickle rows."""
        return self._allow_pickle

    def name_of(self, fmt: str | None) -> str:
        """The name recorded for values written in ``fmt`` (None: the configured serializer)."""
        return self._serializer.name if fmt is None else fmt

    def knows(self, name: str | None) -> bool:
        """Whether values of the format ``name`` can be written and read here."""
        return name is None or name in self._by_name

    def _serializer_for(self, name: str | None) -> BytesSerializer:
        serializer = self._serializer if name is None else self._by_name.get(name)
        if serializer is None:
            if name == "pickle":
                raise DBOSSerializationError(_PICKLE_REFUSED.format(what="This row was written"))
            known = ", ".join(sorted(self._by_name))
            raise DBOSSerializationError(f"Unknown serializer {name!r} (known: {known})")
        return serializer

    def dumps(self, value: Any, fmt: str | None = None) -> bytes:
        """Encode ``value`` in ``fmt`` (None: the configured serializer); raises
        DBOSSerializationError."""
        serializer = self._serializer_for(fmt)
        try:
            return serializer.dumps(value)
        except DBOSSerializationError:
            raise
        except Exception as exc:
            type_name = _dotted(type(value))
            message = f"Cannot serialize a value of type {type_name} with {serializer.name}: {exc}"
            raise DBOSSerializationError(
                f"{message} (pass allow_pickle / a custom serializer)", type_name
            ) from exc

    def loads(self, data: bytes | None, name: str | None) -> Any:
        """Decode ``data`` with the serializer named ``name`` (None: the configured one)."""
        if data is None:
            return None
        serializer = self._serializer_for(name)
        try:
            return serializer.loads(data)
        except DBOSSerializationError:
            raise
        except Exception as exc:
            raise DBOSSerializationError(
                f"Cannot deserialize {serializer.name} data: {exc}"
            ) from exc

    def dumps_inputs(
        self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any], fmt: str | None = None
    ) -> bytes:
        """Encode a workflow's arguments: ``{"positionalArgs", "namedArgs"}`` in portable JSON,
        an ``[args, kwargs]`` pair otherwise (a list: msgpack packs it without a Python hook,
        where a tuple takes an extension type; readers take either, and older rows hold
        tuples)."""
        if self.name_of(fmt) == PORTABLE_JSON:
            return self.dumps(portable_inputs(args, kwargs), fmt)
        return self.dumps([list(args), kwargs], fmt)

    def loads_inputs(
        self, data: bytes | None, name: str | None
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Decode a workflow's recorded arguments, whichever shape they were written in."""
        return inputs_from(self.loads(data, name))

    def loads_exception(self, data: bytes | None, name: str | None) -> Any:
        """Decode a recorded error: portable error data becomes a PortableWorkflowError."""
        decoded = self.loads(data, name)
        if data is not None and self.name_of(name) == PORTABLE_JSON:
            return error_from_data(decoded)
        return decoded

    def dumps_exception(self, error: BaseException, fmt: str | None = None) -> bytes:
        """Encode an exception in ``fmt``; never raises because of the exception's contents.

        In portable JSON it is written as error data (name, message, code, data). Otherwise, if
        the error (or its args/attributes) cannot be encoded, a plain ``Exception`` whose
        message is ``"<module.QualName>: <str(error)>"`` is encoded instead. If the serializer
        cannot encode even that, the message string alone is encoded.
        """
        if self.name_of(fmt) == PORTABLE_JSON:
            return self.dumps(error_data(error), fmt)
        try:
            return self.dumps(error, fmt)
        except Exception:
            message = f"{_dotted(type(error))}: {_safe_str(error)}"
        try:
            return self.dumps(Exception(message), fmt)
        except Exception:
            return self.dumps(message, fmt)

"""Portable JSON: the value format every DBOS language and plain SQL can read and write.

A value written as portable JSON is compact UTF-8 JSON text (stored in the ``bytea`` value
columns, readable with ``convert_from(column, 'UTF8')::jsonb``) under the format name
``portable_json``. Only JSON's own types go in, plus a few Python values written in a fixed
text form: ``datetime`` (RFC 3339, UTC, milliseconds, ``Z``), ``date`` (ISO), ``Decimal`` (a
decimal string); tuples and sets become arrays. Anything else is refused with
:class:`DBOSSerializationError`, so a value never leaves Python in a shape another language
cannot read.

Workflow inputs are ``{"positionalArgs": [...], "namedArgs": {...}}``; errors are
``{"name", "message", "code", "data"}`` and come back as :class:`PortableWorkflowError`.
What JSON loses (a ``datetime`` comes back a string) a workflow gets back from its type hints
(:func:`coerce_to_hints`) or from its ``validate_args``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import inspect
import json
import types
import typing
import uuid
from collections.abc import Callable, Mapping
from enum import Enum, StrEnum
from typing import Any

from ._errors import DBOSInvalidArgumentError, DBOSSerializationError

__all__ = [
    "PORTABLE_JSON",
    "PortableJSON",
    "PortableWorkflowError",
    "SerializationType",
    "WorkflowSerializationFormat",
    "coerce_to_hints",
    "error_data",
    "error_from_data",
    "format_name",
    "inputs_from",
    "portable_inputs",
    "to_portable",
]

PORTABLE_JSON = "portable_json"
"""The format name recorded on rows written as portable JSON (DBOS's name, in every language)."""

NATIVE = "msgpack"
"""The format ``WorkflowSerializationFormat.NATIVE`` stands for: dbos_async's own Python format."""


class WorkflowSerializationFormat(StrEnum):
    """How a workflow records its inputs, output and error, or how a value is sent, set or
    written: ``PORTABLE`` (JSON any language reads), ``NATIVE`` (dbos_async's msgpack, for
    Python only) or ``DEFAULT`` (the configured serializer; inside a workflow, the workflow's
    own format). As in DBOS, ``DEFAULT``'s value is the string ``"None"``."""

    PORTABLE = "portable"
    NATIVE = "native"
    DEFAULT = "None"


SerializationType = WorkflowSerializationFormat | None
"""What a ``serialization_type=`` parameter takes."""

_BY_VALUE = {f.value: f for f in WorkflowSerializationFormat}


def format_name(serialization_type: object) -> str | None:
    """The format name a ``serialization_type=`` argument asks for (None: the default one).

    Takes a :class:`WorkflowSerializationFormat`, its value or its name (any case), or None.
    Raises :class:`DBOSInvalidArgumentError` for anything else.
    """
    if serialization_type is None:
        return None
    chosen: WorkflowSerializationFormat | None = None
    if isinstance(serialization_type, WorkflowSerializationFormat):
        chosen = serialization_type
    elif isinstance(serialization_type, str):
        chosen = WorkflowSerializationFormat.__members__.get(serialization_type.upper())
        chosen = chosen or _BY_VALUE.get(serialization_type)
    if chosen is WorkflowSerializationFormat.PORTABLE:
        return PORTABLE_JSON
    if chosen is WorkflowSerializationFormat.NATIVE:
        return NATIVE
    if chosen is WorkflowSerializationFormat.DEFAULT:
        return None
    choices = ", ".join(
        f"WorkflowSerializationFormat.{f.name}" for f in WorkflowSerializationFormat
    )
    raise DBOSInvalidArgumentError(
        f"Unknown serialization_type {serialization_type!r}: use one of {choices} (or None)"
    )


# Values ------------------------------------------------------------------------------------


def _utc_text(value: dt.datetime) -> str:
    """RFC 3339 in UTC with milliseconds and ``Z``; a naive datetime is taken as UTC."""
    utc = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_portable(value: Any, where: str = "value") -> Any:
    """``value`` as plain JSON data (dicts, lists, str, numbers, bools, None).

    Raises :class:`DBOSSerializationError` naming the first part that has no portable form
    (``where`` is the path reported).
    """
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dt.datetime):
        return _utc_text(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_portable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        converted: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise DBOSSerializationError(
                    f"Cannot serialize {where} as portable JSON: its key {key!r} is not a string",
                    type(key).__qualname__,
                )
            converted[key] = to_portable(item, f"{where}[{key!r}]")
        return converted
    type_name = f"{type(value).__module__}.{type(value).__qualname__}"
    raise DBOSSerializationError(
        f"Cannot serialize {where} as portable JSON: {type_name} has no portable form (use "
        "JSON types, datetime, date, Decimal, lists, tuples, sets and dicts with string keys)",
        type_name,
    )


class PortableJSON:
    """The portable JSON format as a bytes serializer: compact UTF-8 JSON text."""

    name: str = PORTABLE_JSON

    def dumps(self, value: Any) -> bytes:
        """Encode ``value`` (see :func:`to_portable`); NaN and infinities are refused."""
        data = to_portable(value)
        try:
            text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except ValueError as exc:
            raise DBOSSerializationError(
                f"Cannot serialize value as portable JSON: {exc}", "float"
            ) from exc
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: keep it, escaped
            return json.dumps(data, separators=(",", ":"), allow_nan=False).encode("ascii")

    def loads(self, data: bytes) -> Any:
        """Decode JSON text."""
        return json.loads(data)


# Workflow inputs ---------------------------------------------------------------------------


def portable_inputs(args: tuple[Any, ...] | list[Any], kwargs: Mapping[str, Any]) -> Any:
    """A workflow's arguments in the shape every DBOS language records them."""
    return {"positionalArgs": list(args), "namedArgs": dict(kwargs)}


def inputs_from(decoded: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` from recorded workflow inputs, in any shape they are written in.

    Portable ``{"positionalArgs", "namedArgs"}`` (either may be missing or null), dbos_async's
    ``(args, kwargs)`` pair, or DBOS's ``{"args", "kwargs"}``. Raises
    :class:`DBOSSerializationError` for anything else.
    """
    if isinstance(decoded, Mapping):
        if "positionalArgs" in decoded or "namedArgs" in decoded:
            args, kwargs = decoded.get("positionalArgs"), decoded.get("namedArgs")
        else:
            args, kwargs = decoded.get("args"), decoded.get("kwargs")
    elif isinstance(decoded, (list, tuple)) and len(decoded) == 2:
        args, kwargs = decoded
    else:
        raise DBOSSerializationError(
            f"Workflow inputs must be positional and named arguments, got {decoded!r:.200}"
        )
    args = [] if args is None else args
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, Mapping):
        raise DBOSSerializationError(
            "Workflow inputs must hold a list of positional arguments and an object of named "
            f"ones, got {decoded!r:.200}"
        )
    if not all(isinstance(key, str) for key in kwargs):
        raise DBOSSerializationError("Workflow inputs' named arguments must have string names")
    return tuple(args), dict(kwargs)


# Errors ------------------------------------------------------------------------------------


class PortableWorkflowError(Exception):
    """An error recorded as portable JSON, read back: its ``name`` (the error's type in the
    language that raised it), ``message``, ``code`` and ``data`` (any JSON value).

    A workflow declared portable records its error this way, and a caller waiting on it gets
    this exception; raising one records it with its own name, code and data.
    """

    def __init__(
        self,
        message: str,
        name: str = "Error",
        code: int | str | None = None,
        data: Any = None,
    ) -> None:
        self.message = message
        self.name = name
        self.code = code
        self.data = data
        super().__init__(message)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"PortableWorkflowError({self.message!r}, {self.name!r}, {self.code!r}, {self.data!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.name, self.code, self.data))


_CODE_ATTRIBUTES = ("code", "error_code", "dbos_error_code", "errno", "status_code", "status")
_DATA_ATTRIBUTES = ("data", "details", "payload", "extra", "meta", "metadata")


def _text(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:
        return f"<unprintable {type(error).__qualname__}>"


def error_data(error: BaseException) -> dict[str, Any]:
    """An exception as portable error data; never raises because of the error's contents.

    ``code`` is the first int or str among the error's ``code``, ``error_code``,
    ``dbos_error_code``, ``errno``, ``status_code`` and ``status`` attributes; ``data`` the first
    of ``data``, ``details``, ``payload``, ``extra``, ``meta`` and ``metadata`` (as text if it
    has no portable form). A :class:`PortableWorkflowError` keeps its own name.
    """
    name = error.name if isinstance(error, PortableWorkflowError) else type(error).__name__
    result: dict[str, Any] = {"name": name, "message": _text(error), "code": None}
    for attribute in _CODE_ATTRIBUTES:
        try:
            code = getattr(error, attribute, None)
        except Exception:
            continue
        if isinstance(code, (int, str)) and not isinstance(code, bool):
            result["code"] = int(code) if isinstance(code, int) else str(code)
            break
    for attribute in _DATA_ATTRIBUTES:
        try:
            value = getattr(error, attribute)
        except Exception:
            continue
        if callable(value):
            continue
        try:
            result["data"] = to_portable(value)
            json.dumps(result["data"], allow_nan=False)
        except Exception:
            result["data"] = repr(value)
        break
    return result


def error_from_data(decoded: Any) -> PortableWorkflowError:
    """The :class:`PortableWorkflowError` that portable error data stands for."""
    if not isinstance(decoded, Mapping):
        return PortableWorkflowError(str(decoded))
    code = decoded.get("code")
    return PortableWorkflowError(
        str(decoded.get("message", "")),
        str(decoded.get("name") or "Error"),
        code if isinstance(code, (int, str)) else None,
        decoded.get("data"),
    )


# Type hints --------------------------------------------------------------------------------


def _parse_datetime(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)


def _parse_date(text: str) -> dt.date:
    return dt.date.fromisoformat(text) if len(text) == 10 else _parse_datetime(text).date()


_FROM_TEXT: dict[Any, Callable[[str], Any]] = {
    dt.datetime: _parse_datetime,
    dt.date: _parse_date,
    decimal.Decimal: decimal.Decimal,
    uuid.UUID: uuid.UUID,
}


def _target(hint: Any) -> Callable[[str], Any] | None:
    """How a string becomes a value of ``hint`` (a type JSON has no form for), if it can."""
    direct = _FROM_TEXT.get(hint)
    if direct is not None:
        return direct
    if isinstance(hint, type) and issubclass(hint, Enum) and issubclass(hint, str):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        targets = [t for t in map(_target, typing.get_args(hint)) if t is not None]
        if len(targets) == 1:  # ``datetime | None``; with several choices there is no telling
            return targets[0]
    return None


def _coerce(value: Any, hint: Any) -> Any:
    if not isinstance(value, str):
        return value
    convert = _target(hint)
    if convert is None:
        return value
    try:
        return convert(value)
    except (ValueError, ArithmeticError, TypeError):
        return value  # not ours to reject: the function gets what was recorded


def coerce_to_hints(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], *, skip_first: bool
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Give back the Python types portable JSON wrote as strings, by ``func``'s type hints.

    A string argument whose parameter is annotated ``datetime``, ``date``, ``Decimal``,
    ``UUID`` or a ``str`` Enum (or one of them ``| None``) is converted; a string that does not
    parse stays as it is. ``skip_first`` drops ``self``/``cls`` (not among recorded arguments).
    """
    try:
        hints = typing.get_type_hints(func)
        parameters = list(inspect.signature(func).parameters.values())
    except Exception:
        return args, kwargs
    if skip_first:
        parameters = parameters[1:]
    if not hints:
        return args, kwargs
    positional = [
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    coerced_args = tuple(
        _coerce(value, hints.get(positional[i])) if i < len(positional) else value
        for i, value in enumerate(args)
    )
    coerced_kwargs = {key: _coerce(value, hints.get(key)) for key, value in kwargs.items()}
    return coerced_args, coerced_kwargs

"""Argument checks shared by every public entry point, each with one wording.

Each returns the value it checked (typed), or raises :class:`DBOSInvalidArgumentError` (or the
``error`` class given, e.g. :class:`DBOSConfigurationError` for configuration keys) naming the
argument and the value it got.
"""

from __future__ import annotations

import json
import math

from ._errors import DBOSException, DBOSInvalidArgumentError

__all__ = ["check_id", "check_int", "check_json_object", "check_number"]


def check_id(name: str, value: object) -> str:
    """``value`` if it is a non-empty string (an ID, a name, a key)."""
    if not isinstance(value, str) or not value.strip():
        raise DBOSInvalidArgumentError(f"{name} must be a non-empty string, got {value!r}")
    return value


def check_number(
    name: str,
    value: object,
    *,
    minimum: float = 0.0,
    strict: bool = False,
    error: type[DBOSException] = DBOSInvalidArgumentError,
) -> float:
    """``value`` as a float if it is a finite number ``>= minimum`` (``> minimum`` if strict)."""
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < minimum
        or (strict and value == minimum)
    ):
        bound = f"greater than {minimum:g}" if strict else f"at least {minimum:g}"
        raise error(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def check_int(
    name: str,
    value: object,
    *,
    minimum: int = 1,
    maximum: int | None = None,
    error: type[DBOSException] = DBOSInvalidArgumentError,
) -> int:
    """``value`` if it is an integer within bounds (``bool`` is not an integer here)."""
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        raise error(f"{name} must be an integer {bounds}, got {value!r}")
    return value


def check_json_object(name: str, value: object) -> str | None:
    """``value`` (a JSON-serializable dict, or None) as JSON text."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DBOSInvalidArgumentError(f"{name} must be a dict or None, got {value!r}")
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as error:
        raise DBOSInvalidArgumentError(f"{name} must be JSON-serializable: {error}") from None

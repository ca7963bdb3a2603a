"""Printing results: JSON for scripts (every time as epoch milliseconds), rich tables for
people (times as local ISO-8601)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

import typer
from rich.console import Console
from rich.table import Table

__all__ = [
    "duration_ms",
    "error_text",
    "jsonable",
    "local_time",
    "print_json",
    "print_pairs",
    "print_table",
    "short",
]


def error_text(error: BaseException) -> str:
    """A recorded error as ``Type: message``."""
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON values: records as objects, errors as ``Type: message``, user
    values that JSON cannot hold as their ISO form (times), string or ``repr``."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, BaseException):
        return error_text(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value]
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return repr(value)


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout."""
    typer.echo(json.dumps(jsonable(value), indent=2))


def local_time(epoch_ms: int | None) -> str:
    """Epoch milliseconds as a local ISO-8601 time to the second ("" for None)."""
    if epoch_ms is None:
        return ""
    return datetime.fromtimestamp(epoch_ms / 1000).astimezone().isoformat(timespec="seconds")


def duration_ms(started: int | None, completed: int | None) -> int | None:
    """Milliseconds from ``started`` to ``completed``, when both are known."""
    return None if started is None or completed is None else completed - started


def short(value: Any, width: int = 60) -> str:
    """A value for a table cell: its JSON form, cut to ``width`` characters."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(jsonable(value))
    return text if len(text) <= width else text[: width - 1] + "…"


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows as a table, or a line saying there are none."""
    console = Console()
    if not rows:
        console.print(f"No {title.lower()}.")
        return
    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):  # the first column (an ID or name) never wraps
        table.add_column(column, overflow="fold", no_wrap=index == 0)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(table)


def print_pairs(title: str, pairs: Sequence[tuple[str, Any]]) -> None:
    """Print one record as a two-column table of names and values."""
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in pairs:
        table.add_row(name, "" if value is None else str(value))
    Console().print(table)

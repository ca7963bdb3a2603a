"""Batched writes: many rows in one statement, one array per column (``unnest``).

A batched statement is declared once (:class:`BatchedStatement`, its :class:`Column` s and a
function rendering its SQL); :meth:`BatchedStatement.bind` gives the SQL and arguments of one
batch, sending a column that holds the same value in every row once. The statement returns
one row (:func:`written_or_keys`), read back per record with :func:`written_of_batch`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

__all__ = [
    "BatchedStatement",
    "Column",
    "first_of_each",
    "written_of_batch",
    "written_once",
    "written_or_keys",
]

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Column:
    """A parameter of a batched statement: its name and Postgres type, and how it travels.

    Per row by default (an array). ``often_uniform``: per row too, but a batch often holds the
    same value in every row (NULL, or a constant of the process or application), and then it is
    sent once. ``per_batch``: one value for the whole batch (a scalar)."""

    name: str
    type: str
    often_uniform: bool = False
    per_batch: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class BatchedStatement:
    """A statement that writes a batch of rows passed as one array per column (``unnest``).

    ``render(columns, source)`` returns its SQL from each column's expression by name (``u.`` and
    its name, or the parameter of a ``per_batch`` one) and the ``unnest(...) AS u(...)`` row
    source. Column ``k`` (from 1) is parameter ``$k``; the first one is the key.

    A column whose values are all the same in a batch is sent once, as a scalar, and Postgres
    spreads it over the rows (``array_fill``): asyncpg encodes every array element in Python, so
    a NULL or constant column would cost as much as the data. Spread inside ``unnest``, the value
    is still a column of the rows, so the plan is the one of the statement with every column an
    array: as a bare parameter, the guard's ``executor_id IS NOT DISTINCT FROM $k`` would filter
    the PENDING rows ahead of the join, and the generic plan Postgres adopts after five
    executions, costed on an empty table's statistics, loops over every PENDING row for every
    record (7x the server CPU per workflow, at 1,000 running).
    """

    columns: tuple[Column, ...]
    render: Callable[[Mapping[str, str], str], str]

    def sql_all_arrays(self) -> str:
        """Its SQL with every column sent per row, as an array (what plan tests examine)."""
        return _batched_sql(self, (False,) * len(self.columns))

    def bind(self, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """The SQL for a batch and its arguments, given each column's list of values (or its
        value, for a ``per_batch`` column)."""
        uniform = []
        args: list[Any] = []
        for column, value in zip(self.columns, values, strict=True):
            same = column.often_uniform and value.count(value[0]) == len(value)
            uniform.append(same)
            args.append(value[0] if same else value)
        return _batched_sql(self, tuple(uniform)), args


@functools.lru_cache(maxsize=128)
def _batched_sql(statement: BatchedStatement, uniform: tuple[bool, ...]) -> str:
    """``statement``'s SQL with the columns flagged in ``uniform`` sent once. Cached: a few
    variants per statement in practice, since a column that is often uniform rarely holds
    anything else; bounded all the same."""
    rows = f"cardinality($1::{statement.columns[0].type}[])"
    expressions: dict[str, str] = {}
    arrays, names = [], []
    for number, (column, same) in enumerate(zip(statement.columns, uniform, strict=True), 1):
        if column.per_batch:
            expressions[column.name] = f"${number}::{column.type}"
            continue
        expressions[column.name] = f"u.{column.name}"
        names.append(column.name)
        if same:
            arrays.append(f"array_fill(${number}::{column.type}, ARRAY[{rows}])")
        else:
            arrays.append(f"${number}::{column.type}[]")
    return statement.render(expressions, f"unnest({', '.join(arrays)}) AS u({', '.join(names)})")


def written_or_keys(keys: Sequence[str]) -> str:
    """SQL select list over the rows a batched write returned (each with ``keys`` columns): how
    many there are, and each key column as an array only when fewer than the batch's records
    (``$1``, the text key array, holds one per record). A batch where every record was written
    returns one small row instead of one row per record."""
    arrays = "".join(
        f", CASE WHEN count(*) < cardinality($1::text[]) THEN array_agg({key}) END" for key in keys
    )
    return f"count(*)::int{arrays}"


def written_of_batch(
    row: asyncpg.Record | None,
    batch: Sequence[R],
    records: Sequence[R],
    key: Callable[[R], str | tuple[Any, ...]],
) -> list[bool]:
    """Per row of ``batch``, whether a write that sent ``records`` (``batch``'s
    :func:`first_of_each`) wrote it, from the row it returned: :func:`written_or_keys` of the
    key's columns (a tuple key's items, in order), then any other columns."""
    assert row is not None  # an aggregate's one row
    count = row[0]
    if count == len(batch):
        return [True] * count
    if count == len(records):
        written = {key(record) for record in records}
    else:
        sample = key(records[0])
        arity = len(sample) if isinstance(sample, tuple) else 1
        arrays = [row[i] or [] for i in range(1, 1 + arity)]
        written = set(arrays[0]) if arity == 1 else set(zip(*arrays, strict=True))
    return written_once([key(record) for record in batch], written)


def first_of_each(rows: Sequence[R], key: Callable[[R], Hashable]) -> list[R]:
    """The rows whose key has not appeared before in ``rows``, in order.

    An ``ON CONFLICT DO UPDATE`` statement may not meet the same key twice; the later
    occurrences are reported as not written (:func:`written_once`), as a conflict would.
    """
    seen: set[Hashable] = set()
    unique = []
    for row in rows:
        k = key(row)
        if k not in seen:
            seen.add(k)
            unique.append(row)
    return unique


def written_once(keys: Sequence[Hashable], written: set[Any]) -> list[bool]:
    """Per key, whether the batch wrote it: a key repeated in a batch was written only once,
    and the first occurrence takes that credit."""
    results = []
    for key in keys:
        results.append(key in written)
        written.discard(key)
    return results

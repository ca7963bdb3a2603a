"""Pieces shared by the benchmarks: URLs, timing, percentiles, the table, the commit limit.

Every benchmark reports its figures beside a *limit* measured in the same run on the same
server: raw asyncpg doing the same number of single-statement commits at the same concurrency.
Both sides are timed by the same helpers (:func:`time_sequential`, :func:`time_waves`), so the
ratio compares the engine's work, not two ways of measuring.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import platform
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from time import perf_counter
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

__all__ = [
    "CommitLimit",
    "LatencyStats",
    "Row",
    "Throughput",
    "align",
    "database_url",
    "drop_database",
    "format_number",
    "format_table",
    "json_safe",
    "load_average",
    "machine_info",
    "percentile",
    "pooled_throughput",
    "recreate_database",
    "resolve_server_url",
    "time_sequential",
    "time_waves",
]

Unit = Callable[[], Awaitable[object]]
"""One unit of work to time: a workflow call, or the raw commits standing for one."""


# URLs and databases ---------------------------------------------------------------------------


def resolve_server_url(cli_url: str | None) -> str:
    """The server to benchmark: ``--url``, ``DBOS_BENCH_DATABASE_URL``,
    ``DBOS_SYSTEM_DATABASE_URL``, else the embedded Postgres."""
    for candidate in (
        cli_url,
        os.environ.get("DBOS_BENCH_DATABASE_URL"),
        os.environ.get("DBOS_SYSTEM_DATABASE_URL"),
    ):
        if candidate:
            return candidate
    from dbos_async._embedded import embedded_database_url

    return embedded_database_url()


def database_url(server_url: str, name: str) -> str:
    """``server_url`` pointed at database ``name`` (query string, e.g. ``?host=``, kept)."""
    parts = urlsplit(server_url)
    scheme = parts.scheme.split("+", 1)[0]  # accept postgresql+driver:// as well
    return urlunsplit((scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _admin(server_url: str) -> asyncpg.Connection:
    return await asyncpg.connect(database_url(server_url, "postgres"))


async def recreate_database(server_url: str, name: str) -> str:
    """Drop (with FORCE) and create database ``name`` on the server; return its URL."""
    admin = await _admin(server_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {_quote(name)}")
    finally:
        await admin.close()
    return database_url(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name`` (with FORCE) if it exists."""
    admin = await _admin(server_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")
    finally:
        await admin.close()


async def machine_info(url: str) -> dict[str, Any]:
    """CPU count, Python, asyncpg, event loop and the Postgres server's version and durability."""
    conn = await asyncpg.connect(url)
    try:
        server = {
            setting: await conn.fetchval(f"SHOW {setting}")
            for setting in ("server_version", "fsync", "synchronous_commit", "wal_sync_method")
        }
    finally:
        await conn.close()
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "asyncpg": asyncpg.__version__,
        "event_loop": type(asyncio.get_running_loop()).__name__,
        "postgres": server,
    }


def load_average() -> list[float] | None:
    """The machine's 1, 5 and 15-minute load averages, where the OS reports them."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def json_safe(value: Any) -> Any:
    """``value`` with every NaN float replaced by None (JSON has no NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


# Statistics -----------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of already sorted values, interpolating linearly."""
    if not sorted_values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within [0, 100], got {q}")
    rank = (len(sorted_values) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = rank - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Latency percentiles of ``n`` samples, in milliseconds."""

    n: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float

    @classmethod
    def from_seconds(cls, samples: Sequence[float]) -> LatencyStats:
        """Summarize latencies measured in seconds."""
        ordered = sorted(samples)
        if not ordered:
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        return cls(
            n=len(ordered),
            p50_ms=percentile(ordered, 50) * 1000,
            p99_ms=percentile(ordered, 99) * 1000,
            mean_ms=sum(ordered) / len(ordered) * 1000,
            max_ms=ordered[-1] * 1000,
        )

    def as_dict(self) -> dict[str, float]:
        """The figures, rounded for the JSON line."""
        return {key: round(value, 4) for key, value in asdict(self).items()}


@dataclass(frozen=True, slots=True)
class Throughput:
    """``units`` done in ``elapsed_s`` seconds, and the latency of each from its launch."""

    units: int
    elapsed_s: float
    latency: LatencyStats

    @property
    def per_second(self) -> float:
        """Units completed per second."""
        return self.units / self.elapsed_s if self.elapsed_s > 0 else math.nan

    def as_dict(self) -> dict[str, Any]:
        """The figures, rounded for the JSON line."""
        return {
            "units": self.units,
            "elapsed_s": round(self.elapsed_s, 4),
            "per_second": round(self.per_second, 2),
            "latency": self.latency.as_dict(),
        }


def pooled_throughput(rounds: Sequence[Throughput], samples: Sequence[float]) -> Throughput:
    """Several rounds of one measurement as one: all units over all their time, and the
    latency percentiles of every sample (seconds) the rounds kept."""
    return Throughput(
        sum(r.units for r in rounds),
        sum(r.elapsed_s for r in rounds),
        LatencyStats.from_seconds(samples),
    )


# Timing ---------------------------------------------------------------------------------------


async def time_sequential(
    unit: Unit, runs: int, warmup: int, *, keep: list[float] | None = None
) -> LatencyStats:
    """Run ``unit`` ``warmup`` times untimed, then ``runs`` times back to back, timing each.

    With ``keep``, the samples (seconds) are also appended to it, to pool repetitions.
    """
    for _ in range(warmup):
        await unit()
    gc.collect()
    samples: list[float] = []
    for _ in range(runs):
        started = perf_counter()
        await unit()
        samples.append(perf_counter() - started)
    if keep is not None:
        keep.extend(samples)
    return LatencyStats.from_seconds(samples)


async def time_waves(
    unit: Unit,
    total: int,
    concurrency: int,
    *,
    keep: list[float] | None = None,
    collect: bool = True,
) -> Throughput:
    """Run ``total`` units in waves of ``concurrency`` launched at once with ``asyncio.gather``.

    A unit's latency runs from its wave's launch to its own completion. With ``keep``, the
    latencies (seconds) are also appended to it, to pool repetitions. ``collect=False`` skips
    the initial ``gc.collect()``, for a caller whose clock is already running (with many
    objects alive, a full collection takes a noticeable time).
    """
    if collect:
        gc.collect()
    samples: list[float] = []

    async def timed(launched: float) -> None:
        await unit()
        samples.append(perf_counter() - launched)

    started = perf_counter()
    remaining = total
    while remaining > 0:
        wave = min(concurrency, remaining)
        launched = perf_counter()
        await asyncio.gather(*(timed(launched) for _ in range(wave)))
        remaining -= wave
    elapsed = perf_counter() - started
    if keep is not None:
        keep.extend(samples)
    return Throughput(total, elapsed, LatencyStats.from_seconds(samples))


# The physical limit: raw asyncpg commits ------------------------------------------------------

_LIMIT_TABLE = "bench_commit_limit"
_CREATE_LIMIT_TABLE = f"""
CREATE TABLE IF NOT EXISTS {_LIMIT_TABLE} (
    unit_id text NOT NULL,
    seq     integer NOT NULL,
    payload bytea,
    PRIMARY KEY (unit_id, seq)
)
"""
_INSERT = f"INSERT INTO {_LIMIT_TABLE} (unit_id, seq, payload) VALUES ($1, $2, $3)"
_UPDATE = f"UPDATE {_LIMIT_TABLE} SET payload = $2 WHERE unit_id = $1 AND seq = 0"
_INSERT_NOTIFY = f"""
WITH inserted AS (
    INSERT INTO {_LIMIT_TABLE} (unit_id, seq, payload) VALUES ($1, 0, $2) RETURNING unit_id
)
SELECT pg_notify($3, unit_id) FROM inserted
"""
_PAYLOAD = bytes(range(16))


class _NoResetConnection(asyncpg.Connection):  # type: ignore[misc]
    """A connection the pool hands back as is.

    By default asyncpg's pool sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` on every release: one more round trip per pooled statement, which is a cost
    of the client library, not of committing. The limit does without it.
    """

    def get_reset_query(self) -> str:
        """No reset query: single statements leave no session state behind."""
        return ""


class CommitLimit:
    """Raw asyncpg doing what a workflow costs in commits, with no engine around it.

    A unit of ``commits`` statements mirrors a workflow of ``commits - 2`` steps: one INSERT
    of a row (the workflow's start), one INSERT per step, one UPDATE of the first row (the
    workflow's end). Each statement is its own implicit transaction, i.e. one commit.
    Concurrent units take a connection from the pool per statement, as an engine would.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def open(
        cls, url: str, pool_size: int, *, application_name: str | None = None
    ) -> CommitLimit:
        """Create the limit's table in ``url``'s database and open a pool of ``pool_size``.

        ``application_name``, when given, labels the pool's backends in ``pg_stat_activity``.
        """
        settings = {"application_name": application_name} if application_name else None
        pool = await asyncpg.create_pool(
            url,
            min_size=pool_size,
            max_size=pool_size,
            connection_class=_NoResetConnection,
            server_settings=settings,
        )
        await pool.execute(_CREATE_LIMIT_TABLE)
        return cls(pool)

    async def close(self) -> None:
        """Close the pool."""
        await self.pool.close()

    @staticmethod
    def _statements(commits: int) -> list[tuple[str, tuple[Any, ...]]]:
        unit_id = str(uuid.uuid4())
        statements: list[tuple[str, tuple[Any, ...]]] = [
            (_INSERT, (unit_id, seq, _PAYLOAD)) for seq in range(max(commits - 1, 1))
        ]
        if commits >= 2:
            statements.append((_UPDATE, (unit_id, _PAYLOAD)))
        return statements

    async def unit_on(self, conn: asyncpg.Connection, commits: int) -> None:
        """One unit of ``commits`` commits back to back on one held connection."""
        for sql, args in self._statements(commits):
            await conn.execute(sql, *args)

    async def unit_pooled(self, commits: int) -> None:
        """One unit of ``commits`` commits, each taking a connection from the pool."""
        for sql, args in self._statements(commits):
            await self.pool.execute(sql, *args)

    async def sequential(
        self, commits: int, runs: int, warmup: int, *, keep: list[float] | None = None
    ) -> LatencyStats:
        """Latency of a unit of ``commits`` commits on one connection."""
        async with self.pool.acquire() as conn:
            return await time_sequential(
                lambda: self.unit_on(conn, commits), runs, warmup, keep=keep
            )

    async def waves(
        self, commits: int, total: int, concurrency: int, *, keep: list[float] | None = None
    ) -> Throughput:
        """Throughput of ``total`` units through the pool, ``concurrency`` at a time."""
        return await time_waves(lambda: self.unit_pooled(commits), total, concurrency, keep=keep)

    async def insert_notify_pooled(self, channel: str) -> None:
        """One single-row INSERT that also NOTIFYs ``channel`` in the same statement (one commit).

        The design where every writer notifies in its own transaction, for comparison.
        """
        unit_id = str(uuid.uuid4())
        await self.pool.execute(_INSERT_NOTIFY, unit_id, _PAYLOAD, channel)


# The table ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the report: a figure of ours beside the limit's.

    ``note``, when set, says how the measurement departs from its name (e.g. a run capped to
    fewer units for DBOS Transact). ``key``, when set, identifies the workload across runs and
    implementations where the name embeds a figure of the run (e.g. a commit count).
    """

    workload: str
    ours: float
    limit: float
    units: str
    note: str = ""
    key: str = ""

    @property
    def ratio(self) -> float:
        """ours / limit."""
        return self.ours / self.limit if self.limit else math.nan

    def as_dict(self) -> dict[str, Any]:
        """The row for the JSON line."""
        row: dict[str, Any] = {
            "workload": self.workload,
            "ours": round(self.ours, 4),
            "limit": round(self.limit, 4),
            "ratio": round(self.ratio, 4),
            "units": self.units,
        }
        if self.note:
            row["note"] = self.note
        if self.key:
            row["key"] = self.key
        return row


def _number(value: float) -> str:
    if math.isnan(value):
        return "-"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def _ratio(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def format_number(value: float) -> str:
    """A figure as the tables show it ("-" for NaN)."""
    return _number(value)


def format_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned text table (with a ``note`` column if any row has a note)."""
    header: tuple[str, ...] = ("workload", "ours", "limit", "ratio", "units")
    cells: list[tuple[str, ...]] = [
        (row.workload, _number(row.ours), _number(row.limit), _ratio(row.ratio), row.units)
        for row in rows
    ]
    right: tuple[bool, ...] = (False, True, True, True, False)
    if any(row.note for row in rows):
        header += ("note",)
        cells = [(*line, row.note) for line, row in zip(cells, rows, strict=True)]
        right += (False,)
    return align(header, cells, right)


def align(header: Sequence[str], cells: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """An aligned text table: ``header``, a rule, then ``cells``; ``right`` aligns columns."""
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]

    def line(values: Sequence[str]) -> str:
        padded = [
            value.rjust(width) if to_right else value.ljust(width)
            for value, width, to_right in zip(values, widths, right, strict=True)
        ]
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(values) for values in cells)])

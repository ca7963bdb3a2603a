"""Pieces shared by the benchmarks: URLs, timing, percentiles, the table, the commit limits.

Every benchmark reports its figures beside a *limit* measured in the same run on the same
server: raw asyncpg doing the same number of single-statement commits at the same concurrency.
The concurrent workloads also report a tighter one, :class:`GroupCommitLimit`: the same writes
group-committed (many callers' rows in one ``unnest`` statement per commit), as an engine that
batches its checkpoints can do.
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
from dataclasses import asdict, dataclass, field
from time import perf_counter
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

__all__ = [
    "CommitLimit",
    "GroupCommitLimit",
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


# Starts seen from inside the task ------------------------------------------------------------

K = TypeVar("K")


@dataclass(slots=True)
class StartTracker(Generic[K]):
    """What the benchmark's tasks report from inside: when each (by key) ran its first line,
    and how many returned. ``all_finished`` fires once ``target`` returned."""

    started: dict[K, float] = field(default_factory=dict)
    finished: int = 0
    target: int = 0
    all_finished: asyncio.Event = field(default_factory=asyncio.Event)
    any_started: asyncio.Event = field(default_factory=asyncio.Event)

    def reset(self, target: int) -> None:
        """Forget earlier runs; wait for ``target`` tasks from now on."""
        self.started.clear()
        self.finished = 0
        self.target = target
        self.all_finished.clear()
        self.any_started.clear()

    def start(self, key: K) -> None:
        """Called on a task's first line (a rerun keeps the first time)."""
        self.started.setdefault(key, perf_counter())
        self.any_started.set()

    def finish(self) -> None:
        """Called on a task's last line."""
        self.finished += 1
        if self.finished >= self.target:
            self.all_finished.set()

    async def wait_started(self, key: K) -> float:
        """Wait until task ``key`` ran its first line; return when it did."""
        while key not in self.started:
            self.any_started.clear()
            await self.any_started.wait()
        return self.started[key]


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


# The tighter limit: raw asyncpg, group-committed ---------------------------------------------

_GROUP_RUNS = "bench_group_runs"
_GROUP_STEPS = "bench_group_steps"
_CREATE_GROUP_TABLES = f"""
CREATE TABLE IF NOT EXISTS {_GROUP_RUNS} (
    unit_id text PRIMARY KEY,
    status  text NOT NULL,
    payload bytea
);
CREATE TABLE IF NOT EXISTS {_GROUP_STEPS} (
    unit_id text NOT NULL,
    seq     integer NOT NULL,
    payload bytea,
    PRIMARY KEY (unit_id, seq)
)
"""
_GROUP_START = f"""
INSERT INTO {_GROUP_RUNS} (unit_id, status, payload)
SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[])
"""
_GROUP_CLAIM = f"""
UPDATE {_GROUP_RUNS} AS r SET status = 'PENDING'
FROM unnest($1::text[]) AS t(u) WHERE r.unit_id = t.u
"""
_GROUP_STEP = f"""
INSERT INTO {_GROUP_STEPS} (unit_id, seq, payload)
SELECT * FROM unnest($1::text[], $2::integer[], $3::bytea[])
"""
_GROUP_OUTCOME = f"""
UPDATE {_GROUP_RUNS} AS r SET status = 'SUCCESS', payload = t.p
FROM unnest($1::text[], $2::bytea[]) AS t(u, p) WHERE r.unit_id = t.u
"""
GROUP_MAX_IN_FLIGHT = 2
"""Flushes in flight per writer (the engine's ``GroupCommit`` default)."""
GROUP_MAX_BATCH = 500
"""Rows per flush at most (the engine's ``GroupCommit`` default)."""


class _Batcher:
    """One writer: callers' rows go out together, one ``unnest`` statement (one commit) per
    flush, at most :data:`GROUP_MAX_IN_FLIGHT` flushes in flight; each caller resumes once its
    own row is committed. An idle writer sends a row at once, in the caller's task."""

    def __init__(self, pool: asyncpg.Pool, sql: str, columns: int) -> None:
        self.pool = pool
        self.sql = sql
        self.columns = columns
        self.pending: list[tuple[tuple[Any, ...], asyncio.Future[None]]] = []
        self.in_flight = 0
        self.flushes = 0
        self.rows = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def _send(self, rows: Sequence[tuple[Any, ...]]) -> None:
        await self.pool.execute(self.sql, *([row[i] for row in rows] for i in range(self.columns)))
        self.flushes += 1
        self.rows += len(rows)

    async def submit(self, row: tuple[Any, ...]) -> None:
        """Write ``row`` (with whatever else is waiting); return once it is committed."""
        if not self.pending and self.in_flight < GROUP_MAX_IN_FLIGHT:
            self.in_flight += 1
            try:
                await self._send([row])
            finally:
                self.in_flight -= 1
                self._more()
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((row, future))
        self._more()
        await future

    def _more(self) -> None:
        if self.pending and self.in_flight < GROUP_MAX_IN_FLIGHT:
            batch = self.pending[:GROUP_MAX_BATCH]
            self.pending = self.pending[GROUP_MAX_BATCH:]
            self.in_flight += 1
            task = asyncio.get_running_loop().create_task(self._flush(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _flush(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[None]]]) -> None:
        try:
            await self._send([row for row, _ in batch])
        except BaseException as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
        else:
            for _, future in batch:
                if not future.done():
                    future.set_result(None)
        finally:
            self.in_flight -= 1
            self._more()


class GroupCommitLimit:
    """Raw asyncpg doing a workflow's writes, group-committed as an engine that batches would.

    A unit of ``steps`` steps mirrors a workflow: one INSERT of its run row (its start), one
    INSERT per step into a second table, one UPDATE of the run row (its outcome), each awaited
    before the next, as a workflow awaits its checkpoints. Each statement has a writer of its
    own (:class:`_Batcher`): the rows pending when a flush starts (up to
    :data:`GROUP_MAX_BATCH`) go out as one ``unnest`` statement, one commit, with at most
    :data:`GROUP_MAX_IN_FLIGHT` flushes in flight per writer (as the engine's writers
    ``starts``, ``steps``, ``outcomes``); a queued task adds a claim (``claims``, an UPDATE of
    its run row from ``ENQUEUED`` to ``PENDING``). Every unit resumes only once its own row is
    committed. The flushes take connections from the pool (``_NoResetConnection``). The rows
    are as narrow as :class:`CommitLimit`'s (a key and a 16-byte payload; the run table has no
    secondary index), so the two limits differ only in how they commit.
    """

    def __init__(self, pool: asyncpg.Pool, *, owns_pool: bool = False) -> None:
        self.pool = pool
        self.owns_pool = owns_pool
        self.starts = _Batcher(pool, _GROUP_START, 3)
        self.claims = _Batcher(pool, _GROUP_CLAIM, 1)
        self.steps = _Batcher(pool, _GROUP_STEP, 3)
        self.outcomes = _Batcher(pool, _GROUP_OUTCOME, 2)

    @classmethod
    async def open(
        cls, url: str, pool_size: int, *, application_name: str | None = None
    ) -> GroupCommitLimit:
        """Create the limit's tables in ``url``'s database and open a pool of ``pool_size``."""
        settings = {"application_name": application_name} if application_name else None
        pool = await asyncpg.create_pool(
            url,
            min_size=pool_size,
            max_size=pool_size,
            connection_class=_NoResetConnection,
            server_settings=settings,
        )
        await pool.execute(_CREATE_GROUP_TABLES)
        return cls(pool, owns_pool=True)

    @classmethod
    async def sharing(cls, pool: asyncpg.Pool) -> GroupCommitLimit:
        """Create the limit's tables and write through ``pool`` (e.g. a :class:`CommitLimit`'s,
        whose connections the two limits, run one after the other, never need at once)."""
        await pool.execute(_CREATE_GROUP_TABLES)
        return cls(pool)

    async def close(self) -> None:
        """Close the pool, if it is the limit's own."""
        if self.owns_pool:
            await self.pool.close()

    def stats(self) -> dict[str, dict[str, float]]:
        """Per writer: flushes, rows and rows per flush so far."""
        return {
            name: {
                "flushes": writer.flushes,
                "rows": writer.rows,
                "rows_per_flush": round(writer.rows / writer.flushes, 2) if writer.flushes else 0,
            }
            for name, writer in (
                ("starts", self.starts),
                ("claims", self.claims),
                ("steps", self.steps),
                ("outcomes", self.outcomes),
            )
        }

    def stats_since(self, before: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        """Per writer: flushes, rows and rows per flush since ``before`` (a :meth:`stats`)."""
        out: dict[str, dict[str, float]] = {}
        for name, now in self.stats().items():
            was = before.get(name, {"flushes": 0, "rows": 0})
            flushes = now["flushes"] - was["flushes"]
            rows = now["rows"] - was["rows"]
            out[name] = {
                "flushes": flushes,
                "rows": rows,
                "rows_per_flush": round(rows / flushes, 2) if flushes else 0,
            }
        return out

    async def start(self, unit_id: str, status: str = "PENDING") -> None:
        """The run row's INSERT (``ENQUEUED`` for a queued task)."""
        await self.starts.submit((unit_id, status, _PAYLOAD))

    async def claim(self, unit_id: str) -> None:
        """A queued run row's claim: its UPDATE to ``PENDING``."""
        await self.claims.submit((unit_id,))

    async def step(self, unit_id: str, seq: int) -> None:
        """One step row's INSERT."""
        await self.steps.submit((unit_id, seq, _PAYLOAD))

    async def finish(self, unit_id: str) -> None:
        """The run row's UPDATE."""
        await self.outcomes.submit((unit_id, _PAYLOAD))

    async def unit(self, steps: int) -> None:
        """One workflow's writes: start, ``steps`` steps, outcome, each awaited in turn."""
        unit_id = str(uuid.uuid4())
        await self.start(unit_id)
        for seq in range(steps):
            await self.step(unit_id, seq)
        await self.finish(unit_id)

    async def waves(
        self, steps: int, total: int, concurrency: int, *, keep: list[float] | None = None
    ) -> Throughput:
        """Throughput of ``total`` units, ``concurrency`` at a time (:func:`time_waves`)."""
        return await time_waves(lambda: self.unit(steps), total, concurrency, keep=keep)


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
    limit_group: float = math.nan
    """The group-committed limit (:class:`GroupCommitLimit`), where measured (NaN otherwise)."""

    @property
    def ratio(self) -> float:
        """ours / limit."""
        return self.ours / self.limit if self.limit else math.nan

    @property
    def ratio_group(self) -> float:
        """ours / the group-committed limit (NaN where not measured)."""
        if math.isnan(self.limit_group) or not self.limit_group:
            return math.nan
        return self.ours / self.limit_group

    def as_dict(self) -> dict[str, Any]:
        """The row for the JSON line."""
        row: dict[str, Any] = {
            "workload": self.workload,
            "ours": round(self.ours, 4),
            "limit": round(self.limit, 4),
            "ratio": round(self.ratio, 4),
            "units": self.units,
        }
        if not math.isnan(self.limit_group):
            row["limit_group"] = round(self.limit_group, 4)
            row["ratio_group"] = round(self.ratio_group, 4)
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
    if any(not math.isnan(row.limit_group) for row in rows):
        header = (*header[:4], "group limit", "ratio/group", *header[4:])
        cells = [
            (*line[:4], _number(row.limit_group), _ratio(row.ratio_group), *line[4:])
            for line, row in zip(cells, rows, strict=True)
        ]
        right = (*right[:4], True, True, *right[4:])
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

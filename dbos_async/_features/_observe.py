"""Reading the system database for operators: counts by status, a timeline, step timings, a
workflow's streams, and a marker that changes when any workflow starts or finishes.

Coroutine functions usable in an engine or under a client's scope, like the other features;
the admin app and the dashboard are built on them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from .._core._context import runtime_here
from .._core._validation import check_id, check_int
from .._sysdb._messages import CLOSED_STREAM
from .._sysdb._observe import (
    change_marker,
    status_counts,
    status_timeline,
    step_timings,
    stream_rows,
)

__all__ = [
    "StepTiming",
    "TimelineBucket",
    "recent_step_timings",
    "workflow_change_marker",
    "workflow_counts",
    "workflow_streams",
    "workflow_timeline",
]


@dataclass(frozen=True, slots=True)
class TimelineBucket:
    """Workflows created in ``[start_ms, start_ms + bucket)``, counted by status."""

    start_ms: int
    counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class StepTiming:
    """Durations of one step function's completed executions (milliseconds)."""

    function_name: str
    steps: int
    errors: int
    total_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float


async def workflow_counts() -> dict[str, int]:
    """How many workflows of the application there are, by status."""
    runtime = runtime_here()
    rows = await runtime.forward(status_counts(runtime.db, runtime.application_name))
    return {row["status"]: int(row["workflows"]) for row in rows}


async def workflow_timeline(since_ms: int, bucket_ms: int) -> list[TimelineBucket]:
    """Workflows created since ``since_ms`` (epoch ms), counted by status per bucket of
    ``bucket_ms``; buckets without workflows are left out."""
    check_int("since_ms", since_ms, minimum=0)
    check_int("bucket_ms", bucket_ms)
    runtime = runtime_here()
    rows = await runtime.forward(
        status_timeline(runtime.db, since_ms, bucket_ms, runtime.application_name)
    )
    buckets: dict[int, dict[str, int]] = {}
    for row in rows:
        buckets.setdefault(int(row["bucket"]), {})[row["status"]] = int(row["workflows"])
    return [TimelineBucket(start, counts) for start, counts in sorted(buckets.items())]


async def workflow_change_marker() -> str:
    """A string that changes whenever a workflow starts, finishes, is cancelled or resumed
    (whichever process did it)."""
    runtime = runtime_here()
    return await runtime.forward(change_marker(runtime.db))


async def recent_step_timings(since_ms: int) -> list[StepTiming]:
    """Durations of the completed steps of the workflows created since ``since_ms``, by step
    function."""
    check_int("since_ms", since_ms, minimum=0)
    runtime = runtime_here()
    rows = await runtime.forward(step_timings(runtime.db, since_ms, runtime.application_name))
    return [
        StepTiming(
            row["function_name"],
            int(row["steps"]),
            int(row["errors"]),
            float(row["total_ms"] or 0),
            *(float(q) for q in row["quantiles_ms"]),
        )
        for row in rows
    ]


async def workflow_streams(workflow_id: str, limit: int = 100) -> dict[str, list[Any]]:
    """The values written to each of a workflow's streams (the first ``limit`` of each), in
    order; a value that cannot be decoded here shows as ``"<undecodable>"``."""
    check_id("workflow_id", workflow_id)
    check_int("limit", limit)
    runtime = runtime_here()
    rows = await runtime.forward(stream_rows(runtime.db, workflow_id, limit))
    streams: dict[str, list[Any]] = {}
    for row in rows:
        values = streams.setdefault(row["key"], [])
        if row["serialization"] == CLOSED_STREAM:
            continue
        value: Any = "<undecodable>"
        with contextlib.suppress(Exception):
            value = runtime.codec.loads(row["value"], row["serialization"])
        values.append(value)
    return streams

"""``/metrics``: the system database's figures in Prometheus's text format.

Workflows by status and queue depths come from the database, so every process reports the
whole fleet (scrape one). Step durations are over the steps of workflows created in the last
:data:`STEP_WINDOW_MS` (a summary whose count and sum cover that window, not a counter since
start). Checkpoint batch sizes exist only where an engine runs in the process: the group
commit's batches and rows since launch, per writer.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._features import _observe
from .._features._queue_overview import queue_overview
from ._state import admin_state, as_admin

__all__ = ["STEP_WINDOW_MS", "metrics_routes"]

STEP_WINDOW_MS = 15 * 60_000
_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


def _family(name: str, kind: str, help_text: str, samples: Iterable[str]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]


async def metrics(request: Request) -> Response:
    """The metrics, in Prometheus's text exposition format."""
    counts = await as_admin(request, _observe.workflow_counts)
    queues = await as_admin(request, queue_overview)
    since = int(time.time() * 1000) - STEP_WINDOW_MS
    timings = await as_admin(request, lambda: _observe.recent_step_timings(since))
    lines = _family(
        "dbos_workflows",
        "gauge",
        "Workflows recorded in the system database, by status.",
        (f"dbos_workflows{_labels(status=s)} {n}" for s, n in sorted(counts.items())),
    )
    depth: list[str] = []
    for q in queues:
        for status, n in (("ENQUEUED", q.enqueued), ("DELAYED", q.delayed), ("PENDING", q.running)):
            depth.append(f"dbos_queue_workflows{_labels(queue=q.name, status=status)} {n}")
    lines += _family(
        "dbos_queue_workflows", "gauge", "Unfinished workflows on each queue, by status.", depth
    )
    steps: list[str] = []
    for t in timings:
        name = t.function_name
        for quantile, ms in (("0.5", t.p50_ms), ("0.9", t.p90_ms), ("0.99", t.p99_ms)):
            labels = _labels(function_name=name, quantile=quantile)
            steps.append(f"dbos_step_duration_seconds{labels} {ms / 1000:.6f}")
        steps.append(
            f"dbos_step_duration_seconds_sum{_labels(function_name=name)} {t.total_ms / 1000:.6f}"
        )
        steps.append(f"dbos_step_duration_seconds_count{_labels(function_name=name)} {t.steps}")
    lines += _family(
        "dbos_step_duration_seconds",
        "summary",
        "Durations of the steps of the workflows created in the last 15 minutes.",
        steps,
    )
    engine = admin_state(request).engine
    if engine is not None:
        batches: list[str] = []
        for writer, (flushes, rows) in sorted(engine.checkpoint_batches().items()):
            batches.append(f"dbos_checkpoint_batch_rows_sum{_labels(writer=writer)} {rows}")
            batches.append(f"dbos_checkpoint_batch_rows_count{_labels(writer=writer)} {flushes}")
        lines += _family(
            "dbos_checkpoint_batch_rows",
            "summary",
            "Rows per group-committed batch written by this process since launch, per writer.",
            batches,
        )
    return Response("\n".join(lines) + "\n", media_type=_CONTENT_TYPE)


def metrics_routes() -> list[Route]:
    """The ``/metrics`` route."""
    return [Route("/metrics", metrics)]

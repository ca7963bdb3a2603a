"""``dbos-async queue ...``: each queue's settings and depth, and the workflows on one."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .._core._status import WorkflowStatusString
from .._features._queue_overview import QueueOverview
from ._output import print_json, print_table
from ._target import with_client
from ._workflows import WORKFLOW_COLUMNS, JsonOption, workflow_rows

__all__ = ["app"]

app = typer.Typer(help="See queues: their settings, depth and workflows.", no_args_is_help=True)


def _limits(queue: QueueOverview) -> str:
    settings = queue.settings
    parts = []
    for key, label in (("concurrency", "global"), ("worker_concurrency", "worker")):
        if settings.get(key) is not None:
            parts.append(f"{label} {settings[key]}")
    if settings.get("rate_limit_max") is not None:
        parts.append(f"{settings['rate_limit_max']}/{settings['rate_limit_period_sec']}s")
    if settings.get("priority_enabled"):
        parts.append("priority")
    if settings.get("partition_queue"):
        parts.append("partitioned")
    return ", ".join(parts)


def _by_executor(queue: QueueOverview) -> str:
    return ", ".join(f"{executor or '?'}: {n}" for executor, n in queue.running_by_executor.items())


@app.command("list")
def list_queues(ctx: typer.Context, json: JsonOption = False) -> None:
    """List every queue (registered, declared in code, or holding work): settings, how many
    workflows are enqueued, delayed and running, and running by executor."""
    queues = with_client(ctx, lambda client: client.queue_overview_async())
    if json:
        print_json(queues)
        return
    rows: list[list[Any]] = [
        [
            q.name,
            q.source,
            _limits(q),
            q.enqueued,
            q.delayed,
            q.running,
            _by_executor(q),
        ]
        for q in queues
    ]
    columns = ["Queue", "Source", "Limits", "Enqueued", "Delayed", "Running", "By executor"]
    print_table("Queues", columns, rows)


@app.command("workflows")
def queue_workflows(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The queue's name.", show_default=False)],
    status: Annotated[
        list[WorkflowStatusString] | None,
        typer.Option("--status", "-S", help="Only this status (default: not finished)."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-l", min=0, help="At most this many.")] = 100,
    json: JsonOption = False,
) -> None:
    """List the workflows on a queue, in queue order (oldest first)."""
    workflows = with_client(
        ctx,
        lambda client: client.list_queued_workflows_async(
            queue_name=name,
            status=[str(s) for s in status] if status else None,
            limit=limit,
            load_input=json,
            load_output=json,
        ),
    )
    if json:
        print_json(workflows)
    else:
        print_table(f"Workflows on {name}", WORKFLOW_COLUMNS, workflow_rows(workflows))

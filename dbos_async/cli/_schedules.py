"""``dbos-async schedule ...``: list, pause, resume, trigger and backfill cron schedules."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from .._facade._client import DBOSClient
from ._output import print_json, print_table
from ._target import with_client
from ._workflows import JsonOption, iso_time

__all__ = ["app"]

app = typer.Typer(help="See and steer cron schedules.", no_args_is_help=True)

ScheduleName = Annotated[str, typer.Argument(help="The schedule's name.", show_default=False)]


@app.command("list")
def list_schedules(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", "-S", help="ACTIVE or PAUSED.")] = None,
    workflow: Annotated[
        str | None, typer.Option("--workflow", "-w", help="Workflow function name.")
    ] = None,
    json: JsonOption = False,
) -> None:
    """List the schedules: name, cron, workflow, status, last run."""
    schedules = with_client(
        ctx, lambda client: client.list_schedules_async(status=status, workflow_name=workflow)
    )
    if json:
        print_json(schedules)
        return
    rows = [
        [
            s["schedule_name"],
            s["schedule"],
            s["workflow_name"],
            s["status"],
            s["queue_name"],
            s["last_fired_at"],
        ]
        for s in schedules
    ]
    columns = ["Schedule", "Cron", "Workflow", "Status", "Queue", "Last fired"]
    print_table("Schedules", columns, rows)


@app.command("pause")
def pause_schedule(ctx: typer.Context, name: ScheduleName) -> None:
    """Stop firing a schedule until it is resumed."""
    with_client(ctx, lambda client: client.pause_schedule_async(name))
    typer.echo(f"Paused {name}")


@app.command("resume")
def resume_schedule(ctx: typer.Context, name: ScheduleName) -> None:
    """Fire a paused schedule again."""
    with_client(ctx, lambda client: client.resume_schedule_async(name))
    typer.echo(f"Resumed {name}")


async def _trigger(client: DBOSClient, name: str) -> str:
    return (await client.trigger_schedule_async(name)).workflow_id


@app.command("trigger")
def trigger_schedule(ctx: typer.Context, name: ScheduleName, json: JsonOption = False) -> None:
    """Run a schedule's workflow once, now; print its workflow ID."""
    workflow_id = with_client(ctx, lambda client: _trigger(client, name))
    if json:
        print_json({"workflow_id": workflow_id})
    else:
        typer.echo(workflow_id)


async def _backfill(client: DBOSClient, name: str, start: str, end: str) -> list[str]:
    handles = await client.backfill_schedule_async(
        name, datetime.fromisoformat(start), datetime.fromisoformat(end)
    )
    return [handle.workflow_id for handle in handles]


@app.command("backfill")
def backfill_schedule(
    ctx: typer.Context,
    name: ScheduleName,
    start: Annotated[
        str,
        typer.Option("--start", callback=iso_time, help="From this time, excluded (ISO, UTC)."),
    ],
    end: Annotated[
        str, typer.Option("--end", callback=iso_time, help="Until this time, excluded (ISO, UTC).")
    ],
    json: JsonOption = False,
) -> None:
    """Run every tick of a schedule between --start and --end that has not run yet; print the
    workflow IDs."""
    ids = with_client(ctx, lambda client: _backfill(client, name, start, end))
    if json:
        print_json({"workflow_ids": ids})
    else:
        for workflow_id in ids:
            typer.echo(workflow_id)

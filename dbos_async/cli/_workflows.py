"""``dbos-async workflow ...``: list, inspect, cancel, resume, delete and fork workflows."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from .._core._errors import DBOSNonExistentWorkflowError
from .._core._status import StepInfo, WorkflowStatus, WorkflowStatusString
from .._facade._client import DBOSClient
from ._output import duration_ms, local_time, print_json, print_pairs, print_table, short
from ._target import with_client

__all__ = ["WORKFLOW_COLUMNS", "JsonOption", "app", "iso_time", "workflow_rows"]

app = typer.Typer(help="List, inspect and steer workflows.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (times in epoch ms).")]
WorkflowID = Annotated[str, typer.Argument(help="The workflow's ID.", show_default=False)]


def iso_time(value: str | None) -> str | None:
    """Check an ISO-8601 time option (a usage error otherwise)."""
    if value is not None:
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise typer.BadParameter(f"not an ISO-8601 time: {value!r}") from None
    return value


def workflow_rows(workflows: list[WorkflowStatus]) -> list[list[Any]]:
    """Table rows for a workflow listing."""
    return [
        [
            w.workflow_id,
            w.name,
            w.status,
            w.queue_name,
            local_time(w.created_at),
            local_time(w.updated_at),
            w.executor_id,
        ]
        for w in workflows
    ]


WORKFLOW_COLUMNS = ["ID", "Name", "Status", "Queue", "Created", "Updated", "Executor"]


@app.command("list")
def list_workflows(
    ctx: typer.Context,
    status: Annotated[
        list[WorkflowStatusString] | None,
        typer.Option("--status", "-S", help="Only this status (repeat for several)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Workflow function name.")
    ] = None,
    queue: Annotated[str | None, typer.Option("--queue", "-q", help="Queue name.")] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Authenticated user.")] = None,
    app_version: Annotated[
        str | None, typer.Option("--app-version", "-v", help="Application version.")
    ] = None,
    start_time: Annotated[
        str | None,
        typer.Option("--start-time", "-t", callback=iso_time, help="Created at or after (ISO)."),
    ] = None,
    end_time: Annotated[
        str | None,
        typer.Option("--end-time", "-e", callback=iso_time, help="Created at or before (ISO)."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-l", min=0, help="At most this many.")] = 10,
    offset: Annotated[int, typer.Option("--offset", "-o", min=0, help="Skip this many.")] = 0,
    oldest_first: Annotated[
        bool, typer.Option("--oldest-first", help="Oldest first (default: newest first).")
    ] = False,
    json: JsonOption = False,
) -> None:
    """List workflows, newest first."""
    workflows = with_client(
        ctx,
        lambda client: client.list_workflows_async(
            status=[str(s) for s in status] if status else None,
            name=name,
            queue_name=queue,
            user=user,
            app_version=app_version,
            start_time=start_time,
            end_time=end_time,
            limit=limit,
            offset=offset,
            sort_desc=not oldest_first,
            load_input=json,
            load_output=json,
        ),
    )
    if json:
        print_json(workflows)
    else:
        print_table("Workflows", WORKFLOW_COLUMNS, workflow_rows(workflows))


async def _status(client: DBOSClient, workflow_id: str, *, load: bool = True) -> WorkflowStatus:
    found = await client.list_workflows_async(
        workflow_ids=[workflow_id], load_input=load, load_output=load
    )
    if not found:
        raise DBOSNonExistentWorkflowError(workflow_id)
    return found[0]


@app.command("get")
def get_workflow(ctx: typer.Context, workflow_id: WorkflowID, json: JsonOption = False) -> None:
    """Show a workflow's status, inputs and outcome."""
    status = with_client(ctx, lambda client: _status(client, workflow_id))
    if json:
        print_json(status)
        return
    print_pairs(
        f"Workflow {status.workflow_id}",
        [
            ("Name", status.name),
            ("Status", status.status),
            ("Queue", status.queue_name),
            ("Created", local_time(status.created_at)),
            ("Updated", local_time(status.updated_at)),
            ("Executor", status.executor_id),
            ("App version", status.app_version),
            ("User", status.authenticated_user),
            ("Parent", status.parent_workflow_id),
            ("Forked from", status.forked_from),
            ("Recovery attempts", status.recovery_attempts),
            ("Input", short(status.input, 200)),
            ("Output", short(status.output, 200)),
            ("Error", short(status.error, 200)),
        ],
    )


async def _steps(client: DBOSClient, workflow_id: str) -> list[StepInfo]:
    await _status(client, workflow_id, load=False)
    return await client.list_workflow_steps_async(workflow_id)


@app.command("steps")
def list_steps(ctx: typer.Context, workflow_id: WorkflowID, json: JsonOption = False) -> None:
    """List a workflow's steps: function ID, name, duration, output or error, child workflow."""
    steps = with_client(ctx, lambda client: _steps(client, workflow_id))
    if json:
        print_json(
            [
                {
                    **step,
                    "duration_ms": duration_ms(
                        step["started_at_epoch_ms"], step["completed_at_epoch_ms"]
                    ),
                }
                for step in steps
            ]
        )
        return
    rows = [
        [
            step["function_id"],
            step["function_name"],
            duration_ms(step["started_at_epoch_ms"], step["completed_at_epoch_ms"]),
            short(step["error"]) if step["error"] is not None else short(step["output"]),
            step["child_workflow_id"],
        ]
        for step in steps
    ]
    print_table(f"Steps of {workflow_id}", ["ID", "Name", "ms", "Output or error", "Child"], rows)


@app.command("cancel")
def cancel_workflow(ctx: typer.Context, workflow_id: WorkflowID) -> None:
    """Cancel a workflow wherever it runs (unless it finished)."""
    with_client(ctx, lambda client: client.cancel_workflow_async(workflow_id))
    typer.echo(f"Cancelled {workflow_id}")


async def _resume(client: DBOSClient, workflow_id: str) -> None:
    await client.resume_workflow_async(workflow_id)


@app.command("resume")
def resume_workflow(ctx: typer.Context, workflow_id: WorkflowID) -> None:
    """Run a cancelled or stuck workflow again from its last recorded step."""
    with_client(ctx, lambda client: _resume(client, workflow_id))
    typer.echo(f"Resumed {workflow_id}")


async def _delete(client: DBOSClient, workflow_id: str, children: bool) -> None:
    await _status(client, workflow_id, load=False)
    await client.delete_workflow_async(workflow_id, delete_children=children)


@app.command("delete")
def delete_workflow(
    ctx: typer.Context,
    workflow_id: WorkflowID,
    children: Annotated[
        bool, typer.Option("--children", help="Delete the workflows it started too.")
    ] = False,
) -> None:
    """Delete a workflow and everything recorded for it."""
    with_client(ctx, lambda client: _delete(client, workflow_id, children))
    typer.echo(f"Deleted {workflow_id}")


async def _fork(
    client: DBOSClient, workflow_id: str, step: int, version: str | None, queue: str | None
) -> str:
    await _status(client, workflow_id, load=False)
    handle = await client.fork_workflow_async(
        workflow_id, step, application_version=version, queue_name=queue
    )
    return handle.workflow_id


@app.command("fork")
def fork_workflow(
    ctx: typer.Context,
    workflow_id: WorkflowID,
    step: Annotated[
        int, typer.Option("--step", "-S", min=1, help="Run again from this step (1: all).")
    ] = 1,
    app_version: Annotated[
        str | None, typer.Option("--app-version", "-v", help="Run on this application version.")
    ] = None,
    queue: Annotated[
        str | None, typer.Option("--queue", "-q", help="Enqueue the copy on this queue.")
    ] = None,
    json: JsonOption = False,
) -> None:
    """Start a copy of a workflow that replays its steps before --step and runs the rest."""
    forked = with_client(ctx, lambda client: _fork(client, workflow_id, step, app_version, queue))
    if json:
        print_json({"workflow_id": forked, "forked_from": workflow_id})
    else:
        typer.echo(forked)

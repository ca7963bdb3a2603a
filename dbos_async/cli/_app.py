"""The ``dbos-async`` root command: global options, and every command group under it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from typing import Annotated

import typer

from ._dashboard import dashboard
from ._database import migrate, reset
from ._maintenance import gc, timeout
from ._postgres import app as postgres_app
from ._queues import app as queue_app
from ._schedules import app as schedule_app
from ._target import ReportingGroup, Target
from ._workflows import app as workflow_app

__all__ = ["app"]

app = typer.Typer(
    cls=ReportingGroup,
    help="Inspect and steer dbos_async workflows, queues and schedules in a system database.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def options(
    ctx: typer.Context,
    system_database_url: Annotated[
        str | None,
        typer.Option(
            "--system-database-url",
            "-s",
            envvar="DBOS_SYSTEM_DATABASE_URL",
            help="The system database (default: the running `dbos-async postgres` server).",
            show_default=False,
        ),
    ] = None,
    schema: Annotated[
        str, typer.Option("--schema", help="The schema of DBOS's tables in it.")
    ] = "dbos",
) -> None:
    """Inspect and steer dbos_async workflows, queues and schedules in a system database.

    Every listing and `get` takes --json (times as epoch milliseconds). Exit codes: 0 done,
    1 the operation failed (one line on stderr), 2 bad usage.
    """
    ctx.obj = Target(system_database_url, schema)


@app.command("version")
def version() -> None:
    """Print the installed dbos_async version."""
    try:
        typer.echo(installed_version("dbos_async"))
    except PackageNotFoundError:
        typer.echo("unknown (dbos_async is not installed as a package)")


app.command("migrate")(migrate)
app.command("reset")(reset)
app.command("gc")(gc)
app.command("timeout")(timeout)
app.command("dashboard")(dashboard)
app.add_typer(workflow_app, name="workflow")
app.add_typer(queue_app, name="queue")
app.add_typer(schedule_app, name="schedule")
app.add_typer(postgres_app, name="postgres")

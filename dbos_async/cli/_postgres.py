"""``dbos-async postgres start|stop|url``: the embedded Postgres, kept running for development."""

from __future__ import annotations

from typing import Annotated

import typer

from .._core._errors import DBOSInitializationError
from .._embedded import DEFAULT_DATA_DIR
from ._embedded_server import running_system_url, start_server, stop_server

__all__ = ["app"]

app = typer.Typer(
    help="Run the embedded Postgres (the library's default server) for development.",
    no_args_is_help=True,
)

DataDir = Annotated[
    str, typer.Option("--data-dir", help="The server's data folder (the library's default).")
]


@app.command("start")
def start(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Start the embedded Postgres (kept running until `postgres stop`); print the system
    database URL to use (DBOS_SYSTEM_DATABASE_URL)."""
    typer.echo(start_server(data_dir))


@app.command("stop")
def stop(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    force: Annotated[
        bool, typer.Option("--force", help="Stop it even while applications use it.")
    ] = False,
) -> None:
    """Stop the embedded Postgres (once the applications using it exit, unless --force)."""
    others = stop_server(data_dir, force=force)
    if others < 0:
        typer.echo("The embedded Postgres is not running")
    elif others and not force:
        typer.echo(f"The embedded Postgres stops when the {others} process(es) using it exit")
    else:
        typer.echo("Stopped the embedded Postgres")


@app.command("url")
def url(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Print the system database URL of the running embedded Postgres."""
    found = running_system_url(data_dir)
    if found is None:
        raise DBOSInitializationError(
            "The embedded Postgres is not running: start it with `dbos-async postgres start`"
        )
    typer.echo(found)

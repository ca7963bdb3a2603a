"""``dbos-async migrate`` and ``dbos-async reset``: create, upgrade or recreate the system
database (and a datasource's transaction outputs table)."""

from __future__ import annotations

from typing import Annotated

import typer

from .._core._errors import DBOSException, DBOSInitializationError
from .._sysdb import drop_database, migrate_database
from .._sysdb._urls import redact
from ._target import run_quietly, system_url, target

__all__ = ["migrate", "reset"]

_RETRY_SECONDS = 5.0  # a command waits this long for a server that is starting


def migrate(
    ctx: typer.Context,
    app_db: Annotated[
        str | None,
        typer.Option(
            "--app-db",
            help="Also create the transaction outputs table of a datasource in this database.",
            show_default=False,
        ),
    ] = None,
    app_role: Annotated[
        str | None,
        typer.Option("--app-role", help="Grant this role what the application needs."),
    ] = None,
) -> None:
    """Create or upgrade the system database's schema."""
    url, schema = system_url(ctx), target(ctx).schema
    run_quietly(
        migrate_database(url, schema=schema, application_role=app_role, retry_limit=_RETRY_SECONDS)
    )
    typer.echo(f"Migrated the system database at {redact(url)}")
    if app_db is not None:
        from .._features._datasource_sync import SQLAlchemyDatasource

        try:
            SQLAlchemyDatasource.migrate(app_db, schema=schema, application_role=app_role)
        except DBOSException:
            raise
        except Exception as error:  # SQLAlchemy's and psycopg's own errors
            raise DBOSInitializationError(
                f"Cannot migrate the application database at {redact(app_db)}: {error}"
            ) from error
        typer.echo(f"Migrated the transaction outputs table at {redact(app_db)}")


def reset(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Drop the system database, with every workflow recorded in it, and create it again."""
    url, schema = system_url(ctx), target(ctx).schema
    if not yes:
        typer.confirm(f"Drop every workflow recorded at {redact(url)}?", abort=True)

    async def run() -> None:
        await drop_database(url)
        await migrate_database(url, schema=schema, retry_limit=_RETRY_SECONDS)

    run_quietly(run())
    typer.echo(f"Reset the system database at {redact(url)}")

"""Where a command acts (the system database and its schema), and running it there with a
:class:`DBOSClient`, turning failures into one-line errors and exit code 1."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import typer
from typer.core import TyperGroup

from .._core._errors import DBOSException, DBOSInitializationError
from .._embedded import DEFAULT_DATA_DIR
from .._facade._client import DBOSClient
from ._embedded_server import running_system_url

__all__ = [
    "ReportingGroup",
    "Target",
    "quiet_logs",
    "run_quietly",
    "system_url",
    "target",
    "with_client",
]

T = TypeVar("T")

_FAILURES = (DBOSException, asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


@dataclass(frozen=True, slots=True)
class Target:
    """The global options: the system database URL (None: the development server's) and the
    schema of DBOS's tables in it."""

    url: str | None
    schema: str


class ReportingGroup(TyperGroup):
    """The root command: a failed operation prints one line on stderr and exits 1."""

    def invoke(self, ctx: Any) -> Any:  # a click Context: typer's own copy of click or click
        """Run the command; report a failure (not a bug) without a traceback."""
        try:
            return super().invoke(ctx)
        except _FAILURES as error:
            message = " ".join(str(error).split()) or type(error).__name__
            typer.echo(f"Error: {message}", err=True)
            raise typer.Exit(1) from None


def target(ctx: typer.Context) -> Target:
    """The global options of this invocation."""
    found = ctx.find_root().obj
    assert isinstance(found, Target)
    return found


def system_url(ctx: typer.Context) -> str:
    """The system database URL: the option or ``DBOS_SYSTEM_DATABASE_URL``, else that of the
    development server when it runs (``dbos-async postgres start``)."""
    url = target(ctx).url
    if url:
        return url
    running = running_system_url(DEFAULT_DATA_DIR)
    if running is not None:
        return running
    raise DBOSInitializationError(
        "No system database: pass --system-database-url, set DBOS_SYSTEM_DATABASE_URL, or "
        "start the development server with `dbos-async postgres start`"
    )


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Keep the library's warnings (a retried connection, ...) off the terminal: a command
    reports its own failure in one line."""
    logger = logging.getLogger("dbos_async")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_quietly(work: Awaitable[T]) -> T:
    """Run a coroutine to completion on a fresh event loop, without the library's warnings."""

    async def run() -> T:
        return await work

    with quiet_logs():
        return asyncio.run(run())


def with_client(ctx: typer.Context, work: Callable[[DBOSClient], Awaitable[T]]) -> T:
    """Run ``work`` with a client on the system database (checked to hold DBOS's tables)."""
    url, schema = system_url(ctx), target(ctx).schema

    async def run() -> T:
        client = DBOSClient(
            url, dbos_system_schema=schema, lazy=True, retry_connection_errors=False
        )
        try:
            await client.check_connection_async()
            return await work(client)
        finally:
            await client.destroy_async()

    return run_quietly(run())

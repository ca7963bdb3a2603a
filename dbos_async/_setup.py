"""Setting up a process: where its system database is, how it logs, and one-off calls.

With no URL configured, the system database lives on the embedded Postgres (started on first
use; see ``_embedded``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._core._config import ResolvedConfig
from ._core._errors import DBOSInvalidArgumentError
from ._embedded import embedded_database_url
from ._sysdb import drop_database, migrate_database, truncate_database
from ._sysdb._urls import database_name, normalize_url, with_database

__all__ = [
    "configure_logging",
    "embedded_system_url",
    "reset_system_database",
    "run_dbos_database_migrations",
    "run_detached",
    "system_database_url",
]

T = TypeVar("T")


def run_detached(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh loop in its own thread (no runtime needed)."""
    result: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=target, name="dbos-async-oneshot")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


async def system_database_url(config: ResolvedConfig) -> str:
    """The configured system database URL; else, beside a configured application database,
    ``<its name>_dbos_sys`` on the same server; else a database on the embedded Postgres."""
    if config.system_database_url is not None:
        return config.system_database_url
    if config.application_database_url is not None:
        app_url = normalize_url(config.application_database_url)
        return with_database(app_url, database_name(app_url) + "_dbos_sys")
    return embedded_system_url(await asyncio.to_thread(embedded_database_url))


def embedded_system_url(server_url: str) -> str:
    """The system database (``dbos_async_sys``) on the embedded server at ``server_url``."""
    prefix, _, query = server_url.partition("?")
    base = prefix.rsplit("/", 1)[0]
    return f"{base}/dbos_async_sys" + (f"?{query}" if query else "")


def configure_logging(level: str) -> None:
    """Log ``dbos_async`` at ``level``; to stderr unless the application configured logging."""
    package_logger = logging.getLogger("dbos_async")
    package_logger.setLevel(level)
    if not package_logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s [%(levelname)s] dbos_async: %(message)s")
        )
        package_logger.addHandler(handler)


async def reset_system_database(
    config: ResolvedConfig, *, url: str | None = None, schema: str | None = None, truncate: bool
) -> None:
    """Drop the system database (``url``, else the configured one), or with ``truncate`` empty
    the tables of its schema (``schema``, else the configured one) and keep it migrated."""
    url = url if url is not None else await system_database_url(config)
    if truncate:
        await truncate_database(url, schema if schema is not None else config.schema)
    else:
        await drop_database(url)


def run_dbos_database_migrations(
    system_database_url: str,
    *,
    schema: str = "dbos",
    application_role: str | None = None,
    sharding: bool = False,
) -> None:
    """Create or upgrade a system database ahead of deployment (as a privileged role); with
    ``application_role``, grant that role what the application needs on the schema."""
    if sharding:
        raise DBOSInvalidArgumentError("Sharded system databases are not supported by dbos_async")
    run_detached(
        migrate_database(system_database_url, schema=schema, application_role=application_role)
    )

"""Making a datasource's SQLAlchemy engine, and migrating its outputs table from sync code."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._core._errors import DBOSInvalidArgumentError
from .._sysdb._app_outputs import OutputsTable
from ._transactions import missing_extra

if TYPE_CHECKING:
    from sqlalchemy import URL, Engine

__all__ = ["engine_kwargs_with_defaults", "migrate_outputs", "psycopg_engine", "sqlalchemy_url"]

_DEFAULT_ENGINE_KWARGS = {"pool_size": 20, "max_overflow": 0}


def sqlalchemy_url(database_url: str, driver: str) -> URL:
    """``database_url`` (any ``postgresql[+driver]://`` URL) as a SQLAlchemy URL for ``driver``."""
    import sqlalchemy

    try:
        url = sqlalchemy.make_url(database_url)
    except Exception as error:
        raise DBOSInvalidArgumentError(f"Invalid database URL: {error}") from None
    if url.get_backend_name() not in ("postgresql", "postgres"):
        raise DBOSInvalidArgumentError(
            f"A datasource needs a postgresql:// URL, got {url.get_backend_name()!r}"
        )
    return url.set(drivername=f"postgresql+{driver}")


def engine_kwargs_with_defaults(engine_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """The engine's keyword arguments: a pool of 20 connections unless told otherwise."""
    if engine_kwargs is not None and not isinstance(engine_kwargs, dict):
        raise DBOSInvalidArgumentError(f"engine_kwargs must be a dict, got {engine_kwargs!r}")
    return {**_DEFAULT_ENGINE_KWARGS, **(engine_kwargs or {})}


def psycopg_engine(database_url: str, engine_kwargs: dict[str, Any] | None) -> Engine:
    """A sync SQLAlchemy engine over psycopg for ``database_url``."""
    try:
        import psycopg  # noqa: F401 - the driver the engine needs
        from sqlalchemy import create_engine
    except ImportError:
        raise missing_extra("SQLAlchemyDatasource") from None
    return create_engine(
        sqlalchemy_url(database_url, "psycopg"), **engine_kwargs_with_defaults(engine_kwargs)
    )


def migrate_outputs(database_url: str, schema: str | None, application_role: str | None) -> None:
    """Create or upgrade the outputs table in ``database_url``; with ``application_role``, let
    that role use it."""
    engine = psycopg_engine(database_url, {"pool_size": 1})
    try:
        table = OutputsTable(schema or "dbos")
        with engine.begin() as conn:
            table.migrate_sync(conn)
            if application_role is not None:
                table.grant_sync(conn, application_role)
    finally:
        engine.dispose()

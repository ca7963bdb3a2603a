"""Shared fixtures: a real Postgres for every test, and a launched DBOS runtime.

The databases come from the package's own pytest plugin (``dbos_async.testing``), as in a
user's project: the server is ``DBOS_TEST_DATABASE_URL`` (any database on it; tests create
their own), else the embedded Postgres; each test module gets a fresh database cloned from a
migrated template, and every test starts from empty tables. ``dbos`` and ``dbos_sync`` launch
on the plugin's ``dbos_clock``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from dbos_async import DBOS
from dbos_async.testing import Clock, TestDatabases


def server_url() -> str:
    """A URL of the test server's maintenance database."""
    url = os.environ.get("DBOS_TEST_DATABASE_URL")
    if url is None:
        from dbos_async._embedded import embedded_database_url

        url = embedded_database_url()
    return with_database(url, "postgres")


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name``."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _session_token() -> str:
    # Unique per pytest process, so concurrent sessions (and xdist workers) never collide.
    return f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}"


async def _drop(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _recreate(admin_url: str, name: str, template: str | None = None) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        suffix = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{suffix}')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def admin_url(dbos_server_url: str) -> str:
    """The maintenance database of the test server (the plugin's ``dbos_server_url``)."""
    return with_database(dbos_server_url, "postgres")


@pytest.fixture(scope="session")
def template_database(dbos_test_databases: TestDatabases) -> str:
    """The migrated, empty system database that test databases are cloned from (built once
    per session by the plugin)."""
    assert dbos_test_databases.template is not None
    return dbos_test_databases.template


@pytest.fixture
def database_url(dbos_database_url: str) -> str:
    """The module's system database, emptied for this test (the plugin's
    ``dbos_database_url``: a copy of the template per module, truncated per test)."""
    return dbos_database_url


def make_config(database_url: str, **overrides: Any) -> dict[str, Any]:
    """A test configuration on ``database_url``."""
    # A small pool: two test workers (and a developer's other sessions) share one server.
    return {
        "name": "test-app",
        "system_database_url": database_url,
        "sys_db_pool_size": 8,
        **overrides,
    }


@pytest.fixture
async def dbos(database_url: str, dbos_clock: Clock) -> AsyncIterator[type[DBOS]]:
    """DBOS launched on the test's event loop (``await DBOS.launch_async()``), on the test's
    clock (the plugin's ``dbos_clock``, which a test may freeze and advance)."""
    DBOS(config=make_config(database_url))
    await DBOS.launch_async()
    try:
        yield DBOS
    finally:
        await DBOS.destroy_async()


@pytest.fixture
def dbos_sync(database_url: str, dbos_clock: Clock) -> Iterator[type[DBOS]]:
    """DBOS launched from sync code, on its background loop thread (``DBOS.launch()``)."""
    DBOS(config=make_config(database_url))
    DBOS.launch()
    try:
        yield DBOS
    finally:
        DBOS.destroy()


@pytest.fixture(scope="module")
def span_exporter() -> Iterator[Any]:
    """Spans finished in this process, from the OpenTelemetry SDK (set once per process)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()

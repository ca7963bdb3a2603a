"""Shared fixtures: a real Postgres for every test, and a launched DBOS runtime.

The server comes from ``DBOS_TEST_DATABASE_URL`` (any database on it; tests create their own),
else the embedded Postgres. Each test module gets a fresh database cloned from a migrated
template, and every test starts from empty tables.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from dbos_async import DBOS
from dbos_async._sysdb import connect_database
from dbos_async.testing import Clock

TEMPLATE_PREFIX = "dbos_async_tpl"


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
def admin_url() -> str:
    """The maintenance database of the test server."""
    return server_url()


@pytest.fixture(scope="session")
def template_database(admin_url: str) -> Iterator[str]:
    """A migrated, empty system database that test databases are cloned from."""
    name = f"{TEMPLATE_PREFIX}_{_session_token()}"

    async def build() -> None:
        await _recreate(admin_url, name)
        db = await connect_database(with_database(admin_url, name))
        await db.close()

    asyncio.run(build())
    yield name
    asyncio.run(_drop(admin_url, name))


@pytest.fixture(scope="module")
def module_database_url(
    request: pytest.FixtureRequest, admin_url: str, template_database: str
) -> Iterator[str]:
    """A fresh system database for this test module."""
    digest = hashlib.sha1(request.module.__name__.encode()).hexdigest()[:10]
    name = f"dbos_async_t_{_session_token()}_{digest}"
    asyncio.run(_recreate(admin_url, name, template_database))
    yield with_database(admin_url, name)
    asyncio.run(_drop(admin_url, name))


@pytest.fixture
def database_url(module_database_url: str) -> str:
    """The module's system database, emptied for this test."""

    async def truncate() -> None:
        conn = await asyncpg.connect(module_database_url)
        try:
            await conn.execute(
                "TRUNCATE dbos.workflow_status, dbos.operation_outputs, dbos.executors, dbos.queues, "
                "dbos.application_versions, dbos.workflow_schedules CASCADE"
            )
        finally:
            await conn.close()

    asyncio.run(truncate())
    return module_database_url


@pytest.fixture
def dbos_database_url(database_url: str) -> str:
    """The plugin's fixtures (``dbos_client``, ``dbos_config``) use this module's database too."""
    return database_url


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

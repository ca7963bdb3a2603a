"""The engine: assembles a runtime with the parts that serve it, and starts and stops them.

Starting opens the system database (waiting for it, up to the retry limit) and the notify hub,
records this executor's first heartbeat, recovers the workflows this executor left unfinished,
then starts the dispatcher, the scheduler and the heartbeat. Stopping runs the other way round;
workflows still running stay PENDING, to be recovered.

This is the one module that knows every part; the parts know only the :class:`Runtime`.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import asyncpg

from ._core._config import ResolvedConfig
from ._core._registry import Registry
from ._core._runtime import Runtime
from ._features._app_database import AppDatabase
from ._features._dispatcher import Dispatcher
from ._features._enqueue import INTERNAL_QUEUE
from ._features._heartbeat import Heartbeat
from ._features._queue import Queue
from ._features._queue_store import settings_to_columns
from ._features._recovery import recover_pending
from ._features._scheduler import Scheduler
from ._features._versions import VersionWatch, record_launch_version
from ._sysdb import Database, Notifier, connect_database
from ._sysdb._declarations import declare_names
from ._sysdb._messages import (
    keys_with_events,
    keys_with_messages,
    publish_notifications,
    terminal_among,
)
from ._sysdb._notify import (
    CANCEL,
    EVENTS,
    MESSAGES,
    QUEUE_SETTINGS,
    QUEUES,
    SCHEDULES,
    VERSIONS,
    WORKFLOW_DONE,
)
from ._sysdb._queues import release_slots_of

__all__ = ["Engine"]

logger = logging.getLogger("dbos_async")

_LISTEN_CONNECT_SECONDS = 10.0
# Work on the internal queue is announced by notifications; this re-check is the safety net.
_INTERNAL_QUEUE_POLL_SECONDS = 5.0


class Engine:
    """A launched dbos_async: the :class:`Runtime` and its dispatcher, scheduler and heartbeat."""

    safety_poll_seconds: float = 30.0
    """How often a waiter re-reads the database even without a notification."""

    def __init__(
        self, config: ResolvedConfig, registry: Registry, listening: list[str] | None = None
    ) -> None:
        self.runtime = Runtime(config, registry)
        self._listening = set(listening) if listening is not None else None
        self._starters: list[Dispatcher | Scheduler] = []  # what starts new work
        self._heartbeat: Heartbeat | None = None
        self._admin: Any = None  # dbos_async.admin.AdminServer, with run_admin_server

    async def start(self, url: str) -> None:
        """Open the database and the notify hub, recover pending workflows, start serving."""
        runtime = self.runtime
        config = runtime.config
        db = await connect_database(
            url,
            schema=config.schema,
            pool_size=config.pool_size,
            retry_limit=config.retry_limit,
            clock=runtime.clock,
        )
        notifier = self._notifier(db)
        runtime.open(db, notifier)
        await notifier.start()
        if config.application_database_url is not None:
            app_database = AppDatabase(config.application_database_url, config.db_engine_kwargs)
            await app_database.open()
            runtime.app_database = app_database
        if INTERNAL_QUEUE not in runtime.registry.queues:
            Queue(INTERNAL_QUEUE, polling_interval_sec=_INTERNAL_QUEUE_POLL_SECONDS)
        dispatcher = Dispatcher(runtime, self._listening)
        runtime.dispatcher = dispatcher
        notifier.on(QUEUES, dispatcher.on_notification)
        notifier.on(QUEUE_SETTINGS, dispatcher.on_settings_changed)
        notifier.on_sweep(dispatcher.reload_all)
        await dispatcher.reload_all()
        await self._declare(db)
        await record_launch_version(runtime)
        versions = VersionWatch(runtime)
        notifier.on(VERSIONS, versions.on_notification)
        notifier.on_sweep(versions.sweep)
        await versions.refresh()
        logger.info(
            "dbos_async launched: executor %s, application version %s",
            runtime.executor_id,
            runtime.application_version,
        )
        # Alive before recovering, so that no other process adopts what this one recovers.
        heartbeat = Heartbeat(runtime)
        await heartbeat.beat()
        await recover_pending(runtime)
        # Slots kept by cancelled workflows whose code ran in this executor's last life.
        await release_slots_of(db, [runtime.executor_id])
        scheduler = Scheduler(runtime)
        notifier.on(SCHEDULES, scheduler.on_changed)
        notifier.on_sweep(scheduler.reload_all)
        self._starters = [dispatcher, scheduler]
        self._heartbeat = heartbeat
        for part in (*self._starters, heartbeat):
            part.start()
        if config.run_admin_server:
            await self._serve_admin(url)

    async def _serve_admin(self, url: str) -> None:
        """Serve the admin API and dashboard on this loop (``run_admin_server``)."""
        from ._facade._client import DBOSClient

        # The admin layer sits above the engine (it is built on DBOSClient): loaded by name,
        # like a plugin, and only when asked for, since it needs the admin extra.
        admin = importlib.import_module("dbos_async.admin")
        config = self.runtime.config
        client = DBOSClient(
            url,
            dbos_system_schema=config.schema,
            serializer=config.serializer,
            application_name=self.runtime.application_name,
            lazy=True,
        )
        server = admin.AdminServer.for_engine(
            client, self, config.admin_host, config.admin_port, config.admin_token
        )
        await server.start()
        self._admin = server

    @property
    def admin_port(self) -> int | None:
        """The port the admin server listens on (None: not serving)."""
        return None if self._admin is None else int(self._admin.port)

    async def recover_executors(self, executor_ids: list[str]) -> None:
        """Take over the PENDING work of these executors (this one's resumes here)."""
        own = self.runtime.executor_id
        others = [e for e in executor_ids if e != own]
        if others and self._heartbeat is not None:
            await self._heartbeat.adopt(others)
        if own in executor_ids:
            await recover_pending(self.runtime)

    async def deactivate(self) -> None:
        """Stop starting new work here (the dispatcher and the scheduler)."""
        for part in self._starters:
            await part.stop()

    def checkpoint_batches(self) -> dict[str, tuple[int, int]]:
        """Per group-commit writer: ``(batches, rows)`` committed since launch."""
        return self.runtime.db.group_stats()

    async def _declare(self, db: Database) -> None:
        """Record the workflows and queues this process declares in code, for clients."""
        runtime = self.runtime
        registry = runtime.registry
        queues = {
            name: settings_to_columns(queue.settings)
            for name, queue in registry.queues.items()
            if name != INTERNAL_QUEUE
        }
        owner = runtime.application_name or runtime.config.name
        await declare_names(db, owner, sorted(registry.workflows), queues)

    def _notifier(self, db: Database) -> Notifier:
        runtime = self.runtime
        notifier = Notifier(
            lambda: asyncpg.connect(
                db.url,
                timeout=_LISTEN_CONNECT_SECONDS,
                server_settings={"application_name": "dbos_async"},
            ),
            lambda channel, payloads: publish_notifications(db, channel, payloads),
            sweep_seconds=self.safety_poll_seconds,
        )
        notifier.add_checker(WORKFLOW_DONE, lambda ids: terminal_among(db, ids))
        notifier.add_checker(MESSAGES, lambda keys: keys_with_messages(db, keys))
        notifier.add_checker(EVENTS, lambda keys: keys_with_events(db, keys))
        notifier.on(CANCEL, runtime.cancel_notified)
        notifier.on_sweep(runtime.cancel_lost_cancellations)
        return notifier

    async def stop(self, workflow_completion_timeout_sec: float = 0) -> None:
        """Stop serving and the workflows running here (they stay PENDING), and close.

        With ``workflow_completion_timeout_sec``, stop starting work first (dispatcher and
        scheduler) and give the workflows running here up to that long to finish.
        """
        if self._admin is not None:
            await self._admin.stop()
            self._admin = None
        for part in self._starters:
            await part.stop()
        if workflow_completion_timeout_sec > 0:
            await self.runtime.wait_for_workflows(workflow_completion_timeout_sec)
        if self._heartbeat is not None:  # beating until here, or others would adopt them
            await self._heartbeat.stop()
        await self.runtime.stop_workflows()
        if self.runtime.app_database is not None:
            await self.runtime.app_database.close()
        await self.runtime.close()

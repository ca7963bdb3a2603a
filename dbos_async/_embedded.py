"""The embedded Postgres (pgserver) used when no database URL is configured.

One server runs per data folder and is shared by every process that calls
:func:`embedded_database_url` on it. pgserver keeps the pids of those processes in
``<data_dir>/.handle_pids.json`` (under an inter-process file lock) and its ``atexit`` hook
stops the server (``pg_ctl stop``) when the last one exits. A process killed without running
``atexit`` (SIGKILL, default SIGTERM, ``os._exit``) would leave its pid behind and keep the
server up forever, so dead pids are dropped from that list on every start and before every
exit. When running as root, pgserver runs Postgres as a system user ``pgserver`` (created
with ``useradd`` if missing), owning the data folder.
"""

from __future__ import annotations

import atexit
import importlib
import os
import threading
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dbos_async._core._errors import DBOSInitializationError

__all__ = ["DEFAULT_DATA_DIR", "embedded_database_url"]

DEFAULT_DATA_DIR = ".dbos_async/pgdata"  # relative to the working directory

_PIDS_FILE = ".handle_pids.json"  # pgserver's list of the processes using a server
_lock = threading.Lock()
_urls: dict[Path, tuple[int, str]] = {}  # resolved data dir -> (owning pid, URL)


def _import_pgserver() -> Any:
    """Import pgserver, or explain how to get it."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (as for root in containers).
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError as exc:
        raise DBOSInitializationError(
            "No database URL is configured and the embedded Postgres is not installed: "
            'run `pip install "dbos_async[embedded]"`, or set DBOS_SYSTEM_DATABASE_URL '
            "(or pass system_database_url) to use your own Postgres server"
        ) from exc
    return pgserver


def _prune_dead_pids(pgserver: Any, pgdata: Path) -> None:
    """Drop the pids of processes that died without running pgserver's ``atexit`` cleanup."""
    psutil: Any = importlib.import_module("psutil")  # a dependency of pgserver; untyped

    def alive(pid: int) -> bool:
        try:
            return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            return False

    pids = pgserver.utils.DiskList(pgdata / _PIDS_FILE)
    with pgserver.PostgresServer._lock:
        old: list[int] = pids.get()
        new = [pid for pid in old if alive(pid)]
        if new != old:
            pids.put(new)


def _start(pgserver: Any, pgdata: Path) -> str:
    """Start or join the server in ``pgdata`` and build an asyncpg-friendly URL for it."""
    server_cls = pgserver.PostgresServer
    # A forked child inherits the parent's handle; drop it so the child registers its own pid.
    server_cls._instances.pop(pgdata, None)
    if os.name == "posix" and os.geteuid() == 0:
        # pgserver creates its system user before taking its lock: do it under the lock so
        # that two processes starting together don't both run `useradd`.
        with server_cls._lock:
            pgserver.utils.ensure_user_exists("pgserver")
    if (pgdata / _PIDS_FILE).exists():
        _prune_dead_pids(pgserver, pgdata)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    # atexit runs last-registered first: prune just before pgserver's own cleanup decides.
    atexit.register(_prune_dead_pids, pgserver, pgdata)
    info = server.get_postmaster_info()
    if info.socket_dir is not None:
        host = quote(str(info.socket_dir), safe="/")
        return f"postgresql://postgres@/postgres?host={host}&port={info.port}"
    return f"postgresql://postgres@{info.hostname}:{info.port}/postgres"


def embedded_database_url(data_dir: str | os.PathLike[str] | None = None) -> str:
    """Start (or join) the embedded Postgres in data_dir and return a postgresql:// URL asyncpg can connect to.

    ``data_dir`` defaults to :data:`DEFAULT_DATA_DIR` under the working directory and is
    created if missing. The URL connects over a Unix socket with the trusted superuser
    ``postgres``, e.g. ``postgresql://postgres@/postgres?host=/abs/data/dir&port=5432``;
    replace the path segment (``/postgres``) to reach another database. Repeated calls for
    the same folder in one process return the cached URL. The server stops when the last
    process using it exits. This call blocks (a cold start runs ``initdb``): from async code
    run it in a thread.
    """
    pgdata = Path(DEFAULT_DATA_DIR if data_dir is None else data_dir).expanduser().resolve()
    with _lock:
        cached = _urls.get(pgdata)
        if cached is not None and cached[0] == os.getpid():
            return cached[1]
        pgserver = _import_pgserver()
        try:
            pgdata.parent.mkdir(parents=True, exist_ok=True)
            url = _start(pgserver, pgdata)
        except Exception as exc:
            raise DBOSInitializationError(
                f"Could not start the embedded Postgres in {pgdata}: {exc!r} "
                f"(server log: {pgdata / 'log'})"
            ) from exc
        _urls[pgdata] = (os.getpid(), url)
        return url

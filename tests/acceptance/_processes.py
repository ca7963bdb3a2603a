"""Running app scripts (``apps/*.py``) as child processes for acceptance tests.

A child is started with ``sys.executable``; its stdout is read line by line (apps announce
their progress with lines such as ``READY ...`` and ``RESULT ...``) and its stderr goes to a
file that failure messages quote. Every wait is bounded, and :class:`Children` kills and
reaps whatever still runs when the test ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from types import TracebackType

import pytest

APPS = Path(__file__).resolve().parent / "apps"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 20.0
"""The longest any single wait on a child may take before the test fails."""


def child_env(database_url: str, **extra: str) -> dict[str, str]:
    """This process's environment without DBOS's own variables, plus ``APP_DB_URL`` and ``extra``."""
    env = dict(os.environ)
    for key in ("DBOS__VMID", "DBOS__APPVERSION", "DBOS_SYSTEM_DATABASE_URL"):
        env.pop(key, None)
    # The project root on the path: apps import their shared helpers as ``tests.acceptance...``.
    env.update(APP_DB_URL=database_url, PYTHONUNBUFFERED="1", PYTHONPATH=str(PROJECT_ROOT), **extra)
    return env


def _read_text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


class Child:
    """One run of an app script, its stdout read line by line, its stderr kept in a file."""

    def __init__(self, proc: asyncio.subprocess.Process, stderr_path: Path) -> None:
        self.proc = proc
        self.stderr_path = stderr_path
        self.lines: list[str] = []

    @property
    def stderr(self) -> str:
        """What the child wrote to stderr so far."""
        return _read_text(self.stderr_path)

    def describe(self) -> str:
        return (
            f"pid {self.proc.pid}, returncode {self.proc.returncode}\n"
            f"stdout so far: {self.lines!r}\nstderr:\n{self.stderr}"
        )

    async def read_until(self, prefix: str, seconds: float = WAIT_SECONDS) -> str:
        """The rest of the first stdout line starting with ``prefix``; fail on EOF or timeout."""
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(seconds):
                while True:
                    raw = await self.proc.stdout.readline()
                    if not raw:
                        await self.proc.wait()
                        pytest.fail(f"child exited before printing {prefix!r}: {self.describe()}")
                    line = raw.decode().rstrip("\n")
                    self.lines.append(line)
                    if line.startswith(prefix):
                        return line[len(prefix) :]
        except TimeoutError:
            pytest.fail(f"no {prefix!r} line within {seconds}s: {self.describe()}")

    async def sigkill(self) -> None:
        """SIGKILL the child and reap it."""
        os.kill(self.proc.pid, signal.SIGKILL)
        async with asyncio.timeout(WAIT_SECONDS):
            await self.proc.wait()
        assert self.proc.returncode == -signal.SIGKILL, self.describe()

    async def exit_code(self) -> int:
        """Wait (bounded) for the child to exit on its own; its return code."""
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                rest = await self.proc.stdout.read()
                self.lines.extend(rest.decode().splitlines())
                return await self.proc.wait()
        except TimeoutError:
            pytest.fail(f"child did not exit within {WAIT_SECONDS}s: {self.describe()}")

    async def reap(self) -> None:
        """Kill the child if it still runs, and wait for it (for ``finally`` blocks)."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


class Children:
    """Spawns app scripts; on exit from ``async with``, kills and reaps those still running."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp_path = tmp_path
        self._children: list[Child] = []

    async def spawn(self, script: str, *args: str, env: dict[str, str]) -> Child:
        """Start ``python apps/<script> <args...>`` with ``env``."""
        return await self._start(Path(script).stem, str(APPS / script), *args, env=env)

    async def spawn_module(self, module: str, *args: str, env: dict[str, str]) -> Child:
        """Start ``python -m <module> <args...>`` (a server such as uvicorn or gunicorn) with
        ``env``, in the project root (so ``tests.acceptance.apps.<app>`` imports)."""
        return await self._start(module, "-m", module, *args, env=env)

    async def _start(self, name: str, *argv: str, env: dict[str, str]) -> Child:
        stderr_path = self._tmp_path / f"{name}-{len(self._children)}.stderr"
        with stderr_path.open("wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env=env,
                cwd=PROJECT_ROOT,
            )
        child = Child(proc, stderr_path)
        self._children.append(child)
        return child

    async def __aenter__(self) -> Children:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for child in self._children:
            await child.reap()

"""The chaos app's processes: started, read line by line as they run, killed, stopped, judged.

Each :class:`AppProcess` wraps an acceptance-test :class:`~tests.acceptance._processes.Child`
(the process, its stderr file, ``reap``) and reads its stdout continuously in a task: ``STEP``
lines become progress timestamps, ``READY`` sets an event. Whether the process ended as
expected (SIGKILL when the harness killed it, 0 otherwise) and what its stderr says decide its
errors.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from ..acceptance._processes import PROJECT_ROOT, Child, child_env

APP = Path(__file__).resolve().with_name("worker_app.py")
ERROR_MARKERS = ("Traceback (most recent call last)", "Task exception was never retrieved")
"""A stderr line containing one of these is a worker error."""


class AppProcess:
    """One process of the chaos app (a worker under one executor ID, or the enqueuer)."""

    def __init__(self, executor_id: str, child: Child) -> None:
        self.executor_id = executor_id
        self.child = child
        self.ready = asyncio.Event()
        self.step_times: list[float] = []
        """``time.monotonic()`` when each ``STEP`` line arrived, in order."""
        self.killed_at: float | None = None
        """When the harness SIGKILLed it (``time.monotonic()``)."""
        self.expected_exit: int | None = None
        """The exit code the harness expects: -SIGKILL once killed, 0 once sent SIGTERM."""
        self._reader = asyncio.create_task(self._read())

    @property
    def pid(self) -> int:
        return self.child.proc.pid

    @property
    def running(self) -> bool:
        """Not exited yet (as far as its stdout tells: EOF means it exited)."""
        return not self._reader.done()

    async def _read(self) -> None:
        stdout = self.child.proc.stdout
        assert stdout is not None
        while raw := await stdout.readline():
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith("STEP "):
                self.step_times.append(time.monotonic())
                continue
            self.child.lines.append(line)
            if line.startswith("READY"):
                self.ready.set()
        await self.child.proc.wait()

    async def exited(self, seconds: float) -> int | None:
        """Wait up to ``seconds`` for the process to exit; its exit code, or None if it still runs."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await asyncio.shield(self._reader)
        return self.child.proc.returncode

    async def sigkill(self, seconds: float) -> None:
        """SIGKILL it and wait (bounded) until it is gone."""
        self.killed_at = time.monotonic()
        self.expected_exit = -signal.SIGKILL
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        await self.exited(seconds)

    async def terminate(self, seconds: float) -> None:
        """SIGTERM it and wait (bounded) for its clean exit; SIGKILL it if that does not come."""
        self.expected_exit = 0
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        if await self.exited(seconds) is None:
            await self.child.reap()

    def first_step_after(self, moment: float) -> float | None:
        """When its first ``STEP`` line at or after ``moment`` arrived, if one did."""
        index = bisect.bisect_left(self.step_times, moment)
        return self.step_times[index] if index < len(self.step_times) else None

    def errors(self) -> list[str]:
        """What went wrong with this process: an unexpected exit, error lines on stderr."""
        found = []
        code = self.child.proc.returncode
        if code != self.expected_exit:
            found.append(
                f"{self.executor_id} (pid {self.pid}): exited with {code}, expected "
                f"{self.expected_exit} (stderr in {self.child.stderr_path})"
            )
        for error in error_lines(self.child.stderr):
            found.append(f"{self.executor_id} (pid {self.pid}): {error}")
        return found

    async def reap(self) -> None:
        """Kill it if it still runs and wait for it and its reader (for ``finally`` blocks)."""
        await self.child.reap()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await asyncio.shield(self._reader)
        self._reader.cancel()


def error_lines(stderr: str) -> list[str]:
    """One ``message -> exception`` line per traceback or unretrieved task exception on
    ``stderr``: the message logged with it, and the exception line that ends it."""
    lines = stderr.splitlines()
    found = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not any(marker in line for marker in ERROR_MARKERS):
            index += 1
            continue
        message = line if ERROR_MARKERS[1] in line else lines[index - 1] if index else ""
        end = _traceback_end(lines, index)
        found.append(f"{message.strip()} -> {lines[end].strip() if end < len(lines) else ''}")
        index = end + 1
    return found


def _traceback_end(lines: list[str], start: int) -> int:
    """The index of the exception line that ends the traceback at (or just after) ``start``."""
    in_traceback = False
    for index in range(start, len(lines)):
        line = lines[index]
        if ERROR_MARKERS[0] in line:
            in_traceback = True
        elif in_traceback and line and not line[0].isspace():
            following = next((later for later in lines[index + 1 :] if later.strip()), "")
            if not following.startswith(("During handling", "The above exception")):
                return index
            in_traceback = False  # a chained exception: its traceback follows
    return len(lines)


async def spawn(mode: str, executor_id: str, stderr_path: Path, **env: str) -> AppProcess:
    """Start ``python worker_app.py <mode>`` as ``executor_id`` with ``CHAOS_*`` settings ``env``."""
    environment = child_env(env["CHAOS_DB_URL"], CHAOS_EXECUTOR_ID=executor_id, **env)
    with stderr_path.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(APP),
            mode,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=environment,
            cwd=PROJECT_ROOT,
        )
    return AppProcess(executor_id, Child(proc, stderr_path))

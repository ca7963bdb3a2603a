"""Stopping a background task: the stopper can itself be given up on."""

from __future__ import annotations

import asyncio

import pytest

from dbos_async._sysdb._supervisor import cancel_and_wait


async def test_a_caller_stopping_a_task_can_be_cancelled_while_it_waits() -> None:
    """A task slow to end (its cleanup awaits): the caller stopping it under a deadline gets
    its TimeoutError (the cancellation aimed at the caller was swallowed, and it waited on)."""
    cleanup = asyncio.Event()
    cleaning = asyncio.Event()

    async def slow_to_end() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cleaning.set()
            await cleanup.wait()
            raise

    task = asyncio.ensure_future(slow_to_end())
    await asyncio.sleep(0)  # (it runs up to its wait)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await cancel_and_wait(task)
    assert cleaning.is_set()
    cleanup.set()
    await asyncio.wait_for(cancel_and_wait(task), 5)
    assert task.cancelled()

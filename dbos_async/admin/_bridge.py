"""How the admin app reaches a :class:`DBOSClient`'s scope and notify hub.

The engine's features are coroutine functions that find their runtime in the current context;
a client runs them in its own (see ``_facade/_client.py``). This module is the one place the
admin app uses the client's internals for that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .._facade._client import DBOSClient
from .._sysdb import Notifier

__all__ = ["as_client", "client_notifier"]

T = TypeVar("T")


async def as_client(client: DBOSClient, call: Callable[[], Awaitable[T]]) -> T:
    """Run ``call`` (an engine feature) under ``client``'s scope."""
    return await client._run(call)


async def client_notifier(client: DBOSClient) -> tuple[Notifier, asyncio.AbstractEventLoop]:
    """The client's notify hub (listening) and the event loop it runs on."""
    runtime = await client._opened()
    await runtime.forward(runtime.notifier.start())
    return runtime.notifier, runtime.loop

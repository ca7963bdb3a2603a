"""The ``DBOS`` façade's communication: messages, events, durable sleep and waiting, streams."""

from __future__ import annotations

from typing import Any

from .._core._portable import SerializationType, WorkflowSerializationFormat
from .._features._messaging import (
    asyncio_wait,
    get_all_events,
    get_event,
    recv,
    send,
    send_bulk,
    set_event_value,
    sleep,
)
from .._features._streams import (
    close_stream,
    read_stream_async,
    read_stream_offset,
    read_stream_sync,
    write_stream_value,
)
from ._base import FacadeBase, blocking

__all__ = ["CommunicationAPI"]


class CommunicationAPI(FacadeBase):
    """``send``/``recv``, events, durable ``sleep`` and ``asyncio_wait``, streams."""

    send_async = staticmethod(send)
    send = staticmethod(blocking("send", send))
    send_bulk_async = staticmethod(send_bulk)
    send_bulk = staticmethod(blocking("send_bulk", send_bulk))
    recv_async = staticmethod(recv)
    set_event_async = staticmethod(set_event_value)
    get_event_async = staticmethod(get_event)
    get_all_events_async = staticmethod(get_all_events)
    sleep_async = staticmethod(sleep)
    asyncio_wait = staticmethod(asyncio_wait)
    write_stream_async = staticmethod(write_stream_value)
    close_stream_async = staticmethod(close_stream)
    read_stream_async = staticmethod(read_stream_async)
    read_stream = staticmethod(read_stream_sync)
    read_stream_offset_async = staticmethod(read_stream_offset)
    read_stream_offset = staticmethod(blocking("read_stream_offset", read_stream_offset))

    @classmethod
    def recv(cls, topic: str | None = None, timeout_seconds: float = 60) -> Any:
        """Receive the oldest message of ``topic`` sent to this workflow, or None on timeout."""
        return cls._block(lambda: recv(topic, timeout_seconds), "recv")

    @classmethod
    def set_event(
        cls,
        key: str,
        value: Any,
        *,
        serialization_type: SerializationType = WorkflowSerializationFormat.DEFAULT,
    ) -> None:
        """Set this workflow's event ``key`` to ``value`` (last value wins); ``serialization_type``
        as for ``set_event_async``."""
        cls._block(
            lambda: set_event_value(key, value, serialization_type=serialization_type),
            "set_event",
        )

    @classmethod
    def get_event(cls, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """The value of a workflow's event ``key``, waiting up to the timeout (then None)."""
        return cls._block(lambda: get_event(workflow_id, key, timeout_seconds), "get_event")

    @classmethod
    def get_all_events(cls, workflow_id: str) -> dict[str, Any]:
        """Every event of a workflow, as ``{key: value}``."""
        return cls._block(lambda: get_all_events(workflow_id), "get_all_events")

    @classmethod
    def sleep(cls, seconds: float) -> None:
        """Sleep durably inside a workflow: recovery sleeps only what is left."""
        cls._block(lambda: sleep(seconds), "sleep")

    @classmethod
    def write_stream(
        cls,
        key: str,
        value: Any,
        *,
        serialization_type: SerializationType = WorkflowSerializationFormat.DEFAULT,
    ) -> None:
        """Append ``value`` to this workflow's stream ``key``; ``serialization_type`` as for
        ``write_stream_async``."""
        cls._block(
            lambda: write_stream_value(key, value, serialization_type=serialization_type),
            "write_stream",
        )

    @classmethod
    def close_stream(cls, key: str) -> None:
        """Close this workflow's stream ``key``."""
        cls._block(lambda: close_stream(key), "close_stream")

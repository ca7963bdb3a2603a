"""Messages, events and durable sleep: ``send``/``recv``, ``set_event``/``get_event``, ``sleep``.

Each public function is a plain function that reserves its function IDs when *called* (so
``asyncio.gather`` replays deterministically) and returns the coroutine that does the work on
the engine's loop. Waiting is event-driven: a waiter subscribes to the notify hub, then reads
the database, and reads again after every wake-up.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from .._core._context import WorkflowContext, current_step, current_workflow, runtime_here
from .._core._errors import (
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
    DBOSNotInWorkflowError,
    DBOSWorkflowConflictIDError,
)
from .._core._portable import SerializationType, WorkflowSerializationFormat, format_name
from .._core._runtime import Runtime
from .._core._sync import awaited
from .._core._tracing import traced_operation
from .._core._validation import check_id, check_number
from .._sysdb._messages import (
    NULL_TOPIC,
    consume_message,
    events_of,
    insert_message,
    read_event,
    set_event,
    take_message,
)
from .._sysdb._notify import EVENTS, MESSAGES
from .._sysdb._sends import OutgoingMessage, insert_messages
from .._sysdb._workflows import insert_step_output
from ._step import NOT_RECORDED, checkpointed, ensure_not_cancelled, refusal, replay_recorded

T = TypeVar("T")

__all__ = [
    "SendMessage",
    "outgoing_messages",
    "asyncio_wait",
    "durable_deadline",
    "record_value",
    "get_all_events",
    "get_event",
    "recv",
    "require_workflow",
    "send",
    "send_bulk",
    "set_event_value",
    "sleep",
    "value_format",
    "wake",
]


def require_workflow(operation: str) -> WorkflowContext:
    """The running workflow (outside any step), or :class:`DBOSNotInWorkflowError`."""
    ctx = current_workflow()
    if ctx is None or current_step() is not None:
        raise DBOSNotInWorkflowError(operation)
    return ctx


def _validate_topic(topic: object) -> str:
    if topic is None:
        return NULL_TOPIC
    if not isinstance(topic, str):
        raise DBOSInvalidArgumentError(f"A topic must be a string or None, got {topic!r}")
    return topic


def value_format(serialization_type: object) -> str | None:
    """The format a value sent, set or written is recorded in: the one ``serialization_type``
    asks for, else (inside a workflow) the workflow's own, else the configured one (None).

    Raises :class:`DBOSInvalidArgumentError` for an unknown ``serialization_type``.
    """
    fmt = format_name(serialization_type)
    if fmt is None:
        ctx = current_workflow()
        fmt = ctx.serialization if ctx is not None else None
    return fmt


def wake(runtime: Runtime, channel: str, workflow_id: str, key: str, *, remote: bool) -> None:
    """Wake waiters for ``workflow_id::key``: here at once, and elsewhere through NOTIFY."""
    payload = f"{workflow_id}::{key}"
    runtime.notifier.notify_local(channel, payload)
    if remote:
        runtime.notifier.publish(channel, payload)


async def durable_deadline(ctx: WorkflowContext, function_id: int, seconds: float) -> float:
    """The wake-up time recorded at ``function_id`` (recording ``now + seconds`` the first time).

    A recovered workflow keeps the original deadline, so a timeout or sleep is not restarted.
    """
    recorded = replay_recorded(ctx, function_id, "DBOS.sleep")
    if recorded is not NOT_RECORDED:
        return float(recorded)
    runtime = ctx.runtime
    wake_at = runtime.clock.now() + seconds
    if not await insert_step_output(
        runtime.db,
        ctx.workflow_id,
        function_id,
        "DBOS.sleep",
        owner=runtime.executor_id,
        output=runtime.codec.dumps(wake_at),
        error=None,
        serialization=runtime.codec.name,
    ):
        raise await refusal(ctx)
    return wake_at


async def record_value(ctx: WorkflowContext, function_id: int, name: str, value: Any) -> None:
    """Record ``value`` as the output of the operation ``name`` at ``function_id``."""
    runtime = ctx.runtime
    if not await insert_step_output(
        runtime.db,
        ctx.workflow_id,
        function_id,
        name,
        owner=runtime.executor_id,
        output=runtime.codec.dumps(value),
        error=None,
        serialization=runtime.codec.name,
    ):
        raise await refusal(ctx)


# Messages ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendMessage:
    """One message of a :func:`send_bulk`: its destination, value, topic and idempotency key.

    ``shard_key`` is accepted for DBOS's API; a dbos_async system database is not sharded.
    """

    destination_id: str
    message: Any
    topic: str | None = None
    idempotency_key: str | None = None
    shard_key: str | None = None


def send(
    destination_id: str,
    message: Any,
    topic: str | None = None,
    idempotency_key: str | None = None,
    *,
    serialization_type: SerializationType = WorkflowSerializationFormat.DEFAULT,
    send_to_forks: bool = False,
    shard_key: str | None = None,
) -> Coroutine[Any, Any, None]:
    """Send ``message`` to a workflow; inside a workflow the send is a checkpointed step.

    ``serialization_type=WorkflowSerializationFormat.PORTABLE`` stores it as portable JSON
    (the default inside a portable workflow). With ``send_to_forks`` every workflow forked
    from the destination (and from its forks) gets it too. ``shard_key`` is accepted for
    DBOS's API (the system database is not sharded).
    """
    fmt = value_format(serialization_type)
    if send_to_forks:
        single = [SendMessage(destination_id, message, topic, idempotency_key)]
        return _send_many(single, to_forks=True, operation="DBOS.send", fmt=fmt)
    check_id("destination_id", destination_id)
    topic_key = _validate_topic(topic)
    if idempotency_key is not None:
        check_id("idempotency_key", idempotency_key)
    runtime = runtime_here()
    payload = runtime.codec.dumps(message, fmt)  # an unserializable message fails before any write
    ctx = current_workflow() if current_step() is None else None
    function_id = ctx.reserve_function_id() if ctx is not None else None

    async def run() -> None:
        sender = None
        if ctx is not None and function_id is not None:
            if replay_recorded(ctx, function_id, "DBOS.send") is not NOT_RECORDED:
                return
            ensure_not_cancelled(ctx)
            sender = (ctx.workflow_id, function_id, runtime.executor_id)
            message_uuid = f"{ctx.workflow_id}-{function_id}"
        elif idempotency_key is not None:
            message_uuid = f"{idempotency_key}::{destination_id}"
        else:
            message_uuid = str(uuid.uuid4())
        try:
            recorded = await insert_message(
                runtime.db,
                destination_id,
                topic_key,
                payload,
                runtime.codec.name_of(fmt),
                message_uuid,
                sender=sender,
            )
        except asyncpg.ForeignKeyViolationError:
            raise DBOSNonExistentWorkflowError(destination_id) from None
        if not recorded and ctx is not None:
            raise await refusal(ctx)
        wake(
            runtime,
            MESSAGES,
            destination_id,
            topic_key,
            remote=destination_id not in runtime.active,
        )

    return runtime.forward(traced_operation("send", ctx, run()))


def send_bulk(
    messages: list[SendMessage],
    *,
    serialization_type: SerializationType = WorkflowSerializationFormat.DEFAULT,
    send_to_forks: bool = False,
) -> Coroutine[Any, Any, None]:
    """Send many messages in one statement (one checkpointed step inside a workflow): all of
    them, or none when a destination does not exist (:class:`DBOSNonExistentWorkflowError`).

    ``serialization_type`` as for :func:`send`. With ``send_to_forks`` every workflow forked
    from a destination gets its message too.
    """
    fmt = value_format(serialization_type)
    if not isinstance(messages, (list, tuple)) or not messages:
        raise DBOSInvalidArgumentError("send_bulk needs a non-empty list of SendMessage")
    return _send_many(
        list(messages), to_forks=bool(send_to_forks), operation="DBOS.send_bulk", fmt=fmt
    )


def _check_messages(messages: list[SendMessage]) -> None:
    keys: set[str] = set()
    for message in messages:
        if not isinstance(message, SendMessage):
            raise DBOSInvalidArgumentError(f"Expected a SendMessage, got {message!r}")
        check_id("destination_id", message.destination_id)
        _validate_topic(message.topic)
        if message.idempotency_key is not None:
            if check_id("idempotency_key", message.idempotency_key) in keys:
                raise DBOSInvalidArgumentError(
                    f"Idempotency key {message.idempotency_key!r} is used twice in one send"
                )
            keys.add(message.idempotency_key)


def _uuid_outside_workflow(message: SendMessage) -> str:
    """A message's ID when no workflow sends it: its idempotency key makes it the same on a
    retry."""
    if message.idempotency_key is not None:
        return f"{message.idempotency_key}::{message.destination_id}"
    return str(uuid.uuid4())


def _outgoing(
    runtime: Runtime,
    messages: list[SendMessage],
    payloads: list[bytes],
    fmt: str | None,
    uuid_of: Callable[[int, SendMessage], str],
) -> list[OutgoingMessage]:
    return [
        OutgoingMessage(
            uuid_of(index, m),
            m.destination_id,
            _validate_topic(m.topic),
            payload,
            runtime.codec.name_of(fmt),
        )
        for index, (m, payload) in enumerate(zip(messages, payloads, strict=True))
    ]


def outgoing_messages(
    messages: list[SendMessage],
    serialization_type: SerializationType = WorkflowSerializationFormat.DEFAULT,
) -> list[OutgoingMessage]:
    """``messages`` checked and serialized, to be written outside any workflow (a client's
    send in the caller's own transaction)."""
    fmt = value_format(serialization_type)
    if not isinstance(messages, (list, tuple)) or not messages:
        raise DBOSInvalidArgumentError("Sending needs a non-empty list of SendMessage")
    messages = list(messages)
    _check_messages(messages)
    runtime = runtime_here()
    payloads = [runtime.codec.dumps(m.message, fmt) for m in messages]
    return _outgoing(runtime, messages, payloads, fmt, lambda _, m: _uuid_outside_workflow(m))


def _send_many(
    messages: list[SendMessage], *, to_forks: bool, operation: str, fmt: str | None
) -> Coroutine[Any, Any, None]:
    _check_messages(messages)
    runtime = runtime_here()
    payloads = [runtime.codec.dumps(m.message, fmt) for m in messages]  # before any write
    ctx = current_workflow() if current_step() is None else None
    function_id = ctx.reserve_function_id() if ctx is not None else None

    def uuid_of(index: int, message: SendMessage) -> str:
        if ctx is not None:
            return f"{ctx.workflow_id}-{function_id}-{index}"
        return _uuid_outside_workflow(message)

    async def run() -> None:
        sender = None
        if ctx is not None and function_id is not None:
            if replay_recorded(ctx, function_id, operation) is not NOT_RECORDED:
                return
            ensure_not_cancelled(ctx)
            sender = (ctx.workflow_id, function_id, runtime.executor_id)
        outgoing = _outgoing(runtime, messages, payloads, fmt, uuid_of)
        missing, recorded, delivered = await insert_messages(
            runtime.db, outgoing, to_forks=to_forks, sender=sender, step_name=operation
        )
        if missing:
            raise DBOSNonExistentWorkflowError(missing[0])
        if not recorded and ctx is not None:
            raise await refusal(ctx)
        for key in delivered:
            workflow_id, _, topic_key = key.partition("::")
            wake(
                runtime, MESSAGES, workflow_id, topic_key, remote=workflow_id not in runtime.active
            )

    return runtime.forward(traced_operation(operation.removeprefix("DBOS."), ctx, run()))


def recv(topic: str | None = None, timeout_seconds: float = 60) -> Coroutine[Any, Any, Any]:
    """Receive the oldest message of ``topic`` sent to this workflow, or None after the timeout."""
    topic_key = _validate_topic(topic)
    seconds = check_number("timeout_seconds", timeout_seconds)
    ctx = require_workflow("DBOS.recv")
    function_id, timer_id = ctx.reserve_function_id(), ctx.reserve_function_id()

    async def run() -> Any:
        recorded = replay_recorded(ctx, function_id, "DBOS.recv")
        if recorded is not NOT_RECORDED:
            return recorded
        ensure_not_cancelled(ctx)
        runtime = ctx.runtime
        replayed_deadline = replay_recorded(ctx, timer_id, "DBOS.sleep")
        deadline = None if replayed_deadline is NOT_RECORDED else float(replayed_deadline)
        wake_at = runtime.clock.now() + seconds
        async with runtime.notifier.subscribe(MESSAGES, f"{ctx.workflow_id}::{topic_key}") as woken:
            while True:
                # The first read that finds nothing also records the durable timeout.
                timer = (
                    (timer_id, runtime.codec.dumps(wake_at), runtime.codec.name)
                    if deadline is None
                    else None
                )
                try:
                    if timer is None:  # woken: group-committed with other woken receivers
                        taken, timer_set = (
                            await take_message(
                                runtime.db,
                                ctx.workflow_id,
                                function_id,
                                topic_key,
                                owner=runtime.executor_id,
                            ),
                            False,
                        )
                    else:
                        taken, timer_set = await consume_message(
                            runtime.db,
                            ctx.workflow_id,
                            function_id,
                            topic_key,
                            owner=runtime.executor_id,
                            timer=timer,
                        )
                except asyncpg.UniqueViolationError:
                    raise DBOSWorkflowConflictIDError(ctx.workflow_id) from None
                if taken is not None:
                    return runtime.codec.loads(*taken)
                if deadline is None:
                    if not timer_set:
                        raise await refusal(ctx)
                    deadline = wake_at
                if not await woken.wait_until(runtime.clock, deadline):
                    break
        await record_value(ctx, function_id, "DBOS.recv", None)
        return None

    return ctx.runtime.forward(traced_operation("recv", ctx, run()))


# Events ------------------------------------------------------------------------------------


def set_event_value(
    key: str,
    value: Any,
    *,
    serialization_type: SerializationType = WorkflowSerializationFormat.DEFAULT,
) -> Coroutine[Any, Any, None]:
    """Set this workflow's event ``key`` to ``value`` (last value wins).

    ``serialization_type=WorkflowSerializationFormat.PORTABLE`` stores it as portable JSON
    (the default inside a portable workflow).
    """
    check_id("key", key)
    fmt = value_format(serialization_type)
    ctx = current_workflow()
    if ctx is None:
        raise DBOSNotInWorkflowError("DBOS.set_event")
    runtime = ctx.runtime
    payload = runtime.codec.dumps(value, fmt)
    step = current_step()
    function_id = step.step_id if step is not None else ctx.reserve_function_id()

    async def run() -> None:
        if step is None:
            if replay_recorded(ctx, function_id, "DBOS.setEvent") is not NOT_RECORDED:
                return
            ensure_not_cancelled(ctx)
        if not await set_event(
            runtime.db,
            ctx.workflow_id,
            function_id,
            key,
            payload,
            runtime.codec.name_of(fmt),
            as_step=step is None,
            owner=runtime.executor_id,
        ):
            raise await refusal(ctx)
        wake(runtime, EVENTS, ctx.workflow_id, key, remote=True)

    return runtime.forward(traced_operation("set_event", ctx, run()))


def get_event(workflow_id: str, key: str, timeout_seconds: float = 60) -> Coroutine[Any, Any, Any]:
    """The value of another workflow's event ``key``, waiting for it up to the timeout (then None)."""
    check_id("workflow_id", workflow_id)
    check_id("key", key)
    seconds = check_number("timeout_seconds", timeout_seconds)
    runtime = runtime_here()
    ctx = current_workflow() if current_step() is None else None
    ids = (ctx.reserve_function_id(), ctx.reserve_function_id()) if ctx is not None else None

    async def run() -> Any:
        if ctx is not None and ids is not None:
            recorded = replay_recorded(ctx, ids[0], "DBOS.getEvent")
            if recorded is not NOT_RECORDED:
                return recorded
            ensure_not_cancelled(ctx)
        async with runtime.notifier.subscribe(EVENTS, f"{workflow_id}::{key}") as woken:
            deadline: float | None = None
            value: Any = None
            while True:
                found = await read_event(runtime.db, workflow_id, key)
                if found is not None:
                    value = runtime.codec.loads(*found)
                    break
                if deadline is None:
                    deadline = (
                        await durable_deadline(ctx, ids[1], seconds)
                        if ctx is not None and ids is not None
                        else runtime.clock.now() + seconds
                    )
                if not await woken.wait_until(runtime.clock, deadline):
                    break
        if ctx is not None and ids is not None:
            await record_value(ctx, ids[0], "DBOS.getEvent", value)
        return value

    return runtime.forward(traced_operation("get_event", ctx, run()))


def get_all_events(workflow_id: str) -> Coroutine[Any, Any, dict[str, Any]]:
    """Every event of a workflow, as ``{key: value}``."""
    check_id("workflow_id", workflow_id)
    runtime = runtime_here()

    async def read() -> dict[str, Any]:
        rows = await events_of(runtime.db, workflow_id)
        return {row["key"]: runtime.codec.loads(row["value"], row["serialization"]) for row in rows}

    return awaited(checkpointed("DBOS.getAllEvents", lambda: runtime.forward(read())))


# Durable sleep -----------------------------------------------------------------------------


def sleep(seconds: float) -> Coroutine[Any, Any, None]:
    """Sleep durably: the wake-up time is recorded first, so recovery sleeps only what is left."""
    duration = check_number("seconds", seconds)
    ctx = require_workflow("DBOS.sleep")
    function_id = ctx.reserve_function_id()

    async def run() -> None:
        ensure_not_cancelled(ctx)
        wake_at = await durable_deadline(ctx, function_id, duration)
        await ctx.runtime.clock.sleep_until(wake_at)

    return ctx.runtime.forward(traced_operation("sleep", ctx, run()))


# Durable asyncio.wait ----------------------------------------------------------------------

_RETURN_WHEN = (asyncio.FIRST_COMPLETED, asyncio.FIRST_EXCEPTION, asyncio.ALL_COMPLETED)


def asyncio_wait(
    fs: Iterable[Awaitable[Any]],
    *,
    timeout: float | None = None,
    return_when: str = asyncio.ALL_COMPLETED,
) -> Coroutine[Any, Any, tuple[set[asyncio.Future[Any]], set[asyncio.Future[Any]]]]:
    """``asyncio.wait`` whose outcome a replay repeats: which of ``fs`` were done is recorded
    (the ``DBOS.asyncio_wait`` step), and a recovered workflow waits for exactly those.

    Outside a workflow it is plain ``asyncio.wait``. Returns ``(done, pending)``.
    """
    awaitables = list(fs)
    if not awaitables:
        raise DBOSInvalidArgumentError("asyncio_wait needs at least one awaitable")
    if return_when not in _RETURN_WHEN:
        raise DBOSInvalidArgumentError(f"Unknown return_when {return_when!r}")
    if timeout is not None:
        check_number("timeout", timeout)
    ctx = current_workflow() if current_step() is None else None
    function_id = ctx.reserve_function_id() if ctx is not None else None

    async def run() -> tuple[set[asyncio.Future[Any]], set[asyncio.Future[Any]]]:
        futures: list[asyncio.Future[Any]] = [asyncio.ensure_future(a) for a in awaitables]
        if ctx is None or function_id is None:
            done, pending = await asyncio.wait(futures, timeout=timeout, return_when=return_when)
            return done, pending
        recorded = replay_recorded(ctx, function_id, "DBOS.asyncio_wait")
        if recorded is NOT_RECORDED:
            ensure_not_cancelled(ctx)
            done, _ = await asyncio.wait(futures, timeout=timeout, return_when=return_when)
            recorded = [index for index, future in enumerate(futures) if future in done]
            await record_value(ctx, function_id, "DBOS.asyncio_wait", recorded)
        done_now = {futures[index] for index in recorded}
        if done_now:
            await asyncio.wait(done_now)  # on replay, the ones the first run saw done
        return done_now, set(futures) - done_now

    return run()

"""Where the engine keeps "who is running": context variables and the context managers users set.

A ``ContextVar`` is copied into every task and worker-thread call, so a step started with
``asyncio.gather`` or run on the worker pool sees its workflow. The workflow's own state (its
function-ID counter) is a shared mutable object, so IDs are assigned in program order at call
time, whichever task runs the step.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from ._errors import DBOSInvalidArgumentError, DBOSWorkflowCancelledError
from ._request import IDEMPOTENCY_KEY_HEADER, Request
from ._roles import Auth
from ._runtime import Runtime, current_runtime
from ._sync import awaited, ensure_not_in_loop, submit
from ._validation import check_id, check_json_object, check_number

if TYPE_CHECKING:
    from opentelemetry.context import Context as TraceContext

    from .._sysdb._workflows import StepOutput

__all__ = [
    "DBOSContextEnsure",
    "DBOSContextSetAuth",
    "SetWorkflowAttributes",
    "SetWorkflowID",
    "SetWorkflowTimeout",
    "StepStatus",
    "WorkflowContext",
    "block_on",
    "current_auth",
    "current_request",
    "request_scope",
    "set_authentication",
    "runtime_here",
    "current_step",
    "current_workflow",
    "isolated_context",
    "take_next_workflow_id",
    "AssignedWorkflowID",
    "WorkflowIDReusePolicy",
    "workflow_attributes",
    "workflow_timeout_override",
]

T = TypeVar("T")


@dataclass(slots=True)
class WorkflowContext:
    """The state of one executing workflow, shared by every task and thread running its code."""

    runtime: Runtime
    workflow_id: str
    name: str
    recorded: dict[int, StepOutput] = field(default_factory=dict)
    auth: Auth = field(default_factory=Auth)
    deadline_epoch_ms: int | None = None
    cancelled: bool = False
    queue_name: str | None = None
    request: Request | None = None
    trace_parent: TraceContext | None = None
    """The caller's trace context: the workflow's span is its child (None: tracing off)."""
    serialization: str | None = None
    """The format the workflow's row records (None: the configured one): its output and error
    are written in it, and so are the values it sends, sets and writes unless told otherwise."""
    blocking_calls: set[concurrent.futures.Future[Any]] | None = None
    """Calls of the workflow's sync code blocked on the loop (made by the first: few workflows
    have any)."""
    deferred_checkpoints: set[asyncio.Task[None]] | None = None
    """Checkpoints written in the background (an outcome already durable elsewhere): the
    workflow's own outcome waits for them (:func:`_step.settle_deferred`). Made by the first
    (few workflows have any)."""
    outcome_waiters: list[asyncio.Future[Any]] = field(default_factory=list)
    """Callers' futures for the outcome of the workflow's task, filled when it ends (one list
    for the contexts of all its runs in that task)."""
    _next_id: int = 1
    """The function ID the next operation takes (an int, not an ``itertools.count``: one
    object less for the garbage collector to walk per workflow in flight)."""

    def cancel_blocking_calls(self) -> None:
        """Release the workflow's sync code blocked on the loop."""
        for call in list(self.blocking_calls or ()):
            call.cancel()

    def reserve_function_id(self) -> int:
        """Take the next function ID (1-based), at the moment an operation is called."""
        function_id = self._next_id
        self._next_id = function_id + 1
        return function_id

    def peek_function_id(self) -> int:
        """The function ID the next operation will take, without taking it (``DBOS.patch``
        leaves an old execution's checkpoint to the code that recorded it)."""
        return self._next_id

    def defer(self, checkpoint: Coroutine[Any, Any, None]) -> None:
        """Write ``checkpoint`` in the background; a failure is kept for the settling."""
        task = asyncio.get_running_loop().create_task(checkpoint)
        if self.deferred_checkpoints is None:
            self.deferred_checkpoints = set()
        self.deferred_checkpoints.add(task)
        task.add_done_callback(self._checkpoint_done)

    def _checkpoint_done(self, task: asyncio.Task[None]) -> None:
        if self.deferred_checkpoints is not None and (task.cancelled() or task.exception() is None):
            self.deferred_checkpoints.discard(task)


@dataclass(slots=True)
class StepStatus:
    """What ``DBOS.step_status`` reports inside a step.

    (Not frozen, as DBOS's is not: one is made per step run, and a frozen one costs three
    times as much to make.)
    """

    step_id: int
    current_attempt: int | None
    max_attempts: int | None


_workflow: ContextVar[WorkflowContext | None] = ContextVar("dbos_workflow", default=None)
_step: ContextVar[StepStatus | None] = ContextVar("dbos_step", default=None)
_auth: ContextVar[Auth | None] = ContextVar("dbos_auth", default=None)


def current_workflow() -> WorkflowContext | None:
    """The workflow whose code is running here, or None."""
    return _workflow.get()


def current_step() -> StepStatus | None:
    """The step whose code is running here, or None."""
    return _step.get()


def current_auth() -> Auth:
    """The authentication in force: the workflow's, else the one set by DBOSContextSetAuth."""
    wf = _workflow.get()
    if wf is not None:
        return wf.auth
    return _auth.get() or _NO_AUTH


_NO_AUTH = Auth()


def enter_step(status: StepStatus) -> Token[StepStatus | None]:
    """Mark the current context as running a step."""
    return _step.set(status)


def leave_step(token: Token[StepStatus | None]) -> None:
    """Undo :func:`enter_step`."""
    _step.reset(token)


class _ContextSetter(Generic[T]):
    """A context manager, sync and async, that sets one context variable for its block."""

    _var: ContextVar[T]

    def __init__(self, value: T) -> None:
        self._value = value
        self._token: Token[T] | None = None

    def __enter__(self) -> _ContextSetter[T]:
        self._token = self._var.set(self._value)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            self._var.reset(self._token)
            self._token = None

    async def __aenter__(self) -> _ContextSetter[T]:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


WorkflowIDReusePolicy = Literal["return-existing", "reject"]
"""What starting a workflow under an ID that exists does: join it (``"return-existing"``, the
default) or raise :class:`DBOSWorkflowIDInUseError` (``"reject"``)."""


@dataclass(frozen=True, slots=True)
class AssignedWorkflowID:
    """The ID an enclosing :class:`SetWorkflowID` gives the next workflow, and its policy."""

    workflow_id: str
    reuse_policy: WorkflowIDReusePolicy | None = None


@dataclass(slots=True)
class _IdSlot:
    assigned: AssignedWorkflowID | None


_next_workflow_id: ContextVar[_IdSlot | None] = ContextVar("dbos_next_workflow_id", default=None)


class SetWorkflowID(_ContextSetter["_IdSlot | None"]):
    """Use ``wfid`` as the ID of the next workflow started, enqueued or forked in the block.

    Only the first workflow started in the block takes it; later ones get generated IDs. With
    ``workflow_id_reuse_policy="reject"`` that start raises :class:`DBOSWorkflowIDInUseError`
    if a workflow with this ID exists; by default it joins it.
    """

    _var = _next_workflow_id

    def __init__(
        self, wfid: str, workflow_id_reuse_policy: WorkflowIDReusePolicy | None = None
    ) -> None:
        if workflow_id_reuse_policy not in (None, "return-existing", "reject"):
            raise DBOSInvalidArgumentError(
                "workflow_id_reuse_policy must be 'return-existing' or 'reject', "
                f"got {workflow_id_reuse_policy!r}"
            )
        assigned = AssignedWorkflowID(check_id("A workflow ID", wfid), workflow_id_reuse_policy)
        super().__init__(_IdSlot(assigned))


def take_next_workflow_id() -> AssignedWorkflowID | None:
    """Consume the ID set by an enclosing :class:`SetWorkflowID`, if any is left."""
    slot = _next_workflow_id.get()
    if slot is None or slot.assigned is None:
        return None
    assigned, slot.assigned = slot.assigned, None
    return assigned


class _Unset:
    pass


_UNSET = _Unset()
_timeout: ContextVar[float | _Unset | None] = ContextVar("dbos_timeout", default=_UNSET)


class SetWorkflowTimeout(_ContextSetter["float | None | _Unset"]):
    """Give workflows started in the block a start-to-close timeout of
    ``workflow_timeout_sec`` seconds.

    ``None`` clears a timeout inherited from an enclosing workflow.
    """

    _var = _timeout

    def __init__(self, workflow_timeout_sec: float | None) -> None:
        if workflow_timeout_sec is not None:
            check_number("A workflow timeout", workflow_timeout_sec, strict=True)
        super().__init__(workflow_timeout_sec)


def workflow_timeout_override() -> tuple[bool, float | None]:
    """``(is_set, seconds)`` for the innermost :class:`SetWorkflowTimeout`."""
    value = _timeout.get()
    if isinstance(value, _Unset):
        return False, None
    return True, value


_attributes: ContextVar[dict[str, Any] | None] = ContextVar("dbos_attributes", default=None)


class SetWorkflowAttributes(_ContextSetter["dict[str, Any] | None"]):
    """Store ``attributes`` (a JSON-serializable dict) with the workflows started, enqueued or
    forked in the block; ``list_workflows(attributes=...)`` finds them. Not inherited by the
    workflows those start."""

    _var = _attributes

    def __init__(self, attributes: dict[str, Any] | None) -> None:
        check_json_object("attributes", attributes)
        super().__init__(dict(attributes) if attributes is not None else None)


def workflow_attributes() -> dict[str, Any] | None:
    """The attributes an enclosing :class:`SetWorkflowAttributes` gives new workflows."""
    return _attributes.get()


class DBOSContextSetAuth(_ContextSetter["Auth | None"]):
    """Run the block as ``user`` with ``roles``; workflows started in it record and keep them."""

    _var = _auth

    def __init__(self, user: str | None, roles: list[str] | None) -> None:
        super().__init__(Auth(user=user, roles=tuple(roles or ())))


def set_authentication(user: str | None, roles: list[str] | None) -> None:
    """Make ``user`` with ``roles`` the caller in the current context from now on (as
    :class:`DBOSContextSetAuth` does for a block)."""
    _auth.set(Auth(user=user, roles=tuple(roles or ())))


class DBOSContextEnsure:
    """Ensure a DBOS context exists for the block (always true here; kept for DBOS parity)."""

    def __enter__(self) -> DBOSContextEnsure:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        return None

    async def __aenter__(self) -> DBOSContextEnsure:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        return None


def enter_workflow(ctx: WorkflowContext) -> None:
    """Make ``ctx`` the running workflow in the current (task's own) context.

    The caller's one-shot options (SetWorkflowID, SetWorkflowTimeout, auth) applied to starting
    this workflow; they must not leak into the workflows it starts in turn.

    A variable is set only when it differs: each set copies the context's mapping, and usually
    none of them is set.
    """
    if _step.get() is not None:
        _step.set(None)
    if _next_workflow_id.get() is not None:
        _next_workflow_id.set(None)
    if _timeout.get() is not _UNSET:
        _timeout.set(_UNSET)
    if _auth.get() is not None:
        _auth.set(None)
    if _attributes.get() is not None:
        _attributes.set(None)
    _workflow.set(ctx)


# The HTTP request being served ------------------------------------------------------------

_request: ContextVar[Request | None] = ContextVar("dbos_request", default=None)


def current_request() -> Request | None:
    """The request being served here: the running workflow's, else the handler's, else None."""
    workflow = current_workflow()
    if workflow is not None:
        return workflow.request
    return _request.get()


@contextmanager
def request_scope(request: Request) -> Iterator[Request]:
    """Serve ``request`` in the block: ``DBOS.request`` and the idempotency key apply in it."""
    token = _request.set(request)
    key = request.headers.get(IDEMPOTENCY_KEY_HEADER)
    try:
        if key and key.strip():
            with SetWorkflowID(key):
                yield request
        else:
            yield request
    finally:
        _request.reset(token)


# The runtime serving the code running here -------------------------------------------------


_scope_runtime: ContextVar[Runtime | None] = ContextVar("dbos_scope_runtime", default=None)


def runtime_here() -> Runtime:
    """The runtime of the workflow running here, else that of the scope (a client's calls),
    else the process's launched runtime."""
    ctx = current_workflow()
    if ctx is not None:
        return ctx.runtime
    return _scope_runtime.get() or current_runtime()


def isolated_context(runtime: Runtime) -> contextvars.Context:
    """A fresh context whose operations use ``runtime``: no workflow, no ``SetWorkflowID``,
    timeout, authentication or enqueue options of the caller (a client's calls run in one)."""
    context = contextvars.Context()
    context.run(_scope_runtime.set, runtime)
    return context


def block_on(
    runtime: Runtime,
    start: Callable[[], Awaitable[T]],
    *,
    operation: str,
    alternative: str | None = None,
) -> T:
    """Run ``start()`` on the engine's loop and block this thread until it is done: the one
    bridge every sync API goes through.

    ``operation`` names the sync API (``"DBOS.recv"``); ``alternative`` its async form, by
    default ``await <operation>_async()``. Called from a thread running an event loop, it
    raises :class:`DBOSBlockingCallInLoopError` naming them, before ``start`` is called (so no
    function ID is taken). From a sync workflow's thread the call is cancelled with its
    workflow, or when the runtime stops, and the thread sees ``DBOSWorkflowCancelledError``.
    """
    ensure_not_in_loop(operation, alternative or f"await {operation}_async()")
    if runtime.stopping:
        raise DBOSWorkflowCancelledError(f"{operation}: dbos_async is stopping")
    future = submit(runtime.loop, awaited(start()))
    ctx = current_workflow()
    if ctx is None:
        try:
            return future.result()
        except BaseException:
            future.cancel()  # the thread was interrupted (KeyboardInterrupt): stop the work too
            raise
    calls = ctx.blocking_calls
    if calls is None:
        calls = ctx.blocking_calls = set()
    calls.add(future)
    try:
        if ctx.cancelled:
            future.cancel()
        return future.result()
    except concurrent.futures.CancelledError:
        if ctx.cancelled:
            raise DBOSWorkflowCancelledError(f"Workflow {ctx.workflow_id} was cancelled") from None
        if runtime.stopping:
            raise DBOSWorkflowCancelledError(
                f"dbos_async stopped; workflow {ctx.workflow_id} stays PENDING for recovery"
            ) from None
        raise
    finally:
        calls.discard(future)

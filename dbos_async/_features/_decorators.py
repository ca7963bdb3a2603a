"""``@DBOS.workflow``, ``@DBOS.step``, ``@DBOS.dbos_class`` and ``DBOS.run_step``.

A decorated *async* function's wrapper is a plain function that resolves everything
order-sensitive (the function ID, the workflow ID) when it is called, then returns a coroutine.
A decorated *sync* function's wrapper does the same and then blocks on the engine's loop.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypedDict, TypeVar, cast

from .._core._context import block_on, current_auth, current_step, current_workflow, runtime_here
from .._core._errors import DBOSConflictingRegistrationError, DBOSInvalidArgumentError
from .._core._portable import SerializationType, format_name
from .._core._registry import MethodKind, WorkflowInfo, default_registry
from .._core._roles import RoleRequirement, authorize, role_requirement_of
from .._core._runtime import Runtime, current_runtime
from .._core._validation import check_int
from ._arg_validation import ArgsValidator, resolve_validator
from ._enqueue import refuse_enqueue_options
from ._step import RetryPolicy, StepSettings, run_step
from ._workflow import WorkflowCall, prepare_call, result_of, start_workflow

__all__ = [
    "dbos_class",
    "is_async_callable",
    "mark_coroutine_function",
    "prepare_start",
    "run_step_async",
    "run_step_at",
    "run_step_sync",
    "step",
    "step_options_from",
    "workflow",
    "workflow_info",
]

F = TypeVar("F", bound=Callable[..., Any])
logger = logging.getLogger("dbos_async")
T = TypeVar("T")

_WORKFLOW_ATTR = "__dbos_workflow__"


def mark_coroutine_function(func: F) -> F:
    """Make a plain function that returns a coroutine look like an ``async def`` to frameworks."""
    marker = getattr(inspect, "markcoroutinefunction", None)
    if marker is not None:  # Python 3.12+
        return cast(F, marker(func))
    import asyncio.coroutines

    func._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]
    return func


def is_async_callable(func: Callable[..., Any]) -> bool:
    """Whether calling ``func`` returns a coroutine (decorated wrappers and partials included)."""
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(inspect.unwrap(func))


def workflow_info(func: Callable[..., Any]) -> WorkflowInfo:
    """The registration of a ``@DBOS.workflow`` function (bound methods included)."""
    info = getattr(getattr(func, "__func__", func), _WORKFLOW_ATTR, None)
    if isinstance(info, DBOSConflictingRegistrationError):
        raise DBOSConflictingRegistrationError(
            info.name,
            f"Another step is also named {info.name!r}: give this one a distinct name= "
            "to start or enqueue it on its own",
        )
    if not isinstance(info, WorkflowInfo):
        raise DBOSInvalidArgumentError(
            f"{getattr(func, '__qualname__', func)!r} is not a @DBOS.workflow function"
        )
    return info


def bound_arguments(func: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Prepend ``self`` or ``cls`` when ``func`` is a bound method."""
    owner = getattr(func, "__self__", None)
    return (owner, *args) if owner is not None else args


async def _start_and_wait(runtime: Runtime, call: WorkflowCall) -> Any:
    if asyncio.get_running_loop() is not runtime.loop:
        return await runtime.forward(_start_and_wait(runtime, call))
    workflow_id = await start_workflow(runtime, call)
    del call  # the wait may be long: keep no more of the call alive than its workflow does
    return await result_of(runtime, workflow_id)


def workflow(
    *,
    name: str | None = None,
    max_recovery_attempts: int | None = 100,
    serialization_type: SerializationType = None,
    validate_args: ArgsValidator | None = None,
    auto_upgrade: bool | None = None,
) -> Callable[[F], F]:
    """Make a function a durable workflow: its steps are checkpointed, and it resumes after a crash.

    Calling it runs it to completion and returns its result (async functions return a coroutine).
    ``serialization_type=WorkflowSerializationFormat.PORTABLE`` records its inputs, output and
    error as portable JSON (readable from SQL and other languages), and makes portable JSON the
    default for what it sends, sets and writes; arguments that have no portable form are
    refused before anything is written.
    ``validate_args`` checks, and may convert, the arguments of a run from the workflow's row
    (dequeued, recovered, resumed, forked): ``(args, kwargs) -> (args, kwargs)``, or
    ``pydantic_args_validator`` to validate against the function's type hints. A failure ends
    the workflow in ``ERROR`` with the validator's exception. Without one, a run from portable
    inputs gets ``datetime``, ``date``, ``Decimal`` and ``UUID`` arguments back from strings by
    the function's type hints. ``auto_upgrade`` (DBOS enterprise) is accepted and has no
    effect.
    """
    if max_recovery_attempts is not None:
        check_int("max_recovery_attempts", max_recovery_attempts, minimum=0)
    if auto_upgrade:
        logger.warning(
            "auto_upgrade (a DBOS enterprise feature) has no effect in dbos_async: a workflow "
            "runs to its end on the version that started it"
        )
    serialization = format_name(serialization_type)
    validator_for = resolve_validator(validate_args)

    def decorate(func: F) -> F:
        is_async = inspect.iscoroutinefunction(func)
        info = WorkflowInfo(name or func.__qualname__, func, is_async, max_recovery_attempts)
        info.roles = role_requirement_of(func)  # shared with the wrapper by functools.wraps
        info.validate_args = validator_for(info)
        info.serialization = serialization
        default_registry.add_workflow(info)

        if is_async:

            @functools.wraps(func)
            def async_wrapper(*args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
                runtime = runtime_here()
                return _start_and_wait(runtime, prepare_start(info, args, kwargs))

            wrapper: Callable[..., Any] = mark_coroutine_function(async_wrapper)
        else:

            @functools.wraps(func)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                runtime = runtime_here()
                return block_on(
                    runtime,
                    lambda: _start_and_wait(runtime, prepare_start(info, args, kwargs)),
                    operation=f"The sync workflow {info.name}",
                    alternative=f"await DBOS.start_workflow_async({info.name}, ...)",
                )

            wrapper = sync_wrapper
        setattr(wrapper, _WORKFLOW_ATTR, info)
        return cast(F, wrapper)

    return decorate


def prepare_start(
    info: WorkflowInfo, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> WorkflowCall:
    """:func:`prepare_call` for a workflow started (not enqueued): enqueue-only options of an
    enclosing ``SetEnqueueOptions`` are refused, as DBOS refuses them."""
    refuse_enqueue_options()
    return prepare_call(info, args, kwargs)


def _checkpointed_step(
    options: StepSettings,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    function_id: int | None = None,
) -> Coroutine[Any, Any, Any]:
    """The coroutine running ``func`` as the current workflow's step at ``function_id``
    (by default its next one, reserved now)."""
    ctx = current_workflow()
    assert ctx is not None
    if function_id is None:
        function_id = ctx.reserve_function_id()
    runtime = ctx.runtime
    invoke: Callable[[], Awaitable[Any]]
    if is_async_callable(func):
        invoke = functools.partial(func, *args, **kwargs)
    else:
        invoke = functools.partial(runtime.run_step_body, ctx.workflow_id, func, *args, **kwargs)
    return run_step(ctx, function_id, options, invoke)


def _in_workflow_outside_step() -> bool:
    return current_workflow() is not None and current_step() is None


def _run_blocking_step(
    options: StepSettings, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    ctx = current_workflow()
    assert ctx is not None
    return block_on(
        ctx.runtime,
        lambda: _checkpointed_step(options, func, args, kwargs),
        operation=f"The sync step {options.name}",
        alternative=f"await DBOS.run_step_async(None, {options.name}, ...)",
    )


def step(
    *,
    name: str | None = None,
    retries_allowed: bool = False,
    interval_seconds: float = 1.0,
    max_attempts: int = 3,
    backoff_rate: float = 2.0,
    should_retry: Callable[[BaseException], bool | Awaitable[bool]] | None = None,
    timeout_seconds: float | None = None,
    preemptible: bool = False,
) -> Callable[[F], F]:
    """Make a function a step: inside a workflow its outcome is checkpointed and never re-run.

    Outside a workflow (or inside another step) it is a plain call. ``preemptible`` is
    accepted for async steps, which a cancellation always interrupts here.
    """
    retry = RetryPolicy(retries_allowed, interval_seconds, max_attempts, backoff_rate, should_retry)
    StepSettings(name or "step", retry, timeout_seconds)  # reject bad options at once

    def decorate(func: F) -> F:
        _check_preemptible(preemptible, func, name)
        options = StepSettings(name or func.__qualname__, retry, timeout_seconds)
        roles = role_requirement_of(func)  # shared with the wrapper by functools.wraps
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            def async_wrapper(*args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
                if roles.roles:
                    authorize(roles, current_auth(), options.name)
                ctx = current_workflow()
                if ctx is not None and current_step() is None:
                    # _checkpointed_step, shortened for what is known here: the common case.
                    invoke = functools.partial(func, *args, **kwargs)
                    return run_step(ctx, ctx.reserve_function_id(), options, invoke)
                return cast(Coroutine[Any, Any, Any], func(*args, **kwargs))

            return cast(
                F,
                _runnable_as_workflow(options, mark_coroutine_function(async_wrapper), True, roles),
            )
        if timeout_seconds is not None:
            raise DBOSInvalidArgumentError(
                f"timeout_seconds applies to async steps only; {options.name} is sync"
            )

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            _check_step_roles(roles, options)
            if _in_workflow_outside_step():
                return _run_blocking_step(options, func, args, kwargs)
            return func(*args, **kwargs)

        return cast(F, _runnable_as_workflow(options, sync_wrapper, False, roles))

    return decorate


def _check_step_roles(roles: RoleRequirement, options: StepSettings) -> None:
    if roles.roles:
        authorize(roles, current_auth(), options.name)


def _runnable_as_workflow(
    options: StepSettings, step_wrapper: F, is_async: bool, roles: RoleRequirement
) -> F:
    """Register ``<temp>.<step>``: a workflow running just this step, so the step itself can
    be started or enqueued (``queue.enqueue(step)``) and recovered by name in any process."""

    def run_step_alone(*args: Any, **kwargs: Any) -> Any:
        return step_wrapper(*args, **kwargs)  # inside the workflow: a checkpointed step

    info = WorkflowInfo(f"<temp>.{options.name}", run_step_alone, is_async, roles=roles)
    try:
        default_registry.add_workflow(info)
    except DBOSConflictingRegistrationError as clash:
        # Another step has this name: it still works as a step, but cannot run on its own.
        setattr(step_wrapper, _WORKFLOW_ATTR, clash)
        return step_wrapper
    setattr(step_wrapper, _WORKFLOW_ATTR, info)
    return step_wrapper


class StepOptions(TypedDict, total=False):
    """``DBOS.run_step``'s options: the parameters of ``@DBOS.step`` and the step's ``name``."""

    name: str | None
    retries_allowed: bool
    interval_seconds: float
    max_attempts: int
    backoff_rate: float
    should_retry: Callable[[BaseException], bool | Awaitable[bool]] | None
    preemptible: bool
    timeout_seconds: float | None


def step_options_from(options: Mapping[str, Any] | None, func: Callable[..., Any]) -> StepSettings:
    """Build :class:`StepSettings` from ``DBOS.run_step``'s options (a :class:`StepOptions`)."""
    options = dict(options or {})
    unknown = set(options) - set(StepOptions.__annotations__)
    if unknown:
        raise DBOSInvalidArgumentError(f"Unknown step option(s): {', '.join(sorted(unknown))}")
    _check_preemptible(options.get("preemptible", False), func, options.get("name"))
    retry_keys = ("retries_allowed", "interval_seconds", "max_attempts", "backoff_rate")
    retry = RetryPolicy(
        **{key: options[key] for key in retry_keys if key in options},
        should_retry=options.get("should_retry"),
    )
    name = str(options.get("name") or getattr(func, "__qualname__", repr(func)))
    return StepSettings(name, retry, options.get("timeout_seconds"))


def _check_preemptible(preemptible: object, func: Callable[..., Any], name: object) -> None:
    """``preemptible`` is for async steps (and they always are here: a cancellation stops
    the workflow's task, and the step with it, at once)."""
    if preemptible and not is_async_callable(func):
        raise DBOSInvalidArgumentError(
            f"Step {name or getattr(func, '__qualname__', func)} is sync but preemptible=True: "
            "only async steps can be preempted"
        )


def run_step_async(
    dbos_step_options: StepOptions | None,
    func: Callable[..., Any],
    *args: Any,
    **kwargs: Any,
) -> Coroutine[Any, Any, Any]:
    """Run ``func`` (sync or async) as a step; the function ID is taken when this is called."""
    if not callable(func):
        raise DBOSInvalidArgumentError(f"run_step needs a callable, got {func!r}")
    step_options = step_options_from(dbos_step_options, func)
    if _in_workflow_outside_step():
        return _checkpointed_step(step_options, func, args, kwargs)
    return _run_plain(func, args, kwargs)


def run_step_at(
    function_id: int,
    dbos_step_options: StepOptions | None,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Coroutine[Any, Any, Any]:
    """Run ``func`` as the current workflow's step at ``function_id``, reserved earlier."""
    if not callable(func):
        raise DBOSInvalidArgumentError(f"run_step needs a callable, got {func!r}")
    return _checkpointed_step(
        step_options_from(dbos_step_options, func), func, args, kwargs, function_id
    )


async def _run_plain(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if inspect.iscoroutinefunction(func):
        return await func(*args, **kwargs)
    ctx = current_workflow()  # in a step of a workflow, the step's code is the workflow's
    owner = ctx.workflow_id if ctx is not None else None
    return await current_runtime().run_step_body(owner, func, *args, **kwargs)


def run_step_sync(
    dbos_step_options: StepOptions | None,
    func: Callable[..., Any],
    *args: Any,
    **kwargs: Any,
) -> Any:
    """:func:`run_step_async` from sync code, blocking until the step is checkpointed.

    Outside a workflow a sync ``func`` is just called, here, with no runtime needed.
    """
    if not _in_workflow_outside_step() and not is_async_callable(func):
        if not callable(func):
            raise DBOSInvalidArgumentError(f"run_step needs a callable, got {func!r}")
        step_options_from(dbos_step_options, func)
        return func(*args, **kwargs)
    return block_on(
        runtime_here(),
        lambda: run_step_async(dbos_step_options, func, *args, **kwargs),
        operation="DBOS.run_step",
    )


def dbos_class(class_name: str | None = None) -> Callable[[type[T]], type[T]]:
    """Register a class whose methods are workflows or steps, under a unique name."""

    def decorate(cls: type[T]) -> type[T]:
        name = class_name or cls.__qualname__
        cls.dbos_class_name = name  # type: ignore[attr-defined]
        default_registry.add_class(name, cls)
        for value in cls.__dict__.values():
            kind: MethodKind = "instance"
            target = value
            if isinstance(value, classmethod):
                target, kind = value.__func__, "class"
            elif isinstance(value, staticmethod):
                target, kind = value.__func__, "static"
            info = getattr(target, _WORKFLOW_ATTR, None)
            if isinstance(info, WorkflowInfo):
                info.kind = kind
                info.class_name = name
        return cls

    return decorate

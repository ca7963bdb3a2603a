"""Checking and converting a workflow's arguments when it runs from its recorded inputs.

``@DBOS.workflow(validate_args=...)`` takes a callable ``(args, kwargs) -> (args, kwargs)``. As in
DBOS, it runs when a workflow is executed from its row: dequeued, recovered, adopted, resumed or
forked; a direct call or ``start_workflow`` passes its arguments through untouched. What it
returns replaces the arguments the function receives (the recorded inputs stay as they were);
what it raises becomes the workflow's recorded error, and the workflow ends in ``ERROR`` without
running. Arguments recorded by another program (a client, another language) may have lost their
Python types; the validator is where they get them back.

``pydantic_args_validator`` asks for a validator built from the function's type hints, and
``make_pydantic_args_validator(func)`` builds one for any function. Both need pydantic 2
(``pip install "dbos_async[pydantic]"``), imported only when asked for.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._core._errors import DBOSInvalidArgumentError
from .._core._registry import ArgsValidator, MethodKind, WorkflowInfo, default_registry

if TYPE_CHECKING:
    from pydantic import TypeAdapter

__all__ = [
    "ArgsValidator",
    "make_pydantic_args_validator",
    "pydantic_args_validator",
    "resolve_validator",
    "validated_arguments",
]


def pydantic_args_validator(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Validate a workflow's arguments against its type hints with pydantic.

    Pass it as ``@DBOS.workflow(validate_args=pydantic_args_validator)``: the decorator builds
    the real validator from the decorated function (see :func:`make_pydantic_args_validator`).
    It stands for that validator and is never called itself.
    """
    raise NotImplementedError(
        "pydantic_args_validator only marks a workflow for validation by its type hints; "
        "to validate arguments yourself, call make_pydantic_args_validator(func)(args, kwargs)"
    )


def make_pydantic_args_validator(func: Callable[..., Any]) -> ArgsValidator:
    """Build a ``validate_args`` callable that checks and converts arguments by ``func``'s hints.

    Each argument is validated (in pydantic's default, lax mode: ``"5"`` becomes ``5`` for an
    ``int``) against the hint of the parameter it binds to; ``*args`` and ``**kwargs`` items
    against theirs; unannotated parameters pass through. Every problem, and every missing
    required argument, is reported at once in one ``ValueError``. The leading ``self`` or
    ``cls`` of a workflow method is left out, as workflows record their arguments without it.
    The type hints are resolved on the first call, when the whole module is defined.

    Raises ``ImportError`` at once if pydantic is not installed.
    """
    _require_pydantic()
    return _PydanticArgsValidator(func, lambda: _registered_kind(func))


def resolve_validator(validate_args: object) -> Callable[[WorkflowInfo], ArgsValidator | None]:
    """Check ``@DBOS.workflow``'s ``validate_args``; return how to finish it for a function.

    Raises :class:`DBOSInvalidArgumentError` for a value that is not a plain callable, and
    ``ImportError`` for ``pydantic_args_validator`` when pydantic is missing, both at once.
    """
    if validate_args is None:
        return lambda info: None
    if validate_args is pydantic_args_validator:
        _require_pydantic()
        return lambda info: _PydanticArgsValidator(info.func, lambda: info.kind, info.name)
    if not callable(validate_args):
        raise DBOSInvalidArgumentError(
            f"validate_args must be a callable (args, kwargs) -> (args, kwargs), "
            f"got {validate_args!r}"
        )
    if inspect.iscoroutinefunction(inspect.unwrap(validate_args)):
        raise DBOSInvalidArgumentError(
            "validate_args must be a plain function returning (args, kwargs), not async"
        )
    validator = typing.cast(ArgsValidator, validate_args)
    return lambda info: validator


def validated_arguments(
    info: WorkflowInfo, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Run ``info``'s validator (if any) on recorded arguments; return what the function gets.

    Whatever the validator raises propagates; a result that is not ``(args, kwargs)`` raises
    ``TypeError``.
    """
    if info.validate_args is None:
        return args, kwargs
    result: object = info.validate_args(args, kwargs)
    if (
        isinstance(result, tuple | list)
        and len(result) == 2
        and isinstance(result[0], tuple | list)
        and isinstance(result[1], Mapping)
    ):
        return tuple(result[0]), dict(result[1])
    raise TypeError(
        f"validate_args of workflow {info.name} must return (args, kwargs), got {result!r}"
    )


def _require_pydantic() -> None:
    try:
        import pydantic  # noqa: F401
    except ImportError as missing:
        raise ImportError(
            'Validating workflow arguments with pydantic needs pydantic 2: pip install "dbos_async[pydantic]"'
        ) from missing


def _registered_kind(func: Callable[..., Any]) -> MethodKind:
    """How ``func`` (a workflow wrapper or the function it wraps) is called, once registered."""
    target = inspect.unwrap(getattr(func, "__func__", func))
    for info in default_registry.workflows.values():
        if info.func is target:
            return info.kind
    return "function"


@dataclass(frozen=True, slots=True)
class _Parameter:
    name: str
    adapter: TypeAdapter[Any] | None
    required: bool
    by_position: bool
    by_name: bool


@dataclass(frozen=True, slots=True)
class _Plan:
    """The adapters of a signature, in the order arguments bind to parameters."""

    parameters: tuple[_Parameter, ...]
    positional: tuple[_Parameter, ...]
    named: dict[str, _Parameter]
    var_positional: tuple[str, TypeAdapter[Any] | None] | None
    var_keyword: tuple[str, TypeAdapter[Any] | None] | None


class _PydanticArgsValidator:
    """Validates arguments against a function's type hints, with adapters built on first use.

    First use, not construction: ``@DBOS.dbos_class`` runs after ``@DBOS.workflow``, and only
    then is it known whether the function is a method whose ``self``/``cls`` is left out.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        kind: Callable[[], MethodKind],
        workflow_name: str | None = None,
    ) -> None:
        self._func = inspect.unwrap(getattr(func, "__func__", func))
        self._kind = kind
        self._label = workflow_name or getattr(self._func, "__qualname__", repr(self._func))
        self._plan: _Plan | None = None

    def __call__(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        from pydantic import ValidationError

        plan = self._plan
        if plan is None:
            plan = self._plan = self._build()  # one assignment: concurrent first calls agree
        errors: list[str] = []

        def check(adapter: TypeAdapter[Any] | None, value: Any, label: str) -> Any:
            if adapter is None:
                return value
            try:
                return adapter.validate_python(value)
            except ValidationError as invalid:
                errors.append(f"argument {label}: {invalid}")
                return value

        new_args = list(args)
        given: set[str] = set()
        for index, value in enumerate(args):
            if index < len(plan.positional):
                parameter = plan.positional[index]
                given.add(parameter.name)
                label = f"{parameter.name!r} (position {index})"
                new_args[index] = check(parameter.adapter, value, label)
            elif plan.var_positional is not None:
                star_name, adapter = plan.var_positional
                label = f"*{star_name} (position {index})"
                new_args[index] = check(adapter, value, label)
        new_kwargs = dict(kwargs)
        for key, value in kwargs.items():
            named = plan.named.get(key)
            if named is not None:
                given.add(key)
                new_kwargs[key] = check(named.adapter, value, repr(key))
            elif plan.var_keyword is not None:
                new_kwargs[key] = check(plan.var_keyword[1], value, repr(key))
        errors.extend(
            f"missing required argument {p.name!r}"
            for p in plan.parameters
            if p.required and p.name not in given
        )
        if errors:
            raise ValueError(f"Invalid arguments for workflow {self._label}:\n" + "\n".join(errors))
        return tuple(new_args), new_kwargs

    def _build(self) -> _Plan:
        func = self._func
        try:
            hints = typing.get_type_hints(func, include_extras=True)
        except Exception as unresolved:
            raise TypeError(
                f"Cannot resolve the type hints of {self._label} to validate its arguments: "
                f"{unresolved}"
            ) from unresolved
        signature = inspect.signature(func)
        parameters = list(signature.parameters.values())
        if self._kind() in ("instance", "class"):
            parameters = parameters[1:]
        plain: list[_Parameter] = []
        var_positional = var_keyword = None
        for p in parameters:
            adapter = _adapter(hints[p.name]) if p.name in hints else None
            if p.kind is p.VAR_POSITIONAL:
                var_positional = (p.name, adapter)
            elif p.kind is p.VAR_KEYWORD:
                var_keyword = (p.name, adapter)
            else:
                plain.append(
                    _Parameter(
                        name=p.name,
                        adapter=adapter,
                        required=p.default is p.empty,
                        by_position=p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD),
                        by_name=p.kind is not p.POSITIONAL_ONLY,
                    )
                )
        return _Plan(
            parameters=tuple(plain),
            positional=tuple(p for p in plain if p.by_position),
            named={p.name: p for p in plain if p.by_name},
            var_positional=var_positional,
            var_keyword=var_keyword,
        )


def _adapter(hint: Any) -> TypeAdapter[Any]:
    """A pydantic adapter for ``hint``; a class pydantic has no schema for is checked with
    ``isinstance``, so a workflow taking such an object can still be validated."""
    from pydantic import ConfigDict, PydanticSchemaGenerationError, TypeAdapter

    try:
        return TypeAdapter(hint)
    except PydanticSchemaGenerationError:
        return TypeAdapter(hint, config=ConfigDict(arbitrary_types_allowed=True))

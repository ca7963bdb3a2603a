"""The exceptions dbos_async raises, under one base class.

Names and error codes follow DBOS Transact, so code that catches DBOS's errors keeps working::

    DBOSException
    ├── DBOSRecoveryError
    ├── DBOSInitializationError
    ├── DBOSWorkflowFunctionNotFoundError
    ├── DBOSNonExistentWorkflowError
    ├── MaxRecoveryAttemptsExceededError
    ├── DBOSMaxStepRetriesExceeded
    ├── DBOSNotAuthorizedError
    ├── DBOSConflictingWorkflowError
    ├── DBOSUnexpectedStepError
    ├── DBOSQueueDeduplicatedError
    ├── DBOSAwaitedWorkflowCancelledError
    ├── DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded
    ├── DBOSStepTimeoutError
    ├── DBOSConflictingRegistrationError
    ├── DBOSSerializationError          (dbos_async: a value msgpack cannot carry)
    ├── DBOSConfigurationError          (dbos_async: a bad config key or value)
    ├── DBOSNotLaunchedError            (dbos_async: an operation that needs a launched runtime)
    ├── DBOSBlockingCallInLoopError     (dbos_async: a sync API called on a running event loop)
    ├── DBOSNotInWorkflowError          (dbos_async: a workflow-only API called elsewhere)
    ├── DBOSInvalidArgumentError        (dbos_async: a bad argument to a public entry point)
    ├── DBOSDatabaseUnavailableError    (dbos_async: the system database stayed away too long)
    ├── DBOSQueryTimeoutError
    ├── DBOSStreamTimeoutError
    ├── DBOSStreamNondeterminismError
    ├── DBOSStepNondeterminismError
    ├── DBOSPatchNondeterminismError
    └── DBOSWorkflowIDInUseError

    BaseException
    └── DBOSBaseException
        ├── DBOSWorkflowConflictIDError (another execution recorded this step first)
        └── DBOSWorkflowCancelledError  (the workflow was cancelled while running)

The two ``DBOSBaseException`` subclasses stop a workflow's execution without being caught by
user code's ``except Exception``, as in DBOS.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

__all__ = [
    "DBOSAwaitedWorkflowCancelledError",
    "DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded",
    "DBOSBaseException",
    "DBOSBlockingCallInLoopError",
    "DBOSConfigurationError",
    "DBOSConflictingRegistrationError",
    "DBOSConflictingWorkflowError",
    "DBOSDatabaseUnavailableError",
    "DBOSErrorCode",
    "DBOSException",
    "DBOSInitializationError",
    "DBOSInvalidArgumentError",
    "DBOSMaxStepRetriesExceeded",
    "DBOSNonExistentWorkflowError",
    "DBOSNotAuthorizedError",
    "DBOSNotInWorkflowError",
    "DBOSNotLaunchedError",
    "DBOSPatchNondeterminismError",
    "DBOSQueryTimeoutError",
    "DBOSQueueDeduplicatedError",
    "DBOSQueueNotFoundError",
    "DBOSRecoveryError",
    "DBOSSerializationError",
    "DBOSStepNondeterminismError",
    "DBOSStepTimeoutError",
    "DBOSStreamNondeterminismError",
    "DBOSStreamTimeoutError",
    "DBOSUnexpectedStepError",
    "DBOSWorkflowCancelledError",
    "DBOSWorkflowConflictIDError",
    "DBOSWorkflowFunctionNotFoundError",
    "DBOSWorkflowIDInUseError",
    "MaxRecoveryAttemptsExceededError",
]


class DBOSErrorCode(IntEnum):
    """The numeric error codes (``DBOSException.dbos_error_code``), under DBOS's names.

    Each member is an ``int``; the upper-case names are aliases kept from dbos_async's first
    release.
    """

    ConflictingIDError = 1
    RecoveryError = 2
    InitializationError = 3
    WorkflowFunctionNotFound = 4
    NonExistentWorkflowError = 5
    MaxRecoveryAttemptsExceeded = 6
    MaxStepRetriesExceeded = 7
    NotAuthorized = 8
    ConflictingWorkflowError = 9
    WorkflowCancelled = 10
    UnexpectedStep = 11
    QueueDeduplicated = 12
    AwaitedWorkflowCancelled = 13
    AwaitedWorkflowMaxRecoveryAttemptsExceeded = 14
    PatchNondeterminism = 15
    StreamTimeout = 16
    StreamNondeterminism = 17
    StepTimeout = 18
    ConflictingRegistration = 25
    QueryTimeout = 26
    WorkflowIDInUse = 27
    StepNondeterminism = 28
    # dbos_async's own codes start at 100.
    Serialization = 100
    Configuration = 101
    NotLaunched = 102
    BlockingCallInLoop = 103
    InvalidArgument = 104
    NotInWorkflow = 105
    DatabaseUnavailable = 106
    # Aliases.
    CONFLICT_ID = 1
    RECOVERY_ERROR = 2
    INITIALIZATION_ERROR = 3
    WORKFLOW_FUNCTION_NOT_FOUND = 4
    NON_EXISTENT_WORKFLOW = 5
    MAX_RECOVERY_ATTEMPTS_EXCEEDED = 6
    MAX_STEP_RETRIES_EXCEEDED = 7
    NOT_AUTHORIZED = 8
    CONFLICTING_WORKFLOW = 9
    WORKFLOW_CANCELLED = 10
    UNEXPECTED_STEP = 11
    QUEUE_DEDUPLICATED = 12
    AWAITED_WORKFLOW_CANCELLED = 13
    AWAITED_WORKFLOW_MAX_RECOVERY_ATTEMPTS_EXCEEDED = 14
    STEP_TIMEOUT = 18
    CONFLICTING_REGISTRATION = 25
    SERIALIZATION = 100
    CONFIGURATION = 101
    NOT_LAUNCHED = 102
    BLOCKING_CALL_IN_LOOP = 103
    INVALID_ARGUMENT = 104
    NOT_IN_WORKFLOW = 105
    DATABASE_UNAVAILABLE = 106


def _describe(message: str, code: int | None) -> str:
    return f"DBOS Error {code}: {message}" if code else f"DBOS Error: {message}"


class DBOSException(Exception):
    """Base class of every error dbos_async raises to user code.

    ``message`` is the human-readable text, ``dbos_error_code`` DBOS's numeric code and
    ``status_code`` the HTTP status a web integration answers with (500 unless set).
    """

    status_code: int = 500

    def __init__(self, message: str, dbos_error_code: int | None = None) -> None:
        self.message = message
        self.dbos_error_code = int(dbos_error_code) if dbos_error_code is not None else None
        super().__init__(message)

    def __str__(self) -> str:
        return _describe(self.message, self.dbos_error_code)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_dbos_exception, (type(self), self.__dict__.copy()))


class DBOSBaseException(BaseException):
    """Base class of the errors user code must not catch by accident (``except Exception``):
    they stop a workflow's execution. ``message`` and ``dbos_error_code`` as for
    :class:`DBOSException`."""

    def __init__(self, message: str, dbos_error_code: int | None = None) -> None:
        self.message = message
        self.dbos_error_code = int(dbos_error_code) if dbos_error_code is not None else None
        super().__init__(message)

    def __str__(self) -> str:
        return _describe(self.message, self.dbos_error_code)


def _rebuild_dbos_exception(cls: type[BaseException], state: dict[str, Any]) -> BaseException:
    """Rebuild a DBOS error from its attributes, whatever its constructor takes."""
    error = cls.__new__(cls)
    BaseException.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class DBOSRecoveryError(DBOSException):
    """A workflow could not be recovered."""

    def __init__(self, workflow_id: str, message: str | None = None) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            f"Recovery error for workflow {workflow_id}: {message or 'unknown'}",
            DBOSErrorCode.RECOVERY_ERROR,
        )


class DBOSInitializationError(DBOSException):
    """The runtime could not start (bad configuration, unreachable database, ...)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, DBOSErrorCode.INITIALIZATION_ERROR)


class DBOSWorkflowFunctionNotFoundError(DBOSException):
    """A workflow's function, class or instance is not registered in this process."""

    def __init__(self, workflow_id: str, message: str | None = None) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            f"Workflow function not found for {workflow_id}: {message or ''}".rstrip(": "),
            DBOSErrorCode.WORKFLOW_FUNCTION_NOT_FOUND,
        )


class DBOSNonExistentWorkflowError(DBOSException):
    """No workflow has this ID."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            f"Workflow {workflow_id} does not exist", DBOSErrorCode.NON_EXISTENT_WORKFLOW
        )


class MaxRecoveryAttemptsExceededError(DBOSException):
    """A workflow crashed more often than its ``max_recovery_attempts`` allows."""

    def __init__(self, workflow_id: str, max_recovery_attempts: int) -> None:
        self.workflow_id = workflow_id
        self.max_recovery_attempts = max_recovery_attempts
        super().__init__(
            f"Workflow {workflow_id} exceeded its maximum of {max_recovery_attempts} "
            "recovery attempts and was moved to MAX_RECOVERY_ATTEMPTS_EXCEEDED",
            DBOSErrorCode.MAX_RECOVERY_ATTEMPTS_EXCEEDED,
        )


class DBOSMaxStepRetriesExceeded(DBOSException):
    """A step failed on every attempt its retry policy allowed; ``errors`` holds each failure."""

    def __init__(self, step_name: str, max_attempts: int, errors: list[BaseException]) -> None:
        self.step_name = step_name
        self.max_attempts = max_attempts
        self.errors = errors
        super().__init__(
            f"Step {step_name} failed after {max_attempts} attempts; last error: "
            f"{errors[-1] if errors else 'none'!r}",
            DBOSErrorCode.MAX_STEP_RETRIES_EXCEEDED,
        )


class DBOSNotAuthorizedError(DBOSException):
    """The authenticated user holds none of the roles a function requires."""

    status_code = 403

    def __init__(self, message: str) -> None:
        super().__init__(message, DBOSErrorCode.NOT_AUTHORIZED)


class DBOSConflictingWorkflowError(DBOSException):
    """A workflow ID was reused for a different function, class or configured instance."""

    def __init__(self, workflow_id: str, message: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            f"Conflicting workflow invocation with the same ID ({workflow_id}): {message}",
            DBOSErrorCode.CONFLICTING_WORKFLOW,
        )


class DBOSUnexpectedStepError(DBOSException):
    """Replay met a different operation at a recorded function ID: the code changed."""

    def __init__(self, workflow_id: str, function_id: int, expected: str, recorded: str) -> None:
        self.workflow_id = workflow_id
        self.function_id = function_id
        self.expected = expected
        self.recorded = recorded
        super().__init__(
            f"During replay of workflow {workflow_id}, function {expected} met the record of "
            f"{recorded} at function ID {function_id}. Workflows must be deterministic: the "
            "code changed since this workflow started.",
            DBOSErrorCode.UNEXPECTED_STEP,
        )


class DBOSQueueDeduplicatedError(DBOSException):
    """A workflow with this deduplication ID is already active on the queue."""

    def __init__(self, workflow_id: str, queue_name: str, deduplication_id: str) -> None:
        self.workflow_id = workflow_id
        self.queue_name = queue_name
        self.deduplication_id = deduplication_id
        super().__init__(
            f"Workflow {workflow_id} was deduplicated: deduplication ID {deduplication_id} is "
            f"already active on queue {queue_name}",
            DBOSErrorCode.QUEUE_DEDUPLICATED,
        )


class DBOSAwaitedWorkflowCancelledError(DBOSException):
    """The awaited workflow was cancelled."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            f"Awaited workflow {workflow_id} was cancelled",
            DBOSErrorCode.AWAITED_WORKFLOW_CANCELLED,
        )


class DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded(DBOSException):
    """The awaited workflow exceeded its maximum recovery attempts."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            f"Awaited workflow {workflow_id} exceeded its maximum recovery attempts",
            DBOSErrorCode.AWAITED_WORKFLOW_MAX_RECOVERY_ATTEMPTS_EXCEEDED,
        )


class DBOSStepTimeoutError(DBOSException):
    """An attempt of a step ran longer than its ``timeout_seconds``."""

    def __init__(self, step_name: str, timeout_seconds: float) -> None:
        self.step_name = step_name
        self.timeout_seconds = timeout_seconds
        super().__init__(
            f"Step {step_name} timed out after {timeout_seconds} seconds",
            DBOSErrorCode.STEP_TIMEOUT,
        )


class DBOSConflictingRegistrationError(DBOSException):
    """The same name was registered twice for different functions or decorator types."""

    def __init__(self, name: str, message: str | None = None) -> None:
        self.name = name
        super().__init__(
            message or f"{name} is already registered with a different definition",
            DBOSErrorCode.CONFLICTING_REGISTRATION,
        )


class DBOSSerializationError(DBOSException):
    """A value cannot be serialized (or deserialized); ``type_name`` names its type."""

    def __init__(self, message: str, type_name: str | None = None) -> None:
        self.type_name = type_name
        super().__init__(message, DBOSErrorCode.SERIALIZATION)


class DBOSConfigurationError(DBOSException):
    """A configuration key is unknown or a value is invalid."""

    def __init__(self, message: str) -> None:
        super().__init__(message, DBOSErrorCode.CONFIGURATION)


class DBOSNotLaunchedError(DBOSException):
    """The operation needs a launched runtime: call ``DBOS.launch()`` or ``DBOS.launch_async()``."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "DBOS is not launched: create DBOS(config=...) and call DBOS.launch() "
            "or await DBOS.launch_async() first",
            DBOSErrorCode.NOT_LAUNCHED,
        )


class DBOSBlockingCallInLoopError(DBOSException):
    """A blocking sync API was called from a thread running an event loop."""

    def __init__(self, operation: str, alternative: str) -> None:
        self.operation = operation
        self.alternative = alternative
        super().__init__(
            f"{operation} blocks and was called from a running event loop; "
            f"use {alternative} instead",
            DBOSErrorCode.BLOCKING_CALL_IN_LOOP,
        )


class DBOSNotInWorkflowError(DBOSException):
    """An API that only makes sense inside a workflow (``recv``, ``sleep``, ...) was called outside one."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        super().__init__(
            f"{operation} must be called from inside a workflow", DBOSErrorCode.NOT_IN_WORKFLOW
        )


class DBOSInvalidArgumentError(DBOSException, ValueError):
    """A public entry point was given a bad argument (also a ``ValueError``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, DBOSErrorCode.INVALID_ARGUMENT)


class DBOSQueueNotFoundError(DBOSInvalidArgumentError):
    """No queue of this name is declared in code here or registered in the system database
    (also a ``ValueError``)."""

    def __init__(self, queue_name: str) -> None:
        self.queue_name = queue_name
        super().__init__(
            f"Queue {queue_name!r} does not exist: declare it with Queue(...) or register it "
            "with DBOS.register_queue"
        )


class DBOSDatabaseUnavailableError(DBOSException):
    """The system database could not be reached within the retry limit.

    Only callers outside workflows see it (a workflow waits for the database instead).
    ``waited_seconds`` is how long the call kept retrying; ``__cause__`` is the last error.
    """

    status_code = 503

    def __init__(self, waited_seconds: float, last_error: BaseException | str) -> None:
        self.waited_seconds = waited_seconds
        super().__init__(
            f"The system database was unavailable for {waited_seconds:.1f}s; "
            f"last error: {last_error!r}",
            DBOSErrorCode.DATABASE_UNAVAILABLE,
        )


class DBOSQueryTimeoutError(DBOSException):
    """A query of the system database ran longer than its timeout."""

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        super().__init__(
            f"The query timed out after {timeout_seconds} seconds", DBOSErrorCode.QueryTimeout
        )


class DBOSStreamTimeoutError(DBOSException):
    """No stream value came within the timeout, or the stream ended before the offset read."""

    def __init__(self, workflow_id: str, key: str, timeout_seconds: float | None = None) -> None:
        self.workflow_id = workflow_id
        self.key = key
        self.timeout_seconds = timeout_seconds
        waited = f" within {timeout_seconds} seconds" if timeout_seconds is not None else ""
        super().__init__(
            f"No value of stream {key!r} of workflow {workflow_id}{waited}",
            DBOSErrorCode.StreamTimeout,
        )


class DBOSStreamNondeterminismError(DBOSException):
    """A workflow read the same stream from two places at once (replay could not repeat it)."""

    def __init__(self, workflow_id: str, key: str) -> None:
        self.workflow_id = workflow_id
        self.key = key
        super().__init__(
            f"Workflow {workflow_id} read stream {key!r} concurrently",
            DBOSErrorCode.StreamNondeterminism,
        )


class DBOSStepNondeterminismError(DBOSException):
    """A step's function ID was used twice in one execution of a workflow."""

    def __init__(self, workflow_id: str, step_id: int) -> None:
        self.workflow_id = workflow_id
        self.step_id = step_id
        super().__init__(
            f"Workflow {workflow_id} used step ID {step_id} twice",
            DBOSErrorCode.StepNondeterminism,
        )


class DBOSPatchNondeterminismError(DBOSException):
    """A workflow's patches were checked in a different order than when it first ran."""

    def __init__(self, workflow_id: str, patch_name: str, details: str) -> None:
        self.workflow_id = workflow_id
        self.patch_name = patch_name
        super().__init__(
            f"Patch {patch_name!r} of workflow {workflow_id}: {details}",
            DBOSErrorCode.PatchNondeterminism,
        )


class DBOSWorkflowIDInUseError(DBOSException):
    """A start with ``workflow_id_reuse_policy="reject"`` found its workflow ID taken."""

    status_code = 409

    def __init__(self, workflow_id: str, workflow_status: str, workflow_name: str) -> None:
        self.workflow_id = workflow_id
        self.workflow_status = workflow_status
        self.workflow_name = workflow_name
        super().__init__(
            f"Workflow ID {workflow_id} is in use by {workflow_name} ({workflow_status})",
            DBOSErrorCode.WorkflowIDInUse,
        )


class DBOSWorkflowConflictIDError(DBOSBaseException):
    """Another execution of this workflow recorded the step first; this execution stops."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"Conflicting workflow ID {workflow_id}", DBOSErrorCode.CONFLICT_ID)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.workflow_id,))


class DBOSWorkflowCancelledError(DBOSBaseException):
    """The workflow was cancelled; its execution stops at once."""

    def __init__(self, message: str) -> None:
        super().__init__(message, DBOSErrorCode.WORKFLOW_CANCELLED)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message,))

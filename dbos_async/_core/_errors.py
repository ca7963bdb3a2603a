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
    └── DBOSDatabaseUnavailableError    (dbos_async: the system database stayed away too long)

    BaseException
    ├── DBOSWorkflowConflictIDError     (another execution recorded this step first)
    └── DBOSWorkflowCancelledError      (the workflow was cancelled while running)

The two ``BaseException`` subclasses stop a workflow's execution without being caught by
user code's ``except Exception``, as in DBOS.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DBOSAwaitedWorkflowCancelledError",
    "DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded",
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
    "DBOSQueueDeduplicatedError",
    "DBOSRecoveryError",
    "DBOSSerializationError",
    "DBOSStepTimeoutError",
    "DBOSUnexpectedStepError",
    "DBOSWorkflowCancelledError",
    "DBOSWorkflowConflictIDError",
    "DBOSWorkflowFunctionNotFoundError",
    "MaxRecoveryAttemptsExceededError",
]


class DBOSErrorCode:
    """DBOS's numeric error codes (``DBOSException.dbos_error_code``)."""

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
    # dbos_async's own codes start at 100.
    SERIALIZATION = 100
    CONFIGURATION = 101
    NOT_LAUNCHED = 102
    BLOCKING_CALL_IN_LOOP = 103
    INVALID_ARGUMENT = 104
    NOT_IN_WORKFLOW = 105
    DATABASE_UNAVAILABLE = 106


class DBOSException(Exception):
    """Base class of every error dbos_async raises to user code.

    ``message`` is the human-readable text, ``dbos_error_code`` DBOS's numeric code and
    ``status_code`` the HTTP status a web integration answers with (500 unless set).
    """

    status_code: int = 500

    def __init__(self, message: str, dbos_error_code: int | None = None) -> None:
        self.message = message
        self.dbos_error_code = dbos_error_code
        super().__init__(message)

    def __str__(self) -> str:
        return f"DBOS Error {self.dbos_error_code}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_dbos_exception, (type(self), self.__dict__.copy()))


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


class DBOSWorkflowConflictIDError(BaseException):
    """Another execution of this workflow recorded the step first; this execution stops."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        self.message = f"Conflicting workflow ID {workflow_id}"
        self.dbos_error_code = DBOSErrorCode.CONFLICT_ID
        super().__init__(self.message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.workflow_id,))


class DBOSWorkflowCancelledError(BaseException):
    """The workflow was cancelled; its execution stops at once."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.dbos_error_code = DBOSErrorCode.WORKFLOW_CANCELLED
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message,))

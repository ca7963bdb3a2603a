"""dbos_async: durable workflows for asyncio on Postgres, with DBOS Transact's API.

Change ``from dbos import ...`` to ``from dbos_async import ...``; decorate ``async def`` (or
plain ``def``) functions with ``@DBOS.workflow()`` and ``@DBOS.step()``; every step's result is
checkpointed in Postgres, and unfinished workflows resume after a crash.
"""

from __future__ import annotations

from . import error
from ._core._config import DBOSConfig
from ._core._context import (
    DBOSContextEnsure,
    DBOSContextSetAuth,
    SetWorkflowAttributes,
    SetWorkflowID,
    SetWorkflowTimeout,
    StepStatus,
    WorkflowIDReusePolicy,
)
from ._core._portable import PortableWorkflowError, WorkflowSerializationFormat
from ._core._registry import DBOSConfiguredInstance
from ._core._serialization import DBOSPortableJSONSerializer, Serializer
from ._core._status import StepInfo, WorkflowStatus, WorkflowStatusString
from ._core._tracing import PropagateOtelContext
from ._dbos import DBOS
from ._facade._client import DBOSClient
from ._facade._debouncer import Debouncer, DebouncerClient
from ._features._arg_validation import make_pydantic_args_validator, pydantic_args_validator
from ._features._datasource_async import AsyncSQLAlchemyDatasource
from ._features._datasource_sync import SQLAlchemyDatasource
from ._features._decorators import StepOptions
from ._features._enqueue import DuplicationPolicy, SetEnqueueOptions
from ._features._enqueue_by_name import EnqueueOptions
from ._features._handles import WorkflowHandle, WorkflowHandleAsync
from ._features._messaging import SendMessage
from ._features._queue import Queue
from ._features._reservations import StepReservation
from ._features._schedules import ClientScheduleInput, ScheduleInput, WorkflowSchedule
from ._features._transactions import DatasourceOptions
from ._features._versions import VersionInfo
from ._setup import run_dbos_database_migrations
from .error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded,
    DBOSBaseException,
    DBOSBlockingCallInLoopError,
    DBOSConfigurationError,
    DBOSConflictingRegistrationError,
    DBOSConflictingWorkflowError,
    DBOSDatabaseUnavailableError,
    DBOSException,
    DBOSInitializationError,
    DBOSInvalidArgumentError,
    DBOSMaxStepRetriesExceeded,
    DBOSNonExistentWorkflowError,
    DBOSNotAuthorizedError,
    DBOSNotInWorkflowError,
    DBOSNotLaunchedError,
    DBOSPatchNondeterminismError,
    DBOSQueryTimeoutError,
    DBOSQueueDeduplicatedError,
    DBOSRecoveryError,
    DBOSSerializationError,
    DBOSStepNondeterminismError,
    DBOSStepTimeoutError,
    DBOSStreamNondeterminismError,
    DBOSStreamTimeoutError,
    DBOSUnexpectedStepError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowConflictIDError,
    DBOSWorkflowFunctionNotFoundError,
    DBOSWorkflowIDInUseError,
    MaxRecoveryAttemptsExceededError,
)

__all__ = [
    "AsyncSQLAlchemyDatasource",
    "DBOS",
    "DBOSAwaitedWorkflowCancelledError",
    "DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded",
    "DBOSBaseException",
    "DBOSBlockingCallInLoopError",
    "ClientScheduleInput",
    "DBOSClient",
    "DBOSConfig",
    "DBOSConfigurationError",
    "DBOSConfiguredInstance",
    "DBOSConflictingRegistrationError",
    "DBOSConflictingWorkflowError",
    "DBOSContextEnsure",
    "DBOSContextSetAuth",
    "DBOSDatabaseUnavailableError",
    "DBOSException",
    "DBOSInitializationError",
    "DBOSInvalidArgumentError",
    "DBOSMaxStepRetriesExceeded",
    "DBOSNonExistentWorkflowError",
    "DBOSNotAuthorizedError",
    "DBOSNotInWorkflowError",
    "DBOSNotLaunchedError",
    "DBOSPatchNondeterminismError",
    "DBOSPortableJSONSerializer",
    "DBOSQueryTimeoutError",
    "DBOSQueueDeduplicatedError",
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
    "DatasourceOptions",
    "Debouncer",
    "DebouncerClient",
    "DuplicationPolicy",
    "EnqueueOptions",
    "MaxRecoveryAttemptsExceededError",
    "PortableWorkflowError",
    "PropagateOtelContext",
    "Queue",
    "SQLAlchemyDatasource",
    "ScheduleInput",
    "SendMessage",
    "Serializer",
    "SetEnqueueOptions",
    "SetWorkflowAttributes",
    "SetWorkflowID",
    "SetWorkflowTimeout",
    "StepInfo",
    "StepOptions",
    "StepReservation",
    "StepStatus",
    "VersionInfo",
    "WorkflowHandle",
    "WorkflowHandleAsync",
    "WorkflowIDReusePolicy",
    "WorkflowSchedule",
    "WorkflowSerializationFormat",
    "WorkflowStatus",
    "WorkflowStatusString",
    "error",
    "make_pydantic_args_validator",
    "pydantic_args_validator",
    "run_dbos_database_migrations",
]

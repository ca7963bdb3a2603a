"""The public surface changes only on purpose: this list pins what ``dbos_async`` exports."""

from __future__ import annotations

import typing

import dbos_async

EXPECTED = {
    "DBOS",
    "DBOSAwaitedWorkflowCancelledError",
    "DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded",
    "DBOSBaseException",
    "DBOSBlockingCallInLoopError",
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
    "DuplicationPolicy",
    "EnqueueOptions",
    "MaxRecoveryAttemptsExceededError",
    "PortableWorkflowError",
    "PropagateOtelContext",
    "Queue",
    "SendMessage",
    "SQLAlchemyDatasource",
    "AsyncSQLAlchemyDatasource",
    "DatasourceOptions",
    "Serializer",
    "SetEnqueueOptions",
    "SetWorkflowAttributes",
    "SetWorkflowID",
    "SetWorkflowTimeout",
    "StepInfo",
    "StepOptions",
    "StepReservation",
    "StepStatus",
    "WorkflowHandle",
    "WorkflowHandleAsync",
    "WorkflowIDReusePolicy",
    "WorkflowSerializationFormat",
    "WorkflowStatus",
    "WorkflowStatusString",
    "error",
    "make_pydantic_args_validator",
    "pydantic_args_validator",
    "run_dbos_database_migrations",
}

DBOS_METHODS = {
    "launch",
    "launch_async",
    "destroy",
    "destroy_async",
    "reset_system_database",
    "workflow",
    "step",
    "dbos_class",
    "scheduled",
    "start_workflow",
    "start_workflow_async",
    "retrieve_workflow",
    "retrieve_workflow_async",
    "get_result",
    "get_result_async",
    "get_workflow_status",
    "get_workflow_status_async",
    "run_step",
    "run_step_async",
    "send",
    "send_async",
    "recv",
    "recv_async",
    "set_event",
    "set_event_async",
    "get_event",
    "get_event_async",
    "get_all_events",
    "get_all_events_async",
    "sleep",
    "sleep_async",
    "write_stream",
    "write_stream_async",
    "close_stream",
    "close_stream_async",
    "read_stream",
    "read_stream_async",
    "read_stream_offset",
    "read_stream_offset_async",
    "send_bulk",
    "send_bulk_async",
    "register_queue",
    "register_queue_async",
    "retrieve_queue",
    "retrieve_queue_async",
    "list_queues",
    "list_queues_async",
    "delete_queue",
    "delete_queue_async",
    "enqueue_workflow",
    "enqueue_workflow_async",
    "enqueue_workflow_with_options",
    "enqueue_workflow_with_options_async",
    "listen_queues",
    "reserve_step",
    "wait_first",
    "wait_first_async",
    "cancel_workflow",
    "cancel_workflow_async",
    "list_workflows",
    "list_workflows_async",
    "list_queued_workflows",
    "list_queued_workflows_async",
    "list_workflow_steps",
    "list_workflow_steps_async",
    "resume_workflow",
    "resume_workflow_async",
    "fork_workflow",
    "fork_workflow_async",
    "delete_workflow",
    "delete_workflow_async",
}


def test_exports_are_pinned() -> None:
    assert set(dbos_async.__all__) == EXPECTED
    for name in EXPECTED:
        exported = getattr(dbos_async, name)
        if typing.get_origin(exported) is typing.Literal:
            continue  # a type alias (its values are documented where it is defined)
        assert exported.__doc__, f"{name} has no docstring"


def test_dbos_facade_methods() -> None:
    for name in DBOS_METHODS:
        assert callable(getattr(dbos_async.DBOS, name)), name


def test_every_error_is_a_dbos_exception_or_stops_execution() -> None:
    for name in EXPECTED - {"PortableWorkflowError"}:  # a workflow's own error, read back
        obj = getattr(dbos_async, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            stops = issubclass(obj, dbos_async.DBOSBaseException)
            assert issubclass(obj, dbos_async.DBOSException) != stops, name
            assert not stops or name in {
                "DBOSBaseException",
                "DBOSWorkflowCancelledError",
                "DBOSWorkflowConflictIDError",
            }, name

"""The ``DBOS`` façade's schedules stored in the system database (``_features/_schedules``)."""

from __future__ import annotations

from .._features import _schedules
from ._base import FacadeBase, blocking, blocking_handle, blocking_handles

__all__ = ["ScheduleAPI"]


class ScheduleAPI(FacadeBase):
    """``create_schedule``, ``apply_schedules`` and their kin, each in a sync and an
    ``_async`` form."""

    create_schedule_async = staticmethod(_schedules.create_schedule)
    create_schedule = staticmethod(blocking("create_schedule", _schedules.create_schedule))
    apply_schedules_async = staticmethod(_schedules.apply_schedules)
    apply_schedules = staticmethod(blocking("apply_schedules", _schedules.apply_schedules))
    list_schedules_async = staticmethod(_schedules.list_schedules)
    list_schedules = staticmethod(blocking("list_schedules", _schedules.list_schedules))
    get_schedule_async = staticmethod(_schedules.get_schedule)
    get_schedule = staticmethod(blocking("get_schedule", _schedules.get_schedule))
    delete_schedule_async = staticmethod(_schedules.delete_schedule)
    delete_schedule = staticmethod(blocking("delete_schedule", _schedules.delete_schedule))
    pause_schedule_async = staticmethod(_schedules.pause_schedule)
    pause_schedule = staticmethod(blocking("pause_schedule", _schedules.pause_schedule))
    resume_schedule_async = staticmethod(_schedules.resume_schedule)
    resume_schedule = staticmethod(blocking("resume_schedule", _schedules.resume_schedule))
    trigger_schedule_async = staticmethod(_schedules.trigger_schedule)
    trigger_schedule = staticmethod(
        blocking_handle("trigger_schedule", _schedules.trigger_schedule)
    )
    backfill_schedule_async = staticmethod(_schedules.backfill_schedule)
    backfill_schedule = staticmethod(
        blocking_handles("backfill_schedule", _schedules.backfill_schedule)
    )

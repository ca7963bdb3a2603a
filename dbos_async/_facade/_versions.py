"""The ``DBOS`` façade's application versions and patches.

Each sync form is its async form through the one bridge (``blocking``).
"""

from __future__ import annotations

from .._features import _patches, _versions
from ._base import FacadeBase, blocking

__all__ = ["VersionAPI"]


class VersionAPI(FacadeBase):
    """Application versions (which one is the latest) and patches (which code path an execution
    of a workflow takes)."""

    list_application_versions_async = staticmethod(_versions.list_application_versions)
    list_application_versions = staticmethod(
        blocking("list_application_versions", _versions.list_application_versions)
    )
    get_latest_application_version_async = staticmethod(_versions.get_latest_application_version)
    get_latest_application_version = staticmethod(
        blocking("get_latest_application_version", _versions.get_latest_application_version)
    )
    set_latest_application_version_async = staticmethod(_versions.set_latest_application_version)
    set_latest_application_version = staticmethod(
        blocking("set_latest_application_version", _versions.set_latest_application_version)
    )

    patch_async = staticmethod(_patches.patch)
    patch = staticmethod(blocking("patch", _patches.patch))
    deprecate_patch_async = staticmethod(_patches.deprecate_patch)
    deprecate_patch = staticmethod(blocking("deprecate_patch", _patches.deprecate_patch))

"""A read model failing: the error that names its record, and reporting it.

Recorded where every worker and status reader sees it (failures.py), announced
on the progress channel, and logged: ERROR for a failed rebuild and for a
stalled read model, WARNING while retries may still heal it.
"""

from __future__ import annotations

import logging
from typing import Any

from application.projecting.failures import Failure, describe
from application.projecting.runtime import Runtime

log = logging.getLogger("application.projecting")


class ProjectionFailed(RuntimeError):
    """A read model could not process a record (recorded; retried with backoff)."""

    def __init__(
        self, name: str, upstream: str | None, position: int | None, error: str
    ) -> None:
        where = f"{upstream} position {position}" if upstream else "no record"
        super().__init__(f"{name} failed at {where}: {error}")
        self.name = name
        self.upstream = upstream  # None: it failed before reaching a record
        self.position = position
        self.error = error  # class and message, short (describe())


def as_failed(name: str, error: Exception) -> ProjectionFailed:
    """A failure before any record could be named is kept without a position."""
    if isinstance(error, ProjectionFailed):
        return error
    return ProjectionFailed(name, None, None, describe(error))


def record_failure(
    rt: Runtime, failed: ProjectionFailed, version: int, *, rebuild: bool = False
) -> Failure:
    """Keep the failure where every worker and status reader sees it; log it."""
    failure = rt.failures.record(
        failed.name, version, failed.upstream, failed.position, failed.error, rt.retry
    )
    with rt.datastore.transaction(commit=True) as curs:
        rt.notify(curs, f"failed:{failed.name}:{version}")
    stalled = failure.failures >= rt.retry.stall_after
    if rebuild:
        message = "rebuild of %s failed, the live copy keeps serving: %s"
    elif stalled:
        message = "projection %s is stalled, retrying with backoff: %s"
    else:
        message = "projection %s failed, retrying with backoff: %s"
    level = logging.ERROR if rebuild or stalled else logging.WARNING
    log.log(level, message, failed.name, failed, extra=log_fields(failure))
    return failure


def log_fields(failure: Failure) -> dict[str, Any]:
    """Log fields of a failure."""
    return {
        "projection": failure.name,
        "version": failure.version,
        "upstream": failure.upstream,
        "position": failure.position,
        "failures": failure.failures,
        "error": failure.error,
    }

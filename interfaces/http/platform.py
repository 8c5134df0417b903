"""Platform operations: the read models shared by every tenant (status, rebuilds).

Only the `platform` role: positions, heads and event counts are platform-wide
volume, and a rebuild replays every tenant's history. A tenant's `ops` sees its
freshness at GET /api/ops/freshness instead.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import anyio
import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from application.audit.writer import AuditWriter
from application.projecting.failures import Failure
from application.projecting.projector import Projector
from application.projecting.status import ProjectionStatus
from domain.audit import AuditRecord
from interfaces.http.audited import record_change
from interfaces.http.auth import Principal, requires_role
from interfaces.http.errors import UnknownProjection


class UpstreamPosition(msgspec.Struct):
    upstream: str
    position: int
    head: int
    lag_events: int
    lag_seconds: float


class FailureDetail(msgspec.Struct):
    version: int
    upstream: str | None  # null: it failed before reaching a record
    position: int | None  # the record it fails on
    error: str
    failures: int  # in a row, at this position
    first_failed_at: datetime
    last_failed_at: datetime
    next_retry_at: datetime


class ProjectionOut(msgspec.Struct):
    name: str
    state: str  # ok, behind, rebuilding, stalled
    data_through: datetime | None
    live_version: int
    building_version: int | None
    rebuild_running: bool
    rebuild_requested_at: datetime | None
    upstreams: list[UpstreamPosition]
    failure: FailureDetail | None  # the live copy's, while it keeps failing
    rebuild_failure: FailureDetail | None  # why the last rebuild did not finish


class RebuildOut(msgspec.Struct, omit_defaults=True):
    name: str
    status: str
    state: str  # of the live copy, which keeps answering meanwhile
    note: str | None = None


def failure_out(failure: Failure | None) -> FailureDetail | None:
    if failure is None:
        return None
    return FailureDetail(
        failure.version,
        failure.upstream,
        failure.position,
        failure.error,
        failure.failures,
        failure.first_failed_at,
        failure.last_failed_at,
        failure.retry_at,
    )


def projection_out(status: ProjectionStatus) -> ProjectionOut:
    return ProjectionOut(
        status.name,
        status.state,
        status.data_through,
        status.live_version,
        status.building_version,
        status.rebuild_running,
        status.rebuild_requested_at,
        [
            UpstreamPosition(
                u.upstream, u.position, u.head, u.lag_events, round(u.lag_seconds, 3)
            )
            for u in status.upstreams
        ],
        failure_out(status.failure),
        failure_out(status.rebuild_failure),
    )


def rebuild_note(status: ProjectionStatus) -> str | None:
    """What the caller should expect of the rebuild just requested."""
    if status.state == "stalled" and status.failure:
        return _same_record_again(status.name, "is stalled", status.failure)
    if status.rebuild_failure:
        return _same_record_again(
            status.name, "failed to rebuild", status.rebuild_failure
        )
    if status.rebuild_running:
        return "A rebuild is running now; this request starts another after it."
    return None


def _same_record_again(name: str, what: str, failure: Failure) -> str:
    return (
        f"{name} {what} at {_where(failure)} ({failure.error}). A rebuild replays"
        " the same history and will stop at the same record unless its cause has"
        " been fixed; the live copy keeps serving meanwhile, and a failed rebuild"
        " shows as rebuild_failure in GET /api/platform/projections."
    )


def _where(failure: Failure) -> str:
    if failure.upstream is None:
        return "no particular record"
    return f"{failure.upstream} position {failure.position}"


class PlatformController(Controller):
    path = "/api/platform"
    tags = ["platform"]
    guards = [requires_role("platform")]

    @get(
        "/projections",
        summary="State, positions, heads, lag and failures of every read model",
    )
    async def list_projections(
        self, projector: NamedDependency[Projector]
    ) -> list[ProjectionOut]:
        statuses = await anyio.to_thread.run_sync(projector.status)
        return [projection_out(s) for s in statuses]

    @post(
        "/projections/{name:str}/rebuild",
        status_code=202,
        summary="Rebuild a read model from the full history, then swap it in",
    )
    async def rebuild_projection(
        self,
        request: Request[Principal, Any, Any],
        name: FromPath[str],
        projector: NamedDependency[Projector],
        audit_writer: NamedDependency[AuditWriter],
    ) -> RebuildOut:
        """The live copy keeps answering until the rebuilt one replaces it."""
        if name not in projector.projections:
            raise UnknownProjection(f"name: no read model called {name!r}")
        await anyio.to_thread.run_sync(projector.request_rebuild, name)
        await record_change(
            audit_writer,
            request,
            AuditRecord.ProjectionRebuildRequested,
            projection=name,
        )
        status = await anyio.to_thread.run_sync(projector.status_of, name)
        return RebuildOut(name, "requested", status.state, rebuild_note(status))

"""Auditor endpoints: the tenant's audit history and the stored export bytes."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Stream

from application.serving.audit import AuditReader
from application.settings import Settings
from application.tokens import Principal
from interfaces.http.auth import requires_role
from interfaces.http.billing import file_chunks
from interfaces.http.params import parse_limit, parse_position, parse_since
from projections.audit_log.reader import AuditEventOut, AuditQuery


class AuditController(Controller):
    path = "/api/audit"
    tags = ["audit"]
    guards = [requires_role("auditor")]

    @get("/events", summary="Audit and correction history of the tenant, oldest first")
    async def list_events(  # noqa: PLR0913
        self,
        request: Request[Principal, Any, Any],
        audit_reader: NamedDependency[AuditReader],
        type: FromQuery[str | None] = None,
        since: FromQuery[str | None] = None,
        after: FromQuery[str | None] = None,
        limit: FromQuery[str | None] = None,
    ) -> list[AuditEventOut]:
        """`type` filters (e.g. UsageViewed); page with `after`=<last position>."""
        return await audit_reader.list_events(
            AuditQuery(
                request.user.tenant_id,
                event_type=type or None,
                since=parse_since(since),
                after=parse_position(after, "after"),
                limit=parse_limit(limit, default=100, maximum=1000),
            )
        )

    @get(
        "/exports/{export_id:uuid}",
        summary="The exact bytes of a past CSV export",
        media_type="text/csv",
    )
    async def get_export_file(
        self,
        request: Request[Principal, Any, Any],
        export_id: FromPath[UUID],
        audit_reader: NamedDependency[AuditReader],
        settings: NamedDependency[Settings],
    ) -> Stream:
        record = await audit_reader.get_export(request.user.tenant_id, export_id)
        path = settings.export_dir / record["file_key"] if record else None
        if record is None or path is None or not path.is_file():
            raise NotFoundException(f"export {export_id} not found")
        return Stream(
            file_chunks(path),
            media_type="text/csv; charset=utf-8",
            headers={"X-Content-SHA256": record["sha256"]},
        )

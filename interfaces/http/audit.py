"""Auditor endpoints: the tenant's audit history, the stored export bytes, answers
as of a past point of the history, and replays of past views and exports."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Stream

from application.serving.anomalies import STATUSES
from application.serving.audit import AuditReader
from application.serving.replay import ReplayService
from application.settings import Settings
from application.tokens import Principal
from interfaces.http.auth import requires_role
from interfaces.http.billing import file_chunks
from interfaces.http.dependencies import Billing
from interfaces.http.params import (
    parse_choice,
    parse_cut,
    parse_identifier,
    parse_limit,
    parse_period,
    parse_position,
    parse_since,
    request_id,
)
from projections.audit_log.reader import AuditEventOut, AuditQuery
from projections.usage_daily.query import UsageQuery


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

    @get(
        "/views/{audit_event_id:int}/replay",
        summary="A past view or export reproduced from the history, and whether it"
        " is byte for byte what was sent",
    )
    async def replay_view(
        self,
        request: Request[Principal, Any, Any],
        audit_event_id: FromPath[int],
        replay: NamedDependency[ReplayService],
    ) -> Response[bytes]:
        """`body` is the JSON served (or the CSV text of an export); `verified`
        is true when its SHA-256 equals the one recorded when it was sent."""
        record = await replay.recorded(request.user.tenant_id, audit_event_id)
        if record is None:
            raise NotFoundException(f"audit event {audit_event_id} not found")
        replayed = await replay.replay(
            request.user, record, request_id=request_id(request)
        )
        return Response(
            _encode(
                ReplayOut(
                    id=record.id,
                    type=record.type,
                    occurred_at=record.occurred_at,
                    verified=replayed.verified,
                    recorded_sha256=record.recorded_sha256,
                    replayed_sha256=replayed.replayed_sha256,
                    stored_sha256=replayed.stored_sha256,
                    body=replayed.body.decode()
                    if replayed.is_csv
                    else msgspec.Raw(replayed.body),
                )
            ),
            media_type="application/json",
        )

    @get("/usage", summary="Usage as the history stood at a past instant or position")
    async def usage_as_of(  # noqa: PLR0913 - one argument per query parameter
        self,
        request: Request[Principal, Any, Any],
        billing: NamedDependency[Billing],
        as_of: FromQuery[str | None] = None,
        position: FromQuery[str | None] = None,
        positions: FromQuery[str | None] = None,
        period: FromQuery[str | None] = None,
        workspace_id: FromQuery[str | None] = None,
        product_area: FromQuery[str | None] = None,
        group_by: FromQuery[str | None] = None,
    ) -> Response[bytes]:
        """The usage answer's shape, from the history: only events recorded at
        or before `as_of` (or up to metering `position`), calendars as they
        stood. `period` (default current) is resolved at that instant."""
        cut = parse_cut(as_of, position, positions)
        query = UsageQuery.parse(
            request.user.tenant_id,
            period=period,
            workspace_id=workspace_id,
            product_area=product_area,
            group_by=group_by,
        )
        body = await billing.usage.view_at(
            request.user, query, cut, request_id=request_id(request)
        )
        return Response(body, media_type="application/json")

    @get("/forecast", summary="The forecast as the history stood at a past point")
    async def forecast_as_of(  # noqa: PLR0913 - one argument per query parameter
        self,
        request: Request[Principal, Any, Any],
        billing: NamedDependency[Billing],
        as_of: FromQuery[str | None] = None,
        position: FromQuery[str | None] = None,
        positions: FromQuery[str | None] = None,
        period: FromQuery[str | None] = None,
        workspace_id: FromQuery[str | None] = None,
    ) -> Response[bytes]:
        """The forecast answer's shape, derived again from the histories at
        that point (usage, calendar, price book, budget, ticks)."""
        cut = parse_cut(as_of, position, positions)
        body = await billing.forecast.view_at(
            request.user,
            parse_period(period),
            parse_identifier(workspace_id, "workspace_id"),
            cut,
            request_id=request_id(request),
        )
        return Response(body, media_type="application/json")

    @get("/anomalies", summary="The anomaly flags as the history stood at a past point")
    async def anomalies_as_of(  # noqa: PLR0913 - one argument per query parameter
        self,
        request: Request[Principal, Any, Any],
        billing: NamedDependency[Billing],
        as_of: FromQuery[str | None] = None,
        position: FromQuery[str | None] = None,
        positions: FromQuery[str | None] = None,
        period: FromQuery[str | None] = None,
        workspace_id: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
    ) -> Response[bytes]:
        """The anomalies answer's shape, judged again from the histories at
        that point (with the acknowledgements made by then)."""
        cut = parse_cut(as_of, position, positions)
        body = await billing.anomalies.view_at(
            request.user,
            parse_period(period),
            parse_identifier(workspace_id, "workspace_id"),
            parse_choice(status, "status", STATUSES),
            cut,
            request_id=request_id(request),
        )
        return Response(body, media_type="application/json")


class ReplayOut(msgspec.Struct):
    id: int
    type: str
    occurred_at: datetime
    verified: bool  # the bytes derived again are the bytes sent then
    recorded_sha256: str
    replayed_sha256: str
    # Exports: the file in the export store now (null: it is gone).
    stored_sha256: str | None
    body: msgspec.Raw | str  # the JSON served, or the CSV text of an export


_encode = msgspec.json.Encoder().encode

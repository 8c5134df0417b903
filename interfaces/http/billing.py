"""Billing usage endpoints for a tenant's admins: view, export, list exports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Any
from uuid import UUID

import anyio
import msgspec
from litestar import Controller, Request, Response, get
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromQuery
from litestar.response import Stream

from application.serving.usage import UsageOut
from application.serving.waiting import Answer, Wait
from application.tokens import Principal
from interfaces.http.auth import requires_role
from interfaces.http.dependencies import Billing
from interfaces.http.params import parse_limit, parse_min_positions, request_id
from projections.usage_daily.query import UsageQuery


async def requires_enabled_tenant(
    connection: ASGIConnection, _: BaseRouteHandler
) -> None:  # type: ignore[type-arg]
    """The BILLING_ENABLED_TENANTS rollout flag: others see no billing endpoints."""
    settings = connection.app.state.settings
    if not settings.tenant_enabled(connection.user.tenant_id):
        raise NotFoundException("billing usage is not enabled for this tenant")


def usage_query(  # noqa: PLR0913 - one argument per query parameter
    request: Request[Principal, Any, Any],
    period: str | None,
    workspace_id: str | None,
    product_area: str | None,
    group_by: str | None,
    min_position: str | None,
    min_positions: str | None,
) -> tuple[UsageQuery, dict[str, int]]:
    """The five usage query parameters, read alike for the view and the export."""
    query = UsageQuery.parse(
        request.user.tenant_id,
        period=period,
        workspace_id=workspace_id,
        product_area=product_area,
        group_by=group_by,
    )
    return query, parse_min_positions(min_position, min_positions)


def answer_headers(answer: Answer) -> dict[str, str]:
    """X-Cache, and X-Read-Your-Writes when the read was asked to wait."""
    return {"X-Cache": "hit" if answer.hit else "miss", **wait_header(answer.wait)}


def wait_header(wait: Wait | None) -> dict[str, str]:
    """`X-Read-Your-Writes: reached` or `timeout` (the answer may not show the
    writes asked for yet), when the read was asked to wait for them."""
    return {} if wait is None else {"X-Read-Your-Writes": wait.outcome}


class ExportOut(msgspec.Struct):
    export_id: UUID
    workspace_id: str | None
    requested_by_id: str
    period_start: date
    period_end: date
    file_key: str
    row_count: int
    totals: list[dict[str, str]]
    sha256: str
    created_at: datetime
    position: int


class BillingController(Controller):
    path = "/api/billing"
    tags = ["billing"]
    guards = [requires_role("admin"), requires_enabled_tenant]

    @get("/usage", summary="Daily usage of a billing period, with totals")
    async def get_usage(  # noqa: PLR0913 - one argument per query parameter
        self,
        request: Request[Principal, Any, Any],
        billing: NamedDependency[Billing],
        period: FromQuery[str | None] = None,
        workspace_id: FromQuery[str | None] = None,
        product_area: FromQuery[str | None] = None,
        group_by: FromQuery[str | None] = None,
        min_position: FromQuery[str | None] = None,
        min_positions: FromQuery[str | None] = None,
    ) -> Response[UsageOut]:
        """`period` is current, previous or YYYY-MM (the month a period starts in,
        tenant calendar). `group_by` is any of day, product_area, workspace (comma
        separated; all three by default). `min_position` waits briefly for the
        read model to reach an ingest response's position."""
        query, wanted = usage_query(
            request,
            period,
            workspace_id,
            product_area,
            group_by,
            min_position,
            min_positions,
        )
        answer = await billing.usage.view(
            request.user, query, min_positions=wanted, request_id=request_id(request)
        )
        billing.metrics.cache.labels("hit" if answer.hit else "miss").inc()
        return Response(
            answer.body,  # type: ignore[arg-type] # pre-encoded UsageOut
            media_type="application/json",
            headers=answer_headers(answer),
        )

    @get(
        "/usage/export",
        summary="The same usage as CSV (streamed; totals equal the API's)",
        media_type="text/csv",
    )
    async def export_usage(  # noqa: PLR0913 - one argument per query parameter
        self,
        request: Request[Principal, Any, Any],
        billing: NamedDependency[Billing],
        period: FromQuery[str | None] = None,
        workspace_id: FromQuery[str | None] = None,
        product_area: FromQuery[str | None] = None,
        group_by: FromQuery[str | None] = None,
        min_position: FromQuery[str | None] = None,
        min_positions: FromQuery[str | None] = None,
    ) -> Stream:
        """Columns: workspace_id, product_area, usage_date, unit, quantity,
        source_event_count, then first_reported_quantity, late_event_count,
        adjustment_quantity, adjustment_count (recorded after the period
        closed). The bytes are kept under X-Export-File-Key."""
        query, wanted = usage_query(
            request,
            period,
            workspace_id,
            product_area,
            group_by,
            min_position,
            min_positions,
        )
        exported = await billing.exports.export(
            request.user, query, min_positions=wanted, request_id=request_id(request)
        )
        return Stream(
            file_chunks(exported.path),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{exported.filename}"',
                "X-Export-Id": str(exported.export_id),
                "X-Export-File-Key": exported.file_key,
                "X-Content-SHA256": exported.sha256,
                "X-Row-Count": str(exported.row_count),
                **wait_header(exported.wait),
            },
        )

    @get("/usage/exports", summary="The tenant's past CSV exports, newest first")
    async def list_exports(
        self,
        request: Request[Principal, Any, Any],
        billing: NamedDependency[Billing],
        limit: FromQuery[str | None] = None,
    ) -> list[ExportOut]:
        rows = await billing.audit_reader.list_exports(
            request.user.tenant_id, parse_limit(limit)
        )
        return [ExportOut(**r) for r in rows]


async def file_chunks(path: Any) -> AsyncIterator[bytes]:
    """A file's bytes in 64 KiB chunks, without holding it in memory."""
    async with await anyio.open_file(path, "rb") as f:
        while chunk := await f.read(65536):
            yield chunk

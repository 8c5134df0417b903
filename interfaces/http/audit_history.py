"""Auditor endpoints that explain numbers: a daily row's entries, an event's history."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery

from application.serving.explain import ExplainRequest, ExplainService
from application.tokens import Principal
from domain.values import InvalidValue, check_identifier
from interfaces.http.auth import requires_role
from interfaces.http.params import (
    InvalidParameter,
    parse_instant,
    parse_limit,
    parse_position,
    request_id,
)
from projections.history import InvalidCut
from projections.usage_daily.explain import RowKey


class AuditHistoryController(Controller):
    path = "/api/audit"
    tags = ["audit"]
    guards = [requires_role("auditor")]

    @get(
        "/usage/explain",
        summary="The metering events and corrections that sum to one daily row",
    )
    async def explain_usage(  # noqa: PLR0913 - one argument per query parameter
        self,
        request: Request[Principal, Any, Any],
        explainer: NamedDependency[ExplainService],
        workspace_id: FromQuery[str | None] = None,
        product_area: FromQuery[str | None] = None,
        unit: FromQuery[str | None] = None,
        usage_date: FromQuery[str | None] = None,
        as_of: FromQuery[str | None] = None,
        position: FromQuery[str | None] = None,
        after: FromQuery[str | None] = None,
        limit: FromQuery[str | None] = None,
    ) -> Response[bytes]:
        """The row as served now, or `as_of` an instant (or at a metering
        `position`); page with `after`=<next>. Entries of all pages sum to the
        row's quantity and source_event_count."""
        explain = ExplainRequest(
            RowKey.parse(
                request.user.tenant_id,
                workspace_id=workspace_id,
                product_area=product_area,
                unit=unit,
                usage_date=usage_date,
            ),
            as_of=parse_instant(as_of, "as_of"),
            position=parse_position(position, "position"),
            after=parse_position(after, "after") or 0,
            limit=parse_limit(limit, default=100, maximum=1000),
        )
        if explain.as_of is not None and explain.position is not None:
            raise InvalidParameter("position: give as_of or position, not both")
        try:
            body = await explainer.explain(
                request.user, explain, request_id=request_id(request)
            )
        except InvalidCut as e:
            raise InvalidParameter(str(e)) from None
        if body is None:
            raise NotFoundException(
                f"no usage row for workspace {explain.key.workspace_id},"
                f" {explain.key.product_area} {explain.key.unit}"
                f" on {explain.key.usage_date}"
                + (" at that point of the history" if as_of or position else "")
            )
        return Response(body, media_type="application/json")

    @get(
        "/metering-events/{event_id:str}",
        summary="One metering event's whole history: recorded, amended, voided",
    )
    async def metering_event(
        self,
        request: Request[Principal, Any, Any],
        explainer: NamedDependency[ExplainService],
        event_id: FromPath[str],
    ) -> Response[bytes]:
        try:
            checked = check_identifier(event_id)
        except InvalidValue as e:
            raise InvalidParameter(f"event_id: {e}") from None
        body = await explainer.event_history(
            request.user, checked, request_id=request_id(request)
        )
        if body is None:
            raise NotFoundException(f"metering event {checked} not found")
        return Response(body, media_type="application/json")

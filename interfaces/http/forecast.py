"""The projected invoice of a billing period, for a tenant's billing admins."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromQuery

from application.serving.forecast import ForecastOut
from application.tokens import Principal
from interfaces.http.auth import requires_role
from interfaces.http.billing import answer_headers, requires_enabled_tenant
from interfaces.http.dependencies import Billing
from interfaces.http.params import (
    parse_identifier,
    parse_min_positions,
    parse_period,
    request_id,
)


class ForecastController(Controller):
    path = "/api/billing/forecast"
    tags = ["billing"]
    guards = [requires_role("admin"), requires_enabled_tenant]

    @get(summary="Projected invoice of a billing period: an estimate with an 80% band")
    async def get_forecast(  # noqa: PLR0913 - one argument per query parameter
        self,
        request: Request[Principal, Any, Any],
        billing: NamedDependency[Billing],
        period: FromQuery[str | None] = None,
        workspace_id: FromQuery[str | None] = None,
        min_position: FromQuery[str | None] = None,
        min_positions: FromQuery[str | None] = None,
    ) -> Response[ForecastOut]:
        """Charges to date and the projected end-of-period charges (p10, p50,
        p90) per product area and unit and in total, priced through the
        tenant's price book; with `workspace_id`, that workspace's quantities.
        `period` is current (default), previous or YYYY-MM. A closed period
        answers its actuals. `min_positions` (as writes answer) waits briefly
        for the read model to reflect them."""
        answer = await billing.forecast.view(
            request.user,
            parse_period(period),
            parse_identifier(workspace_id, "workspace_id"),
            min_positions=parse_min_positions(min_position, min_positions),
            request_id=request_id(request),
        )
        billing.metrics.cache.labels("hit" if answer.hit else "miss").inc()
        return Response(
            answer.body,  # type: ignore[arg-type] # pre-encoded ForecastOut
            media_type="application/json",
            headers=answer_headers(answer),
        )

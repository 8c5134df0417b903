"""Serving the projected invoice to billing admins: wait, cache, audit, shape.

The answer is an estimate and says so in every response. Like usage, it is
returned only once its ForecastViewed record is durable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import msgspec
from psycopg_pool import AsyncConnectionPool

from application.audit.writer import AuditUnavailable
from application.serving.series_views import SeriesViews, Served
from application.serving.waiting import Answer, Wait
from application.tokens import Principal
from domain.audit import AuditRecord
from domain.currencies import round_money
from projections.forecast.as_of import forecast_at
from projections.forecast.postgres import ForecastProjection
from projections.forecast.reader import (
    ForecastReader,
    ForecastSnapshot,
    LineRow,
    PeriodRow,
)
from projections.history import Cut
from projections.usage_daily.rows import UsagePeriod

CAVEAT = "An estimate from usage so far, not a charge."
INTERVAL = 0.8


class Percentiles(msgspec.Struct):
    p10: Decimal
    p50: Decimal
    p90: Decimal


class ForecastTotal(msgspec.Struct):
    charges_to_date: Decimal
    projected_charges: Percentiles


class ForecastLine(msgspec.Struct, omit_defaults=True):
    product_area: str
    unit: str
    priced: bool
    method: str
    history_days: int
    low_data: bool
    interval_from: str  # own | pooled backtests
    quantity_to_date: Decimal
    projected_quantity: Percentiles
    charges_to_date: Decimal | None = None
    projected_charges: Percentiles | None = None


class Budget(msgspec.Struct):
    amount: Decimal
    left_to_spend: Decimal  # amount - charges to date (negative: over already)
    p50_over: bool
    p90_over: bool
    projected_breach_date: date | None


class ForecastOut(msgspec.Struct, omit_defaults=True):
    """The forecast answer (DESIGN section 6b)."""

    kind: str
    caveat: str
    tenant_id: str
    period: UsagePeriod
    status: str
    currency: str | None
    method: str
    history_days: int
    low_data: bool
    interval: float
    interval_from: str | None
    data_through: datetime | None
    as_of: datetime | None
    position: int
    positions: dict[str, int]
    workspace_id: str | None
    total: ForecastTotal | None
    lines: list[ForecastLine]
    budget: Budget | None
    notes: list[str]
    # Only when asked to wait; added to each answer, never kept in the cache.
    waited: Wait | None = None


class ForecastService(SeriesViews):
    """The projected invoice of one tenant's period."""

    kind = "forecast"
    read_model = ForecastProjection.name
    upstreams = ForecastProjection.upstreams
    reader: ForecastReader

    def __init__(self, pool: AsyncConnectionPool[Any], *args: Any, **kw: Any) -> None:
        super().__init__(pool, ForecastReader(), *args, **kw)
        self._encoder = msgspec.json.Encoder()

    async def view(
        self,
        principal: Principal,
        period: str,
        workspace_id: str | None,
        *,
        min_positions: Mapping[str, int] | None,
        request_id: str,
    ) -> Answer:
        """The encoded answer, whether it came from the cache, how the wait went."""
        tenant = principal.tenant_id

        async def read(conn: Any, snapshot: ForecastSnapshot) -> bytes:
            row, lines = await self.reader.answer(
                conn, tenant, snapshot.period.start, workspace_id
            )
            return self._encoder.encode(
                forecast_out(tenant, workspace_id, snapshot, row, lines)
            )

        served = await self.serve(tenant, period, (workspace_id,), min_positions, read)
        filters = {"period": period, "workspace_id": workspace_id}
        await self.audit_view(principal, served, filters, request_id)
        return Answer(served.sent, served.hit, served.wait)

    async def view_at(
        self,
        principal: Principal,
        period: str,
        workspace_id: str | None,
        cut: Cut,
        *,
        request_id: str,
    ) -> bytes:
        """The answer as the history stood at `cut` (an auditor's as-of read),
        audited as a ForecastViewed that records the cut, so it replays."""
        filters = {"period": period, "workspace_id": workspace_id}
        return await self.view_at_cut(principal, filters, cut, request_id)

    async def derive_at(  # noqa: PLR0913 - the view's question, cut and reading
        self,
        conn: Any,
        tenant: str,
        params: Mapping[str, Any],
        cut: Cut,
        now: datetime,
        *,
        from_ledger: bool = False,
    ) -> tuple[ForecastSnapshot, bytes]:
        workspace_id = params.get("workspace_id")
        snapshot, row, lines = await forecast_at(
            conn,
            tenant,
            params["period"],
            workspace_id,
            cut,
            now,
            from_ledger=from_ledger,
        )
        body = self._encoder.encode(
            forecast_out(tenant, workspace_id, snapshot, row, lines)
        )
        return snapshot, body

    async def audit_view(
        self,
        principal: Principal,
        served: Served,
        params: Mapping[str, Any],
        request_id: str,
    ) -> None:
        snapshot = served.snapshot
        filters = dict(params)
        p = snapshot.period
        try:
            await self.audit.write(
                AuditRecord.ForecastViewed,
                tenant_id=principal.tenant_id,
                actor_id=principal.subject,
                request_id=request_id,
                period={
                    "label": p.label,
                    "start": p.start.isoformat(),
                    "end": p.end.isoformat(),
                    "timezone": p.timezone,
                },
                filters=filters,
                positions=dict(snapshot.positions),
                sha256=hashlib.sha256(served.sent).hexdigest(),
                replay=self.replay_fields(served, filters),
            )
        except Exception as e:
            raise AuditUnavailable(
                f"forecast not served: audit record not written ({e})"
            ) from e


def forecast_out(
    tenant_id: str,
    workspace_id: str | None,
    snapshot: ForecastSnapshot,
    row: PeriodRow | None,
    lines: list[LineRow],
) -> ForecastOut:
    """The answer's shape from the stored rows (pure)."""
    p = snapshot.period
    positions = {n: snapshot.positions.get(n, 0) for n in ForecastProjection.upstreams}
    notes = []
    if row is None:
        notes.append(
            "No usage is known for this period yet, so there is nothing to project."
            if snapshot.clock is None or p.starts_at <= snapshot.clock
            else "This period has not started."
        )
    unpriced = [f"{x.product_area}/{x.unit}" for x in lines if not x.priced]
    if unpriced:
        notes.append(
            "Unpriced (no price in the price book, not counted in the total): "
            + ", ".join(unpriced)
        )
    if workspace_id is not None:
        notes.append(
            "Charges are per tenant (tiers and included quantities apply to its"
            " whole usage): a workspace's answer lists quantities only."
        )
    elif row is not None and row.total is not None and len(lines) > 1:
        notes.append(
            "The total's p10 and p90 add up the lines' (as if they moved together),"
            " so its interval is at least as wide as it needs to be."
        )
    if row is not None:
        status = row.status
    else:
        status = "closed" if snapshot.clock and p.is_closed(snapshot.clock) else "open"
    total = None
    if row is not None and row.total is not None and workspace_id is None:
        to_date, p10, p50, p90 = row.total
        total = ForecastTotal(to_date, Percentiles(p10, p50, p90))
    return ForecastOut(
        kind="estimate",
        caveat=CAVEAT,
        tenant_id=tenant_id,
        period=UsagePeriod(p.start, p.end, p.timezone, status, p.closes_at),
        status=status,
        currency=row.currency if row else None,
        method=(row.method if row else None) or "none",
        history_days=row.history_days if row else 0,
        low_data=row.low_data if row else True,
        interval=INTERVAL,
        interval_from=row.calibration if row else None,
        data_through=row.data_through if row else snapshot.clock,
        as_of=snapshot.clock,
        position=positions.get("metering", 0),
        positions=positions,
        workspace_id=workspace_id,
        total=total,
        lines=[_line(x, workspace_id is None) for x in lines],
        budget=_budget(row) if workspace_id is None and row else None,
        notes=notes,
    )


def _line(x: LineRow, with_charges: bool) -> ForecastLine:
    to_date, p10, p50, p90 = x.quantities
    line = ForecastLine(
        product_area=x.product_area,
        unit=x.unit,
        priced=x.priced,
        method=x.method,
        history_days=x.history_days,
        low_data=x.low_data,
        interval_from=x.calibration,
        quantity_to_date=to_date,
        projected_quantity=Percentiles(p10, p50, p90),
    )
    if with_charges and x.charges is not None:
        c_to_date, c10, c50, c90 = x.charges
        line.charges_to_date = c_to_date
        line.projected_charges = Percentiles(c10, c50, c90)
    return line


def _budget(row: PeriodRow) -> Budget | None:
    if row.budget is None or row.total is None:
        return None
    to_date, _, p50, p90 = row.total
    amount = round_money(row.budget, row.currency) if row.currency else row.budget
    return Budget(
        amount=amount,
        left_to_spend=amount - to_date,
        p50_over=p50 >= row.budget,
        p90_over=p90 >= row.budget,
        projected_breach_date=row.breach_date,
    )

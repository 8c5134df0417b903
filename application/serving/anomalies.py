"""Serving anomaly flags to billing admins: wait, cache, audit, shape."""

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
from projections.anomalies.as_of import anomalies_at
from projections.anomalies.detect import MIN_HISTORY_DAYS, MIN_SAME_WEEKDAY
from projections.anomalies.postgres import AnomalyProjection
from projections.anomalies.reader import AnomalyReader, AnomalySnapshot, FlagRow
from projections.history import Cut
from projections.usage_daily.rows import UsagePeriod

METHOD = (
    "Each day against the median of the same weekday over the previous 8 weeks;"
    " the band is 5 robust spreads (the median absolute deviation of those"
    " weeks, in log terms) wide on each side. Three unusual days in a row in"
    " one direction are one level shift."
)
STATUSES = ("open", "acknowledged", "cleared")


class Band(msgspec.Struct):
    low: Decimal
    high: Decimal


class Acknowledgement(msgspec.Struct):
    note: str
    by: str
    at: datetime


class AnomalyOut(msgspec.Struct, omit_defaults=True):
    id: str
    workspace_id: str
    product_area: str
    unit: str
    usage_date: date
    last_date: date
    days: int
    kind: str
    direction: str
    observed: Decimal
    expected: Decimal
    band: Band
    score: float
    status: str
    explanation: str
    opened_position: int
    reason: str | None = None  # why it was cleared
    acknowledgement: Acknowledgement | None = None


class Unjudged(msgspec.Struct):
    workspace_id: str
    product_area: str
    unit: str
    reason: str


class AnomaliesOut(msgspec.Struct, omit_defaults=True):
    tenant_id: str
    period: UsagePeriod
    as_of: datetime | None
    position: int
    positions: dict[str, int]
    method: str
    anomalies: list[AnomalyOut]
    not_evaluated: list[Unjudged]
    # Only when asked to wait; added to each answer, never kept in the cache.
    waited: Wait | None = None


def anomaly_out(row: FlagRow) -> AnomalyOut:
    out = AnomalyOut(
        id=row.id,
        workspace_id=row.workspace_id,
        product_area=row.product_area,
        unit=row.unit,
        usage_date=row.usage_date,
        last_date=row.last_date,
        days=row.days,
        kind=row.kind,
        direction=row.direction,
        observed=row.observed,
        expected=row.expected,
        band=Band(row.low, row.high),
        score=row.score,
        status=row.status,
        explanation=row.explanation,
        opened_position=row.opened_position,
        reason=row.reason,
    )
    if row.note is not None and row.acknowledged_by and row.acknowledged_at:
        out.acknowledgement = Acknowledgement(
            row.note, row.acknowledged_by, row.acknowledged_at
        )
    return out


class AnomalyService(SeriesViews):
    """The flags of one tenant's period."""

    kind = "anomalies"
    read_model = AnomalyProjection.name
    upstreams = AnomalyProjection.upstreams
    reader: AnomalyReader

    def __init__(self, pool: AsyncConnectionPool[Any], *args: Any, **kw: Any) -> None:
        super().__init__(pool, AnomalyReader(), *args, **kw)
        self._encoder = msgspec.json.Encoder()

    async def view(  # noqa: PLR0913 - the question's parts
        self,
        principal: Principal,
        period: str,
        workspace_id: str | None,
        status: str | None,
        *,
        min_positions: Mapping[str, int] | None,
        request_id: str,
    ) -> Answer:
        """The encoded answer, whether it came from the cache, how the wait went."""
        tenant = principal.tenant_id

        async def read(conn: Any, snapshot: AnomalySnapshot) -> bytes:
            flags, unjudged = await self.reader.flags(
                conn, tenant, snapshot.period.start, workspace_id, status
            )
            return self._encoder.encode(
                anomalies_out(tenant, snapshot, flags, unjudged)
            )

        served = await self.serve(
            tenant, period, (workspace_id, status), min_positions, read
        )
        filters = {"period": period, "workspace_id": workspace_id, "status": status}
        await self.audit_view(principal, served, filters, request_id)
        return Answer(served.sent, served.hit, served.wait)

    async def view_at(  # noqa: PLR0913 - the question's parts and the cut
        self,
        principal: Principal,
        period: str,
        workspace_id: str | None,
        status: str | None,
        cut: Cut,
        *,
        request_id: str,
    ) -> bytes:
        """The flags as the history stood at `cut` (an auditor's as-of read),
        audited as an AnomaliesViewed that records the cut, so it replays."""
        filters = {"period": period, "workspace_id": workspace_id, "status": status}
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
    ) -> tuple[AnomalySnapshot, bytes]:
        snapshot, flags, unjudged = await anomalies_at(
            conn,
            tenant,
            params["period"],
            params.get("workspace_id"),
            params.get("status"),
            cut,
            now,
            from_ledger=from_ledger,
        )
        body = self._encoder.encode(anomalies_out(tenant, snapshot, flags, unjudged))
        return snapshot, body

    async def audit_view(
        self,
        principal: Principal,
        served: Served,
        params: Mapping[str, Any],
        request_id: str,
    ) -> None:
        filters = dict(params)
        try:
            p = served.snapshot.period
            await self.audit.write(
                AuditRecord.AnomaliesViewed,
                tenant_id=principal.tenant_id,
                actor_id=principal.subject,
                request_id=request_id,
                period={"start": p.start.isoformat(), "end": p.end.isoformat()},
                filters=filters,
                positions=dict(served.snapshot.positions),
                sha256=hashlib.sha256(served.sent).hexdigest(),
                replay=self.replay_fields(served, filters),
            )
        except Exception as e:
            raise AuditUnavailable(
                f"anomalies not served: audit record not written ({e})"
            ) from e

    async def flag(
        self, tenant_id: str, anomaly_id: str
    ) -> tuple[date, FlagRow] | None:
        async with self.pool.connection() as conn:
            return await self.reader.flag(conn, tenant_id, anomaly_id)


def anomalies_out(
    tenant_id: str,
    snapshot: AnomalySnapshot,
    flags: list[FlagRow],
    unjudged: list[tuple[str, str, str]],
) -> AnomaliesOut:
    p = snapshot.period
    positions = {n: snapshot.positions.get(n, 0) for n in AnomalyProjection.upstreams}
    closed = snapshot.clock is not None and p.is_closed(snapshot.clock)
    reason = (
        f"too little history to judge: under {MIN_HISTORY_DAYS} days, or under"
        f" {MIN_SAME_WEEKDAY} earlier days of the same weekday"
    )
    return AnomaliesOut(
        tenant_id=tenant_id,
        period=UsagePeriod(
            p.start, p.end, p.timezone, "closed" if closed else "open", p.closes_at
        ),
        as_of=snapshot.clock,
        position=positions.get("metering", 0),
        positions=positions,
        method=METHOD,
        anomalies=[anomaly_out(f) for f in flags],
        not_evaluated=[Unjudged(*u, reason) for u in unjudged],
    )

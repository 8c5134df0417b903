"""Every SELECT on the anomaly tables: where the read model is, and answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier, Literal

from domain.periods import BillingPeriod, resolve_period
from projections.anomalies.postgres import (
    FLAGS,
    NAME,
    UNJUDGED,
    AnomalyProjection,
)
from projections.base import REGISTRY, tracking_view
from projections.usage_series import default_calendar

TENANTS = f"{NAME}_tenants"
CLOCK = f"{NAME}_clock"


@dataclass(frozen=True, slots=True)
class AnomalySnapshot:
    version: int
    table: int
    positions: dict[str, int]
    clock: datetime | None
    period: BillingPeriod


@dataclass(frozen=True, slots=True)
class FlagRow:
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
    low: Decimal
    high: Decimal
    score: float
    status: str
    explanation: str
    reason: str | None
    opened_position: int
    note: str | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None


class AnomalyReader:
    async def snapshot(
        self, conn: AsyncConnection[Any], tenant_id: str, period: str, now: datetime
    ) -> AnomalySnapshot:
        cur = await conn.cursor(row_factory=tuple_row).execute(
            _SNAPSHOT_SQL, {"tenant": tenant_id}, prepare=True
        )
        row = await cur.fetchone()
        assert row is not None
        version, table, positions, clock, timezone, anchor, grace = row
        calendar = default_calendar(tenant_id)
        resolved = resolve_period(
            period,
            now=now,
            anchor_day=anchor or calendar.anchor_day,
            timezone=timezone or calendar.timezone,
            grace=timedelta(hours=calendar.grace_hours if grace is None else grace),
        )
        return AnomalySnapshot(version, table, dict(positions or {}), clock, resolved)

    async def live_positions(self, conn: AsyncConnection[Any]) -> dict[str, int]:
        cur = await conn.cursor(row_factory=tuple_row).execute(
            _POSITIONS_SQL, prepare=True
        )
        return dict(await cur.fetchall())

    async def flags(
        self,
        conn: AsyncConnection[Any],
        tenant_id: str,
        period_start: date,
        workspace_id: str | None,
        status: str | None,
    ) -> tuple[list[FlagRow], list[tuple[str, str, str]]]:
        key = {
            "tenant": tenant_id,
            "start": period_start,
            "workspace": workspace_id,
            "status": status,
        }
        async with conn.pipeline():
            flags = await conn.cursor(row_factory=tuple_row).execute(
                _FLAGS_SQL, key, prepare=True
            )
            unjudged = await conn.cursor(row_factory=tuple_row).execute(
                _UNJUDGED_SQL, key, prepare=True
            )
        return (
            [FlagRow(*r) for r in await flags.fetchall()],
            [(r[0], r[1], r[2]) for r in await unjudged.fetchall()],
        )

    async def flag(
        self, conn: AsyncConnection[Any], tenant_id: str, anomaly_id: str
    ) -> tuple[date, FlagRow] | None:
        cur = await conn.cursor(row_factory=tuple_row).execute(
            _ONE_SQL, {"tenant": tenant_id, "id": anomaly_id}
        )
        row = await cur.fetchone()
        return None if row is None else (row[0], FlagRow(*row[1:]))


_TABLES = {
    "flags": Identifier(FLAGS),
    "unjudged": Identifier(UNJUDGED),
    "tenants": Identifier(TENANTS),
    "clock": Identifier(CLOCK),
    "tracking": Identifier(tracking_view(AnomalyProjection)),
    "registry": Identifier(REGISTRY),
}
_UPSTREAMS = SQL(", ").join(map(Literal, AnomalyProjection.upstreams))
_COLUMNS = SQL(
    "id, workspace_id, product_area, unit, usage_date, last_date, days, kind,"
    " direction, trim_scale(observed), trim_scale(expected), trim_scale(low),"
    " trim_scale(high), score, status, explanation, reason, opened_position, note,"
    " acknowledged_by, acknowledged_at"
)

_SNAPSHOT_SQL = SQL(
    "SELECT p.live_version, to_regclass({versions} || p.live_version)::oid::bigint,"
    " (SELECT jsonb_object_agg(application_name, notification_id) FROM {tracking}"
    "  WHERE application_name IN ({upstreams})),"
    " (SELECT at FROM {clock}), t.timezone, t.anchor_day, t.grace_hours"
    " FROM {registry} p LEFT JOIN {tenants} t ON t.tenant_id = %(tenant)s"
    " WHERE p.name = {name}"
).format(
    versions=Literal(f"{FLAGS}_v"),
    upstreams=_UPSTREAMS,
    name=Literal(NAME),
    **_TABLES,
)
_POSITIONS_SQL = SQL(
    "SELECT application_name, notification_id FROM {tracking}"
    " WHERE application_name IN ({upstreams})"
).format(upstreams=_UPSTREAMS, **_TABLES)
_FLAGS_SQL = SQL(
    "SELECT {columns} FROM {flags} WHERE tenant_id = %(tenant)s"
    " AND period_start = %(start)s"
    " AND (%(workspace)s::text IS NULL OR workspace_id = %(workspace)s)"
    " AND (%(status)s::text IS NULL OR status = %(status)s)"
    " ORDER BY usage_date, workspace_id, product_area, unit, id"
).format(columns=_COLUMNS, **_TABLES)
_UNJUDGED_SQL = SQL(
    "SELECT workspace_id, product_area, unit FROM {unjudged}"
    " WHERE tenant_id = %(tenant)s AND period_start = %(start)s"
    " AND (%(workspace)s::text IS NULL OR workspace_id = %(workspace)s)"
    " ORDER BY 1, 2, 3"
).format(**_TABLES)
_ONE_SQL = SQL(
    "SELECT period_start, {columns} FROM {flags}"
    " WHERE tenant_id = %(tenant)s AND id = %(id)s"
).format(columns=_COLUMNS, **_TABLES)

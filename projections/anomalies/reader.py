"""Every SELECT on the anomaly tables: where the read model is, and answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from projections.anomalies.postgres import (
    FLAGS,
    UNJUDGED,
    AnomalyProjection,
)
from projections.usage_series import SeriesReader, SeriesSnapshot

AnomalySnapshot = SeriesSnapshot


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


class AnomalyReader(SeriesReader):
    def __init__(self) -> None:
        super().__init__(AnomalyProjection(), FLAGS)

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
}
_COLUMNS = SQL(
    "id, workspace_id, product_area, unit, usage_date, last_date, days, kind,"
    " direction, trim_scale(observed), trim_scale(expected), trim_scale(low),"
    " trim_scale(high), score, status, explanation, reason, opened_position, note,"
    " acknowledged_by, acknowledged_at"
)

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

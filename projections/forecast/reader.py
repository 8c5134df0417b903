"""Every SELECT on the forecast tables: where the read model is, and one answer.

Both run in one REPEATABLE READ snapshot, so the rows and the positions they
are reported at agree (the projection commits them together).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from projections.forecast.estimate import ALL_WORKSPACES
from projections.forecast.postgres import (
    LINES,
    PERIODS,
    ForecastProjection,
)
from projections.usage_series import SeriesReader, SeriesSnapshot

ForecastSnapshot = SeriesSnapshot


@dataclass(frozen=True, slots=True)
class PeriodRow:
    status: str
    data_through: datetime
    currency: str | None
    budget: Decimal | None
    total: tuple[Decimal, Decimal, Decimal, Decimal] | None
    breach_date: date | None
    method: str | None
    history_days: int
    low_data: bool
    calibration: str | None


@dataclass(frozen=True, slots=True)
class LineRow:
    product_area: str
    unit: str
    method: str
    history_days: int
    low_data: bool
    calibration: str
    priced: bool
    quantities: tuple[Decimal, Decimal, Decimal, Decimal]  # to date, p10, p50, p90
    charges: tuple[Decimal, Decimal, Decimal, Decimal] | None


class ForecastReader(SeriesReader):
    def __init__(self) -> None:
        super().__init__(ForecastProjection(), PERIODS)

    async def answer(
        self,
        conn: AsyncConnection[Any],
        tenant_id: str,
        period_start: date,
        workspace_id: str | None,
    ) -> tuple[PeriodRow | None, list[LineRow]]:
        key = {
            "tenant": tenant_id,
            "start": period_start,
            "workspace": ALL_WORKSPACES if workspace_id is None else workspace_id,
        }
        async with conn.pipeline():
            period_cur = await conn.cursor(row_factory=tuple_row).execute(
                _PERIOD_SQL, key, prepare=True
            )
            lines_cur = await conn.cursor(row_factory=tuple_row).execute(
                _LINES_SQL, key, prepare=True
            )
        found = await period_cur.fetchone()
        lines = [
            LineRow(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                quantities=(r[7], r[8], r[9], r[10]),
                charges=None if r[11] is None else (r[11], r[12], r[13], r[14]),
            )
            for r in await lines_cur.fetchall()
        ]
        if found is None:
            return None, lines
        (
            status,
            through,
            currency,
            budget,
            to_date,
            p10,
            p50,
            p90,
            breach,
            method,
            history_days,
            low_data,
            calibration,
        ) = found
        total = None if to_date is None else (to_date, p10, p50, p90)
        return (
            PeriodRow(
                status,
                through,
                currency,
                budget,
                total,
                breach,
                method,
                history_days,
                low_data,
                calibration,
            ),
            lines,
        )


_TABLES = {
    "periods": Identifier(PERIODS),
    "lines": Identifier(LINES),
}

_PERIOD_SQL = SQL(
    "SELECT status, data_through, currency, budget, charges_to_date, p10, p50, p90,"
    " breach_date, method, history_days, low_data, calibration FROM {periods}"
    " WHERE tenant_id = %(tenant)s AND period_start = %(start)s"
).format(**_TABLES)

_LINES_SQL = SQL(
    "SELECT product_area, unit, method, history_days, low_data, calibration, priced,"
    " trim_scale(quantity_to_date), trim_scale(q10), trim_scale(q50), trim_scale(q90),"
    " charges_to_date, c10, c50, c90 FROM {lines}"
    " WHERE tenant_id = %(tenant)s AND period_start = %(start)s"
    " AND workspace_id = %(workspace)s ORDER BY product_area, unit"
).format(**_TABLES)

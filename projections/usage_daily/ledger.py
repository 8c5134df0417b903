"""The ledger and calendars as corrections read them (sync, any connection)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier

from projections.usage_daily.changes import Calendar, default_calendar
from projections.usage_daily.postgres import (
    CALENDARS,
    LEDGER,
    UsageDailyProjection,
    tenant_span,
)

Connect = Callable[[], AbstractContextManager[Connection[Any]]]


@dataclass(frozen=True, slots=True)
class RangeMatch:
    """Events of one tenant whose usage time is in [start, end), narrowed."""

    tenant_id: str
    start: datetime
    end: datetime
    workspace_id: str | None = None
    product_area: str | None = None
    unit: str | None = None


class LedgerReader:
    """Which events still count, and the calendar the read model buckets with."""

    read_model = UsageDailyProjection.name  # what to wait for before reading

    def __init__(self, connect: Connect) -> None:
        self.connect = connect

    def live_event_ids(self, match: RangeMatch, *, limit: int) -> list[str]:
        """Ids of the matching events that still count (not voided), sorted."""
        statement = SQL(
            "SELECT event_id FROM {} WHERE {} GROUP BY event_id"
            " HAVING sum(count_delta) > 0 ORDER BY event_id LIMIT %(limit)s"
        ).format(Identifier(LEDGER), _where(match))
        params = {
            "tenant": match.tenant_id,
            "start": match.start,
            "end": match.end,
            "workspace": match.workspace_id,
            "area": match.product_area,
            "unit": match.unit,
            "limit": limit,
        }
        with self.connect() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(statement, params)
            return [row[0] for row in curs.fetchall()]

    def calendar_of(self, tenant_id: str) -> Calendar:
        """The calendar the daily rows of `tenant_id` are bucketed in now."""
        with self.connect() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(
                SQL(
                    "SELECT timezone, period_anchor_day, grace_hours FROM {}"
                    " WHERE tenant_id = %s"
                ).format(Identifier(CALENDARS)),
                (tenant_id,),
            )
            row = curs.fetchone()
        return Calendar(tenant_id, *row) if row else default_calendar(tenant_id)


def _where(match: RangeMatch) -> Composed:
    def given(value: str | None, parameter: str) -> str | None:
        return None if value is None else parameter

    return tenant_span(
        "occurred_at",
        workspace_id=given(match.workspace_id, "workspace"),
        product_area=given(match.product_area, "area"),
        unit=given(match.unit, "unit"),
    )

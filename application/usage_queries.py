"""Reading daily usage: one tenant, one billing period, filtered and grouped.

Every read runs in one REPEATABLE READ snapshot, so the rows, the totals and the
position they are reported at always agree (a projection commits its rows and
its position together). Quantities stay exact: sums are NUMERIC in PostgreSQL
and travel as decimal text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier

from application.clock import Clock
from domain.periods import BillingPeriod, resolve_period
from domain.tenant_settings import DEFAULT_SETTINGS
from domain.values import InvalidValue, check_identifier, normalise_slug

DIMENSIONS = ("day", "product_area", "workspace")
_COLUMN = {
    "day": "usage_date",
    "product_area": "product_area",
    "workspace": "workspace_id",
}


class InvalidUsageQuery(ValueError):
    """A query parameter breaks a rule; the message names it."""


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """A validated usage query (the tenant always comes from the caller's token)."""

    tenant_id: str
    period: str = "current"
    workspace_id: str | None = None
    product_area: str | None = None
    group_by: tuple[str, ...] = DIMENSIONS

    @classmethod
    def parse(
        cls,
        tenant_id: str,
        *,
        period: str | None,
        workspace_id: str | None,
        product_area: str | None,
        group_by: str | None,
    ) -> UsageQuery:
        return cls(
            tenant_id=tenant_id,
            period=(period or "current").strip(),
            workspace_id=_optional("workspace_id", check_identifier, workspace_id),
            product_area=_optional("product_area", normalise_slug, product_area),
            group_by=parse_group_by(group_by),
        )

    def cache_key(self) -> str:
        return "|".join(
            (
                self.workspace_id or "*",
                self.product_area or "*",
                ",".join(self.group_by),
            )
        )


def parse_group_by(value: str | None) -> tuple[str, ...]:
    if value is None or not value.strip():
        return DIMENSIONS
    parts = [p.strip() for p in value.split(",")]
    unknown = [p for p in parts if p not in DIMENSIONS]
    if unknown:
        raise InvalidUsageQuery(
            f"group_by: unknown dimension {unknown[0]!r}; use any of day, "
            "product_area, "
            "workspace, separated by commas"
        )
    if len(set(parts)) != len(parts):
        raise InvalidUsageQuery("group_by: each dimension may appear once")
    return tuple(d for d in DIMENSIONS if d in parts)


def _optional(field: str, check: Any, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(check(value))
    except InvalidValue as e:
        raise InvalidUsageQuery(f"{field}: {e}") from None


class PeriodOut(msgspec.Struct):
    start: date
    end: date
    timezone: str
    status: str
    closes_at: datetime


class UsageRow(msgspec.Struct, omit_defaults=True):
    unit: str
    quantity: str
    source_event_count: int
    first_reported_quantity: str
    late_event_count: int
    workspace_id: str | None = None
    product_area: str | None = None
    usage_date: date | None = None


class UsageTotal(msgspec.Struct):
    product_area: str
    unit: str
    quantity: str


class LateAdjustment(msgspec.Struct):
    workspace_id: str
    product_area: str
    usage_date: date
    unit: str
    quantity: str
    event_count: int


class UsageData(msgspec.Struct):
    """The cacheable part of an answer: a function of (query, read-model state)."""

    rows: list[UsageRow]
    totals: list[UsageTotal]
    late_adjustments: list[LateAdjustment]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Where the read model stood, and the tenant's calendar, in one snapshot."""

    version: int
    table: int  # the live copy's table OID: new for each rebuild and each database
    position: int
    settings_position: int  # calendars processed: part of what the rows depend on
    head: int
    period: BillingPeriod
    as_of: datetime

    def period_out(self, now: datetime) -> PeriodOut:
        p = self.period
        return PeriodOut(
            p.start,
            p.end,
            p.timezone,
            "closed" if p.is_closed(now) else "open",
            p.closes_at,
        )


class UsageReader:
    """Answers usage queries from billing_usage_daily."""

    projection = "billing_usage_daily"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    async def snapshot(self, conn: AsyncConnection[Any], query: UsageQuery) -> Snapshot:
        """Position, head, freshness and the tenant's period, in `conn`'s snapshot."""
        cur = await conn.execute(
            _SNAPSHOT_SQL, {"tenant": query.tenant_id}, prepare=True
        )
        row = await cur.fetchone()
        assert row is not None
        (
            version,
            table,
            position,
            settings_position,
            next_state,
            head,
            tz,
            anchor,
            grace,
        ) = row
        d = DEFAULT_SETTINGS
        now = self.clock()
        period = resolve_period(
            query.period,
            now=now,
            anchor_day=anchor or d.period_anchor_day,
            timezone=tz or d.timezone,
            grace=timedelta(hours=d.grace_hours if grace is None else grace),
        )
        # as_of: the data holds everything recorded before this instant. Caught
        # up, that is now; behind, it is when the first unprocessed event came.
        as_of = (
            now if position >= head or next_state is None else recorded_at(next_state)
        )
        return Snapshot(
            version, table, position, settings_position, head, period, as_of
        )

    async def data(
        self, conn: AsyncConnection[Any], query: UsageQuery, snapshot: Snapshot
    ) -> UsageData:
        params = query_params(query, snapshot.period)
        closed = snapshot.period.is_closed(self.clock())
        where = _where(query)
        async with conn.pipeline():  # one round trip for all the statements
            rows_cur = await conn.cursor(row_factory=tuple_row).execute(
                _rows_sql(query), params, prepare=True
            )
            totals_cur = await conn.cursor(row_factory=tuple_row).execute(
                _TOTALS_SQL.format(where=where), params, prepare=True
            )
            adjustments_cur = None
            if closed:
                adjustments_cur = await conn.cursor(row_factory=tuple_row).execute(
                    _ADJUSTMENTS_SQL.format(where=where), params
                )
        rows = [
            UsageRow(
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                workspace_id=r[0],
                product_area=r[1],
                usage_date=r[2],
            )
            for r in await rows_cur.fetchall()
        ]
        totals = [UsageTotal(*r) for r in await totals_cur.fetchall()]
        adjustments = (
            [LateAdjustment(*r) for r in await adjustments_cur.fetchall()]
            if adjustments_cur
            else []
        )
        return UsageData(rows, totals, adjustments)

    async def totals(
        self, conn: AsyncConnection[Any], query: UsageQuery, snapshot: Snapshot
    ) -> list[UsageTotal]:
        cur = conn.cursor(row_factory=tuple_row)
        await cur.execute(
            _TOTALS_SQL.format(where=_where(query)),
            query_params(query, snapshot.period),
        )
        return [UsageTotal(*r) for r in await cur.fetchall()]


class _RecordedAt(msgspec.Struct):
    timestamp: datetime


_recorded_at_decoder = msgspec.json.Decoder(_RecordedAt)


def recorded_at(state: bytes) -> datetime:
    """When a stored event was recorded, read in Python: a payload is never
    decoded in SQL, where text PostgreSQL's json refuses (an escaped NUL in a
    producer's properties) would fail every tenant's read."""
    return _recorded_at_decoder.decode(state).timestamp


def query_params(query: UsageQuery, period: BillingPeriod) -> dict[str, Any]:
    """The parameters every usage statement of `query` takes."""
    return {
        "tenant": query.tenant_id,
        "start": period.start,
        "end": period.end,
        "workspace": query.workspace_id,
        "area": query.product_area,
    }


def _where(query: UsageQuery) -> Composed:
    clauses = [
        SQL(
            "tenant_id = %(tenant)s"
            " AND usage_date >= %(start)s AND usage_date < %(end)s"
        )
    ]
    if query.workspace_id is not None:
        clauses.append(SQL("workspace_id = %(workspace)s"))
    if query.product_area is not None:
        clauses.append(SQL("product_area = %(area)s"))
    return SQL(" AND ").join(clauses)


def _rows_sql(query: UsageQuery) -> Composed:
    """Rows summed over the dimensions left out (never across units)."""
    kept = group_columns(query)
    columns = [
        Identifier(c) if c in kept else SQL("NULL")
        for c in ("workspace_id", "product_area", "usage_date")
    ]
    order = SQL(", ").join(
        Identifier(c) for c in (*_ORDER, "unit") if c in (*kept, "unit")
    )
    if len(kept) == len(DIMENSIONS):  # daily rows as stored: nothing to sum
        return SQL(
            "SELECT workspace_id, product_area, usage_date, unit,"
            " trim_scale(quantity)::text, source_event_count,"
            " trim_scale(first_reported_quantity)::text, late_event_count"
            " FROM billing_usage_daily WHERE {where} ORDER BY {order}"
        ).format(where=_where(query), order=order)
    return SQL(
        "SELECT {columns}, unit, trim_scale(sum(quantity))::text,"
        " sum(source_event_count)::bigint,"
        " trim_scale(sum(first_reported_quantity))::text, sum(late_event_count)::bigint"
        " FROM billing_usage_daily WHERE {where} GROUP BY {group} ORDER BY {order}"
    ).format(
        columns=SQL(", ").join(columns),
        where=_where(query),
        group=SQL(", ").join(Identifier(c) for c in (*kept, "unit")),
        order=order,
    )


_ORDER = ("usage_date", "workspace_id", "product_area")
CSV_COLUMNS = (
    "workspace_id",
    "product_area",
    "usage_date",
    "unit",
    "quantity",
    "source_event_count",
)
# A text cell a spreadsheet would run as a formula gets a leading apostrophe.
_SPREADSHEET_SAFE = SQL(
    "CASE WHEN left({c}, 1) IN ('=', '+', '-', '@', E'\\t', E'\\r')"
    " THEN '''' || {c} ELSE {c} END"
)


def csv_copy_sql(query: UsageQuery) -> Composed:
    """COPY the rows of `query` out as CSV under the contract's header.

    PostgreSQL writes the CSV (RFC 4180 quoting, only where needed) in C, so an
    export is ready in milliseconds; only the line ends are left to the caller.
    """
    r = [Identifier(f"c{i}") for i in range(8)]
    cells = [
        _SPREADSHEET_SAFE.format(c=r[0]),
        _SPREADSHEET_SAFE.format(c=r[1]),
        r[2],
        _SPREADSHEET_SAFE.format(c=r[3]),
        r[4],
        r[5],
    ]
    named = [
        SQL("{} AS {}").format(cell, Identifier(name))
        for cell, name in zip(cells, CSV_COLUMNS, strict=True)
    ]
    return SQL(
        "COPY (SELECT {} FROM ({}) AS r ({})) TO STDOUT (FORMAT csv, HEADER)"
    ).format(SQL(", ").join(named), _rows_sql(query), SQL(", ").join(r))


_SNAPSHOT_SQL = SQL(
    "SELECT p.live_version,"
    " to_regclass('billing_usage_daily_v' || p.live_version)::oid::bigint,"
    " coalesce(t.notification_id, 0),"
    " (SELECT coalesce(max(s.notification_id), 0) FROM billing_usage_daily_tracking s"
    "  WHERE s.application_name = 'tenant_settings'),"
    " (SELECT e.state"
    "  FROM metering_events e WHERE e.notification_id > coalesce(t.notification_id, 0)"
    "  ORDER BY e.notification_id LIMIT 1),"
    " (SELECT coalesce(max(notification_id), 0) FROM metering_events),"
    " c.timezone, c.period_anchor_day, c.grace_hours"
    " FROM billing_projections p"
    " LEFT JOIN billing_usage_daily_tracking t ON t.application_name = 'metering'"
    " LEFT JOIN billing_tenant_calendars c ON c.tenant_id = %(tenant)s"
    " WHERE p.name = 'billing_usage_daily'"
)

_TOTALS_SQL = SQL(
    "SELECT product_area, unit, trim_scale(sum(quantity))::text"
    " FROM billing_usage_daily WHERE {where} GROUP BY product_area, unit"
    " ORDER BY product_area, unit"
)

_ADJUSTMENTS_SQL = SQL(
    "SELECT workspace_id, product_area, usage_date, unit,"
    " trim_scale(adjustment_quantity)::text, adjustment_count"
    " FROM billing_usage_daily WHERE {where} AND adjustment_count > 0"
    " ORDER BY usage_date, workspace_id, product_area, unit"
)


def group_columns(query: UsageQuery) -> Sequence[str]:
    """The read-model columns a query keeps, in dimension order."""
    return [_COLUMN[d] for d in DIMENSIONS if d in query.group_by]

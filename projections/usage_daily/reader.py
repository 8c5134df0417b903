"""Every SELECT on the daily usage tables: snapshots, rows, totals, CSV, ledger.

Every read runs in one REPEATABLE READ snapshot, so the rows, the totals and the
position they are reported at always agree (a projection commits its rows and
its position together). Quantities stay exact: sums are NUMERIC in PostgreSQL
and travel as decimal text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composable, Composed, Identifier, Literal

from domain.periods import BillingPeriod, resolve_period
from domain.tenant_settings import DEFAULT_SETTINGS
from projections.base import REGISTRY, tracking_view
from projections.usage_daily.postgres import (
    CALENDARS,
    DAILY,
    UsageDailyProjection,
    tenant_span,
)
from projections.usage_daily.query import DIMENSIONS, UsageQuery, group_columns
from projections.usage_daily.rows import (
    LateAdjustment,
    Snapshot,
    UsageData,
    UsageRow,
    UsageTotal,
)


@dataclass(frozen=True, slots=True)
class DailySource:
    """Where a usage answer's daily rows come from: the live table, or a
    relation of the rows at a cut (as_of.py) with the parameters it takes."""

    relation: Composable
    params: dict[str, Any] = field(default_factory=dict)


LIVE = DailySource(Identifier(DAILY))

_TABLES = {
    "daily": Identifier(DAILY),
    "calendars": Identifier(CALENDARS),
    "tracking": Identifier(tracking_view(UsageDailyProjection)),
    "registry": Identifier(REGISTRY),
}


class UsageReader:
    """Answers usage queries from billing_usage_daily, as of a given instant."""

    def __init__(self, events_table: str) -> None:
        self._snapshot_sql = _snapshot_sql(events_table)

    async def snapshot(
        self, conn: AsyncConnection[Any], query: UsageQuery, now: datetime
    ) -> Snapshot:
        """Position, head, freshness and the tenant's period at `now`, in `conn`'s
        snapshot."""
        cur = await conn.execute(
            self._snapshot_sql, {"tenant": query.tenant_id}, prepare=True
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
            version, table, position, settings_position, head, period, as_of, now
        )

    async def live_positions(self, conn: AsyncConnection[Any]) -> dict[str, int]:
        """How far the live daily rows have processed each upstream they follow."""
        cur = await conn.execute(_LIVE_POSITIONS_SQL, prepare=True)
        return {str(name): int(position) for name, position in await cur.fetchall()}

    async def data(
        self,
        conn: AsyncConnection[Any],
        query: UsageQuery,
        snapshot: Snapshot,
        source: DailySource = LIVE,
    ) -> UsageData:
        """Rows, totals and late adjustments of `query` from the live daily rows,
        or from `source` (the rows as the history stood at a cut)."""
        params = query_params(query, snapshot.period) | source.params
        closed = snapshot.period.is_closed(snapshot.now)
        where = _where(query)
        daily = source.relation
        async with conn.pipeline():  # one round trip for all the statements
            rows_cur = await conn.cursor(row_factory=tuple_row).execute(
                _rows_sql(query, daily=daily), params, prepare=True
            )
            totals_cur = await conn.cursor(row_factory=tuple_row).execute(
                _TOTALS_SQL.format(where=where, daily=daily), params, prepare=True
            )
            adjustments_cur = None
            if closed:
                adjustments_cur = await conn.cursor(row_factory=tuple_row).execute(
                    _ADJUSTMENTS_SQL.format(where=where, daily=daily), params
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
        self,
        conn: AsyncConnection[Any],
        query: UsageQuery,
        snapshot: Snapshot,
        source: DailySource = LIVE,
    ) -> list[UsageTotal]:
        cur = conn.cursor(row_factory=tuple_row)
        await cur.execute(
            _TOTALS_SQL.format(where=_where(query), daily=source.relation),
            query_params(query, snapshot.period) | source.params,
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
    return tenant_span(
        "usage_date",
        workspace_id="workspace" if query.workspace_id is not None else None,
        product_area="area" if query.product_area is not None else None,
    )


def _rows_sql(
    query: UsageQuery, *, adjustments: bool = False, daily: Composable = LIVE.relation
) -> Composed:
    """Rows summed over the dimensions left out (never across units); with
    `adjustments`, also what changed after the period closed (the CSV's)."""
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
            " trim_scale(first_reported_quantity)::text, late_event_count{more}"
            " FROM {daily} WHERE {where} ORDER BY {order}"
        ).format(
            where=_where(query),
            order=order,
            daily=daily,
            more=_ADJUSTMENT_COLUMNS if adjustments else SQL(""),
        )
    return SQL(
        "SELECT {columns}, unit, trim_scale(sum(quantity))::text,"
        " sum(source_event_count)::bigint,"
        " trim_scale(sum(first_reported_quantity))::text, sum(late_event_count)::bigint"
        "{more} FROM {daily} WHERE {where} GROUP BY {group} ORDER BY {order}"
    ).format(
        daily=daily,
        columns=SQL(", ").join(columns),
        where=_where(query),
        group=SQL(", ").join(Identifier(c) for c in (*kept, "unit")),
        order=order,
        more=_ADJUSTMENT_SUMS if adjustments else SQL(""),
    )


_ADJUSTMENT_COLUMNS = SQL(", trim_scale(adjustment_quantity)::text, adjustment_count")
_ADJUSTMENT_SUMS = SQL(
    ", trim_scale(sum(adjustment_quantity))::text, sum(adjustment_count)::bigint"
)
_ORDER = ("usage_date", "workspace_id", "product_area")
CSV_COLUMNS = (
    "workspace_id",
    "product_area",
    "usage_date",
    "unit",
    "quantity",
    "source_event_count",
    # Added after the six above (which stay first, unchanged): what each row
    # held when its day ended, the events that arrived later, and what was
    # recorded after its billing period closed (a late adjustment).
    "first_reported_quantity",
    "late_event_count",
    "adjustment_quantity",
    "adjustment_count",
)
# A text cell a spreadsheet would run as a formula gets a leading apostrophe.
_SPREADSHEET_SAFE = SQL(
    "CASE WHEN left({c}, 1) IN ('=', '+', '-', '@', E'\\t', E'\\r')"
    " THEN '''' || {c} ELSE {c} END"
)


def csv_copy_sql(query: UsageQuery, daily: Composable = LIVE.relation) -> Composed:
    """COPY the rows of `query` out as CSV under the contract's header.

    PostgreSQL writes the CSV (RFC 4180 quoting, only where needed) in C, so an
    export is ready in milliseconds; only the line ends are left to the caller.
    """
    r = [Identifier(f"c{i}") for i in range(len(CSV_COLUMNS))]
    cells = [
        _SPREADSHEET_SAFE.format(c=r[0]),
        _SPREADSHEET_SAFE.format(c=r[1]),
        r[2],
        _SPREADSHEET_SAFE.format(c=r[3]),
        *r[4:],  # numbers
    ]
    named = [
        SQL("{} AS {}").format(cell, Identifier(name))
        for cell, name in zip(cells, CSV_COLUMNS, strict=True)
    ]
    return SQL(
        "COPY (SELECT {} FROM ({}) AS r ({})) TO STDOUT (FORMAT csv, HEADER)"
    ).format(
        SQL(", ").join(named),
        _rows_sql(query, adjustments=True, daily=daily),
        SQL(", ").join(r),
    )


def _snapshot_sql(events_table: str) -> Composed:
    return SQL(
        "SELECT p.live_version,"
        " to_regclass({versions} || p.live_version)::oid::bigint,"
        " coalesce(t.notification_id, 0),"
        " (SELECT coalesce(max(s.notification_id), 0) FROM {tracking} s"
        "  WHERE s.application_name = 'tenant_settings'),"
        " (SELECT e.state"
        "  FROM {events} e WHERE e.notification_id > coalesce(t.notification_id, 0)"
        "  ORDER BY e.notification_id LIMIT 1),"
        " (SELECT coalesce(max(notification_id), 0) FROM {events}),"
        " c.timezone, c.period_anchor_day, c.grace_hours"
        " FROM {registry} p"
        " LEFT JOIN {tracking} t ON t.application_name = 'metering'"
        " LEFT JOIN {calendars} c ON c.tenant_id = %(tenant)s"
        " WHERE p.name = {name}"
    ).format(
        versions=Literal(f"{DAILY}_v"),
        events=Identifier(events_table),
        name=Literal(UsageDailyProjection.name),
        **_TABLES,
    )


_LIVE_POSITIONS_SQL = SQL(
    "SELECT application_name, notification_id FROM {tracking}"
).format(tracking=_TABLES["tracking"])

_TOTALS_SQL = SQL(
    "SELECT product_area, unit, trim_scale(sum(quantity))::text"
    " FROM {daily} WHERE {where} GROUP BY product_area, unit"
    " ORDER BY product_area, unit"
)

_ADJUSTMENTS_SQL = SQL(
    "SELECT workspace_id, product_area, usage_date, unit,"
    " trim_scale(adjustment_quantity)::text, adjustment_count"
    " FROM {daily} WHERE {where} AND adjustment_count > 0"
    " ORDER BY usage_date, workspace_id, product_area, unit"
)

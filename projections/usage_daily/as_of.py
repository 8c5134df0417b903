"""Usage as the history stood at a cut: the rows a read model held then.

The daily rows at a cut are the ledger entries the cut includes, bucketed with
the tenant's calendar at the cut by the rollup's own rule (postgres.py
`daily_at_sql`): the live rows are the same entries under the same rule, so the
rows at a cut are what a fresh rebuild over the history truncated there would
serve, and a past view is reproduced by reading at the cut it recorded. Only
the period's entries are read (the ledger is indexed by tenant and time).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.sql import SQL, Composed, Identifier

from domain.periods import resolve_period
from projections.history import CalendarAt, Cut, anchored, calendar_at
from projections.usage_daily.postgres import daily_at_sql
from projections.usage_daily.query import UsageQuery
from projections.usage_daily.reader import DailySource
from projections.usage_daily.rows import Snapshot


async def usage_at(
    conn: AsyncConnection[Any],
    query: UsageQuery,
    cut: Cut,
    *,
    now: datetime | None = None,
    as_of: datetime | None = None,
) -> tuple[Snapshot, DailySource]:
    """Where the answer to `query` stands at `cut`, and its daily rows there.

    `now` is the instant the period is resolved at (default: the cut's) and
    `as_of` the freshness the answer reports (default: `now`): a replay passes
    what the view recorded."""
    cut = await anchored(conn, cut)
    assert cut.at is not None
    position = cut.positions["metering"]
    calendar = await calendar_at(conn, query.tenant_id, cut)
    now = now or cut.at
    period = resolve_period(
        query.period,
        now=now,
        anchor_day=calendar.period_anchor_day,
        timezone=calendar.timezone,
        grace=timedelta(hours=calendar.grace_hours),
    )
    # Entries by position (for an instant, the last one recorded by then), so
    # the rows are exactly those of the history truncated at the position the
    # answer reports.
    metering = Cut({"metering": position})
    snapshot = Snapshot(
        version=0,
        table=0,
        position=position,
        settings_position=calendar.position,
        head=position,
        period=period,
        as_of=as_of or now,
        now=now,
    )
    params = _calendar_params(calendar) | metering.ledger_params()
    params |= {"span_start": period.starts_at, "span_end": period.ends_at}
    return snapshot, DailySource(daily_at_sql(_entries(query, metering)), params)


def _calendar_params(calendar: CalendarAt) -> dict[str, Any]:
    return {
        "tz": calendar.timezone,
        "anchor": calendar.period_anchor_day,
        "grace": calendar.grace_hours,
    }


def _entries(query: UsageQuery, cut: Cut) -> Composed:
    """The ledger entries of the query's tenant, period and filters at `cut`."""
    clauses = [
        SQL("l.tenant_id = %(tenant)s"),
        SQL("l.occurred_at >= %(span_start)s AND l.occurred_at < %(span_end)s"),
        SQL("l.{}").format(cut.ledger_clause()),
    ]
    if query.workspace_id is not None:
        clauses.append(SQL("l.{} = %(workspace)s").format(Identifier("workspace_id")))
    if query.product_area is not None:
        clauses.append(SQL("l.{} = %(area)s").format(Identifier("product_area")))
    return SQL(" AND ").join(clauses)

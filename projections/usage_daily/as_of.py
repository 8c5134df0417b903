"""Usage as the history stood at a cut: the rows a read model held then.

The daily rows at a cut are the ledger entries the cut includes, bucketed with
the tenant's calendar at the cut by the rollup's own rule (postgres.py
`daily_at_sql`): the live rows are the same entries under the same rule, so the
rows at a cut are what a fresh rebuild over the history truncated there would
serve, and a past view is reproduced by reading at the cut it recorded. Only
the period's entries are read (the ledger is indexed by tenant and time).

The sums are linear in the entries, so with the same calendar the rows at a
cut are also the live rows less the entries after the cut, or a checkpoint's
rows (postgres.py) plus the entries between it and the cut: whichever of the
two is nearer the cut is read, so a read adds or takes away at most a
checkpoint's worth of entries instead of summing the whole period again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.sql import SQL, Composable, Composed, Identifier, Placeholder

from domain.periods import BillingPeriod, resolve_period
from projections.base import tracking_view
from projections.history import (
    DEFAULT_CALENDAR,
    CalendarAt,
    Cut,
    anchored,
    calendar_at,
)
from projections.usage_daily.postgres import (
    CALENDARS,
    CHECKPOINT_MARKS,
    CHECKPOINTS,
    DAILY,
    LEDGER,
    UsageDailyProjection,
    daily_at_sql,
)
from projections.usage_daily.query import UsageQuery
from projections.usage_daily.reader import DailySource
from projections.usage_daily.rows import Snapshot


async def usage_at(  # noqa: PLR0913 - the question, the cut, and how to read it
    conn: AsyncConnection[Any],
    query: UsageQuery,
    cut: Cut,
    *,
    now: datetime | None = None,
    as_of: datetime | None = None,
    from_ledger: bool = False,
) -> tuple[Snapshot, DailySource]:
    """Where the answer to `query` stands at `cut`, and its daily rows there.

    `now` is the instant the period is resolved at (default: the cut's) and
    `as_of` the freshness the answer reports (default: `now`): a replay passes
    what the view recorded. The rows are the live rows less what the ledger
    entries recorded after the cut added, or the nearest earlier checkpoint's
    plus the entries between it and the cut, whichever is nearer the cut and
    bucketed with the calendar at the cut (the sums are linear in the
    entries, so this is exact); else, or `from_ledger`, every entry up to the
    cut summed again (independent of every derived row: what a thorough
    verification wants)."""
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
    if from_ledger:
        return snapshot, DailySource(daily_at_sql(_entries(query, metering)), params)
    near = await _nearest(conn, query.tenant_id, calendar, period, position)
    ahead = near.live_position - position  # how far the live rows are past it
    live = near.live_calendar == calendar.bucketing and 0 <= ahead <= DELTA_LIMIT
    behind = None if near.checkpoint is None else position - near.checkpoint
    if behind is not None and (not live or behind < ahead):
        params["checkpoint"] = near.checkpoint
        return snapshot, DailySource(_checkpoint_plus_later(query), params)
    if live:
        return snapshot, DailySource(_live_minus_later(query), params)
    return snapshot, DailySource(daily_at_sql(_entries(query, metering)), params)


# Up to this many metering positions after the cut, the rows at the cut are
# read as the live rows minus the entries recorded after it (a few index
# lookups); further back, summed from the period's entries (every one), unless
# a checkpoint is nearer.
DELTA_LIMIT = 100_000
USE_CHECKPOINTS = True  # tests read each way


@dataclass(frozen=True, slots=True)
class _Nearest:
    """The two sets of rows an answer at a cut can start from."""

    live_position: int  # of metering, the live rows have processed
    live_calendar: tuple[str, int, int]  # they are bucketed with
    checkpoint: int | None  # the latest usable one at or before the cut


async def _nearest(
    conn: AsyncConnection[Any],
    tenant_id: str,
    calendar: CalendarAt,
    period: BillingPeriod,
    position: int,
) -> _Nearest:
    """Where the live rows are and how they are bucketed, and the latest
    checkpoint at or before `position` holding the period's rows bucketed
    with `calendar` (one statement)."""
    cur = await conn.execute(
        _NEAREST_SQL,
        _calendar_params(calendar)
        | {
            "tenant": tenant_id,
            "cut_position": position,
            "period_start": period.start,
            "checkpoints": USE_CHECKPOINTS,
        },
        prepare=True,
    )
    row = await cur.fetchone()
    assert row is not None
    live, timezone, anchor, grace, checkpoint = row
    d = DEFAULT_CALENDAR
    return _Nearest(
        int(live),
        (
            timezone or d.timezone,
            d.period_anchor_day if anchor is None else anchor,
            d.grace_hours if grace is None else grace,
        ),
        None if checkpoint is None else int(checkpoint),
    )


_NEAREST_SQL = SQL(
    "SELECT coalesce((SELECT notification_id FROM {tracking}"
    " WHERE application_name = 'metering'), 0),"
    " c.timezone, c.period_anchor_day, c.grace_hours,"
    " (SELECT max(position) FROM {marks} WHERE %(checkpoints)s"
    "  AND tenant_id = %(tenant)s AND position <= %(cut_position)s"
    "  AND timezone = %(tz)s AND period_anchor_day = %(anchor)s"
    "  AND grace_hours = %(grace)s AND first_period <= %(period_start)s"
    "  AND last_period >= %(period_start)s)"
    " FROM (SELECT 1) AS one LEFT JOIN {calendars} c ON c.tenant_id = %(tenant)s"
).format(
    tracking=Identifier(tracking_view(UsageDailyProjection)),
    calendars=Identifier(CALENDARS),
    marks=Identifier(CHECKPOINT_MARKS),
)


def _filters(
    query: UsageQuery, positions: Composable, rows: str
) -> tuple[list[Composable], list[Composable]]:
    """The WHERE clauses of the ledger entries (alias `l`, of the period and
    the `positions` given) and of the daily rows (alias `rows`, of the
    query's dates) that an answer at a cut combines, with the query's filters."""
    r = Identifier(rows)
    entries: list[Composable] = [
        SQL("l.tenant_id = %(tenant)s"),
        SQL("l.occurred_at >= %(span_start)s AND l.occurred_at < %(span_end)s"),
        positions,
    ]
    kept: list[Composable] = [
        SQL("{r}.tenant_id = %(tenant)s").format(r=r),
        SQL("{r}.usage_date >= %(start)s AND {r}.usage_date < %(end)s").format(r=r),
    ]
    for column, parameter, asked in (
        ("workspace_id", "workspace", query.workspace_id),
        ("product_area", "area", query.product_area),
    ):
        if asked is not None:
            entries.append(
                SQL("l.{} = {}").format(Identifier(column), Placeholder(parameter))
            )
            kept.append(
                SQL("{}.{} = {}").format(r, Identifier(column), Placeholder(parameter))
            )
    return entries, kept


def _live_minus_later(query: UsageQuery) -> Composed:
    """The live daily rows less what the entries recorded after the cut added
    (same calendar: the sums are linear in the entries), without the rows
    that only those entries made. Parameters as daily_at_sql's, plus the
    usage queries' own (tenant, start, end, workspace, area)."""
    clauses, kept = _filters(query, SQL("l.position > %(cut_position)s"), "d")
    columns = SQL(", ").join(
        SQL("d.{c} - coalesce(x.{c}, 0)").format(c=Identifier(c)) for c in _SUMS
    )
    return SQL(
        "(SELECT d.tenant_id, d.usage_date, d.workspace_id, d.product_area, d.unit,"
        " d.period_start, {columns} FROM {daily} d LEFT JOIN {later}"
        " ON (x.usage_date, x.workspace_id, x.product_area, x.unit)"
        " = (d.usage_date, d.workspace_id, d.product_area, d.unit)"
        " WHERE {kept} AND (x.unit IS NULL OR EXISTS (SELECT 1 FROM {ledger} e"
        "  WHERE e.tenant_id = d.tenant_id AND e.workspace_id = d.workspace_id"
        "  AND e.occurred_at >= (d.usage_date::timestamp AT TIME ZONE %(tz)s::text)"
        "  AND e.occurred_at"
        "   < ((d.usage_date + 1)::timestamp AT TIME ZONE %(tz)s::text)"
        "  AND e.product_area = d.product_area AND e.unit = d.unit"
        "  AND e.position <= %(cut_position)s))) AS at_cut ({names})"
    ).format(
        columns=columns,
        daily=Identifier(DAILY),
        later=daily_at_sql(SQL(" AND ").join(clauses), "x"),
        kept=SQL(" AND ").join(kept),
        ledger=Identifier(LEDGER),
        names=SQL(", ").join(map(Identifier, _COLUMNS)),
    )


def _checkpoint_plus_later(query: UsageQuery) -> Composed:
    """The checkpoint's rows (parameter `checkpoint`) plus what the entries
    recorded after it, up to the cut, add (same calendar: the sums are linear
    in the entries); a row exists at the cut if it did at the checkpoint or an
    entry since made it. Parameters as _live_minus_later's."""
    between = SQL("l.position > %(checkpoint)s AND l.position <= %(cut_position)s")
    clauses, kept = _filters(query, between, "c")
    kept.append(SQL("c.position = %(checkpoint)s"))
    keys = SQL(", ").join(map(Identifier, _COLUMNS[: -len(_SUMS)]))
    names = SQL(", ").join(map(Identifier, _COLUMNS))
    return SQL(
        "(SELECT {keys}, {sums} FROM (SELECT {names} FROM {checkpoints} c"
        " WHERE {kept} UNION ALL SELECT {names} FROM {later}) AS both_"
        " GROUP BY {keys}) AS at_cut ({names})"
    ).format(
        keys=keys,
        # sum() of bigint is numeric: the counts stay bigint, as in the live rows
        sums=SQL(", ").join(
            SQL("sum({})::{}").format(
                Identifier(c), SQL("bigint" if c.endswith("count") else "numeric")
            )
            for c in _SUMS
        ),
        names=names,
        checkpoints=Identifier(CHECKPOINTS),
        kept=SQL(" AND ").join(kept),
        later=daily_at_sql(SQL(" AND ").join(clauses), "x"),
    )


_SUMS = (
    "quantity",
    "source_event_count",
    "first_reported_quantity",
    "late_event_count",
    "adjustment_quantity",
    "adjustment_count",
)
_COLUMNS = (
    "tenant_id",
    "usage_date",
    "workspace_id",
    "product_area",
    "unit",
    "period_start",
    *_SUMS,
)


def _calendar_params(calendar: CalendarAt) -> dict[str, Any]:
    return {
        "tz": calendar.timezone,
        "anchor": calendar.period_anchor_day,
        "grace": calendar.grace_hours,
    }


def _entries(query: UsageQuery, cut: Cut) -> Composed:
    """The ledger entries of the query's tenant, period and filters at `cut`."""
    clauses, _ = _filters(query, SQL("l.{}").format(cut.ledger_clause()), "d")
    return SQL(" AND ").join(clauses)

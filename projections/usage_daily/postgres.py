"""billing_usage_daily in PostgreSQL: its tables, COPY of the ledger, the rollup.

Entries go to the ledger by COPY; daily rows are derived from each batch by one
set-based upsert (the rollup: the SQL form of domain.periods.day_and_period),
and a calendar change re-buckets the tenant from its ledger. What the rows mean
is in the package docstring (__init__.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import Cursor
from psycopg.sql import SQL, Composable, Composed, Identifier, Placeholder

from domain.tenant_settings import DEFAULT_SETTINGS
from projections import history
from projections.base import Notified, Projection
from projections.usage_daily.changes import (
    Calendar,
    DailyChanges,
    LedgerEntry,
    default_calendar,
    ledger_copy_text,
    split_changes,
)

LEDGER = history.LEDGER  # what as-of reads, replays and explanations read
DAILY = "billing_usage_daily"
CALENDARS = "billing_tenant_calendars"


class PostgresUsageDailyView:
    """Writes entries by COPY and derives daily rows with one set-based upsert."""

    def __init__(self, cursor: Cursor[Any], schema: str, version: int) -> None:
        self.cursor = cursor
        self.ledger = Identifier(schema, Projection.table_name(LEDGER, version))
        self.daily = Identifier(schema, Projection.table_name(DAILY, version))
        self.calendars = Identifier(schema, Projection.table_name(CALENDARS, version))

    def add_entries(
        self, entries: Sequence[LedgerEntry], copy_text: bytes | None = None
    ) -> None:
        if not entries:
            return
        # The batch goes to a temporary table first (no WAL, no index), then
        # into the ledger in one statement; the daily rollup reads only the
        # batch, never the ever-growing ledger.
        self.cursor.execute(_CREATE_BATCH)
        with self.cursor.copy(_COPY_BATCH) as copy:
            copy.write(copy_text or ledger_copy_text(entries))
        columns = SQL(", ").join(map(Identifier, _LEDGER_COLUMNS))
        self.cursor.execute(
            SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
                self.ledger, columns, columns, _BATCH
            )
        )
        self._rollup(_BATCH, SQL("true"), {})

    def set_calendars(self, calendars: Sequence[Calendar]) -> None:
        for c in calendars:
            self.cursor.execute(
                SQL(
                    "INSERT INTO {} AS c (tenant_id, timezone, period_anchor_day,"
                    " grace_hours) VALUES (%s, %s, %s, %s) ON CONFLICT (tenant_id)"
                    " DO UPDATE SET timezone = EXCLUDED.timezone,"
                    " period_anchor_day = EXCLUDED.period_anchor_day,"
                    " grace_hours = EXCLUDED.grace_hours"
                    " WHERE (c.timezone, c.period_anchor_day, c.grace_hours)"
                    " IS DISTINCT FROM (EXCLUDED.timezone, EXCLUDED.period_anchor_day,"
                    " EXCLUDED.grace_hours) RETURNING (xmax = 0) AS inserted"
                ).format(self.calendars),
                (c.tenant_id, c.timezone, c.period_anchor_day, c.grace_hours),
            )
            row = self.cursor.fetchone()
            changed = row is not None
            # A first calendar equal to the defaults changes no existing bucket.
            if changed and not (_first(row) and c == default_calendar(c.tenant_id)):
                self._rebucket(c.tenant_id)

    def _rebucket(self, tenant_id: str) -> None:
        self.cursor.execute(
            SQL("DELETE FROM {} WHERE tenant_id = %s").format(self.daily), (tenant_id,)
        )
        self._rollup(
            self.ledger, SQL("l.tenant_id = %(tenant)s"), {"tenant": tenant_id}
        )

    def _rollup(self, source: Identifier, where: SQL, params: dict[str, Any]) -> None:
        """Add the entries of `source` matching `where` to the daily rows."""
        d = DEFAULT_SETTINGS
        self.cursor.execute(
            _ROLLUP.format(
                daily=self.daily,
                ledger=source,
                calendars=self.calendars,
                where=where,
            ),
            {"tz": d.timezone, "anchor": d.period_anchor_day, "grace": d.grace_hours}
            | params,
        )


def tenant_span(time_column: str, **optional: str | None) -> Composed:
    """`tenant_id = %(tenant)s AND start <= column < end`, and `column = %(name)s`
    for each optional column given (keyword: column name, value: parameter name,
    None to leave it out): the WHERE of every tenant-scoped read of these tables."""
    column = Identifier(time_column)
    clauses = [
        SQL("tenant_id = %(tenant)s AND {c} >= %(start)s AND {c} < %(end)s").format(
            c=column
        )
    ]
    clauses += [
        SQL("{} = {}").format(Identifier(name), Placeholder(parameter))
        for name, parameter in optional.items()
        if parameter is not None
    ]
    return SQL(" AND ").join(clauses)


def _first(row: Any) -> bool:
    return bool(row["inserted"] if isinstance(row, dict) else row[0])


_BATCH = Identifier("billing_ledger_batch")
_CREATE_BATCH = SQL(
    "CREATE TEMP TABLE IF NOT EXISTS {} (position bigint, tenant_id text,"
    " event_id text, kind text, workspace_id text, product_area text, unit text,"
    " occurred_at timestamptz, recorded_at timestamptz, quantity_delta numeric,"
    " count_delta integer) ON COMMIT DELETE ROWS"
).format(_BATCH)
_COPY_BATCH = SQL("COPY {} FROM STDIN").format(_BATCH)
_LEDGER_COLUMNS = (
    "position",
    "tenant_id",
    "event_id",
    "kind",
    "workspace_id",
    "product_area",
    "unit",
    "occurred_at",
    "recorded_at",
    "quantity_delta",
    "count_delta",
)

# The one place the bucketing rules live in SQL; InMemoryUsageDailyView is the
# same rules in Python, and contract tests hold the two together. `src` is the
# ledger entries to bucket, each with its calendar (tz, anchor, grace) and
# usage_date; the rollup adds them to the daily rows, an as-of read (reader.py)
# groups them into the rows a read model would hold at a cut.
_BUCKETS = """
dated AS (
    SELECT src.*,
           ((usage_date + 1)::timestamp AT TIME ZONE tz) AS day_ends_at,
           CASE WHEN extract(day FROM usage_date) >= anchor
                THEN make_date(extract(year FROM usage_date)::int,
                               extract(month FROM usage_date)::int, anchor)
                ELSE (make_date(extract(year FROM usage_date)::int,
                                extract(month FROM usage_date)::int, anchor)
                      - interval '1 month')::date
           END AS period_start
    FROM src
), timed AS (
    SELECT dated.*,
           ((period_start + interval '1 month')::timestamp AT TIME ZONE tz)
             + make_interval(hours => grace) AS closes_at
    FROM dated
)"""
_DAILY_COLUMNS = """tenant_id, usage_date, workspace_id, product_area, unit,
    period_start, quantity, source_event_count, first_reported_quantity,
    late_event_count, adjustment_quantity, adjustment_count"""
_GROUPED = """
SELECT tenant_id, usage_date, workspace_id, product_area, unit, period_start,
       sum(quantity_delta),
       sum(count_delta),
       coalesce(sum(quantity_delta) FILTER (WHERE recorded_at < day_ends_at), 0),
       count(*) FILTER (WHERE kind = 'recorded' AND recorded_at >= day_ends_at),
       coalesce(sum(quantity_delta) FILTER (WHERE recorded_at >= closes_at), 0),
       count(*) FILTER (WHERE recorded_at >= closes_at)
FROM timed
GROUP BY tenant_id, usage_date, workspace_id, product_area, unit, period_start"""
_ROLLUP = SQL(
    """
WITH src AS (
    SELECT l.tenant_id, l.workspace_id, l.product_area, l.unit, l.kind,
           l.quantity_delta, l.count_delta, l.recorded_at,
           coalesce(c.timezone, %(tz)s) AS tz,
           coalesce(c.period_anchor_day, %(anchor)s) AS anchor,
           coalesce(c.grace_hours, %(grace)s) AS grace,
           (l.occurred_at AT TIME ZONE coalesce(c.timezone, %(tz)s))::date AS usage_date
    FROM {ledger} l LEFT JOIN {calendars} c ON c.tenant_id = l.tenant_id
    WHERE {where}
),"""
    + _BUCKETS
    + "\nINSERT INTO {daily} AS d ("
    + _DAILY_COLUMNS
    + ")"
    + _GROUPED
    + """
ON CONFLICT (tenant_id, usage_date, workspace_id, product_area, unit) DO UPDATE SET
    quantity = d.quantity + EXCLUDED.quantity,
    source_event_count = d.source_event_count + EXCLUDED.source_event_count,
    first_reported_quantity =
        d.first_reported_quantity + EXCLUDED.first_reported_quantity,
    late_event_count = d.late_event_count + EXCLUDED.late_event_count,
    adjustment_quantity = d.adjustment_quantity + EXCLUDED.adjustment_quantity,
    adjustment_count = d.adjustment_count + EXCLUDED.adjustment_count
"""
)


def daily_at_sql(where: Composable, alias: str = "d") -> Composed:
    """The daily rows (as a relation `alias` with DAILY's columns) that the
    ledger entries matching `where` make under one calendar: parameters `tz`,
    `anchor` and `grace`. The same rule as the rollup's (_BUCKETS, _GROUPED)."""
    return SQL(
        "(WITH src AS (SELECT l.tenant_id, l.workspace_id, l.product_area, l.unit,"
        " l.kind, l.quantity_delta, l.count_delta, l.recorded_at,"
        " %(tz)s::text AS tz, %(anchor)s::int AS anchor, %(grace)s::int AS grace,"
        " (l.occurred_at AT TIME ZONE %(tz)s::text)::date AS usage_date"
        " FROM {ledger} l WHERE {where}),"
        + _BUCKETS
        + _GROUPED
        + ") AS {alias} ("
        + _DAILY_COLUMNS
        + ")"
    ).format(ledger=Identifier(LEDGER), where=where, alias=Identifier(alias))


class UsageDailyProjection(Projection):
    """Projects metering history and tenant calendars into daily usage."""

    name = "billing_usage_daily"
    upstreams = ("tenant_settings", "metering")
    tables = {
        LEDGER: (
            "position bigint NOT NULL, tenant_id text NOT NULL,"
            " event_id text NOT NULL, kind text NOT NULL, workspace_id text NOT NULL,"
            " product_area text NOT NULL, unit text NOT NULL,"
            " occurred_at timestamptz NOT NULL, recorded_at timestamptz NOT NULL,"
            " quantity_delta numeric NOT NULL, count_delta integer NOT NULL"
        ),
        DAILY: (
            "tenant_id text NOT NULL, usage_date date NOT NULL,"
            " workspace_id text NOT NULL, product_area text NOT NULL,"
            " unit text NOT NULL, period_start date NOT NULL,"
            " quantity numeric NOT NULL, source_event_count bigint NOT NULL,"
            " first_reported_quantity numeric NOT NULL,"
            " late_event_count bigint NOT NULL, adjustment_quantity numeric NOT NULL,"
            " adjustment_count bigint NOT NULL,"
            " PRIMARY KEY (tenant_id, usage_date, workspace_id, product_area, unit)"
        ),
        CALENDARS: (
            "tenant_id text PRIMARY KEY, timezone text NOT NULL,"
            " period_anchor_day integer NOT NULL, grace_hours integer NOT NULL"
        ),
    }
    indexes = (
        (LEDGER, "tenant_occurred", "tenant_id, occurred_at"),
        # What was recorded after a point of the history (as_of.py), and one
        # workspace's entries of a period.
        (LEDGER, "tenant_position", "tenant_id, position"),
        (LEDGER, "tenant_workspace", "tenant_id, workspace_id, occurred_at"),
        (DAILY, "tenant_workspace", "tenant_id, workspace_id, usage_date"),
    )

    def changes(self, batch: Sequence[Notified]) -> DailyChanges:
        entries, calendars = split_changes(batch)
        return DailyChanges(entries, calendars, ledger_copy_text(entries))

    def write(
        self, cursor: Cursor[Any], schema: str, version: int, changes: Any
    ) -> None:
        view = PostgresUsageDailyView(cursor, schema, version)
        view.set_calendars(changes.calendars)
        view.add_entries(changes.entries, changes.ledger_copy)

"""billing_usage_daily in PostgreSQL: its tables, COPY of the ledger, the rollup.

Entries go to the ledger by COPY; daily rows are derived from each batch by one
set-based upsert (the rollup: the SQL form of domain.periods.day_and_period),
and a calendar change re-buckets the tenant from its ledger. What the rows mean
is in the package docstring (__init__.py).

Checkpoints: once CHECKPOINT_EVERY of a tenant's entries (and at least as many
as its last checkpoint copied rows) have come since its last checkpoint, the
batch copies the tenant's daily rows of the periods those entries touched, as
they stand at the batch's last entry, with the calendar they are bucketed
with. An as-of read (as_of.py) starts from the nearest checkpoint and adds the
few entries after it instead of summing a whole period again. A copy is at
most as many rows as entries came since the last one, so checkpoints never
hold more rows than the ledger holds entries; a rebuild makes them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
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
CHECKPOINTS = "billing_usage_checkpoints"  # a tenant's rows at a position
CHECKPOINT_MARKS = "billing_usage_checkpoint_marks"  # which, and how bucketed
CHECKPOINT_PENDING = "billing_usage_checkpoint_pending"  # entries since the last
# A tenant's touched periods are copied after this many of its entries (or as
# many as its last copy held rows, if more): an as-of read adds at most that
# many entries to a checkpoint.
CHECKPOINT_EVERY = 10_000


class PostgresUsageDailyView:
    """Writes entries by COPY and derives daily rows with one set-based upsert."""

    def __init__(self, cursor: Cursor[Any], schema: str, version: int) -> None:
        self.cursor = cursor
        self.ledger = Identifier(schema, Projection.table_name(LEDGER, version))
        self.daily = Identifier(schema, Projection.table_name(DAILY, version))
        self.calendars = Identifier(schema, Projection.table_name(CALENDARS, version))
        self.checkpoints = Identifier(
            schema, Projection.table_name(CHECKPOINTS, version)
        )
        self.marks = Identifier(
            schema, Projection.table_name(CHECKPOINT_MARKS, version)
        )
        self.pending = Identifier(
            schema, Projection.table_name(CHECKPOINT_PENDING, version)
        )

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
        self._checkpoint_due(entries)

    def _checkpoint_due(self, entries: Sequence[LedgerEntry]) -> None:
        """Count each tenant's entries since its last checkpoint, and copy the
        rows of those that are due (at the batch's last entry: every entry up
        to it is in the rows now)."""
        spans: dict[str, tuple[int, datetime, datetime]] = {}
        for e in entries:
            n, first, last = spans.get(e.tenant_id, (0, e.occurred_at, e.occurred_at))
            spans[e.tenant_id] = (
                n + 1,
                min(first, e.occurred_at),
                max(last, e.occurred_at),
            )
        tenants = sorted(spans)
        self.cursor.execute(
            _PENDING_ADD.format(pending=self.pending, marks=self.marks),
            {
                "tenants": tenants,
                "counts": [spans[t][0] for t in tenants],
                "firsts": [spans[t][1] for t in tenants],
                "lasts": [spans[t][2] for t in tenants],
                "every": CHECKPOINT_EVERY,
            },
        )
        answered = [_values(row) for row in self.cursor.fetchall()]
        due = [(t, first, last) for t, first, last, is_due in answered if is_due]
        position = max(e.position for e in entries)
        for tenant_id, first, last in sorted(due):
            self._checkpoint(tenant_id, position, first, last)

    def _checkpoint(
        self, tenant_id: str, position: int, first: datetime, last: datetime
    ) -> None:
        self.cursor.execute(
            SQL(
                "SELECT timezone, period_anchor_day, grace_hours FROM {}"
                " WHERE tenant_id = %s"
            ).format(self.calendars),
            (tenant_id,),
        )
        row = self.cursor.fetchone()
        d = default_calendar(tenant_id)
        calendar = Calendar(tenant_id, *_values(row)) if row else d
        self.cursor.execute(
            _CHECKPOINT.format(
                checkpoints=self.checkpoints,
                marks=self.marks,
                pending=self.pending,
                daily=self.daily,
            ),
            {
                "tenant": tenant_id,
                "position": position,
                "tz": calendar.timezone,
                "anchor": calendar.period_anchor_day,
                "grace": calendar.grace_hours,
                "first_period": calendar.day_and_period(first)[1].start,
                "last_period": calendar.day_and_period(last)[1].start,
            },
        )

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


def _values(row: Any) -> tuple[Any, ...]:
    return tuple(row.values()) if isinstance(row, dict) else tuple(row)


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


# Adds each tenant's entries of a batch to its count since its last checkpoint;
# answers the tenants now due (tenant, first and last instant of the entries).
_PENDING_ADD = SQL(
    "INSERT INTO {pending} AS p (tenant_id, entries, first_at, last_at)"
    " SELECT * FROM unnest(%(tenants)s::text[], %(counts)s::bigint[],"
    " %(firsts)s::timestamptz[], %(lasts)s::timestamptz[])"
    " ON CONFLICT (tenant_id) DO UPDATE SET entries = p.entries + EXCLUDED.entries,"
    " first_at = least(p.first_at, EXCLUDED.first_at),"
    " last_at = greatest(p.last_at, EXCLUDED.last_at)"
    " RETURNING tenant_id, first_at, last_at, entries >= greatest(%(every)s,"
    " (SELECT m.rows FROM {marks} m WHERE m.tenant_id = p.tenant_id"
    "  ORDER BY m.position DESC LIMIT 1)) AS due"
)
# Copies the tenant's rows of the periods first_period..last_period as they
# stand, marks the checkpoint, and starts the count again.
_CHECKPOINT = SQL(
    """
WITH copied AS (
    INSERT INTO {checkpoints} (position, """
    + _DAILY_COLUMNS
    + """)
    SELECT %(position)s, """
    + _DAILY_COLUMNS
    + """ FROM {daily}
    WHERE tenant_id = %(tenant)s
      AND period_start BETWEEN %(first_period)s AND %(last_period)s
    RETURNING 1
), marked AS (
    INSERT INTO {marks} (tenant_id, position, timezone, period_anchor_day,
        grace_hours, first_period, last_period, rows)
    SELECT %(tenant)s, %(position)s, %(tz)s, %(anchor)s, %(grace)s,
           %(first_period)s, %(last_period)s, count(*) FROM copied
)
UPDATE {pending} SET entries = 0, first_at = 'infinity', last_at = '-infinity'
WHERE tenant_id = %(tenant)s
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

    name = history.LEDGER_KEEPER
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
        CHECKPOINTS: (
            "position bigint NOT NULL, tenant_id text NOT NULL,"
            " usage_date date NOT NULL, workspace_id text NOT NULL,"
            " product_area text NOT NULL, unit text NOT NULL,"
            " period_start date NOT NULL, quantity numeric NOT NULL,"
            " source_event_count bigint NOT NULL,"
            " first_reported_quantity numeric NOT NULL,"
            " late_event_count bigint NOT NULL, adjustment_quantity numeric NOT NULL,"
            " adjustment_count bigint NOT NULL"
        ),
        CHECKPOINT_MARKS: (
            "tenant_id text NOT NULL, position bigint NOT NULL,"
            " timezone text NOT NULL, period_anchor_day integer NOT NULL,"
            " grace_hours integer NOT NULL, first_period date NOT NULL,"
            " last_period date NOT NULL, rows bigint NOT NULL,"
            " PRIMARY KEY (tenant_id, position)"
        ),
        CHECKPOINT_PENDING: (
            "tenant_id text PRIMARY KEY, entries bigint NOT NULL,"
            " first_at timestamptz NOT NULL, last_at timestamptz NOT NULL"
        ),
    }
    indexes = (
        (LEDGER, "tenant_occurred", "tenant_id, occurred_at"),
        # What was recorded after a point of the history (as_of.py), and one
        # workspace's entries of a period.
        (LEDGER, "tenant_position", "tenant_id, position"),
        (LEDGER, "tenant_workspace", "tenant_id, workspace_id, occurred_at"),
        # The latest recorded at a point of the history (series_history.py).
        (LEDGER, "tenant_recorded", "tenant_id, recorded_at"),
        (DAILY, "tenant_workspace", "tenant_id, workspace_id, usage_date"),
        (CHECKPOINTS, "tenant_position", "tenant_id, position, usage_date"),
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

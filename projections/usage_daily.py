"""billing_usage_daily: usage per tenant, workspace, product area, day and unit.

Every quantity-changing metering event becomes one ledger entry (a signed delta,
in UTC, independent of any calendar). Daily rows are sums of ledger entries,
bucketed in the tenant's calendar, so they are additive: processing a history in
any batch split gives the same rows as a rebuild. When a tenant's calendar
changes, its daily rows are recomputed from its ledger entries, so the result
depends only on the histories, never on how the two upstreams interleaved.

Per day the view also keeps what was known when the day ended
(first_reported_quantity), how many events arrived after that (late_event_count)
and what changed after the billing period closed (adjustment_quantity and
adjustment_count): a late adjustment against a closed period, never silent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import singledispatch
from typing import Any, NamedTuple, Protocol

from psycopg import Cursor
from psycopg.sql import SQL, Identifier

from domain.periods import local_midnight, period_containing, usage_date
from domain.tenant_settings import DEFAULT_SETTINGS, TenantBillingSettings
from domain.usage import UsageRecord
from projections.base import Notified, Projection

LEDGER = "billing_usage_ledger"
DAILY = "billing_usage_daily"
CALENDARS = "billing_tenant_calendars"


class LedgerEntry(NamedTuple):
    """The signed change one metering event makes to its day (a COPY row as is)."""

    position: int
    tenant_id: str
    event_id: str
    kind: str  # recorded | voided | amended
    workspace_id: str
    product_area: str
    unit: str
    occurred_at: datetime
    recorded_at: datetime
    quantity_delta: Decimal
    count_delta: int


@dataclass(frozen=True, slots=True)
class Calendar:
    """How a tenant's usage is bucketed into days and billing periods."""

    tenant_id: str
    timezone: str
    period_anchor_day: int
    grace_hours: int


DailyKey = tuple[str, date, str, str, str]  # tenant, day, workspace, area, unit


@dataclass(slots=True)
class DailyRow:
    period_start: date
    quantity: Decimal = Decimal(0)
    source_event_count: int = 0
    first_reported_quantity: Decimal = Decimal(0)
    late_event_count: int = 0
    adjustment_quantity: Decimal = Decimal(0)
    adjustment_count: int = 0


# --- the projection: events in, changes out (pure) -------------------------------


@singledispatch
def change_of(event: Any, position: int) -> LedgerEntry | Calendar | None:
    """Unknown events change nothing (their position still advances)."""
    return None


@change_of.register
def _(event: UsageRecord.Recorded, position: int) -> LedgerEntry:
    return _entry(event, position, "recorded", event.quantity, 1)


@change_of.register
def _(event: UsageRecord.Voided, position: int) -> LedgerEntry:
    return _entry(event, position, "voided", -event.quantity, -1)


@change_of.register
def _(event: UsageRecord.Amended, position: int) -> LedgerEntry:
    return _entry(
        event, position, "amended", event.quantity - event.previous_quantity, 0
    )


@change_of.register(TenantBillingSettings.Configured)
@change_of.register(TenantBillingSettings.Changed)
def _(event: Any, position: int) -> Calendar:
    return Calendar(
        event.tenant_id, event.timezone, event.period_anchor_day, event.grace_hours
    )


def _entry(
    event: Any, position: int, kind: str, delta: Decimal, count: int
) -> LedgerEntry:
    return LedgerEntry(
        position,
        event.tenant_id,
        event.event_id,
        kind,
        event.workspace_id,
        event.product_area,
        event.unit,
        event.occurred_at,
        event.timestamp,
        delta,
        count,
    )


@dataclass(frozen=True, slots=True)
class DailyChanges:
    """What one batch changes; `ledger_copy` is the entries as COPY text, built
    on the projection's reader thread so the writer only ships bytes."""

    entries: list[LedgerEntry]
    calendars: list[Calendar]
    ledger_copy: bytes


# COPY's text format: backslash, tab, newline and carriage return are escaped.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def ledger_copy_text(entries: Sequence[LedgerEntry]) -> bytes:
    """Entries as COPY text lines: text fields escaped, instants in ISO 8601."""
    return "".join([_copy_line(e) for e in entries]).encode()


def _copy_line(e: LedgerEntry) -> str:
    line = (
        f"{e.position}\t{e.tenant_id}\t{e.event_id}\t{e.kind}\t{e.workspace_id}"
        f"\t{e.product_area}\t{e.unit}\t{e.occurred_at.isoformat()}"
        f"\t{e.recorded_at.isoformat()}\t{e.quantity_delta}\t{e.count_delta}\n"
    )
    # Ingest rules keep these fields free of COPY's special characters; check
    # the whole line at C speed and escape field by field only if one slipped in.
    if (
        line.count("\t") == 10
        and "\\" not in line
        and "\r" not in line
        and line.count("\n") == 1
    ):
        return line
    x = _COPY_ESCAPES
    return (
        f"{e.position}\t{e.tenant_id.translate(x)}\t{e.event_id.translate(x)}"
        f"\t{e.kind}\t{e.workspace_id.translate(x)}\t{e.product_area.translate(x)}"
        f"\t{e.unit.translate(x)}\t{e.occurred_at.isoformat()}"
        f"\t{e.recorded_at.isoformat()}\t{e.quantity_delta}\t{e.count_delta}\n"
    )


def split_changes(
    batch: Sequence[Notified],
) -> tuple[list[LedgerEntry], list[Calendar]]:
    entries: list[LedgerEntry] = []
    calendars: list[Calendar] = []
    for item in batch:
        change = change_of(item.event, item.position)
        if type(change) is LedgerEntry:
            entries.append(change)
        elif change is not None:
            calendars.append(change)  # type: ignore[arg-type]
    return entries, calendars


# --- the view interface, and two implementations ---------------------------------


class UsageDailyView(Protocol):
    """Where ledger entries and calendars are written and daily rows kept."""

    def add_entries(self, entries: Sequence[LedgerEntry]) -> None: ...

    def set_calendars(self, calendars: Sequence[Calendar]) -> None: ...


def default_calendar(tenant_id: str) -> Calendar:
    d = DEFAULT_SETTINGS
    return Calendar(tenant_id, d.timezone, d.period_anchor_day, d.grace_hours)


class InMemoryUsageDailyView:
    """The reference implementation: the bucketing rules written out in Python."""

    def __init__(self) -> None:
        self.ledger: list[LedgerEntry] = []
        self.calendars: dict[str, Calendar] = {}
        self.daily: dict[DailyKey, DailyRow] = {}

    def add_entries(self, entries: Sequence[LedgerEntry]) -> None:
        self.ledger.extend(entries)
        for entry in entries:
            self._bucket(entry)

    def set_calendars(self, calendars: Sequence[Calendar]) -> None:
        for calendar in calendars:
            if self.calendars.get(calendar.tenant_id) == calendar:
                continue
            self.calendars[calendar.tenant_id] = calendar
            tenant = calendar.tenant_id
            self.daily = {k: v for k, v in self.daily.items() if k[0] != tenant}
            for entry in self.ledger:
                if entry.tenant_id == tenant:
                    self._bucket(entry)

    def _bucket(self, e: LedgerEntry) -> None:
        cal = self.calendars.get(e.tenant_id) or default_calendar(e.tenant_id)
        day = usage_date(e.occurred_at, cal.timezone)
        period = period_containing(
            day, cal.period_anchor_day, cal.timezone, timedelta(hours=cal.grace_hours)
        )
        key = (e.tenant_id, day, e.workspace_id, e.product_area, e.unit)
        row = self.daily.setdefault(key, DailyRow(period.start))
        row.quantity += e.quantity_delta
        row.source_event_count += e.count_delta
        if e.recorded_at < local_midnight(day + timedelta(days=1), cal.timezone):
            row.first_reported_quantity += e.quantity_delta
        elif e.kind == "recorded":
            row.late_event_count += 1
        if e.recorded_at >= period.closes_at:
            row.adjustment_quantity += e.quantity_delta
            row.adjustment_count += 1


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
# same rules in Python, and contract tests hold the two together.
_ROLLUP = SQL("""
WITH src AS (
    SELECT l.tenant_id, l.workspace_id, l.product_area, l.unit, l.kind,
           l.quantity_delta, l.count_delta, l.recorded_at,
           coalesce(c.timezone, %(tz)s) AS tz,
           coalesce(c.period_anchor_day, %(anchor)s) AS anchor,
           coalesce(c.grace_hours, %(grace)s) AS grace,
           (l.occurred_at AT TIME ZONE coalesce(c.timezone, %(tz)s))::date AS usage_date
    FROM {ledger} l LEFT JOIN {calendars} c ON c.tenant_id = l.tenant_id
    WHERE {where}
), dated AS (
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
)
INSERT INTO {daily} AS d (
    tenant_id, usage_date, workspace_id, product_area, unit, period_start,
    quantity, source_event_count, first_reported_quantity, late_event_count,
    adjustment_quantity, adjustment_count)
SELECT tenant_id, usage_date, workspace_id, product_area, unit, period_start,
       sum(quantity_delta),
       sum(count_delta),
       coalesce(sum(quantity_delta) FILTER (WHERE recorded_at < day_ends_at), 0),
       count(*) FILTER (WHERE kind = 'recorded' AND recorded_at >= day_ends_at),
       coalesce(sum(quantity_delta) FILTER (WHERE recorded_at >= closes_at), 0),
       count(*) FILTER (WHERE recorded_at >= closes_at)
FROM timed
GROUP BY tenant_id, usage_date, workspace_id, product_area, unit, period_start
ON CONFLICT (tenant_id, usage_date, workspace_id, product_area, unit) DO UPDATE SET
    quantity = d.quantity + EXCLUDED.quantity,
    source_event_count = d.source_event_count + EXCLUDED.source_event_count,
    first_reported_quantity =
        d.first_reported_quantity + EXCLUDED.first_reported_quantity,
    late_event_count = d.late_event_count + EXCLUDED.late_event_count,
    adjustment_quantity = d.adjustment_quantity + EXCLUDED.adjustment_quantity,
    adjustment_count = d.adjustment_count + EXCLUDED.adjustment_count
""")


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

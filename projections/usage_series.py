"""Daily usage series that move with time: the inputs the forecast and the
anomaly read models each keep in their own tables.

Not a read model itself: each read model that needs its tenants' daily
series, calendars and time gets its own copy of these tables (named after it)
and this code to keep them:

- `<name>_slots`: signed quantity per tenant, workspace, product area, unit and
  15-minute UTC slot (every time zone's day starts on a quarter hour, so slots
  re-bucket exactly when a tenant's time zone changes), and how much of it
  was **restated** (a correction, or usage recorded more than a day after it
  happened, or later if the read model says so);
- `<name>_days`: the same per local day of the tenant's calendar;
- `<name>_tenants`: each tenant's calendar and latest recorded usage;
- `<name>_clock`: the latest tick of time.

A tenant's time is the latest tick or its latest recorded usage, whichever is
later: never a clock (projections/forecast/README.md says why).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import singledispatch
from typing import Any, NamedTuple

from psycopg import AsyncConnection, Cursor
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composable, Composed, Identifier, Literal

from domain.periods import (
    BillingPeriod,
    period_containing,
    resolve_period,
    usage_date,
)
from domain.tenant_settings import DEFAULT_SETTINGS, TenantBillingSettings
from domain.ticks import Tick
from domain.usage import UsageRecord
from domain.values import ZERO
from projections.base import REGISTRY, Projection, tracking_view

SLOT_SECONDS = 15 * 60
# Usage recorded this long after it happened restates its day.
LATE = timedelta(days=1)


class SeriesKey(NamedTuple):
    workspace_id: str  # "" for the whole tenant
    product_area: str
    unit: str


@dataclass(frozen=True, slots=True)
class TenantCalendar:
    tenant_id: str
    timezone: str
    anchor_day: int
    grace_hours: int

    def period_of(self, day: date) -> BillingPeriod:
        return period_containing(
            day, self.anchor_day, self.timezone, timedelta(hours=self.grace_hours)
        )

    def period_at(self, instant: datetime) -> BillingPeriod:
        return self.period_of(usage_date(instant, self.timezone))


def default_calendar(tenant_id: str) -> TenantCalendar:
    d = DEFAULT_SETTINGS
    return TenantCalendar(tenant_id, d.timezone, d.period_anchor_day, d.grace_hours)


def series_tables(name: str) -> dict[str, str]:
    """The stable view names and columns of a read model's copy of the inputs."""
    return {
        f"{name}_slots": (
            "tenant_id text NOT NULL, workspace_id text NOT NULL,"
            " product_area text NOT NULL, unit text NOT NULL,"
            " slot timestamptz NOT NULL, quantity numeric NOT NULL,"
            " restated numeric NOT NULL, position bigint NOT NULL,"
            " PRIMARY KEY (tenant_id, workspace_id, product_area, unit, slot)"
        ),
        f"{name}_days": (
            "tenant_id text NOT NULL, usage_date date NOT NULL,"
            " workspace_id text NOT NULL, product_area text NOT NULL,"
            " unit text NOT NULL, quantity numeric NOT NULL,"
            " restated numeric NOT NULL, position bigint NOT NULL,"
            " PRIMARY KEY (tenant_id, usage_date, workspace_id, product_area, unit)"
        ),
        f"{name}_tenants": (
            "tenant_id text PRIMARY KEY, timezone text, anchor_day integer,"
            " grace_hours integer, last_recorded_at timestamptz"
        ),
        f"{name}_clock": "id boolean PRIMARY KEY, at timestamptz NOT NULL",
    }


# --- the pure part: events in, changes out ------------------------------------


class SlotKey(NamedTuple):
    tenant_id: str
    workspace_id: str
    product_area: str
    unit: str
    slot: datetime  # UTC, a multiple of 15 minutes


@dataclass(slots=True)
class SeriesChanges:
    """What one batch changes in the inputs (and `more`: the read model's own)."""

    # quantity, of it restated, the latest metering position that changed it
    slots: dict[SlotKey, tuple[Decimal, Decimal, int]] = field(default_factory=dict)
    recorded: dict[str, datetime] = field(default_factory=dict)  # latest per tenant
    calendars: dict[str, TenantCalendar] = field(default_factory=dict)
    tick: datetime | None = None
    more: list[Any] = field(default_factory=list)
    late: timedelta = LATE  # usage recorded this long after it happened restates

    @property
    def tenants(self) -> set[str]:
        return set(self.recorded) | set(self.calendars)


def slot_of(instant: datetime) -> datetime:
    seconds = instant.timestamp()
    return datetime.fromtimestamp(seconds - seconds % SLOT_SECONDS, UTC)


@singledispatch
def series_change(event: Any, position: int, changes: SeriesChanges) -> bool:
    """Apply `event` if it is one of the inputs; False if it is not."""
    return False


@series_change.register
def _(event: UsageRecord.Recorded, position: int, changes: SeriesChanges) -> bool:
    late = event.timestamp - event.occurred_at > changes.late
    _add(changes, event, position, event.quantity, restated=late)
    return True


@series_change.register
def _(event: UsageRecord.Voided, position: int, changes: SeriesChanges) -> bool:
    _add(changes, event, position, -event.quantity, restated=True)
    return True


@series_change.register
def _(event: UsageRecord.Amended, position: int, changes: SeriesChanges) -> bool:
    delta = event.quantity - event.previous_quantity
    _add(changes, event, position, delta, restated=True)
    return True


@series_change.register(TenantBillingSettings.Configured)
@series_change.register(TenantBillingSettings.Changed)
def _(event: Any, position: int, changes: SeriesChanges) -> bool:
    changes.calendars[event.tenant_id] = TenantCalendar(
        event.tenant_id, event.timezone, event.period_anchor_day, event.grace_hours
    )
    return True


@series_change.register
def _(event: Tick.Passed, position: int, changes: SeriesChanges) -> bool:
    if changes.tick is None or event.at > changes.tick:
        changes.tick = event.at
    return True


def _add(
    changes: SeriesChanges, event: Any, position: int, delta: Decimal, *, restated: bool
) -> None:
    key = SlotKey(
        event.tenant_id,
        event.workspace_id,
        event.product_area,
        event.unit,
        slot_of(event.occurred_at),
    )
    quantity, late, _ = changes.slots.get(key, (ZERO, ZERO, 0))
    late = late + delta if restated else late
    changes.slots[key] = (quantity + delta, late, position)
    latest = changes.recorded.get(event.tenant_id)
    if latest is None or event.timestamp > latest:
        changes.recorded[event.tenant_id] = event.timestamp


# --- in PostgreSQL ---------------------------------------------------------------


@dataclass(slots=True)
class Dirty:
    """What of one tenant a batch may have changed."""

    everything: bool = False  # every period with usage (calendar, prices...)
    periods: set[date] = field(default_factory=set)  # period starts
    days: set[date] = field(default_factory=set)  # local days of changed usage
    series: set[SeriesKey] = field(default_factory=set)  # whose usage changed


@dataclass(frozen=True, slots=True)
class DayUsage:
    quantity: Decimal
    restated: Decimal  # of it, by corrections and late usage
    position: int  # the latest metering event that changed it


class SeriesView:
    """One version of a read model's tables, in the projection's transaction.
    `{slots}`, `{days}`... in SQL text name this version's tables (the view
    name after the read model's name)."""

    def __init__(
        self, cursor: Cursor[Any], schema: str, version: int, projection: Projection
    ) -> None:
        self.cursor = cursor
        self.rows = cursor.connection.cursor(row_factory=tuple_row)
        self.where = (schema, version)
        prefix = f"{projection.name}_"
        self.t = {
            view.removeprefix(prefix): Identifier(
                schema, Projection.table_name(view, version)
            )
            for view in projection.tables
        }

    def sql(self, text: str, **extra: Composable) -> Composed:
        return SQL(text).format(**self.t, **extra)

    def all(
        self, text: str, params: Sequence[Any] | dict[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        self.rows.execute(self.sql(text), params)
        return self.rows.fetchall()

    def run(self, text: str, params: Sequence[Any] | dict[str, Any] = ()) -> None:
        self.rows.execute(self.sql(text), params)

    def many(self, text: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = list(rows)
        if batch:
            self.rows.executemany(self.sql(text), batch)

    # --- inputs ---------------------------------------------------------------

    def apply_series(
        self, changes: SeriesChanges, also: Iterable[str] = ()
    ) -> dict[str, Dirty]:
        """Store the batch's usage, calendars and tick (and make sure tenants in
        `also` are known); what each tenant's re-projection must cover."""
        dirty: dict[str, Dirty] = defaultdict(Dirty)
        self.many(
            "INSERT INTO {tenants} (tenant_id) VALUES (%s) ON CONFLICT DO NOTHING",
            [(t,) for t in sorted(changes.tenants | set(also))],
        )
        for calendar in changes.calendars.values():
            self._set_calendar(calendar, dirty)
        self._add_usage(changes, dirty)
        if changes.tick is not None:
            self.run(
                "INSERT INTO {clock} (id, at) VALUES (true, %s) ON CONFLICT (id)"
                " DO UPDATE SET at = greatest({clock}.at, EXCLUDED.at)",
                (changes.tick,),
            )
            for (tenant,) in self.all("SELECT tenant_id FROM {tenants}"):
                dirty.setdefault(tenant, Dirty())  # time moved for everyone
        return dirty

    def forget_answers(self, tenant_id: str) -> None:
        """Drop the tenant's answers (its periods may have moved): override."""

    def _set_calendar(self, calendar: TenantCalendar, dirty: dict[str, Dirty]) -> None:
        old = self.calendar(calendar.tenant_id)
        self.run(
            "UPDATE {tenants} SET timezone = %s, anchor_day = %s, grace_hours = %s"
            " WHERE tenant_id = %s",
            (
                calendar.timezone,
                calendar.anchor_day,
                calendar.grace_hours,
                calendar.tenant_id,
            ),
        )
        if old == calendar:
            return
        tenant = calendar.tenant_id
        if old.timezone != calendar.timezone:
            self.run("DELETE FROM {days} WHERE tenant_id = %s", (tenant,))
            self.run(
                "INSERT INTO {days} (tenant_id, usage_date, workspace_id, product_area,"
                " unit, quantity, restated, position) SELECT tenant_id,"
                " (slot AT TIME ZONE %s)::date, workspace_id, product_area, unit,"
                " sum(quantity), sum(restated), max(position) FROM {slots}"
                " WHERE tenant_id = %s GROUP BY 1, 2, 3, 4, 5",
                (calendar.timezone, tenant),
            )
        self.forget_answers(tenant)
        dirty[tenant].everything = True

    def _add_usage(self, changes: SeriesChanges, dirty: dict[str, Dirty]) -> None:
        if not changes.slots:
            return
        tenants = {k.tenant_id for k in changes.slots}
        calendars = {t: self.calendar(t) for t in tenants}
        began = {t: self.first_days(t) for t in tenants}
        self.many(
            "INSERT INTO {slots} AS s (tenant_id, workspace_id, product_area,"
            " unit, slot, quantity, restated, position)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (tenant_id, workspace_id, product_area, unit, slot)"
            " DO UPDATE SET quantity = s.quantity + EXCLUDED.quantity,"
            " restated = s.restated + EXCLUDED.restated,"
            " position = greatest(s.position, EXCLUDED.position)",
            [(*key, *values) for key, values in sorted(changes.slots.items())],
        )
        days: dict[tuple[str, date, str, str, str], tuple[Decimal, Decimal, int]] = {}
        for key, (quantity, restated, position) in changes.slots.items():
            tenant, series = key.tenant_id, SeriesKey(*key[1:4])
            day = usage_date(key.slot, calendars[tenant].timezone)
            q, r, p = days.get((tenant, day, *series), (ZERO, ZERO, 0))
            days[(tenant, day, *series)] = (
                q + quantity,
                r + restated,
                max(p, position),
            )
            dirty[tenant].days.add(day)
            dirty[tenant].series.add(series)
            first = began[tenant].get(series)
            if first is not None and day < first:
                # Before the series' first day: every period whose history
                # starts on that first day now starts earlier.
                dirty[tenant].everything = True
        self.many(
            "INSERT INTO {days} AS d (tenant_id, usage_date, workspace_id,"
            " product_area, unit, quantity, restated, position)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (tenant_id, usage_date, workspace_id, product_area, unit)"
            " DO UPDATE SET quantity = d.quantity + EXCLUDED.quantity,"
            " restated = d.restated + EXCLUDED.restated,"
            " position = greatest(d.position, EXCLUDED.position)",
            [(*key, *sums) for key, sums in sorted(days.items())],
        )
        self.many(
            "UPDATE {tenants} SET last_recorded_at ="
            " greatest(last_recorded_at, %s) WHERE tenant_id = %s",
            [(at, tenant) for tenant, at in sorted(changes.recorded.items())],
        )

    # --- reading the inputs -----------------------------------------------------

    def calendar(self, tenant_id: str) -> TenantCalendar:
        found = self.all(
            "SELECT timezone, anchor_day, grace_hours FROM {tenants}"
            " WHERE tenant_id = %s",
            (tenant_id,),
        )
        if not found or found[0][0] is None:
            return default_calendar(tenant_id)
        return TenantCalendar(tenant_id, *found[0])

    def local_dates(self) -> dict[str, date]:
        """Every tenant's date (in its time zone) at the time it is for it."""
        return {
            tenant: usage_date(at, timezone or DEFAULT_SETTINGS.timezone)
            for tenant, at, timezone in self.all(
                "SELECT t.tenant_id, greatest((SELECT at FROM {clock}),"
                " t.last_recorded_at), t.timezone FROM {tenants} t"
            )
            if at is not None
        }

    def observed_until(self, tenant_id: str) -> datetime | None:
        """How far time has got for the tenant: the latest tick, or its latest
        recorded usage if that is later."""
        found = self.all(
            "SELECT greatest((SELECT at FROM {clock}), t.last_recorded_at)"
            " FROM {tenants} t WHERE t.tenant_id = %s",
            (tenant_id,),
        )
        return found[0][0] if found else None

    def days(
        self, tenant_id: str, first: date, end: date
    ) -> dict[SeriesKey, dict[date, Decimal]]:
        return {
            key: {day: usage.quantity for day, usage in days.items()}
            for key, days in self.day_usage(tenant_id, first, end).items()
        }

    def day_usage(
        self, tenant_id: str, first: date, end: date
    ) -> dict[SeriesKey, dict[date, DayUsage]]:
        found: dict[SeriesKey, dict[date, DayUsage]] = defaultdict(dict)
        for workspace, area, unit, day, quantity, restated, position in self.all(
            "SELECT workspace_id, product_area, unit, usage_date, quantity, restated,"
            " position FROM {days}"
            " WHERE tenant_id = %s AND usage_date >= %s AND usage_date < %s",
            (tenant_id, first, end),
        ):
            found[SeriesKey(workspace, area, unit)][day] = DayUsage(
                quantity, restated, position
            )
        return found

    def first_days(self, tenant_id: str) -> dict[SeriesKey, date]:
        """The first day each of the tenant's series has usage on."""
        return {
            SeriesKey(workspace, area, unit): day
            for workspace, area, unit, day in self.all(
                "SELECT workspace_id, product_area, unit, min(usage_date) FROM {days}"
                " WHERE tenant_id = %s GROUP BY 1, 2, 3",
                (tenant_id,),
            )
        }

    def usage_span(self, tenant_id: str) -> tuple[date, date] | None:
        found = self.all(
            "SELECT min(usage_date), max(usage_date) FROM {days} WHERE tenant_id = %s",
            (tenant_id,),
        )
        return (found[0][0], found[0][1]) if found and found[0][0] else None

    def periods_to_reproject(
        self,
        calendar: TenantCalendar,
        current: BillingPeriod,
        dirty: Dirty,
        window: timedelta,
        still_open: Iterable[date],
    ) -> list[date]:
        """The period starts whose answers the changes may have moved, oldest
        first, none after the current period: the current one, those still
        open, the changed days' periods and the periods whose `window` (the
        history before them an answer reads) holds a changed day, and with
        `everything`, every period with usage."""
        starts = {current.start} | dirty.periods | set(still_open)
        for day in dirty.days:
            period = calendar.period_of(day)
            while period.start <= day + window:
                starts.add(period.start)
                period = calendar.period_of(period.end)
        if dirty.everything:
            span = self.usage_span(calendar.tenant_id)
            if span:
                period = calendar.period_of(span[0])
                while period.start <= span[1]:
                    starts.add(period.start)
                    period = calendar.period_of(period.end)
        return sorted(s for s in starts if s <= current.start)


# --- reading: where a read model of these inputs is, for one tenant --------------


@dataclass(frozen=True, slots=True)
class SeriesSnapshot:
    """Where the live read model is, and the tenant's period asked for."""

    version: int
    table: int  # OID of the live answers table (a re-created one never matches)
    positions: dict[str, int]
    clock: datetime | None  # the latest tick the read model has seen
    period: BillingPeriod


class SeriesReader:
    """The snapshot and positions every answer of such a read model starts
    from; `answers` is the stable view whose live table's OID keys the cache."""

    def __init__(self, projection: Projection, answers: str) -> None:
        name = projection.name
        upstreams = SQL(", ").join(map(Literal, projection.upstreams))
        tracking = Identifier(tracking_view(projection))
        self._snapshot_sql = SQL(
            "SELECT p.live_version,"
            " to_regclass({versions} || p.live_version)::oid::bigint,"
            " (SELECT jsonb_object_agg(application_name, notification_id)"
            "  FROM {tracking} WHERE application_name IN ({upstreams})),"
            " (SELECT at FROM {clock}), t.timezone, t.anchor_day, t.grace_hours"
            " FROM {registry} p LEFT JOIN {tenants} t ON t.tenant_id = %(tenant)s"
            " WHERE p.name = {name}"
        ).format(
            versions=Literal(f"{answers}_v"),
            tracking=tracking,
            upstreams=upstreams,
            clock=Identifier(f"{name}_clock"),
            registry=Identifier(REGISTRY),
            tenants=Identifier(f"{name}_tenants"),
            name=Literal(name),
        )
        self._positions_sql = SQL(
            "SELECT application_name, notification_id FROM {}"
            " WHERE application_name IN ({})"
        ).format(tracking, upstreams)

    async def snapshot(
        self, conn: AsyncConnection[Any], tenant_id: str, period: str, now: datetime
    ) -> SeriesSnapshot:
        """Positions, the latest tick and the tenant's `period` (its calendar as
        the read model knows it) at `now`, in `conn`'s snapshot."""
        cur = await conn.cursor(row_factory=tuple_row).execute(
            self._snapshot_sql, {"tenant": tenant_id}, prepare=True
        )
        row = await cur.fetchone()
        assert row is not None
        version, table, positions, clock, timezone, anchor, grace = row
        calendar = default_calendar(tenant_id)
        resolved = resolve_period(
            period,
            now=now,
            anchor_day=anchor or calendar.anchor_day,
            timezone=timezone or calendar.timezone,
            grace=timedelta(hours=calendar.grace_hours if grace is None else grace),
        )
        return SeriesSnapshot(version, table, dict(positions or {}), clock, resolved)

    async def live_positions(self, conn: AsyncConnection[Any]) -> dict[str, int]:
        cur = await conn.cursor(row_factory=tuple_row).execute(
            self._positions_sql, prepare=True
        )
        return dict(await cur.fetchall())

"""Daily series as the history stood at a cut: the inputs the forecast and the
anomaly read models keep (usage_series.py), read from the histories instead.

An as-of answer calls a read model's own pure functions on these inputs, so it
is what the read model served when it stood at the cut's positions:

- usage per local day and series from the metering ledger, in one statement
  that applies series_change's rules in SQL (15-minute UTC slots into the
  calendar's local days; restated: corrections, and usage recorded more than
  the read model's `late` after it happened; position: the latest event);
  or, when the read model's own days are bucketed with the calendar at the cut
  and the ledger holds every entry they do, those days with every day an
  entry after the cut touched summed again from the ledger (the same rule on
  the same entries, so the same days; a read then costs what came after the
  cut, not the tenant's whole history);
- the tenant's calendar (history.calendar_at) and the latest tick;
- values as the read model's tables give them back (`numeric`, `trimmed`,
  `in_session`), so the encoded answers are the same bytes.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier

from domain.periods import BillingPeriod, resolve_period
from domain.tenant_settings import DEFAULT_SETTINGS
from projections.base import Projection, tracking_view
from projections.history import (
    LEDGER,
    LEDGER_KEEPER,
    Cut,
    InvalidCut,
    anchored,
    calendar_at,
    events_table,
    position_at,
)
from projections.usage_series import (
    DayUsage,
    SeriesKey,
    SeriesSnapshot,
    TenantCalendar,
)

SeriesDays = dict[SeriesKey, dict[date, DayUsage]]

# The ticks read back from a cut's clock position. Ticks are recorded in time
# order (history.position_at relies on it too); the window only absorbs two
# workers committing neighbouring ticks out of order.
TICK_WINDOW = 64


@dataclass(frozen=True, slots=True)
class SeriesAt:
    """A tenant's daily series inputs at a cut."""

    calendar: TenantCalendar
    configured: bool  # the tenant has a settings event at the cut
    positions: dict[str, int]  # of the upstreams the read model follows
    clock: datetime | None  # the latest tick
    recorded: datetime | None  # the tenant's latest recorded usage
    usage: SeriesDays  # every local day that has a ledger entry
    first_days: dict[SeriesKey, date]
    # Read from the read model's own days, which are the days at the cut
    # before this one (no entry after the cut touched them); None: summed
    # from the ledger. Not an input: how they were read.
    unchanged_before: date | None = field(default=None, compare=False)

    @property
    def observed(self) -> datetime | None:
        """How far time has got for the tenant (SeriesView.observed_until)."""
        known = [t for t in (self.clock, self.recorded) if t is not None]
        return max(known) if known else None

    def day_usage(self, first: date, end: date) -> SeriesDays:
        """The days first <= day < end (SeriesView.day_usage)."""
        found: SeriesDays = {}
        for key, days in self.usage.items():
            kept = {d: u for d, u in days.items() if first <= d < end}
            if kept:
                found[key] = kept
        return found

    def days(self, first: date, end: date) -> dict[SeriesKey, dict[date, Decimal]]:
        return {
            key: {d: u.quantity for d, u in days.items()}
            for key, days in self.day_usage(first, end).items()
        }

    def period(self, spec: str, now: datetime) -> BillingPeriod:
        """The period `spec` names at `now` in the calendar at the cut."""
        c = self.calendar
        return resolve_period(
            spec,
            now=now,
            anchor_day=c.anchor_day,
            timezone=c.timezone,
            grace=timedelta(hours=c.grace_hours),
        )

    def snapshot(self, period: BillingPeriod) -> SeriesSnapshot:
        """Where a read model standing at the cut is (no live copy: 0, 0)."""
        return SeriesSnapshot(0, 0, dict(self.positions), self.clock, period)


async def series_at(  # noqa: PLR0913 - the question, and how to read it
    conn: AsyncConnection[Any],
    tenant_id: str,
    cut: Cut,
    read_model: type[Projection],
    *,
    late: timedelta,
    from_ledger: bool = False,
) -> tuple[Cut, SeriesAt]:
    """The tenant's series inputs at `cut` (with its metering position and
    instant both known), as `read_model` (a read model of usage_series'
    inputs, whose usage recorded more than `late` after it happened restates
    its day) holds them when it stands at the cut: from its own days less
    what came after the cut where they can be, else, or `from_ledger`, every
    ledger entry up to the cut summed again (independent of every derived
    row: what a thorough verification wants)."""
    cut = await anchored(conn, cut)
    positions = {u: await upstream_position(conn, cut, u) for u in read_model.upstreams}
    calendar = await calendar_at(conn, tenant_id, cut)
    found = None
    if not from_ledger:
        found = await _days_from_read_model(
            conn, read_model, tenant_id, cut, calendar.timezone, late
        )
    if found is None:
        usage, recorded = await _usage_days(
            conn, tenant_id, cut, calendar.timezone, late
        )
        unchanged_before = None
    else:
        usage, recorded, unchanged_before = found
    series = SeriesAt(
        TenantCalendar(
            tenant_id,
            calendar.timezone,
            calendar.period_anchor_day,
            calendar.grace_hours,
        ),
        calendar.position > 0,
        positions,
        await clock_at(conn, positions.get("clock", 0)),
        recorded,
        usage,
        {key: min(days) for key, days in usage.items()},
        unchanged_before,
    )
    return cut, series


async def upstream_position(conn: AsyncConnection[Any], cut: Cut, upstream: str) -> int:
    """The last position of `upstream` at the cut."""
    position = cut.position(upstream)
    if position is not None:
        return position
    if cut.at is None:
        raise InvalidCut(f"position: give one for {upstream}, or an instant")
    return await position_at(conn, upstream, cut.at)


# series_change in SQL: `_add` keys usage by slot_of(occurred_at), the days
# table buckets slots with usage_date(slot, timezone); a day's position is its
# latest event's, and Recorded usage is restated when late, corrections always.
_DAY = "(date_bin('15 minutes', {t}occurred_at, %(epoch)s) AT TIME ZONE %(tz)s)::date"
_SUMS = (
    "sum({t}quantity_delta),"
    " coalesce(sum({t}quantity_delta) FILTER (WHERE {t}kind <> 'recorded'"
    "  OR {t}recorded_at - {t}occurred_at > %(late)s), 0),"
    " max({t}position)"
)
_DAYS_SQL = SQL(
    f"SELECT workspace_id, product_area, unit, {_DAY.format(t='')},"
    f" {_SUMS.format(t='')}, max(recorded_at)"
    " FROM {ledger} WHERE tenant_id = %(tenant)s AND {cut} GROUP BY 1, 2, 3, 4"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def _usage_days(
    conn: AsyncConnection[Any],
    tenant_id: str,
    cut: Cut,
    timezone: str,
    late: timedelta,
) -> tuple[SeriesDays, datetime | None]:
    statement = _DAYS_SQL.format(ledger=Identifier(LEDGER), cut=cut.ledger_clause())
    params = {"tenant": tenant_id, "tz": timezone, "late": late, "epoch": _EPOCH}
    cur = await conn.cursor(row_factory=tuple_row).execute(
        statement, params | cut.ledger_params(), prepare=True
    )
    usage: SeriesDays = defaultdict(dict)
    recorded: datetime | None = None
    for ws, area, unit, day, quantity, restated, position, at in await cur.fetchall():
        usage[SeriesKey(ws, area, unit)][day] = DayUsage(quantity, restated, position)
        recorded = at if recorded is None or at > recorded else recorded
    return dict(usage), recorded


# Up to this many of the tenant's ledger entries after the cut, the days are
# the read model's less the days touched since (summed again); more, and
# they are summed from every entry up to the cut. On bench/replay.py's tenant
# (900,000 entries) a forecast at the cut took 0.6 s from the read model's
# days with 90,000 entries after it (1.8 s from every entry), 1.35 s both ways
# with 180,000, and 2.6 s with 360,000 (1.4 s).
DELTA_LIMIT = 150_000


async def _days_from_read_model(  # noqa: PLR0913 - the question, where to read
    conn: AsyncConnection[Any],
    read_model: type[Projection],
    tenant_id: str,
    cut: Cut,
    timezone: str,
    late: timedelta,
) -> tuple[SeriesDays, datetime | None, date] | None:
    """The tenant's days at `cut` from `read_model`'s own days, the latest
    recorded usage and the first day an entry after the cut touched (None:
    they cannot give them). They can when they are bucketed in the time zone
    at the cut and have processed the cut, and the ledger holds every entry
    they hold: then the days no entry after the cut touched are the days at
    the cut, and the others are summed again from the entries up to it."""
    tables = _read_model_tables(read_model)
    position = cut.positions["metering"]
    cur = await conn.cursor(row_factory=tuple_row).execute(
        tables.where,
        {"tenant": tenant_id, "cut_position": position, "enough": DELTA_LIMIT + 1},
        prepare=True,
    )
    row = await cur.fetchone()
    assert row is not None
    processed, ledger_holds, bucketed_in, later = row
    if processed is None or not position <= processed <= (ledger_holds or 0):
        return None
    if later > DELTA_LIMIT:
        return None
    if (bucketed_in or DEFAULT_SETTINGS.timezone) != timezone:
        return None
    params = {
        "tenant": tenant_id,
        "tz": timezone,
        "late": late,
        "epoch": _EPOCH,
        "cut_position": position,
        "processed": processed,
    }
    # The planner cannot know how few days `later` holds: its estimate of the
    # lookups (one per day, millions of rows for a busy tenant) would have
    # every read compile the statement (JIT, half a second) to run it in ms.
    await conn.execute("SET LOCAL jit = off")
    cur = await conn.cursor(row_factory=tuple_row).execute(
        tables.days, params, prepare=True
    )
    rows = await cur.fetchall()
    usage: SeriesDays = defaultdict(dict)
    for ws, area, unit, day, quantity, restated, latest, _ in rows:
        usage[SeriesKey(ws, area, unit)][day] = DayUsage(quantity, restated, latest)
    touched = (rows[0][7] if rows else None) or date.max  # the same on every row
    # The latest recorded at the cut: down the ledger's (tenant, recorded_at)
    # index from the latest, past what was recorded after the cut.
    cur = await conn.execute(_RECORDED_SQL, params, prepare=True)
    found = await cur.fetchone()
    return dict(usage), None if found is None else found[0], touched


@dataclass(frozen=True, slots=True)
class _Statements:
    where: Composed  # what the read model's days are, and how far they go
    days: Composed  # the days at the cut


@functools.cache
def _read_model_tables(read_model: type[Projection]) -> _Statements:
    names = {
        "ledger": Identifier(LEDGER),
        "days": Identifier(f"{read_model.name}_days"),
        "tenants": Identifier(f"{read_model.name}_tenants"),
        "tracking": Identifier(tracking_view(read_model)),
        "ledger_tracking": Identifier(tracking_view(LEDGER_KEEPER)),
    }
    # How far the read model and the ledger go, the time zone of the days,
    # and the tenant's entries after the cut (counted up to `enough`).
    where = SQL(
        "WITH processed AS (SELECT notification_id AS position FROM {tracking}"
        "  WHERE application_name = 'metering')"
        " SELECT (SELECT position FROM processed),"
        " (SELECT notification_id FROM {ledger_tracking}"
        "  WHERE application_name = 'metering'),"
        " t.timezone,"
        " (SELECT count(*) FROM (SELECT 1 FROM {ledger}"
        "  WHERE tenant_id = %(tenant)s AND position > %(cut_position)s"
        "  AND position <= (SELECT position FROM processed)"
        "  LIMIT %(enough)s) AS later)"
        " FROM (SELECT 1) AS one LEFT JOIN {tenants} t ON t.tenant_id = %(tenant)s"
    ).format(**names)
    # The days the entries after the cut that the read model's days hold
    # touched; the read model's other days; those days summed again from the
    # entries up to the cut (by the ledger's tenant, workspace and time index);
    # on every row, the first day touched.
    days = SQL(
        "WITH later AS MATERIALIZED (SELECT DISTINCT workspace_id, product_area,"
        f" unit, {_DAY.format(t='')} AS usage_date FROM {{ledger}}"
        " WHERE tenant_id = %(tenant)s"
        " AND position > %(cut_position)s AND position <= %(processed)s)"
        " SELECT d.workspace_id, d.product_area, d.unit, d.usage_date, d.quantity,"
        " d.restated, d.position, (SELECT min(usage_date) FROM later)"
        " FROM {days} d WHERE d.tenant_id = %(tenant)s"
        " AND NOT EXISTS (SELECT 1 FROM later x"
        "  WHERE (x.workspace_id, x.product_area, x.unit, x.usage_date)"
        "  = (d.workspace_id, d.product_area, d.unit, d.usage_date))"
        " UNION ALL SELECT x.workspace_id, x.product_area, x.unit, x.usage_date,"
        " s.quantity, s.restated, s.position, (SELECT min(usage_date) FROM later)"
        # LATERAL: one index lookup per touched day, whatever the planner
        # expects of `later` (a merge join sorting the whole ledger otherwise).
        f" FROM later x CROSS JOIN LATERAL (SELECT {_SUMS.format(t='l.')}"
        " FROM {ledger} l WHERE l.tenant_id = %(tenant)s"
        " AND l.workspace_id = x.workspace_id"
        " AND l.occurred_at >= (x.usage_date::timestamp AT TIME ZONE %(tz)s)"
        " AND l.occurred_at < ((x.usage_date + 1)::timestamp AT TIME ZONE %(tz)s)"
        " AND l.product_area = x.product_area AND l.unit = x.unit"
        f" AND {_DAY.format(t='l.')} = x.usage_date"
        " AND l.position <= %(cut_position)s) AS s (quantity, restated, position)"
        " WHERE s.position IS NOT NULL"  # a day with no entry by the cut: none
    ).format(**names)
    return _Statements(where, days)


_RECORDED_SQL = SQL(
    "SELECT recorded_at FROM {} WHERE tenant_id = %(tenant)s"
    " AND position <= %(cut_position)s ORDER BY recorded_at DESC LIMIT 1"
).format(Identifier(LEDGER))


class _Tick(msgspec.Struct):
    at: datetime


_tick_decoder = msgspec.json.Decoder(_Tick)
_TICKS_SQL = SQL(
    "SELECT state FROM {} WHERE notification_id <= %s"
    " ORDER BY notification_id DESC LIMIT %s"
).format(Identifier(events_table("clock")))


async def clock_at(conn: AsyncConnection[Any], position: int) -> datetime | None:
    """The latest tick of the clock history up to `position`, as the read
    model's clock table gives it back."""
    cur = await conn.execute(_TICKS_SQL, (position, TICK_WINDOW), prepare=True)
    ticks = [_tick_decoder.decode(state).at for (state,) in await cur.fetchall()]
    return in_session(conn, max(ticks)) if ticks else None


# --- values as the read models' tables give them back --------------------------


def numeric(value: Decimal) -> Decimal:
    """`value` through a numeric column: plain digits, no exponent, no -0."""
    found = Decimal(format(value, "f"))
    return found.copy_abs() if found.is_zero() else found


def trimmed(value: Decimal) -> Decimal:
    """trim_scale(`value`): through a numeric column, trailing zeros dropped."""
    found = numeric(value)
    if found == found.to_integral_value():
        return found.quantize(Decimal(1))
    return found.normalize()


def in_session(conn: AsyncConnection[Any], value: datetime) -> datetime:
    """`value` through a timestamptz column: in the session's time zone."""
    return value.astimezone(conn.info.timezone)

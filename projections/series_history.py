"""Daily series as the history stood at a cut: the inputs the forecast and the
anomaly read models keep (usage_series.py), read from the histories instead.

An as-of answer calls a read model's own pure functions on these inputs, so it
is what the read model served when it stood at the cut's positions:

- usage per local day and series from the metering ledger, in one statement
  that applies series_change's rules in SQL (15-minute UTC slots into the
  calendar's local days; restated: corrections, and usage recorded more than
  the read model's `late` after it happened; position: the latest event);
- the tenant's calendar (history.calendar_at) and the latest tick;
- values as the read model's tables give them back (`numeric`, `trimmed`,
  `in_session`), so the encoded answers are the same bytes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from domain.periods import BillingPeriod, resolve_period
from projections.history import (
    LEDGER,
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


async def series_at(
    conn: AsyncConnection[Any],
    tenant_id: str,
    cut: Cut,
    upstreams: Iterable[str],
    *,
    late: timedelta,
) -> tuple[Cut, SeriesAt]:
    """The tenant's series inputs at `cut` (with its metering position and
    instant both known), as a read model following `upstreams` whose usage
    recorded more than `late` after it happened restates its day."""
    cut = await anchored(conn, cut)
    positions = {u: await upstream_position(conn, cut, u) for u in upstreams}
    calendar = await calendar_at(conn, tenant_id, cut)
    usage, recorded = await _usage_days(conn, tenant_id, cut, calendar.timezone, late)
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
_DAYS_SQL = SQL(
    "SELECT workspace_id, product_area, unit,"
    " (date_bin('15 minutes', occurred_at, %(epoch)s) AT TIME ZONE %(tz)s)::date,"
    " sum(quantity_delta),"
    " coalesce(sum(quantity_delta) FILTER (WHERE kind <> 'recorded'"
    "  OR recorded_at - occurred_at > %(late)s), 0),"
    " max(position), max(recorded_at)"
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

"""The history as it stood at a cut: what as-of reads, replays and explanations read.

A read model answers from tables a projection keeps up to date; an auditor asks
what the answer was (or would have been) at a past point of the history. A
`Cut` names that point: for each upstream, the last position it includes, or
else an instant (events recorded at or before it count). Everything read
through a cut comes from the histories themselves, not from today's answers:

- metering: `billing_usage_ledger`, the signed delta every quantity-changing
  metering event made, with its position and the time it was recorded (the
  usage read model keeps it, and a rebuild keeps it equal: same events, same
  positions);
- tenant settings: the tenant's own settings events, in its event table.

Read models derive their answers with the same rules from these inputs, so an
answer at a cut equals what a fresh rebuild over the history truncated there
would serve.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg.sql import SQL, Composed, Identifier

from domain.tenant_settings import DEFAULT_SETTINGS
from domain.values import tenant_settings_id

# The usage read model's ledger (its stable view, the live version): metering
# history indexed by tenant and time, one row per quantity-changing event.
LEDGER = "billing_usage_ledger"
# The usage read model that keeps it (how far its ledger goes: its tracking).
LEDGER_KEEPER = "billing_usage_daily"
SETTINGS_EVENTS = "tenant_settings_events"


class InvalidCut(ValueError):
    """A cut that names no point of the history; the message names the field."""


@dataclass(frozen=True, slots=True)
class Cut:
    """A point of the history: per upstream, the last position it includes;
    upstreams not named include what was recorded at or before `at`."""

    positions: Mapping[str, int] = field(default_factory=dict)
    at: datetime | None = None

    def __post_init__(self) -> None:
        if self.at is not None and self.at.tzinfo is None:
            raise InvalidCut("as_of: must carry a time zone offset")
        if self.at is None and not self.positions:
            raise InvalidCut("as_of: give an instant or a position")

    def position(self, upstream: str) -> int | None:
        return self.positions.get(upstream)

    def covers(self, upstream: str, position: int, recorded_at: datetime) -> bool:
        """Whether an event of `upstream` at `position`, recorded at
        `recorded_at`, is part of the history at this cut."""
        cut = self.positions.get(upstream)
        if cut is not None:
            return position <= cut
        assert self.at is not None
        return recorded_at <= self.at

    def ledger_clause(self) -> Composed:
        """The WHERE clause (parameters `cut_position`, `cut_at`) that keeps the
        ledger rows of the metering history at this cut."""
        if self.position("metering") is not None:
            return SQL("{} <= %(cut_position)s").format(Identifier("position"))
        return SQL("{} <= %(cut_at)s").format(Identifier("recorded_at"))

    def ledger_params(self) -> dict[str, Any]:
        return {"cut_position": self.position("metering"), "cut_at": self.at}


@dataclass(frozen=True, slots=True)
class CalendarAt:
    """A tenant's calendar as the settings history stood at a cut."""

    timezone: str
    period_anchor_day: int
    grace_hours: int
    position: int  # of the settings event it comes from (0: the defaults)

    @property
    def bucketing(self) -> tuple[str, int, int]:
        """What puts usage into days and periods: time zone, anchor, grace."""
        return self.timezone, self.period_anchor_day, self.grace_hours


DEFAULT_CALENDAR = CalendarAt(
    DEFAULT_SETTINGS.timezone,
    DEFAULT_SETTINGS.period_anchor_day,
    DEFAULT_SETTINGS.grace_hours,
    0,
)


class _SettingsState(msgspec.Struct):
    timestamp: datetime
    timezone: str
    period_anchor_day: int
    grace_hours: int


_settings_decoder = msgspec.json.Decoder(_SettingsState)

_SETTINGS_SQL = SQL(
    "SELECT notification_id, state FROM {} WHERE originator_id = %s"
    " ORDER BY originator_version"
).format(Identifier(SETTINGS_EVENTS))


async def calendar_at(
    conn: AsyncConnection[Any], tenant_id: str, cut: Cut
) -> CalendarAt:
    """The calendar the tenant's settings history gave at `cut` (the defaults
    before its first settings event)."""
    cur = await conn.execute(_SETTINGS_SQL, (tenant_settings_id(tenant_id),))
    found = DEFAULT_CALENDAR
    for position, state in await cur.fetchall():
        s = _settings_decoder.decode(state)
        if not cut.covers("tenant_settings", position, s.timestamp):
            break  # a tenant's settings events are in position order
        found = CalendarAt(s.timezone, s.period_anchor_day, s.grace_hours, position)
    return found


class _Stamped(msgspec.Struct):
    timestamp: datetime


_stamp_decoder = msgspec.json.Decoder(_Stamped)


def events_table(upstream: str) -> str:
    """The event table of an upstream application (eventsourcing's naming)."""
    return f"{upstream}_events"


async def instant_of(
    conn: AsyncConnection[Any], upstream: str, position: int
) -> datetime | None:
    """When the event at `position` of `upstream` was recorded (None: no such
    event). Payloads are decoded in Python, never in SQL (see usage reader)."""
    cur = await conn.execute(
        SQL("SELECT state FROM {} WHERE notification_id = %s").format(
            Identifier(events_table(upstream))
        ),
        (position,),
    )
    row = await cur.fetchone()
    return None if row is None else _stamp_decoder.decode(row[0]).timestamp


async def head_of(conn: AsyncConnection[Any], upstream: str) -> int:
    cur = await conn.execute(
        SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(
            Identifier(events_table(upstream))
        )
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def position_at(conn: AsyncConnection[Any], upstream: str, at: datetime) -> int:
    """The last position of `upstream` recorded at or before `at` (0: none).

    Positions follow commit order and events are stamped just before they
    commit, so times rise with positions: a binary search over the store's
    primary key finds it in a few lookups (positions are dense except for
    rolled-back appends, which the search steps over)."""
    low, high = 0, await head_of(conn, upstream)
    while low < high:
        middle = (low + high + 1) // 2
        stamped = await _first_instant_from(conn, upstream, middle, high)
        if stamped is not None and stamped <= at:
            low = middle
        else:
            high = middle - 1
    return low


async def _first_instant_from(
    conn: AsyncConnection[Any], upstream: str, position: int, high: int
) -> datetime | None:
    cur = await conn.execute(
        SQL(
            "SELECT state FROM {} WHERE notification_id >= %s AND notification_id <= %s"
            " ORDER BY notification_id LIMIT 1"
        ).format(Identifier(events_table(upstream))),
        (position, high),
    )
    row = await cur.fetchone()
    return None if row is None else _stamp_decoder.decode(row[0]).timestamp


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def anchored(conn: AsyncConnection[Any], cut: Cut) -> Cut:
    """`cut` with both its metering position and its instant: for an instant,
    the last metering position recorded at or before it; for a metering
    position, when that event was recorded (the upstreams it names no position
    for are read as they stood then)."""
    head = await head_of(conn, "metering")
    position = cut.position("metering")
    if position is None:
        if cut.at is None:
            raise InvalidCut("as_of: give an instant or a metering position")
        position = await position_at(conn, "metering", cut.at)
        return Cut({**cut.positions, "metering": position}, cut.at)
    if position > head:
        raise InvalidCut(f"position: the metering history has only reached {head}")
    if cut.at is not None:
        return cut
    at = EPOCH if position == 0 else await instant_of(conn, "metering", position)
    if at is None:
        raise InvalidCut(f"position: no metering event has position {position}")
    return Cut(cut.positions, at)

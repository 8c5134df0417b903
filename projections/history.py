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
from datetime import datetime
from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg.sql import SQL, Composed, Identifier

from domain.tenant_settings import DEFAULT_SETTINGS
from domain.values import tenant_settings_id

# The usage read model's ledger (its stable view, the live version): metering
# history indexed by tenant and time, one row per quantity-changing event.
LEDGER = "billing_usage_ledger"
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

"""Time passing, recorded in the history: a tick says "it is now `at`".

A read model that must move with time (a forecast falls when usage stops) yet
stay a deterministic function of the history reads the time from ticks, never
from a clock: replaying the same history, ticks included, gives the same rows.
Each tick is its own one-event aggregate whose id is derived from its instant,
so two workers recording the same tick store it once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.values import BILLING_NAMESPACE


def tick_id(at: datetime) -> UUID:
    return uuid5(BILLING_NAMESPACE, f"tick/{at.astimezone(UTC).isoformat()}")


def tick_instant(now: datetime, every: timedelta) -> datetime:
    """The latest multiple of `every` since the epoch at or before `now` (UTC)."""
    seconds = every.total_seconds()
    if seconds <= 0:
        raise ValueError("every: must be positive")
    return datetime.fromtimestamp((now.timestamp() // seconds) * seconds, UTC)


class Tick(Aggregate):
    """One instant the history says time has reached."""

    class Passed(Aggregate.Created):
        at: datetime

    def __init__(self, at: datetime) -> None:
        self.at = at

    @classmethod
    def passed(cls, at: datetime) -> Tick:
        return cls._create(cls.Passed, id=tick_id(at), timestamp=at, at=at)

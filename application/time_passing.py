"""Recording time as history: the workers append a tick every few minutes.

The forecast read model follows these ticks instead of reading a clock, so it
is a deterministic function of its history and still moves with time (see
projections/forecast/README.md).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from eventsourcing.persistence import IntegrityError

from application.clock import Clock
from application.store.event_store import BillingApplication
from domain.ticks import Tick, tick_instant

log = logging.getLogger(__name__)


class ClockApp(BillingApplication):
    """The history of ticks (its own event table)."""

    name = "clock"

    def record_tick(self, at: datetime) -> int | None:
        """Record that time has reached `at`; its position, or None if it was
        recorded already (by this or another worker)."""
        try:
            recordings = self.save(Tick.passed(at))
        except IntegrityError:
            return None
        return max((r.notification.id for r in recordings), default=None)


class Ticker:
    """Appends a tick on each boundary of `every`, at most once per process."""

    def __init__(self, clock_app: ClockApp, clock: Clock, every: timedelta) -> None:
        self.clock_app = clock_app
        self.clock = clock
        self.every = every
        self._last: datetime | None = None

    def tick_if_due(self) -> int | None:
        """Record the current boundary if this process has not yet; its position."""
        at = tick_instant(self.clock(), self.every)
        if self._last is not None and at <= self._last:
            return None
        position = self.clock_app.record_tick(at)
        self._last = at
        if position is not None:
            log.debug("time reached %s (clock position %s)", at.isoformat(), position)
        return position

"""Daily usage, the rules written out in Python: the reference view.

The PostgreSQL view (postgres.py) must agree with this one on every history;
tests/contracts runs the same cases against both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Protocol

from domain.periods import local_midnight
from projections.usage_daily.changes import Calendar, LedgerEntry, default_calendar

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


class UsageDailyView(Protocol):
    """Where ledger entries and calendars are written and daily rows kept."""

    def add_entries(self, entries: Sequence[LedgerEntry]) -> None: ...

    def set_calendars(self, calendars: Sequence[Calendar]) -> None: ...


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
        day, period = cal.day_and_period(e.occurred_at)
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

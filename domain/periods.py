"""Billing periods and usage days in a tenant's own calendar (DST-correct)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_PERIOD_LABEL = re.compile(r"([0-9]{4})-([0-9]{2})")


class InvalidPeriod(ValueError):
    """A period that is not `current`, `previous` or `YYYY-MM`."""


def add_months(day: date, months: int) -> date:
    """The same day-of-month `months` later (callers keep the day <= 28)."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, day.day)


def local_midnight(day: date, timezone: str) -> datetime:
    """The UTC instant at which `day` starts in `timezone`."""
    return datetime.combine(day, time(0), ZoneInfo(timezone)).astimezone(UTC)


def usage_date(instant: datetime, timezone: str) -> date:
    """The day `instant` belongs to in `timezone`."""
    return instant.astimezone(ZoneInfo(timezone)).date()


@dataclass(frozen=True, slots=True)
class BillingPeriod:
    """[start, end) in the tenant's calendar; closed `grace` after its end."""

    start: date
    end: date
    timezone: str
    grace: timedelta

    @property
    def label(self) -> str:
        return f"{self.start.year:04d}-{self.start.month:02d}"

    @property
    def starts_at(self) -> datetime:
        return local_midnight(self.start, self.timezone)

    @property
    def ends_at(self) -> datetime:
        return local_midnight(self.end, self.timezone)

    @property
    def closes_at(self) -> datetime:
        return self.ends_at + self.grace

    def is_closed(self, now: datetime) -> bool:
        return now >= self.closes_at

    def previous(self) -> BillingPeriod:
        return period_starting(add_months(self.start, -1), self.timezone, self.grace)


def period_starting(start: date, timezone: str, grace: timedelta) -> BillingPeriod:
    return BillingPeriod(start, add_months(start, 1), timezone, grace)


def period_containing(
    day: date, anchor_day: int, timezone: str, grace: timedelta
) -> BillingPeriod:
    """The period a usage day belongs to, for periods starting on `anchor_day`."""
    start = date(day.year, day.month, anchor_day)
    if day.day < anchor_day:
        start = add_months(start, -1)
    return period_starting(start, timezone, grace)


def day_and_period(
    instant: datetime, *, timezone: str, anchor_day: int, grace: timedelta
) -> tuple[date, BillingPeriod]:
    """The one rule: which usage day and billing period `instant` belongs to, in
    a tenant's calendar. Its SQL form is the rollup of projections.usage_daily;
    tests/contracts holds the two together, DST days included."""
    day = usage_date(instant, timezone)
    return day, period_containing(day, anchor_day, timezone, grace)


def resolve_period(
    spec: str, *, now: datetime, anchor_day: int, timezone: str, grace: timedelta
) -> BillingPeriod:
    """Resolve `current`, `previous` or `YYYY-MM` (the month a period starts in)."""
    _, current = day_and_period(
        now, timezone=timezone, anchor_day=anchor_day, grace=grace
    )
    if spec == "current":
        return current
    if spec == "previous":
        return current.previous()
    year, month = check_period_spec(spec)
    return period_starting(date(year, month, anchor_day), timezone, grace)


def check_period_spec(spec: str) -> tuple[int, int]:
    """Check `current`, `previous` or `YYYY-MM` (raises InvalidPeriod naming the
    parameter); the year and month of a YYYY-MM, else (0, 0)."""
    if spec in ("current", "previous"):
        return 0, 0
    match = _PERIOD_LABEL.fullmatch(spec)
    if match is None:
        raise InvalidPeriod(
            "period: must be 'current', 'previous' or YYYY-MM, e.g. 2026-11"
        )
    year, month = int(match[1]), int(match[2])
    if not 1 <= month <= 12 or not 2000 <= year <= 2100:
        raise InvalidPeriod("period: must be a real month between 2000-01 and 2100-12")
    return year, month

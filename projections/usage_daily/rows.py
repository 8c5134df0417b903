"""The shapes of a usage answer: period, daily rows, totals, late adjustments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import msgspec

from domain.periods import BillingPeriod


class UsagePeriod(msgspec.Struct):
    start: date
    end: date
    timezone: str
    status: str
    closes_at: datetime


class UsageRow(msgspec.Struct, omit_defaults=True):
    unit: str
    quantity: str
    source_event_count: int
    first_reported_quantity: str
    late_event_count: int
    workspace_id: str | None = None
    product_area: str | None = None
    usage_date: date | None = None


class UsageTotal(msgspec.Struct):
    product_area: str
    unit: str
    quantity: str


class LateAdjustment(msgspec.Struct):
    workspace_id: str
    product_area: str
    usage_date: date
    unit: str
    quantity: str
    event_count: int


class UsageData(msgspec.Struct):
    """The cacheable part of an answer: a function of (query, read-model state)."""

    rows: list[UsageRow]
    totals: list[UsageTotal]
    late_adjustments: list[LateAdjustment]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Where the read model stood, and the tenant's calendar, in one snapshot."""

    version: int
    table: int  # the live copy's table OID: new for each rebuild and each database
    position: int
    settings_position: int  # calendars processed: part of what the rows depend on
    head: int
    period: BillingPeriod
    as_of: datetime
    now: datetime  # the instant the answer is about (open or closed, as_of)

    def period_out(self) -> UsagePeriod:
        p = self.period
        return UsagePeriod(
            p.start,
            p.end,
            p.timezone,
            "closed" if p.is_closed(self.now) else "open",
            p.closes_at,
        )

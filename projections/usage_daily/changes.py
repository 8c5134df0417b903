"""Daily usage, the pure part: metering and settings events in, changes out.

Every quantity-changing metering event becomes one ledger entry (a signed delta,
in UTC, independent of any calendar); a settings event becomes the tenant's
calendar. No I/O, no clock: the same history always gives the same changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import singledispatch
from typing import Any, NamedTuple

from domain.periods import BillingPeriod, day_and_period
from domain.tenant_settings import DEFAULT_SETTINGS, TenantBillingSettings
from domain.usage import UsageRecord
from projections.base import Notified


class LedgerEntry(NamedTuple):
    """The signed change one metering event makes to its day (a COPY row as is)."""

    position: int
    tenant_id: str
    event_id: str
    kind: str  # recorded | voided | amended
    workspace_id: str
    product_area: str
    unit: str
    occurred_at: datetime
    recorded_at: datetime
    quantity_delta: Decimal
    count_delta: int


@dataclass(frozen=True, slots=True)
class Calendar:
    """How a tenant's usage is bucketed into days and billing periods."""

    tenant_id: str
    timezone: str
    period_anchor_day: int
    grace_hours: int

    def day_and_period(self, instant: datetime) -> tuple[date, BillingPeriod]:
        """The usage day and billing period of `instant` (domain.periods' rule)."""
        return day_and_period(
            instant,
            timezone=self.timezone,
            anchor_day=self.period_anchor_day,
            grace=timedelta(hours=self.grace_hours),
        )


def default_calendar(tenant_id: str) -> Calendar:
    d = DEFAULT_SETTINGS
    return Calendar(tenant_id, d.timezone, d.period_anchor_day, d.grace_hours)


@singledispatch
def change_of(event: Any, position: int) -> LedgerEntry | Calendar | None:
    """Unknown events change nothing (their position still advances)."""
    return None


@change_of.register
def _(event: UsageRecord.Recorded, position: int) -> LedgerEntry:
    return _entry(event, position, "recorded", event.quantity, 1)


@change_of.register
def _(event: UsageRecord.Voided, position: int) -> LedgerEntry:
    return _entry(event, position, "voided", -event.quantity, -1)


@change_of.register
def _(event: UsageRecord.Amended, position: int) -> LedgerEntry:
    return _entry(
        event, position, "amended", event.quantity - event.previous_quantity, 0
    )


@change_of.register(TenantBillingSettings.Configured)
@change_of.register(TenantBillingSettings.Changed)
def _(event: Any, position: int) -> Calendar:
    return Calendar(
        event.tenant_id, event.timezone, event.period_anchor_day, event.grace_hours
    )


def _entry(
    event: Any, position: int, kind: str, delta: Decimal, count: int
) -> LedgerEntry:
    return LedgerEntry(
        position,
        event.tenant_id,
        event.event_id,
        kind,
        event.workspace_id,
        event.product_area,
        event.unit,
        event.occurred_at,
        event.timestamp,
        delta,
        count,
    )


@dataclass(frozen=True, slots=True)
class DailyChanges:
    """What one batch changes; `ledger_copy` is the entries as COPY text, built
    on the projection's reader thread so the writer only ships bytes."""

    entries: list[LedgerEntry]
    calendars: list[Calendar]
    ledger_copy: bytes


# COPY's text format: backslash, tab, newline and carriage return are escaped.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def ledger_copy_text(entries: Sequence[LedgerEntry]) -> bytes:
    """Entries as COPY text lines: text fields escaped, instants in ISO 8601."""
    return "".join([_copy_line(e) for e in entries]).encode()


def _copy_line(e: LedgerEntry) -> str:
    line = (
        f"{e.position}\t{e.tenant_id}\t{e.event_id}\t{e.kind}\t{e.workspace_id}"
        f"\t{e.product_area}\t{e.unit}\t{e.occurred_at.isoformat()}"
        f"\t{e.recorded_at.isoformat()}\t{e.quantity_delta}\t{e.count_delta}\n"
    )
    # Ingest rules keep these fields free of COPY's special characters; check
    # the whole line at C speed and escape field by field only if one slipped in.
    if (
        line.count("\t") == 10
        and "\\" not in line
        and "\r" not in line
        and line.count("\n") == 1
    ):
        return line
    x = _COPY_ESCAPES
    return (
        f"{e.position}\t{e.tenant_id.translate(x)}\t{e.event_id.translate(x)}"
        f"\t{e.kind}\t{e.workspace_id.translate(x)}\t{e.product_area.translate(x)}"
        f"\t{e.unit.translate(x)}\t{e.occurred_at.isoformat()}"
        f"\t{e.recorded_at.isoformat()}\t{e.quantity_delta}\t{e.count_delta}\n"
    )


def split_changes(
    batch: Sequence[Notified],
) -> tuple[list[LedgerEntry], list[Calendar]]:
    entries: list[LedgerEntry] = []
    calendars: list[Calendar] = []
    for item in batch:
        change = change_of(item.event, item.position)
        if type(change) is LedgerEntry:
            entries.append(change)
        elif change is not None:
            calendars.append(change)  # type: ignore[arg-type]
    return entries, calendars

"""The forecast, the pure part: a batch of one upstream's events in, changes out.

Metering events become signed quantities per 15-minute UTC slot (every time
zone's day starts on a quarter hour, so slots re-bucket exactly into any
tenant's days); settings become calendars; price book and budget events are
kept as they are; ticks move time. No I/O, no clock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import singledispatch
from typing import Any, NamedTuple

from domain.budget import BudgetHistory
from domain.price_book import PriceBookHistory
from domain.tenant_settings import TenantBillingSettings
from domain.ticks import Tick
from domain.usage import UsageRecord
from domain.values import ZERO
from projections.base import Notified
from projections.forecast.estimate import TenantCalendar

SLOT_SECONDS = 15 * 60


class SlotKey(NamedTuple):
    tenant_id: str
    workspace_id: str
    product_area: str
    unit: str
    slot: datetime  # UTC, a multiple of 15 minutes


class PriceVersion(NamedTuple):
    tenant_id: str
    position: int  # orders versions set for the same period
    effective_from: date
    book: dict[str, Any]


class BudgetSet(NamedTuple):
    tenant_id: str
    period_start: date
    amount: Decimal


@dataclass(slots=True)
class ForecastChanges:
    """What one batch changes."""

    slots: dict[SlotKey, Decimal] = field(default_factory=dict)
    recorded: dict[str, datetime] = field(default_factory=dict)  # latest per tenant
    calendars: dict[str, TenantCalendar] = field(default_factory=dict)
    prices: list[PriceVersion] = field(default_factory=list)
    budgets: list[BudgetSet] = field(default_factory=list)
    tick: datetime | None = None


def slot_of(instant: datetime) -> datetime:
    seconds = instant.timestamp()
    return datetime.fromtimestamp(seconds - seconds % SLOT_SECONDS, UTC)


@singledispatch
def _apply(event: Any, position: int, changes: ForecastChanges) -> None:
    """Events the forecast does not read change nothing."""


@_apply.register
def _(event: UsageRecord.Recorded, position: int, changes: ForecastChanges) -> None:
    _add(changes, event, event.quantity)


@_apply.register
def _(event: UsageRecord.Voided, position: int, changes: ForecastChanges) -> None:
    _add(changes, event, -event.quantity)


@_apply.register
def _(event: UsageRecord.Amended, position: int, changes: ForecastChanges) -> None:
    _add(changes, event, event.quantity - event.previous_quantity)


@_apply.register(TenantBillingSettings.Configured)
@_apply.register(TenantBillingSettings.Changed)
def _(event: Any, position: int, changes: ForecastChanges) -> None:
    changes.calendars[event.tenant_id] = TenantCalendar(
        event.tenant_id, event.timezone, event.period_anchor_day, event.grace_hours
    )


@_apply.register
def _(
    event: PriceBookHistory.VersionSet, position: int, changes: ForecastChanges
) -> None:
    changes.prices.append(
        PriceVersion(event.tenant_id, position, event.effective_from, event.book)
    )


@_apply.register
def _(event: BudgetHistory.BudgetSet, position: int, changes: ForecastChanges) -> None:
    changes.budgets.append(BudgetSet(event.tenant_id, event.period_start, event.amount))


@_apply.register
def _(event: Tick.Passed, position: int, changes: ForecastChanges) -> None:
    if changes.tick is None or event.at > changes.tick:
        changes.tick = event.at


def _add(changes: ForecastChanges, event: Any, delta: Decimal) -> None:
    key = SlotKey(
        event.tenant_id,
        event.workspace_id,
        event.product_area,
        event.unit,
        slot_of(event.occurred_at),
    )
    changes.slots[key] = changes.slots.get(key, ZERO) + delta
    latest = changes.recorded.get(event.tenant_id)
    if latest is None or event.timestamp > latest:
        changes.recorded[event.tenant_id] = event.timestamp


def forecast_changes(batch: Sequence[Notified]) -> ForecastChanges:
    changes = ForecastChanges()
    for item in batch:
        _apply(item.event, item.position, changes)
    return changes


def tenants_of(changes: ForecastChanges) -> dict[str, set[date]]:
    """Tenants whose usage changed, with the UTC dates of the slots changed."""
    touched: dict[str, set[date]] = defaultdict(set)
    for key in changes.slots:
        touched[key.tenant_id].add(key.slot.date())
    return touched

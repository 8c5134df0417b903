"""The forecast, the pure part: a batch of one upstream's events in, changes out.

Usage, calendars and ticks are the shared daily-series inputs
(projections/usage_series.py); price book versions and budgets are the
forecast's own. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from functools import singledispatch
from typing import Any, NamedTuple

from domain.budget import BudgetHistory
from domain.price_book import PriceBookHistory
from projections.base import Notified
from projections.usage_series import SeriesChanges, series_change


class PriceVersion(NamedTuple):
    tenant_id: str
    position: int  # orders versions set for the same period
    effective_from: date
    book: dict[str, Any]


class BudgetSet(NamedTuple):
    tenant_id: str
    period_start: date
    amount: Decimal


@singledispatch
def _own(event: Any, position: int) -> PriceVersion | BudgetSet | None:
    """Events the forecast does not read change nothing."""
    return None


@_own.register
def _(event: PriceBookHistory.VersionSet, position: int) -> PriceVersion:
    return PriceVersion(event.tenant_id, position, event.effective_from, event.book)


@_own.register
def _(event: BudgetHistory.BudgetSet, position: int) -> BudgetSet:
    return BudgetSet(event.tenant_id, event.period_start, event.amount)


def forecast_changes(batch: Sequence[Notified]) -> SeriesChanges:
    """The series inputs, and in `more` the price versions and budgets."""
    changes = SeriesChanges()
    for item in batch:
        if not series_change(item.event, item.position, changes):
            own = _own(item.event, item.position)
            if own is not None:
                changes.more.append(own)
    return changes

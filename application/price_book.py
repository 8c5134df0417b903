"""Price books and budgets: each tenant's prices, versioned by the billing period
they start in, and what it means to spend per period (in the book's currency)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from application.store.event_store import BillingApplication
from domain.budget import Budget, BudgetHistory, parse_amount
from domain.periods import BillingPeriod, InvalidPeriod, resolve_period
from domain.price_book import PriceBookHistory, PriceBookVersion
from domain.pricing import parse_price_book, price_book_data
from domain.tenant_settings import BillingSettings
from domain.values import InvalidValue, budget_id, price_book_id


class NoPriceBook(LookupError):
    """The tenant has no price book in force for that period."""


@dataclass(frozen=True, slots=True)
class BudgetAnswer:
    period: BillingPeriod
    budget: Budget


class InvalidBudget(ValueError):
    """The amount breaks a rule; the message names it."""


@dataclass(frozen=True, slots=True)
class PriceBookAnswer:
    """The version in force for a period, and every version the tenant has set."""

    period: BillingPeriod
    version: PriceBookVersion
    versions: list[PriceBookVersion]


class InvalidEffectiveFrom(ValueError):
    """effective_from (or a budget's period) is not the current or a future one."""


class NoBudget(LookupError):
    """No budget is set for that period."""


class BudgetNeedsPriceBook(RuntimeError):
    """A budget is in the price book's currency: set a price book first."""


class PriceBookApp(BillingApplication):
    """Keeps each tenant's price book history (its own event table)."""

    name = "price_book"

    def set_price_book(
        self,
        tenant_id: str,
        body: Mapping[str, Any],
        *,
        calendar: BillingSettings,
        actor_id: str,
        now: datetime,
    ) -> tuple[PriceBookAnswer, int]:
        """Validate and record a version from `effective_from` (`current` or a
        future `YYYY-MM`); returns it and the position reached."""
        book = price_book_data(parse_price_book(body))
        period = _coming_period(
            body.get("effective_from"), "effective_from", calendar, now
        )
        history = self._history(tenant_id) or PriceBookHistory.start(tenant_id, now=now)
        history.set_version(
            book, effective_from=period.start, actor_id=actor_id, now=now
        )
        recordings = self.save(history)
        position = max((r.notification.id for r in recordings), default=0)
        return self._answer(history, period), position

    def get_price_book(self, tenant_id: str, period: BillingPeriod) -> PriceBookAnswer:
        history = self._history(tenant_id)
        if history is None:
            raise NoPriceBook("no price book has been set for this tenant")
        return self._answer(history, period)

    def set_budget(  # noqa: PLR0913 - who, for when, how much, in which calendar
        self,
        tenant_id: str,
        period_spec: Any,
        amount: Any,
        *,
        calendar: BillingSettings,
        actor_id: str,
        now: datetime,
    ) -> tuple[BudgetAnswer, int]:
        """Set the budget of the current or a future period, in the currency of the
        price book in force then; returns it and the position reached."""
        period = _coming_period(period_spec, "period", calendar, now)
        try:
            currency = self.get_price_book(tenant_id, period).version.book["currency"]
        except NoPriceBook:
            raise BudgetNeedsPriceBook(
                "amount: a budget is in the price book's currency; set a price book"
                f" in force for {period.label} first (PUT /api/ops/price-book)"
            ) from None
        try:
            value = parse_amount(amount, currency)
        except InvalidValue as e:
            raise InvalidBudget(f"amount: {e}") from None
        history = self._budgets(tenant_id) or BudgetHistory.start(tenant_id, now=now)
        history.set_budget(
            period.start, value, currency=currency, actor_id=actor_id, now=now
        )
        recordings = self.save(history)
        position = max((r.notification.id for r in recordings), default=0)
        budget = history.of(period.start)
        assert budget is not None
        return BudgetAnswer(period, budget), position

    def get_budget(self, tenant_id: str, period: BillingPeriod) -> BudgetAnswer:
        history = self._budgets(tenant_id)
        budget = history.of(period.start) if history else None
        if budget is None:
            raise NoBudget(f"no budget is set for the period {period.label}")
        return BudgetAnswer(period, budget)

    def _budgets(self, tenant_id: str) -> BudgetHistory | None:
        return cast(BudgetHistory | None, self._get(budget_id(tenant_id)))

    def _answer(
        self, history: PriceBookHistory, period: BillingPeriod
    ) -> PriceBookAnswer:
        version = history.in_force(period.start)
        if version is None:
            raise NoPriceBook(
                f"no price book is in force for the period starting {period.start}"
            )
        return PriceBookAnswer(period, version, list(history.versions))

    def _history(self, tenant_id: str) -> PriceBookHistory | None:
        return cast(PriceBookHistory | None, self._get(price_book_id(tenant_id)))

    def _get(self, aggregate_id: UUID) -> Any:
        """The aggregate, or None if it was never created."""
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None


def _coming_period(
    value: Any, field: str, calendar: BillingSettings, now: datetime
) -> BillingPeriod:
    """`current` (the default) or a future `YYYY-MM`, in the tenant's calendar."""
    spec = "current" if value is None else value
    if not isinstance(spec, str) or spec == "previous":
        raise InvalidEffectiveFrom(
            f"{field}: must be 'current' or a future period YYYY-MM"
        )
    try:
        period = resolve_period(spec, now=now, **_calendar(calendar))
    except InvalidPeriod:
        raise InvalidEffectiveFrom(
            "effective_from: must be 'current' or a future period YYYY-MM, e.g. 2026-12"
        ) from None
    current = resolve_period("current", now=now, **_calendar(calendar))
    if period.start < current.start:
        raise InvalidEffectiveFrom(
            f"{field}: {period.label} has started already; only the current period"
            f" ({current.label}) or a later one can be set"
        )
    return period


def _calendar(settings: BillingSettings) -> dict[str, Any]:
    return {
        "anchor_day": settings.period_anchor_day,
        "timezone": settings.timezone,
        "grace": timedelta(hours=settings.grace_hours),
    }

"""Price books: each tenant's prices, versioned by the billing period they start in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from eventsourcing.application import AggregateNotFoundError

from application.store.event_store import BillingApplication
from domain.periods import BillingPeriod, InvalidPeriod, resolve_period
from domain.price_book import PriceBookHistory, PriceBookVersion
from domain.pricing import parse_price_book, price_book_data
from domain.tenant_settings import BillingSettings
from domain.values import price_book_id


class NoPriceBook(LookupError):
    """The tenant has no price book in force for that period."""


@dataclass(frozen=True, slots=True)
class PriceBookAnswer:
    """The version in force for a period, and every version the tenant has set."""

    period: BillingPeriod
    version: PriceBookVersion
    versions: list[PriceBookVersion]


class InvalidEffectiveFrom(ValueError):
    """effective_from is not the current or a future period."""


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
        period = _effective_period(body.get("effective_from"), calendar, now)
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
        try:
            return cast(PriceBookHistory, self.repository.get(price_book_id(tenant_id)))
        except AggregateNotFoundError:
            return None


def _effective_period(
    value: Any, calendar: BillingSettings, now: datetime
) -> BillingPeriod:
    """`current` (the default) or a future `YYYY-MM`, in the tenant's calendar."""
    spec = "current" if value is None else value
    if not isinstance(spec, str) or spec == "previous":
        raise InvalidEffectiveFrom(
            "effective_from: must be 'current' or a future period YYYY-MM"
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
            f"effective_from: {period.label} has started already; a price book "
            f"takes effect from the current period ({current.label}) or a later one"
        )
    return period


def _calendar(settings: BillingSettings) -> dict[str, Any]:
    return {
        "anchor_day": settings.period_anchor_day,
        "timezone": settings.timezone,
        "grace": timedelta(hours=settings.grace_hours),
    }

"""A tenant's price book: versions that each take effect from a billing period.

Each version carries the whole book (currency and prices, in the plain JSON
shape of domain.pricing.price_book_data), so the book in force for any period
is a function of the history alone. History is kept: setting the current
period's prices again restates it, visibly (a new version, recorded when).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from eventsourcing.domain import Aggregate

from domain.values import price_book_id


class CurrencyChanged(ValueError):
    """A tenant bills in one currency; a new version may not change it."""


@dataclass(frozen=True, slots=True)
class PriceBookVersion:
    """One version: from which period start it applies, the book, who set it when."""

    effective_from: date
    book: dict[str, Any]
    actor_id: str
    recorded_at: datetime


class PriceBookHistory(Aggregate):
    """Every version of one tenant's price book."""

    class Started(Aggregate.Created):
        tenant_id: str

    class VersionSet(Aggregate.Event):
        tenant_id: str
        effective_from: date
        book: dict[str, Any]
        actor_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.versions.append(
                PriceBookVersion(
                    self.effective_from, self.book, self.actor_id, self.timestamp
                )
            )

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self.versions: list[PriceBookVersion] = []

    @classmethod
    def start(cls, tenant_id: str, *, now: datetime) -> PriceBookHistory:
        return cls._create(
            cls.Started, id=price_book_id(tenant_id), timestamp=now, tenant_id=tenant_id
        )

    def set_version(
        self,
        book: dict[str, Any],
        *,
        effective_from: date,
        actor_id: str,
        now: datetime,
    ) -> None:
        """Record a version; the currency is the tenant's once it is set."""
        current = self.currency
        if current is not None and book.get("currency") != current:
            raise CurrencyChanged(
                f"currency: this tenant bills in {current}; a price book may not "
                "change its currency"
            )
        self.trigger_event(
            self.VersionSet,
            timestamp=now,
            tenant_id=self.tenant_id,
            effective_from=effective_from,
            book=book,
            actor_id=actor_id,
        )

    @property
    def currency(self) -> str | None:
        return str(self.versions[0].book["currency"]) if self.versions else None

    def in_force(self, period_start: date) -> PriceBookVersion | None:
        """The version for the period starting `period_start`: the latest one
        recorded among those effective from that period or earlier."""
        candidates = [v for v in self.versions if v.effective_from <= period_start]
        if not candidates:
            return None
        latest_start = max(v.effective_from for v in candidates)
        return [v for v in candidates if v.effective_from == latest_start][-1]

"""A tenant's budgets: what it means to spend in a billing period, and who set it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from eventsourcing.domain import Aggregate

from domain.currencies import minor_units
from domain.values import InvalidValue, budget_id, parse_quantity


@dataclass(frozen=True, slots=True)
class Budget:
    """The budget of one period, in the tenant's currency."""

    period_start: date
    amount: Decimal
    currency: str
    actor_id: str
    recorded_at: datetime


def parse_amount(text: str, currency: str) -> Decimal:
    """An amount of money: the quantity grammar, at most the currency's decimals."""
    if not isinstance(text, str):
        raise InvalidValue('must be a decimal string, e.g. "30000.00"')
    amount = parse_quantity(text)
    exponent = amount.as_tuple().exponent
    decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    if decimals > minor_units(currency):
        raise InvalidValue(
            f"must have at most {minor_units(currency)} decimal places in {currency}"
        )
    return amount


class BudgetHistory(Aggregate):
    """Every budget one tenant set; the latest for a period is the one that counts."""

    class Started(Aggregate.Created):
        tenant_id: str

    class BudgetSet(Aggregate.Event):
        tenant_id: str
        period_start: date
        amount: Decimal
        currency: str
        actor_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.budgets.append(
                Budget(
                    self.period_start,
                    self.amount,
                    self.currency,
                    self.actor_id,
                    self.timestamp,
                )
            )

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self.budgets: list[Budget] = []

    @classmethod
    def start(cls, tenant_id: str, *, now: datetime) -> BudgetHistory:
        return cls._create(
            cls.Started, id=budget_id(tenant_id), timestamp=now, tenant_id=tenant_id
        )

    def set_budget(
        self,
        period_start: date,
        amount: Decimal,
        *,
        currency: str,
        actor_id: str,
        now: datetime,
    ) -> None:
        self.trigger_event(
            self.BudgetSet,
            timestamp=now,
            tenant_id=self.tenant_id,
            period_start=period_start,
            amount=amount,
            currency=currency,
            actor_id=actor_id,
        )

    def of(self, period_start: date) -> Budget | None:
        """The budget of the period starting `period_start` (the latest set)."""
        found = [b for b in self.budgets if b.period_start == period_start]
        return found[-1] if found else None

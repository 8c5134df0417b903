"""A tenant's budget per billing period, set and read by its billing admins."""

from __future__ import annotations

from datetime import date, datetime
from functools import partial
from typing import Any

import anyio
import msgspec
from litestar import Controller, Request, get, put
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody

from application.audit.writer import AuditWriter
from application.clock import Clock
from application.price_book import BudgetAnswer, PriceBookApp
from application.tenants import TenantSettingsApp
from domain.audit import AuditRecord
from domain.values import decimal_text
from interfaces.http.audited import record_change
from interfaces.http.auth import Principal, requires_role
from interfaces.http.billing import requires_enabled_tenant
from interfaces.http.price_book import tenant_period


class BudgetIn(msgspec.Struct, forbid_unknown_fields=True):
    amount: str  # in the currency of the tenant's price book, e.g. "30000.00"
    period: str = "current"  # or a future period, YYYY-MM


class BudgetOut(msgspec.Struct, omit_defaults=True):
    tenant_id: str
    period: str
    period_start: date
    amount: str
    currency: str
    set_by: str
    set_at: datetime
    position: int | None = None  # after a change: the price-book position
    min_positions: str | None = None  # after a change: pass to reads to see it


def budget_out(tenant_id: str, answer: BudgetAnswer) -> BudgetOut:
    b = answer.budget
    return BudgetOut(
        tenant_id=tenant_id,
        period=answer.period.label,
        period_start=b.period_start,
        amount=decimal_text(b.amount),
        currency=b.currency,
        set_by=b.actor_id,
        set_at=b.recorded_at,
    )


class BudgetController(Controller):
    path = "/api/billing/budget"
    tags = ["billing"]
    guards = [requires_role("admin"), requires_enabled_tenant]

    @get(summary="The budget of a billing period (current by default)")
    async def get_budget(
        self,
        request: Request[Principal, Any, Any],
        price_book: NamedDependency[PriceBookApp],
        tenants: NamedDependency[TenantSettingsApp],
        clock: NamedDependency[Clock],
        period: FromQuery[str | None] = None,
    ) -> BudgetOut:
        tenant = request.user.tenant_id
        asked = await tenant_period(tenant, period, tenants, clock())
        answer = await anyio.to_thread.run_sync(price_book.get_budget, tenant, asked)
        return budget_out(tenant, answer)

    @put(summary="Set the budget of the current or a future billing period")
    async def put_budget(  # noqa: PLR0913
        self,
        request: Request[Principal, Any, Any],
        data: JSONBody[BudgetIn],
        price_book: NamedDependency[PriceBookApp],
        tenants: NamedDependency[TenantSettingsApp],
        audit_writer: NamedDependency[AuditWriter],
        clock: NamedDependency[Clock],
    ) -> BudgetOut:
        """In the currency of the price book in force for that period."""
        principal, now = request.user, clock()
        calendar = await anyio.to_thread.run_sync(
            tenants.get_settings, principal.tenant_id
        )
        answer, position = await anyio.to_thread.run_sync(
            partial(
                price_book.set_budget,
                principal.tenant_id,
                data.period,
                data.amount,
                calendar=calendar,
                actor_id=principal.subject,
                now=now,
            )
        )
        out = budget_out(principal.tenant_id, answer)
        await record_change(
            audit_writer,
            request,
            AuditRecord.BudgetChanged,
            period=out.period_start.isoformat(),
            amount=out.amount,
            currency=out.currency,
            position=position,
        )
        out.position = position
        out.min_positions = f"price_book:{position}"
        return out

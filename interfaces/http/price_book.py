"""The price book: ops maintain it, a tenant's admins read it.

A version takes effect from the start of a billing period (`current` or a future
`YYYY-MM`, in the tenant's calendar); every version is kept and listed.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import partial
from typing import Any

import anyio
import msgspec
from litestar import Controller, Request, get, put
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody

from application.audit.writer import AuditWriter
from application.clock import Clock
from application.price_book import PriceBookAnswer, PriceBookApp
from application.tenants import TenantSettingsApp
from domain.audit import AuditRecord
from domain.periods import BillingPeriod, resolve_period
from domain.tenant_settings import BillingSettings
from interfaces.http.audited import record_change
from interfaces.http.auth import Principal, requires_role
from interfaces.http.billing import requires_enabled_tenant


class Tier(msgspec.Struct, forbid_unknown_fields=True):
    up_to: str | None
    unit_price: str


class PriceLine(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A flat `unit_price`, or graduated `tiers`; money and quantities as strings."""

    product_area: str
    unit: str
    unit_price: str | None = None
    included_quantity: str | None = None
    tiers: list[Tier] | None = None


class PriceBookIn(msgspec.Struct, forbid_unknown_fields=True):
    currency: str
    prices: list[PriceLine]
    effective_from: str = "current"  # or a future period, YYYY-MM


class PriceBookChange(msgspec.Struct):
    effective_from: date
    currency: str
    set_by: str
    set_at: datetime


class PriceBookOut(msgspec.Struct, omit_defaults=True):
    tenant_id: str
    period: str  # the period asked about (YYYY-MM of its start)
    effective_from: date  # the start of the first period this version prices
    currency: str
    prices: list[PriceLine]
    set_by: str
    set_at: datetime
    versions: list[PriceBookChange]  # every version, in the order they were set
    position: int | None = None  # after a change: the price-book position
    min_positions: str | None = None  # after a change: pass to reads to see it


def price_book_out(tenant_id: str, answer: PriceBookAnswer) -> PriceBookOut:
    v = answer.version
    return PriceBookOut(
        tenant_id=tenant_id,
        period=answer.period.label,
        effective_from=v.effective_from,
        currency=v.book["currency"],
        prices=msgspec.convert(v.book["prices"], list[PriceLine]),
        set_by=v.actor_id,
        set_at=v.recorded_at,
        versions=[
            PriceBookChange(
                c.effective_from, c.book["currency"], c.actor_id, c.recorded_at
            )
            for c in answer.versions
        ],
    )


async def tenant_period(
    tenant_id: str, period: str | None, tenants: TenantSettingsApp, now: datetime
) -> BillingPeriod:
    """`period` (current by default) in the tenant's calendar."""
    calendar = await anyio.to_thread.run_sync(tenants.get_settings, tenant_id)
    return _period(period or "current", calendar, now)


async def _read(
    tenant_id: str,
    period: str | None,
    price_book: PriceBookApp,
    tenants: TenantSettingsApp,
    now: datetime,
) -> PriceBookOut:
    asked = await tenant_period(tenant_id, period, tenants, now)
    answer = await anyio.to_thread.run_sync(price_book.get_price_book, tenant_id, asked)
    return price_book_out(tenant_id, answer)


def _period(spec: str, calendar: BillingSettings, now: datetime) -> BillingPeriod:
    return resolve_period(
        spec.strip(),
        now=now,
        anchor_day=calendar.period_anchor_day,
        timezone=calendar.timezone,
        grace=timedelta(hours=calendar.grace_hours),
    )


class PriceBookOpsController(Controller):
    path = "/api/ops/price-book"
    tags = ["ops"]
    guards = [requires_role("ops")]

    @get(summary="The tenant's price book in force for a period, and its versions")
    async def get_price_book(
        self,
        request: Request[Principal, Any, Any],
        price_book: NamedDependency[PriceBookApp],
        tenants: NamedDependency[TenantSettingsApp],
        clock: NamedDependency[Clock],
        period: FromQuery[str | None] = None,
    ) -> PriceBookOut:
        return await _read(request.user.tenant_id, period, price_book, tenants, clock())

    @put(summary="Set the price book from the current or a future billing period")
    async def put_price_book(  # noqa: PLR0913
        self,
        request: Request[Principal, Any, Any],
        data: JSONBody[PriceBookIn],
        price_book: NamedDependency[PriceBookApp],
        tenants: NamedDependency[TenantSettingsApp],
        audit_writer: NamedDependency[AuditWriter],
        clock: NamedDependency[Clock],
    ) -> PriceBookOut:
        """Setting the current period again restates it (a new version)."""
        principal, now = request.user, clock()
        calendar = await anyio.to_thread.run_sync(
            tenants.get_settings, principal.tenant_id
        )
        answer, position = await anyio.to_thread.run_sync(
            partial(
                price_book.set_price_book,
                principal.tenant_id,
                msgspec.to_builtins(data),
                calendar=calendar,
                actor_id=principal.subject,
                now=now,
            )
        )
        await record_change(
            audit_writer,
            request,
            AuditRecord.PriceBookChanged,
            effective_from=answer.period.start.isoformat(),
            currency=answer.version.book["currency"],
            prices=len(answer.version.book["prices"]),
            position=position,
        )
        out = price_book_out(principal.tenant_id, answer)
        out.position = position
        out.min_positions = f"price_book:{position}"
        return out


class PriceBookAdminController(Controller):
    path = "/api/billing/price-book"
    tags = ["billing"]
    guards = [requires_role("admin"), requires_enabled_tenant]

    @get(summary="The prices this tenant is billed at (read only)")
    async def get_price_book(
        self,
        request: Request[Principal, Any, Any],
        price_book: NamedDependency[PriceBookApp],
        tenants: NamedDependency[TenantSettingsApp],
        clock: NamedDependency[Clock],
        period: FromQuery[str | None] = None,
    ) -> PriceBookOut:
        return await _read(request.user.tenant_id, period, price_book, tenants, clock())

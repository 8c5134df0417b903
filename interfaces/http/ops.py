"""Ops endpoints: the tenant's billing settings and how fresh its read models are.

Projection status and rebuilds are platform operations (interfaces/http/platform.py).
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

import anyio
import msgspec
from litestar import Controller, Request, get, patch
from litestar.di import NamedDependency
from litestar.params import JSONBody

from application.clock import Clock
from application.projecting.projector import Projector
from application.tenants import TenantSettingsApp
from domain.tenant_settings import BillingSettings
from interfaces.http.auth import Principal, requires_role


class FreshnessOut(msgspec.Struct):
    """How fresh a read model is: nothing that tells another tenant's volume."""

    name: str
    state: str  # ok, behind, rebuilding, stalled
    data_through: datetime | None  # it holds everything recorded before this


class SettingsOut(msgspec.Struct, omit_defaults=True):
    tenant_id: str
    timezone: str
    period_anchor_day: int
    grace_hours: int
    acceptance_window_days: int
    position: int | None = None  # after a change: the tenant-settings position
    min_positions: str | None = None  # after a change: pass to reads to see it


class SettingsChangeIn(msgspec.Struct, forbid_unknown_fields=True):
    """Only the given settings change; the others keep their value."""

    timezone: str | None = None
    period_anchor_day: int | None = None
    grace_hours: int | None = None
    acceptance_window_days: int | None = None


def _settings_out(tenant_id: str, s: BillingSettings) -> SettingsOut:
    return SettingsOut(
        tenant_id,
        s.timezone,
        s.period_anchor_day,
        s.grace_hours,
        s.acceptance_window_days,
    )


class OpsController(Controller):
    path = "/api/ops"
    tags = ["ops"]
    guards = [requires_role("ops")]

    @get("/freshness", summary="Whether each read model is up to date, and to when")
    async def freshness(
        self, projector: NamedDependency[Projector]
    ) -> list[FreshnessOut]:
        statuses = await anyio.to_thread.run_sync(projector.status)
        return [FreshnessOut(s.name, s.state, s.data_through) for s in statuses]

    @get("/settings", summary="The tenant's billing settings")
    async def get_settings(
        self,
        request: Request[Principal, Any, Any],
        tenants: NamedDependency[TenantSettingsApp],
    ) -> SettingsOut:
        tenant = request.user.tenant_id
        settings = await anyio.to_thread.run_sync(tenants.get_settings, tenant)
        return _settings_out(tenant, settings)

    @patch("/settings", summary="Change the tenant's billing settings")
    async def change_settings(
        self,
        request: Request[Principal, Any, Any],
        data: JSONBody[SettingsChangeIn],
        tenants: NamedDependency[TenantSettingsApp],
        clock: NamedDependency[Clock],
    ) -> SettingsOut:
        """Read models re-bucket the tenant's usage in its new calendar."""
        principal = request.user
        changes = {
            k: v for k, v in msgspec.structs.asdict(data).items() if v is not None
        }
        wanted, position = await anyio.to_thread.run_sync(
            partial(
                tenants.update_settings,
                principal.tenant_id,
                changes,
                actor_id=principal.subject,
                now=clock(),
            )
        )
        out = _settings_out(principal.tenant_id, wanted)
        out.position = position
        out.min_positions = f"tenant_settings:{position}"
        return out

"""Ops endpoints: projection status and rebuilds, and the tenant's billing settings."""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import anyio
import msgspec
from litestar import Controller, Request, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from application.projector import ProjectionStatus
from domain.audit import AuditRecord
from domain.tenant_settings import BillingSettings
from interfaces.http.auth import Principal, requires_role
from interfaces.http.errors import UnknownProjection
from interfaces.http.services import ApiServices


class UpstreamOut(msgspec.Struct):
    upstream: str
    position: int
    head: int
    lag_events: int
    lag_seconds: float


class ProjectionOut(msgspec.Struct):
    name: str
    live_version: int
    building_version: int | None
    rebuild_running: bool
    upstreams: list[UpstreamOut]


class RebuildRequested(msgspec.Struct):
    name: str
    status: str


class SettingsOut(msgspec.Struct, omit_defaults=True):
    tenant_id: str
    timezone: str
    period_anchor_day: int
    grace_hours: int
    acceptance_window_days: int
    position: int | None = None  # after a change: the tenant-settings position


class SettingsChange(msgspec.Struct, forbid_unknown_fields=True):
    """Only the given settings change; the others keep their value."""

    timezone: str | None = None
    period_anchor_day: int | None = None
    grace_hours: int | None = None
    acceptance_window_days: int | None = None


def projection_out(status: ProjectionStatus) -> ProjectionOut:
    return ProjectionOut(
        status.name,
        status.live_version,
        status.building_version,
        status.rebuild_running,
        [
            UpstreamOut(
                u.upstream, u.position, u.head, u.lag_events, round(u.lag_seconds, 3)
            )
            for u in status.upstreams
        ],
    )


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

    @get("/projections", summary="Position, head and lag of every read model")
    async def list_projections(
        self, services: NamedDependency[ApiServices]
    ) -> list[ProjectionOut]:
        statuses = await anyio.to_thread.run_sync(services.write_side.projector.status)
        return [projection_out(s) for s in statuses]

    @post(
        "/projections/{name:str}/rebuild",
        status_code=202,
        summary="Rebuild a read model from the full history, then swap it in",
    )
    async def rebuild_projection(
        self,
        request: Request[Principal, Any, Any],
        name: FromPath[str],
        services: NamedDependency[ApiServices],
    ) -> RebuildRequested:
        """The live copy keeps answering until the rebuilt one replaces it."""
        projector = services.write_side.projector
        if name not in projector.projections:
            raise UnknownProjection(f"name: no read model called {name!r}")
        await anyio.to_thread.run_sync(projector.request_rebuild, name)
        principal = request.user
        await anyio.to_thread.run_sync(
            partial(
                services.audit.write,
                AuditRecord.ProjectionRebuildRequested,
                tenant_id=principal.tenant_id,
                actor_id=principal.subject,
                request_id=str(request.scope.get("state", {}).get("request_id", "")),
                projection=name,
            )
        )
        return RebuildRequested(name, "requested")

    @get("/settings", summary="The tenant's billing settings")
    async def get_settings(
        self,
        request: Request[Principal, Any, Any],
        services: NamedDependency[ApiServices],
    ) -> SettingsOut:
        tenant = request.user.tenant_id
        settings = await anyio.to_thread.run_sync(
            services.write_side.tenants.get_settings, tenant
        )
        return _settings_out(tenant, settings)

    @patch("/settings", summary="Change the tenant's billing settings")
    async def change_settings(
        self,
        request: Request[Principal, Any, Any],
        data: JSONBody[SettingsChange],
        services: NamedDependency[ApiServices],
    ) -> SettingsOut:
        """Read models re-bucket the tenant's usage in its new calendar."""
        principal = request.user
        tenants = services.write_side.tenants
        current = await anyio.to_thread.run_sync(
            tenants.get_settings, principal.tenant_id
        )
        changes = {
            k: v for k, v in msgspec.structs.asdict(data).items() if v is not None
        }
        wanted = dataclasses.replace(current, **changes).checked()
        position = await anyio.to_thread.run_sync(
            partial(
                tenants.change_settings,
                principal.tenant_id,
                wanted,
                actor_id=principal.subject,
                now=services.ingestor.clock(),
            )
        )
        out = _settings_out(principal.tenant_id, wanted)
        out.position = position
        return out

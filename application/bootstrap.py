"""The composition root: builds the applications and services from Settings."""

from __future__ import annotations

from dataclasses import dataclass

from application.audit import AuditApp
from application.database import ensure_database
from application.metering import MeteringApp
from application.projector import Projector
from application.settings import Settings
from application.tenants import TenantSettingsApp
from projections.audit_log import AuditLogProjection
from projections.base import Projection
from projections.usage_daily import UsageDailyProjection
from projections.usage_exports import UsageExportsProjection

PROJECTIONS: dict[str, Projection] = {
    p.name: p
    for p in (UsageDailyProjection(), UsageExportsProjection(), AuditLogProjection())
}


@dataclass
class WriteSide:
    """The event-sourced applications and the projection runtime over them."""

    settings: Settings
    metering: MeteringApp
    tenants: TenantSettingsApp
    audit: AuditApp
    projector: Projector

    def close(self) -> None:
        self.projector.close()
        for app in (self.metering, self.tenants, self.audit):
            app.close()


def initialise_database(settings: Settings) -> None:
    """`billing db init`: database, schema, event tables, read models (idempotent)."""
    ensure_database(settings)
    write_side = bootstrap(settings, create_tables=True)
    write_side.close()


def bootstrap(settings: Settings, *, create_tables: bool = False) -> WriteSide:
    metering = MeteringApp(settings, create_table=create_tables)
    tenants = TenantSettingsApp(settings, create_table=create_tables)
    audit = AuditApp(settings, create_table=create_tables)
    upstreams = {app.name: app for app in (metering, tenants, audit)}
    projector = Projector(settings, PROJECTIONS, upstreams)
    if create_tables:
        projector.ensure_tables()
    return WriteSide(settings, metering, tenants, audit, projector)

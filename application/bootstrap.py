"""The composition root: builds the applications and services from Settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial

from application.audit.group_commit import append_function_ddl
from application.audit.writer import AuditApp
from application.metering.app import MeteringApp
from application.projecting.projector import Projector
from application.settings import Settings
from application.store.database import connect, ensure_database
from application.tenants import TenantSettingsApp
from projections.audit_log.postgres import AuditLogProjection
from projections.base import Projection
from projections.usage_daily.ledger import LedgerReader
from projections.usage_daily.postgres import UsageDailyProjection
from projections.usage_exports.postgres import UsageExportsProjection

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

    @property
    def ledger(self) -> LedgerReader:
        """The usage ledger as corrections read it (a connection per call)."""
        return LedgerReader(partial(connect, self.settings))

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
    """Build the write side; with `create_tables`, also create what is missing."""
    with _schema_lock(settings) if create_tables else nullcontext():
        metering = MeteringApp(settings, create_table=create_tables)
        tenants = TenantSettingsApp(settings, create_table=create_tables)
        audit = AuditApp(settings, create_table=create_tables)
        upstreams = {app.name: app for app in (metering, tenants, audit)}
        projector = Projector(settings, PROJECTIONS, upstreams)
        if create_tables:
            projector.ensure_tables()
            with connect(settings, autocommit=True) as conn:
                conn.execute(
                    append_function_ddl(settings.db_schema, audit.events_table)
                )
    return WriteSide(settings, metering, tenants, audit, projector)


@contextmanager
def _schema_lock(settings: Settings) -> Iterator[None]:
    """Serialise DDL: PostgreSQL refuses concurrent CREATE ... IF NOT EXISTS of the
    same objects ("tuple concurrently updated") when api and worker start together."""
    key = f"{settings.db_schema}/bootstrap"
    with connect(settings, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))

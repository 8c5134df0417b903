"""Serving the audit read models to auditors: the audit log and export records."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from projections.audit_log import reader as audit_log
from projections.audit_log.reader import AuditEventOut, AuditQuery
from projections.usage_exports import reader as exports


class AuditReader:
    """Tenant-scoped reads of billing_audit_log and billing_usage_exports."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    async def list_events(self, query: AuditQuery) -> list[AuditEventOut]:
        async with self.pool.connection() as conn:
            return await audit_log.list_events(conn, query)

    async def get_event(self, tenant_id: str, event_id: int) -> AuditEventOut | None:
        async with self.pool.connection() as conn:
            return await audit_log.get_event(conn, tenant_id, event_id)

    async def tenant_of(self, event_id: int) -> str | None:
        async with self.pool.connection() as conn:
            return await audit_log.tenant_of(conn, event_id)

    async def replayable_ids(
        self,
        tenant_id: str | None,
        types: Sequence[str],
        since: datetime | None,
    ) -> list[tuple[str, int]]:
        async with self.pool.connection() as conn:
            return await audit_log.replayable_ids(conn, tenant_id, types, since)

    async def list_exports(self, tenant_id: str, limit: int) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            return await exports.list_exports(conn, tenant_id, limit)

    async def get_export(
        self, tenant_id: str, export_id: UUID
    ) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            return await exports.get_export(conn, tenant_id, export_id)

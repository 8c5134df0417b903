"""Reading the audit read models: the audit log and the export records."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from psycopg.rows import dict_row
from psycopg.sql import SQL, Composed
from psycopg_pool import AsyncConnectionPool

from domain.audit import AuditRecord

EVENT_TYPES = sorted(
    cls.__name__
    for cls in vars(AuditRecord).values()
    if isinstance(cls, type)
    and issubclass(cls, AuditRecord.Recorded)
    and cls is not AuditRecord.Recorded
)


class InvalidAuditQuery(ValueError):
    """A query parameter breaks a rule; the message names it."""


class AuditEventOut(msgspec.Struct):
    position: int
    type: str
    occurred_at: datetime
    actor_id: str
    request_id: str
    details: dict[str, Any]


class AuditReader:
    """Tenant-scoped queries over billing_audit_log and billing_usage_exports."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    async def list_events(
        self,
        tenant_id: str,
        *,
        event_type: str | None,
        since: datetime | None,
        after: int | None,
        limit: int,
    ) -> list[AuditEventOut]:
        """Oldest first from `since` / after position `after` (a paging cursor)."""
        if event_type is not None and event_type not in EVENT_TYPES:
            raise InvalidAuditQuery(f"type: must be one of {', '.join(EVENT_TYPES)}")
        clauses: list[SQL | Composed] = [SQL("tenant_id = %(tenant)s")]
        if event_type:
            clauses.append(SQL("event_type = %(type)s"))
        if since:
            clauses.append(SQL("occurred_at >= %(since)s"))
        if after:
            clauses.append(SQL("position > %(after)s"))
        statement = SQL(
            "SELECT position, event_type, occurred_at, actor_id, request_id, details"
            " FROM billing_audit_log WHERE {} ORDER BY position LIMIT %(limit)s"
        ).format(SQL(" AND ").join(clauses))
        params = {
            "tenant": tenant_id,
            "type": event_type,
            "since": since,
            "after": after,
            "limit": limit,
        }
        async with self.pool.connection() as conn:
            cur = await conn.execute(statement, params)
            return [AuditEventOut(*row) for row in await cur.fetchall()]

    async def list_exports(self, tenant_id: str, limit: int) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT export_id, workspace_id, requested_by_id, period_start,"
                " period_end, file_key, row_count, totals, sha256, created_at,"
                " read_model_position AS position FROM billing_usage_exports"
                " WHERE tenant_id = %s ORDER BY created_at DESC, export_id LIMIT %s",
                (tenant_id, limit),
            )
            return list(await cur.fetchall())

    async def get_export(
        self, tenant_id: str, export_id: UUID
    ) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT export_id, file_key, sha256, row_count"
                " FROM billing_usage_exports"
                " WHERE tenant_id = %s AND export_id = %s",
                (tenant_id, export_id),
            )
            row: dict[str, Any] | None = await cur.fetchone()
            return row

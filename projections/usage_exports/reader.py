"""Every SELECT on billing_usage_exports: a tenant's exports, newest first."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier

from projections.usage_exports.postgres import EXPORTS

_LIST = SQL(
    "SELECT export_id, workspace_id, requested_by_id, period_start,"
    " period_end, file_key, row_count, totals, sha256, created_at,"
    " read_model_position AS position FROM {}"
    " WHERE tenant_id = %s ORDER BY created_at DESC, export_id LIMIT %s"
).format(Identifier(EXPORTS))
_ONE = SQL(
    "SELECT export_id, file_key, sha256, row_count FROM {}"
    " WHERE tenant_id = %s AND export_id = %s"
).format(Identifier(EXPORTS))


async def list_exports(
    conn: AsyncConnection[Any], tenant_id: str, limit: int
) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_LIST, (tenant_id, limit))
    return list(await cur.fetchall())


async def get_export(
    conn: AsyncConnection[Any], tenant_id: str, export_id: UUID
) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_ONE, (tenant_id, export_id))
    row: dict[str, Any] | None = await cur.fetchone()
    return row

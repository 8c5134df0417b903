"""billing_usage_exports in PostgreSQL: one row per CSV export, from UsageExported."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import msgspec
from psycopg import Cursor

from domain.audit import AuditRecord
from domain.values import escape_unstorable
from projections.base import Notified, Projection

EXPORTS = "billing_usage_exports"
COLUMNS = (
    "export_id",
    "tenant_id",
    "workspace_id",
    "requested_by_id",
    "period_start",
    "period_end",
    "file_key",
    "row_count",
    "totals",
    "sha256",
    "created_at",
    "read_model_position",
    "position",
)


def export_row(item: Notified) -> tuple[Any, ...] | None:
    event = item.event
    if not isinstance(event, AuditRecord.UsageExported):
        return None
    return (
        event.export_id,
        event.tenant_id,
        event.filters.get("workspace_id"),
        escape_unstorable(event.actor_id),  # as the audit log does (audit_row)
        date.fromisoformat(event.period["start"]),
        date.fromisoformat(event.period["end"]),
        event.file_key,
        event.row_count,
        msgspec.json.encode(event.totals).decode(),
        event.sha256,
        event.timestamp,
        event.position,
        item.position,
    )


class UsageExportsProjection(Projection):
    """One row per export: who, what period and filter, and which bytes."""

    name = "billing_usage_exports"
    upstreams = ("audit",)
    tables = {
        EXPORTS: (
            "export_id uuid PRIMARY KEY, tenant_id text NOT NULL, workspace_id text,"
            " requested_by_id text NOT NULL, period_start date NOT NULL,"
            " period_end date NOT NULL, file_key text NOT NULL,"
            " row_count integer NOT NULL, totals jsonb NOT NULL,"
            " sha256 text NOT NULL, created_at timestamptz NOT NULL,"
            " read_model_position bigint NOT NULL, position bigint NOT NULL"
        )
    }
    indexes = ((EXPORTS, "tenant_time", "tenant_id, created_at"),)

    def changes(self, batch: Sequence[Notified]) -> Any:
        return [row for item in batch if (row := export_row(item)) is not None]

    def write(
        self, cursor: Cursor[Any], schema: str, version: int, changes: Any
    ) -> None:
        self.insert_rows(cursor, schema, version, EXPORTS, COLUMNS, changes)

"""billing_audit_log in PostgreSQL: one row per audit record."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from psycopg import Cursor

from domain.audit import AuditRecord
from domain.values import escape_unstorable, escape_unstorable_in
from projections.base import Notified, Projection

AUDIT_LOG = "billing_audit_log"
COLUMNS = (
    "position",
    "tenant_id",
    "event_type",
    "actor_id",
    "request_id",
    "occurred_at",
    "details",
)
_COMMON = {
    "originator_id",
    "originator_version",
    "originator_topic",
    "timestamp",
    "tenant_id",
    "actor_id",
    "request_id",
}


def audit_row(item: Notified) -> tuple[Any, ...] | None:
    """The log row of an audit event (None for anything else).

    Text is escaped as AuditRecord.record does, for records stored before it
    did: one record PostgreSQL cannot hold must not stop the log for everyone."""
    event = item.event
    if not isinstance(event, AuditRecord.Recorded):
        return None
    details = {k: v for k, v in vars(event).items() if k not in _COMMON}
    return (
        item.position,
        escape_unstorable(event.tenant_id),
        type(event).__name__,
        escape_unstorable(event.actor_id),
        escape_unstorable(event.request_id),
        event.timestamp,
        msgspec.json.encode(escape_unstorable_in(details)).decode(),
    )


class AuditLogProjection(Projection):
    """Copies audit events into a table indexed for auditors' questions."""

    name = "billing_audit_log"
    upstreams = ("audit",)
    tables = {
        AUDIT_LOG: (
            "position bigint PRIMARY KEY, tenant_id text NOT NULL,"
            " event_type text NOT NULL, actor_id text NOT NULL,"
            " request_id text NOT NULL, occurred_at timestamptz NOT NULL,"
            " details jsonb NOT NULL"
        )
    }
    indexes = (
        (AUDIT_LOG, "tenant_time", "tenant_id, occurred_at"),
        (AUDIT_LOG, "tenant_type_time", "tenant_id, event_type, occurred_at"),
    )

    def changes(self, batch: Sequence[Notified]) -> Any:
        return [row for item in batch if (row := audit_row(item)) is not None]

    def write(
        self, cursor: Cursor[Any], schema: str, version: int, changes: Any
    ) -> None:
        self.insert_rows(cursor, schema, version, AUDIT_LOG, COLUMNS, changes)

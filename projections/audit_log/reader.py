"""Every SELECT on billing_audit_log: a tenant's audit history, oldest first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg.sql import SQL, Composed, Identifier

from domain.audit import AuditRecord
from projections.audit_log.postgres import AUDIT_LOG

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
    id: int  # its position in the audit log: what replay and lookups take
    position: int
    type: str
    occurred_at: datetime
    actor_id: str
    request_id: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """A page of one tenant's audit history (`after` is the paging cursor)."""

    tenant_id: str
    event_type: str | None = None
    since: datetime | None = None
    after: int | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        if self.event_type is not None and self.event_type not in EVENT_TYPES:
            raise InvalidAuditQuery(f"type: must be one of {', '.join(EVENT_TYPES)}")


async def list_events(
    conn: AsyncConnection[Any], query: AuditQuery
) -> list[AuditEventOut]:
    """Oldest first from `since` / after position `after`."""
    params = {
        "tenant": query.tenant_id,
        "type": query.event_type,
        "since": query.since,
        "after": query.after,
        "limit": query.limit,
    }
    cur = await conn.execute(_events_sql(query), params)
    return [AuditEventOut(*row) for row in await cur.fetchall()]


def _events_sql(query: AuditQuery) -> Composed:
    clauses: list[SQL | Composed] = [SQL("tenant_id = %(tenant)s")]
    if query.event_type:
        clauses.append(SQL("event_type = %(type)s"))
    if query.since:
        clauses.append(SQL("occurred_at >= %(since)s"))
    if query.after:
        clauses.append(SQL("position > %(after)s"))
    return SQL(
        "SELECT position, position, event_type, occurred_at, actor_id, request_id,"
        " details FROM {} WHERE {} ORDER BY position LIMIT %(limit)s"
    ).format(Identifier(AUDIT_LOG), SQL(" AND ").join(clauses))


async def get_event(
    conn: AsyncConnection[Any], tenant_id: str, event_id: int
) -> AuditEventOut | None:
    """One of the tenant's audit events (None: none with that id, or another
    tenant's)."""
    cur = await conn.execute(_ONE_SQL, {"tenant": tenant_id, "id": event_id})
    row = await cur.fetchone()
    return None if row is None else AuditEventOut(*row)


async def replayable_ids(
    conn: AsyncConnection[Any],
    tenant_id: str | None,
    types: Sequence[str],
    since: datetime | None,
) -> list[tuple[str, int]]:
    """(tenant, id) of every audited view and export of `types` (of one
    tenant, or all), from `since`, oldest first."""
    cur = await conn.execute(
        SQL(
            "SELECT tenant_id, position FROM {} WHERE event_type = ANY(%(types)s)"
            " AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)"
            " AND (%(since)s::timestamptz IS NULL OR occurred_at >= %(since)s)"
            " ORDER BY position"
        ).format(Identifier(AUDIT_LOG)),
        {"types": list(types), "tenant": tenant_id, "since": since},
    )
    return [(str(t), int(p)) for t, p in await cur.fetchall()]


_ONE_SQL = SQL(
    "SELECT position, position, event_type, occurred_at, actor_id, request_id,"
    " details FROM {} WHERE tenant_id = %(tenant)s AND position = %(id)s"
).format(Identifier(AUDIT_LOG))


async def tenant_of(conn: AsyncConnection[Any], event_id: int) -> str | None:
    """The tenant an audit event belongs to (None: no such event)."""
    cur = await conn.execute(
        SQL("SELECT tenant_id FROM {} WHERE position = %s").format(
            Identifier(AUDIT_LOG)
        ),
        (event_id,),
    )
    row = await cur.fetchone()
    return None if row is None else str(row[0])

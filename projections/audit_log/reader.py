"""Every SELECT on billing_audit_log: a tenant's audit history, oldest first."""

from __future__ import annotations

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
        "SELECT position, event_type, occurred_at, actor_id, request_id, details"
        " FROM {} WHERE {} ORDER BY position LIMIT %(limit)s"
    ).format(Identifier(AUDIT_LOG), SQL(" AND ").join(clauses))

"""The outbox: what a read model's change should tell the tenant's systems.

A projection never sends anything (no network in handlers). When a change it
commits deserves a notification (an anomaly opened or cleared, a budget
threshold crossed), it records a **notice** in the same transaction as the
change: exactly once with it, and never without it. A dispatcher delivers
notices later (application/notifying).

Notices are not versioned with the read model. A notice's id says what it is
about (e.g. `budget.threshold_crossed/t_acme/2026-11-01/75`), so a rebuild that
comes to the same change records nothing new; and a notice first recorded by
a version that is not live (a rebuild passing through an old state) is kept,
marked `suppressed`, and never delivered: a rebuild sends nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from psycopg import Cursor
from psycopg.sql import SQL, Identifier

from projections.base import REGISTRY

NOTICES = "billing_notices"

NOTICES_DDL = (
    "id text PRIMARY KEY, tenant_id text NOT NULL, type text NOT NULL,"
    " data jsonb NOT NULL, occurred_at timestamptz NOT NULL,"
    " source text NOT NULL, version integer NOT NULL, suppressed text,"
    " position bigserial NOT NULL UNIQUE"
)


@dataclass(frozen=True, slots=True)
class Notice:
    """One thing to tell a tenant, identified by what it is about."""

    id: str
    tenant_id: str
    type: str  # anomaly.opened | anomaly.cleared | budget.threshold_crossed | ...
    data: dict[str, Any]
    occurred_at: datetime  # the time in the history that caused it


def create_notices(cursor: Cursor[Any], schema: str) -> None:
    cursor.execute(
        SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
            Identifier(schema, NOTICES), SQL(NOTICES_DDL)
        )
    )


def record_notices(
    cursor: Cursor[Any],
    schema: str,
    source: str,
    version: int,
    notices: Sequence[Notice],
) -> None:
    """Record `notices` in the caller's transaction; one already recorded (same
    id) is left as it is. Recorded by a version that is not live: suppressed."""
    if not notices:
        return
    cursor.executemany(
        SQL(
            "INSERT INTO {} (id, tenant_id, type, data, occurred_at, source,"
            " version, suppressed) SELECT %s, %s, %s, %s, %s, %s, %s,"
            " CASE WHEN live_version = %s THEN NULL"
            " ELSE 'recorded by a rebuild: never sent' END"
            " FROM {} WHERE name = %s ON CONFLICT (id) DO NOTHING"
        ).format(Identifier(schema, NOTICES), Identifier(schema, REGISTRY)),
        [
            (
                n.id,
                n.tenant_id,
                n.type,
                msgspec.json.encode(n.data).decode(),
                n.occurred_at,
                source,
                version,
                version,
                source,
            )
            for n in notices
        ],
    )

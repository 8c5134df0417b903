"""Reading an upstream's notification log in batches, decoded for a projection."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast
from uuid import UUID

from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from application.projecting.runtime import Runtime
from application.store.event_store import BillingApplication
from application.store.mapper import MsgspecMapper
from projections.base import Notified, Projection

Row = tuple[int, UUID, int, str, bytes]  # notification id, originator, version, ...


def read_after(
    rt: Runtime, app: BillingApplication, position: int, head: int, size: int
) -> list[Row]:
    """The next notifications after `position`, up to `head` (plain tuples).

    No upper bound in the SQL: "> position ORDER BY id LIMIT n" is always an
    ordered index scan, whatever the planner's statistics say; a range
    condition could tempt it into sorting the whole rest of the log.
    """
    statement = SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state"
        " FROM {} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
    ).format(Identifier(rt.schema, app.events_table))
    with (
        rt.datastore.get_connection() as conn,
        conn.cursor(row_factory=tuple_row, binary=True) as curs,
    ):
        curs.execute(statement, (position, size), prepare=True)
        return [row for row in curs if row[0] <= head]


def prepare(  # noqa: PLR0913 - where to read, and how much
    rt: Runtime,
    projection: Projection,
    app: BillingApplication,
    position: int,
    head: int,
    size: int,
) -> tuple[int, int, Any, datetime | None]:
    """Read, decode and turn into changes the batch after `position`: its last
    position, event count, changes and last event's time (pure but the read)."""
    notifications = read_after(rt, app, position, head, size)
    if not notifications:
        return position, 0, None, None
    decode = cast(MsgspecMapper, app.mapper).decode
    batch = [Notified(n[0], decode(n[3], n[4], n[1], n[2])) for n in notifications]
    return (
        batch[-1].position,
        len(batch),
        projection.changes(batch),
        batch[-1].event.timestamp,
    )

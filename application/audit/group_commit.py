"""Group commit of audit records from async request handlers.

Every usage view appends an audit record before it is answered, so this is on
the hot path of the API. Records of concurrent requests share one transaction
(one fsync): one call of a small server-side function, from the event loop.
Rows are exactly what the audit application's eventsourcing recorder writes
(same mapper, same table lock that keeps notification order equal to commit
order, same NOTIFY), so projections and eventsourcing read them as usual.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL, Composed, Identifier
from psycopg_pool import AsyncConnectionPool

from application.audit.writer import AuditApp, AuditUnavailable, new_record
from application.clock import Clock
from domain.audit import AuditRecord

log = logging.getLogger(__name__)
MAX_BATCH = 500


class AsyncAuditWriter:
    """`await write(...)` returns once the record is durable, or raises."""

    def __init__(
        self, app: AuditApp, pool: AsyncConnectionPool[Any], clock: Clock
    ) -> None:
        self.mapper = app.mapper
        self.pool = pool
        self.clock = clock
        self.append = SQL("SELECT * FROM {}(%s, %s, %s, %s)").format(
            Identifier(app.settings.db_schema, APPEND_FUNCTION)
        )
        self._pending: list[tuple[StoredEvent, asyncio.Future[int]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def write(
        self, event_class: type[AuditRecord.Recorded], **fields: Any
    ) -> int:
        record = new_record(event_class, now=self.clock(), **fields)
        (stored,) = [self.mapper.to_stored_event(e) for e in record.collect_events()]
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((stored, done))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())
        return await done

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                await self._commit(batch)
        finally:
            self._flushing = None

    async def _commit(
        self, batch: list[tuple[StoredEvent, asyncio.Future[int]]]
    ) -> None:
        events = [stored for stored, _ in batch]
        try:
            positions = await self._insert(events)
        except Exception as e:  # noqa: BLE001 - every waiter must learn of it
            log.error(
                "audit write failed for %d records: %s", len(batch), type(e).__name__
            )
            for _, done in batch:
                if not done.done():
                    done.set_exception(
                        AuditUnavailable(f"audit record not written: {e}")
                    )
            return
        for (_, done), position in zip(batch, positions, strict=True):
            if not done.done():
                done.set_result(position)

    async def _insert(self, events: list[StoredEvent]) -> list[int]:
        columns = (
            [e.originator_id for e in events],
            [e.originator_version for e in events],
            [e.topic for e in events],
            [e.state for e in events],
        )
        async with self.pool.connection() as conn:
            cursor = await conn.execute(self.append, columns, prepare=True)
            return [row[0] for row in await cursor.fetchall()]


APPEND_FUNCTION = "billing_audit_append"


def append_function_ddl(schema: str, events_table: str) -> Composed:
    """One server-side call does what eventsourcing's recorder does around an
    append (bounded lock wait, EXCLUSIVE table lock so notification order is
    commit order, NOTIFY, insert): a single round trip per group commit."""
    return SQL(
        "CREATE OR REPLACE FUNCTION {function}(ids uuid[], versions bigint[],"
        " topics text[], states bytea[]) RETURNS SETOF bigint LANGUAGE plpgsql AS $$"
        " BEGIN"
        "  SET LOCAL lock_timeout = '5s';"
        "  LOCK TABLE {table} IN EXCLUSIVE MODE;"
        "  NOTIFY {channel};"
        "  RETURN QUERY INSERT INTO {table}"
        "   (originator_id, originator_version, topic, state)"
        "   SELECT * FROM unnest(ids, versions, topics, states)"
        "   RETURNING notification_id;"
        " END $$"
    ).format(
        function=Identifier(schema, APPEND_FUNCTION),
        table=Identifier(schema, events_table),
        channel=Identifier(events_table),
    )

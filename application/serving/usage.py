"""Serving usage views to billing admins: wait, cache, audit, envelope.

An answer is only returned once its UsageViewed record is durable; if the
audit write fails, the request fails and nothing is served.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec
from psycopg_pool import AsyncConnectionPool

from application.audit.group_commit import AsyncAuditWriter
from application.audit.writer import AuditUnavailable
from application.clock import Clock
from application.projecting.progress import PositionWatcher
from application.serving.cache import UsageCache
from application.serving.recorded import RecordedView, replay_fields
from application.serving.waiting import Answer, Wait, wait_for_writes
from application.tokens import Principal
from domain.audit import AuditRecord
from projections.history import Cut
from projections.usage_daily.as_of import usage_at
from projections.usage_daily.postgres import UsageDailyProjection
from projections.usage_daily.query import UsageQuery
from projections.usage_daily.reader import DailySource, UsageReader
from projections.usage_daily.rows import Snapshot, UsageData, UsagePeriod, UsageTotal


class UsageOut(msgspec.Struct, omit_defaults=True):
    """The usage answer (DESIGN section 6)."""

    tenant_id: str
    period: UsagePeriod
    as_of: datetime
    position: int
    group_by: list[str]
    rows: list[Any]
    totals: list[UsageTotal]
    late_adjustments: list[Any]
    waited: Wait | None = None  # only when asked to wait (min_positions)


class _Envelope(msgspec.Struct, omit_defaults=True):
    tenant_id: str
    period: UsagePeriod
    as_of: datetime
    position: int
    group_by: list[str]
    rows: msgspec.Raw
    totals: msgspec.Raw
    late_adjustments: msgspec.Raw
    waited: Wait | None = None


class UsageService:
    """Views and exports of one tenant's usage."""

    def __init__(  # noqa: PLR0913
        self,
        pool: AsyncConnectionPool[Any],
        reader: UsageReader,
        cache: UsageCache,
        audit: AsyncAuditWriter,
        watcher: PositionWatcher,
        *,
        clock: Clock,
        max_wait_seconds: float,
    ) -> None:
        self.pool = pool
        self.reader = reader
        self.cache = cache
        self.audit = audit
        self.watcher = watcher
        self.clock = clock
        self.max_wait_seconds = max_wait_seconds
        self._encoder = msgspec.json.Encoder()

    async def view(
        self,
        principal: Principal,
        query: UsageQuery,
        *,
        min_positions: Mapping[str, int] | None,
        request_id: str,
    ) -> Answer:
        """The encoded answer, whether it came from the cache, how the wait went."""
        wait = await self.wait_for(min_positions)
        now = self.clock()
        async with self.pool.connection() as conn:
            # One statement (its own snapshot) says where the read model is; a
            # hit needs nothing more from the database.
            snapshot = await self.reader.snapshot(conn, query, now)
            key = self._key(query, snapshot)
            cached = await self.cache.get(key)
            if cached is None:
                # Rows and totals must match the position they are reported at:
                # read them, and the position again, in one REPEATABLE READ
                # transaction (the projection commits rows and position together).
                async with conn.pipeline(), conn.transaction():
                    snapshot = await self.reader.snapshot(conn, query, now)
                    data = await self.reader.data(conn, query, snapshot)
                key = self._key(query, snapshot)
                parts = self._encode_parts(data)
                row_count = len(data.rows)
            else:
                parts, row_count = _split(cached)
        if cached is None:
            await self.cache.put(key, _join(parts, row_count))
        body = self._envelope(query, snapshot, parts, wait)
        await self._audit_view(
            principal, query, snapshot, row_count, request_id, body, wait
        )
        return Answer(body, cached is not None, wait)

    async def view_at(
        self, principal: Principal, query: UsageQuery, cut: Cut, *, request_id: str
    ) -> bytes:
        """The answer as the history stood at `cut` (an auditor's as-of read),
        audited like a view: it records the cut, so it replays like one."""
        async with self.pool.connection() as conn, conn.transaction():
            snapshot, source = await usage_at(conn, query, cut)
            data = await self.reader.data(conn, query, snapshot, source)
        body = self._envelope(query, snapshot, self._encode_parts(data), None)
        await self._audit_view(
            principal, query, snapshot, len(data.rows), request_id, body, None
        )
        return body

    async def replay(
        self, conn: Any, recorded: RecordedView, *, from_ledger: bool = False
    ) -> bytes:
        """The bytes of a recorded usage view, reproduced from the history at
        the cut it recorded (in `conn`'s transaction)."""
        query, snapshot, source = await at_recorded_cut(conn, recorded, from_ledger)
        data = await self.reader.data(conn, query, snapshot, source)
        return self._envelope(
            query, snapshot, self._encode_parts(data), recorded.waited()
        )

    async def wait_for(self, wanted: Mapping[str, int] | None) -> Wait | None:
        """Wait briefly until the read model has processed each upstream it
        follows up to the position asked; None when nothing was asked."""
        return await wait_for_writes(
            self.watcher,
            self._live_positions,
            wanted,
            self.max_wait_seconds,
            followed=UsageDailyProjection.upstreams,
        )

    async def _live_positions(self) -> dict[str, int]:
        async with self.pool.connection() as conn:
            return await self.reader.live_positions(conn)

    def _key(self, query: UsageQuery, snapshot: Snapshot) -> str:
        # Everything the data depends on: tenant, the live copy (version, and
        # its table's OID, so a rebuilt or re-created database never meets an
        # old answer at the same positions), how far it processed both
        # upstreams (usage and calendars), period and filters.
        return self.cache.key(
            query.tenant_id,
            snapshot.version,
            snapshot.table,
            snapshot.position,
            snapshot.settings_position,
            snapshot.period.start.isoformat(),
            query.cache_key(),
        )

    def _encode_parts(self, data: UsageData) -> tuple[bytes, bytes, bytes]:
        encode = self._encoder.encode
        return encode(data.rows), encode(data.totals), encode(data.late_adjustments)

    def _envelope(
        self,
        query: UsageQuery,
        snapshot: Snapshot,
        parts: tuple[bytes, bytes, bytes],
        wait: Wait | None,
    ) -> bytes:
        rows, totals, adjustments = parts
        return self._encoder.encode(
            _Envelope(
                tenant_id=query.tenant_id,
                period=snapshot.period_out(),
                as_of=snapshot.as_of,
                position=snapshot.position,
                group_by=list(query.group_by),
                rows=msgspec.Raw(rows),
                totals=msgspec.Raw(totals),
                late_adjustments=msgspec.Raw(adjustments),
                waited=wait,
            )
        )

    async def _audit_view(  # noqa: PLR0913 - what was served, and to whom
        self,
        principal: Principal,
        query: UsageQuery,
        snapshot: Snapshot,
        row_count: int,
        request_id: str,
        body: bytes,
        wait: Wait | None,
    ) -> None:
        try:
            await self.audit.write(
                AuditRecord.UsageViewed,
                tenant_id=principal.tenant_id,
                actor_id=principal.subject,
                request_id=request_id,
                period=period_fields(snapshot),
                filters=filters_of(query),
                position=snapshot.position,
                row_count=row_count,
                sha256=hashlib.sha256(body).hexdigest(),
                replay=usage_replay(snapshot, query, wait),
            )
        except Exception as e:
            raise AuditUnavailable(
                f"usage not served: audit record not written ({e})"
            ) from e


def period_fields(snapshot: Snapshot) -> dict[str, Any]:
    p = snapshot.period
    return {
        "label": p.label,
        "start": p.start.isoformat(),
        "end": p.end.isoformat(),
        "timezone": p.timezone,
    }


async def at_recorded_cut(
    conn: Any, recorded: RecordedView, from_ledger: bool
) -> tuple[UsageQuery, Snapshot, DailySource]:
    """The question a recorded usage view or export asked, where the history
    stood at the cut it recorded, and its daily rows there."""
    query = recorded.usage_query()
    snapshot, source = await usage_at(
        conn,
        query,
        recorded.cut(),
        now=recorded.now,
        as_of=recorded.as_of,
        from_ledger=from_ledger,
    )
    return query, snapshot, source


def usage_replay(
    snapshot: Snapshot, query: UsageQuery, wait: Wait | None
) -> dict[str, Any]:
    """The `replay` field of a usage view or export: its cut (metering and the
    calendars the rows were bucketed with), version, instants and wait."""
    return replay_fields(
        {"metering": snapshot.position, "tenant_settings": snapshot.settings_position},
        {UsageDailyProjection.name: snapshot.version},
        snapshot.now,
        snapshot.as_of,
        wait,
        filters_of(query),
    )


def filters_of(query: UsageQuery) -> dict[str, Any]:
    return {
        "workspace_id": query.workspace_id,
        "product_area": query.product_area,
        "group_by": list(query.group_by),
        "period": query.period,
    }


def _join(parts: tuple[bytes, bytes, bytes], row_count: int) -> bytes:
    # JSON text never holds a raw NUL byte, so it separates the parts safely.
    return b"\0".join((*parts, str(row_count).encode()))


def _split(value: bytes) -> tuple[tuple[bytes, bytes, bytes], int]:
    rows, totals, adjustments, count = value.split(b"\0")
    return (rows, totals, adjustments), int(count)

"""What the forecast and anomaly views share: wait for the writes asked, read
where the read model is, answer from the cache keyed by its positions, or
read the rows and that position again in one snapshot and cache the bytes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

from psycopg_pool import AsyncConnectionPool

from application.audit.group_commit import AsyncAuditWriter
from application.clock import Clock
from application.projecting.progress import PositionWatcher
from application.serving.cache import UsageCache
from application.serving.waiting import Wait, wait_for_writes
from projections.usage_series import SeriesReader, SeriesSnapshot

# Reads the rows of one answer at `snapshot`, in its transaction, and encodes them.
ReadAnswer = Callable[[Any, SeriesSnapshot], Awaitable[bytes]]


class SeriesViews:
    """The base of a service serving one daily-series read model."""

    kind: ClassVar[str]  # names the answers in cache keys
    upstreams: ClassVar[tuple[str, ...]]

    def __init__(  # noqa: PLR0913
        self,
        pool: AsyncConnectionPool[Any],
        reader: SeriesReader,
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

    async def serve(
        self,
        tenant: str,
        period: str,
        filters: tuple[str | None, ...],
        min_positions: Mapping[str, int] | None,
        read: ReadAnswer,
    ) -> tuple[bytes, bool, Wait | None, SeriesSnapshot]:
        """The answer's bytes, whether they came from the cache, how the wait
        went, and the snapshot they reflect."""
        wait = await wait_for_writes(
            self.watcher,
            self._live_positions,
            min_positions,
            self.max_wait_seconds,
            followed=self.upstreams,
        )
        now = self.clock()
        async with self.pool.connection() as conn:
            snapshot = await self.reader.snapshot(conn, tenant, period, now)
            body = await self.cache.get(self._key(tenant, snapshot, filters))
            hit = body is not None
            if body is None:
                async with conn.pipeline(), conn.transaction():
                    snapshot = await self.reader.snapshot(conn, tenant, period, now)
                    body = await read(conn, snapshot)
        if not hit:
            await self.cache.put(self._key(tenant, snapshot, filters), body)
        return body, hit, wait, snapshot

    async def _live_positions(self) -> dict[str, int]:
        async with self.pool.connection() as conn:
            return await self.reader.live_positions(conn)

    def _key(
        self, tenant: str, snapshot: SeriesSnapshot, filters: tuple[str | None, ...]
    ) -> str:
        # Everything the answer depends on: the live copy (version and its
        # table's OID), how far it processed each upstream, period, filters.
        positions = snapshot.positions
        return self.cache.key(
            self.kind,
            tenant,
            snapshot.version,
            snapshot.table,
            *(positions.get(name, 0) for name in self.upstreams),
            snapshot.period.start.isoformat(),
            *(f or "" for f in filters),
        )

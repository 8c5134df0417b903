"""What the forecast and anomaly views share: wait for the writes asked, read
where the read model is, answer from the cache keyed by its positions, or
read the rows and that position again in one snapshot and cache the bytes;
and for auditors, the answer at a cut (audited, so it replays) and the replay
of a recorded view, both derived again from the histories."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar, NamedTuple

from psycopg_pool import AsyncConnectionPool

from application.audit.group_commit import AsyncAuditWriter
from application.clock import Clock
from application.projecting.progress import PositionWatcher
from application.serving.cache import UsageCache
from application.serving.recorded import RecordedView, replay_fields
from application.serving.waiting import Wait, wait_for_writes, with_wait
from application.tokens import Principal
from projections.history import Cut, anchored
from projections.usage_series import SeriesReader, SeriesSnapshot


class Served(NamedTuple):
    body: bytes  # as cached: without the wait's outcome
    hit: bool
    wait: Wait | None
    snapshot: SeriesSnapshot
    now: datetime  # the instant the period was resolved at

    @property
    def sent(self) -> bytes:
        """The bytes sent: the answer with how the wait went."""
        return with_wait(self.body, self.wait)


# Reads the rows of one answer at `snapshot`, in its transaction, and encodes them.
ReadAnswer = Callable[[Any, SeriesSnapshot], Awaitable[bytes]]


class SeriesViews(ABC):
    """The base of a service serving one daily-series read model."""

    kind: ClassVar[str]  # names the answers in cache keys
    read_model: ClassVar[str]
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
    ) -> Served:
        """The answer's bytes, whether they came from the cache, how the wait
        went, the snapshot they reflect and the instant it was read at."""
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
        return Served(body, hit, wait, snapshot, now)

    async def view_at_cut(
        self,
        principal: Principal,
        params: Mapping[str, Any],
        cut: Cut,
        request_id: str,
    ) -> bytes:
        """The answer to `params` as the history stood at `cut` (an auditor's
        as-of read), audited like a live view with the cut it reflects, so it
        replays too. `current` is the period current at the cut."""
        async with self.pool.connection() as conn, conn.transaction():
            cut = await anchored(conn, cut)
            assert cut.at is not None
            snapshot, body = await self.derive_at(
                conn, principal.tenant_id, params, cut, cut.at
            )
        served = Served(body, False, None, snapshot, cut.at)
        await self.audit_view(principal, served, params, request_id)
        return body

    async def replay(
        self, conn: Any, recorded: RecordedView, *, from_ledger: bool = False
    ) -> bytes:
        """The bytes of a recorded view, derived again from the histories at the
        positions it recorded (in `conn`'s transaction); with `from_ledger`,
        never from the read model's own inputs."""
        _, body = await self.derive_at(
            conn,
            recorded.tenant_id,
            recorded.params,
            recorded.cut(),
            recorded.now,
            from_ledger=from_ledger,
        )
        return with_wait(body, recorded.waited())

    @abstractmethod
    async def derive_at(  # noqa: PLR0913 - the view's question, cut and reading
        self,
        conn: Any,
        tenant: str,
        params: Mapping[str, Any],
        cut: Cut,
        now: datetime,
        *,
        from_ledger: bool = False,
    ) -> tuple[SeriesSnapshot, bytes]:
        """The snapshot and encoded answer to `params` (the view's recorded
        parameters) at `cut`, with periods resolved at `now`; with
        `from_ledger`, usage summed from every ledger entry up to the cut."""

    @abstractmethod
    async def audit_view(
        self,
        principal: Principal,
        served: Served,
        params: Mapping[str, Any],
        request_id: str,
    ) -> None:
        """Write the view's audit record (with replay_fields) before it is sent."""

    def replay_fields(
        self, served: Served, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        """What the audit record of `served` keeps to reproduce its bytes."""
        s = served.snapshot
        return replay_fields(
            {n: s.positions.get(n, 0) for n in self.upstreams},
            {self.read_model: s.version},
            served.now,
            s.clock,
            served.wait,
            params,
        )

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

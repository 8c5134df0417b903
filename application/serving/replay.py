"""Replaying what was served: an audited view or export, reproduced from the
history at the cut it recorded, checked against the SHA-256 of the bytes sent.

The bytes are derived again (never kept): the usage rows from the ledger at
the recorded positions, the forecast and the flags by their read models' own
rules from the histories there. `verified` says the reproduction is identical;
a mismatch means the history or a rule changed what was shown, which is what
an auditor needs to know.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
from psycopg_pool import AsyncConnectionPool

from application.audit.group_commit import AsyncAuditWriter
from application.audit.writer import AuditUnavailable
from application.serving.anomalies import AnomalyService
from application.serving.audit import AuditReader
from application.serving.exports import ExportService
from application.serving.forecast import ForecastService
from application.serving.recorded import REPLAYABLE, NotReplayable, RecordedView
from application.serving.usage import UsageService
from application.tokens import Principal
from domain.audit import AuditRecord


@dataclass(frozen=True, slots=True)
class Replayed:
    """A reproduced view or export and the verdict on it."""

    record: RecordedView
    body: bytes
    replayed_sha256: str
    # An export's bytes as the export store holds them now (None: not an
    # export, or the file is gone): a replay also tells a file changed.
    stored_sha256: str | None = None

    @property
    def verified(self) -> bool:
        return self.replayed_sha256 == self.record.recorded_sha256

    @property
    def is_csv(self) -> bool:
        return self.record.type == "UsageExported"


class ReplayService:
    """Reproduces audited views and exports of a tenant."""

    def __init__(  # noqa: PLR0913 - one service per kind of answer it replays
        self,
        pool: AsyncConnectionPool[Any],
        audit_reader: AuditReader,
        audit: AsyncAuditWriter,
        usage: UsageService,
        exports: ExportService,
        forecast: ForecastService,
        anomalies: AnomalyService,
    ) -> None:
        self.pool = pool
        self.audit_reader = audit_reader
        self.audit = audit
        self.usage = usage
        self.exports = exports
        self.forecast = forecast
        self.anomalies = anomalies

    async def recorded(self, tenant_id: str, audit_id: int) -> RecordedView | None:
        """The tenant's audited view or export `audit_id` (None: no such event
        of this tenant); NotReplayable for any other event."""
        event = await self.audit_reader.get_event(tenant_id, audit_id)
        if event is None:
            return None
        return RecordedView(
            event.id, event.type, tenant_id, event.occurred_at, event.details
        )

    async def reproduce(
        self, record: RecordedView, *, from_ledger: bool = False
    ) -> Replayed:
        """The bytes of `record` derived again, in one snapshot of the history
        (with `from_ledger`, never from today's daily rows or a read model's
        own days: every ledger entry up to the view's cut summed again)."""
        async with self.pool.connection() as conn, conn.transaction():
            if record.type == "UsageViewed":
                body = await self.usage.replay(conn, record, from_ledger=from_ledger)
            elif record.type == "UsageExported":
                body = await self.exports.replay(conn, record, from_ledger=from_ledger)
            elif record.type == "ForecastViewed":
                body = await self.forecast.replay(conn, record, from_ledger=from_ledger)
            elif record.type == "AnomaliesViewed":
                body = await self.anomalies.replay(
                    conn, record, from_ledger=from_ledger
                )
            else:  # pragma: no cover - RecordedView admits only REPLAYABLE
                raise NotReplayable(record.type)
        stored = None
        if record.type == "UsageExported":
            stored = await anyio.to_thread.run_sync(self._stored_sha256, record)
        return Replayed(record, body, hashlib.sha256(body).hexdigest(), stored)

    def _stored_sha256(self, record: RecordedView) -> str | None:
        path = self.exports.export_dir / str(record.details["file_key"])
        if not path.is_file():
            return None
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 16):
                digest.update(chunk)
        return digest.hexdigest()

    async def replay(
        self, principal: Principal, record: RecordedView, *, request_id: str
    ) -> Replayed:
        """Reproduce `record` for an auditor, audited (ViewReplayed) before the
        answer is given."""
        replayed = await self.reproduce(record)
        try:
            await self.audit.write(
                AuditRecord.ViewReplayed,
                tenant_id=principal.tenant_id,
                actor_id=principal.subject,
                request_id=request_id,
                audit_event_id=record.id,
                audit_event_type=record.type,
                verified=replayed.verified,
                replayed_sha256=replayed.replayed_sha256,
            )
        except Exception as e:
            raise AuditUnavailable(
                f"replay not served: audit record not written ({e})"
            ) from e
        return replayed

    async def verify(
        self,
        tenant_id: str | None,
        since: datetime | None,
        sample: int | None,
        *,
        from_ledger: bool = False,
    ) -> AsyncIterator[Replayed | tuple[RecordedView | int, str]]:
        """Reproduce every audited view and export (of one tenant or all, from
        `since`; with `sample`, that many spread evenly over them, oldest
        first). Yields each Replayed, or (record or id, why it was not)."""
        ids = await self.audit_reader.replayable_ids(tenant_id, REPLAYABLE, since)
        if sample is not None and len(ids) > sample:
            step = len(ids) / sample
            ids = [ids[int(i * step)] for i in range(sample)]
        for tenant, audit_id in ids:
            try:
                record = await self.recorded(tenant, audit_id)
            except NotReplayable as e:
                yield audit_id, str(e)
                continue
            assert record is not None
            yield await self.reproduce(record, from_ledger=from_ledger)

    async def count(self, tenant_id: str | None, since: datetime | None) -> int:
        return len(await self.audit_reader.replayable_ids(tenant_id, REPLAYABLE, since))

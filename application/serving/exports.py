"""CSV exports of usage: COPY into the export store, audited before served.

The bytes are kept under `file_key` for auditors; if the UsageExported record
cannot be written, the file is removed and nothing is served.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import msgspec

from application.audit.writer import AuditUnavailable
from application.serving.recorded import RecordedView
from application.serving.usage import (
    UsageService,
    at_recorded_cut,
    filters_of,
    period_fields,
    usage_replay,
)
from application.serving.waiting import Wait
from application.tokens import Principal
from domain.audit import AuditRecord
from projections.usage_daily.query import UsageQuery
from projections.usage_daily.reader import LIVE, DailySource, csv_copy_sql, query_params
from projections.usage_daily.rows import Snapshot


@dataclass(frozen=True, slots=True)
class ExportedFile:
    export_id: UUID
    file_key: str
    path: Path
    sha256: str
    row_count: int
    filename: str
    wait: Wait | None  # how the wait for min_positions went (None: none asked)


class ExportService:
    """Exports of one tenant's usage, read like views (same reader and waits)."""

    def __init__(self, usage: UsageService, export_dir: Path) -> None:
        self.usage = usage
        self.export_dir = export_dir

    async def export(
        self,
        principal: Principal,
        query: UsageQuery,
        *,
        min_positions: Mapping[str, int] | None,
        request_id: str,
    ) -> ExportedFile:
        """Write the CSV to the export store, audit it, and say where it is."""
        wait = await self.usage.wait_for(min_positions)
        export_id = uuid4()
        file_key = f"{principal.tenant_id}/{export_id}.csv"
        path = self.export_dir / file_key
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        async with self.usage.pool.connection() as conn, conn.transaction():
            snapshot = await self.usage.reader.snapshot(conn, query, self.usage.clock())
            digest, row_count = await self._write_csv(conn, query, snapshot, partial)
            totals = await self.usage.reader.totals(conn, query, snapshot)
        os.replace(partial, path)
        try:
            await self.usage.audit.write(
                AuditRecord.UsageExported,
                tenant_id=principal.tenant_id,
                actor_id=principal.subject,
                request_id=request_id,
                export_id=export_id,
                period=period_fields(snapshot),
                filters=filters_of(query),
                position=snapshot.position,
                file_key=file_key,
                row_count=row_count,
                totals=[msgspec.to_builtins(t) for t in totals],
                sha256=digest,
                replay=usage_replay(snapshot, query, None),  # no wait in a CSV
            )
        except Exception as e:
            path.unlink(missing_ok=True)  # never keep an unaudited export
            raise AuditUnavailable(
                f"export not served: audit record not written ({e})"
            ) from e
        filename = f"usage-{principal.tenant_id}-{snapshot.period.label}.csv"
        return ExportedFile(
            export_id, file_key, path, digest, row_count, filename, wait
        )

    async def _write_csv(
        self, conn: Any, query: UsageQuery, snapshot: Snapshot, path: Path
    ) -> tuple[str, int]:
        """COPY the rows out as CSV into `path`; returns (sha256, row count)."""
        digest = hashlib.sha256()
        lines = 0
        with path.open("wb") as out:
            async for chunk in csv_chunks(conn, query, snapshot, LIVE):
                out.write(chunk)
                digest.update(chunk)
                lines += chunk.count(b"\n")
            out.flush()
            os.fsync(out.fileno())
        return digest.hexdigest(), max(lines - 1, 0)  # the header is a line

    async def replay(
        self, conn: Any, recorded: RecordedView, *, from_ledger: bool = False
    ) -> bytes:
        """The bytes of a recorded export, reproduced from the history at the
        cut it recorded (in `conn`'s transaction)."""
        query, snapshot, source = await at_recorded_cut(conn, recorded, from_ledger)
        return b"".join([c async for c in csv_chunks(conn, query, snapshot, source)])


async def csv_chunks(
    conn: Any, query: UsageQuery, snapshot: Snapshot, source: DailySource
) -> AsyncIterator[bytes]:
    """The CSV of `query`'s rows from `source`, chunk by chunk.

    Cells are ids, slugs, dates and numbers (validated at ingest), never a
    line break, so turning COPY's LF line ends into CRLF is exact.
    """
    cursor = conn.cursor()
    statement = csv_copy_sql(query, source.relation)
    params = query_params(query, snapshot.period) | source.params
    async with cursor.copy(statement, params) as copy:
        async for data in copy:
            yield bytes(data).replace(b"\n", b"\r\n")

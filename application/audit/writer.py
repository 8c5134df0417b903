"""The audit application: its own event table, written with group commit.

Views and exports must not be served unaudited, and must not wait behind ingest,
so audit records have their own table; concurrent requests share one transaction
(one fsync) through AuditWriter instead of paying a commit each.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from application.clock import Clock
from application.store.event_store import BillingApplication
from domain.audit import AuditRecord

log = logging.getLogger(__name__)


class AuditUnavailable(RuntimeError):
    """The audit record could not be written; what it would cover must not happen."""


class AuditApp(BillingApplication):
    """Records audited facts, one small aggregate each."""

    name = "audit"

    def record_many(self, records: list[AuditRecord]) -> int:
        """Store records in one transaction; returns the position reached."""
        recordings = self.save(*records)
        return max((r.notification.id for r in recordings), default=0)


def new_record(
    event_class: type[AuditRecord.Recorded], *, now: datetime, **fields: Any
) -> AuditRecord:
    return AuditRecord.record(event_class, id=uuid4(), now=now, **fields)


class AuditWriter:
    """Group commit for audit records: callers block until their record is durable."""

    def __init__(
        self, app: AuditApp, *, clock: Clock | None = None, max_batch: int = 500
    ) -> None:
        self.app = app
        self.clock = clock or (lambda: datetime.now(UTC))
        self.max_batch = max_batch
        self._pending: list[tuple[AuditRecord, Future[int]]] = []
        self._lock = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name="audit-writer", daemon=True
        )
        self._thread.start()

    def submit(
        self, event_class: type[AuditRecord.Recorded], **fields: Any
    ) -> Future[int]:
        """Queue a record; the future resolves to its position once committed."""
        record = new_record(event_class, now=self.clock(), **fields)
        future: Future[int] = Future()
        with self._lock:
            if self._closed:
                raise AuditUnavailable("the audit writer is closed")
            self._pending.append((record, future))
            self._lock.notify()
        return future

    def write(self, event_class: type[AuditRecord.Recorded], **fields: Any) -> int:
        """Record and wait until durable; raises AuditUnavailable on failure."""
        try:
            return self.submit(event_class, **fields).result(timeout=30)
        except AuditUnavailable:
            raise
        except Exception as e:
            raise AuditUnavailable(f"audit record not written: {e}") from e

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._lock.wait()
                if not self._pending and self._closed:
                    return
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
            self._commit(batch)

    def _commit(self, batch: list[tuple[AuditRecord, Future[int]]]) -> None:
        try:
            position = self.app.record_many([record for record, _ in batch])
        except Exception as e:  # noqa: BLE001 - every waiter must learn of the failure
            log.error("audit write failed for %d records: %s", len(batch), e)
            for _, future in batch:
                future.set_exception(AuditUnavailable(f"audit record not written: {e}"))
            return
        for _, future in batch:
            future.set_result(position)

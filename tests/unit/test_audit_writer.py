"""AuditWriter: group commit of audit records, and failure reaching every caller."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from application.audit.writer import AuditUnavailable, AuditWriter
from domain.audit import AuditRecord
from tests.unit.builders import NOW

FIELDS = {
    "tenant_id": "t_acme",
    "actor_id": "ops_1",
    "request_id": "req-1",
    "projection": "billing_usage_daily",
}


class FakeAuditApp:
    """The audit application's write method, in memory; it can be held or broken."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.batches: list[list[AuditRecord]] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def record_many(self, records: list[AuditRecord]) -> int:
        self.entered.set()
        assert self.release.wait(timeout=10), "test never released the fake"
        if self.error is not None:
            raise self.error
        self.batches.append(list(records))
        return sum(len(b) for b in self.batches)


@pytest.fixture
def app() -> FakeAuditApp:
    return FakeAuditApp()


@pytest.fixture
def writer(app: FakeAuditApp) -> Iterator[AuditWriter]:
    audit_writer = AuditWriter(app, clock=lambda: NOW, max_batch=500)  # type: ignore[arg-type]
    yield audit_writer
    app.release.set()
    audit_writer.close()


def submit(writer: AuditWriter) -> Future[int]:
    return writer.submit(AuditRecord.ProjectionRebuildRequested, **FIELDS)


def submit_concurrently(writer: AuditWriter, calls: int) -> list[Future[int]]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda _: submit(writer), range(calls)))


def test_concurrent_records_share_commits(
    writer: AuditWriter, app: FakeAuditApp
) -> None:
    first = submit(writer)
    assert app.entered.wait(timeout=10)  # the writer is now busy with the first
    waiting = submit_concurrently(writer, 40)

    app.release.set()

    assert first.result(timeout=10) == 1
    assert {f.result(timeout=10) for f in waiting} == {41}
    assert [len(b) for b in app.batches] == [1, 40]


def test_each_record_is_committed_once_at_its_time(
    writer: AuditWriter, app: FakeAuditApp
) -> None:
    app.release.set()

    futures = submit_concurrently(writer, 25)

    positions = [f.result(timeout=10) for f in futures]
    committed = [r for batch in app.batches for r in batch]
    assert len(committed) == len({r.id for r in committed}) == 25
    assert all(r.collect_events()[0].timestamp == NOW for r in committed)
    assert max(positions) == 25


def test_batches_are_no_larger_than_the_maximum(app: FakeAuditApp) -> None:
    writer = AuditWriter(app, max_batch=5)  # type: ignore[arg-type]
    try:
        first = submit(writer)
        assert app.entered.wait(timeout=10)
        waiting = [submit(writer) for _ in range(12)]
        app.release.set()
        [f.result(timeout=10) for f in [first, *waiting]]
    finally:
        app.release.set()
        writer.close()

    assert [len(b) for b in app.batches] == [1, 5, 5, 2]


def test_when_the_commit_fails_every_waiting_caller_learns_of_it() -> None:
    app = FakeAuditApp(error=RuntimeError("database is down"))
    writer = AuditWriter(app)  # type: ignore[arg-type]
    try:
        first = submit(writer)
        assert app.entered.wait(timeout=10)
        waiting = submit_concurrently(writer, 10)
        app.release.set()

        for future in [first, *waiting]:
            with pytest.raises(AuditUnavailable, match="database is down"):
                future.result(timeout=10)
    finally:
        writer.close()


def test_write_raises_audit_unavailable_when_the_commit_fails() -> None:
    app = FakeAuditApp(error=RuntimeError("disk full"))
    app.release.set()
    writer = AuditWriter(app)  # type: ignore[arg-type]
    try:
        with pytest.raises(AuditUnavailable, match="disk full"):
            writer.write(AuditRecord.ProjectionRebuildRequested, **FIELDS)
    finally:
        writer.close()


def test_write_returns_the_position_once_durable(
    writer: AuditWriter, app: FakeAuditApp
) -> None:
    app.release.set()

    assert writer.write(AuditRecord.ProjectionRebuildRequested, **FIELDS) == 1
    assert len(app.batches) == 1


def test_a_closed_writer_refuses_new_records(
    writer: AuditWriter, app: FakeAuditApp
) -> None:
    app.release.set()
    writer.close()

    with pytest.raises(AuditUnavailable, match="closed"):
        submit(writer)


def test_records_queued_before_close_are_still_committed(app: FakeAuditApp) -> None:
    writer = AuditWriter(app)  # type: ignore[arg-type]
    first = submit(writer)
    assert app.entered.wait(timeout=10)
    queued = submit(writer)

    closer = threading.Thread(target=writer.close)
    closer.start()
    app.release.set()
    closer.join(timeout=10)

    assert (first.result(timeout=10), queued.result(timeout=10)) == (1, 2)


def test_a_record_missing_a_field_is_refused_at_submit(writer: AuditWriter) -> None:
    fields: dict[str, Any] = dict(FIELDS)
    del fields["projection"]

    with pytest.raises(TypeError):
        writer.submit(AuditRecord.ProjectionRebuildRequested, **fields)

"""Advancing read models: catch up, exactly once, one runner at a time.

Order comes from tracking positions in the database, never from whoever asked
for a catch-up, so a repeated or late request is harmless. An advisory lock
keeps a projection advancing in at most one place across all worker processes.

A read model that fails does not hold the others up: its batch is retried in
smaller ones until the failing record is named, the failure is recorded
(failing.py), and it is retried with backoff; failing `stall_after` times at the
same record, it is `stalled`, and says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from application.projecting.failing import (
    ProjectionFailed,
    as_failed,
    log_fields,
    record_failure,
)
from application.projecting.failures import describe
from application.projecting.reading import prepare, read_after
from application.projecting.runtime import Runtime
from application.projecting.tracking import ProjectionTracking
from application.store.event_store import BillingApplication
from projections.base import Projection

log = logging.getLogger("application.projecting")

Progress = Callable[[int, int], None]  # (events done, events expected)
SHRINK = 8  # a failed batch is retried in batches this many times smaller


class _BatchFailed(Exception):
    """A batch could not be turned into rows or written (see its __cause__)."""


class Advancer:
    """Brings read models up to the heads of their upstreams."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    def advance(self, name: str, *, max_events: int | None = None) -> int:
        """Catch the live version up to the current heads (or stop after about
        `max_events`, in whole batches); 0 if another runner holds it, or if it
        failed lately and its next try is not due. Raises ProjectionFailed
        (recorded) when a record cannot be processed."""
        rt = self.rt
        with rt.locks.hold(f"advance/{name}", wait=False) as held:
            if not held:
                return 0
            version = rt.registry.get(name).live_version
            failure = rt.failures.get(name, version)
            if failure and not failure.retry_due:
                return 0
            try:
                done = self.catch_up(
                    rt.projections[name], version, max_events=max_events
                )
            except Exception as e:
                failed = as_failed(name, e)
                record_failure(rt, failed, version)
                if failed is e:
                    raise
                raise failed from e
            if failure:
                rt.failures.clear(name, version)
                log.info(
                    "projection %s advances again", name, extra=log_fields(failure)
                )
            return done

    def advance_all(self) -> int:
        """Advance every read model; one that fails does not hold up the others."""
        done, trouble = 0, None
        for name in self.rt.projections:
            try:
                done += self.advance(name)
            except ProjectionFailed:
                continue  # recorded and logged; retried when due
            except Exception as e:  # noqa: BLE001 - the database itself, likely
                trouble = trouble or e
        if trouble:
            raise trouble
        return done

    def catch_up(
        self,
        projection: Projection,
        version: int,
        progress: Progress | None = None,
        max_events: int | None = None,
    ) -> int:
        """Process every upstream of `version` up to the head it has *now*."""
        tracking = self.rt.registry.tracking(projection, version)
        done = 0
        for upstream in projection.upstreams:
            budget = None if max_events is None else max_events - done
            if budget is not None and budget <= 0:
                break

            def report(n: int, base: int = done) -> None:
                if progress:
                    progress(base + n, 0)

            run = UpstreamRun(
                self.rt, projection, version, tracking, self.rt.upstreams[upstream]
            )
            done += run.catch_up(budget, report)
        return done


class UpstreamRun:
    """One catch-up of one read model version over one upstream."""

    def __init__(
        self,
        rt: Runtime,
        projection: Projection,
        version: int,
        tracking: ProjectionTracking,
        app: BillingApplication,
    ) -> None:
        self.rt, self.projection, self.version = rt, projection, version
        self.tracking, self.app = tracking, app

    def catch_up(self, budget: int | None, progress: Callable[[int], None]) -> int:
        """A batch that fails is retried in smaller ones, over its own extent,
        until the events before the failing record have committed and that
        record is named (ProjectionFailed); then full batches again."""
        full = self.rt.settings.projection_batch_size
        head = self.app.head_position()
        done, size = 0, full
        while budget is None or done < budget:
            position = self._position()
            if position >= head:
                break
            extent = None if size == full else size * SHRINK
            left = _least(None if budget is None else budget - done, extent)
            try:
                for count in self._batches(position, head, left, size):
                    done += count
                    progress(done)
            except _BatchFailed as e:
                if size == 1:
                    raise self._failed_at(self._position(), head, e) from e
                size = max(1, size // SHRINK)
                continue
            if extent is None:
                break
            size = full
        return done

    def _position(self) -> int:
        return self.tracking.max_tracking_id(self.app.name) or 0

    def _batches(
        self, position: int, head: int, budget: int | None, size: int
    ) -> Iterator[int]:
        """Commit batches of `size` after `position` up to `head`; yield each
        one's event count. A failure is raised as _BatchFailed."""
        done = 0
        # Read and decode the next batch while this one is being written: the
        # database and Python then work at the same time.
        with ThreadPoolExecutor(1, thread_name_prefix="projection-reader") as reader:
            args = (self.rt, self.projection, self.app)
            pending = reader.submit(prepare, *args, position, head, size)
            while True:
                try:
                    last, count, changes, last_event_at = pending.result()
                    if count == 0:
                        return
                    done += count
                    more = last < head and (budget is None or done < budget)
                    if more:
                        pending = reader.submit(prepare, *args, last, head, size)
                    self.write(last, changes, last_event_at)
                except Exception as e:
                    raise _BatchFailed from e
                yield count
                if not more:
                    return

    def write(self, last: int, changes: Any, last_event_at: datetime | None) -> None:
        """Commit a batch's rows and its position together: exactly once."""
        rt, name, upstream = self.rt, self.projection.name, self.app.name
        with rt.datastore.transaction(commit=True) as curs:
            self.projection.write(curs, rt.schema, self.version, changes)
            self.tracking.record(curs, upstream, last, last_event_at or _now())
            rt.notify(curs, f"{name}:{self.version}:{upstream}:{last}")

    def _failed_at(
        self, position: int, head: int, failed: _BatchFailed
    ) -> ProjectionFailed:
        """The failure of the one record after `position` (a batch of one failed)."""
        record = read_after(self.rt, self.app, position, head, 1)
        return ProjectionFailed(
            self.projection.name,
            self.app.name,
            record[0][0] if record else position + 1,
            describe(failed.__cause__ or failed),
        )


def _now() -> datetime:
    return datetime.now(UTC)


def _least(*limits: int | None) -> int | None:
    given = [n for n in limits if n is not None]
    return min(given) if given else None

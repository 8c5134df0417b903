"""The projection runtime: catch up, exactly once, one runner at a time; rebuild.

Order comes from tracking positions in the database, never from whoever asked
for a catch-up, so a repeated or late request is harmless. A PostgreSQL advisory
lock (released by the server if the holder dies) keeps a projection advancing in
at most one place across all worker processes.

A read model that fails does not hold the others up: its batch is retried in
smaller ones until the failing record is named, the failure is recorded
(application/projection_failures.py), and it is retried with backoff; failing
`stall_after` times at the same record, it is `stalled`, and says so.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

import psycopg
from eventsourcing.postgres import PostgresDatastore
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from application.event_store import BillingApplication
from application.mapper import MsgspecMapper
from application.projection_failures import (
    Failure,
    ProjectionFailures,
    RetryPolicy,
    describe,
)
from application.projection_registry import ProjectionRegistry
from application.settings import Settings
from application.tracking import ProjectionTracking
from projections.base import Notified, Projection, tracking_view

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (events done, events expected)
SHRINK = 8  # a failed batch is retried in batches this many times smaller


class RebuildInProgress(RuntimeError):
    """A rebuild of this projection is already running somewhere."""


class ProjectionFailed(RuntimeError):
    """A read model could not process a record (recorded; retried with backoff)."""

    def __init__(
        self, name: str, upstream: str | None, position: int | None, error: str
    ) -> None:
        where = f"{upstream} position {position}" if upstream else "no record"
        super().__init__(f"{name} failed at {where}: {error}")
        self.name = name
        self.upstream = upstream  # None: it failed before reaching a record
        self.position = position
        self.error = error  # class and message, short (describe())


class _BatchFailed(Exception):
    """A batch could not be turned into rows or written (see its __cause__)."""


@dataclass(frozen=True, slots=True)
class UpstreamStatus:
    upstream: str
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    # When the first unprocessed event was recorded (None when caught up).
    next_recorded_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    name: str
    live_version: int
    building_version: int | None
    rebuild_running: bool
    upstreams: list[UpstreamStatus]
    state: str = "ok"  # ok, behind, rebuilding or stalled
    # The live copy holds everything recorded before this instant.
    data_through: datetime | None = None
    failure: Failure | None = None  # the live copy's, while it keeps failing
    rebuild_failure: Failure | None = None  # of the copy a failed rebuild left
    rebuild_requested_at: datetime | None = None


def progress_channel(schema: str) -> str:
    """NOTIFY channel of committed projection batches (read-your-writes waits)."""
    return f"{schema}_projection_progress"


def control_channel(schema: str) -> str:
    """NOTIFY channel the workers listen to for rebuild requests."""
    return f"{schema}_projection_control"


class Projector:
    """Advances, rebuilds and reports on the read models of one database schema."""

    def __init__(
        self,
        settings: Settings,
        projections: Mapping[str, Projection],
        upstreams: Mapping[str, BillingApplication],
    ) -> None:
        pg = settings.postgres
        self.settings = settings
        self.schema = settings.db_schema
        self.projections = dict(projections)
        self.upstreams = dict(upstreams)
        self.batch_size = settings.projection_batch_size
        self.datastore = PostgresDatastore(
            pg.dbname,
            pg.host,
            pg.port,
            pg.user,
            pg.password,
            schema=self.schema,
            pool_size=1,
            max_overflow=7,
            pre_ping=True,
            idle_in_transaction_session_timeout=60,
        )
        self.registry = ProjectionRegistry(self.datastore)
        self.failures = ProjectionFailures(self.datastore)
        self.retry = RetryPolicy()
        self.channel = progress_channel(self.schema)

    def ensure_tables(self) -> None:
        self.registry.ensure(list(self.projections.values()))
        with self.datastore.transaction(commit=True) as curs:
            self.failures.ensure(curs)

    def close(self) -> None:
        self.datastore.close()

    # --- advancing ------------------------------------------------------------

    def advance(self, name: str, *, max_events: int | None = None) -> int:
        """Catch the live version up to the current heads (or stop after about
        `max_events`, in whole batches); 0 if another runner holds it, or if it
        failed lately and its next try is not due. Raises ProjectionFailed
        (recorded) when a record cannot be processed."""
        projection = self.projections[name]
        with self._lock(f"advance/{name}", wait=False) as held:
            if not held:
                return 0
            version = self.registry.get(name).live_version
            failure = self.failures.get(name, version)
            if failure and not failure.retry_due:
                return 0
            try:
                done = self._catch_up(projection, version, max_events=max_events)
            except Exception as e:
                failed = _as_failed(name, e)
                self._record_failure(failed, version)
                if failed is e:
                    raise
                raise failed from e
            if failure:
                self.failures.clear(name, version)
                log.info("projection %s advances again", name, extra=_fields(failure))
            return done

    def advance_all(self) -> int:
        """Advance every read model; one that fails does not hold up the others."""
        done, trouble = 0, None
        for name in self.projections:
            try:
                done += self.advance(name)
            except ProjectionFailed:
                continue  # recorded and logged; retried when due
            except Exception as e:  # noqa: BLE001 - the database itself, likely
                trouble = trouble or e
        if trouble:
            raise trouble
        return done

    def _catch_up(
        self,
        projection: Projection,
        version: int,
        progress: Progress | None = None,
        max_events: int | None = None,
    ) -> int:
        """Process every upstream up to the head it has *now* (a bounded run)."""
        tracking = self.registry.tracking(projection, version)
        done = 0
        for upstream in projection.upstreams:
            budget = None if max_events is None else max_events - done
            if budget is not None and budget <= 0:
                break

            def report(n: int, base: int = done) -> None:
                if progress:
                    progress(base + n, 0)

            done += self._catch_up_upstream(
                projection, version, tracking, self.upstreams[upstream], budget, report
            )
        return done

    def _catch_up_upstream(  # noqa: PLR0913
        self,
        projection: Projection,
        version: int,
        tracking: ProjectionTracking,
        app: BillingApplication,
        budget: int | None,
        progress: Callable[[int], None],
    ) -> int:
        """A batch that fails is retried in smaller ones, over its own extent,
        until the events before the failing record have committed and that
        record is named (ProjectionFailed); then full batches again."""
        head = app.head_position()
        done, size = 0, self.batch_size
        while budget is None or done < budget:
            position = tracking.max_tracking_id(app.name) or 0
            if position >= head:
                break
            extent = None if size == self.batch_size else size * SHRINK
            left = _least(None if budget is None else budget - done, extent)
            try:
                batches = self._batches(
                    projection, version, tracking, app, (position, head), left, size
                )
                for count in batches:
                    done += count
                    progress(done)
            except _BatchFailed as e:
                if size == 1:
                    committed = tracking.max_tracking_id(app.name) or 0
                    raise self._failed_at(projection, app, committed, head, e) from e
                size = max(1, size // SHRINK)
                continue
            if extent is None:
                break
            size = self.batch_size
        return done

    def _batches(  # noqa: PLR0913
        self,
        projection: Projection,
        version: int,
        tracking: ProjectionTracking,
        app: BillingApplication,
        span: tuple[int, int],
        budget: int | None,
        size: int,
    ) -> Iterator[int]:
        """Commit batches of `size` after span's position up to its head; yield
        each one's event count. A failure is raised as _BatchFailed."""
        position, head = span
        done = 0
        # Read and decode the next batch while this one is being written: the
        # database and Python then work at the same time.
        with ThreadPoolExecutor(1, thread_name_prefix="projection-reader") as reader:
            pending = reader.submit(
                self._prepare, projection, app, position, head, size
            )
            while True:
                try:
                    last, count, changes, last_event_at = pending.result()
                    if count == 0:
                        return
                    done += count
                    more = last < head and (budget is None or done < budget)
                    if more:
                        pending = reader.submit(
                            self._prepare, projection, app, last, head, size
                        )
                    self._write(
                        projection,
                        version,
                        tracking,
                        app.name,
                        last,
                        changes,
                        last_event_at,
                    )
                except Exception as e:
                    raise _BatchFailed from e
                yield count
                if not more:
                    return

    def _failed_at(
        self,
        projection: Projection,
        app: BillingApplication,
        position: int,
        head: int,
        failed: _BatchFailed,
    ) -> ProjectionFailed:
        """The failure of the one record after `position` (a batch of one failed)."""
        record = self._read(app, position, head, 1)
        return ProjectionFailed(
            projection.name,
            app.name,
            record[0][0] if record else position + 1,
            describe(failed.__cause__ or failed),
        )

    def _prepare(
        self,
        projection: Projection,
        app: BillingApplication,
        position: int,
        head: int,
        size: int | None = None,
    ) -> tuple[int, int, Any, datetime | None]:
        """Read, decode and turn into changes the batch after `position` (pure)."""
        notifications = self._read(app, position, head, size)
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

    def _write(  # noqa: PLR0913
        self,
        projection: Projection,
        version: int,
        tracking: ProjectionTracking,
        upstream: str,
        last: int,
        changes: Any,
        last_event_at: datetime | None,
    ) -> None:
        """Commit a batch's rows and its position together: exactly once."""
        with self.datastore.transaction(commit=True) as curs:
            projection.write(curs, self.schema, version, changes)
            tracking.record(curs, upstream, last, last_event_at or _now())
            curs.execute(
                "SELECT pg_notify(%s, %s)",
                (self.channel, f"{projection.name}:{version}:{upstream}:{last}"),
            )

    def _read(
        self, app: BillingApplication, position: int, head: int, size: int | None = None
    ) -> list[tuple[int, UUID, int, str, bytes]]:
        """The next notifications after `position`, up to `head` (plain tuples).

        No upper bound in the SQL: "> position ORDER BY id LIMIT n" is always an
        ordered index scan, whatever the planner's statistics say; a range
        condition could tempt it into sorting the whole rest of the log.
        """
        statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM {} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
        ).format(Identifier(self.schema, app.events_table))
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row, binary=True) as curs,
        ):
            curs.execute(statement, (position, size or self.batch_size), prepare=True)
            # (notification_id, originator_id, originator_version, topic, state)
            return [row for row in curs if row[0] <= head]

    # --- reading positions -------------------------------------------------------

    def position_of(self, name: str, upstream: str) -> int:
        """How far the live version of `name` has processed `upstream`."""
        projection = self.projections[name]
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT notification_id FROM {} WHERE application_name = %s"
                ).format(Identifier(self.schema, tracking_view(projection))),
                (upstream,),
            )
            row = curs.fetchone()
        return int(row["notification_id"]) if row else 0

    def wait_for(self, name: str, upstream: str, position: int, timeout: float) -> bool:
        """Block until `name` has processed `upstream` up to `position`, or time out.

        Woken by the NOTIFY each committed batch sends, so no polling interval.
        """
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.settings.conninfo(), autocommit=True) as conn:
            conn.execute(SQL("LISTEN {}").format(Identifier(self.channel)))
            while self.position_of(name, upstream) < position:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                for _ in conn.notifies(timeout=remaining, stop_after=1):
                    pass
        return True

    # --- rebuilding -----------------------------------------------------------

    def request_rebuild(self, name: str) -> None:
        """Ask the workers to rebuild `name` (they watch the registry)."""
        self.registry.get(name)  # raises LookupError for an unknown name
        self.registry.request_rebuild(name)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "SELECT pg_notify(%s, %s)",
                (control_channel(self.schema), f"rebuild:{name}"),
            )

    def rebuild_requested(self, name: str) -> int | None:
        """Run a rebuild ops asked for, once: None if nobody (still) asks."""
        with self._lock(f"rebuild/{name}", wait=False) as held:
            if not held or not self.registry.claim_rebuild_request(name):
                return None
        return self.rebuild(name)

    def rebuild(self, name: str, progress: Progress | None = None) -> int:
        """Replay the whole history into a fresh version, then swap it in.

        A rebuild that fails leaves the live copy serving and its own failure
        recorded against the unfinished version (status: `rebuild_failure`)."""
        projection = self.projections[name]
        with self._lock(f"rebuild/{name}", wait=False) as held:
            if not held:
                raise RebuildInProgress(f"a rebuild of {name} is already running")
            self.registry.clear_rebuild_request(name)
            registration = self.registry.get(name)
            version = (
                max(registration.live_version, registration.building_version or 0) + 1
            )
            if registration.building_version:  # left over by an interrupted rebuild
                self._drop(projection, registration.building_version)
            self.registry.create_version(projection, version)
            self.registry.set_building(name, version)
            try:
                done = self._fill_and_swap(projection, version, progress)
            except Exception as e:
                failed = _as_failed(name, e)
                self._record_failure(failed, version, rebuild=True)
                raise
            self._drop(projection, registration.live_version)
            log.info("rebuilt %s as version %d from %d events", name, version, done)
            return done

    def _fill_and_swap(
        self, projection: Projection, version: int, progress: Progress | None
    ) -> int:
        name = projection.name
        total = sum(self.upstreams[u].head_position() for u in projection.upstreams)
        done = self._catch_up(
            projection,
            version,
            (lambda n, _: progress(n, total)) if progress else None,
        )
        with self._lock(f"advance/{name}", wait=True):
            done += self._catch_up(projection, version)
            with self.datastore.transaction(commit=True) as curs:
                self.registry.swap(curs, projection, version)
                curs.execute(  # waiters re-read: the live copy changed
                    "SELECT pg_notify(%s, %s)",
                    (self.channel, f"swap:{name}:{version}"),
                )
        return done

    def _drop(self, projection: Projection, version: int) -> None:
        self.registry.drop_version(projection, version)
        self.failures.clear(projection.name, version)

    # --- failures -------------------------------------------------------------

    def _record_failure(
        self, failed: ProjectionFailed, version: int, *, rebuild: bool = False
    ) -> Failure:
        """Keep the failure where every worker and status reader sees it; log it."""
        failure = self.failures.record(
            failed.name,
            version,
            failed.upstream,
            failed.position,
            failed.error,
            self.retry,
        )
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(  # status readers and waiters: something changed
                "SELECT pg_notify(%s, %s)",
                (self.channel, f"failed:{failed.name}:{version}"),
            )
        _log_failure(failed, failure, rebuild, self.retry)
        return failure

    def stalled(self) -> list[str]:
        """Read models whose live copy is stalled (cheap: for readiness checks)."""
        return sorted(
            f.name
            for f in self.failures.at_least(self.retry.stall_after)
            if f.version == self.registry.get(f.name).live_version
        )

    # --- status ---------------------------------------------------------------

    def status(self) -> list[ProjectionStatus]:
        return [self.status_of(name) for name in self.projections]

    def status_of(self, name: str) -> ProjectionStatus:
        projection = self.projections[name]
        registration = self.registry.get(name)
        tracking = self.registry.tracking(projection, registration.live_version)
        positions = tracking.positions()
        upstreams = [
            self._upstream_status(tracking, upstream, positions.get(upstream, 0))
            for upstream in projection.upstreams
        ]
        running = self._is_locked(f"rebuild/{name}")
        failures = self.failures.of(name)
        failure = failures.get(registration.live_version)
        building = registration.building_version
        return ProjectionStatus(
            name,
            registration.live_version,
            registration.building_version,
            running,
            upstreams,
            state=self._state(failure, running, upstreams),
            data_through=_data_through(upstreams),
            failure=failure,
            rebuild_failure=failures.get(building) if building else None,
            rebuild_requested_at=registration.rebuild_requested_at,
        )

    def _state(
        self, failure: Failure | None, running: bool, upstreams: list[UpstreamStatus]
    ) -> str:
        if failure and failure.failures >= self.retry.stall_after:
            return "stalled"
        if running:
            return "rebuilding"
        return "behind" if any(u.lag_events for u in upstreams) else "ok"

    def _upstream_status(
        self, tracking: ProjectionTracking, upstream: str, position: int
    ) -> UpstreamStatus:
        app = self.upstreams[upstream]
        table = Identifier(self.schema, app.events_table)
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT coalesce(max(notification_id), 0) AS head,"
                    " count(*) FILTER (WHERE notification_id > %s) AS lag"
                    " FROM {} WHERE notification_id > %s - 1"
                ).format(table),
                (position, position),
            )
            row = curs.fetchone()
            head = max(row["head"], position) if row else position
            lag = row["lag"] if row else 0
            oldest = app.recorder.select_notifications(
                start=position, limit=1, inclusive_of_start=False
            )
        recorded_at = None
        if oldest:
            try:
                event: Any = app.mapper.to_domain_event(oldest[0])
                recorded_at = event.timestamp
            except Exception:  # noqa: BLE001 - the record a projection is stuck on
                # Undecodable: the last processed event's time is a lower bound.
                recorded_at = tracking.last_event_at(upstream) or _now()
        seconds = (
            max(0.0, (_now() - recorded_at).total_seconds()) if recorded_at else 0.0
        )
        return UpstreamStatus(upstream, position, head, lag, seconds, recorded_at)

    # --- locking ----------------------------------------------------------------

    @contextmanager
    def _lock(self, key: str, *, wait: bool) -> Iterator[bool]:
        """A session advisory lock; the server frees it if this process dies."""
        lock_id = self._lock_id(key)
        with self.datastore.get_connection() as conn:
            if wait:
                conn.execute("SELECT pg_advisory_lock(%s)", (lock_id,))
                held = True
            else:
                row = conn.execute(
                    "SELECT pg_try_advisory_lock(%s) AS held", (lock_id,)
                ).fetchone()
                held = bool(row and row["held"])
            try:
                yield held
            finally:
                if held:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (lock_id,))

    def _is_locked(self, key: str) -> bool:
        lock_id = self._lock_id(key) & 0xFFFFFFFFFFFFFFFF
        with self.datastore.get_connection() as conn:
            row = conn.execute(
                "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory'"
                " AND granted AND objsubid = 1 AND classid = %s::bigint::oid"
                " AND objid = %s::bigint::oid AND database ="
                " (SELECT oid FROM pg_database WHERE datname = current_database())",
                (lock_id >> 32, lock_id & 0xFFFFFFFF),
            ).fetchone()
        return bool(row and row["n"])

    def _lock_id(self, key: str) -> int:
        digest = hashlib.blake2b(f"{self.schema}/{key}".encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big", signed=True)


def _now() -> datetime:
    return datetime.now(UTC)


def _data_through(upstreams: list[UpstreamStatus]) -> datetime:
    """Everything recorded before this instant is in: now, unless behind."""
    pending = [u.next_recorded_at for u in upstreams if u.next_recorded_at]
    return min(pending) if pending else _now()


def _least(*limits: int | None) -> int | None:
    given = [n for n in limits if n is not None]
    return min(given) if given else None


def _as_failed(name: str, error: Exception) -> ProjectionFailed:
    """A failure before any record could be named is kept without a position."""
    if isinstance(error, ProjectionFailed):
        return error
    return ProjectionFailed(name, None, None, describe(error))


def _log_failure(
    failed: ProjectionFailed, failure: Failure, rebuild: bool, retry: RetryPolicy
) -> None:
    """ERROR for a failed rebuild and for a stalled read model; else WARNING."""
    if rebuild:
        message = "rebuild of %s failed, the live copy keeps serving: %s"
    elif failure.failures >= retry.stall_after:
        message = "projection %s is stalled, retrying with backoff: %s"
    else:
        message = "projection %s failed, retrying with backoff: %s"
    loud = rebuild or failure.failures >= retry.stall_after
    level = logging.ERROR if loud else logging.WARNING
    log.log(level, message, failed.name, failed, extra=_fields(failure))


def _fields(failure: Failure) -> dict[str, Any]:
    """Log fields of a failure."""
    return {
        "projection": failure.name,
        "version": failure.version,
        "upstream": failure.upstream,
        "position": failure.position,
        "failures": failure.failures,
        "error": failure.error,
    }

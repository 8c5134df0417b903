"""Where each read model stands: positions, heads, lag, state and failures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg.sql import SQL, Identifier

from application.projecting.failures import Failure
from application.projecting.runtime import Runtime
from application.projecting.tracking import ProjectionTracking


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


class StatusReader:
    """Reports on the read models (for ops, metrics and readiness)."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    def status(self) -> list[ProjectionStatus]:
        return [self.status_of(name) for name in self.rt.projections]

    def status_of(self, name: str) -> ProjectionStatus:
        rt = self.rt
        projection = rt.projections[name]
        registration = rt.registry.get(name)
        tracking = rt.registry.tracking(projection, registration.live_version)
        positions = tracking.positions()
        upstreams = [
            self._upstream_status(tracking, upstream, positions.get(upstream, 0))
            for upstream in projection.upstreams
        ]
        running = rt.locks.is_held(f"rebuild/{name}")
        failures = rt.failures.of(name)
        failure = failures.get(registration.live_version)
        building = registration.building_version
        return ProjectionStatus(
            name,
            registration.live_version,
            building,
            running,
            upstreams,
            state=self._state(failure, running, upstreams),
            data_through=_data_through(upstreams),
            failure=failure,
            rebuild_failure=failures.get(building) if building else None,
            rebuild_requested_at=registration.rebuild_requested_at,
        )

    def stalled(self) -> list[str]:
        """Read models whose live copy is stalled (cheap: for readiness checks)."""
        rt = self.rt
        return sorted(
            f.name
            for f in rt.failures.at_least(rt.retry.stall_after)
            if f.version == rt.registry.get(f.name).live_version
        )

    def _state(
        self, failure: Failure | None, running: bool, upstreams: list[UpstreamStatus]
    ) -> str:
        if failure and failure.failures >= self.rt.retry.stall_after:
            return "stalled"
        if running:
            return "rebuilding"
        return "behind" if any(u.lag_events for u in upstreams) else "ok"

    def _upstream_status(
        self, tracking: ProjectionTracking, upstream: str, position: int
    ) -> UpstreamStatus:
        rt = self.rt
        app = rt.upstreams[upstream]
        table = Identifier(rt.schema, app.events_table)
        with rt.datastore.get_connection() as conn, conn.cursor() as curs:
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


def _now() -> datetime:
    return datetime.now(UTC)


def _data_through(upstreams: list[UpstreamStatus]) -> datetime:
    """Everything recorded before this instant is in: now, unless behind."""
    pending = [u.next_recorded_at for u in upstreams if u.next_recorded_at]
    return min(pending) if pending else _now()

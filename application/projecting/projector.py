"""The projection runtime of one schema, as its callers see it.

Each job is a part of its own over one shared Runtime (runtime.py): advancing
(advancing.py), rebuilds (rebuild.py), status (status.py), read-your-writes
positions (progress.py), locks (locks.py) and failures (failing.py). This class
only puts them together, so workers, the CLI, the API and tests have one door.
"""

from __future__ import annotations

from collections.abc import Mapping

from application.projecting.advancing import Advancer, Progress
from application.projecting.progress import Positions
from application.projecting.rebuild import Rebuilder
from application.projecting.registry import ProjectionRegistry
from application.projecting.runtime import Runtime
from application.projecting.status import ProjectionStatus, StatusReader
from application.settings import Settings
from application.store.event_store import BillingApplication
from projections.base import Projection


class Projector:
    """Advances, rebuilds and reports on the read models of one database schema."""

    def __init__(
        self,
        settings: Settings,
        projections: Mapping[str, Projection],
        upstreams: Mapping[str, BillingApplication],
    ) -> None:
        self.runtime = Runtime.open(settings, projections, upstreams)
        self.advancer = Advancer(self.runtime)
        self.rebuilds = Rebuilder(self.runtime, self.advancer)
        self.statuses = StatusReader(self.runtime)
        self.positions = Positions(self.runtime)

    @property
    def projections(self) -> dict[str, Projection]:
        return self.runtime.projections

    @property
    def upstreams(self) -> dict[str, BillingApplication]:
        return self.runtime.upstreams

    @property
    def registry(self) -> ProjectionRegistry:
        return self.runtime.registry

    def ensure_tables(self) -> None:
        self.runtime.ensure_tables()

    def close(self) -> None:
        self.runtime.close()

    def advance(self, name: str, *, max_events: int | None = None) -> int:
        return self.advancer.advance(name, max_events=max_events)

    def advance_all(self) -> int:
        return self.advancer.advance_all()

    def request_rebuild(self, name: str) -> None:
        self.rebuilds.request_rebuild(name)

    def rebuild_requested(self, name: str) -> int | None:
        return self.rebuilds.rebuild_requested(name)

    def rebuild(self, name: str, progress: Progress | None = None) -> int:
        return self.rebuilds.rebuild(name, progress)

    def status(self) -> list[ProjectionStatus]:
        return self.statuses.status()

    def status_of(self, name: str) -> ProjectionStatus:
        return self.statuses.status_of(name)

    def stalled(self) -> list[str]:
        return self.statuses.stalled()

    def position_of(self, name: str, upstream: str) -> int:
        return self.positions.position_of(name, upstream)

    def wait_for(self, name: str, upstream: str, position: int, timeout: float) -> bool:
        return self.positions.wait_for(name, upstream, position, timeout)

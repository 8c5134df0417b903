"""Runs the projection daemon inside each Dramatiq worker process."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from application.projection_daemon import ProjectionDaemon
from workers.broker import settings


class ProjectorService(Middleware):
    """Starts the daemon when a worker process boots; stops it on shutdown."""

    def __init__(self) -> None:
        self.daemon: ProjectionDaemon | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        from workers.actors import rebuild_projection
        from workers.runtime import write_side

        self.daemon = ProjectionDaemon(
            write_side(),
            tick_seconds=settings.projection_tick_seconds,
            on_rebuild_requested=lambda name: rebuild_projection.send(name),
        )
        self.daemon.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self.daemon:
            self.daemon.stop()

"""Runs the projection daemon inside each Dramatiq worker process."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from application.clock import utc_now
from application.projecting.daemon import ProjectionDaemon
from application.time_passing import Ticker
from workers.broker import settings
from workers.runtime import write_side


class ProjectorService(Middleware):
    """Starts the daemon when a worker process boots; stops it on shutdown."""

    def __init__(self, on_rebuild_requested: Callable[[str], Any]) -> None:
        self.on_rebuild_requested = on_rebuild_requested  # sends the rebuild actor
        self.daemon: ProjectionDaemon | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        ticker = Ticker(
            write_side().clock,
            utc_now,
            timedelta(seconds=settings.clock_tick_seconds),
        )
        self.daemon = ProjectionDaemon(
            write_side().projector,
            tick_seconds=settings.projection_tick_seconds,
            on_rebuild_requested=self.on_rebuild_requested,
            on_cycle=ticker.tick_if_due,
        )
        self.daemon.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self.daemon:
            self.daemon.stop()

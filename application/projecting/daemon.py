"""Keeps every read model caught up: LISTEN to the histories, advance on append.

eventsourcing NOTIFYs on every append to an events table; this thread wakes on
those and wakes one lane per read model, which advances it at once; a periodic
tick catches anything a lost notification would miss. Each read model has its
own lane so a slow one (the forecast re-projects whole periods) never holds up
another's freshness. Run it in every worker process: the projector's advisory
lock lets one advance each projection, and tracking makes overlap harmless.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg
from psycopg.sql import SQL, Identifier

from application.projecting.failing import ProjectionFailed
from application.projecting.progress import control_channel
from application.projecting.projector import Projector

log = logging.getLogger(__name__)


class ProjectionDaemon:
    """A background thread that advances projections and spots rebuild requests."""

    RESEND_REBUILD_AFTER = 60.0

    def __init__(
        self,
        projector: Projector,
        *,
        tick_seconds: float,
        on_rebuild_requested: Callable[[str], None],
        on_cycle: Callable[[], object] | None = None,
    ) -> None:
        self.projector = projector
        self.on_cycle = on_cycle  # e.g. record that time has passed
        self.settings = projector.runtime.settings
        self.tick_seconds = tick_seconds
        self.on_rebuild_requested = on_rebuild_requested
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rebuilds_sent: dict[str, float] = {}
        self._lanes = {name: _Lane(self, name) for name in projector.projections}

    def start(self) -> None:
        for lane in self._lanes.values():
            lane.start()
        self._thread = threading.Thread(target=self._run, name="projector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        for lane in self._lanes.values():
            lane.wake.set()
        if self._thread:
            self._thread.join(timeout=30)
        for lane in self._lanes.values():
            lane.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen_and_advance()
            except Exception:
                log.exception("projection daemon failed; restarting it")
                self._stop.wait(2.0)

    def _listen_and_advance(self) -> None:
        upstreams = self.projector.runtime.upstreams.values()
        channels = [app.events_table for app in upstreams]
        channels.append(control_channel(self.settings.db_schema))
        with psycopg.connect(self.settings.conninfo(), autocommit=True) as conn:
            for channel in channels:
                conn.execute(SQL("LISTEN {}").format(Identifier(channel)))
            while not self._stop.is_set():
                self._cycle()
                notified = False
                for _ in conn.notifies(timeout=self.tick_seconds, stop_after=1):
                    notified = True
                if notified:  # drain the burst, so one cycle serves many appends
                    for _ in conn.notifies(timeout=0.001):
                        pass

    def _cycle(self) -> None:
        # Rebuild requests first: a read model that fails to advance must not
        # keep its own rebuild from being started.
        projector = self.projector
        if self.on_cycle:
            self.on_cycle()
        now = time.monotonic()
        for name in projector.registry.requested_rebuilds():
            if now - self._rebuilds_sent.get(name, -1e9) > self.RESEND_REBUILD_AFTER:
                self.on_rebuild_requested(name)
                self._rebuilds_sent[name] = now
        for lane in self._lanes.values():
            lane.wake.set()


class _Lane(threading.Thread):
    """Advances one read model whenever woken (or every tick_seconds)."""

    def __init__(self, daemon: ProjectionDaemon, name: str) -> None:
        super().__init__(name=f"projector-{name}", daemon=True)
        self.owner = daemon
        self.projection = name
        self.wake = threading.Event()

    def run(self) -> None:
        owner = self.owner
        while not owner._stop.is_set():
            self.wake.wait(owner.tick_seconds)
            self.wake.clear()
            if owner._stop.is_set():
                return
            try:
                owner.projector.advance(self.projection)
            except ProjectionFailed:
                continue  # recorded and logged; retried when due
            except Exception:
                log.exception("advancing %s failed; trying again", self.projection)
                owner._stop.wait(2.0)

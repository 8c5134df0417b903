"""Rebuilding a read model: replay the whole history into a fresh version while
the live one keeps answering, catch up under the advance lock, swap atomically.

An interrupted rebuild leaves the live copy untouched and can simply be started
again; a failed one is recorded against its unfinished version.
"""

from __future__ import annotations

import logging

from application.projecting.advancing import Advancer, Progress
from application.projecting.failing import as_failed, record_failure
from application.projecting.progress import control_channel
from application.projecting.runtime import Runtime
from projections.base import Projection

log = logging.getLogger("application.projecting")


class RebuildInProgress(RuntimeError):
    """A rebuild of this projection is already running somewhere."""


class Rebuilder:
    """Runs rebuilds, and passes ops' requests for them on to the workers."""

    def __init__(self, runtime: Runtime, advancer: Advancer) -> None:
        self.rt = runtime
        self.advancer = advancer

    def request_rebuild(self, name: str) -> None:
        """Ask the workers to rebuild `name` (they watch the registry)."""
        rt = self.rt
        rt.registry.get(name)  # raises LookupError for an unknown name
        rt.registry.request_rebuild(name)
        with rt.datastore.transaction(commit=True) as curs:
            curs.execute(
                "SELECT pg_notify(%s, %s)",
                (control_channel(rt.schema), f"rebuild:{name}"),
            )

    def rebuild_requested(self, name: str) -> int | None:
        """Run a rebuild ops asked for, once: None if nobody (still) asks."""
        with self.rt.locks.hold(f"rebuild/{name}", wait=False) as held:
            if not held or not self.rt.registry.claim_rebuild_request(name):
                return None
        return self.rebuild(name)

    def rebuild(self, name: str, progress: Progress | None = None) -> int:
        """Replay the whole history into a fresh version, then swap it in.

        A rebuild that fails leaves the live copy serving and its own failure
        recorded against the unfinished version (status: `rebuild_failure`)."""
        rt = self.rt
        projection = rt.projections[name]
        with rt.locks.hold(f"rebuild/{name}", wait=False) as held:
            if not held:
                raise RebuildInProgress(f"a rebuild of {name} is already running")
            rt.registry.clear_rebuild_request(name)
            registration = rt.registry.get(name)
            version = (
                max(registration.live_version, registration.building_version or 0) + 1
            )
            if registration.building_version:  # left over by an interrupted rebuild
                self._drop(projection, registration.building_version)
            rt.registry.create_version(projection, version)
            rt.registry.set_building(name, version)
            try:
                done = self._fill_and_swap(projection, version, progress)
            except Exception as e:
                record_failure(rt, as_failed(name, e), version, rebuild=True)
                raise
            self._drop(projection, registration.live_version)
            log.info("rebuilt %s as version %d from %d events", name, version, done)
            return done

    def _fill_and_swap(
        self, projection: Projection, version: int, progress: Progress | None
    ) -> int:
        rt, name = self.rt, projection.name
        total = sum(rt.upstreams[u].head_position() for u in projection.upstreams)
        done = self.advancer.catch_up(
            projection,
            version,
            (lambda n, _: progress(n, total)) if progress else None,
        )
        with rt.locks.hold(f"advance/{name}", wait=True):
            done += self.advancer.catch_up(projection, version)
            with rt.datastore.transaction(commit=True) as curs:
                rt.registry.swap(curs, projection, version)
                rt.notify(curs, f"swap:{name}:{version}")  # waiters re-read
        return done

    def _drop(self, projection: Projection, version: int) -> None:
        self.rt.registry.drop_version(projection, version)
        self.rt.failures.clear(projection.name, version)

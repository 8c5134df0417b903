"""Watching projections commit: the NOTIFY every committed batch sends."""

from __future__ import annotations

import threading
import time
from typing import NamedTuple

import psycopg
from psycopg.sql import SQL, Identifier

from application.projecting.progress import progress_channel
from application.settings import Settings


class Committed(NamedTuple):
    """One committed projection batch, as seen by this process."""

    at: float  # time.perf_counter() when the notification arrived
    name: str
    version: int
    upstream: str
    position: int


class ProgressListener:
    """LISTENs on the schema's progress channel in a thread, recording each batch."""

    def __init__(self, settings: Settings) -> None:
        self.conninfo = settings.conninfo(application_name="bench-listener")
        self.channel = progress_channel(settings.db_schema)
        self.seen: list[Committed] = []
        self._changed = threading.Condition()
        self._listening = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProgressListener:
        self._thread.start()
        if not self._listening.wait(10):
            raise TimeoutError("could not LISTEN")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(SQL("LISTEN {}").format(Identifier(self.channel)))
            self._listening.set()
            while not self._stop.is_set():
                for note in conn.notifies(timeout=0.2):
                    at = time.perf_counter()
                    parts = note.payload.split(":")
                    if len(parts) != 4:  # e.g. "swap:<name>:<version>"
                        continue
                    name, version, upstream, position = parts
                    with self._changed:
                        self.seen.append(
                            Committed(at, name, int(version), upstream, int(position))
                        )
                        self._changed.notify_all()

    def times(self, name: str, version: int) -> list[float]:
        """When each batch of that version of `name` was committed."""
        return [c.at for c in self.seen if c.name == name and c.version == version]

    def positions(self, name: str, upstream: str) -> list[tuple[float, int]]:
        """(arrival time, position) of each batch of `name` from `upstream`."""
        return [
            (c.at, c.position)
            for c in self.seen
            if c.name == name and c.upstream == upstream
        ]

    def wait_for(self, name: str, upstream: str, position: int, timeout: float) -> bool:
        """Block until `name` reported `upstream` at `position` or beyond."""

        def reached() -> bool:
            return any(p >= position for _, p in self.positions(name, upstream))

        with self._changed:
            return self._changed.wait_for(reached, timeout)

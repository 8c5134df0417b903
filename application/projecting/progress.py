"""Read-your-writes: wait until a read model has reached a position.

Projections NOTIFY after every committed batch; one LISTEN connection per
process turns those into a wake-up for every waiting request. No polling
interval, no sleeping: a waiter re-reads the position when something moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import psycopg
from psycopg import AsyncConnection
from psycopg.sql import SQL, Identifier

from projections.base import tracking_view

if TYPE_CHECKING:
    from application.projecting.runtime import Runtime

log = logging.getLogger(__name__)


# The event stores a read can wait for (`min_positions`), by application name.
UPSTREAMS = (
    "metering",
    "tenant_settings",
    "price_book",
    "audit",
    "clock",
    "anomaly_reviews",
)


def parse_positions(text: str) -> dict[str, int]:
    """`metering:120,tenant_settings:4` -> {"metering": 120, "tenant_settings": 4};
    raises ValueError naming what is wrong."""
    positions: dict[str, int] = {}
    for part in text.split(","):
        name, _, number = part.strip().partition(":")
        if name not in UPSTREAMS:
            raise ValueError(f"unknown upstream {name!r}; use {', '.join(UPSTREAMS)}")
        if not (number.isascii() and number.isdigit()) or len(number) > 18:
            raise ValueError(f"{name}: position must be a non-negative integer")
        positions[name] = max(positions.get(name, 0), int(number))
    return positions


def progress_channel(schema: str) -> str:
    """NOTIFY channel of committed projection batches (read-your-writes waits)."""
    return f"{schema}_projection_progress"


def control_channel(schema: str) -> str:
    """NOTIFY channel the workers listen to for rebuild requests."""
    return f"{schema}_projection_control"


class Positions:
    """How far the live copy of a read model has got, and waiting for it (sync)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def position_of(self, name: str, upstream: str) -> int:
        """How far the live version of `name` has processed `upstream`."""
        rt = self.runtime
        view = Identifier(rt.schema, tracking_view(rt.projections[name]))
        with rt.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT notification_id FROM {} WHERE application_name = %s"
                ).format(view),
                (upstream,),
            )
            row = curs.fetchone()
        return int(row["notification_id"]) if row else 0

    def wait_for(self, name: str, upstream: str, position: int, timeout: float) -> bool:
        """Block until `name` has processed `upstream` up to `position`, or time out.

        Woken by the NOTIFY each committed batch sends, so no polling interval.
        """
        deadline = time.monotonic() + timeout
        conninfo = self.runtime.settings.conninfo()
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(SQL("LISTEN {}").format(Identifier(self.runtime.channel)))
            while self.position_of(name, upstream) < position:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                for _ in conn.notifies(timeout=remaining, stop_after=1):
                    pass
        return True


class PositionWatcher:
    """Wakes waiters whenever any projection commits a batch."""

    def __init__(self, conninfo: str, channel: str) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self._moved = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="position-watcher")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def wait_until(
        self,
        read_positions: Callable[[], Awaitable[Mapping[str, int]]],
        wanted: Mapping[str, int] | None,
        timeout: float,
        *,
        followed: Sequence[str] | None = None,
    ) -> bool:
        """Return True once every upstream in `wanted` has reached its position in
        `read_positions()`, or False at the timeout (then the caller answers with
        what it has, and its positions say so). Upstreams outside `followed`
        (those the read model does not follow) cannot change its answer and are
        not waited for."""
        missing = await self.unreached(
            read_positions, wanted, timeout, followed=followed
        )
        return not missing

    async def unreached(
        self,
        read_positions: Callable[[], Awaitable[Mapping[str, int]]],
        wanted: Mapping[str, int] | None,
        timeout: float,
        *,
        followed: Sequence[str] | None = None,
    ) -> dict[str, int]:
        """Wait as `wait_until` does; the positions asked for that were still
        not reached at the timeout (empty once every one was)."""
        wanted = {
            name: position
            for name, position in (wanted or {}).items()
            if position > 0 and (followed is None or name in followed)
        }
        if not wanted:
            return {}
        deadline = time.monotonic() + timeout
        while True:
            moved = self._moved  # taken before reading, so no wake-up is missed
            current = await read_positions()
            missing = {n: p for n, p in wanted.items() if current.get(n, 0) < p}
            if not missing:
                return {}
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return missing
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(moved.wait(), remaining)

    async def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                conn = await AsyncConnection.connect(self.conninfo, autocommit=True)
                async with conn:
                    await conn.execute(
                        SQL("LISTEN {}").format(Identifier(self.channel))
                    )
                    self._signal()  # anything may have moved while we were away
                    async for _ in conn.notifies():
                        self._signal()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - reconnect; waiters time out meanwhile
                log.warning("position watcher reconnecting: %s", type(e).__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 1.0)

    def _signal(self) -> None:
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

"""Bounded waits for PostgreSQL.

While the database is unreachable a request fails after about
`db_pool_timeout_seconds` (the API answers 503 with Retry-After), never after
minutes; and once it is back, every pool reconnects by itself within seconds.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from eventsourcing.persistence import InterfaceError, OperationalError
from psycopg_pool import ConnectionPool, PoolTimeout

from application.settings import Settings

RECONNECT_GIVE_UP_SECONDS = 5.0
"""How long a pool retries (backing off from 1 s, doubling) to replace a lost
connection before it gives up; the next request that needs one starts afresh.
With psycopg_pool's default, 5 minutes, the backoff keeps doubling through the
outage: after a 40 s outage the API came back 23 s after PostgreSQL did
(measured; about 1 s with this bound)."""

RETRY_PAUSE_SECONDS = 0.1

F = TypeVar("F", bound=Callable[..., Any])


def bound_pool(pool: ConnectionPool[Any], settings: Settings) -> None:
    """Apply the settings to a pool eventsourcing built (before it opens). The
    API's own async pools take the same values as arguments (bootstrap.py)."""
    if not isinstance(pool.kwargs, dict):  # pragma: no cover - eventsourcing's shape
        raise TypeError("expected the pool's connection arguments as a dict")
    pool.kwargs["connect_timeout"] = settings.db_connect_timeout_seconds
    pool.timeout = settings.db_pool_timeout_seconds
    pool.reconnect_timeout = RECONNECT_GIVE_UP_SECONDS


def waited_for_pool(error: BaseException) -> bool:
    """Whether the call failed because no connection came within the pool wait."""
    while error is not None:
        if isinstance(error, PoolTimeout):
            return True
        error = error.__cause__  # type: ignore[assignment]
    return False


def retry_within_pool_wait(method: F) -> F:
    """Replace eventsourcing's retry of a recorder method (10 attempts, each of
    which may wait out the pool: 10 x 30 s by default) with one bounded in time:
    a connection that broke (a restarted server) fails fast and is retried on
    another, but never after a wait for the pool timed out, and never for
    longer than the pool wait itself."""
    undecorated = getattr(method, "__wrapped__", method)

    @functools.wraps(undecorated)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + self.datastore.pool.timeout
        while True:
            try:
                return undecorated(self, *args, **kwargs)
            except (InterfaceError, OperationalError) as e:
                remaining = deadline - time.monotonic()
                if waited_for_pool(e) or remaining <= 0:
                    raise
                time.sleep(min(RETRY_PAUSE_SECONDS, remaining))

    return cast(F, call)

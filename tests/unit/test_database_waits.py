"""Waits for PostgreSQL are bounded: pools, and eventsourcing's retries."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg_pool import ConnectionPool, PoolTimeout

from application.settings import Settings
from application.store.event_store import BillingRecorder
from application.store.waits import (
    RECONNECT_GIVE_UP_SECONDS,
    bound_pool,
    retry_within_pool_wait,
)

SETTINGS = Settings(
    db_connect_timeout_seconds=3,
    db_pool_timeout_seconds=0.3,
    db_statement_timeout_seconds=4.0,
)


def test_a_pool_built_by_eventsourcing_gets_the_bounds_before_it_opens() -> None:
    pool: ConnectionPool[Any] = ConnectionPool(kwargs={"dbname": "x"}, open=False)

    bound_pool(pool, SETTINGS)

    assert pool.kwargs == {"dbname": "x", "connect_timeout": 3}
    assert pool.timeout == 0.3
    assert pool.reconnect_timeout == RECONNECT_GIVE_UP_SECONDS


class FakeRecorder:
    """A recorder method as eventsourcing decorates it (10 attempts)."""

    def __init__(self, *failures: Exception) -> None:
        self.datastore = SimpleNamespace(pool=SimpleNamespace(timeout=0.3))
        self.failures = list(failures)
        self.calls = 0

    @retry((OperationalError,), max_attempts=10, wait=0.2)
    def select(self, value: int) -> int:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return value


bounded_select = retry_within_pool_wait(FakeRecorder.select)


def pool_timed_out() -> OperationalError:
    error = OperationalError("couldn't get a connection after 2.00 sec")
    error.__cause__ = PoolTimeout("couldn't get a connection after 2.00 sec")
    return error


def test_a_call_that_waited_out_the_pool_is_not_tried_again() -> None:
    recorder = FakeRecorder(pool_timed_out(), pool_timed_out())

    with pytest.raises(OperationalError):
        bounded_select(recorder, 1)

    assert recorder.calls == 1


def test_a_connection_that_broke_is_retried_on_another() -> None:
    recorder = FakeRecorder(OperationalError("server closed the connection"))

    assert bounded_select(recorder, 7) == 7
    assert recorder.calls == 2


def test_fast_failures_are_retried_only_within_the_pool_wait() -> None:
    recorder = FakeRecorder(*[OperationalError("broken")] * 100)

    with pytest.raises(OperationalError):
        bounded_select(recorder, 1)

    # 0.3 s of retries, 0.1 s apart (eventsourcing alone: 10 attempts, 0.2 s apart).
    assert 2 <= recorder.calls <= 5


@pytest.mark.parametrize(
    "name",
    ["insert_events", "select_events", "select_notifications", "max_notification_id"],
)
def test_our_recorder_drops_eventsourcings_own_retries(name: str) -> None:
    ours = getattr(BillingRecorder, name)
    theirs = getattr(PostgresApplicationRecorder, name)

    assert ours is not theirs
    assert ours.__wrapped__ is theirs.__wrapped__

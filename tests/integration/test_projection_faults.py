"""Real worker processes: killed mid catch-up, or two at once, the table is exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from application.bootstrap import WriteSide
from application.projecting.progress import progress_channel
from application.settings import Settings
from tests.harness import harness_for
from tests.oracle import Oracle
from tests.support import Process, env_for, event

pytestmark = pytest.mark.timeout(300)
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
EVENTS = 60_000


@pytest.fixture
def backlog(write_side: WriteSide) -> Oracle:
    """A history the worker has not seen yet, and what the table must become."""
    oracle = Oracle()
    with harness_for(write_side, NOW) as h:
        for start in range(0, EVENTS, 5000):
            batch = [
                event(
                    f"e{i}",
                    quantity=f"{i % 13}.25",
                    workspace=f"ws_{i % 5}",
                    area=("compute", "api")[i % 2],
                    at=NOW - timedelta(minutes=i),
                )
                for i in range(start, start + 5000)
            ]
            h.send("t_acme", batch, at=NOW)
            for e in batch:
                oracle.record("t_acme", e, NOW)
    return oracle


def worker(settings: Settings, processes: int = 1) -> Process:
    env = env_for(settings, BILLING_PROJECTION_BATCH_SIZE="1000")
    process = Process(["worker", "--processes", str(processes), "--threads", "1"], env)
    process.wait_for_output("Worker process is ready for action", count=processes)
    return process


def wait_for_progress(
    settings: Settings, *, at_least: int, caught_up_to: int | None = None
) -> None:
    """Block on projection NOTIFYs until the daily projection passes a position."""
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        conn.execute(f'LISTEN "{progress_channel(settings.db_schema)}"')
        target = caught_up_to or at_least
        for _ in range(100_000):
            row = conn.execute(
                "SELECT coalesce(max(notification_id), 0)"
                " FROM billing_usage_daily_tracking"
                " WHERE application_name = 'metering'"
            ).fetchone()
            if row and row[0] >= target:
                return
            for _ in conn.notifies(timeout=60, stop_after=1):
                pass
    raise AssertionError("projection made no progress")


def daily(settings: Settings) -> dict:  # type: ignore[type-arg]
    from tests.oracle import read_model

    with psycopg.connect(settings.conninfo()) as conn:
        return read_model(conn)


def test_a_worker_killed_mid_catch_up_leaves_an_exact_table_after_restart(
    settings: Settings, backlog: Oracle
) -> None:
    first = worker(settings)
    try:
        wait_for_progress(settings, at_least=5_000)
    finally:
        first.stop(kill=True)  # SIGKILL, mid catch-up
    partial = daily(settings)
    assert sum(r[2] for r in partial.values()) < EVENTS  # really stopped half-way

    second = worker(settings)
    try:
        wait_for_progress(settings, at_least=EVENTS, caught_up_to=EVENTS)
    finally:
        second.stop()

    assert daily(settings) == backlog.daily()


def test_two_worker_processes_give_the_same_table_as_one(
    settings: Settings, backlog: Oracle, write_side: WriteSide
) -> None:
    both = worker(settings, processes=2)
    try:
        wait_for_progress(settings, at_least=EVENTS, caught_up_to=EVENTS)
    finally:
        both.stop()
    with_two = daily(settings)

    write_side.projector.rebuild("billing_usage_daily")  # one runner, from scratch

    assert with_two == daily(settings) == backlog.daily()

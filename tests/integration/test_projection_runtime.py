"""The projection runtime: exactly once, one runner at a time, rebuild and swap."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from application.bootstrap import WriteSide, bootstrap
from application.projecting.advancing import UpstreamRun
from application.projecting.reading import prepare
from application.projecting.rebuild import RebuildInProgress
from tests.harness import Harness, harness_for
from tests.support import event

T = "t_acme"
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


@pytest.fixture
def h(write_side: WriteSide) -> Iterator[Harness]:
    with harness_for(write_side, NOW) as harness:
        yield harness


def fill(h: Harness, n: int, batch: int = 500) -> None:
    for start in range(0, n, batch):
        h.send(
            T,
            [
                event(
                    f"e{i}",
                    quantity="1.5",
                    workspace=f"ws_{i % 7}",
                    at=NOW - timedelta(minutes=i),
                )
                for i in range(start, min(n, start + batch))
            ],
            at=NOW,
        )


def totals(write_side: WriteSide) -> tuple[Any, ...]:
    with psycopg.connect(write_side.settings.conninfo()) as conn:
        row = conn.execute(
            "SELECT count(*), sum(quantity), sum(source_event_count)"
            " FROM billing_usage_daily"
        ).fetchone()
    assert row is not None
    return tuple(row)


def test_two_runners_at_once_process_each_event_once(
    h: Harness, write_side: WriteSide
) -> None:
    fill(h, 3000)
    results: list[int] = []
    go = threading.Barrier(2)

    def run() -> None:
        go.wait()
        results.append(write_side.projector.advance("billing_usage_daily"))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rest = write_side.projector.advance("billing_usage_daily")

    assert totals(write_side)[1:] == (4500, 3000)
    assert sum(results) + rest == 3000  # each event counted by exactly one run


def test_a_replayed_batch_is_refused_and_changes_nothing(
    h: Harness, write_side: WriteSide
) -> None:
    from eventsourcing.persistence import IntegrityError

    fill(h, 10)
    h.project()
    before = totals(write_side)
    projector = write_side.projector
    projection = projector.projections["billing_usage_daily"]
    tracking = projector.registry.tracking(projection, 1)
    rt, metering = projector.runtime, write_side.metering
    _, _, changes, recorded = prepare(rt, projection, metering, 0, 10, 10)
    run = UpstreamRun(rt, projection, 1, tracking, metering)

    with pytest.raises(IntegrityError):
        run.write(10, changes, recorded)

    assert totals(write_side) == before


def test_status_reports_position_head_and_lag(
    h: Harness, write_side: WriteSide
) -> None:
    fill(h, 40)

    behind = {s.name: s for s in write_side.projector.status()}["billing_usage_daily"]
    h.project()
    caught_up = {s.name: s for s in write_side.projector.status()}[
        "billing_usage_daily"
    ]

    metering = {u.upstream: u for u in behind.upstreams}["metering"]
    assert (metering.position, metering.head, metering.lag_events) == (0, 40, 40)
    assert metering.lag_seconds > 0
    metering = {u.upstream: u for u in caught_up.upstreams}["metering"]
    assert (
        metering.position,
        metering.head,
        metering.lag_events,
        metering.lag_seconds,
    ) == (40, 40, 0, 0)


def test_a_rebuild_swaps_in_an_identical_copy_and_drops_the_old(
    h: Harness, write_side: WriteSide
) -> None:
    fill(h, 1200)
    h.project()
    before = h.rows()

    replayed = write_side.projector.rebuild("billing_usage_daily")

    assert replayed == 1200 + 0  # tenant_settings has no events here
    assert h.rows() == before
    status = {s.name: s for s in write_side.projector.status()}["billing_usage_daily"]
    assert (status.live_version, status.building_version) == (2, None)
    with psycopg.connect(write_side.settings.conninfo()) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                " AND tablename LIKE 'billing_usage_daily_v%%'"
            ).fetchall()
        }
    assert tables == {"billing_usage_daily_v2", "billing_usage_daily_v2_tracking"}


def test_the_live_copy_answers_correct_totals_throughout_a_rebuild(
    h: Harness, write_side: WriteSide
) -> None:
    fill(h, 3000)
    h.project()
    expected = totals(write_side)
    seen: list[tuple[Any, ...]] = []
    small_batches = bootstrap(
        write_side.settings.with_changes(projection_batch_size=200)
    )
    try:

        def check_live(done: int, total: int) -> None:  # runs between rebuild batches
            seen.append(totals(write_side))

        small_batches.projector.rebuild("billing_usage_daily", progress=check_live)
    finally:
        small_batches.close()

    assert len(seen) >= 10  # the live copy was read mid-rebuild, many times
    assert set(seen) == {expected}
    assert totals(write_side) == expected


def test_an_interrupted_rebuild_leaves_the_live_copy_and_can_start_again(
    h: Harness, write_side: WriteSide
) -> None:
    fill(h, 1000)
    h.project()
    expected = h.rows()
    projector = write_side.projector

    class Interrupted(Exception):
        pass

    def crash(done: int, total: int) -> None:
        raise Interrupted

    other = bootstrap(write_side.settings.with_changes(projection_batch_size=100))
    try:
        with pytest.raises(Interrupted):
            other.projector.rebuild("billing_usage_daily", progress=crash)
    finally:
        other.close()

    status = {s.name: s for s in projector.status()}["billing_usage_daily"]
    assert (status.live_version, status.building_version) == (1, 2)
    assert h.rows() == expected
    projector.rebuild("billing_usage_daily")
    status = {s.name: s for s in projector.status()}["billing_usage_daily"]
    assert (status.live_version, status.building_version) == (3, None)
    assert h.rows() == expected


def test_only_one_rebuild_runs_at_a_time(h: Harness, write_side: WriteSide) -> None:
    fill(h, 500)
    projector = write_side.projector
    refused: list[Exception] = []

    def second_rebuild(done: int, total: int) -> None:
        if not refused:
            try:
                projector.rebuild("billing_usage_daily")
            except RebuildInProgress as e:
                refused.append(e)

    other = bootstrap(write_side.settings.with_changes(projection_batch_size=100))
    try:
        other.projector.rebuild("billing_usage_daily", progress=second_rebuild)
    finally:
        other.close()

    assert refused
    assert "already running" in str(refused[0])

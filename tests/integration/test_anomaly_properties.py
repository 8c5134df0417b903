"""Invariants of billing_anomalies over arbitrary histories, in PostgreSQL.

Each history starts from ten weeks of ordinary usage in two workspaces (so
there is a baseline to judge by), then applies arbitrary steps: spikes and
drops, late usage, voids and amendments, calendar changes, acknowledgements,
ticks and partial catch-ups in random batch sizes. A rebuild equals the
incremental flags and sends nothing; restating one series changes only that
series' flags, and a flag cleared by a restatement says why.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from application.bootstrap import WriteSide
from application.settings import Settings
from tests.harness import Harness, harness_for
from tests.integration.test_forecast_properties import (
    REFUSED,
    anomaly_rows,
    deliverable_notices,
)
from tests.integration.test_projection_properties import fresh_store

pytestmark = pytest.mark.timeout(900)

START = datetime(2026, 8, 3, tzinfo=UTC)
BASE_DAYS = 70
ANOMALIES = "billing_anomalies"
WORKSPACES = ["ws_a", "ws_b"]

steps = st.one_of(
    st.tuples(
        st.just("usage"),
        st.sampled_from(WORKSPACES),
        st.integers(0, 12),  # days after the base history
        st.sampled_from([0, 10, 100, 300, 900]),
        st.integers(0, 72),  # hours late
    ),
    st.tuples(st.just("void"), st.integers(0, BASE_DAYS + 12)),
    st.tuples(st.just("amend"), st.integers(0, BASE_DAYS + 12), st.integers(0, 900)),
    st.tuples(
        st.just("calendar"),
        st.sampled_from(["UTC", "Asia/Kolkata", "America/New_York"]),
        st.integers(1, 28),
    ),
    st.just(("ack",)),
    st.tuples(st.just("tick"), st.integers(1, 48)),
    st.tuples(st.just("project"), st.integers(1, 20)),
)


def base(h: Harness, unusual: dict[tuple[str, int], int] | None = None) -> None:
    """Ten weeks of ordinary usage (but the days in `unusual`), sent on time."""
    for i in range(BASE_DAYS):
        day = START + timedelta(days=i, hours=12)
        events = [
            _event(f"{ws}-{i}", ws, day, (unusual or {}).get((ws, i), usual(i)))
            for ws in WORKSPACES
        ]
        h.send("t_a", events, at=day + timedelta(hours=1))


def usual(i: int) -> int:
    return 40 if (START + timedelta(days=i)).weekday() >= 5 else 100 + i % 9


def _event(event_id: str, ws: str, at: datetime, quantity: int) -> dict[str, str]:
    return {
        "id": event_id,
        "workspace_id": ws,
        "product_area": "compute",
        "unit": "vcpu_hour",
        "quantity": str(quantity),
        "timestamp": at.isoformat(),
    }


def play(h: Harness, history: list[Any]) -> None:
    ws = h.write_side
    now = START + timedelta(days=BASE_DAYS)
    for n, step in enumerate(history):
        kind, *args = step
        now += timedelta(hours=3)
        if kind == "usage":
            workspace, day, quantity, late = args
            at = START + timedelta(days=BASE_DAYS + day, hours=10)
            now = max(now, at + timedelta(hours=late))
            with suppress(*REFUSED):
                h.send("t_a", [_event(f"x{n}", workspace, at, quantity)], at=now)
        elif kind == "void":
            with suppress(*REFUSED):
                h.void("t_a", f"ws_a-{args[0]}", at=now)
        elif kind == "amend":
            with suppress(*REFUSED):
                h.amend("t_a", f"ws_b-{args[0]}", Decimal(args[1]), at=now)
        elif kind == "calendar":
            h.set_calendar("t_a", args[0], args[1], 72, at=now)
        elif kind == "ack":
            flag = first_flag(ws)
            if flag:
                ws.reviews.acknowledge(
                    "t_a", flag[0], flag[1], "seen", actor_id="admin", now=now
                )
        elif kind == "tick":
            now += timedelta(hours=args[0])
            ws.clock.record_tick(now)
        else:
            ws.projector.advance(ANOMALIES, max_events=args[0])


def first_flag(write_side: WriteSide) -> Any:
    with psycopg.connect(write_side.settings.conninfo()) as conn:
        return conn.execute(
            "SELECT id, period_start FROM billing_anomalies_flags ORDER BY id LIMIT 1"
        ).fetchone()


@hyp_settings(
    max_examples=18,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    history=st.lists(steps, min_size=1, max_size=25),
    batch_size=st.integers(1, 60),
)
def test_a_rebuild_equals_the_incremental_flags_and_sends_nothing(
    settings: Settings, history: list[Any], batch_size: int
) -> None:
    with (
        fresh_store(settings, batch_size) as write_side,
        harness_for(write_side, START) as h,
    ):
        base(h)
        play(h, history)
        write_side.projector.advance(ANOMALIES)
        flags = anomaly_rows(write_side.settings)
        sent = deliverable_notices(write_side.settings)

        write_side.projector.rebuild(ANOMALIES)

        assert anomaly_rows(write_side.settings) == flags
        assert deliverable_notices(write_side.settings) == sent
    kinds = sorted({f[10] for f in flags[0]})
    event(f"kinds: {kinds}")
    event(f"statuses: {sorted({f[17] for f in flags[0]})}")


@hyp_settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    day=st.integers(BASE_DAYS - 20, BASE_DAYS - 1),
    quantity=st.sampled_from([0, 5, 400, 2000]),
)
def test_restating_one_series_changes_only_its_flags_and_a_cleared_one_says_why(
    settings: Settings, day: int, quantity: int
) -> None:
    with fresh_store(settings, 500) as write_side, harness_for(write_side, START) as h:
        # ws_b's day is unusual as first reported, then restated back to usual.
        base(h, {("ws_b", day): quantity})
        end = START + timedelta(days=BASE_DAYS)
        write_side.clock.record_tick(end)
        write_side.projector.advance(ANOMALIES)
        before = {f[3]: f for f in anomaly_rows(write_side.settings)[0]}
        h.amend("t_a", f"ws_b-{day}", Decimal(usual(day)), at=end)
        write_side.projector.advance(ANOMALIES)
        after = {f[3]: f for f in anomaly_rows(write_side.settings)[0]}

    untouched = {k: f for k, f in before.items() if f[4] != "ws_b"}
    assert {k: f for k, f in after.items() if f[4] != "ws_b"} == untouched
    for flag_id, flag in after.items():
        if flag[4] == "ws_b" and flag_id in before and before[flag_id][17] != "cleared":
            assert flag[17] == "cleared"
            assert "Restated" in flag[19]
    event(f"ws_b flags before: {sum(f[4] == 'ws_b' for f in before.values())}")

"""Invariants of billing_forecast over arbitrary histories, in PostgreSQL.

Histories mix usage (late, out of order, across period boundaries), voids,
amendments, calendar changes, price book versions, budgets and ticks of time,
processed in random batch sizes with the projector stopped at random points.
A rebuild equals the incremental result row for row (residual floats
included), and every closed period's answer is its actual usage, as the
daily usage read model sums it, priced through the book in force.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from application.bootstrap import WriteSide
from application.metering.app import UsageNotFound
from application.metering.corrections import InvalidCorrection
from application.price_book import BudgetNeedsPriceBook
from application.settings import Settings
from domain.pricing import parse_price_book
from domain.tenant_settings import BillingSettings
from domain.usage import UsageError
from tests.harness import Harness, harness_for
from tests.integration.test_projection_properties import fresh_store

pytestmark = pytest.mark.timeout(900)

START = datetime(2026, 6, 20, tzinfo=UTC)
TENANTS = ["t_a", "t_b"]
ZONES = ["UTC", "America/New_York", "Asia/Kolkata"]
FORECAST = "billing_forecast"
ANOMALIES = "billing_anomalies"
REFUSED = (UsageNotFound, UsageError, InvalidCorrection)

quantities = st.decimals(min_value=0, max_value=1000, places=2, allow_nan=False)

# Events happened up to 75 days before they are sent (late, out of order).
events = st.builds(
    lambda i, ws, area, q, minutes_ago: (
        {
            "id": f"e{i}",
            "workspace_id": ws,
            "product_area": area,
            "quantity": str(q),
            "unit": "unit",
        },
        minutes_ago,
    ),
    st.integers(0, 30),
    st.sampled_from(["ws_a", "ws_b"]),
    st.sampled_from(["compute", "api"]),
    quantities,
    st.integers(0, 75 * 24 * 60),
)

BOOKS = [
    {"currency": "EUR", "prices": [{"product_area": "compute", "unit": "unit",
                                    "unit_price": "0.045"}]},
    {"currency": "EUR", "prices": [
        {"product_area": "compute", "unit": "unit", "included_quantity": "100",
         "tiers": [{"up_to": "500", "unit_price": "0.10"},
                   {"up_to": None, "unit_price": "0.07"}]},
        {"product_area": "api", "unit": "unit", "unit_price": "0.0013"}]},
]  # fmt: skip

steps = st.one_of(
    st.tuples(
        st.just("send"),
        st.sampled_from(TENANTS),
        st.lists(events, min_size=1, max_size=8),
    ),
    st.tuples(st.just("void"), st.sampled_from(TENANTS), st.integers(0, 30)),
    st.tuples(
        st.just("amend"), st.sampled_from(TENANTS), st.integers(0, 30), quantities
    ),
    st.tuples(
        st.just("calendar"),
        st.sampled_from(TENANTS),
        st.sampled_from(ZONES),
        st.integers(1, 28),
        st.sampled_from([0, 72]),
    ),
    st.tuples(st.just("prices"), st.sampled_from(TENANTS), st.integers(0, 1)),
    st.tuples(st.just("prices"), st.sampled_from(TENANTS), st.integers(0, 1)),
    st.tuples(
        st.just("budget"),
        st.sampled_from(TENANTS),
        st.decimals(min_value=1, max_value=500, places=2),
    ),
    st.just(("tick",)),
    st.tuples(st.just("ack"), st.sampled_from(TENANTS)),
    st.tuples(st.just("project"), st.integers(1, 10)),
)
# Minutes between steps: up to 9 days, so periods open, close and calibrate.
histories = st.lists(
    st.tuples(steps, st.integers(0, 9 * 24 * 60)), min_size=4, max_size=30
)


def play(h: Harness, history: list[tuple[Any, int]]) -> None:
    """Apply each step at a clock that only moves forward."""
    ws = h.write_side
    calendars = {t: BillingSettings() for t in TENANTS}
    now = START + timedelta(days=2)
    for step, minutes in history:
        now += timedelta(minutes=minutes)
        kind, *args = step
        if kind == "send":
            batch = [
                e | {"timestamp": (now - timedelta(minutes=ago)).isoformat()}
                for e, ago in args[1]
            ]
            h.send(args[0], batch, at=now)
        elif kind == "void":
            with suppress(*REFUSED):  # unknown or voided already
                h.void(args[0], f"e{args[1]}", at=now)
        elif kind == "amend":
            with suppress(*REFUSED):
                h.amend(args[0], f"e{args[1]}", args[2], at=now)
        elif kind == "calendar":
            tenant, zone, anchor, grace = args
            h.set_calendar(tenant, zone, anchor, grace, at=now)
            calendars[tenant] = BillingSettings(zone, anchor, grace)
        elif kind == "prices":
            tenant, which = args
            ws.price_book.set_price_book(
                tenant,
                BOOKS[which] | {"effective_from": "current"},
                calendar=calendars[tenant],
                actor_id="ops",
                now=now,
            )
        elif kind == "budget":
            tenant, amount = args
            with suppress(BudgetNeedsPriceBook):
                ws.price_book.set_budget(
                    tenant,
                    "current",
                    str(amount),
                    calendar=calendars[tenant],
                    actor_id="ops",
                    now=now,
                )
        elif kind == "tick":
            ws.clock.record_tick(now)
        elif kind == "ack":
            flag = _a_flag(ws, args[0])
            if flag:
                ws.reviews.acknowledge(
                    args[0], flag[0], flag[1], "seen", actor_id="admin", now=now
                )
        else:
            ws.projector.advance(FORECAST, max_events=args[0])
            ws.projector.advance(ANOMALIES, max_events=args[0])


def _a_flag(write_side: WriteSide, tenant: str) -> tuple[str, date] | None:
    with psycopg.connect(write_side.settings.conninfo()) as conn:
        row = conn.execute(
            "SELECT id, period_start FROM billing_anomalies_flags"
            " WHERE tenant_id = %s ORDER BY id LIMIT 1",
            (tenant,),
        ).fetchone()
    return (row[0], row[1]) if row else None


def forecast_rows(settings: Settings) -> tuple[list[Any], list[Any]]:
    with psycopg.connect(settings.conninfo()) as conn:
        periods = conn.execute(
            "SELECT * FROM billing_forecast_periods ORDER BY tenant_id, period_start"
        ).fetchall()
        lines = conn.execute(
            "SELECT * FROM billing_forecast_lines"
            " ORDER BY tenant_id, period_start, workspace_id, product_area, unit"
        ).fetchall()
    return periods, lines


def anomaly_rows(settings: Settings) -> tuple[list[Any], list[Any]]:
    with psycopg.connect(settings.conninfo()) as conn:
        flags = conn.execute(
            "SELECT * FROM billing_anomalies_flags ORDER BY tenant_id, period_start, id"
        ).fetchall()
        unjudged = conn.execute(
            "SELECT * FROM billing_anomalies_unjudged ORDER BY 1, 2, 3, 4, 5"
        ).fetchall()
    return flags, unjudged


def deliverable_notices(settings: Settings) -> list[Any]:
    with psycopg.connect(settings.conninfo()) as conn:
        return conn.execute(
            "SELECT id, data FROM billing_notices WHERE suppressed IS NULL ORDER BY id"
        ).fetchall()


def closed_answers_equal_priced_usage(write_side: WriteSide) -> int:
    """Every closed period's whole-tenant lines against the daily usage read model;
    how many lines were checked."""
    with psycopg.connect(write_side.settings.conninfo()) as conn:
        usage = {
            (r[0], r[1], r[2], r[3]): r[4]
            for r in conn.execute(
                "SELECT tenant_id, period_start, product_area, unit, sum(quantity)"
                " FROM billing_usage_daily GROUP BY 1, 2, 3, 4"
            )
        }
        closed = conn.execute(
            "SELECT l.tenant_id, l.period_start, l.product_area, l.unit,"
            " l.quantity_to_date, l.q10, l.q50, l.q90, l.charges_to_date, l.c50"
            " FROM billing_forecast_lines l JOIN billing_forecast_periods p"
            " USING (tenant_id, period_start)"
            " WHERE p.status = 'closed' AND l.workspace_id = ''"
        ).fetchall()
        books = conn.execute(
            "SELECT tenant_id, effective_from, book FROM billing_forecast_prices"
            " ORDER BY effective_from, position"
        ).fetchall()
    checked = 0
    for tenant, start, area, unit, to_date, p10, p50, p90, charge, c50 in closed:
        actual = usage.get((tenant, start, area, unit), Decimal(0))
        assert to_date == p10 == p50 == p90 == actual, (tenant, start, area)
        book = _in_force(books, tenant, start)
        price = book.price_of(area, unit) if book else None
        if price is None:
            assert charge is None
        else:
            assert charge == c50 == price.charge(actual, book.currency)  # type: ignore[union-attr]
        checked += 1
    return checked


def _in_force(books: list[Any], tenant: str, start: date) -> Any:
    found = [b for t, since, b in books if t == tenant and since <= start]
    return parse_price_book(found[-1]) if found else None


@hyp_settings(
    max_examples=28,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    history=histories,
    batch_size=st.integers(1, 7),
    later=st.integers(0, 120 * 24 * 60),  # a last tick, after the history
)
def test_incremental_equals_rebuild_and_closed_periods_are_priced_usage(
    settings: Settings, history: list[tuple[Any, int]], batch_size: int, later: int
) -> None:
    with (
        fresh_store(settings, batch_size) as write_side,
        harness_for(write_side, START) as h,
    ):
        play(h, [*history, (("tick",), later)])
        write_side.projector.advance(FORECAST)
        write_side.projector.advance(ANOMALIES)
        write_side.projector.advance("billing_usage_daily")
        incremental = forecast_rows(write_side.settings)
        flags = anomaly_rows(write_side.settings)
        sent = deliverable_notices(write_side.settings)

        write_side.projector.rebuild(FORECAST)
        write_side.projector.rebuild(ANOMALIES)
        rebuilt = forecast_rows(write_side.settings)
        rebuilt_flags = anomaly_rows(write_side.settings)
        checked = closed_answers_equal_priced_usage(write_side)
        after_rebuild = deliverable_notices(write_side.settings)

    assert rebuilt == incremental
    assert rebuilt_flags == flags
    assert after_rebuild == sent  # a rebuild sends nothing
    event(f"anomaly flags: {'some' if flags[0] else 'none'}")
    periods, lines = incremental
    event(f"closed lines checked: {'some' if checked else 'none'}")
    backtested = any(x[-1] for x in lines)
    priced = any(p[9] is not None for p in periods)
    event(f"lines with backtests: {'some' if backtested else 'none'}")
    event(f"priced periods: {'some' if priced else 'none'}")


def test_late_usage_restates_the_backtests_of_the_closed_periods_after_it(
    settings: Settings,
) -> None:
    """A hand-picked history the property test rarely reaches: a late event on
    a day of one closed period changes the backtests of the next closed one
    (its history window holds that day), and a rebuild agrees."""
    day = timedelta(days=1)
    with fresh_store(settings, 50) as write_side, harness_for(write_side, START) as h:
        for i in range(100):  # June 20 to Sep 27, one event a day
            at = START + i * day
            h.send("t_a", [usage(f"d{i}", at, 100 + 40 * (i % 7 == 5))], at=at)
        write_side.clock.record_tick(START + 100 * day)
        write_side.projector.advance(FORECAST)
        before = backtests(write_side, date(2026, 8, 1))
        # Recorded on Sep 28, for July 30: August (closed) is restated.
        late = usage("late", datetime(2026, 7, 30, 12, tzinfo=UTC), 90)
        h.send("t_a", [late], at=START + 100 * day)
        after, incremental, rebuilt = restated(write_side, date(2026, 8, 1))
    assert before
    assert after != before
    assert rebuilt == incremental


def usage(event_id: str, at: datetime, quantity: int) -> dict[str, str]:
    return {
        "id": event_id,
        "workspace_id": "ws_a",
        "product_area": "compute",
        "unit": "unit",
        "quantity": str(quantity),
        "timestamp": at.isoformat(),
    }


def backtests(write_side: WriteSide, period_start: date) -> list[float]:
    with psycopg.connect(write_side.settings.conninfo()) as conn:
        row = conn.execute(
            "SELECT residuals FROM billing_forecast_lines WHERE tenant_id = 't_a'"
            " AND period_start = %s AND workspace_id = ''",
            (period_start,),
        ).fetchone()
    return list(row[0]) if row and row[0] else []


def test_usage_before_a_series_first_day_restates_every_period_it_starts_earlier(
    settings: Settings,
) -> None:
    """A series' history starts on its first day with usage. A backfill of an
    older day starts it earlier for periods far beyond that day's window (their
    history now has empty days where it had none), and a rebuild agrees."""
    first = datetime(2026, 9, 20, 12, tzinfo=UTC)
    with fresh_store(settings, 50) as write_side, harness_for(write_side, first) as h:
        for i in range(60):  # Sep 20 to Nov 18
            at = first + timedelta(days=i)
            h.send("t_a", [usage(f"d{i}", at, 100 + (i * 37) % 41)], at=at)
        write_side.clock.record_tick(first + timedelta(days=60))
        write_side.projector.advance(FORECAST)
        before = backtests(write_side, date(2026, 10, 1))
        # June 1 is outside October's 94-day window, yet October's history
        # now starts at the window (empty days) instead of on Sep 20.
        old = usage("old", datetime(2026, 6, 1, 12, tzinfo=UTC), 100)
        h.send("t_a", [old], at=first + timedelta(days=60))
        after, incremental, rebuilt = restated(write_side, date(2026, 10, 1))
    assert before
    assert after != before
    assert rebuilt == incremental


def restated(write_side: WriteSide, period_start: date) -> tuple[Any, Any, Any]:
    """After late usage: the period's backtests, and every row incrementally
    and after a rebuild."""
    write_side.projector.advance(FORECAST)
    after = backtests(write_side, period_start)
    incremental = forecast_rows(write_side.settings)
    write_side.projector.rebuild(FORECAST)
    return after, incremental, forecast_rows(write_side.settings)

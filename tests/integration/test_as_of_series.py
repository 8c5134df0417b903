"""As-of forecasts and anomaly flags over arbitrary histories, in PostgreSQL.

The histories of the forecast and anomaly property tests (late usage, voids,
amendments, calendar changes, price book versions, budgets, ticks,
acknowledgements) are played while the read models catch up part-way at random
points. At each point the live answers are read as the services serve them;
then more history arrives (late data, corrections), and every answer derived
from the histories at those exact positions must be the same bytes, and again
after the read models and the ledger are rebuilt.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import msgspec
import psycopg
import pytest
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from application.bootstrap import WriteSide
from application.serving.anomalies import anomalies_out
from application.serving.forecast import forecast_out
from application.settings import Settings
from domain.tenant_settings import BillingSettings
from projections.anomalies.as_of import anomalies_at
from projections.anomalies.postgres import AnomalyProjection
from projections.anomalies.reader import AnomalyReader
from projections.forecast.as_of import forecast_at, kept_residuals, own_residuals
from projections.forecast.changes import forecast_changes
from projections.forecast.postgres import ForecastProjection
from projections.forecast.reader import ForecastReader
from projections.history import Cut, position_at
from projections.series_history import series_at
from tests.harness import Harness, harness_for
from tests.integration import test_anomaly_properties as anomaly_histories
from tests.integration import test_forecast_properties as forecast_histories
from tests.integration.test_projection_properties import fresh_store

pytestmark = pytest.mark.timeout(1200)

FORECAST = ForecastProjection.name
ANOMALIES = AnomalyProjection.name
LEDGER_MODEL = "billing_usage_daily"
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class Question:
    """One view as a billing admin asks for it."""

    model: str
    tenant: str
    period: str
    workspace: str | None = None
    status: str | None = None


@dataclass(frozen=True)
class Served:
    """A live answer: the question, when it was asked, where the model stood."""

    question: Question
    now: datetime
    cut: Cut
    body: bytes


def questions(model: str, tenants: list[str], month: str) -> list[Question]:
    found = []
    for tenant in tenants:
        for period in ("current", "previous", month):
            found += [
                Question(model, tenant, period),
                Question(model, tenant, period, "ws_a"),
            ]
            if model == ANOMALIES:
                found.append(Question(model, tenant, period, None, "open"))
    return found


# --- the live answers, and the same derived from the histories -------------------


async def live(
    conn: psycopg.AsyncConnection[Any], q: Question, now: datetime
) -> Served:
    """What the service serves (its reader and shaping), in one snapshot."""
    async with conn.transaction():
        if q.model == FORECAST:
            f = ForecastReader()
            snapshot = await f.snapshot(conn, q.tenant, q.period, now)
            row, lines = await f.answer(
                conn, q.tenant, snapshot.period.start, q.workspace
            )
            body = _encode(forecast_out(q.tenant, q.workspace, snapshot, row, lines))
            upstreams = ForecastProjection.upstreams
        else:
            a = AnomalyReader()
            snapshot = await a.snapshot(conn, q.tenant, q.period, now)
            flags, unjudged = await a.flags(
                conn, q.tenant, snapshot.period.start, q.workspace, q.status
            )
            body = _encode(anomalies_out(q.tenant, snapshot, flags, unjudged))
            upstreams = AnomalyProjection.upstreams
    cut = Cut({u: snapshot.positions.get(u, 0) for u in upstreams})
    return Served(q, now, cut, body)


async def as_of(
    conn: psycopg.AsyncConnection[Any],
    q: Question,
    cut: Cut,
    now: datetime,
    *,
    from_ledger: bool = False,
) -> bytes:
    """The answer derived from the histories at `cut`: from the read model's
    own days less what came later where it can, or every ledger entry."""
    if q.model == FORECAST:
        snapshot, row, lines = await forecast_at(
            conn, q.tenant, q.period, q.workspace, cut, now, from_ledger=from_ledger
        )
        return _encode(forecast_out(q.tenant, q.workspace, snapshot, row, lines))
    snapshot, flags, unjudged = await anomalies_at(
        conn,
        q.tenant,
        q.period,
        q.workspace,
        q.status,
        cut,
        now,
        from_ledger=from_ledger,
    )
    return _encode(anomalies_out(q.tenant, snapshot, flags, unjudged))


def read_live(settings: Settings, qs: list[Question], now: datetime) -> list[Served]:
    async def run() -> list[Served]:
        async with await psycopg.AsyncConnection.connect(settings.conninfo()) as conn:
            return [await live(conn, q, now) for q in qs]

    return asyncio.run(run())


def mismatches(settings: Settings, served: list[Served]) -> list[str]:
    """The answers derived at each one's cut (both ways) that differ from what
    was served."""

    async def run() -> list[str]:
        found = []
        async with await psycopg.AsyncConnection.connect(settings.conninfo()) as conn:
            for s, from_ledger in itertools.product(served, (False, True)):
                derived = await as_of(
                    conn, s.question, s.cut, s.now, from_ledger=from_ledger
                )
                if derived != s.body:
                    found.append(f"{s.question} at {s.cut.positions}"
                                 f" (from the ledger: {from_ledger}):\n"
                                 f"  served  {s.body.decode()}\n"
                                 f"  derived {derived.decode()}")  # fmt: skip
        return found

    return asyncio.run(run())


# --- catching the live read models part-way --------------------------------------


class Capturing:
    """The projector as the histories' `play` sees it: each partial catch-up
    also catches up the read models in `also` as far, then the live answers
    of those read models are recorded."""

    def __init__(
        self, projector: Any, also: tuple[str, ...], on_advance: Callable[[str], None]
    ) -> None:
        self.projector = projector
        self.also = also
        self.on_advance = on_advance

    def advance(self, name: str, *, max_events: int | None = None) -> int:
        done = 0
        for each in (name, *self.also):
            done += int(self.projector.advance(each, max_events=max_events))
            self.on_advance(each)
        return done

    def __getattr__(self, name: str) -> Any:
        return getattr(self.projector, name)


@contextmanager
def capturing(
    write_side: WriteSide,
    h: Harness,
    qs: list[Question],
    served: list[Served],
    also: tuple[str, ...] = (),
) -> Iterator[None]:
    real = write_side.projector

    def on_advance(name: str) -> None:
        asked = [q for q in qs if q.model == name]
        served.extend(read_live(write_side.settings, asked, h.clock.now))

    write_side.projector = Capturing(real, also, on_advance)  # type: ignore[assignment]
    try:
        yield
    finally:
        write_side.projector = real


def checked_after_more_history_and_rebuilds(
    write_side: WriteSide, qs: list[Question], served: list[Served], now: datetime
) -> None:
    """Every served answer is derived again at its cut: now that more history
    came, and after the read models and the ledger are rebuilt."""
    projector = write_side.projector
    for name in (LEDGER_MODEL, FORECAST, ANOMALIES):
        projector.advance(name)
    final = read_live(write_side.settings, qs, now)
    different = mismatches(write_side.settings, [*served, *final])
    assert not different, "\n".join(different)
    for name in (LEDGER_MODEL, FORECAST, ANOMALIES):
        projector.rebuild(name)
    rebuilt = read_live(write_side.settings, qs, now)
    assert [r.body for r in rebuilt] == [f.body for f in final]
    different = mismatches(write_side.settings, [*served, *rebuilt])
    assert not different, "\n".join(different)


# --- the properties ----------------------------------------------------------------


def caught_up_only_before(
    history: list[Any], later: list[Any], catch_ups: list[tuple[int, Any]]
) -> list[Any]:
    """`history` with more partial catch-ups at arbitrary places, then the
    `later` steps without theirs."""
    steps = list(history)
    for where, step in sorted(catch_ups, reverse=True):
        steps.insert(min(where, len(steps)), step)
    return [*steps, *(s for s in later if _kind(s) != "project")]


def points(served: list[Served]) -> str:
    """How many distinct points of the history the live answers were read at."""
    n = len({tuple(sorted(s.cut.positions.items())) for s in served})
    return str(n) if n < 4 else "4+"


def _kind(step: Any) -> str:
    return str(step[0][0] if isinstance(step[0], tuple) else step[0])


@hyp_settings(
    max_examples=5,  # about 8 s each: the forecast and flags are derived again
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    history=forecast_histories.histories,
    later=forecast_histories.histories,
    catch_ups=st.lists(
        st.tuples(
            st.integers(0, 30), st.tuples(st.just("project"), st.integers(1, 10))
        ),
        max_size=4,
    ),
    batch_size=st.integers(1, 7),
)
def test_forecasts_and_flags_as_of_any_point_are_the_bytes_served_then(
    settings: Settings,
    history: list[tuple[Any, int]],
    later: list[tuple[Any, int]],
    catch_ups: list[tuple[int, Any]],
    batch_size: int,
) -> None:
    """Price books, budgets, calendars, corrections, two tenants; `later` is
    more history after the points read (late usage, corrections, ticks)."""
    tenants = forecast_histories.TENANTS
    qs = questions(FORECAST, tenants, "2026-07")
    qs += questions(ANOMALIES, tenants, "2026-07")
    served: list[Served] = []
    with (
        fresh_store(settings, batch_size) as write_side,
        harness_for(write_side, forecast_histories.START) as h,
    ):
        with capturing(write_side, h, qs, served):
            at_once = [(where, (step, 0)) for where, step in catch_ups]
            forecast_histories.play(h, caught_up_only_before(history, later, at_once))
        checked_after_more_history_and_rebuilds(write_side, qs, served, h.clock.now)
    event(f"points read: {points(served)}")
    totals = any(b'"total":{' in s.body for s in served)
    event(f"a forecast with a total: {totals}")


@hyp_settings(
    max_examples=4,  # ten weeks of usage each
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    history=st.lists(anomaly_histories.steps, min_size=1, max_size=25),
    later=st.lists(anomaly_histories.steps, min_size=1, max_size=8),
    catch_ups=st.lists(
        st.tuples(
            st.integers(0, 25), st.tuples(st.just("project"), st.integers(1, 40))
        ),
        max_size=4,
    ),
    batch_size=st.integers(1, 60),
)
def test_flags_as_of_any_point_after_weeks_of_usage_are_the_bytes_served_then(
    settings: Settings,
    history: list[Any],
    later: list[Any],
    catch_ups: list[tuple[int, Any]],
    batch_size: int,
) -> None:
    """Ten weeks of usual usage first, so flags are raised, cleared and
    acknowledged; the forecast catches up as far each time."""
    qs = questions(ANOMALIES, ["t_a"], "2026-09")
    qs += questions(FORECAST, ["t_a"], "2026-09")
    served: list[Served] = []
    with (
        fresh_store(settings, batch_size) as write_side,
        harness_for(write_side, anomaly_histories.START) as h,
    ):
        anomaly_histories.base(h)
        with capturing(write_side, h, qs, served, also=(FORECAST,)):
            anomaly_histories.play(h, caught_up_only_before(history, later, catch_ups))
        checked_after_more_history_and_rebuilds(write_side, qs, served, h.clock.now)
    event(f"points read: {points(served)}")
    flags = any(b'"id":"an_' in s.body for s in served)
    event(f"flags served: {flags}")


# --- a cut by instant --------------------------------------------------------------


def test_an_answer_as_of_an_instant_is_the_one_at_the_positions_reached_then(
    settings: Settings,
) -> None:
    """After each step of a history (usage, calendar, prices, budget, ticks, a
    correction, an acknowledgement), the read models catch up and answer; as of
    that step's instant, and as of the positions each upstream had reached
    then, the derived answers are those bytes."""
    qs = questions(FORECAST, ["t_a"], "2026-09") + questions(
        ANOMALIES, ["t_a"], "2026-09"
    )
    served: list[tuple[datetime, list[Served]]] = []
    book = cast(dict[str, Any], forecast_histories.BOOKS[1]) | {
        "effective_from": "current"
    }
    calendar = BillingSettings("Asia/Kolkata", 5, 72)
    with fresh_store(settings, 40) as write_side, harness_for(write_side, START) as h:
        ws = write_side
        # A drop on a Saturday (day 68), judged once settled (the tick), then
        # filled by usage sent over 3 days late (1 day + the settle window):
        # the flag it raised is cleared as restated, not forgotten.
        anomaly_histories.base(h, {("ws_b", 68): 5})
        at = START + timedelta(days=anomaly_histories.BASE_DAYS, hours=2)
        hours = timedelta(hours=7)
        steps: list[tuple[timedelta, Callable[[datetime], object]]] = [
            (hours, lambda t: h.set_calendar("t_a", "Asia/Kolkata", 5, 72, at=t)),
            (
                hours,
                lambda t: ws.price_book.set_price_book(
                    "t_a", book, calendar=calendar, actor_id="ops", now=t
                ),
            ),
            (
                hours,
                lambda t: ws.price_book.set_budget(
                    "t_a", "current", "80", calendar=calendar, actor_id="ops", now=t
                ),
            ),
            (hours, ws.clock.record_tick),
            (
                hours,
                lambda t: h.send(
                    "t_a", [late_fill(t - timedelta(days=3, hours=1))], at=t
                ),
            ),
            (hours, lambda t: h.void("t_a", "ws_a-60", at=t)),
            (hours, lambda t: acknowledge_a_flag(ws, t)),
            (timedelta(days=9), ws.clock.record_tick),
        ]
        for gap, step in steps:
            at += gap
            step(at)
            for name in (LEDGER_MODEL, FORECAST, ANOMALIES):
                ws.projector.advance(name)
            served.append((at, read_live(ws.settings, qs, at)))
        for at, answers in served:
            by_positions = [
                replace(s, cut=positions_at(ws.settings, s.cut, at)) for s in answers
            ]
            by_instant = [replace(s, cut=Cut(at=at)) for s in answers]
            different = mismatches(ws.settings, by_positions + by_instant)
            assert not different, "\n".join(different)
    bodies = [s.body for _, answers in served for s in answers]
    assert any(b'"acknowledgement"' in b for b in bodies)
    assert any(b'"status":"cleared"' in b for b in bodies)


# --- backtests a forecast at a cut rests on ---------------------------------------


def test_a_forecast_at_a_cut_rests_on_the_backtests_of_the_periods_closed_then(
    settings: Settings,
) -> None:
    """A period in its grace days at a cut has no backtests there, though the
    read model keeps them once it closed: a forecast at the cut rests on the
    backtests of the periods closed at the cut (those the read model kept
    where nothing after the cut changed them), as if summed from the ledger."""
    with fresh_store(settings, 40) as ws, harness_for(ws, START) as h:
        anomaly_histories.base(h)  # Aug 3 to Oct 11
        for i in range(anomaly_histories.BASE_DAYS, 91):  # to Nov 1, 12:00
            day = START + timedelta(days=i, hours=12)
            h.send("t_a", [usage_event(f"more-{i}", day)], at=day + timedelta(hours=1))
        for name in (LEDGER_MODEL, FORECAST):
            while ws.projector.advance(name):
                pass
        in_grace = head(ws.settings)  # October closes on Nov 4 (72 h of grace)
        ws.clock.record_tick(datetime(2026, 11, 5, tzinfo=UTC))
        h.send("t_a", [usage_event("nov-2", datetime(2026, 11, 2, 9, tzinfo=UTC))],
               at=datetime(2026, 11, 5, 1, tzinfo=UTC))  # fmt: skip
        for name in (LEDGER_MODEL, FORECAST):
            while ws.projector.advance(name):
                pass
        closed = head(ws.settings)

        async def kept_at(position: int) -> set[date]:
            async with await psycopg.AsyncConnection.connect(
                ws.settings.conninfo()
            ) as conn:
                cut = Cut({"metering": position})
                model, late = ForecastProjection, forecast_changes(()).late
                _, days = await series_at(conn, "t_a", cut, model, late=late)
                _, summed = await series_at(
                    conn, "t_a", cut, model, late=late, from_ledger=True
                )
                assert summed.observed is not None
                period = summed.period("current", summed.observed)
                kept = await kept_residuals(conn, days, period)
                assert own_residuals(days, period, kept) == own_residuals(
                    summed, period
                )
                return set(kept or ())

        october = date(2026, 10, 1)
        assert asyncio.run(kept_at(in_grace)) == {date(2026, 8, 1), date(2026, 9, 1)}
        assert october in asyncio.run(kept_at(closed))


def usage_event(event_id: str, at: datetime) -> dict[str, str]:
    return {
        "id": event_id,
        "workspace_id": "ws_a",
        "product_area": "compute",
        "unit": "vcpu_hour",
        "quantity": "100",
        "timestamp": at.isoformat(),
    }


def head(settings: Settings) -> int:
    with psycopg.connect(settings.conninfo()) as conn:
        row = conn.execute("SELECT max(notification_id) FROM metering_events")
        return int(row.fetchone()[0])  # type: ignore[index]


START = anomaly_histories.START


def late_fill(occurred: datetime) -> dict[str, str]:
    return {
        "id": "fill",
        "workspace_id": "ws_b",
        "product_area": "compute",
        "unit": "vcpu_hour",
        "quantity": "35",
        "timestamp": occurred.isoformat(),
    }


def acknowledge_a_flag(write_side: WriteSide, at: datetime) -> None:
    flag = anomaly_histories.first_flag(write_side)
    assert flag, "the history raises flags to acknowledge"
    write_side.reviews.acknowledge(
        "t_a", flag[0], flag[1], "seen", actor_id="admin", now=at
    )


def positions_at(settings: Settings, cut: Cut, at: datetime) -> Cut:
    """The positions each of `cut`'s upstreams had reached at `at`; they are
    the ones the caught-up read model reported."""

    async def run() -> Cut:
        async with await psycopg.AsyncConnection.connect(settings.conninfo()) as conn:
            return Cut({u: await position_at(conn, u, at) for u in cut.positions})

    reached = asyncio.run(run())
    assert reached == cut, (reached, cut)
    return reached

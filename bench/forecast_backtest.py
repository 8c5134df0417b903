"""Forecast backtest through the real ingest path; projection cost; read latency.

    .venv/bin/python bench/forecast_backtest.py [--series 4] [--seed 11]
        [--periods 9] [--requests 300] [--quick] [--keep]

Backtest: the series of bench/forecast_method.py (its generating processes and
seeds, so the same first --series series of each process), one tenant each
(one workspace, compute / vcpu_hour at a flat price), sent through the
Ingestor of build_services day by day in time order, each day as a few
events with backfill and the clock at the day's end. At the end of days 1,
3, 7, 14, 21 and 28 of every period after the first, a tick is recorded at
that instant, billing_forecast is advanced in-process and every tenant's
whole-tenant line is read from billing_forecast_lines (SQL, not HTTP). The
figures are forecast_method.py's: median APE per checkpoint of our p50, of
the linear pace and of the trailing 28-day mean on the same data, and the
coverage of our 80% interval (also per calibration, own or pooled). A third
reference is domain.forecasting called as forecast_method.py calls it, on
the same series: what the read model's framing of the data changes. Checks
(counts, not timings): closed periods answer exactly what was sent; every
answer is as of its checkpoint's tick.

Cost: the demo data set (application/seeding.py, hourly ticks) is loaded,
then billing_usage_daily and billing_forecast are each rebuilt in-process
(their quantities to date compared), and small sends and ticks are projected
one at a time as a worker would, live.
Latency: GET /api/billing/forecast?period=current for a demo tenant, one
client, against `billing serve` cached and uncached (bench/null_redis.py and
no in-process cache, as bench/query.py); GET usage of the same tenant and
/healthz are the references.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from decimal import Decimal
from typing import Any

import msgspec
import psycopg
from common import (
    Bench,
    Report,
    analyze,
    base_arguments,
    latency_text,
    percentile,
    private_environment,
    progress,
    ratio_text,
    running_server,
    token,
    uncached_server,
)
from forecast_method import (
    CHECKPOINTS,
    FIRST,
    PERIODS,
    PROCESSES,
    cut,
    forecast,
    histories,
    references,
)
from httpload import Load, fetch, get_request, one_client

from application.bootstrap import WriteSide, bootstrap, build_services
from application.clock import SetClock, utc_now
from application.metering.ingestor import Ingestor
from application.seeding import SeedPlan, history_start, seed
from domain.forecast_pool import POOLED_RESIDUALS
from domain.forecasting import DailySeries, backtest_residuals
from domain.periods import add_months
from domain.tenant_settings import BillingSettings
from projections.forecast.estimate import OWN_RESIDUALS

NAME = "billing_forecast"
USAGE = "billing_usage_daily"
POOL_SEED = 101  # calibrated domain/forecast_pool.py: in-sample, not a backtest
WORKSPACE, AREA, UNIT = "ws_main", "compute", "vcpu_hour"
PRICE_BOOK = {
    "currency": "EUR",
    "effective_from": "current",
    "prices": [{"product_area": AREA, "unit": UNIT, "unit_price": "0.01"}],
}
# Each day's usage is sent as three events: (hour, share of the day).
PARTS = ((6, Decimal("0.3")), (12, Decimal("0.45")), (18, None))  # None: the rest
GRACE = timedelta(hours=BillingSettings().grace_hours)
LIVE_SENDS = 30
LIVE_TICKS = 10
FORECAST_PATH = "/api/billing/forecast?period=current"
USAGE_PATH = "/api/billing/usage?period=current"


def arguments() -> argparse.Namespace:
    parser = base_arguments(__doc__.split("\n", 1)[0])
    parser.add_argument("--series", type=int, default=4, help="per process")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--periods", type=int, default=PERIODS, help="monthly")
    parser.add_argument("--requests", type=int, default=300, help="per latency case")
    args = parser.parse_args()
    if args.seed == POOL_SEED:
        parser.error(f"seed {POOL_SEED} calibrated the pooled residuals; pick another")
    if not 2 <= args.periods <= PERIODS:
        parser.error(f"--periods: 2 to {PERIODS}")
    if args.quick:
        args.series, args.periods, args.requests = 1, 4, 30
    args.plan = (
        SeedPlan(tenants=2, workspaces=2, product_areas=2, days=40, events_per_day=4)
        if args.quick
        else SeedPlan()
    )
    return args


def midnight(day: date) -> datetime:
    return datetime.combine(day, day_time(), UTC)


def period_length(start: date) -> int:
    return (add_months(start, 1) - start).days


# --- the tenants and what they send ----------------------------------------------


@dataclass(frozen=True)
class Tenant:
    """One generated series: its tenant id and its days from the first used."""

    tenant_id: str
    process: str
    history: DailySeries

    def quantity(self, day: date) -> Decimal | None:
        offset = (day - self.history.days[0]).days
        if 0 <= offset < len(self.history.days):
            return self.history.quantities[offset]
        return None

    def total(self, start: date) -> Decimal:
        """What it used in the period starting at `start`."""
        inside = zip(self.history.days, self.history.quantities, strict=True)
        end = add_months(start, 1)
        return sum((q for d, q in inside if start <= d < end), Decimal(0))


def make_tenants(args: argparse.Namespace) -> list[Tenant]:
    """forecast_method.py's series (generated over all its periods, so that
    fewer periods are the same series cut short), one tenant each."""
    days = [
        FIRST + timedelta(days=i)
        for i in range((add_months(FIRST, PERIODS) - FIRST).days)
    ]
    last = add_months(FIRST, args.periods) - timedelta(days=1)
    tenants, seen = [], Counter[str]()
    for process, history in histories(args, days):
        slug = process.replace(" ", "_").replace("-", "_")
        tenant_id = f"t_{slug}_{seen[process]}"
        seen[process] += 1
        if history.days and history.days[0] <= last:
            tenants.append(Tenant(tenant_id, process, cut(history, last)))
    return tenants


def day_events(tenant: Tenant, day: date) -> list[dict[str, Any]]:
    """The day's usage as a few events adding up to it exactly."""
    quantity = tenant.quantity(day)
    if not quantity:
        return []
    events, left = [], quantity
    for hour, share in PARTS:
        part = left if share is None else (quantity * share).quantize(Decimal("0.001"))
        left -= part
        if part > 0:
            at = midnight(day) + timedelta(hours=hour)
            events.append(
                {
                    "id": f"{tenant.tenant_id}-{day.isoformat()}-{hour}",
                    "workspace_id": WORKSPACE,
                    "product_area": AREA,
                    "unit": UNIT,
                    "quantity": format(part, "f"),
                    "timestamp": at.isoformat(),
                }
            )
    return events


# --- the backtest -----------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """A tenant's whole-tenant line as the read model stored it."""

    to_date: float
    p10: float
    p50: float
    p90: float
    method: str
    calibration: str
    low_data: bool
    data_through: datetime


@dataclass(frozen=True)
class Case:
    """One tenant's forecast of one period's total at one checkpoint."""

    process: str
    day: int
    actual: float
    ours: Row
    linear: float
    trailing: float
    offline: float  # domain.forecasting as forecast_method.py calls it
    first: bool  # the tenant's first period of usage: no history before it

    def covered(self) -> bool:
        return self.ours.p10 <= self.actual <= self.ours.p90


@dataclass
class Backtest:
    """What the backtest run saw."""

    tenants: list[Tenant]
    cases: list[Case] = field(default_factory=list)
    zero_actual: int = 0  # checkpoint forecasts of periods without usage
    zero_p50: int = 0  # ... of which our p50 said nothing more would be used
    missing: int = 0  # a used period with no whole-tenant line
    answers: int = 0  # whole-tenant lines read at checkpoints
    stale: int = 0  # ... whose data_through was not the checkpoint's instant
    events: int = 0
    ingest_seconds: float = 0.0
    advances: list[float] = field(default_factory=list)
    actuals: tuple[int, int] = (0, 0)  # closed periods whose actuals match, of


LINES_SQL = (
    "SELECT l.tenant_id, l.quantity_to_date, l.q10, l.q50, l.q90, l.method,"
    " l.calibration, l.low_data, p.data_through FROM billing_forecast_lines l"
    " JOIN billing_forecast_periods p USING (tenant_id, period_start)"
    " WHERE l.period_start = %s AND l.workspace_id = '' AND l.product_area = %s"
    " AND l.unit = %s"
)


def read_lines(conn: psycopg.Connection[Any], start: date) -> dict[str, Row]:
    rows = conn.execute(LINES_SQL, (start, AREA, UNIT)).fetchall()
    conn.commit()
    return {
        tenant: Row(float(q0), float(q10), float(q50), float(q90), m, c, low, through)
        for tenant, q0, q10, q50, q90, m, c, low, through in rows
    }


def offline_p50(tenant: Tenant, start: date, last: date, at: datetime) -> float:
    """Our method on the same data, framed as forecast_method.py frames it: the
    series from its first day of usage, the checkpoint day complete; own
    residuals from the periods closed by `at` once there are enough."""
    seen = cut(tenant.history, last)
    starts = (add_months(FIRST, k) for k in range(PERIODS))
    closed = [s for s in starts if midnight(add_months(s, 1)) + GRACE <= at]
    own = backtest_residuals(seen, closed, CHECKPOINTS)
    residuals = own if len(own) >= OWN_RESIDUALS else list(POOLED_RESIDUALS)
    return forecast(seen, start, residuals).p50


def judge(out: Backtest, start: date, day: int, rows: dict[str, Row]) -> None:
    """Turn one checkpoint's answers into cases (or counts of what was skipped)."""
    last = start + timedelta(days=day - 1)
    at = midnight(last + timedelta(days=1))
    for tenant in out.tenants:
        if tenant.history.days[0] > last:
            continue  # not born yet: nothing to forecast
        actual, row = float(tenant.total(start)), rows.get(tenant.tenant_id)
        if row is not None:
            out.answers += 1
            out.stale += row.data_through != at
        if actual <= 0:
            out.zero_actual += 1
            out.zero_p50 += row is None or row.p50 == row.to_date
            continue
        if row is None:
            out.missing += 1
            continue
        seen = cut(tenant.history, last)
        linear, trailing = references(seen, day, period_length(start))
        offline = offline_p50(tenant, start, last, at)
        out.cases.append(
            Case(
                tenant.process,
                day,
                actual,
                row,
                linear,
                trailing,
                offline,
                first=tenant.history.days[0] >= start,
            )
        )


def checkpoint(
    ws: WriteSide, conn: psycopg.Connection[Any], out: Backtest, start: date, day: int
) -> None:
    """Tick at the end of day `day` of the period, project, read, judge."""
    ws.clock.record_tick(midnight(start + timedelta(days=day)))
    began = time.perf_counter()
    ws.projector.advance(NAME)
    out.advances.append(time.perf_counter() - began)
    judge(out, start, day, read_lines(conn, start))


def send_day(ingestor: Ingestor, clock: SetClock, out: Backtest, day: date) -> None:
    """Every tenant's usage of `day`, sent at the day's end."""
    clock.now = midnight(day + timedelta(days=1))
    began = time.perf_counter()
    for tenant in out.tenants:
        events = day_events(tenant, day)
        if events:
            body = msgspec.json.encode(events)
            sent = ingestor.ingest(tenant.tenant_id, body, backfill=True)
            assert sent.accepted == len(events), sent.results
            out.events += len(events)
    out.ingest_seconds += time.perf_counter() - began


def checkpoints(args: argparse.Namespace) -> dict[date, tuple[date, int]]:
    """The last day seen at each checkpoint -> (period start, day number)."""
    found = {}
    for k in range(1, args.periods):
        start = add_months(FIRST, k)
        for day in CHECKPOINTS:
            if day < period_length(start):
                found[start + timedelta(days=day - 1)] = (start, day)
    return found


def run_backtest(args: argparse.Namespace, bench: Bench) -> Backtest:
    """Send every day in order, forecasting at each checkpoint; then close all."""
    out = Backtest(make_tenants(args))
    end = add_months(FIRST, args.periods)
    due = checkpoints(args)
    ws = bootstrap(bench.settings)
    clock = SetClock(midnight(FIRST))
    services = build_services(bench.settings, write_side=ws, clock=clock)
    try:
        for tenant in out.tenants:
            ws.price_book.set_price_book(
                tenant.tenant_id,
                PRICE_BOOK,
                calendar=BillingSettings(),
                actor_id="bench",
                now=clock.now,
            )
        with psycopg.connect(bench.settings.conninfo()) as conn:
            day = FIRST
            while day < end:
                send_day(services.ingestor, clock, out, day)
                if day in due:
                    checkpoint(ws, conn, out, *due[day])
                if day.day == 1:
                    progress(f"{day:%Y-%m}: {len(out.cases):,} forecasts so far")
                day += timedelta(days=1)
            out.actuals = closed_actuals(ws, conn, out.tenants, args.periods)
    finally:
        services.close()
    return out


def closed_actuals(
    ws: WriteSide, conn: psycopg.Connection[Any], tenants: list[Tenant], periods: int
) -> tuple[int, int]:
    """Time past every period's close: how many used periods the read model
    answers with exactly the quantity sent, of how many."""
    ws.clock.record_tick(midnight(add_months(FIRST, periods)) + GRACE)
    ws.projector.advance(NAME)
    same = total = 0
    for k in range(periods):
        start = add_months(FIRST, k)
        rows = conn.execute(LINES_SQL, (start, AREA, UNIT)).fetchall()
        stored = {tenant: q for tenant, q, *_ in rows}
        for tenant in tenants:
            sent = tenant.total(start)
            if sent > 0:
                total += 1
                same += stored.get(tenant.tenant_id) == sent
    conn.commit()
    return same, total


# --- the backtest's figures -------------------------------------------------------


def median_ape(cases: Sequence[Case], pick: Callable[[Case], float]) -> float:
    return statistics.median(abs(pick(c) - c.actual) / c.actual for c in cases)


def coverage_text(cases: Sequence[Case]) -> str:
    if not cases:
        return "n/a (n=0)"
    return f"{sum(c.covered() for c in cases) / len(cases):.1%} (n={len(cases):,})"


def print_checkpoint(report: Report, day: int, group: list[Case]) -> None:
    label = f"day {day:>2}"
    ours = median_ape(group, lambda c: c.ours.p50)
    linear = median_ape(group, lambda c: c.linear)
    trailing = median_ape(group, lambda c: c.trailing)
    offline = median_ape(group, lambda c: c.offline)
    target = "<= 0.6x linear pace" if day <= 7 else "<= linear pace"
    report.figure(
        f"median APE {label}, ours (p50, n={len(group):,})", f"{ours:.1%}", target
    )
    report.reference(f"median APE {label}, linear pace", f"{linear:.1%}")
    report.reference(f"median APE {label}, trailing 28-day mean", f"{trailing:.1%}")
    report.reference(f"median APE {label}, same method offline", f"{offline:.1%}")
    report.ratio(f"ours / linear pace, {label}", ratio_text(ours, linear))
    report.ratio(f"ours / trailing 28-day mean, {label}", ratio_text(ours, trailing))
    report.ratio(f"ours / same method offline, {label}", ratio_text(ours, offline))
    width = statistics.median((c.ours.p90 - c.ours.p10) / c.actual for c in group)
    report.figure(
        f"80% interval coverage {label}",
        f"{coverage_text(group)}, median width {width:.1%} of actual",
        "75-85%",
    )
    by = {
        kind: [c for c in group if c.ours.calibration == kind]
        for kind in ("own", "pooled")
    }
    report.figure(
        f"  by calibration, {label}",
        f"own {coverage_text(by['own'])}; pooled {coverage_text(by['pooled'])}",
    )


def print_processes(report: Report, cases: list[Case]) -> None:
    report.note(
        "per process: median APE ours/linear pace, coverage of our 80% interval"
    )
    for name in PROCESSES:
        parts = []
        for day in CHECKPOINTS:
            group = [c for c in cases if c.process == name and c.day == day]
            if group:
                ours = median_ape(group, lambda c: c.ours.p50)
                linear = median_ape(group, lambda c: c.linear)
                covered = sum(c.covered() for c in group) / len(group)
                parts.append(f"d{day} {ours:.1%}/{linear:.1%} {covered:.0%}")
        report.note(f"{name:<18} " + "  ".join(parts))


def print_first_periods(report: Report, cases: list[Case]) -> None:
    """A tenant's first period, where the method has no history to rest on."""
    parts = []
    for day in CHECKPOINTS:
        group = [c for c in cases if c.first and c.day == day]
        if group:
            ours = median_ape(group, lambda c: c.ours.p50)
            offline = median_ape(group, lambda c: c.offline)
            linear = median_ape(group, lambda c: c.linear)
            parts.append(f"d{day} {ours:.1%}/{offline:.1%}/{linear:.1%}")
    n = sum(c.first for c in cases if c.day == 1)
    report.note(
        f"first period of usage ({n} tenant-periods), median APE"
        " ours/same method offline/linear pace: " + "  ".join(parts)
    )


def print_backtest(args: argparse.Namespace, report: Report, out: Backtest) -> None:
    report.setup(
        f"backtest: {len(out.tenants)} tenants ({len(PROCESSES)} processes x"
        f" {args.series} series, seed {args.seed}), {args.periods} monthly periods"
        f" from {FIRST}; {out.events:,} events sent day by day through the Ingestor"
        f" at {out.events / out.ingest_seconds:,.0f} events/s; forecasts read from"
        " billing_forecast_lines after a tick and an in-process advance"
    )
    for day in CHECKPOINTS:
        group = [c for c in out.cases if c.day == day]
        if group:
            print_checkpoint(report, day, group)
    print_processes(report, out.cases)
    print_first_periods(report, out.cases)
    methods = Counter(c.ours.method for c in out.cases)
    calibrations = Counter(c.ours.calibration for c in out.cases)
    low = sum(c.ours.low_data for c in out.cases)
    report.note(
        "methods: "
        + ", ".join(f"{m} {n:,}" for m, n in sorted(methods.items()))
        + "; calibration: "
        + ", ".join(f"{m} {n:,}" for m, n in sorted(calibrations.items()))
        + f"; low_data {low:,}"
    )
    report.note(
        f"skipped for APE and coverage: {out.zero_actual:,} forecasts of periods"
        f" whose actual total is 0 (our p50 was the quantity so far in"
        f" {out.zero_p50:,}); no line for a used period: {out.missing:,}"
    )
    report.figure(
        "advance at a checkpoint (tick, all tenants)", latency_text(out.advances)
    )
    same, total = out.actuals
    report.figure(
        "closed periods' actuals equal what was sent", f"{same:,} of {total:,}"
    )
    report.figure(
        "answers as of their checkpoint's tick",
        f"{out.answers - out.stale:,} of {out.answers:,}",
    )


# --- projection cost --------------------------------------------------------------


@dataclass
class Cost:
    """Loading the demo data set and projecting it, with and without the forecast."""

    events: int
    ticks: int
    seeding: float
    batch: int = 0  # events per projection batch
    usage: tuple[int, float] = (0, 0.0)  # rebuild: events processed, seconds
    forecast: tuple[int, float] = (0, 0.0)
    live_events: int = 0  # per send
    live_usage: list[float] = field(default_factory=list)  # seconds per advance
    live_forecast: list[float] = field(default_factory=list)
    ticks_timed: list[float] = field(default_factory=list)  # forecast advance
    same_as_usage: tuple[int, int] = (0, 0)  # lines whose quantity agrees, of


def timed(action: Callable[[], int]) -> tuple[int, float]:
    began = time.perf_counter()
    result = action()
    return result, time.perf_counter() - began


def load_demo(plan: SeedPlan, ws: WriteSide) -> Cost:
    """The demo's usage and price books, then a tick every hour of its history."""
    now = utc_now()
    began = time.perf_counter()
    sent = seed(
        plan,
        metering=ws.metering,
        tenants=ws.tenants,
        price_book=ws.price_book,
        clock=lambda: now,
    )
    at, ticks = history_start(plan, now), 0
    while at <= now:
        ws.clock.record_tick(at)
        at, ticks = at + timedelta(hours=1), ticks + 1
    return Cost(sent.accepted, ticks, time.perf_counter() - began)


def live_events(plan: SeedPlan, send: int) -> list[dict[str, Any]]:
    """One event per workspace and product area: one producer's send."""
    at = utc_now() - timedelta(minutes=1)
    return [
        {
            "id": f"live-{send}-{w}-{a}",
            "workspace_id": workspace,
            "product_area": area,
            "unit": unit,
            "quantity": "1.5",
            "timestamp": at.isoformat(),
        }
        for w, workspace in enumerate(plan.workspace_list())
        for a, (area, unit, _) in enumerate(plan.area_list())
    ]


USAGE_LINES_SQL = """
WITH usage AS (
    SELECT tenant_id, period_start, workspace_id, product_area, unit,
        sum(quantity) AS quantity
    FROM billing_usage_daily GROUP BY 1, 2, 3, 4, 5 HAVING sum(quantity) <> 0
)
SELECT count(*), count(*) FILTER (WHERE f.quantity_to_date = u.quantity)
FROM usage u LEFT JOIN billing_forecast_lines f
    USING (tenant_id, period_start, workspace_id, product_area, unit)
"""


def same_as_usage(bench: Bench) -> tuple[int, int]:
    """How many (tenant, period, workspace, area, unit) of billing_usage_daily
    the forecast answers with the same quantity to date, of how many."""
    with psycopg.connect(bench.settings.conninfo()) as conn:
        row = conn.execute(USAGE_LINES_SQL).fetchone()
    total, same = row if row else (0, 0)
    return same, total


def project_live(plan: SeedPlan, ws: WriteSide, tenant: str, out: Cost) -> None:
    """Small sends projected one at a time, as a worker keeps up with them."""
    ingestor = Ingestor(ws.metering, ws.tenants, clock=utc_now, max_events=10_000)
    for send in range(LIVE_SENDS):
        events = live_events(plan, send)
        ingestor.ingest(tenant, msgspec.json.encode(events))
        out.live_events = len(events)
        out.live_usage.append(timed(lambda: ws.projector.advance(USAGE))[1])
        out.live_forecast.append(timed(lambda: ws.projector.advance(NAME))[1])
    for _ in range(LIVE_TICKS):
        ws.clock.record_tick(utc_now())
        out.ticks_timed.append(timed(lambda: ws.projector.advance(NAME))[1])


def measure_cost(args: argparse.Namespace, bench: Bench) -> Cost:
    ws = bootstrap(bench.settings)
    try:
        progress(f"seeding the demo data set ({args.plan.expected_events:,} events)")
        out = load_demo(args.plan, ws)
        out.batch = bench.settings.projection_batch_size
        analyze(bench.settings)
        ws.projector.advance_all()
        progress("rebuilding billing_usage_daily, then billing_forecast")
        out.usage = timed(lambda: ws.projector.rebuild(USAGE))
        out.forecast = timed(lambda: ws.projector.rebuild(NAME))
        out.same_as_usage = same_as_usage(bench)
        progress("projecting small sends one at a time")
        project_live(args.plan, ws, demo_tenant(args.plan), out)
        return out
    finally:
        ws.close()


def demo_tenant(plan: SeedPlan) -> str:
    return plan.tenant_list()[0][0]


def print_cost(args: argparse.Namespace, report: Report, out: Cost) -> None:
    plan = args.plan
    report.setup(
        f"cost: the demo data set, {out.events:,} events ({plan.tenants} tenants x"
        f" {plan.workspaces} workspaces x {plan.product_areas} product areas x"
        f" {plan.days} days, priced) and {out.ticks:,} hourly ticks, loaded in"
        f" {out.seeding:.0f} s; projection batch {out.batch:,}"
    )
    (usage_done, usage), (forecast_done, forecast) = out.usage, out.forecast
    report.reference(
        "rebuild billing_usage_daily (usage alone)",
        f"{out.events / usage:,.0f} metered events/s ({usage_done:,} events in"
        f" {usage:.1f} s)",
    )
    report.figure(
        "rebuild billing_forecast",
        f"{out.events / forecast:,.0f} metered events/s ({forecast_done:,} events"
        f" in {forecast:.1f} s)",
    )
    both = usage + forecast
    report.figure(
        "usage and forecast together", f"{out.events / both:,.0f} metered events/s"
    )
    report.ratio("forecast / usage alone, events/s", ratio_text(usage, forecast))
    report.ratio("usage and forecast / usage alone, events/s", ratio_text(usage, both))
    report.figure(
        f"advance after a send of {out.live_events}, billing_forecast",
        latency_text(out.live_forecast),
    )
    report.reference(
        f"advance after a send of {out.live_events}, billing_usage_daily",
        latency_text(out.live_usage),
    )
    report.ratio(
        "forecast / usage advance after a send, p50",
        ratio_text(percentile(out.live_forecast, 50), percentile(out.live_usage, 50)),
    )
    report.figure(
        "advance after a tick, billing_forecast",
        latency_text(out.ticks_timed)
        + f"; re-projects all {args.plan.tenants} tenants",
    )
    same, total = out.same_as_usage
    report.figure(
        "forecast to date = billing_usage_daily",
        f"{same:,} of {total:,} (tenant, period, workspace, area) lines",
    )


# --- read latency -----------------------------------------------------------------


def one_client_cases(
    port: int, requests: dict[str, bytes], case: str, count: int
) -> dict[str, Load]:
    found = {}
    for name, request in requests.items():
        one_client(port, request, 5)  # warm up (and, when cached, fill the cache)
        found[f"{name}, {case}"] = one_client(port, request, count)
    return found


def describe_answer(port: int, request: bytes) -> str:
    """What the forecast route answers (it must answer 200)."""
    reply = fetch(port, request)
    if reply.status != 200:
        raise RuntimeError(f"GET {FORECAST_PATH}: {reply.status} {reply.body[:500]!r}")
    body = msgspec.json.decode(reply.body)
    total = body["total"] or {}
    p50 = total.get("projected_charges", {}).get("p50")
    return (
        f"{body['tenant_id']} {body['period']['start']}: {len(body['lines'])} lines,"
        f" method {body['method']}, interval from {body.get('interval_from')},"
        f" low_data {body['low_data']}, projected p50 {p50} {body['currency']}"
    )


@dataclass
class Latency:
    answer: str
    loads: dict[str, Load]


def measure_latency(args: argparse.Namespace, bench: Bench) -> Latency:
    bearer = token(bench.settings, demo_tenant(args.plan), "admin")
    requests = {
        "forecast": get_request(FORECAST_PATH, bearer),
        "usage": get_request(USAGE_PATH, bearer),
    }
    with running_server(bench, workers=1) as server:
        progress("one client, cached")
        answer = describe_answer(server.port, requests["forecast"])
        loads = {
            "healthz": one_client(server.port, get_request("/healthz"), args.requests)
        }
        loads |= one_client_cases(server.port, requests, "cached", args.requests)
    with uncached_server(bench) as server:
        progress("one client, uncached")
        loads |= one_client_cases(server.port, requests, "uncached", args.requests)
    return Latency(answer, loads)


def print_latency(report: Report, out: Latency) -> None:
    report.setup("latency: one client, `billing serve --workers 1`, the demo tenant")
    report.note(f"answer: {out.answer}")
    loads = out.loads
    for case, target in (("uncached", "p95 <= 15 ms"), ("cached", "")):
        load = loads[f"forecast, {case}"]
        errors = f", {load.errors} errors" if load.errors else ""
        report.figure(
            f"GET forecast?period=current, {case}",
            latency_text(load.latencies) + f", {load.cache_text()}{errors}",
            target,
        )
    for case in ("uncached", "cached"):
        report.reference(
            f"GET usage?period=current, {case}",
            latency_text(loads[f"usage, {case}"].latencies),
        )
    report.reference("GET /healthz", latency_text(loads["healthz"].latencies))
    p50 = {name: percentile(load.latencies, 50) for name, load in loads.items()}
    for case in ("uncached", "cached"):
        report.ratio(
            f"forecast / usage p50, {case}",
            ratio_text(p50[f"forecast, {case}"], p50[f"usage, {case}"]),
        )


def main() -> None:
    args = arguments()
    report = Report("forecast backtest through the real path, its cost and latency")
    with private_environment("forecast", keep=args.keep) as bench:
        print_backtest(args, report, run_backtest(args, bench))
    with private_environment("forecast_cost", keep=args.keep) as bench:
        print_cost(args, report, measure_cost(args, bench))
        print_latency(report, measure_latency(args, bench))


if __name__ == "__main__":
    main()

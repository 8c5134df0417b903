"""Forecast method backtest: our p50 and 80% interval against simple rules.

    .venv/bin/python bench/forecast_method.py [--series 24] [--seed 11] [--quick]

No services: synthetic daily series from several generating processes (a
weekly rhythm, a trend, heavy noise, month-start spikes, a brand-new tenant,
a tenant that stops, a step change), deterministic seeds, nine monthly periods.
At the end of days 1, 3, 7, 14, 21 and 28 of every period after the first it
forecasts the period's total with domain.forecasting and with two references on
the same data: the linear pace (usage so far / share of the period elapsed)
and the trailing 28-day mean rate. It prints the median absolute percentage
error per checkpoint and method, and the coverage of our 80% interval, each
interval calibrated only on residuals of periods before the one forecast: the
series' own once it has OWN_ENOUGH of them, else pooled across all series.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from decimal import Decimal

from common import Report, progress, ratio_text

from domain.forecasting import (
    DailySeries,
    PeriodProgress,
    backtest_residuals,
    forecast_quantity,
)
from domain.periods import add_months

FIRST = date(2025, 1, 1)
PERIODS = 9
CHECKPOINTS = (1, 3, 7, 14, 21, 28)
OWN_ENOUGH = 30
Process = Callable[[random.Random, list[date]], list[float | None]]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--series", type=int, default=24, help="per process")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--quick", action="store_true", help="a tiny run")
    parser.add_argument(
        "--pool",
        action="store_true",
        help="print domain/forecast_pool.py: the pooled residuals' percentiles"
        " (run it with a seed other than the backtest's, e.g. --seed 101)",
    )
    args = parser.parse_args()
    if args.quick:
        args.series = 3
    return args


# --- generating processes ---------------------------------------------------------


def noise(rng: random.Random, cv: float) -> float:
    """A lognormal factor with mean 1 and the given coefficient of variation."""
    s = math.sqrt(math.log(1 + cv * cv))
    return math.exp(rng.gauss(-s * s / 2, s))


def scale(rng: random.Random) -> float:
    return rng.lognormvariate(math.log(2000), 1.5)


def week_shape(rng: random.Random, weekend: tuple[float, float]) -> list[float]:
    low = rng.uniform(*weekend)
    return [rng.uniform(0.9, 1.2) for _ in range(5)] + [low, low * rng.uniform(0.7, 1)]


def weekly(rng: random.Random, days: list[date]) -> list[float | None]:
    base, shape, cv = scale(rng), week_shape(rng, (0.1, 0.4)), rng.uniform(0.08, 0.2)
    return [base * shape[d.weekday()] * noise(rng, cv) for d in days]


def trend(rng: random.Random, days: list[date]) -> list[float | None]:
    base, shape = scale(rng), week_shape(rng, (0.6, 0.9))
    daily = (1 + rng.uniform(-0.2, 0.4)) ** (1 / 30)
    return [
        base * daily**i * shape[d.weekday()] * noise(rng, 0.15)
        for i, d in enumerate(days)
    ]


def noisy(rng: random.Random, days: list[date]) -> list[float | None]:
    base, cv = scale(rng), rng.uniform(0.4, 0.8)
    return [0.0 if rng.random() < 0.05 else base * noise(rng, cv) for _ in days]


def month_start(rng: random.Random, days: list[date]) -> list[float | None]:
    base, shape, spike = scale(rng), week_shape(rng, (0.5, 0.9)), rng.uniform(3, 8)
    return [
        base * shape[d.weekday()] * noise(rng, 0.15) * (spike if d.day <= 2 else 1)
        for d in days
    ]


def new_tenant(rng: random.Random, days: list[date]) -> list[float | None]:
    born = add_months(FIRST, rng.randrange(2, PERIODS - 1))
    base, shape = scale(rng), week_shape(rng, (0.3, 0.8))
    return [
        None
        if d < born
        else base
        * min(1, 0.6 + (d - born).days / 60)
        * shape[d.weekday()]
        * noise(rng, 0.2)
        for d in days
    ]


def stops(rng: random.Random, days: list[date]) -> list[float | None]:
    stop = add_months(FIRST, 2) + timedelta(days=rng.randrange(0, 190))
    base, shape = scale(rng), week_shape(rng, (0.3, 0.9))
    return [
        0.0 if d >= stop else base * shape[d.weekday()] * noise(rng, 0.15) for d in days
    ]


def step(rng: random.Random, days: list[date]) -> list[float | None]:
    at = add_months(FIRST, 2) + timedelta(days=rng.randrange(0, 190))
    factor = rng.choice((0.4, 0.5, 2.0, 2.5))
    base, shape = scale(rng), week_shape(rng, (0.3, 0.9))
    return [
        base * (factor if d >= at else 1) * shape[d.weekday()] * noise(rng, 0.15)
        for d in days
    ]


PROCESSES: dict[str, Process] = {
    "weekly rhythm": weekly,
    "trend": trend,
    "noise": noisy,
    "month-start spikes": month_start,
    "brand-new tenant": new_tenant,
    "tenant that stops": stops,
    "step change": step,
}


# --- the backtest -----------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One series' forecasts of one period's total at one checkpoint."""

    process: str
    day: int
    actual: float
    ours: Forecast
    default: Forecast  # the same, with no residuals: the default band
    linear: float
    trailing: float


@dataclass(frozen=True)
class Forecast:
    p10: float
    p50: float
    p90: float
    method: str

    def covers(self, actual: float) -> bool:
        return self.p10 <= actual <= self.p90


def series_of(values: list[float | None], days: list[date]) -> DailySeries:
    """The days from the first known one on (a new tenant has none before)."""
    kept = [(d, v) for d, v in zip(days, values, strict=True) if v is not None]
    return DailySeries(
        tuple(d for d, _ in kept), tuple(Decimal(f"{v:.3f}") for _, v in kept)
    )


def cut(history: DailySeries, last: date) -> DailySeries:
    keep = (last - history.days[0]).days + 1
    return DailySeries(history.days[:keep], history.quantities[:keep])


def forecast(seen: DailySeries, start: date, residuals: list[float]) -> Forecast:
    last = seen.days[-1]
    progress = PeriodProgress(
        start,
        add_months(start, 1),
        datetime.combine(last + timedelta(days=1), day_time(), UTC),
        day_fraction=1.0,
    )
    f = forecast_quantity(seen, progress, residuals)
    return Forecast(float(f.p10), float(f.p50), float(f.p90), f.method)


def references(seen: DailySeries, day: int, length: int) -> tuple[float, float]:
    """(linear pace, trailing 28-day mean rate) projections of the period total."""
    values = [float(q) for q in seen.quantities]
    so_far = sum(values[-day:])
    recent = values[-28:]
    return so_far / day * length, so_far + sum(recent) / len(recent) * (length - day)


def run_period(
    process: str, history: DailySeries, start: date, residuals: list[float]
) -> list[Case]:
    """Forecasts of one period at each checkpoint (none if it had no usage)."""
    length = (add_months(start, 1) - start).days
    actual = float(
        sum(cut(history, start + timedelta(days=length - 1)).quantities[-length:])
    )
    cases = []
    for day in CHECKPOINTS:
        if day >= length or actual <= 0:
            continue
        seen = cut(history, start + timedelta(days=day - 1))
        linear, trailing = references(seen, day, length)
        ours, default = forecast(seen, start, residuals), forecast(seen, start, [])
        cases.append(Case(process, day, actual, ours, default, linear, trailing))
    return cases


def histories(
    args: argparse.Namespace, days: list[date]
) -> list[tuple[str, DailySeries]]:
    found = []
    for p, (name, process) in enumerate(PROCESSES.items()):
        for i in range(args.series):
            rng = random.Random(args.seed * 1_000_003 + p * 1009 + i)
            found.append((name, series_of(process(rng, days), days)))
    return found


def backtest(args: argparse.Namespace) -> tuple[list[Case], float]:
    """Every series' periods after the first, each calibrated on the ones before."""
    starts = [add_months(FIRST, k) for k in range(PERIODS)]
    days = [
        FIRST + timedelta(days=i)
        for i in range((add_months(starts[-1], 1) - FIRST).days)
    ]
    series = histories(args, days)
    # residuals[s][k]: series s's backtest residuals of period k
    residuals = [
        [backtest_residuals(h, [start], CHECKPOINTS) for start in starts]
        for _, h in series
    ]
    cases: list[Case] = []
    began = time.perf_counter()
    for k in range(1, PERIODS):
        pooled = [r for own in residuals for period in own[:k] for r in period]
        for s, (name, history) in enumerate(series):
            if history.days[0] > starts[k]:
                continue  # a tenant not yet born
            own = [r for period in residuals[s][:k] for r in period]
            chosen = own if len(own) >= OWN_ENOUGH else pooled
            cases.extend(run_period(name, history, starts[k], chosen))
        progress(f"period {k + 1} of {PERIODS}: {len(cases):,} checkpoints")
    per_call = (time.perf_counter() - began) / (2 * len(cases))
    return cases, per_call


# --- figures ----------------------------------------------------------------------


def median_ape(cases: list[Case], pick: Callable[[Case], float]) -> float:
    return statistics.median(abs(pick(c) - c.actual) / c.actual for c in cases)


def coverage(cases: list[Case], pick: Callable[[Case], Forecast]) -> float:
    return sum(pick(c).covers(c.actual) for c in cases) / len(cases)


def print_checkpoint(report: Report, day: int, group: list[Case]) -> None:
    ours = median_ape(group, lambda c: c.ours.p50)
    linear = median_ape(group, lambda c: c.linear)
    trailing = median_ape(group, lambda c: c.trailing)
    target = "<= 0.6x linear pace" if day <= 7 else "<= linear pace"
    label = f"day {day:>2}"
    report.figure(
        f"median APE {label}, ours (p50, n={len(group):,})", f"{ours:.1%}", target
    )
    report.reference(f"median APE {label}, linear pace", f"{linear:.1%}")
    report.reference(f"median APE {label}, trailing 28-day mean", f"{trailing:.1%}")
    report.ratio(f"ours / linear pace, {label}", ratio_text(ours, linear))
    report.ratio(f"ours / trailing 28-day mean, {label}", ratio_text(ours, trailing))
    width = statistics.median((c.ours.p90 - c.ours.p10) / c.actual for c in group)
    report.figure(
        f"80% interval coverage {label}",
        f"{coverage(group, lambda c: c.ours):.1%} (median width {width:.1%} of actual)",
        "75-85%",
    )
    report.figure(
        f"default band coverage {label} (no residuals)",
        f"{coverage(group, lambda c: c.default):.1%}",
    )


def print_processes(report: Report, cases: list[Case]) -> None:
    for name in PROCESSES:
        parts = []
        for day in CHECKPOINTS:
            group = [c for c in cases if c.process == name and c.day == day]
            if group:
                ours = median_ape(group, lambda c: c.ours.p50)
                linear = median_ape(group, lambda c: c.linear)
                covered = coverage(group, lambda c: c.ours)
                parts.append(f"d{day} {ours:.1%}/{linear:.1%} {covered:.0%}")
        report.note(f"{name:<18} " + "  ".join(parts))


def print_pool(args: argparse.Namespace) -> None:
    """The 1st..99th percentiles of every series' residuals over every period:
    the band a tenant without enough backtests of its own is given."""
    starts = [add_months(FIRST, k) for k in range(PERIODS)]
    days = [
        FIRST + timedelta(days=i)
        for i in range((add_months(starts[-1], 1) - FIRST).days)
    ]
    pooled = sorted(
        r
        for _, h in histories(args, days)
        for start in starts
        for r in backtest_residuals(h, [start], CHECKPOINTS)
    )
    cuts = [pooled[min(len(pooled) - 1, len(pooled) * k // 100)] for k in range(1, 100)]
    print(
        '"""Pooled backtest residuals: the 1st to 99th percentiles of'
        f" {len(pooled):,} residuals\nof synthetic tenants (every process of"
        f" bench/forecast_method.py, {args.series} series\neach, seed {args.seed})."
        " A series with fewer own residuals than OWN_RESIDUALS is\ncalibrated on"
        " these. Regenerate: python bench/forecast_method.py --pool"
        f" --seed {args.seed}\n"
        '"""\n'
    )
    print("POOLED_RESIDUALS = (")
    for value in cuts:
        print(f"    {value:.4f},")
    print(")")


def main() -> None:
    args = arguments()
    if args.pool:
        print_pool(args)
        return
    report = Report("forecast method backtest (no services)")
    report.setup(
        f"{len(PROCESSES)} processes x {args.series} series, {PERIODS} monthly "
        f"periods from {FIRST}, seed {args.seed}; forecasts at the end of days "
        f"{', '.join(map(str, CHECKPOINTS))} of periods 2-{PERIODS}; intervals "
        f"calibrated on earlier periods only (own residuals from {OWN_ENOUGH}, "
        "else pooled over all series)"
    )
    cases, per_call = backtest(args)
    for day in CHECKPOINTS:
        print_checkpoint(report, day, [c for c in cases if c.day == day])
    report.note(
        "per process: median APE ours/linear pace, coverage of our 80% interval"
    )
    print_processes(report, cases)
    methods = Counter(c.ours.method for c in cases)
    report.note(
        "methods: " + ", ".join(f"{m} {n:,}" for m, n in sorted(methods.items()))
    )
    report.figure("forecast_quantity, one call (mean)", f"{per_call * 1e6:,.0f} us")


if __name__ == "__main__":
    main()

"""Projected end-of-period quantities: a median and an 80% interval, and their charges.

The method (chosen on the backtest of bench/forecast_method.py, which prints
how it compares with the linear pace):

- What is left of the period is the sum, over the days to come (the current,
  partial day counting 1 - day_fraction), of a **level** times a **weekday
  factor**. The factors are medians, per weekday, of each day's share of its
  week over the last 8 whole weeks, shrunk toward 1 as far as the weeks
  disagree (so pure noise makes no rhythm). The level smooths the days divided
  by their factor, spikes left out (far above the median of the last two
  weeks): of a few exponential smoothers, with and without a damped trend, the
  one whose week-ahead forecasts erred least over the last weeks is used. So a
  steady series is averaged over weeks and a step change is followed within
  days. A day of the period that spiked in both periods before (a monthly
  job) is expected to spike again, by the smaller of the two. A run of zero
  days that the history makes very unlikely means usage stopped: the level is
  then zero.
- Fallbacks: under 14 complete days, their mean (`recent_mean`); with none
  before the period either, the pace of the period so far (`linear_pace`).
- Why: the linear pace extrapolates a few days, whose weekday mix and noise it
  takes for the month's; history gives the weekday mix and a level resting on
  weeks. Medians, left-out spikes and the stop rule keep one odd day from
  moving a month's projection.
- The interval is split-conformal. A **residual** is
  ``log((actual_left + floor) / (projected_left + floor)) / sigma`` (clipped to
  +-10), where `floor` is half a typical day (a zero stays finite) and `sigma`
  the spread the projection expects: day-to-day noise over the days left, the
  level's error (what its own week-ahead backtest missed) growing with them,
  and a drift. Dividing by sigma puts a noisy tenant's day 1 and a steady
  tenant's day 28 on one scale, so residuals pool across checkpoints and
  tenants. p10, p50 and p90 come from the residuals' 10th percentile, median
  and 90th percentile (finite-sample ranks). With fewer than MIN_RESIDUALS the
  band is a normal one made 1.5 times wider, and the forecast is `low_data`.

Everything is a function of the arguments: no clock, no randomness.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal

from domain.periods import add_months
from domain.pricing import Price
from domain.values import ZERO, InvalidValue, canonical_decimal

WEEK = 7
PROFILE_WEEKS = 8
MIN_PROFILE_DAYS = 14
LEVEL_DAYS = 28
SMOOTHED_DAYS = PROFILE_WEEKS * WEEK + WEEK
KEPT_DAYS = 3 * 31  # two whole periods before the current one, for their spikes
# A spike: above SPIKE_RATIO times the median of the last SPIKE_DAYS (or
# SPIKE_SPREADS log-deviations of the last LEVEL_DAYS, for a noisy series).
SPIKE_RATIO = 2.5
SPIKE_DAYS = 14
SPIKE_SPREADS = 4.0
# (alpha, beta) of the exponential smoothers tried: level, damped trend.
SMOOTHERS = tuple((a, b) for b in (0.0, 0.05) for a in (0.03, 0.07, 0.15, 0.3))
DEFAULT_SMOOTHER = (0.1, 0.0)
MIN_FIT_ORIGINS = 7
DAMPING = 0.95
# A trailing run of zero days means "stopped" when at least this long and less
# likely than STOP_CHANCE under each weekday's (smoothed) share of zero days.
MIN_STOP_RUN = 3
STOP_CHANCE = 0.01
# sigma: day-to-day variation assumed until the data says otherwise (and its
# weight in days), the weight of noise, how the level's error grows over 28
# days left, the drift over 28 days (log scale). Set on the backtest.
PRIOR_CV = 0.5
PRIOR_DAYS = 2.0
NOISE_WEIGHT = 2.0
LEVEL_GROWTH = 2.0
DRIFT = 0.1
MAX_SIGMA = 3.0
# Residuals: how many make an empirical band, how far one may go, the default.
MIN_RESIDUALS = 20
MAX_RESIDUAL = 10.0
DEFAULT_Z = 1.2816 * 1.5
LOW_DATA_DAYS = 28
_EMPTY_FACTOR = 0.05  # a weekday below this share of an average day is empty

# The projected part of a quantity: 6 significant digits, at most 9 decimals.
_ESTIMATE = Context(prec=6, rounding=ROUND_HALF_EVEN)
_EXACT = Context(prec=60, rounding=ROUND_HALF_EVEN)
_SMALLEST = Decimal("1E-9")
_MOST = 1e18  # the largest quantity there is (values.MAX_INTEGER_DIGITS)
# The pace of the first minutes would multiply them by thousands.
_LEAST_ELAPSED = 1 / 24


@dataclass(frozen=True, slots=True)
class DailySeries:
    """One series (tenant, product area, unit[, workspace]) in the tenant's calendar:
    consecutive local days, oldest first, missing days filled in as 0."""

    days: tuple[date, ...]
    quantities: tuple[Decimal, ...]

    def __post_init__(self) -> None:
        if len(self.days) != len(self.quantities):
            raise InvalidValue("days and quantities must be as many")
        if self.days and (self.days[-1] - self.days[0]).days != len(self.days) - 1:
            raise InvalidValue("days must be consecutive, oldest first")


@dataclass(frozen=True, slots=True)
class PeriodProgress:
    """How far into the billing period [start, end) the data goes.

    The history's last day is the one containing `observed_until` (with no
    history: `observed_until.date()`, so give it in the tenant's zone), and
    `day_fraction` of it has elapsed (1.0: it is complete)."""

    start: date
    end: date
    observed_until: datetime
    day_fraction: float


@dataclass(frozen=True, slots=True)
class QuantityForecast:
    """The actual quantity so far and the projected one at the period's end.

    `history_days`: days before the period start the method read; `low_data`:
    under LOW_DATA_DAYS complete days, or too few residuals for a calibrated
    band (the default band is used)."""

    to_date: Decimal
    p10: Decimal
    p50: Decimal
    p90: Decimal
    method: str
    history_days: int
    low_data: bool


@dataclass(frozen=True, slots=True)
class _Day:
    """A day still to come in the period."""

    ahead: int  # days after the last complete one (the current day: 1)
    weekday: int
    share: float  # of the day still to come (1 - day_fraction for the current)
    index: int  # in the period, 0 for its first day


@dataclass(frozen=True, slots=True)
class _Observed:
    """A series seen from one moment of a period."""

    start: date
    current: date
    to_date: Decimal
    full: tuple[float, ...]  # up to KEPT_DAYS complete days before the current one
    partial: float  # the current day's quantity so far
    fraction: float
    prior_days: int  # days of `full` before the period start
    elapsed: float  # days of the period observed, the partial one in part
    remaining: tuple[_Day, ...]

    @property
    def first_weekday(self) -> int:
        """full[i] falls on weekday (first_weekday + i) % 7."""
        return (self.current.weekday() - len(self.full)) % WEEK

    @property
    def share_left(self) -> float:
        return sum(day.share for day in self.remaining)


@dataclass(frozen=True, slots=True)
class _Projection:
    """The point projection of what is left of the period, and its spread."""

    remaining: float
    sigma: float  # expected spread of log(actual / projected remaining)
    floor: float  # added to both sides of that ratio so a zero stays finite
    method: str
    history_days: int


def forecast_quantity(
    history: DailySeries, progress: PeriodProgress, residuals: Sequence[float] = ()
) -> QuantityForecast:
    """The quantity at the period's end: p10, p50, p90 and how they were made.

    `residuals` are backtest_residuals() of this tenant, or pooled across
    tenants while its own are few."""
    seen = _observe(history, progress)
    if not seen.remaining:
        total = seen.to_date
        return QuantityForecast(total, total, total, total, "actuals", 0, False)
    projection = _project(seen)
    low, middle, high = _band(residuals)
    scarce = len(residuals) < MIN_RESIDUALS
    return QuantityForecast(
        to_date=seen.to_date,
        p10=_quantity(seen.to_date, projection, low),
        p50=_quantity(seen.to_date, projection, middle),
        p90=_quantity(seen.to_date, projection, high),
        method=projection.method,
        history_days=projection.history_days,
        low_data=scarce or len(seen.full) + seen.fraction < LOW_DATA_DAYS,
    )


def backtest_residuals(
    history: DailySeries, period_starts: Sequence[date], checkpoints: Sequence[int]
) -> list[float]:
    """Residuals of forecasts made at the end of day `checkpoint` (1 = the first)
    of each complete period in `history`, with the data cut there. A period
    without usage tells nothing about relative errors and is left out."""
    found: list[float] = []
    for start in period_starts:
        end = add_months(start, 1)
        if not history.days or history.days[-1] < end - timedelta(days=1):
            continue
        actual = _total(history, start, end)
        if actual <= 0:
            continue
        for day in checkpoints:
            cut = _until(history, start + timedelta(days=day - 1))
            if cut.days and 0 < day < (end - start).days:
                found.append(_residual(cut, start, end, actual))
    return found


def price_quantiles(
    price: Price, currency: str, forecast: QuantityForecast
) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """Charges to date and at p10, p50, p90: each quantity priced through the
    tiers (charge is monotone in quantity, so these are the charge's quantiles)."""
    return (
        price.charge(forecast.to_date, currency),
        price.charge(forecast.p10, currency),
        price.charge(forecast.p50, currency),
        price.charge(forecast.p90, currency),
    )


# Observing: the period so far and the days to come.


def _observe(history: DailySeries, progress: PeriodProgress) -> _Observed:
    if history.days:
        current, quantities = history.days[-1], history.quantities
    else:
        current, quantities = progress.observed_until.date(), (ZERO,)
    first = current - timedelta(days=len(quantities) - 1)
    begin = max(0, (progress.start - first).days)
    inside = quantities[begin : max(begin, (progress.end - first).days)]
    full = tuple(float(q) for q in quantities[-KEPT_DAYS - 1 : -1])
    fraction = min(1.0, max(0.0, progress.day_fraction))
    since_start = (current - progress.start).days
    return _Observed(
        start=progress.start,
        current=current,
        to_date=sum(inside, ZERO),
        full=full,
        partial=float(quantities[-1]),
        fraction=fraction,
        prior_days=min(len(full), max(0, len(full) - since_start)),
        elapsed=since_start + fraction if since_start >= 0 else 0.0,
        remaining=_remaining(current, fraction, progress.start, progress.end),
    )


def _remaining(
    current: date, fraction: float, start: date, end: date
) -> tuple[_Day, ...]:
    def day_to_come(day: date, share: float) -> _Day:
        return _Day((day - current).days + 1, day.weekday(), share, (day - start).days)

    days = []
    if start <= current < end and fraction < 1:
        days.append(day_to_come(current, 1 - fraction))
    day = max(start, current + timedelta(days=1))
    while day < end:
        days.append(day_to_come(day, 1.0))
        day += timedelta(days=1)
    return tuple(days)


def _until(history: DailySeries, last: date) -> DailySeries:
    if not history.days or last < history.days[0]:
        return DailySeries((), ())
    keep = (last - history.days[0]).days + 1
    return DailySeries(history.days[:keep], history.quantities[:keep])


def _total(history: DailySeries, start: date, end: date) -> float:
    inside = zip(history.days, history.quantities, strict=True)
    return float(sum((q for d, q in inside if start <= d < end), ZERO))


# Projecting: the methods.


def _project(seen: _Observed) -> _Projection:
    if len(seen.full) >= MIN_PROFILE_DAYS:
        return _weekday_profile(seen)
    if seen.prior_days:
        return _recent_mean(seen)
    return _linear_pace(seen)


def _linear_pace(seen: _Observed) -> _Projection:
    elapsed = max(seen.elapsed, _LEAST_ELAPSED)
    rate = float(seen.to_date) / elapsed
    share = seen.share_left
    sigma = _sigma(PRIOR_CV, elapsed, share, share)
    return _Projection(rate * share, sigma, rate / 2, "linear_pace", 0)


def _recent_mean(seen: _Observed) -> _Projection:
    observed = len(seen.full) + seen.fraction
    rate = (sum(seen.full) + seen.partial) / observed
    share = seen.share_left
    sigma = _sigma(_shrunk_cv(_cv(seen.full), len(seen.full)), observed, share, share)
    return _Projection(rate * share, sigma, rate / 2, "recent_mean", seen.prior_days)


def _weekday_profile(seen: _Observed) -> _Projection:
    factors = _weekday_factors(seen.full, seen.first_weekday)
    level = _level(seen, factors)
    spikes = _recurring_spikes(seen, factors)
    expected = [
        day.share * factors[day.weekday] * spikes.get(day.index, 1.0) * level.at(day)
        for day in seen.remaining
    ]
    total = sum(expected)
    squares = sum(e * e for e in expected)
    horizon = total * total / squares if squares > 0 else 0.0
    share = seen.share_left
    sigma = _sigma(level.cv, level.days, horizon, share, level.missed)
    window = seen.full[-LEVEL_DAYS:]
    floor = sum(window) / len(window) / 2
    return _Projection(total, sigma, floor, "weekday_profile", seen.prior_days)


# The weekday profile's parts: factors, level, recurring spikes, a stop.


@dataclass(frozen=True, slots=True)
class _Level:
    """The smoothed deseasonalised daily quantity and what it rests on."""

    level: float
    trend: float
    days: float  # effective number of days behind the level
    cv: float  # of the deseasonalised days
    missed: float | None  # mean absolute log error of its week-ahead backtest

    def at(self, day: _Day) -> float:
        return max(0.0, self.level + self.trend * _damped(day.ahead))


def _weekday_factors(full: Sequence[float], first: int) -> list[float]:
    """Per weekday (Monday 0), the median of each day's share of its week (x7),
    shrunk toward 1 as far as the weeks disagree (James-Stein). Weeks are whole
    and end on the last complete day."""
    ratios: list[list[float]] = [[] for _ in range(WEEK)]
    for week in range(min(PROFILE_WEEKS, len(full) // WEEK)):
        begin = len(full) - WEEK * (week + 1)
        block = full[begin : begin + WEEK]
        mean = sum(block) / WEEK
        if mean > 0:
            for i, quantity in enumerate(block, start=begin):
                ratios[(first + i) % WEEK].append(max(0.0, quantity) / mean)
    raw = [_median(r) for r in ratios]
    middle = sum(raw) / WEEK
    between = sum((r - middle) ** 2 for r in raw)
    if not ratios[0] or middle <= 0 or between <= 0:
        return [1.0] * WEEK
    # The variance of a median of n draws is about pi/2 times the mean's.
    within = sum(_mad(r) ** 2 * math.pi / 2 / len(r) for r in ratios) / WEEK
    keep = max(0.0, 1 - (WEEK - 3) * within / between)
    return [1 + keep * (r - middle) / middle for r in raw]


def _level(seen: _Observed, factors: Sequence[float]) -> _Level:
    """The chosen smoother run over the recent days (spikes left out), then
    nudged by the partial current day; zero once usage stopped."""
    recent = seen.full[-SMOOTHED_DAYS:]
    first = (seen.first_weekday + len(seen.full) - len(recent)) % WEEK
    values = _deseasonalised(recent, first, factors)
    alpha, beta, missed = _chosen_smoother(values)
    level, trend = _smoothed(values, alpha, beta)[-1] if values else (0.0, 0.0)
    factor = factors[seen.current.weekday()]
    if seen.fraction > 0 and factor > _EMPTY_FACTOR:
        today = seen.partial / (seen.fraction * factor)
        if today <= _spike_threshold(values[-SPIKE_DAYS:], values[-LEVEL_DAYS:]):
            level += alpha * seen.fraction * (today - level)
    if _stopped(seen.full, seen.first_weekday):
        level, trend = 0.0, 0.0
    window = values[-LEVEL_DAYS:]
    cv = _shrunk_cv(_cv(window), len(window))
    return _Level(level, trend, (2 - alpha) / alpha, cv, missed)


def _deseasonalised(
    full: Sequence[float], first: int, factors: Sequence[float]
) -> list[float]:
    """Each day over its weekday factor, oldest first; spikes and the days of
    an empty weekday left out."""
    values = [
        max(0.0, quantity) / factors[(first + i) % WEEK]
        for i, quantity in enumerate(full)
        if factors[(first + i) % WEEK] > _EMPTY_FACTOR
    ]
    cap = _spike_threshold(values[-SPIKE_DAYS:], values[-LEVEL_DAYS:])
    return [v for v in values if v <= cap]


def _spike_threshold(recent: Sequence[float], window: Sequence[float]) -> float:
    """Far above the median of `recent`, for how much the days of `window` vary."""
    middle = _median(recent)
    positive = [v for v in window if v > 0]
    if middle <= 0 or not positive:
        return math.inf
    centre = _median(positive)
    spread = _mad([math.log(v / centre) for v in positive])
    return middle * max(SPIKE_RATIO, math.exp(SPIKE_SPREADS * spread))


def _recurring_spikes(seen: _Observed, factors: Sequence[float]) -> dict[int, float]:
    """Day of the period -> how many times a usual day it was in each of the two
    periods before, for the days that were spikes in both (a monthly job)."""
    oldest = seen.current - timedelta(days=len(seen.full))
    found: dict[int, float] | None = None
    for back in (2, 1):
        begin = add_months(seen.start, -back)
        offset, length = (begin - oldest).days, (add_months(begin, 1) - begin).days
        if offset < 0 or offset + length > len(seen.full):
            return {}
        first = (seen.first_weekday + offset) % WEEK
        ratios = _spikes(seen.full[offset : offset + length], first, factors)
        found = ratios if found is None else _common(found, ratios)
    return found or {}


def _spikes(
    days: Sequence[float], first: int, factors: Sequence[float]
) -> dict[int, float]:
    """Index -> multiple of the median, for the days of `days` that are spikes."""
    values = {
        i: max(0.0, quantity) / factors[(first + i) % WEEK]
        for i, quantity in enumerate(days)
        if factors[(first + i) % WEEK] > _EMPTY_FACTOR
    }
    middle = _median(list(values.values()))
    cap = _spike_threshold(list(values.values()), list(values.values()))
    return {i: v / middle for i, v in values.items() if v > cap}


def _common(one: dict[int, float], other: dict[int, float]) -> dict[int, float]:
    return {i: min(v, other[i]) for i, v in one.items() if i in other}


def _smoothed(
    values: Sequence[float], alpha: float, beta: float
) -> list[tuple[float, float]]:
    """(level, trend) after each value: Holt's damped trend (beta 0: no trend)."""
    level, trend = sum(values[:WEEK]) / len(values[:WEEK]), 0.0
    states = []
    for value in values:
        before = level
        level = alpha * value + (1 - alpha) * (level + DAMPING * trend)
        trend = beta * (level - before) + (1 - beta) * DAMPING * trend
        states.append((level, trend))
    return states


def _damped(ahead: int) -> float:
    """How many trends `ahead` days add up to, damped."""
    return DAMPING * (1 - DAMPING**ahead) / (1 - DAMPING)


def _chosen_smoother(values: Sequence[float]) -> tuple[float, float, float | None]:
    """The (alpha, beta) whose week-ahead forecasts erred least over the last
    weeks, and that error (mean absolute log ratio; None: too few weeks).

    A pure function of the complete days, the costliest part of a forecast:
    remembered by them, so forecasts made again on the same days (every
    re-projection of a period during one day, its backtests, replays and
    as-of reads of nearby points) fit the smoother once."""
    return _fitted_smoother(tuple(values))


@functools.lru_cache(maxsize=1 << 12)
def _fitted_smoother(values: tuple[float, ...]) -> tuple[float, float, float | None]:
    origins = range(2 * WEEK - 1, len(values) - WEEK)
    if len(origins) < MIN_FIT_ORIGINS:
        return *DEFAULT_SMOOTHER, None
    sums = [0.0]
    for v in values:
        sums.append(sums[-1] + v)
    floor = sums[-1] / len(values) / 2 + 1e-9
    ahead = sum(_damped(h) for h in range(1, WEEK + 1)) / WEEK
    best, least = DEFAULT_SMOOTHER, math.inf
    for alpha, beta in SMOOTHERS:  # simplest first: a tie keeps the simpler
        states = _smoothed(values, alpha, beta)
        error = 0.0
        for t in origins:
            level, trend = states[t]
            predicted = max(0.0, level + trend * ahead)
            actual = (sums[t + 1 + WEEK] - sums[t + 1]) / WEEK
            error += abs(math.log((actual + floor) / (predicted + floor)))
        if error < least:
            best, least = (alpha, beta), error
    return *best, least / len(origins)


def _stopped(full: Sequence[float], first: int) -> bool:
    """A trailing run of zero days the weeks before make less likely than
    STOP_CHANCE (each weekday's share of zero days, Laplace-smoothed)."""
    run = 0
    while run < len(full) and full[-1 - run] <= 0:
        run += 1
    if run < MIN_STOP_RUN or run == len(full):
        return False
    zeros, days = [0] * WEEK, [0] * WEEK
    for i, quantity in enumerate(full[: len(full) - run]):
        days[(first + i) % WEEK] += 1
        zeros[(first + i) % WEEK] += quantity <= 0
    chance = 1.0
    for i in range(len(full) - run, len(full)):
        weekday = (first + i) % WEEK
        chance *= (zeros[weekday] + 1) / (days[weekday] + 2)
    return chance < STOP_CHANCE


# The spread, the residuals, the band and quantities from them.


def _cv(values: Sequence[float]) -> float:
    """Robust coefficient of variation: MAD / median (1.0 if the median is 0)."""
    if len(values) < 2:
        return PRIOR_CV
    middle = _median(values)
    return _mad(values) / middle if middle > 0 else 1.0


def _shrunk_cv(cv: float, days: int) -> float:
    return math.sqrt((days * cv * cv + PRIOR_DAYS * PRIOR_CV**2) / (days + PRIOR_DAYS))


def _sigma(
    cv: float,
    level_days: float,
    horizon: float,
    days_left: float,
    missed: float | None = None,
) -> float:
    """The expected spread of log(actual / projected remaining): noise over the
    horizon, the level's error growing with the days left, a drift. The
    level's error is what its week-ahead backtest `missed` beyond a week's
    noise, when measured, else what `level_days` days of noise leave."""
    noise = NOISE_WEIGHT * cv * cv / max(horizon, 0.25)
    level = cv * cv / max(level_days, 0.25)
    if missed is not None:
        level = max(level, (1.25 * missed) ** 2 - cv * cv / WEEK)
    level *= 1 + LEVEL_GROWTH * days_left / 28
    drift = DRIFT * DRIFT * days_left / 28
    return min(MAX_SIGMA, math.sqrt(noise + level + drift))


def _residual(cut: DailySeries, start: date, end: date, actual: float) -> float:
    progress = PeriodProgress(
        start, end, datetime.combine(cut.days[-1], time(), UTC), day_fraction=1.0
    )
    seen = _observe(cut, progress)
    projection = _project(seen)
    left = max(0.0, actual - float(seen.to_date))
    floor = max(projection.floor, 1e-9)
    ratio = math.log((left + floor) / (projection.remaining + floor))
    return _clipped(ratio / projection.sigma)


def _clipped(residual: float) -> float:
    """Within +-MAX_RESIDUAL (NaN: 0), so one wild period cannot stretch a band."""
    if math.isnan(residual):
        return 0.0
    return max(-MAX_RESIDUAL, min(MAX_RESIDUAL, residual))


def _band(residuals: Sequence[float]) -> tuple[float, float, float]:
    """The (p10, p50, p90) residuals: split-conformal ranks, or the default."""
    if len(residuals) < MIN_RESIDUALS:
        return -DEFAULT_Z, 0.0, DEFAULT_Z
    ordered = sorted(_clipped(r) for r in residuals)
    n = len(ordered)
    low = ordered[max(0, math.floor(0.1 * (n + 1)) - 1)]
    high = ordered[min(n - 1, math.ceil(0.9 * (n + 1)) - 1)]
    return low, _median(ordered), high


def _quantity(to_date: Decimal, projection: _Projection, z: float) -> Decimal:
    """to_date plus the projection moved by z sigmas (6 significant digits)."""
    floor = projection.floor  # 0 only when nothing was ever used: nothing to scale
    left = (projection.remaining + floor) * math.exp(z * projection.sigma) - floor
    if not left > 0:  # also NaN
        return to_date
    estimate = _ESTIMATE.create_decimal_from_float(min(left, _MOST)).quantize(
        _SMALLEST, context=_EXACT
    )
    return canonical_decimal(_EXACT.add(to_date, estimate))


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return 0.0
    middle = n // 2
    return ordered[middle] if n % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _mad(values: Sequence[float]) -> float:
    """Median absolute deviation, scaled to a normal standard deviation."""
    middle = _median(values)
    return 1.4826 * _median([abs(v - middle) for v in values])

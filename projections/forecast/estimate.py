"""The forecast of one tenant's billing period, from its inputs (pure: no I/O).

Given the tenant's calendar, the instant the history says it is, its daily
quantities per (workspace, product area, unit), each series' own backtest
residuals, its price book and budget, `estimate_period` answers every line
(per workspace and for the whole tenant) and the tenant's total. The
projection stores what this returns; a replay can call it again.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from domain.forecast_pool import POOLED_RESIDUALS
from domain.forecasting import (
    KEPT_DAYS,
    DailySeries,
    PeriodProgress,
    QuantityForecast,
    backtest_residuals,
    forecast_quantity,
)
from domain.periods import BillingPeriod, local_midnight, usage_date
from domain.pricing import Price, PriceBook
from domain.values import ZERO
from projections.usage_series import SeriesKey, TenantCalendar

# A whole tenant's line has this as its workspace_id.
ALL_WORKSPACES = ""
# Own residuals from this many on (five closed periods); pooled ones before.
OWN_RESIDUALS = 30
# The checkpoints (end of day N of a period) a closed period is backtested at.
CHECKPOINTS = (1, 3, 7, 14, 21, 28)
# How far back a series' history matters to a period's forecast.
WINDOW = timedelta(days=KEPT_DAYS + 1)


@dataclass(frozen=True, slots=True)
class Line:
    """One series' quantities and, for a whole-tenant priced line, charges
    (a workspace's line is priced when its product area and unit are, but has
    no charges of its own: tiers apply to the tenant's whole quantity)."""

    key: SeriesKey
    forecast: QuantityForecast
    calibration: str  # own | pooled: whose backtests the interval comes from
    charges: tuple[Decimal, Decimal, Decimal, Decimal] | None  # to date, p10-p90
    residuals: tuple[float, ...] | None  # a closed period's own backtests
    priced: bool = False  # the price book has a price for its area and unit


@dataclass(frozen=True, slots=True)
class PeriodEstimate:
    """The answer for one tenant and period, as the read model stores it."""

    calendar: TenantCalendar
    period: BillingPeriod
    status: str  # open | closed
    data_through: datetime
    currency: str | None
    budget: Decimal | None
    lines: tuple[Line, ...]
    breach_date: date | None = None  # when the p50 path reaches the budget

    @property
    def tenant_id(self) -> str:
        return self.calendar.tenant_id

    @property
    def priced_lines(self) -> list[Line]:
        return [
            line
            for line in self.lines
            if line.key.workspace_id == ALL_WORKSPACES and line.priced
        ]

    def total(self) -> tuple[Decimal, Decimal, Decimal, Decimal] | None:
        """Charges to date and the projected p10, p50, p90 of the priced lines.

        The lines' percentiles are added, as if they moved together: the
        interval is then at least as wide as the total's true one."""
        priced = self.priced_lines
        if not priced:
            return None
        sums = [
            sum((line.charges[i] for line in priced if line.charges), ZERO)
            for i in range(4)
        ]
        return sums[0], sums[1], sums[2], sums[3]

    def headline(self) -> Line | None:
        """The line that weighs most in the total: its method, history and
        low-data flag describe the estimate."""
        tenant = [x for x in self.lines if x.key.workspace_id == ALL_WORKSPACES]
        if not tenant:
            return None
        return max(
            tenant,
            key=lambda x: (x.priced, x.charges[2] if x.charges else x.forecast.p50),
        )


def progress_at(
    calendar: TenantCalendar, period: BillingPeriod, observed_until: datetime
) -> tuple[date, PeriodProgress]:
    """The last local day the forecast of `period` reads at `observed_until`, and
    how far into the period that is (a period that ended is seen at its end)."""
    day = usage_date(observed_until, calendar.timezone)
    if day >= period.end:
        last = period.end - timedelta(days=1)
        return last, PeriodProgress(period.start, period.end, observed_until, 1.0)
    begins = local_midnight(day, calendar.timezone)
    ends = local_midnight(day + timedelta(days=1), calendar.timezone)
    fraction = (observed_until - begins) / (ends - begins)
    return day, PeriodProgress(period.start, period.end, observed_until, fraction)


def series_of(
    quantities: Mapping[date, Decimal], first: date, last: date
) -> DailySeries:
    """Consecutive days first..last, the days with no usage as zero."""
    if last < first:
        return DailySeries((), ())
    days = _days(first, last)
    return DailySeries(days, tuple(quantities.get(d, ZERO) for d in days))


@functools.lru_cache(maxsize=512)
def _days(first: date, last: date) -> tuple[date, ...]:
    """first..last (every line of a period reads the same span)."""
    return tuple(first + timedelta(days=i) for i in range((last - first).days + 1))


def with_tenant_lines(
    days: Mapping[SeriesKey, Mapping[date, Decimal]],
) -> dict[SeriesKey, dict[date, Decimal]]:
    """The workspaces' series, plus their sums per (product area, unit)."""
    found: dict[SeriesKey, dict[date, Decimal]] = {k: dict(v) for k, v in days.items()}
    for key, quantities in days.items():
        if key.workspace_id == ALL_WORKSPACES:
            continue
        total = found.setdefault(
            SeriesKey(ALL_WORKSPACES, key.product_area, key.unit), {}
        )
        for day, quantity in quantities.items():
            total[day] = total.get(day, ZERO) + quantity
    return found


def first_days(since: Mapping[SeriesKey, date]) -> dict[SeriesKey, date]:
    """The workspaces' first days, and the earliest per (product area, unit)."""
    found = dict(since)
    for key, day in since.items():
        tenant = SeriesKey(ALL_WORKSPACES, key.product_area, key.unit)
        found[tenant] = min(day, found.get(tenant, day))
    return found


def estimate_period(  # noqa: PLR0913 - every input of a forecast, by name
    calendar: TenantCalendar,
    period: BillingPeriod,
    observed_until: datetime,
    days: Mapping[SeriesKey, Mapping[date, Decimal]],
    since: Mapping[SeriesKey, date],
    residuals: Mapping[SeriesKey, Sequence[float]],
    book: PriceBook | None,
    budget: Decimal | None,
) -> PeriodEstimate:
    """The forecast of `period` as the history stands at `observed_until`.

    `days` holds each workspace series' daily quantities (at least from
    WINDOW before the period to its end); `since` the first day each
    workspace series has usage on (before it, the series has no history,
    which is not the same as days of zero); `residuals` each series' own
    backtest residuals from closed periods before this one."""
    last_day, progress = progress_at(calendar, period, observed_until)
    closed = observed_until >= period.closes_at
    window = period.start - WINDOW
    began = first_days(since)
    lines = []
    for key, quantities in sorted(with_tenant_lines(days).items()):
        first = max(window, began.get(key, window))
        history = series_of(quantities, first, last_day)
        if not any(q for d, q in quantities.items() if first <= d <= last_day):
            continue
        own = residuals.get(key, ())
        calibration = "own" if len(own) >= OWN_RESIDUALS else "pooled"
        forecast = forecast_quantity(
            history, progress, own if calibration == "own" else POOLED_RESIDUALS
        )
        price = book.price_of(key.product_area, key.unit) if book else None
        charges = None
        if (
            price is not None
            and book is not None
            and key.workspace_id == ALL_WORKSPACES
        ):
            charges = _charges(price, book.currency, forecast)
        backtests = None
        if closed:
            last = period.end - timedelta(days=1)
            backtests = _backtests(series_of(quantities, first, last), period.start)
        lines.append(
            Line(key, forecast, calibration, charges, backtests, price is not None)
        )
    estimate = PeriodEstimate(
        calendar,
        period,
        "closed" if closed else "open",
        observed_until,
        book.currency if book else None,
        budget,
        tuple(lines),
    )
    if budget is None or book is None:
        return estimate
    return replace(estimate, breach_date=_breach_date(estimate, book, days))


@functools.lru_cache(maxsize=2048)
def _backtests(history: DailySeries, start: date) -> tuple[float, ...]:
    """A closed period's own backtest residuals: a pure function of its
    series up to the period's end, so remembered by it (a replay, `billing
    audit verify` or a re-projection of a closed period asks again for the
    same periods' backtests, the most costly part of an estimate)."""
    return tuple(backtest_residuals(history, [start], CHECKPOINTS))


def _charges(
    price: Price, currency: str, forecast: QuantityForecast
) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """Each quantity priced through the tiers (charge is monotone in quantity,
    so these are the charge's percentiles)."""
    return (
        price.charge(forecast.to_date, currency),
        price.charge(forecast.p10, currency),
        price.charge(forecast.p50, currency),
        price.charge(forecast.p90, currency),
    )


def _breach_date(
    estimate: PeriodEstimate,
    book: PriceBook,
    days: Mapping[SeriesKey, Mapping[date, Decimal]],
) -> date | None:
    """The first day the charges reach the budget: from the actual days so far,
    then along the p50 projection, its remaining quantity spread evenly over
    the days left. None when the p50 stays under the budget (or nothing is
    priced)."""
    total = estimate.total()
    if estimate.budget is None or total is None or total[2] < estimate.budget:
        return None
    period = estimate.period
    last_day, progress = progress_at(estimate.calendar, period, estimate.data_through)
    tenant = with_tenant_lines(days)
    span = [
        period.start + timedelta(days=i)
        for i in range((period.end - period.start).days)
    ]
    left_days = [d for d in span if d > last_day]
    share_today = 1 - progress.day_fraction if last_day < period.end else 0.0
    shares = share_today + len(left_days)
    cumulative: dict[date, Decimal] = defaultdict(lambda: ZERO)
    for line in estimate.priced_lines:
        price = book.price_of(line.key.product_area, line.key.unit)
        assert price is not None
        quantities = tenant.get(line.key, {})
        left = line.forecast.p50 - line.forecast.to_date
        running = ZERO
        for day in span:
            if day <= last_day:
                running += quantities.get(day, ZERO)
            if shares > 0 and day == last_day:
                running += left * Decimal(str(share_today / shares))
            elif shares > 0 and day > last_day:
                running += left / Decimal(shares)
            cumulative[day] += price.charge(running, book.currency)
    return next((d for d in span if cumulative[d] >= estimate.budget), None)

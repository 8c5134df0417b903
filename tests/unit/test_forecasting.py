"""Projected end-of-period quantities: the methods, the band, and their charges."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import forecasting
from domain.forecasting import (
    MIN_RESIDUALS,
    DailySeries,
    PeriodProgress,
    QuantityForecast,
    backtest_residuals,
    forecast_quantity,
    price_quantiles,
)
from domain.periods import add_months
from domain.pricing import Price, Tier
from domain.values import InvalidValue

D = Decimal
AUGUST = date(2026, 8, 1)  # a Saturday
SEPTEMBER = date(2026, 9, 1)
# A spread-out, centred set of residuals: scaled, it makes a wider band.
SPREAD = tuple(i / 10 for i in range(-20, 21))


def series(last: date, values: Sequence[float | int | str]) -> DailySeries:
    """Consecutive days ending on `last`, with the given quantities."""
    first = last - timedelta(days=len(values) - 1)
    return DailySeries(
        tuple(first + timedelta(days=i) for i in range(len(values))),
        tuple(D(str(v)) for v in values),
    )


def progress(last: date, fraction: float = 1.0, start: date = AUGUST) -> PeriodProgress:
    """Data through `fraction` of day `last` of the period starting at `start`."""
    observed = datetime.combine(last, time(), UTC) + timedelta(days=fraction)
    return PeriodProgress(start, add_months(start, 1), observed, fraction)


def day(n: int, start: date = AUGUST) -> date:
    """The n-th day (1 = the first) of the period starting at `start`."""
    return start + timedelta(days=n - 1)


def weekday_heavy(first: date, days: int) -> list[int]:
    """100 on weekdays, 10 on weekends."""
    return [
        10 if (first + timedelta(days=i)).weekday() >= 5 else 100 for i in range(days)
    ]


def width(f: QuantityForecast) -> Decimal:
    return f.p90 - f.p10


# The methods


def test_a_closed_period_answers_its_actuals_with_a_zero_width_interval() -> None:
    history = series(SEPTEMBER, [100] * 60 + [7])

    forecast = forecast_quantity(history, progress(SEPTEMBER, 0.2), SPREAD)

    assert forecast.to_date == D(3100)
    assert forecast.p10 == forecast.p50 == forecast.p90 == D(3100)
    assert forecast.method == "actuals"


def test_the_last_day_of_a_period_complete_closes_it() -> None:
    history = series(day(31), [100] * 60)

    forecast = forecast_quantity(history, progress(day(31), 1.0))

    assert (forecast.method, forecast.p90) == ("actuals", D(3100))


def test_a_flat_series_forecasts_its_own_total_closely() -> None:
    history = series(day(10), [100] * 69 + [50])  # day 10 half gone, at pace

    forecast = forecast_quantity(history, progress(day(10), 0.5))

    assert forecast.method == "weekday_profile"
    assert forecast.to_date == D(950)
    assert abs(forecast.p50 - 3100) <= 31
    assert forecast.p10 < forecast.p50 < forecast.p90


def test_a_weekday_rhythm_beats_the_linear_pace_on_day_three() -> None:
    first = AUGUST - timedelta(days=56)
    values = weekday_heavy(first, 56 + 31)
    actual = sum(values[56:])
    history = series(day(3), values[: 56 + 3])  # Saturday, Sunday, Monday

    forecast = forecast_quantity(history, progress(day(3)))

    linear_pace = forecast.to_date / 3 * 31
    assert forecast.method == "weekday_profile"
    assert abs(forecast.p50 - actual) < abs(linear_pace - actual) / 10
    assert abs(forecast.p50 - actual) <= actual * D("0.02")


def test_a_series_that_stops_projects_little_beyond_what_it_used() -> None:
    used = [100] * 63 + [100] * 3
    stopped = series(day(10), used + [0] * 7)
    going_on = series(day(10), used + [100] * 7)

    after_stop = forecast_quantity(stopped, progress(day(10)))
    without_stop = forecast_quantity(going_on, progress(day(10)))

    assert after_stop.to_date == D(300)
    assert after_stop.p50 <= D(300) * D("1.05")
    assert after_stop.p50 < without_stop.p50 / 5


def test_a_few_days_of_zeros_lower_the_projection_step_by_step() -> None:
    projections = [
        forecast_quantity(
            series(day(10), [100] * (70 - zeros) + [0] * zeros), progress(day(10))
        ).p50
        for zeros in (0, 1, 2, 4)
    ]

    assert projections == sorted(projections, reverse=True)
    assert projections[-1] < projections[0] / 2


def test_a_spike_every_period_start_is_expected_again() -> None:
    start = add_months(AUGUST, -3)
    values = [
        1000 if (start + timedelta(days=i)).day <= 2 else 100 for i in range(92 + 31)
    ]
    actual = sum(values[92:])
    history = series(day(1), values[:93])

    forecast = forecast_quantity(history, progress(day(1)))

    assert abs(forecast.p50 - actual) <= actual * D("0.02")


def test_a_lone_spike_does_not_lift_the_projection() -> None:
    history = series(day(5), [100] * 66 + [2000] + [100] * 3)

    forecast = forecast_quantity(history, progress(day(5)))

    assert abs(forecast.p50 - (forecast.to_date + 2600)) <= 26


def test_day_one_without_history_answers_with_a_wide_low_data_band() -> None:
    history = series(day(1), [40])  # half of the first day

    forecast = forecast_quantity(history, progress(day(1), 0.5), SPREAD * 2)

    assert forecast.method == "linear_pace"
    assert (forecast.low_data, forecast.history_days) == (True, 0)
    assert forecast.p50 == D(40) + D(80) * D("30.5")
    assert forecast.p10 < forecast.p50 / 3
    assert forecast.p90 > forecast.p50 * 3


def test_with_no_data_at_all_the_answer_is_nothing_so_far_flagged_low_data() -> None:
    empty = DailySeries((), ())

    forecast = forecast_quantity(empty, progress(day(1), 0.0))

    assert (forecast.to_date, forecast.p50, forecast.p90) == (0, 0, 0)
    assert forecast.low_data


def test_under_two_weeks_of_history_the_method_is_the_recent_mean() -> None:
    history = series(day(3), [100] * 13)

    forecast = forecast_quantity(history, progress(day(3)))

    assert (forecast.method, forecast.history_days) == ("recent_mean", 10)
    assert forecast.p50 == D(3100)
    assert forecast.low_data


def test_a_period_not_yet_begun_is_projected_whole() -> None:
    history = series(AUGUST - timedelta(days=1), [100] * 70)

    forecast = forecast_quantity(history, progress(AUGUST - timedelta(days=1)))

    assert forecast.to_date == 0
    assert abs(forecast.p50 - 3100) <= 31


# The band


def test_a_wider_spread_of_residuals_makes_a_wider_interval() -> None:
    history = series(day(5), weekday_heavy(day(5) - timedelta(days=69), 70))

    widths = [
        width(forecast_quantity(history, progress(day(5)), [r * k for r in SPREAD]))
        for k in (0.25, 0.5, 1, 2, 4)
    ]

    assert widths == sorted(widths)
    assert widths[0] < widths[-1]


def test_too_few_residuals_give_the_default_band_flagged_low_data() -> None:
    history = series(day(5), [100] * 70)
    few = [0.0] * (MIN_RESIDUALS - 1)

    with_few = forecast_quantity(history, progress(day(5)), few)
    with_none = forecast_quantity(history, progress(day(5)))
    calibrated = forecast_quantity(history, progress(day(5)), [*few, 0.0])

    assert with_few == with_none
    assert with_few.low_data
    assert not calibrated.low_data
    assert width(calibrated) < width(with_few)


def test_residuals_that_are_all_one_sign_move_the_median() -> None:
    history = series(day(5), [100] * 70)
    above = [1.0 + i / 100 for i in range(30)]

    forecast = forecast_quantity(history, progress(day(5)), above)
    neutral = forecast_quantity(history, progress(day(5)))

    assert forecast.p10 > neutral.p50


def test_a_flat_series_backtests_to_zero_residuals() -> None:
    history = series(date(2026, 7, 31), [100] * 150)
    starts = [date(2026, 5, 1), date(2026, 6, 1), date(2026, 7, 1)]

    residuals = backtest_residuals(history, starts, [1, 3, 7, 14, 21, 28])

    assert len(residuals) == 18
    assert all(abs(r) < 1e-6 for r in residuals)


def test_backtests_skip_periods_incomplete_or_unused_and_late_checkpoints() -> None:
    history = series(date(2026, 7, 15), [0] * 40 + [100] * 66)  # usage from May 11
    starts = [date(2026, 4, 1), date(2026, 5, 1), date(2026, 6, 1), date(2026, 7, 1)]

    residuals = backtest_residuals(history, starts, [1, 7, 30, 31])

    # April: no usage; May: days 1, 7, 30; June: 1, 7 (30 is its last day); July:
    # incomplete.
    assert len(residuals) == 5


def test_residuals_calibrate_the_band_to_the_errors_of_past_periods() -> None:
    values = [100 if i % 2 else 60 for i in range(200)]  # a rhythm the week hides
    history = series(date(2026, 7, 31), values)
    starts = [date(2026, 3, 1), date(2026, 4, 1), date(2026, 5, 1), date(2026, 6, 1)]
    residuals = backtest_residuals(history, starts, [1, 3, 7, 14, 21, 28])

    forecast = forecast_quantity(
        series(day(3, date(2026, 7, 1)), values[:-28]),
        progress(day(3, date(2026, 7, 1)), start=date(2026, 7, 1)),
        residuals,
    )

    assert len(residuals) == 24
    assert forecast.p10 <= sum(D(v) for v in values[-31:]) <= forecast.p90


# Invariants


@st.composite
def situations(draw: st.DrawFn) -> tuple[DailySeries, PeriodProgress, list[float]]:
    """Any history ending anywhere around a period, at any time of day."""
    quantity = st.one_of(
        st.just(D(0)),
        st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False),
    )
    values = draw(st.lists(quantity, max_size=130))
    last = AUGUST + timedelta(days=draw(st.integers(-10, 40)))
    history = series(last, [str(v) for v in values])
    fraction = draw(st.floats(0, 1))
    residuals = draw(st.lists(st.floats(-30, 30), max_size=60))
    return history, progress(last, fraction), residuals


@given(situations())
def test_quantiles_are_ordered_and_never_below_the_quantity_so_far(
    situation: tuple[DailySeries, PeriodProgress, list[float]],
) -> None:
    history, where, residuals = situation

    forecast = forecast_quantity(history, where, residuals)

    inside = [
        q
        for d, q in zip(history.days, history.quantities, strict=True)
        if where.start <= d < where.end
    ]
    assert forecast.to_date == sum(inside, D(0))
    assert forecast.to_date <= forecast.p10 <= forecast.p50 <= forecast.p90
    if forecast.method == "actuals":
        assert forecast.p10 == forecast.p90 == forecast.to_date


@given(situations())
def test_the_same_history_always_gives_the_same_forecast(
    situation: tuple[DailySeries, PeriodProgress, list[float]],
) -> None:
    history, where, residuals = situation

    first = forecast_quantity(history, where, residuals)
    again = forecast_quantity(
        DailySeries(tuple(history.days), tuple(history.quantities)),
        PeriodProgress(
            where.start, where.end, where.observed_until, where.day_fraction
        ),
        list(residuals),
    )

    assert first == again


@given(
    st.lists(
        st.decimals(min_value=0, max_value=10**9, places=3, allow_nan=False),
        min_size=4,
        max_size=4,
    )
)
def test_quantiles_are_priced_through_the_tiers_one_by_one(
    quantities: list[Decimal],
) -> None:
    to_date, p10, p50, p90 = sorted(quantities)
    forecast = QuantityForecast(to_date, p10, p50, p90, "weekday_profile", 84, False)
    tokens = Price(
        "ai",
        "token",
        tiers=(Tier(D(10_000_000), D("0.000002")), Tier(None, D("0.0000015"))),
        included_quantity=D(1_000_000),
    )

    charges = price_quantiles(tokens, "EUR", forecast)

    assert charges == tuple(tokens.charge(q, "EUR") for q in (to_date, p10, p50, p90))
    assert list(charges) == sorted(charges)


def test_each_quantile_is_priced_through_the_tiers_not_scaled() -> None:
    forecast = QuantityForecast(D(0), D(500), D(1500), D(2500), "linear_pace", 0, True)
    price = Price("ai", "token", tiers=(Tier(D(1000), D(0)), Tier(None, D(1))))

    charges = price_quantiles(price, "EUR", forecast)

    assert charges == (D("0.00"), D("0.00"), D("500.00"), D("1500.00"))


# The series


@pytest.mark.parametrize(
    ("days", "quantities"),
    [
        ((AUGUST, AUGUST + timedelta(days=2)), (D(1), D(2))),
        ((AUGUST,), (D(1), D(2))),
    ],
)
def test_a_series_is_consecutive_days_each_with_a_quantity(
    days: tuple[date, ...], quantities: tuple[Decimal, ...]
) -> None:
    with pytest.raises(InvalidValue):
        DailySeries(days, quantities)


@settings(max_examples=60, deadline=None)
@given(
    weeks=st.lists(
        st.lists(st.sampled_from([0.0, 3.0, 7.5, 12.0, 40.0]), min_size=7, max_size=7),
        min_size=3,
        max_size=8,
    ),
    today=st.sampled_from([0.0, 0.3, 0.8]),
)
def test_a_remembered_smoother_gives_the_forecast_worked_out_afresh(
    weeks: list[list[float]], today: float
) -> None:
    """The smoother is remembered by the days it is fitted on: forecasts of
    series sharing days, made after the cache has filled, equal the same
    forecasts made from a cold start."""
    start = date(2026, 11, 1)
    days = [q for week in weeks for q in week]
    first = start - timedelta(days=len(days) - 10)
    history = DailySeries(
        tuple(first + timedelta(days=i) for i in range(len(days))),
        tuple(Decimal(str(q)) for q in days),
    )
    progress = PeriodProgress(
        start,
        date(2026, 12, 1),
        datetime.combine(history.days[-1], time(), UTC) + timedelta(days=today),
        today,
    )
    shifted = DailySeries(history.days, (*history.quantities[1:], Decimal(5)))

    forecasting._fitted_smoother.cache_clear()
    cold = forecast_quantity(history, progress)
    forecast_quantity(shifted, progress)
    warm = [forecast_quantity(history, progress) for _ in range(2)]
    forecasting._fitted_smoother.cache_clear()

    assert warm == [cold, cold]
    assert forecasting._chosen_smoother(days) == (
        forecasting._fitted_smoother.__wrapped__(tuple(days))
    )

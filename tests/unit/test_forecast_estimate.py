"""estimate_period: one tenant's period from its inputs (pure, no database)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.pricing import parse_price_book
from projections.forecast.estimate import (
    ALL_WORKSPACES,
    SeriesKey,
    TenantCalendar,
    _backtests,
    estimate_period,
)

D = Decimal
CALENDAR = TenantCalendar("t_a", "UTC", 1, 72)
NOVEMBER = CALENDAR.period_of(date(2026, 11, 1))
COMPUTE = ("compute", "vcpu_hour")
BOOK = parse_price_book(
    {
        "currency": "EUR",
        "prices": [
            {
                "product_area": "compute",
                "unit": "vcpu_hour",
                "included_quantity": "100",
                "tiers": [
                    {"up_to": "1000", "unit_price": "0.10"},
                    {"up_to": None, "unit_price": "0.05"},
                ],
            }
        ],
    }
)


def daily(first: date, days: int, quantity: str) -> dict[date, Decimal]:
    return {first + timedelta(days=i): D(quantity) for i in range(days)}


def test_a_brand_new_series_is_projected_from_its_own_pace_not_from_empty_history() -> (
    None
):
    key = SeriesKey("ws_a", *COMPUTE)
    days = {key: {date(2026, 11, 1): D(1000)}}

    estimate = estimate_period(
        CALENDAR,
        NOVEMBER,
        datetime(2026, 11, 2, tzinfo=UTC),
        days,
        {key: date(2026, 11, 1)},
        {},
        None,
        None,
    )

    line = next(x for x in estimate.lines if x.key.workspace_id == ALL_WORKSPACES)
    f = line.forecast
    assert (f.method, f.history_days, f.low_data) == ("linear_pace", 0, True)
    assert f.p10 < D(30000) < f.p90  # about the pace: 1,000 a day for 30 days
    assert f.p10 > D(10000)


def test_tiers_price_each_quantile_and_the_total_adds_priced_tenant_lines() -> None:
    ws_a, ws_b = SeriesKey("ws_a", *COMPUTE), SeriesKey("ws_b", *COMPUTE)
    storage = SeriesKey("ws_a", "storage", "gb_hour")
    first = date(2026, 8, 1)
    days = {
        ws_a: daily(first, 106, "30"),  # to Nov 14
        ws_b: daily(first, 106, "10"),
        storage: daily(first, 106, "5"),
    }
    since = dict.fromkeys(days, first)

    estimate = estimate_period(
        CALENDAR,
        NOVEMBER,
        datetime(2026, 11, 15, tzinfo=UTC),
        days,
        since,
        {},
        BOOK,
        D("20.00"),
    )

    by_key = {x.key: x for x in estimate.lines}
    tenant = by_key[SeriesKey(ALL_WORKSPACES, *COMPUTE)]
    price = BOOK.price_of(*COMPUTE)
    assert price is not None
    f = tenant.forecast
    assert f.to_date == D(40 * 14)
    assert tenant.charges == tuple(
        price.charge(q, "EUR") for q in (f.to_date, f.p10, f.p50, f.p90)
    )
    # Workspaces get quantities only; unpriced usage gets no charges at all.
    assert by_key[ws_a].charges is None
    assert by_key[SeriesKey(ALL_WORKSPACES, "storage", "gb_hour")].charges is None
    assert estimate.total() == tenant.charges
    # 560 used by Nov 14: 100 free, then 0.10 each: 20.00 is reached on the
    # day the cumulative quantity reaches 300, i.e. Nov 8 (320).
    assert estimate.breach_date == date(2026, 11, 8)


def test_a_quiet_series_before_the_window_still_has_its_empty_days() -> None:
    """A series that used to be busy and went quiet is not brand new: the
    empty days before the period are history (its usage stopped)."""
    key = SeriesKey("ws_a", *COMPUTE)
    days = {key: daily(date(2026, 10, 1), 10, "50")}  # Oct 1-10, then nothing

    estimate = estimate_period(
        CALENDAR,
        NOVEMBER,
        datetime(2026, 11, 10, tzinfo=UTC),
        days,
        {key: date(2026, 7, 1)},
        {},
        None,
        None,
    )

    line = next(x for x in estimate.lines if x.key.workspace_id == ALL_WORKSPACES)
    assert line.forecast.p50 == 0  # stopped a month ago: nothing to project


@settings(max_examples=40, deadline=None)
@given(
    quantities=st.lists(
        st.sampled_from([D(0), D(5), D("12.5"), D(40)]), min_size=60, max_size=60
    ),
    first_shift=st.integers(min_value=0, max_value=20),
)
def test_a_closed_periods_remembered_backtests_are_the_ones_worked_out_afresh(
    quantities: list[Decimal], first_shift: int
) -> None:
    """A closed period's backtests are remembered by its series (estimate's
    cache): after another series' estimate has filled the cache, estimating
    again answers exactly what a cold start does."""
    october = CALENDAR.period_of(date(2026, 10, 1))
    key = SeriesKey("ws_a", *COMPUTE)
    first = date(2026, 9, 2)
    series = {first + timedelta(days=i): q for i, q in enumerate(quantities)}
    since = {key: first + timedelta(days=first_shift)}
    after = datetime(2026, 11, 20, tzinfo=UTC)

    def estimate(days: dict[date, Decimal]) -> object:
        return estimate_period(
            CALENDAR, october, after, {key: days}, since, {}, None, None
        )

    estimate({d: q + 1 for d, q in series.items()})  # fills the cache
    warm = estimate(series)
    _backtests.cache_clear()
    assert warm == estimate(series)

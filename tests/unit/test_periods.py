"""Billing periods and usage days in a tenant's calendar, across DST changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.periods import (
    BillingPeriod,
    InvalidPeriod,
    local_midnight,
    period_containing,
    resolve_period,
    usage_date,
)

GRACE = timedelta(hours=72)


def resolve(
    spec: str, now: datetime, *, anchor: int = 1, tz: str = "UTC"
) -> BillingPeriod:
    return resolve_period(spec, now=now, anchor_day=anchor, timezone=tz, grace=GRACE)


def span(period: BillingPeriod) -> tuple[date, date]:
    return period.start, period.end


def test_the_current_calendar_month_is_the_default_period() -> None:
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)

    assert span(resolve("current", now)) == (date(2026, 11, 1), date(2026, 12, 1))


def test_the_previous_period_of_january_is_last_december() -> None:
    now = datetime(2026, 1, 5, tzinfo=UTC)

    assert span(resolve("previous", now)) == (date(2025, 12, 1), date(2026, 1, 1))


def test_with_anchor_15_a_day_before_the_15th_is_in_last_months_period() -> None:
    now = datetime(2026, 11, 10, tzinfo=UTC)

    assert span(resolve("current", now, anchor=15)) == (
        date(2026, 10, 15),
        date(2026, 11, 15),
    )
    assert span(resolve("previous", now, anchor=15)) == (
        date(2026, 9, 15),
        date(2026, 10, 15),
    )


def test_with_anchor_fifteen_the_fifteenth_starts_a_new_period() -> None:
    now = datetime(2026, 11, 15, tzinfo=UTC)

    assert span(resolve("current", now, anchor=15)) == (
        date(2026, 11, 15),
        date(2026, 12, 15),
    )


def test_the_current_period_follows_the_tenants_local_date_not_utc() -> None:
    # 03:00 UTC on the 15th is still the evening of the 14th in New York
    now = datetime(2026, 11, 15, 3, tzinfo=UTC)

    period = resolve("current", now, anchor=15, tz="America/New_York")

    assert span(period) == (date(2026, 10, 15), date(2026, 11, 15))


def test_a_month_label_names_the_period_starting_in_that_month() -> None:
    now = datetime(2026, 11, 20, tzinfo=UTC)

    period = resolve("2026-02", now, anchor=15)

    assert span(period) == (date(2026, 2, 15), date(2026, 3, 15))
    assert period.label == "2026-02"


def test_a_month_label_in_december_ends_in_january() -> None:
    now = datetime(2026, 11, 20, tzinfo=UTC)

    assert span(resolve("2026-12", now)) == (date(2026, 12, 1), date(2027, 1, 1))


@pytest.mark.parametrize(
    "spec", ["", "now", "Current", "2026-1", "2026/11", "26-11", " 2026-11"]
)
def test_a_label_that_is_not_a_period_is_refused(spec: str) -> None:
    with pytest.raises(InvalidPeriod, match=r"^period: must be 'current', 'previous'"):
        resolve(spec, datetime(2026, 11, 20, tzinfo=UTC))


@pytest.mark.parametrize("spec", ["2026-00", "2026-13", "1999-12", "2101-01"])
def test_a_month_that_does_not_exist_or_is_out_of_range_is_refused(spec: str) -> None:
    with pytest.raises(InvalidPeriod, match=r"^period: must be a real month"):
        resolve(spec, datetime(2026, 11, 20, tzinfo=UTC))


@pytest.mark.parametrize(
    ("day", "anchor", "start", "end"),
    [
        (date(2026, 1, 31), 1, date(2026, 1, 1), date(2026, 2, 1)),
        (date(2026, 2, 28), 1, date(2026, 2, 1), date(2026, 3, 1)),
        (date(2026, 12, 31), 1, date(2026, 12, 1), date(2027, 1, 1)),
        (date(2026, 1, 10), 15, date(2025, 12, 15), date(2026, 1, 15)),
        (date(2026, 1, 14), 15, date(2025, 12, 15), date(2026, 1, 15)),
        (date(2026, 1, 15), 15, date(2026, 1, 15), date(2026, 2, 15)),
        (date(2026, 3, 1), 28, date(2026, 2, 28), date(2026, 3, 28)),
        (date(2026, 3, 31), 28, date(2026, 3, 28), date(2026, 4, 28)),
    ],
)
def test_a_day_belongs_to_the_period_of_the_last_anchor_on_or_before_it(
    day: date, anchor: int, start: date, end: date
) -> None:
    period = period_containing(day, anchor, "UTC", GRACE)

    assert span(period) == (start, end)


@given(
    day=st.dates(min_value=date(2000, 2, 1), max_value=date(2100, 11, 30)),
    anchor=st.integers(min_value=1, max_value=28),
)
def test_every_day_lies_in_exactly_the_period_containing_it(
    day: date, anchor: int
) -> None:
    period = period_containing(day, anchor, "UTC", GRACE)

    assert period.start <= day < period.end
    assert period.start.day == anchor
    assert period.end == period_containing(period.end, anchor, "UTC", GRACE).start
    assert period.previous().end == period.start


def day_length(day: date, tz: str) -> timedelta:
    return local_midnight(day + timedelta(days=1), tz) - local_midnight(day, tz)


@pytest.mark.parametrize(
    ("tz", "day", "hours"),
    [
        ("Europe/Berlin", date(2026, 3, 29), 23),
        ("Europe/Berlin", date(2026, 10, 25), 25),
        ("Europe/Berlin", date(2026, 6, 1), 24),
        ("America/New_York", date(2026, 3, 8), 23),
        ("America/New_York", date(2026, 11, 1), 25),
        ("UTC", date(2026, 3, 29), 24),
    ],
)
def test_a_day_lasts_as_long_as_the_tenants_clock_says(
    tz: str, day: date, hours: int
) -> None:
    assert day_length(day, tz) == timedelta(hours=hours)


@pytest.mark.parametrize(
    ("tz", "day", "midnight"),
    [
        ("Europe/Berlin", date(2026, 3, 29), datetime(2026, 3, 28, 23, tzinfo=UTC)),
        ("Europe/Berlin", date(2026, 3, 30), datetime(2026, 3, 29, 22, tzinfo=UTC)),
        ("America/New_York", date(2026, 11, 1), datetime(2026, 11, 1, 4, tzinfo=UTC)),
        ("America/New_York", date(2026, 11, 2), datetime(2026, 11, 2, 5, tzinfo=UTC)),
    ],
)
def test_local_midnight_is_the_utc_instant_the_day_starts(
    tz: str, day: date, midnight: datetime
) -> None:
    assert local_midnight(day, tz) == midnight


@pytest.mark.parametrize(
    ("instant", "tz", "day"),
    [
        (
            datetime(2026, 11, 20, 4, 59, 59, tzinfo=UTC),
            "America/New_York",
            date(2026, 11, 19),
        ),
        (
            datetime(2026, 11, 20, 5, 0, 0, tzinfo=UTC),
            "America/New_York",
            date(2026, 11, 20),
        ),
        (
            datetime(2026, 7, 20, 3, 59, 59, tzinfo=UTC),
            "America/New_York",
            date(2026, 7, 19),
        ),
        (
            datetime(2026, 7, 20, 4, 0, 0, tzinfo=UTC),
            "America/New_York",
            date(2026, 7, 20),
        ),
        (
            datetime(2026, 11, 19, 23, 0, 0, tzinfo=UTC),
            "Europe/Berlin",
            date(2026, 11, 20),
        ),
        (
            datetime(2026, 11, 19, 22, 59, 59, tzinfo=UTC),
            "Europe/Berlin",
            date(2026, 11, 19),
        ),
        (
            datetime(2026, 11, 19, 18, 30, 0, tzinfo=UTC),
            "Asia/Kolkata",
            date(2026, 11, 20),
        ),
    ],
)
def test_an_instant_near_midnight_belongs_to_the_local_day(
    instant: datetime, tz: str, day: date
) -> None:
    assert usage_date(instant, tz) == day


def test_a_period_closes_its_grace_after_its_local_end() -> None:
    period = BillingPeriod(
        date(2026, 11, 1), date(2026, 12, 1), "America/New_York", GRACE
    )

    assert period.ends_at == datetime(2026, 12, 1, 5, tzinfo=UTC)
    assert period.closes_at == datetime(2026, 12, 4, 5, tzinfo=UTC)


def test_a_period_is_open_until_the_instant_it_closes() -> None:
    period = BillingPeriod(date(2026, 11, 1), date(2026, 12, 1), "UTC", GRACE)
    closes_at = datetime(2026, 12, 4, tzinfo=UTC)

    assert not period.is_closed(closes_at - timedelta(microseconds=1))
    assert period.is_closed(closes_at)


def test_a_period_without_grace_closes_when_it_ends() -> None:
    period = BillingPeriod(date(2026, 11, 1), date(2026, 12, 1), "UTC", timedelta(0))

    assert period.is_closed(period.ends_at)

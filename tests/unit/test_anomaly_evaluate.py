"""evaluate: one tenant period's flags from its daily usage (pure, no database).

Regressions the anomaly bench found: restated usage in the weeks before a day
must not change how the day itself is judged; a day low at its end is not a
drop before late usage has had two days to arrive; a growing series is judged
against where it is now."""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.anomalies.detect import _usual, score_days
from projections.anomalies.postgres import evaluate
from projections.usage_series import DayUsage, SeriesKey, default_calendar

KEY = SeriesKey("ws_a", "compute", "vcpu_hour")
CALENDAR = default_calendar("t_a")
MARCH = CALENDAR.period_of(date(2025, 3, 1))


def days_from(first: date, last: date, usage: DayUsage) -> dict[date, DayUsage]:
    return {first + timedelta(days=i): usage for i in range((last - first).days + 1)}


def flags_of(days: dict[date, DayUsage], at: datetime) -> list[tuple[str, str, date]]:
    flags, _ = evaluate(CALENDAR, MARCH, at, {KEY: days}, {KEY: min(days)}, {})
    return [(f.status, f.episode.kind, f.episode.first.day) for f in flags]


def test_a_backfilled_history_then_usual_days_raises_nothing() -> None:
    days = days_from(
        date(2025, 1, 1), date(2025, 2, 28), DayUsage(Decimal(100), Decimal(100), 1)
    )
    days |= days_from(
        date(2025, 3, 1), date(2025, 3, 4), DayUsage(Decimal(100), Decimal(0), 2)
    )

    assert flags_of(days, datetime(2025, 3, 5, tzinfo=UTC)) == []


def test_a_day_inside_the_band_is_not_flagged_when_earlier_weeks_came_late() -> None:
    days = {
        day: DayUsage(
            Decimal(100), Decimal(100) if day.weekday() == 0 else Decimal(0), 1
        )
        for day in days_from(
            date(2025, 1, 6), date(2025, 3, 9), DayUsage(Decimal(0), Decimal(0), 0)
        )
    }
    days[date(2025, 3, 10)] = DayUsage(Decimal(125), Decimal(0), 2)  # 1.25x, on time

    found = flags_of(days, datetime(2025, 3, 11, 12, tzinfo=UTC))

    assert all(day != date(2025, 3, 10) for _, _, day in found)


def test_one_shift_is_one_flag_even_when_earlier_days_were_restated() -> None:
    days = {
        day: DayUsage(Decimal(100), Decimal(30) if i % 2 else Decimal(0), 1)
        for i, day in enumerate(
            days_from(
                date(2025, 1, 6), date(2025, 3, 9), DayUsage(Decimal(0), Decimal(0), 0)
            )
        )
    }
    days[date(2025, 3, 10)] = DayUsage(Decimal(130), Decimal(0), 2)
    for i in range(1, 5):
        days[date(2025, 3, 10) + timedelta(days=i)] = DayUsage(
            Decimal(200), Decimal(0), 2
        )

    found = flags_of(days, datetime(2025, 3, 15, 12, tzinfo=UTC))

    assert found == [("open", "level_shift", date(2025, 3, 10))]


def test_history_is_counted_to_the_day_judged_not_to_the_period_start() -> None:
    first = date(2025, 2, 1)  # 35 days before Mar 8
    days = days_from(first, date(2025, 3, 7), DayUsage(Decimal(100), Decimal(0), 1))
    days[date(2025, 3, 8)] = DayUsage(Decimal(2000), Decimal(0), 2)

    found = flags_of(days, datetime(2025, 3, 8, 18, tzinfo=UTC))

    assert found == [("open", "spike", date(2025, 3, 8))]


def test_a_low_day_is_judged_only_once_it_has_settled() -> None:
    days = days_from(
        date(2025, 1, 1), date(2025, 3, 12), DayUsage(Decimal(100), Decimal(0), 1)
    )
    days[date(2025, 3, 10)] = DayUsage(Decimal(5), Decimal(0), 2)

    ended = flags_of(days, datetime(2025, 3, 12, 18, tzinfo=UTC))
    settled = flags_of(days, datetime(2025, 3, 13, tzinfo=UTC))  # 2 days after

    assert ended == []
    assert settled == [("open", "drop", date(2025, 3, 10))]


def test_a_steadily_growing_series_is_not_a_level_shift() -> None:
    rng = random.Random(7)  # noise that, without the trend, reads as a shift up
    first = date(2025, 1, 1)
    days = {
        first + timedelta(days=i): DayUsage(
            Decimal(f"{100 * 1.2 ** (i / 30.4) * math.exp(rng.gauss(0, 0.1)):.2f}"),
            Decimal(0),
            1,
        )
        for i in range(90)
    }

    assert flags_of(days, datetime(2025, 4, 2, tzinfo=UTC)) == []


def test_a_day_twice_the_usual_is_not_a_spike_three_times_is() -> None:
    # Far outside the band (a series without noise: the spread's 8% floor), so
    # only the size decides: a spike or a drop is at least 2.5x (or 1/2.5x).
    days = days_from(
        date(2025, 1, 1), date(2025, 3, 12), DayUsage(Decimal(100), Decimal(0), 1)
    )
    days[date(2025, 3, 10)] = DayUsage(Decimal(200), Decimal(0), 2)
    days[date(2025, 3, 11)] = DayUsage(Decimal(50), Decimal(0), 2)
    small = flags_of(days, datetime(2025, 3, 15, tzinfo=UTC))
    days[date(2025, 3, 10)] = DayUsage(Decimal(300), Decimal(0), 2)
    days[date(2025, 3, 11)] = DayUsage(Decimal(100), Decimal(0), 2)
    days[date(2025, 3, 12)] = DayUsage(Decimal(33), Decimal(0), 2)
    large = flags_of(days, datetime(2025, 3, 15, tzinfo=UTC))

    assert small == []
    assert large == [
        ("open", "spike", date(2025, 3, 10)),
        ("open", "drop", date(2025, 3, 12)),
    ]


def test_four_unusual_days_in_a_row_are_not_a_level_shift_five_are() -> None:
    days = days_from(
        date(2025, 1, 1), date(2025, 3, 20), DayUsage(Decimal(100), Decimal(0), 1)
    )
    for i in range(4):  # 1.4x: weak (score 4.2), not strong
        days[date(2025, 3, 10) + timedelta(days=i)] = DayUsage(
            Decimal(140), Decimal(0), 2
        )
    four = flags_of(days, datetime(2025, 3, 20, tzinfo=UTC))
    days[date(2025, 3, 14)] = DayUsage(Decimal(140), Decimal(0), 2)
    five = flags_of(days, datetime(2025, 3, 20, tzinfo=UTC))

    assert four == []
    assert five == [("open", "level_shift", date(2025, 3, 10))]


@settings(max_examples=60, deadline=None)
@given(
    quantities=st.lists(
        st.sampled_from([Decimal(0), Decimal(3), Decimal(100), Decimal("101.5")]),
        min_size=60,
        max_size=110,
    ),
    first_shift=st.integers(min_value=0, max_value=30),
    doubled=st.sets(st.integers(min_value=0, max_value=109)),
    today_after=st.integers(min_value=-2, max_value=35),
)
def test_a_remembered_usual_level_is_the_one_worked_out_afresh(
    quantities: list[Decimal], first_shift: int, doubled: set[int], today_after: int
) -> None:
    """Each day's usual level is remembered by the weeks before it (detect's
    cache): scoring one series after another with the same weeks but another
    first day and other observed days answers exactly what a cold start does."""
    first = date(2025, 1, 1)
    baseline = {first + timedelta(days=i): q for i, q in enumerate(quantities)}
    observed = {
        d: q * 2 if i in doubled else q for i, (d, q) in enumerate(baseline.items())
    }
    start = first + timedelta(days=len(quantities) - 31)
    end, today = start + timedelta(days=31), start + timedelta(days=today_after)

    def scores(first_day: date, seen: dict[date, Decimal]) -> object:
        return score_days(baseline, seen, first_day, start, end, today)

    scores(first, baseline)  # warms the cache with the same weeks
    later = first + timedelta(days=first_shift)
    warm = scores(later, observed)
    _usual.cache_clear()
    assert warm == scores(later, observed)

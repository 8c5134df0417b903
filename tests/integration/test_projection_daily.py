"""billing_usage_daily: days in the tenant's calendar, late data, corrections."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from application.bootstrap import WriteSide
from tests.harness import Harness, harness_for
from tests.support import event

T = "t_acme"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.fixture
def h(write_side: WriteSide) -> Iterator[Harness]:
    with harness_for(write_side, at("2026-11-20T12:00:00Z")) as harness:
        yield harness


def row(
    h: Harness,
    day: str,
    *,
    tenant: str = T,
    ws: str = "ws_a",
    area: str = "compute",
    unit: str = "vcpu_hour",
) -> tuple[Any, ...]:
    return h.rows()[(tenant, date.fromisoformat(day), ws, area, unit)]


def test_a_late_event_lands_on_its_own_day_and_is_counted_late(h: Harness) -> None:
    h.send(
        T,
        [event("on-time", quantity="2", at=at("2026-11-18T10:00Z"))],
        at=at("2026-11-18T11:00Z"),
    )
    h.send(
        T,
        [event("late", quantity="3", at=at("2026-11-18T23:00Z"))],
        at=at("2026-11-20T09:00Z"),
    )

    h.project()

    period, quantity, events, first_reported, late, adjustment, adjusted = row(
        h, "2026-11-18"
    )
    assert (quantity, events, first_reported, late) == (5, 2, 2, 1)
    assert (period, adjustment, adjusted) == (date(2026, 11, 1), 0, 0)
    assert (T, date(2026, 11, 20), "ws_a", "compute", "vcpu_hour") not in h.rows()


def test_a_duplicate_changes_nothing(h: Harness) -> None:
    h.send(
        T,
        [event("e1", quantity="2", at=at("2026-11-18T10:00Z"))],
        at=at("2026-11-18T11:00Z"),
    )
    h.project()
    before = h.rows()

    answer = h.send(
        T,
        [event("e1", quantity="2.000", at=at("2026-11-18T10:00Z"))],
        at=at("2026-11-19T11:00Z"),
    )
    h.project()

    assert answer.duplicates == 1
    assert h.rows() == before


def test_a_void_and_an_amendment_change_only_their_day(h: Harness) -> None:
    h.send(
        T,
        [
            event("a", quantity="2", at=at("2026-11-17T10:00Z")),
            event("b", quantity="5", at=at("2026-11-18T10:00Z")),
            event("c", quantity="7", at=at("2026-11-18T11:00Z")),
        ],
        at=at("2026-11-18T12:00Z"),
    )
    h.project()
    untouched = row(h, "2026-11-17")

    h.void(T, "b", at=at("2026-11-19T08:00Z"))
    h.amend(T, "c", Decimal("1.5"), at=at("2026-11-19T09:00Z"))
    h.project()

    assert row(h, "2026-11-17") == untouched
    _, quantity, events, first_reported, late, _, _ = row(h, "2026-11-18")
    assert (quantity, events, first_reported, late) == (Decimal("1.5"), 1, 12, 0)


@pytest.mark.parametrize(
    ("timezone", "day", "first_instant", "last_instant", "hours"),
    [
        (
            "Europe/Berlin",
            "2026-03-29",
            "2026-03-28T23:00:00Z",
            "2026-03-29T21:59:59Z",
            23,
        ),
        (
            "Europe/Berlin",
            "2026-10-25",
            "2026-10-24T22:00:00Z",
            "2026-10-25T22:59:59Z",
            25,
        ),
        (
            "America/New_York",
            "2026-03-08",
            "2026-03-08T05:00:00Z",
            "2026-03-09T03:59:59Z",
            23,
        ),
        (
            "America/New_York",
            "2026-11-01",
            "2026-11-01T04:00:00Z",
            "2026-11-02T04:59:59Z",
            25,
        ),
    ],
)
def test_days_follow_the_tenants_clock_across_dst_changes(
    h: Harness,
    timezone: str,
    day: str,
    first_instant: str,
    last_instant: str,
    hours: int,
) -> None:
    first, last = at(first_instant), at(last_instant)
    assert last - first == timedelta(hours=hours) - timedelta(seconds=1)
    h.set_calendar(T, timezone, at=at("2026-01-01T00:00Z"))
    h.send(
        T,
        [
            event("before", at=first - timedelta(seconds=1)),
            event("first", at=first),
            event("last", at=last),
            event("after", at=last + timedelta(seconds=1)),
        ],
        at=at("2026-11-20T00:00Z"),
    )

    h.project()

    counts = {key[1].isoformat(): r[2] for key, r in h.rows().items()}
    the_day = date.fromisoformat(day)
    assert counts[day] == 2
    assert counts[(the_day - timedelta(days=1)).isoformat()] == 1
    assert counts[(the_day + timedelta(days=1)).isoformat()] == 1


def test_usage_for_a_closed_period_is_a_visible_late_adjustment(h: Harness) -> None:
    october = at("2026-10-15T12:00Z")
    h.send(T, [event("in-time", quantity="10", at=october)], at=at("2026-10-15T13:00Z"))
    # October closes at 2026-11-01 + 72 h = 2026-11-04T00:00Z (UTC calendar).
    h.send(T, [event("in-grace", quantity="1", at=october)], at=at("2026-11-03T23:59Z"))
    h.send(
        T, [event("after-close", quantity="4", at=october)], at=at("2026-11-04T00:00Z")
    )
    h.void(T, "in-time", at=at("2026-11-10T00:00Z"))

    h.project()

    period, quantity, events, first_reported, late, adjustment, adjusted = row(
        h, "2026-10-15"
    )
    assert period == date(2026, 10, 1)
    assert (quantity, events) == (5, 2)
    assert (first_reported, late) == (10, 2)
    assert (adjustment, adjusted) == (-6, 2)  # +4 after close, -10 voided after close


def test_changing_the_calendar_rebuckets_only_that_tenants_days(h: Harness) -> None:
    instant = at("2026-11-20T02:00Z")  # 19 Nov, 21:00 in New York
    h.send(T, [event("e1", at=instant)], at=at("2026-11-20T03:00Z"))
    h.send("t_other", [event("e1", at=instant)], at=at("2026-11-20T03:00Z"))
    h.project()

    h.set_calendar(T, "America/New_York", at=at("2026-11-21T00:00Z"))
    h.project()

    days = {(k[0], k[1]) for k in h.rows()}
    assert days == {(T, date(2026, 11, 19)), ("t_other", date(2026, 11, 20))}


def test_the_anchor_day_decides_the_billing_period(h: Harness) -> None:
    h.set_calendar(T, "UTC", anchor=15, at=at("2026-01-01T00:00Z"))
    h.send(
        T,
        [
            event("before", at=at("2026-11-14T12:00Z")),
            event("on", at=at("2026-11-15T00:00Z")),
        ],
        at=at("2026-11-20T00:00Z"),
    )

    h.project()

    assert row(h, "2026-11-14")[0] == date(2026, 10, 15)
    assert row(h, "2026-11-15")[0] == date(2026, 11, 15)

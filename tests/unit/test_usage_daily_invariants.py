"""Invariants of the daily view: batch splits and interleavings never change rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.usage_daily.changes import Calendar, LedgerEntry
from projections.usage_daily.reference import InMemoryUsageDailyView

START = datetime(2026, 9, 20, tzinfo=UTC)
TENANTS = ["t_a", "t_b"]
ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Pacific/Auckland"]

calendars = st.builds(
    Calendar,
    st.sampled_from(TENANTS),
    st.sampled_from(ZONES),
    st.integers(min_value=1, max_value=28),
    st.sampled_from([0, 24, 72, 744]),
)
entry_fields = st.tuples(
    st.sampled_from(TENANTS),
    st.sampled_from(["recorded", "voided", "amended"]),
    st.sampled_from(["ws_a", "ws_b"]),
    st.sampled_from(["compute", "storage"]),
    st.integers(min_value=0, max_value=90 * 24 * 60),  # occurred, minutes after START
    st.integers(min_value=0, max_value=60 * 24 * 60),  # recorded, minutes after that
    st.decimals(min_value=-1000, max_value=1000, places=9),
    st.sampled_from([-1, 0, 1]),
)


@st.composite
def ledgers(draw: st.DrawFn) -> list[LedgerEntry]:
    rows = draw(st.lists(entry_fields, max_size=40))
    return [entry(position, *fields) for position, fields in enumerate(rows, start=1)]


def entry(
    position: int,
    tenant: str,
    kind: str,
    ws: str,
    area: str,
    occurred: int,
    delay: int,
    quantity: Decimal,
    count: int,
) -> LedgerEntry:
    occurred_at = START + timedelta(minutes=occurred)
    return LedgerEntry(
        position,
        tenant,
        f"e{position}",
        kind,
        ws,
        area,
        "unit",
        occurred_at,
        occurred_at + timedelta(minutes=delay),
        quantity,
        count,
    )


def in_batches(
    entries: Sequence[LedgerEntry], cuts: list[int]
) -> list[list[LedgerEntry]]:
    bounds = [0, *sorted(c % (len(entries) + 1) for c in cuts), len(entries)]
    return [list(entries[a:b]) for a, b in pairwise(bounds)]


def all_at_once(
    entries: Sequence[LedgerEntry], cals: Sequence[Calendar]
) -> InMemoryUsageDailyView:
    view = InMemoryUsageDailyView()
    view.set_calendars(cals)
    view.add_entries(entries)
    return view


@settings(deadline=None)
@given(
    entries=ledgers(),
    cals=st.lists(calendars, max_size=3),
    cuts=st.lists(st.integers(0, 40)),
)
def test_any_batch_split_gives_the_same_rows_as_one_batch(
    entries: list[LedgerEntry], cals: list[Calendar], cuts: list[int]
) -> None:
    expected = all_at_once(entries, cals).daily
    view = InMemoryUsageDailyView()
    view.set_calendars(cals)

    for batch in in_batches(entries, cuts):
        view.add_entries(batch)

    assert view.daily == expected


@settings(deadline=None)
@given(
    entries=ledgers(),
    cals=st.lists(calendars, min_size=1, max_size=3),
    cuts=st.lists(st.integers(0, 40), max_size=3),
    where=st.integers(0, 40),
)
def test_calendar_changes_anywhere_in_the_stream_give_the_same_rows(
    entries: list[LedgerEntry], cals: list[Calendar], cuts: list[int], where: int
) -> None:
    # the calendars and metering upstreams may interleave in any way
    expected = all_at_once(entries, cals).daily
    batches = in_batches(entries, cuts)
    at = where % (len(batches) + 1)
    view = InMemoryUsageDailyView()

    for batch in batches[:at]:
        view.add_entries(batch)
    view.set_calendars(cals)
    for batch in batches[at:]:
        view.add_entries(batch)

    assert view.daily == expected


@settings(deadline=None)
@given(entries=ledgers(), cals=st.lists(calendars, max_size=3))
def test_daily_rows_add_up_to_the_ledger(
    entries: list[LedgerEntry], cals: list[Calendar]
) -> None:
    rows = all_at_once(entries, cals).daily.values()

    assert sum((r.quantity for r in rows), Decimal(0)) == sum(
        (e.quantity_delta for e in entries), Decimal(0)
    )
    assert sum(r.source_event_count for r in rows) == sum(
        e.count_delta for e in entries
    )
    assert sum(r.late_event_count for r in rows) <= sum(
        e.kind == "recorded" for e in entries
    )


@settings(deadline=None)
@given(entries=ledgers(), cals=st.lists(calendars, max_size=3))
def test_every_row_lies_in_the_period_it_names(
    entries: list[LedgerEntry], cals: list[Calendar]
) -> None:
    view = all_at_once(entries, cals)

    for (tenant, day, *_), daily in view.daily.items():
        anchor = (
            view.calendars[tenant].period_anchor_day if tenant in view.calendars else 1
        )
        assert daily.period_start.day == anchor
        assert daily.period_start <= day
        assert (day - daily.period_start).days < 31

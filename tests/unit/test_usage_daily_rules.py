"""The daily bucketing rules, as the in-memory reference view applies them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from domain.tenant_settings import BillingSettings, TenantBillingSettings
from domain.usage import UsageRecord
from projections.base import Notified
from projections.usage_daily.changes import Calendar, LedgerEntry, split_changes
from projections.usage_daily.reference import DailyRow, InMemoryUsageDailyView
from tests.unit.builders import amend, facts, void

NEW_YORK = Calendar("t_acme", "America/New_York", 1, 72)
# 2026-11-19 in New York is [2026-11-19T05:00Z, 2026-11-20T05:00Z)
DAY = date(2026, 11, 19)
DAY_ENDS = datetime(2026, 11, 20, 5, tzinfo=UTC)
# November's period ends 2026-12-01T05:00Z and closes 72 h later
PERIOD_CLOSES = datetime(2026, 12, 4, 5, tzinfo=UTC)


class History:
    """Domain events of one tenant, numbered as the notification log would."""

    def __init__(self) -> None:
        self.notified: list[Notified] = []

    def add(self, *events: Any) -> None:
        for event in events:
            self.notified.append(Notified(len(self.notified) + 1, event))

    def record(
        self,
        event_id: str,
        occurred_at: datetime,
        recorded_at: datetime,
        quantity: str = "1",
        tenant_id: str = "t_acme",
    ) -> UsageRecord:
        record = UsageRecord.record(
            tenant_id,
            facts(
                event_id=event_id, occurred_at=occurred_at, quantity=Decimal(quantity)
            ),
            now=recorded_at,
            backfill=False,
        )
        self.add(*record.collect_events())
        return record

    def view(self, *calendars: Calendar) -> InMemoryUsageDailyView:
        entries, from_events = split_changes(self.notified)
        view = InMemoryUsageDailyView()
        view.set_calendars([*calendars, *from_events])
        view.add_entries(entries)
        return view


def row(
    view: InMemoryUsageDailyView, day: date = DAY, tenant: str = "t_acme"
) -> DailyRow:
    return view.daily[(tenant, day, "ws_a", "compute", "vcpu_hour")]


def test_an_event_lands_on_its_day_in_the_tenants_timezone() -> None:
    history = History()
    history.record(
        "e1", DAY_ENDS - timedelta(minutes=1), DAY_ENDS - timedelta(minutes=1)
    )

    view = history.view(NEW_YORK)

    assert list(view.daily) == [("t_acme", DAY, "ws_a", "compute", "vcpu_hour")]
    assert row(view).period_start == date(2026, 11, 1)


def test_without_a_calendar_an_event_lands_on_its_utc_day() -> None:
    history = History()
    history.record("e1", DAY_ENDS - timedelta(minutes=1), DAY_ENDS)

    view = history.view()

    assert list(view.daily) == [
        ("t_acme", date(2026, 11, 20), "ws_a", "compute", "vcpu_hour")
    ]


def test_events_of_one_day_add_up() -> None:
    history = History()
    history.record("e1", DAY_ENDS - timedelta(hours=3), DAY_ENDS, "1.5")
    history.record("e2", DAY_ENDS - timedelta(hours=2), DAY_ENDS, "2.25")

    daily = row(history.view(NEW_YORK))

    assert (daily.quantity, daily.source_event_count) == (Decimal("3.75"), 2)


def test_first_reported_quantity_counts_only_entries_before_the_day_ended() -> None:
    history = History()
    on_time = DAY_ENDS - timedelta(microseconds=1)
    history.record("e1", DAY_ENDS - timedelta(hours=1), on_time, "2")
    history.record("e2", DAY_ENDS - timedelta(hours=1), DAY_ENDS, "3")
    history.record(
        "e3", DAY_ENDS - timedelta(hours=1), DAY_ENDS + timedelta(days=2), "5"
    )

    daily = row(history.view(NEW_YORK))

    assert daily.quantity == Decimal("10")
    assert daily.first_reported_quantity == Decimal("2")
    assert daily.late_event_count == 2


def test_a_late_correction_is_not_counted_as_a_late_event() -> None:
    history = History()
    record = history.record(
        "e1", DAY_ENDS - timedelta(hours=1), DAY_ENDS - timedelta(hours=1)
    )
    amend(record, "4", now=DAY_ENDS + timedelta(hours=1))
    history.add(*record.collect_events())

    daily = row(history.view(NEW_YORK))

    assert daily.quantity == Decimal("4")
    assert daily.first_reported_quantity == Decimal("1")
    assert daily.late_event_count == 0


def test_entries_recorded_at_or_after_the_period_close_are_late_adjustments() -> None:
    history = History()
    occurred = DAY_ENDS - timedelta(hours=1)
    history.record("e1", occurred, PERIOD_CLOSES - timedelta(microseconds=1), "2")
    history.record("e2", occurred, PERIOD_CLOSES, "3")
    history.record("e3", occurred, PERIOD_CLOSES + timedelta(days=30), "5")

    daily = row(history.view(NEW_YORK))

    assert (daily.adjustment_quantity, daily.adjustment_count) == (Decimal("8"), 2)
    assert daily.quantity == Decimal("10")


def test_a_void_after_the_period_closed_is_a_negative_adjustment() -> None:
    history = History()
    record = history.record("e1", DAY_ENDS - timedelta(hours=1), DAY_ENDS, "2")
    void(record, now=PERIOD_CLOSES)
    history.add(*record.collect_events())

    daily = row(history.view(NEW_YORK))

    assert (daily.adjustment_quantity, daily.adjustment_count) == (Decimal("-2"), 1)


def test_a_void_brings_the_day_back_to_what_it_was() -> None:
    history = History()
    history.record(
        "e1", DAY_ENDS - timedelta(hours=2), DAY_ENDS - timedelta(hours=1), "2"
    )
    before = row(history.view(NEW_YORK))
    record = history.record("e2", DAY_ENDS - timedelta(hours=1), DAY_ENDS, "3")
    amend(record, "4", now=DAY_ENDS)
    void(record, now=DAY_ENDS + timedelta(hours=1))
    history.add(*record.collect_events())

    after = row(history.view(NEW_YORK))

    assert (after.quantity, after.source_event_count) == (before.quantity, 1)
    assert after.first_reported_quantity == before.first_reported_quantity


def test_a_calendar_change_rebuckets_the_tenants_rows_only() -> None:
    history = History()
    late_evening = datetime(2026, 11, 20, 3, tzinfo=UTC)  # the 19th in New York
    history.record("e1", late_evening, late_evening, tenant_id="t_acme")
    history.record("e2", late_evening, late_evening, tenant_id="t_other")
    view = history.view()
    other_before = dict(v for v in view.daily.items() if v[0][0] == "t_other")

    view.set_calendars([NEW_YORK])

    assert {k[:2] for k in view.daily} == {
        ("t_acme", date(2026, 11, 19)),
        ("t_other", date(2026, 11, 20)),
    }
    assert {k: v for k, v in view.daily.items() if k[0] == "t_other"} == other_before


def test_a_settings_change_event_becomes_the_tenants_calendar() -> None:
    settings = TenantBillingSettings.configure("t_acme", now=DAY_ENDS)
    settings.change(
        BillingSettings("America/New_York", 15, 24, 35), actor_id="a", now=DAY_ENDS
    )
    history = History()
    history.add(*settings.collect_events())

    _, calendars = split_changes(history.notified)

    assert calendars == [
        Calendar("t_acme", "UTC", 1, 72),
        Calendar("t_acme", "America/New_York", 15, 24),
    ]


def test_an_unknown_event_changes_nothing() -> None:
    assert split_changes([Notified(1, object())]) == ([], [])


def test_each_usage_event_becomes_a_signed_ledger_entry() -> None:
    history = History()
    record = history.record("e1", DAY_ENDS, DAY_ENDS, "3")
    amend(record, "5", now=DAY_ENDS)
    void(record, now=DAY_ENDS)
    history.add(*record.collect_events())

    entries, _ = split_changes(history.notified)

    assert [(e.position, e.kind, e.quantity_delta, e.count_delta) for e in entries] == [
        (1, "recorded", Decimal("3"), 1),
        (2, "amended", Decimal("2"), 0),
        (3, "voided", Decimal("-5"), -1),
    ]
    assert all(isinstance(e, LedgerEntry) and e.event_id == "e1" for e in entries)

"""One set of cases, two views: the Python reference and PostgreSQL agree.

In the style of eventsourcing's own recorder test cases: the cases live in an
abstract class, and each implementation of the view runs all of them. The
day-and-period rule (domain.periods.day_and_period) is written once in Python
and once in SQL (the rollup); these cases hold the two together, DST days,
anchor days, grace and calendar changes included.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.sql import SQL, Identifier

from application.settings import Settings
from application.store.database import ensure_database
from projections.usage_daily.changes import Calendar, LedgerEntry
from projections.usage_daily.postgres import (
    DAILY,
    PostgresUsageDailyView,
    UsageDailyProjection,
)
from projections.usage_daily.reference import (
    DailyKey,
    DailyRow,
    InMemoryUsageDailyView,
)

NEW_YORK = Calendar("t_a", "America/New_York", 1, 72)
_positions = iter(range(1, 10**9))


def entry(
    occurred: datetime,
    *,
    recorded: datetime | None = None,
    delta: str = "1",
    count: int = 1,
    kind: str = "recorded",
    tenant: str = "t_a",
    workspace: str = "ws",
) -> LedgerEntry:
    return LedgerEntry(
        next(_positions),
        tenant,
        f"e{next(_positions)}",
        kind,
        workspace,
        "compute",
        "vcpu_hour",
        occurred,
        recorded or occurred,
        Decimal(delta),
        count,
    )


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


class UsageDailyViewContract(ABC):
    """Every implementation of the daily usage view answers these alike."""

    @abstractmethod
    def write(
        self, entries: Sequence[LedgerEntry], calendars: Sequence[Calendar] = ()
    ) -> None:
        """Set calendars, then add entries (as the projection writes a batch)."""

    @abstractmethod
    def rows(self) -> dict[DailyKey, DailyRow]: ...

    def day(self, on: date, tenant: str = "t_a") -> DailyRow:
        [row] = [r for k, r in self.rows().items() if k[0] == tenant and k[1] == on]
        return row

    def test_an_instant_belongs_to_its_day_in_the_tenants_timezone(self) -> None:
        self.write([entry(utc(2026, 11, 20, 2))], [NEW_YORK])  # 21:00 on the 19th

        assert {k[1] for k in self.rows()} == {date(2026, 11, 19)}

    def test_the_23_hour_spring_forward_day(self) -> None:
        # 2026-03-08 in New York: [05:00Z on the 8th, 04:00Z on the 9th)
        self.write(
            [
                entry(utc(2026, 3, 8, 4, 59)),  # 23:59 on the 7th
                entry(utc(2026, 3, 8, 5, 0)),  # the day's first minute
                entry(utc(2026, 3, 9, 3, 59), delta="2"),  # its last minute
                entry(utc(2026, 3, 9, 4, 0), delta="4"),  # the 9th
            ],
            [NEW_YORK],
        )

        assert self.day(date(2026, 3, 8)).quantity == Decimal(3)
        assert self.day(date(2026, 3, 9)).quantity == Decimal(4)

    def test_the_25_hour_fall_back_day(self) -> None:
        # 2026-11-01 in New York: [04:00Z on the 1st, 05:00Z on the 2nd)
        self.write(
            [
                entry(utc(2026, 11, 1, 4, 0)),
                entry(utc(2026, 11, 2, 4, 30), delta="2"),  # 23:30 EST, same day
                entry(utc(2026, 11, 2, 5, 0), delta="4"),
            ],
            [NEW_YORK],
        )

        assert self.day(date(2026, 11, 1)).quantity == Decimal(3)
        assert self.day(date(2026, 11, 2)).quantity == Decimal(4)

    def test_an_event_recorded_after_its_day_ended_is_late(self) -> None:
        occurred = utc(2026, 3, 9, 3, 0)  # the 8th, a 23-hour day
        self.write(
            [
                entry(occurred, recorded=utc(2026, 3, 9, 3, 59)),  # still the 8th
                entry(occurred, recorded=utc(2026, 3, 9, 4, 0), delta="5"),
            ],
            [NEW_YORK],
        )

        row = self.day(date(2026, 3, 8))
        assert (row.first_reported_quantity, row.late_event_count) == (1, 1)
        assert row.quantity == Decimal(6)

    def test_usage_recorded_after_the_period_closed_is_an_adjustment(self) -> None:
        # November closes at 05:00Z on 1 December + 72 h grace
        occurred = utc(2026, 11, 30, 12)
        self.write(
            [
                entry(occurred, recorded=utc(2026, 12, 4, 4, 59), delta="2"),
                entry(occurred, recorded=utc(2026, 12, 4, 5, 0), delta="3"),
            ],
            [NEW_YORK],
        )

        row = self.day(date(2026, 11, 30))
        assert (row.adjustment_quantity, row.adjustment_count) == (Decimal(3), 1)
        assert row.period_start == date(2026, 11, 1)

    def test_an_anchor_day_starts_the_period_on_that_day(self) -> None:
        anchored = Calendar("t_a", "Europe/Paris", 15, 0)
        self.write(
            [entry(utc(2026, 11, 14, 22, 59)), entry(utc(2026, 11, 14, 23, 0))],
            [anchored],
        )

        assert self.day(date(2026, 11, 14)).period_start == date(2026, 10, 15)
        assert self.day(date(2026, 11, 15)).period_start == date(2026, 11, 15)

    def test_a_calendar_change_rebuckets_the_days_already_there(self) -> None:
        self.write([entry(utc(2026, 11, 20, 2))])  # UTC: the 20th
        self.write([], [NEW_YORK])

        assert {k[1] for k in self.rows()} == {date(2026, 11, 19)}

    def test_voids_and_amends_are_signed_deltas(self) -> None:
        at = utc(2026, 11, 20, 12)
        self.write(
            [
                entry(at, delta="5"),
                entry(at, delta="-5", count=-1, kind="voided"),
                entry(at, delta="2.5"),
                entry(at, delta="-1.25", count=0, kind="amended"),
            ]
        )

        row = self.day(date(2026, 11, 20))
        assert (row.quantity, row.source_event_count) == (Decimal("1.25"), 1)

    def test_each_tenant_is_bucketed_in_its_own_calendar(self) -> None:
        at = utc(2026, 11, 20, 2)
        self.write([entry(at), entry(at, tenant="t_b")], [NEW_YORK])

        assert self.day(date(2026, 11, 19), "t_a").quantity == 1
        assert self.day(date(2026, 11, 20), "t_b").quantity == 1


class TestInMemoryView(UsageDailyViewContract):
    @pytest.fixture(autouse=True)
    def _view(self) -> None:
        self.view = InMemoryUsageDailyView()

    def write(
        self, entries: Sequence[LedgerEntry], calendars: Sequence[Calendar] = ()
    ) -> None:
        self.view.set_calendars(calendars)
        self.view.add_entries(entries)

    def rows(self) -> dict[DailyKey, DailyRow]:
        return {
            k: r for k, r in self.view.daily.items() if r != DailyRow(r.period_start)
        }


class TestPostgresView(UsageDailyViewContract):
    @pytest.fixture(autouse=True)
    def _view(self, settings: Settings) -> None:
        self.prepare(settings)

    def prepare(self, settings: Settings) -> None:
        """Version 1 of the tables in the test's own schema."""
        ensure_database(settings)
        self.settings = settings
        with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
            for statement in UsageDailyProjection().create_statements(
                settings.db_schema, 1
            ):
                conn.execute(statement)

    def write(
        self, entries: Sequence[LedgerEntry], calendars: Sequence[Calendar] = ()
    ) -> None:
        with psycopg.connect(self.settings.conninfo()) as conn, conn.cursor() as cur:
            view = PostgresUsageDailyView(cur, self.settings.db_schema, 1)
            view.set_calendars(calendars)
            view.add_entries(entries)

    def rows(self) -> dict[DailyKey, DailyRow]:
        table = Identifier(self.settings.db_schema, f"{DAILY}_v1")
        with psycopg.connect(self.settings.conninfo()) as conn:
            found = conn.execute(
                SQL(
                    "SELECT tenant_id, usage_date, workspace_id, product_area, unit,"
                    " period_start, quantity, source_event_count,"
                    " first_reported_quantity, late_event_count, adjustment_quantity,"
                    " adjustment_count FROM {}"
                ).format(table)
            ).fetchall()
        return {tuple(r[:5]): DailyRow(*r[5:]) for r in found}  # type: ignore[misc]


# Whole hours around a month end with DST changes (Paris on 25 October, New
# York on 1 November), so day ends, period starts and closes are often hit
# exactly: that is where a rule written twice would drift apart.
instants = st.integers(0, 14 * 24).map(
    lambda hours: utc(2026, 10, 24) + timedelta(hours=hours)
)
calendars = st.builds(
    Calendar,
    st.just("t_a"),
    st.sampled_from(["UTC", "America/New_York", "Europe/Paris", "Asia/Kolkata"]),
    st.sampled_from([1, 2, 28]),
    st.sampled_from([0, 1, 72]),
)


@given(
    batches=st.lists(
        st.tuples(
            st.lists(
                st.tuples(instants, st.integers(0, 100), st.integers(0, 99)),
                max_size=6,
            ),
            st.lists(calendars, max_size=1),
        ),
        min_size=1,
        max_size=4,
    )
)
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_both_views_agree_on_any_history(
    settings_factory: Any,
    batches: list[tuple[list[tuple[datetime, int, int]], list[Calendar]]],
) -> None:
    """Arbitrary instants, recording delays and calendar changes, in batches."""
    memory, postgres = TestInMemoryView(), TestPostgresView()
    memory.view = InMemoryUsageDailyView()
    with settings_factory() as s:
        postgres.prepare(s)
        for events, cals in batches:
            entries = [
                entry(at, recorded=at + timedelta(hours=delay), delta=str(q))
                for at, delay, q in events
            ]
            memory.write(entries, cals)
            postgres.write(entries, cals)

        assert postgres.rows() == memory.rows()

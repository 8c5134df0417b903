"""A brute-force model of the billing rules, to check the read models against.

Deliberately naive and separate from the production code: it keeps every
accepted event and correction, then folds them into daily rows from scratch.
Only the day-and-period rule is shared (domain.periods.day_and_period), so the
rule is written once in Python; its SQL form is held to it by tests/contracts.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from domain.periods import day_and_period

Key = tuple[str, date, str, str, str]  # tenant, day, workspace, product area, unit


@dataclass
class Calendar:
    timezone: str = "UTC"
    anchor: int = 1
    grace_hours: int = 72


@dataclass
class Change:
    tenant: str
    workspace: str
    area: str
    unit: str
    occurred_at: datetime
    recorded_at: datetime
    delta: Decimal
    count: int
    kind: str


@dataclass
class Record:
    payload: dict[str, Any]
    quantity: Decimal
    voided: bool = False


@dataclass
class Oracle:
    records: dict[tuple[str, str], Record] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    calendars: dict[str, Calendar] = field(default_factory=dict)

    def record(
        self, tenant: str, payload: dict[str, Any], recorded_at: datetime
    ) -> str:
        """What the store should say about an event (first copy wins, forever)."""
        key = (tenant, payload["id"])
        if datetime.fromisoformat(payload["timestamp"]) > recorded_at + timedelta(
            minutes=5
        ):
            return "rejected"  # from the future
        if key in self.records:
            same = self.records[key].payload == payload
            return "duplicate" if same else "conflict"
        quantity = Decimal(payload["quantity"])
        self.records[key] = Record(payload, quantity)
        self._change(tenant, payload, recorded_at, quantity, 1, "recorded")
        return "accepted"

    def void(self, tenant: str, event_id: str, recorded_at: datetime) -> bool:
        record = self.records.get((tenant, event_id))
        if record is None or record.voided:
            return False
        record.voided = True
        self._change(
            tenant, record.payload, recorded_at, -record.quantity, -1, "voided"
        )
        return True

    def amend(
        self, tenant: str, event_id: str, quantity: Decimal, recorded_at: datetime
    ) -> bool:
        record = self.records.get((tenant, event_id))
        if record is None or record.voided or record.quantity == quantity:
            return False
        delta, record.quantity = quantity - record.quantity, quantity
        self._change(tenant, record.payload, recorded_at, delta, 0, "amended")
        return True

    def _change(
        self,
        tenant: str,
        p: dict[str, Any],
        at: datetime,
        delta: Decimal,
        count: int,
        kind: str,
    ) -> None:
        occurred = datetime.fromisoformat(p["timestamp"])
        self.changes.append(
            Change(
                tenant,
                p["workspace_id"],
                p["product_area"].strip().lower(),
                p["unit"].strip().lower(),
                occurred,
                at,
                delta,
                count,
                kind,
            )
        )

    def daily(self) -> dict[Key, tuple[Any, ...]]:
        """Per key: period_start, quantity, events, first reported, late events,
        adjustment, adjusted."""
        rows: dict[Key, list[Any]] = defaultdict(
            lambda: [None, Decimal(0), 0, Decimal(0), 0, Decimal(0), 0]
        )
        for c in self.changes:
            cal = self.calendars.get(c.tenant, Calendar())
            # The one day-and-period rule of the domain; the fold is the oracle's.
            day, period = day_and_period(
                c.occurred_at,
                timezone=cal.timezone,
                anchor_day=cal.anchor,
                grace=timedelta(hours=cal.grace_hours),
            )
            zone = ZoneInfo(cal.timezone)
            day_ends = datetime.combine(day + timedelta(days=1), time(0), zone)
            closes = period.closes_at
            row = rows[(c.tenant, day, c.workspace, c.area, c.unit)]
            row[0] = period.start
            row[1] += c.delta
            row[2] += c.count
            if c.recorded_at < day_ends:
                row[3] += c.delta
            elif c.kind == "recorded":
                row[4] += 1
            if c.recorded_at >= closes:
                row[5] += c.delta
                row[6] += 1
        return {k: tuple(v) for k, v in rows.items()}

    def totals(
        self,
        tenant: str,
        start: date,
        end: date,
        workspace: str | None = None,
        area: str | None = None,
    ) -> dict[tuple[str, str], Decimal]:
        """Quantity per (product area, unit) of a tenant's days in [start, end)."""
        out: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        for (t, day, ws, pa, unit), row in self.daily().items():
            if (
                t == tenant
                and start <= day < end
                and workspace in (None, ws)
                and area in (None, pa)
            ):
                out[(pa, unit)] += row[1]
        return dict(out)


DAILY_SQL = (
    "SELECT tenant_id, usage_date, workspace_id, product_area, unit, period_start,"
    " quantity, source_event_count, first_reported_quantity, late_event_count,"
    " adjustment_quantity,"
    " adjustment_count FROM billing_usage_daily"
)


def read_model(conn: Any) -> dict[Key, tuple[Any, ...]]:
    """billing_usage_daily as the oracle shapes it (quantities compared as numbers)."""
    return {
        (r[0], r[1], r[2], r[3], r[4]): (r[5], r[6], r[7], r[8], r[9], r[10], r[11])
        for r in conn.execute(DAILY_SQL).fetchall()
    }

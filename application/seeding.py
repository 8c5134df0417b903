"""Deterministic, realistic demo usage, sent through the real ingest path.

Several tenants (each in its own timezone), workspaces and product areas; a
weekday/weekend and daytime rhythm with growth; a few injected spikes; and the
untidy parts real metering has: late events, re-sent duplicates and batches out
of order.

The history is replayed as its producers would have sent it live: the
ingestor's clock follows the data, each tenant's usage arriving in blocks of
its local day shortly after the block's last usage, a few events held back
for hours or days, and each month's last hours of one workspace re-sent days
later, after the period closed (an outage at month end). So the demo's days
are not all "late" because they were loaded today: late counts, restated days
and late adjustments of closed periods come from the events that really were
sent late.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from application.clock import Clock, SetClock
from application.metering.app import MeteringApp
from application.metering.ingestor import Ingestor
from application.price_book import PriceBookApp
from application.tenants import TenantSettingsApp
from domain.tenant_settings import BillingSettings
from domain.values import decimal_text

PRODUCT_AREAS = [
    ("compute", "vcpu_hour", Decimal("4.0")),
    ("storage", "gb_hour", Decimal("120.0")),
    ("api", "request", Decimal("1800")),
    ("egress", "gb", Decimal("2.5")),
    ("ai", "token", Decimal("42000")),
    ("database", "query", Decimal("950")),
    ("queue", "message", Decimal("3000")),
    ("search", "query", Decimal("400")),
    ("functions", "invocation", Decimal("1200")),
    ("cdn", "gb", Decimal("8.0")),
]
# What the demo tenants pay, in EUR: flat prices, free allowances, and graduated
# tiers (volume discounts), as a SaaS price page would list them. Areas of a
# larger plan beyond these stay unpriced, which the forecast then says.
DEMO_PRICES: list[dict[str, Any]] = [
    {"product_area": "compute", "unit": "vcpu_hour", "unit_price": "0.045"},
    {"product_area": "storage", "unit": "gb_hour", "unit_price": "0.00014"},
    {
        "product_area": "api",
        "unit": "request",
        "included_quantity": "100000",
        "tiers": [
            {"up_to": "1000000", "unit_price": "0.0000035"},
            {"up_to": "10000000", "unit_price": "0.0000028"},
            {"up_to": None, "unit_price": "0.000002"},
        ],
    },
    {
        "product_area": "egress",
        "unit": "gb",
        "tiers": [
            {"up_to": "1024", "unit_price": "0.09"},
            {"up_to": "10240", "unit_price": "0.085"},
            {"up_to": None, "unit_price": "0.07"},
        ],
    },
    {
        "product_area": "ai",
        "unit": "token",
        "included_quantity": "1000000",
        "tiers": [
            {"up_to": "10000000", "unit_price": "0.000002"},
            {"up_to": None, "unit_price": "0.0000015"},
        ],
    },
    {"product_area": "database", "unit": "query", "unit_price": "0.0000004"},
    {
        "product_area": "queue",
        "unit": "message",
        "included_quantity": "1000000",
        "unit_price": "0.0000004",
    },
    {"product_area": "search", "unit": "query", "unit_price": "0.00002"},
    {
        "product_area": "functions",
        "unit": "invocation",
        "included_quantity": "1000000",
        "unit_price": "0.0000002",
    },
    {"product_area": "cdn", "unit": "gb", "unit_price": "0.08"},
]
# One currency per tenant; Japanese yen has no minor unit (charges round to 1).
CURRENCIES = {"t_globex": "USD", "t_hooli": "USD", "t_umbrella": "JPY"}
EXCHANGE = {"EUR": Decimal(1), "USD": Decimal("1.08"), "JPY": Decimal(160)}
TENANTS = [
    ("t_acme", "UTC"),
    ("t_globex", "America/New_York"),
    ("t_initech", "Europe/Berlin"),
    ("t_umbrella", "Asia/Tokyo"),
    ("t_hooli", "America/Los_Angeles"),
]
WORKSPACES = [
    "ws_analytics",
    "ws_checkout",
    "ws_mobile",
    "ws_search",
    "ws_platform",
    "ws_data",
    "ws_growth",
    "ws_billing",
    "ws_support",
    "ws_ml",
]


@dataclass(frozen=True)
class SeedPlan:
    tenants: int = 3
    workspaces: int = 5
    product_areas: int = 5
    days: int = 90
    events_per_day: int = 24
    seed: int = 7

    def tenant_list(self) -> list[tuple[str, str]]:
        known = TENANTS[: self.tenants]
        extra = [(f"t_demo{i}", "UTC") for i in range(len(known), self.tenants)]
        return known + extra

    def workspace_list(self) -> list[str]:
        extra = [f"ws_{i:02d}" for i in range(len(WORKSPACES), self.workspaces)]
        return (WORKSPACES + extra)[: self.workspaces]

    def area_list(self) -> list[tuple[str, str, Decimal]]:
        extra = [
            (f"area{i:02d}", "unit", Decimal(10))
            for i in range(len(PRODUCT_AREAS), self.product_areas)
        ]
        return (PRODUCT_AREAS + extra)[: self.product_areas]

    @property
    def expected_events(self) -> int:
        per_tenant = (
            self.workspaces * self.product_areas * self.days * self.events_per_day
        )
        return self.tenants * per_tenant


# How the replayed producers send: a block of BLOCK_HOURS local hours, SEND_DELAY
# after its last usage; LATE_SHARE of the events held back for LATE_DELAYS.
BLOCK_HOURS = 6
SEND_DELAY = timedelta(seconds=30)
LATE_SHARE = 0.002
LATE_DELAYS = (timedelta(hours=6), timedelta(days=5))
MAX_BATCH = 10_000
# And one producer outage a month: the first workspace's last OUTAGE_HOURS of
# each month arrive OUTAGE_DELAY later, after the period closed (72 h grace).
OUTAGE_HOURS = 6
OUTAGE_DELAY = timedelta(days=5)


# Anomalies planted in the last weeks, so the demo shows each kind: a spike, a
# drop, a level shift, and a day first reported nearly empty (its usage held
# back) whose late data then restate it, clearing the drop it raised (held
# longer than the anomaly model waits for a day to settle, so the drop is
# raised before the usage comes).
PLANTED_LATE = timedelta(days=4)


@dataclass(frozen=True)
class Planted:
    spike_day: int
    drop_day: int
    shift_from: int
    late_day: int

    @classmethod
    def of(cls, plan: SeedPlan) -> Planted | None:
        """None when the plan is too small to judge anomalies (under 6 weeks,
        or under 4 workspaces)."""
        if plan.days < 42 or plan.workspaces < 4:
            return None
        last = plan.days - 1
        return cls(last - 3, last - 5, last - 8, last - 10)

    def factor(self, day: int, workspace: int, area: int) -> Decimal:
        if (day, workspace, area) == (self.spike_day, 0, 0):
            return Decimal(6)
        if (day, workspace) == (self.drop_day, 1):
            return Decimal("0.1")
        if day >= self.shift_from and (workspace, area) == (2, 1):
            return Decimal("2.5")
        return Decimal(1)


def generate_days(
    plan: SeedPlan, now: datetime, tenant: str
) -> Iterator[list[dict[str, Any]]]:
    """The tenant's usage events, a (UTC) day at a time, oldest first;
    deterministic for a seed and a `now`."""
    rng = random.Random(f"{plan.seed}/{tenant}")  # noqa: S311 - demo data, seeded
    spikes = {
        (rng.randrange(plan.days), rng.randrange(plan.workspaces)) for _ in range(3)
    }
    start = history_start(plan, now)
    step = timedelta(hours=24) / plan.events_per_day
    planted = Planted.of(plan)
    # Each workspace has its own size; a day varies around it by +-15%, and
    # the whole tenant grows by half over the history.
    sizes = [0.5 + rng.random() * 2 for _ in plan.workspace_list()]
    for day in range(plan.days):
        events: list[dict[str, Any]] = []
        for w, workspace in enumerate(plan.workspace_list()):
            daily = sizes[w] * (0.85 + rng.random() * 0.3) * (1 + day / plan.days / 2)
            level = Decimal(daily)
            for a, (area, unit, base) in enumerate(plan.area_list()):
                plant = planted.factor(day, w, a) if planted else Decimal(1)
                for i in range(plan.events_per_day):
                    at = start + timedelta(days=day) + step * i
                    if at > now:
                        break
                    factor = (
                        _rhythm(at, rng)
                        * (Decimal(12) if (day, w) in spikes else 1)
                        * plant
                    )
                    quantity = (base * level * factor).quantize(Decimal("0.001"))
                    events.append(
                        {
                            "id": f"{tenant}-{workspace}-{area}-{day:03d}-{i:03d}",
                            "workspace_id": workspace,
                            "product_area": area,
                            "quantity": str(quantity),
                            "unit": unit,
                            "timestamp": at.isoformat(),
                            "properties": {
                                "region": rng.choice(["eu-west-1", "us-east-1"])
                            },
                        }
                    )
        yield events


def history_start(plan: SeedPlan, now: datetime) -> datetime:
    """Midnight (UTC) of the first day of the plan's history."""
    return (now - timedelta(days=plan.days - 1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )


def _rhythm(at: datetime, rng: random.Random) -> Decimal:
    weekday = 1.0 if at.weekday() < 5 else 0.45
    daytime = 0.6 + 0.5 * max(0.0, math.sin((at.hour - 6) / 24 * 2 * math.pi))
    noise = 0.85 + rng.random() * 0.3
    return Decimal(weekday * daytime * noise).quantize(Decimal("0.0001"))


@dataclass(order=True)
class Send:
    """One batch a producer sends, and when."""

    at: datetime
    order: int
    tenant: str = field(compare=False)
    events: list[dict[str, Any]] = field(compare=False)


@dataclass
class Producer:
    """One tenant's metering producer, as the demo replays it."""

    tenant: str
    timezone: str
    outage_workspace: str
    rng: random.Random
    # Planted: this workspace's usage of this UTC day is sent PLANTED_LATE late.
    held: tuple[str, date] | None = None

    def sends(
        self, events: list[dict[str, Any]], order: Iterator[int]
    ) -> Iterator[Send]:
        """A day of usage as this producer sends it: each block of its local day
        just after the block's last usage, shuffled, now and then with an event
        re-sent; a few events held back and sent late on their own; the end of
        a month missed by an outage in one workspace and re-sent days later."""
        zone, rng = ZoneInfo(self.timezone), self.rng
        blocks: dict[tuple[Any, int], list[dict[str, Any]]] = {}
        backlog: list[dict[str, Any]] = []
        for event in events:
            at = datetime.fromisoformat(event["timestamp"])
            local = at.astimezone(zone)
            if self.held == (event["workspace_id"], at.date()):
                yield Send(at + PLANTED_LATE, next(order), self.tenant, [event])
            elif event["workspace_id"] == self.outage_workspace and _month_end(local):
                backlog.append(event)
            elif rng.random() < LATE_SHARE:
                low, high = LATE_DELAYS
                delay = low + (high - low) * rng.random()
                yield Send(at + delay, next(order), self.tenant, [event])
            else:
                key = (local.date(), local.hour // BLOCK_HOURS)
                blocks.setdefault(key, []).append(event)
        if backlog:
            last = max(datetime.fromisoformat(e["timestamp"]) for e in backlog)
            yield Send(last + OUTAGE_DELAY, next(order), self.tenant, backlog)
        for block in blocks.values():
            last = max(datetime.fromisoformat(e["timestamp"]) for e in block)
            rng.shuffle(block)
            for i in range(0, len(block), MAX_BATCH):
                batch = block[i : i + MAX_BATCH]
                if rng.random() < 0.3:  # a retry re-sends an event of the batch
                    batch = [*batch, dict(rng.choice(batch))]
                yield Send(last + SEND_DELAY, next(order), self.tenant, batch)


def _month_end(local: datetime) -> bool:
    """In the last OUTAGE_HOURS of its (local) month."""
    return (local + timedelta(hours=OUTAGE_HOURS)).month != local.month


@dataclass
class SeedReport:
    accepted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    rejected: int = 0
    position: int = 0


def demo_price_book(tenant: str) -> dict[str, Any]:
    """The demo price book of `tenant`, in its currency."""
    currency = CURRENCIES.get(tenant, "EUR")
    rate = EXCHANGE[currency]

    def converted(line: dict[str, Any]) -> dict[str, Any]:
        out = dict(line)
        if "unit_price" in out:
            out["unit_price"] = decimal_text(Decimal(out["unit_price"]) * rate)
        if "tiers" in out:
            out["tiers"] = [
                t | {"unit_price": decimal_text(Decimal(t["unit_price"]) * rate)}
                for t in out["tiers"]
            ]
        return out

    return {"currency": currency, "prices": [converted(p) for p in DEMO_PRICES]}


def seed(  # noqa: PLR0913 - the plan, the applications it writes to, the clock
    plan: SeedPlan,
    *,
    metering: MeteringApp,
    tenants: TenantSettingsApp,
    price_book: PriceBookApp | None = None,
    clock: Clock,
    progress: Callable[[int], None] = lambda _: None,
) -> SeedReport:
    """Replay the plan's usage of every tenant, in the order it would have been
    sent, through the ingestor; returns what the store said."""
    now = clock()
    start = history_start(plan, now)
    replay = SetClock(start)  # the time the replayed producers send at
    ingestor = Ingestor(metering, tenants, clock=replay, max_events=MAX_BATCH)
    report = SeedReport()
    order = itertools.count()
    pending: list[Send] = []
    producers = []
    for tenant, timezone in plan.tenant_list():
        calendar = BillingSettings(timezone=timezone)
        tenants.change_settings(tenant, calendar, actor_id="seed", now=start)
        if price_book is not None:  # from the first seeded period on
            price_book.set_price_book(
                tenant,
                demo_price_book(tenant),
                calendar=calendar,
                actor_id="seed",
                now=start,
            )
        rng = random.Random(f"{plan.seed}/{tenant}/sends")  # noqa: S311
        planted = Planted.of(plan)
        held = None
        if planted:
            late = (start + timedelta(days=planted.late_day)).date()
            held = (plan.workspace_list()[3], late)
        producer = Producer(tenant, timezone, plan.workspace_list()[0], rng, held)
        producers.append((generate_days(plan, now, tenant), producer))
    for day in range(plan.days):
        for history, producer in producers:
            for send in producer.sends(next(history), order):
                heapq.heappush(pending, send)
        # What is due before the next day's first send can go now, in order.
        due = start + timedelta(days=day + 1)
        while pending and pending[0].at <= due:
            _send(heapq.heappop(pending), ingestor, replay, now, report, progress)
    while pending:
        _send(heapq.heappop(pending), ingestor, replay, now, report, progress)
    return report


def _send(  # noqa: PLR0913
    send: Send,
    ingestor: Ingestor,
    replay: SetClock,
    now: datetime,
    report: SeedReport,
    progress: Callable[[int], None],
) -> None:
    replay.now = min(send.at, now)  # held back past the present: it arrives now
    response = ingestor.ingest(send.tenant, msgspec.json.encode(send.events))
    report.accepted += response.accepted
    report.duplicates += response.duplicates
    report.conflicts += response.conflicts
    report.rejected += response.rejected
    report.position = max(report.position, response.position)
    progress(len({e["id"] for e in send.events}))

"""Deterministic, realistic demo usage, sent through the real ingest path.

Several tenants (each in its own timezone), workspaces and product areas; a
weekday/weekend and daytime rhythm with growth; a few injected spikes; and the
untidy parts real metering has: late events, re-sent duplicates and batches out
of order. History older than the acceptance window goes through the audited
ops backfill, as DESIGN section 4 requires.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec

from application.audit import AuditWriter
from application.clock import Clock
from application.recording import Ingestor
from application.tenants import TenantSettingsApp
from domain.audit import AuditRecord
from domain.tenant_settings import BillingSettings

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
    batch_size: int = 1000

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


def generate(plan: SeedPlan, now: datetime, tenant: str) -> Iterator[dict[str, Any]]:
    """The tenant's usage events, oldest day first, deterministic for a seed."""
    rng = random.Random(f"{plan.seed}/{tenant}")  # noqa: S311 - demo data, seeded
    spikes = {
        (rng.randrange(plan.days), rng.randrange(plan.workspaces)) for _ in range(3)
    }
    start = (now - timedelta(days=plan.days - 1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    step = timedelta(hours=24) / plan.events_per_day
    for day in range(plan.days):
        for w, workspace in enumerate(plan.workspace_list()):
            level = Decimal(0.5 + rng.random() * 2) * Decimal(1 + day / plan.days / 2)
            for area, unit, base in plan.area_list():
                for i in range(plan.events_per_day):
                    at = start + timedelta(days=day) + step * i
                    if at > now:
                        break
                    factor = _rhythm(at, rng) * (
                        Decimal(12) if (day, w) in spikes else 1
                    )
                    quantity = (base * level * factor).quantize(Decimal("0.001"))
                    yield {
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


def _rhythm(at: datetime, rng: random.Random) -> Decimal:
    weekday = 1.0 if at.weekday() < 5 else 0.45
    daytime = 0.6 + 0.5 * max(0.0, math.sin((at.hour - 6) / 24 * 2 * math.pi))
    noise = 0.85 + rng.random() * 0.3
    return Decimal(weekday * daytime * noise).quantize(Decimal("0.0001"))


def untidy(events: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """Shuffle a batch and re-send a few of its events, as producers do."""
    rng.shuffle(events)
    duplicates = [dict(e) for e in rng.sample(events, k=min(2, len(events)))]
    return events + duplicates


@dataclass
class SeedReport:
    accepted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    rejected: int = 0
    position: int = 0


def seed(  # noqa: PLR0913
    plan: SeedPlan,
    *,
    ingestor: Ingestor,
    tenants: TenantSettingsApp,
    audit: AuditWriter,
    clock: Clock,
    progress: Callable[[int], None] = lambda _: None,
) -> SeedReport:
    """Send the plan's events for every tenant; returns what the store said."""
    now = clock()
    report = SeedReport()
    for tenant, timezone in plan.tenant_list():
        tenants.change_settings(
            tenant, BillingSettings(timezone=timezone), actor_id="seed", now=now
        )
        window = tenants.get_settings(tenant).acceptance_window
        rng = random.Random(f"{plan.seed}/{tenant}/batches")  # noqa: S311
        late: list[dict[str, Any]] = []
        batch: list[dict[str, Any]] = []
        for event in generate(plan, now, tenant):
            if rng.random() < 0.002:  # held back: arrives late, after newer usage
                late.append(event)
                continue
            batch.append(event)
            if len(batch) >= plan.batch_size:
                _send(untidy(batch, rng), tenant, now - window, ingestor, audit, report)
                progress(len(batch))
                batch = []
        for chunk in (batch, late):
            if chunk:
                _send(untidy(chunk, rng), tenant, now - window, ingestor, audit, report)
                progress(len(chunk))
    return report


def _send(  # noqa: PLR0913
    events: list[dict[str, Any]],
    tenant: str,
    window_start: datetime,
    ingestor: Ingestor,
    audit: AuditWriter,
    report: SeedReport,
) -> None:
    old = [e for e in events if datetime.fromisoformat(e["timestamp"]) < window_start]
    recent = [
        e for e in events if datetime.fromisoformat(e["timestamp"]) >= window_start
    ]
    if old:
        response = ingestor.ingest(tenant, msgspec.json.encode(old), backfill=True)
        audit.write(
            AuditRecord.BackfillRecorded,
            tenant_id=tenant,
            actor_id="seed",
            request_id="seed",
            accepted=response.accepted,
            duplicates=response.duplicates,
            conflicts=response.conflicts,
            rejected=response.rejected,
            position=response.position,
        )
        _add(report, response)
    if recent:
        _add(report, ingestor.ingest(tenant, msgspec.json.encode(recent)))


def _add(report: SeedReport, response: Any) -> None:
    report.accepted += response.accepted
    report.duplicates += response.duplicates
    report.conflicts += response.conflicts
    report.rejected += response.rejected
    report.position = max(report.position, response.position)

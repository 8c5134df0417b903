"""Drive the real write side with a clock the test controls (no waiting on time)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec
import psycopg

from application.bootstrap import WriteSide, build_services
from application.clock import SetClock
from application.metering.batch import IngestOut
from application.metering.corrections import AmendIn, Corrections, VoidIn
from application.metering.ingestor import Ingestor
from domain.tenant_settings import BillingSettings
from tests.oracle import read_model


@dataclass
class Harness:
    write_side: WriteSide
    clock: SetClock
    ingestor: Ingestor
    corrections: Corrections

    def send(
        self,
        tenant: str,
        events: list[dict[str, Any]],
        *,
        at: datetime,
        backfill: bool = True,
    ) -> IngestOut:
        self.clock.now = at
        return self.ingestor.ingest(
            tenant, msgspec.json.encode(events), backfill=backfill
        )

    def void(self, tenant: str, event_id: str, *, at: datetime) -> None:
        self.clock.now = at
        self.corrections.apply(tenant, "ops", "req", VoidIn(event_id, "test"))

    def amend(
        self, tenant: str, event_id: str, quantity: Decimal, *, at: datetime
    ) -> None:
        self.clock.now = at
        self.corrections.apply(
            tenant, "ops", "req", AmendIn(event_id, format(quantity, "f"), "test")
        )

    def set_calendar(
        self,
        tenant: str,
        timezone: str,
        anchor: int = 1,
        grace_hours: int = 72,
        *,
        at: datetime,
    ) -> None:
        settings = BillingSettings(timezone, anchor, grace_hours)
        self.write_side.tenants.change_settings(
            tenant, settings, actor_id="ops", now=at
        )

    def project(self, max_events: int | None = None) -> int:
        return self.write_side.projector.advance(
            "billing_usage_daily", max_events=max_events
        )

    def rows(self) -> dict[Any, Any]:
        with psycopg.connect(self.write_side.settings.conninfo()) as conn:
            return read_model(conn)


@contextmanager
def harness_for(write_side: WriteSide, start: datetime) -> Iterator[Harness]:
    clock = SetClock(start)
    services = build_services(write_side.settings, write_side=write_side, clock=clock)
    try:
        yield Harness(write_side, clock, services.ingestor, services.corrections)
    finally:
        services.audit.close()

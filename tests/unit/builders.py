"""Builders of valid domain objects for unit tests, with only the point changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

from domain.usage import UsageRecord
from domain.values import UsageFacts

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def facts(**changes: Any) -> UsageFacts:
    """The facts of a valid metering event, with `changes` applied."""
    fields: dict[str, Any] = {
        "event_id": "evt_1",
        "workspace_id": "ws_a",
        "product_area": "compute",
        "unit": "vcpu_hour",
        "quantity": Decimal("12.5"),
        "occurred_at": NOW - timedelta(hours=2),
        "properties": {"region": "eu-west-1"},
    }
    fields.update(changes)
    return UsageFacts(**fields)


def recorded(
    tenant_id: str = "t_acme", *, now: datetime = NOW, **changes: Any
) -> UsageRecord:
    """A usage record just recorded at `now` (its Recorded event still pending)."""
    return UsageRecord.record(tenant_id, facts(**changes), now=now, backfill=False)


def void(record: UsageRecord, *, now: datetime = NOW) -> None:
    record.void(correction_id=uuid4(), actor_id="ops_1", reason="duplicate", now=now)


def amend(record: UsageRecord, quantity: str, *, now: datetime = NOW) -> None:
    record.amend(
        Decimal(quantity),
        correction_id=uuid4(),
        actor_id="ops_1",
        reason="meter fix",
        now=now,
    )

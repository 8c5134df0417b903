"""The usage record: one metered event of a tenant, and its corrections.

One aggregate per (tenant, event id), with an id derived by uuid5, so the event
store's primary key is what makes an id unique forever, and concurrent ingest never
contends on a shared aggregate.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, cast
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

from domain.values import UsageFacts, usage_record_id


class UsageError(Exception):
    """A correction that the usage record cannot accept."""


class AlreadyVoided(UsageError):
    """The event was voided before; it cannot be voided or amended again."""


class QuantityUnchanged(UsageError):
    """An amendment to the quantity the event already has."""


class UsageRecord(Aggregate):
    """A metered event as recorded, and what corrections did to it since."""

    class Recorded(Aggregate.Created):
        tenant_id: str
        event_id: str
        workspace_id: str
        product_area: str
        unit: str
        quantity: Decimal
        occurred_at: datetime
        properties: dict[str, Any]
        backfill: bool

    class Corrected(Aggregate.Event):
        """Base of the corrections: each carries the facts a projection needs."""

        tenant_id: str
        event_id: str
        workspace_id: str
        product_area: str
        unit: str
        occurred_at: datetime
        correction_id: UUID
        actor_id: str
        reason: str

    class Voided(Corrected):
        quantity: Decimal  # the quantity that stops counting

        def apply(self, aggregate: Any) -> None:
            aggregate.voided = True

    class Amended(Corrected):
        previous_quantity: Decimal
        quantity: Decimal

        def apply(self, aggregate: Any) -> None:
            aggregate.quantity = self.quantity

    def __init__(  # noqa: PLR0913 - the created event's fields
        self,
        tenant_id: str,
        event_id: str,
        workspace_id: str,
        product_area: str,
        unit: str,
        quantity: Decimal,
        occurred_at: datetime,
        properties: dict[str, Any],
        backfill: bool,
    ) -> None:
        self.tenant_id = tenant_id
        self.event_id = event_id
        self.workspace_id = workspace_id
        self.product_area = product_area
        self.unit = unit
        self.quantity = quantity
        self.original_quantity = quantity
        self.occurred_at = occurred_at
        self.properties = properties
        self.backfill = backfill
        self.voided = False

    @classmethod
    def record(
        cls, tenant_id: str, facts: UsageFacts, *, now: datetime, backfill: bool
    ) -> UsageRecord:
        """Record a new metered event at `now`."""
        started = cls.started(tenant_id, facts, now=now, backfill=backfill)
        record = cast(UsageRecord, started.mutate(None))
        record.pending_events.append(started)
        return record

    @classmethod
    def started(
        cls, tenant_id: str, facts: UsageFacts, *, now: datetime, backfill: bool
    ) -> UsageRecord.Recorded:
        """The event that starts a usage record (batch ingest appends it directly)."""
        fields: dict[str, Any] = {
            "originator_id": usage_record_id(tenant_id, facts.event_id),
            "originator_version": cls.INITIAL_VERSION,
            "originator_topic": _TOPIC,
            "timestamp": now,
            "tenant_id": tenant_id,
            "event_id": facts.event_id,
            "workspace_id": facts.workspace_id,
            "product_area": facts.product_area,
            "unit": facts.unit,
            "quantity": facts.quantity,
            "occurred_at": facts.occurred_at,
            "properties": facts.properties,
            "backfill": backfill,
        }
        return cls.Recorded(**fields)

    @property
    def facts(self) -> UsageFacts:
        """The event as it was first recorded (what a re-send is compared with)."""
        return UsageFacts(
            event_id=self.event_id,
            workspace_id=self.workspace_id,
            product_area=self.product_area,
            unit=self.unit,
            quantity=self.original_quantity,
            occurred_at=self.occurred_at,
            properties=self.properties,
        )

    def void(
        self, *, correction_id: UUID, actor_id: str, reason: str, now: datetime
    ) -> None:
        """Stop counting this event; the original stays in the history."""
        self._check_not_voided()
        self.trigger_event(
            self.Voided,
            timestamp=now,
            quantity=self.quantity,
            **self._correction_fields(correction_id, actor_id, reason),
        )

    def amend(
        self,
        quantity: Decimal,
        *,
        correction_id: UUID,
        actor_id: str,
        reason: str,
        now: datetime,
    ) -> None:
        """Replace the quantity this event counts for."""
        self._check_not_voided()
        if quantity == self.quantity:
            raise QuantityUnchanged(
                f"event {self.event_id} already has quantity {quantity}"
            )
        self.trigger_event(
            self.Amended,
            timestamp=now,
            previous_quantity=self.quantity,
            quantity=quantity,
            **self._correction_fields(correction_id, actor_id, reason),
        )

    def _check_not_voided(self) -> None:
        if self.voided:
            raise AlreadyVoided(f"event {self.event_id} is already voided")

    def _correction_fields(
        self, correction_id: UUID, actor_id: str, reason: str
    ) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "event_id": self.event_id,
            "workspace_id": self.workspace_id,
            "product_area": self.product_area,
            "unit": self.unit,
            "occurred_at": self.occurred_at,
            "correction_id": correction_id,
            "actor_id": actor_id,
            "reason": reason,
        }


_TOPIC = get_topic(UsageRecord)

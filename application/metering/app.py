"""The metering application: the only door through which usage enters the history."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from application.store.event_store import BillingApplication, IdempotentRecorder
from domain.usage import UsageRecord
from domain.values import UsageFacts, usage_record_id


class UsageNotFound(LookupError):
    """No event with that id was ever recorded for the tenant."""


class ConcurrentCorrection(RuntimeError):
    """Another correction changed the same events first; nothing was written."""


@dataclass(frozen=True, slots=True)
class Stored:
    """What the history holds under an id: the first report, and its position."""

    facts: UsageFacts
    position: int


@dataclass(frozen=True, slots=True)
class BatchRecorded:
    """What a batch met in the history: per id, what is stored (now or before),
    which ids this batch added, and the position the batch is visible at."""

    stored: dict[str, Stored]
    added: set[str]
    position: int


class MeteringApp(BillingApplication):
    """Records metered usage and its corrections, idempotently per (tenant, id)."""

    name = "metering"
    recorder_class = IdempotentRecorder

    @property
    def idempotent_recorder(self) -> IdempotentRecorder:
        return cast(IdempotentRecorder, self.recorder)

    def record_batch(
        self,
        tenant_id: str,
        facts: Sequence[UsageFacts],
        *,
        now: datetime,
        backfill: bool = False,
    ) -> BatchRecorded:
        """Append the events whose ids are new (the first copy of each id in the
        batch); say what the history holds for every id."""
        first_by_id: dict[str, UsageFacts] = {}
        for f in facts:
            first_by_id.setdefault(f.event_id, f)
        started = [
            UsageRecord.started(tenant_id, f, now=now, backfill=backfill)
            for f in first_by_id.values()
        ]
        inserted = self.idempotent_recorder.insert_new_events(
            [self.mapper.to_stored_event(e) for e in started]
        )
        stored = {
            f.event_id: Stored(f, inserted[e.originator_id])
            for f, e in zip(first_by_id.values(), started, strict=True)
            if e.originator_id in inserted
        }
        added = set(stored)
        missing = [e.originator_id for e in started if e.originator_id not in inserted]
        stored.update(self._stored_facts(missing))
        position = max((s.position for s in stored.values()), default=0)
        return BatchRecorded(stored, added, position or self.head_position())

    def _stored_facts(self, originator_ids: Sequence[UUID]) -> dict[str, Stored]:
        found: dict[str, Stored] = {}
        for stored, position in self.idempotent_recorder.select_first_events(
            originator_ids
        ):
            event = cast(UsageRecord.Recorded, self.mapper.to_domain_event(stored))
            found[event.event_id] = Stored(_facts_of(event), position)
        return found

    def get_record(self, tenant_id: str, event_id: str) -> UsageRecord:
        try:
            return cast(
                UsageRecord, self.repository.get(usage_record_id(tenant_id, event_id))
            )
        except AggregateNotFoundError:
            raise UsageNotFound(f"event {event_id} not found") from None

    def get_records(
        self, tenant_id: str, event_ids: Iterable[str]
    ) -> list[UsageRecord]:
        """Load many records with one query (for range corrections)."""
        ids = [usage_record_id(tenant_id, e) for e in event_ids]
        by_id: dict[UUID, UsageRecord] = {}
        for stored in self.idempotent_recorder.select_histories(ids):
            event: Any = self.mapper.to_domain_event(stored)
            by_id[event.originator_id] = cast(
                UsageRecord, event.mutate(by_id.get(event.originator_id))
            )
        return [by_id[i] for i in ids if i in by_id]

    def save_corrections(self, records: Sequence[UsageRecord]) -> int:
        """Save corrected records atomically; returns the position reached."""
        try:
            recordings = self.save(*records)
        except IntegrityError:
            raise ConcurrentCorrection(
                "another correction changed these events first; nothing was written, "
                "retry with fresh data"
            ) from None
        return max((r.notification.id for r in recordings), default=0)


def _facts_of(event: UsageRecord.Recorded) -> UsageFacts:
    return UsageFacts(
        event_id=event.event_id,
        workspace_id=event.workspace_id,
        product_area=event.product_area,
        unit=event.unit,
        quantity=Decimal(event.quantity),
        occurred_at=event.occurred_at,
        properties=event.properties,
    )

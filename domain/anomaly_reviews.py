"""An admin's acknowledgement of an anomaly flag: who, when, and their note.

One aggregate per (tenant, flag), created once: acknowledging again changes
nothing (the first acknowledgement stands), so the request is idempotent.
"""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.values import BILLING_NAMESPACE

MAX_NOTE_LENGTH = 2000


def acknowledgement_id(tenant_id: str, anomaly_id: str) -> UUID:
    return uuid5(BILLING_NAMESPACE, f"anomaly-ack/{tenant_id}/{anomaly_id}")


class AnomalyAcknowledgement(Aggregate):
    """A flag an admin has looked at."""

    class Acknowledged(Aggregate.Created):
        tenant_id: str
        anomaly_id: str
        period_start: date  # the billing period the flag belongs to
        note: str
        actor_id: str

    def __init__(
        self,
        tenant_id: str,
        anomaly_id: str,
        period_start: date,
        note: str,
        actor_id: str,
    ) -> None:
        self.tenant_id = tenant_id
        self.anomaly_id = anomaly_id
        self.period_start = period_start
        self.note = note
        self.actor_id = actor_id

    @classmethod
    def acknowledge(  # noqa: PLR0913
        cls,
        tenant_id: str,
        anomaly_id: str,
        period_start: date,
        note: str,
        *,
        actor_id: str,
        now: datetime,
    ) -> AnomalyAcknowledgement:
        return cls._create(
            cls.Acknowledged,
            id=acknowledgement_id(tenant_id, anomaly_id),
            timestamp=now,
            tenant_id=tenant_id,
            anomaly_id=anomaly_id,
            period_start=period_start,
            note=note,
            actor_id=actor_id,
        )

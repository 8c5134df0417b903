"""Acknowledgements of anomaly flags (their own event table, followed by the
anomaly read model)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, cast

from eventsourcing.persistence import IntegrityError

from application.store.event_store import BillingApplication
from domain.anomaly_reviews import AnomalyAcknowledgement, acknowledgement_id


class AnomalyReviewsApp(BillingApplication):
    name = "anomaly_reviews"

    def acknowledge(  # noqa: PLR0913 - which flag, the note, who and when
        self,
        tenant_id: str,
        anomaly_id: str,
        period_start: date,
        note: str,
        *,
        actor_id: str,
        now: datetime,
    ) -> tuple[AnomalyAcknowledgement, int | None]:
        """Acknowledge once; the acknowledgement and the position it reached
        (None: acknowledged before, that one stands)."""
        ack = AnomalyAcknowledgement.acknowledge(
            tenant_id, anomaly_id, period_start, note, actor_id=actor_id, now=now
        )
        try:
            recordings = self.save(ack)
        except IntegrityError:
            earlier: Any = self.repository.get(
                acknowledgement_id(tenant_id, anomaly_id)
            )
            return cast("AnomalyAcknowledgement", earlier), None
        return ack, max((r.notification.id for r in recordings), default=None)

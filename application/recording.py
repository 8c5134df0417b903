"""Recording a producer's batch: shape, rules, then the metering application."""

from __future__ import annotations

from application.clock import Clock
from application.ingest import IngestResponse, decode_batch, read_events
from application.metering import MeteringApp
from application.tenants import TenantSettingsApp


class Ingestor:
    """The one path by which events enter, for HTTP, the queue and the seed."""

    def __init__(
        self,
        metering: MeteringApp,
        tenants: TenantSettingsApp,
        *,
        clock: Clock,
        max_events: int,
    ) -> None:
        self.metering = metering
        self.tenants = tenants
        self.clock = clock
        self.max_events = max_events

    def ingest(
        self, tenant_id: str, body: bytes, *, backfill: bool = False
    ) -> IngestResponse:
        """Record what is valid and new; say what happened to every event."""
        items = decode_batch(body, self.max_events)
        settings = self.tenants.get_settings(tenant_id)
        now = self.clock()
        candidates, rejections = read_events(
            items,
            now=now,
            acceptance_window=settings.acceptance_window,
            backfill=backfill,
        )
        return self.metering.record_batch(
            tenant_id, candidates, rejections, now=now, backfill=backfill
        )

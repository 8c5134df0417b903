"""Recording a producer's batch: shape, rules, then the metering application."""

from __future__ import annotations

import time

from application.clock import Clock
from application.metering.app import MeteringApp
from application.metering.batch import IngestOut, decode_batch, read_events
from application.tenants import TenantSettingsApp
from domain.tenant_settings import BillingSettings

SETTINGS_TTL_SECONDS = 5.0


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
        self._settings: dict[str, tuple[float, BillingSettings]] = {}

    def ingest(
        self, tenant_id: str, body: bytes, *, backfill: bool = False
    ) -> IngestOut:
        """Record what is valid and new; say what happened to every event."""
        items = decode_batch(body, self.max_events)
        settings = self._settings_of(tenant_id)
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

    def _settings_of(self, tenant_id: str) -> BillingSettings:
        """The tenant's settings, re-read at most every few seconds: a change of
        acceptance window takes effect within SETTINGS_TTL_SECONDS."""
        cached = self._settings.get(tenant_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        settings = self.tenants.get_settings(tenant_id)
        self._settings[tenant_id] = (time.monotonic() + SETTINGS_TTL_SECONDS, settings)
        return settings

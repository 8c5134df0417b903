"""Recording a producer's batch: shape, rules, then the metering application."""

from __future__ import annotations

import time
from collections.abc import Sequence

from application.clock import Clock
from application.metering.app import BatchRecorded, MeteringApp
from application.metering.batch import (
    Candidate,
    EventResult,
    IngestOut,
    Rejection,
    Status,
    decode_batch,
    read_events,
)
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
        recorded = self.metering.record_batch(
            tenant_id, [c.facts for c in candidates], now=now, backfill=backfill
        )
        return answer(candidates, rejections, recorded)

    def _settings_of(self, tenant_id: str) -> BillingSettings:
        """The tenant's settings, re-read at most every few seconds: a change of
        acceptance window takes effect within SETTINGS_TTL_SECONDS."""
        cached = self._settings.get(tenant_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        settings = self.tenants.get_settings(tenant_id)
        self._settings[tenant_id] = (time.monotonic() + SETTINGS_TTL_SECONDS, settings)
        return settings


def answer(
    candidates: Sequence[Candidate],
    rejections: Sequence[Rejection],
    recorded: BatchRecorded,
) -> IngestOut:
    """Each event's status: the first copy of a newly stored id is accepted; any
    other copy is a duplicate or a conflict of what the history holds."""
    results: list[EventResult] = [
        EventResult(r.index, r.event_id, "rejected", r.error) for r in rejections
    ]
    counts = {"accepted": 0, "duplicate": 0, "conflict": 0}
    claimed: set[str] = set()
    for c in candidates:
        event_id = c.facts.event_id
        stored = recorded.stored[event_id]
        status: Status
        if event_id in recorded.added and event_id not in claimed:
            status = "accepted"
        elif stored.facts.same_payload_as(c.facts):
            status = "duplicate"
        else:
            status = "conflict"
        claimed.add(event_id)
        counts[status] += 1
        error = (
            "id: already recorded with a different payload; the original is kept"
            if status == "conflict"
            else None
        )
        results.append(EventResult(c.index, event_id, status, error))
    results.sort(key=lambda r: r.index)
    return IngestOut(
        accepted=counts["accepted"],
        duplicates=counts["duplicate"],
        conflicts=counts["conflict"],
        rejected=len(rejections),
        position=recorded.position,
        results=results,
        min_positions=f"metering:{recorded.position}",
    )

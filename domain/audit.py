"""Audit records: who viewed, exported, corrected or was denied what, and when.

Each record is its own small aggregate (one event), so recording never contends.

A view or export also records what an auditor needs to reproduce it byte for
byte (its `replay` field; REPLAY_FIELDS names the keys): the position of every
upstream the answer reflects, the read model's live version, the instant the
request resolved its period at (`now`), the answer's `as_of`, how a wait for
`min_positions` went (part of the bytes), and the request's parameters.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.values import escape_unstorable_in

REPLAY_FIELDS = ("positions", "versions", "now", "as_of", "waited", "params")


class AuditRecord(Aggregate):
    """One audited fact. The event type says what happened."""

    class Recorded(Aggregate.Created):
        tenant_id: str
        actor_id: str
        request_id: str

    class UsageViewed(Recorded):
        period: dict[str, Any]
        filters: dict[str, Any]
        position: int
        row_count: int
        # Added for replay (records written before have neither): the sha256
        # of the bytes sent, and what reproducing them needs (see REPLAY).
        sha256: str | None = None
        replay: dict[str, Any] | None = None

    class ForecastViewed(Recorded):
        period: dict[str, Any]
        filters: dict[str, Any]
        positions: dict[str, int]  # of each upstream the answer reflects
        sha256: str  # of the JSON body served
        replay: dict[str, Any] | None = None

    class AnomaliesViewed(Recorded):
        period: dict[str, Any]
        filters: dict[str, Any]
        positions: dict[str, int]
        sha256: str
        replay: dict[str, Any] | None = None

    class AnomalyAcknowledged(Recorded):
        anomaly_id: str
        note: str
        position: int | None  # None: acknowledged before, that one stands

    class UsageExported(Recorded):
        export_id: UUID
        period: dict[str, Any]
        filters: dict[str, Any]
        position: int
        file_key: str
        row_count: int
        totals: list[dict[str, str]]
        sha256: str
        replay: dict[str, Any] | None = None

    class AccessDenied(Recorded):
        method: str
        path: str
        required_role: str
        roles: list[str]

    class CorrectionApplied(Recorded):
        correction_id: UUID
        action: str
        reason: str
        event_ids: list[str]
        filter: dict[str, Any]
        event_count: int
        totals: list[dict[str, str]]
        position: int

    class BackfillRecorded(Recorded):
        accepted: int
        duplicates: int
        conflicts: int
        rejected: int
        position: int

    class ProjectionRebuildRequested(Recorded):
        projection: str

    class BudgetChanged(Recorded):
        period: str  # the start of the period it is for
        amount: str
        currency: str
        position: int

    class PriceBookChanged(Recorded):
        effective_from: str  # the start of the first period it prices
        currency: str
        prices: int  # how many (product area, unit) lines
        position: int

    class ViewReplayed(Recorded):
        audit_event_id: int  # the view or export reproduced (its audit log id)
        audit_event_type: str
        verified: bool  # identical to the bytes sent then
        replayed_sha256: str

    class WebhookChanged(Recorded):
        action: str  # "set" (a new signing secret was issued) or "removed"
        url: str  # the endpoint set or removed; never the secret

    class UsageExplained(Recorded):
        params: dict[str, Any]  # the row asked about, as_of/position, after, limit
        position: int  # of metering: the usage ledger read up to it
        found: bool  # False: no such row (answered 404)
        entry_count: int  # ledger entries listed on the page served
        sha256: str | None  # of the JSON body served (None when not found)

    class MeteringEventInspected(Recorded):
        event_id: str
        found: bool  # False: the tenant has no such event (answered 404)
        entry_count: int  # events of its history listed
        sha256: str | None  # of the JSON body served (None when not found)

    def __init__(self) -> None:
        """Audit records keep no state: written once, read by projections."""

    @classmethod
    def record(
        cls, event_class: type[Recorded], *, id: UUID, now: datetime, **fields: Any
    ) -> AuditRecord:
        """Record one audited fact of type `event_class` at `now`.

        What a caller sent (a path, a token's roles) is kept, but text PostgreSQL
        cannot hold is written as visible escapes: an audit record must never be
        the poison that stops the audit log."""
        kept = {name: escape_unstorable_in(value) for name, value in fields.items()}
        return cls._create(event_class, id=id, timestamp=now, **kept)

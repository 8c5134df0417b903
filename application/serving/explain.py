"""Explaining numbers to auditors: a daily row's ledger entries, an event's history.

An answer is only returned once its audit record (UsageExplained,
MeteringEventInspected, with the sha256 of the bytes sent) is durable; a
lookup that finds nothing is audited too, then answered with a 404.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

import msgspec
from eventsourcing.persistence import StoredEvent
from psycopg_pool import AsyncConnectionPool

from application.audit.group_commit import AsyncAuditWriter
from application.audit.writer import AuditUnavailable
from application.tokens import Principal
from domain.audit import AuditRecord
from domain.usage import UsageRecord
from domain.values import decimal_text, usage_record_id
from projections.history import Cut, anchored
from projections.usage_daily.explain import (
    Entry,
    Explanation,
    RowKey,
    explain_row,
    stored_history,
)


class EventDecoder(Protocol):
    """The metering application's mapper (stored event -> domain event)."""

    def to_domain_event(self, stored_event: StoredEvent, /) -> Any: ...


@dataclass(frozen=True, slots=True)
class ExplainRequest:
    """A daily row, optionally at a cut (`as_of` or `position`), and a page."""

    key: RowKey
    as_of: datetime | None = None
    position: int | None = None
    after: int = 0
    limit: int = 100


class ExplanationOut(msgspec.Struct):
    """The row as a whole and one page of the entries that sum to it."""

    tenant_id: str
    workspace_id: str
    product_area: str
    unit: str
    usage_date: date
    as_of: datetime | None  # the instant asked (null: the row as served now)
    position: int  # of metering: no entry listed lies beyond it
    timezone: str  # the calendar the day was bucketed in
    quantity: str
    source_event_count: int
    events: list[Entry]
    next: int | None  # pass as `after` for the next page


class RecordedOut(msgspec.Struct, tag="recorded", tag_field="kind"):
    position: int
    recorded_at: datetime
    quantity: str
    occurred_at: datetime
    workspace_id: str
    product_area: str
    unit: str
    properties: dict[str, Any]
    backfill: bool


class AmendedOut(msgspec.Struct, tag="amended", tag_field="kind"):
    position: int
    recorded_at: datetime
    previous_quantity: str
    quantity: str
    correction_id: UUID
    actor_id: str
    reason: str


class VoidedOut(msgspec.Struct, tag="voided", tag_field="kind"):
    position: int
    recorded_at: datetime
    quantity: str  # what stopped counting
    correction_id: UUID
    actor_id: str
    reason: str


HistoryEntry = RecordedOut | AmendedOut | VoidedOut


class EventHistoryOut(msgspec.Struct):
    """One metering event: what it counts for now, and its whole history."""

    tenant_id: str
    event_id: str
    quantity: str  # as it counts now (0 once voided)
    voided: bool
    history: list[HistoryEntry]


class ExplainService:
    """The auditor's explanations of one tenant's usage."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        audit: AsyncAuditWriter,
        decoder: EventDecoder,
        events_table: str,
    ) -> None:
        self.pool = pool
        self.audit = audit
        self.decoder = decoder
        self.events_table = events_table
        self._encode = msgspec.json.Encoder().encode

    async def explain(
        self, principal: Principal, request: ExplainRequest, *, request_id: str
    ) -> bytes | None:
        """The encoded explanation of one daily row; None when there is no such
        row. Raises InvalidCut (naming the field) for a cut past the history."""
        async with self.pool.connection() as conn:
            cut = await self._cut(conn, request)
            found = await explain_row(
                conn, request.key, cut, after=request.after, limit=request.limit
            )
        body = None if not found.entry_total else self._explanation(request, found)
        await self._write(
            AuditRecord.UsageExplained,
            principal,
            request_id,
            body,
            params=_params(request),
            position=found.position,
            entry_count=len(found.entries),
        )
        return body

    async def event_history(
        self, principal: Principal, event_id: str, *, request_id: str
    ) -> bytes | None:
        """The encoded history of one of the tenant's metering events; None
        when the tenant has none with that id."""
        originator = usage_record_id(principal.tenant_id, event_id)
        async with self.pool.connection() as conn:
            stored = await stored_history(conn, self.events_table, originator)
        history = [
            _history_entry(
                position,
                self.decoder.to_domain_event(
                    StoredEvent(originator, version, topic, state)
                ),
            )
            for position, version, topic, state in stored
        ]
        out = _event_out(principal.tenant_id, event_id, history)
        body = self._encode(out) if history else None
        await self._write(
            AuditRecord.MeteringEventInspected,
            principal,
            request_id,
            body,
            event_id=event_id,
            entry_count=len(history),
        )
        return body

    async def _cut(self, conn: Any, request: ExplainRequest) -> Cut | None:
        if request.position is not None:
            return await anchored(conn, Cut({"metering": request.position}))
        return None if request.as_of is None else Cut(at=request.as_of)

    def _explanation(self, request: ExplainRequest, found: Explanation) -> bytes:
        key, entries = request.key, found.entries
        return self._encode(
            ExplanationOut(
                tenant_id=key.tenant_id,
                workspace_id=key.workspace_id,
                product_area=key.product_area,
                unit=key.unit,
                usage_date=key.usage_date,
                as_of=request.as_of,
                position=found.position,
                timezone=found.timezone,
                quantity=found.quantity,
                source_event_count=found.source_event_count,
                events=entries,
                next=entries[-1].position if found.more else None,
            )
        )

    async def _write(
        self,
        record: type[AuditRecord.Recorded],
        principal: Principal,
        request_id: str,
        body: bytes | None,
        **fields: Any,
    ) -> None:
        try:
            await self.audit.write(
                record,
                tenant_id=principal.tenant_id,
                actor_id=principal.subject,
                request_id=request_id,
                found=body is not None,
                sha256=None if body is None else hashlib.sha256(body).hexdigest(),
                **fields,
            )
        except Exception as e:
            raise AuditUnavailable(f"not served: audit record not written ({e})") from e


def _params(request: ExplainRequest) -> dict[str, Any]:
    key = request.key
    return {
        "workspace_id": key.workspace_id,
        "product_area": key.product_area,
        "unit": key.unit,
        "usage_date": key.usage_date.isoformat(),
        "as_of": None if request.as_of is None else request.as_of.isoformat(),
        "position": request.position,
        "after": request.after,
        "limit": request.limit,
    }


def _history_entry(position: int, event: Any) -> HistoryEntry:
    at = event.timestamp
    if isinstance(event, UsageRecord.Amended):
        return AmendedOut(
            position,
            at,
            _text(event.previous_quantity),
            _text(event.quantity),
            event.correction_id,
            event.actor_id,
            event.reason,
        )
    if isinstance(event, UsageRecord.Voided):
        return VoidedOut(
            position,
            at,
            _text(event.quantity),
            event.correction_id,
            event.actor_id,
            event.reason,
        )
    e: UsageRecord.Recorded = event
    return RecordedOut(
        position,
        at,
        _text(e.quantity),
        e.occurred_at,
        e.workspace_id,
        e.product_area,
        e.unit,
        e.properties,
        e.backfill,
    )


def _event_out(
    tenant_id: str, event_id: str, history: list[HistoryEntry]
) -> EventHistoryOut:
    quantity, voided = Decimal(0), False
    for entry in history:
        if isinstance(entry, VoidedOut):
            voided = True
        else:
            quantity = Decimal(entry.quantity)
    return EventHistoryOut(
        tenant_id, event_id, _text(Decimal(0) if voided else quantity), voided, history
    )


def _text(quantity: Decimal | str) -> str:
    return decimal_text(Decimal(quantity))

"""Corrections by ops: void or amend one event, or void a range (dry run first).

A correction is new events in the history (the originals stay), each carrying
the correction id, the actor and the reason; a CorrectionApplied audit record
indexes it. Range voids find their events in the usage ledger once it has caught
up with the history, then re-check every event against its aggregate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, Protocol
from uuid import UUID, uuid4

import msgspec

from application.audit.writer import AuditWriter
from application.clock import Clock
from application.metering.app import MeteringApp
from domain.audit import AuditRecord
from domain.usage import UsageRecord
from domain.values import (
    InvalidValue,
    as_utc,
    check_identifier,
    check_storable_text,
    decimal_text,
    normalise_slug,
    parse_quantity,
)
from projections.usage_daily.ledger import LedgerReader, RangeMatch

MAX_RANGE_EVENTS = 50_000
MAX_REASON_LENGTH = 500
LEDGER_WAIT_SECONDS = 10.0


class VoidIn(
    msgspec.Struct, tag="void", tag_field="action", forbid_unknown_fields=True
):
    event_id: str
    reason: str


class AmendIn(
    msgspec.Struct, tag="amend", tag_field="action", forbid_unknown_fields=True
):
    event_id: str
    quantity: str  # in the quantity grammar, e.g. "12.5"
    reason: str


class RangeFilter(msgspec.Struct, forbid_unknown_fields=True):
    """Events whose timestamp is in [start, end), optionally narrowed."""

    start: datetime
    end: datetime
    workspace_id: str | None = None
    product_area: str | None = None
    unit: str | None = None


class VoidRangeIn(
    msgspec.Struct, tag="void_range", tag_field="action", forbid_unknown_fields=True
):
    filter: RangeFilter
    reason: str
    dry_run: bool = True  # a range void only writes when asked to, explicitly
    expected_events: int | None = None


CorrectionIn = VoidIn | AmendIn | VoidRangeIn


class AffectedDay(msgspec.Struct):
    usage_date: date
    workspace_id: str
    product_area: str
    unit: str
    quantity_change: str
    event_count_change: int


class QuantityChange(msgspec.Struct):
    product_area: str
    unit: str
    quantity_change: str


class CorrectionOut(msgspec.Struct):
    action: Literal["void", "amend", "void_range"]
    dry_run: bool
    correction_id: UUID | None
    event_count: int
    position: int
    days: list[AffectedDay]
    totals: list[QuantityChange]


class InvalidCorrection(ValueError):
    """The request breaks a rule; the message names the field."""


class CorrectionMismatch(RuntimeError):
    """The events matching a range are not what the caller expected."""


class LedgerBehind(RuntimeError):
    """The usage ledger has not caught up with the history yet; retry shortly."""


class WaitFor(Protocol):
    """Waits until a read model has processed an upstream up to a position."""

    def __call__(
        self, name: str, upstream: str, position: int, timeout: float
    ) -> bool: ...


class Corrections:
    """Applies ops corrections for one tenant at a time."""

    def __init__(  # noqa: PLR0913
        self,
        metering: MeteringApp,
        ledger: LedgerReader,
        wait_for: WaitFor,
        audit: AuditWriter,
        *,
        clock: Clock,
        ledger_wait_seconds: float = LEDGER_WAIT_SECONDS,
    ) -> None:
        self.metering = metering
        self.ledger = ledger
        self.wait_for = wait_for
        self.audit = audit
        self.clock = clock
        self.ledger_wait_seconds = ledger_wait_seconds

    def apply(
        self, tenant_id: str, actor_id: str, request_id: str, correction: CorrectionIn
    ) -> CorrectionOut:
        reason = _check_reason(correction.reason)
        if isinstance(correction, VoidRangeIn):
            return self._void_range(tenant_id, actor_id, request_id, correction, reason)
        event_id = _checked(check_identifier, "event_id", correction.event_id)
        record = self.metering.get_record(tenant_id, event_id)
        correction_id, now = uuid4(), self.clock()
        before = record.quantity
        if isinstance(correction, VoidIn):
            record.void(
                correction_id=correction_id, actor_id=actor_id, reason=reason, now=now
            )
            changes = [(record, -before, -1)]
        else:
            quantity = _checked(parse_quantity, "quantity", correction.quantity)
            record.amend(
                quantity,
                correction_id=correction_id,
                actor_id=actor_id,
                reason=reason,
                now=now,
            )
            changes = [(record, quantity - before, 0)]
        position = self.metering.save_corrections([record])
        result = self._result(tenant_id, correction, changes, correction_id, position)
        self._audit(tenant_id, actor_id, request_id, result, reason, [event_id], {})
        return result

    def _void_range(
        self,
        tenant_id: str,
        actor_id: str,
        request_id: str,
        request: VoidRangeIn,
        reason: str,
    ) -> CorrectionOut:
        match = _range_match(tenant_id, request.filter)
        head = self.metering.head_position()
        if not self.wait_for(
            self.ledger.read_model, "metering", head, self.ledger_wait_seconds
        ):
            raise LedgerBehind(
                "the usage ledger is still catching up with the history; retry shortly"
            )
        event_ids = self.ledger.live_event_ids(match, limit=MAX_RANGE_EVENTS + 1)
        if len(event_ids) > MAX_RANGE_EVENTS:
            raise InvalidCorrection(
                f"filter: matches more than {MAX_RANGE_EVENTS} events; narrow the range"
            )
        if request.expected_events is not None and request.expected_events != len(
            event_ids
        ):
            raise CorrectionMismatch(
                f"expected_events: {request.expected_events} expected, "
                f"{len(event_ids)} match now; nothing was written"
            )
        records = [
            r for r in self.metering.get_records(tenant_id, event_ids) if not r.voided
        ]
        changes = [(r, -r.quantity, -1) for r in records]
        if request.dry_run:
            return self._result(tenant_id, request, changes, None, head)
        correction_id, now = uuid4(), self.clock()
        for record in records:
            record.void(
                correction_id=correction_id, actor_id=actor_id, reason=reason, now=now
            )
        position = self.metering.save_corrections(records) if records else head
        result = self._result(tenant_id, request, changes, correction_id, position)
        filter_ = msgspec.to_builtins(request.filter)
        self._audit(tenant_id, actor_id, request_id, result, reason, [], filter_)
        return result

    def _result(
        self,
        tenant_id: str,
        request: CorrectionIn,
        changes: Sequence[tuple[UsageRecord, Decimal, int]],
        correction_id: UUID | None,
        position: int,
    ) -> CorrectionOut:
        # Days as the read model buckets them: its calendar, not the write side's
        # (a settings change it has not processed yet must not show here first).
        calendar = self.ledger.calendar_of(tenant_id)
        days: dict[tuple[date, str, str, str], list[Any]] = defaultdict(
            lambda: [Decimal(0), 0]
        )
        totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        for record, delta, count in changes:
            day, _ = calendar.day_and_period(record.occurred_at)
            key = (day, record.workspace_id, record.product_area, record.unit)
            days[key][0] += delta
            days[key][1] += count
            totals[(record.product_area, record.unit)] += delta
        return CorrectionOut(
            action=type(request).__struct_config__.tag,  # type: ignore[arg-type]
            dry_run=isinstance(request, VoidRangeIn) and request.dry_run,
            correction_id=correction_id,
            event_count=len(changes),
            position=position,
            days=[
                AffectedDay(d, ws, area, unit, decimal_text(q), n)
                for (d, ws, area, unit), (q, n) in sorted(days.items())
            ],
            totals=[
                QuantityChange(area, unit, decimal_text(q))
                for (area, unit), q in sorted(totals.items())
            ],
        )

    def _audit(  # noqa: PLR0913
        self,
        tenant_id: str,
        actor_id: str,
        request_id: str,
        result: CorrectionOut,
        reason: str,
        event_ids: list[str],
        filter_: dict[str, Any],
    ) -> None:
        assert result.correction_id is not None
        self.audit.write(
            AuditRecord.CorrectionApplied,
            tenant_id=tenant_id,
            actor_id=actor_id,
            request_id=request_id,
            correction_id=result.correction_id,
            action=result.action,
            reason=reason,
            event_ids=event_ids,
            filter=filter_,
            event_count=result.event_count,
            totals=[msgspec.to_builtins(t) for t in result.totals],
            position=result.position,
        )


def _check_reason(reason: str) -> str:
    reason = _checked(check_storable_text, "reason", reason).strip()
    if not reason:
        raise InvalidCorrection(
            "reason: must not be empty; say why the usage is corrected"
        )
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidCorrection(
            f"reason: must be at most {MAX_REASON_LENGTH} characters"
        )
    return reason


def _checked(check: Any, field: str, value: Any) -> Any:
    try:
        return check(value)
    except InvalidValue as e:
        raise InvalidCorrection(f"{field}: {e}") from None


def _range_match(tenant_id: str, f: RangeFilter) -> RangeMatch:
    start = _checked(as_utc, "filter.start", f.start)
    end = _checked(as_utc, "filter.end", f.end)
    if end <= start:
        raise InvalidCorrection("filter.end: must be after filter.start")
    return RangeMatch(
        tenant_id,
        start,
        end,
        workspace_id=_optional(check_identifier, "filter.workspace_id", f.workspace_id),
        product_area=_optional(normalise_slug, "filter.product_area", f.product_area),
        unit=_optional(normalise_slug, "filter.unit", f.unit),
    )


def _optional(check: Any, field: str, value: str | None) -> str | None:
    return None if value is None else str(_checked(check, field, value))

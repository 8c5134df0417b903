"""Anomaly flags of a billing period, and acknowledging one, for a tenant's
billing admins."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

import anyio
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, JSONBody

from application.anomaly_reviews import AnomalyReviewsApp
from application.audit.writer import AuditWriter
from application.clock import Clock
from application.serving.anomalies import STATUSES, AnomaliesOut
from application.tokens import Principal
from domain.anomaly_reviews import MAX_NOTE_LENGTH
from domain.audit import AuditRecord
from domain.values import InvalidValue, check_storable_text
from interfaces.http.audited import record_change
from interfaces.http.auth import requires_role
from interfaces.http.billing import answer_headers, requires_enabled_tenant
from interfaces.http.dependencies import Billing
from interfaces.http.params import (
    InvalidParameter,
    parse_choice,
    parse_identifier,
    parse_min_positions,
    parse_period,
    request_id,
)


class AcknowledgeIn(msgspec.Struct, forbid_unknown_fields=True):
    note: str  # why it is fine, or what is being done about it


class AcknowledgementOut(msgspec.Struct, omit_defaults=True):
    id: str
    status: str
    note: str
    acknowledged_by: str
    acknowledged_at: datetime
    already: bool  # true: acknowledged before; that acknowledgement stands
    position: int | None = None
    min_positions: str | None = None  # pass to reads to see it


class AnomaliesController(Controller):
    path = "/api/billing/anomalies"
    tags = ["billing"]
    guards = [requires_role("admin"), requires_enabled_tenant]

    @get(summary="Unusual days of the period's usage, per workspace, explained")
    async def list_anomalies(  # noqa: PLR0913 - one argument per query parameter
        self,
        request: Request[Principal, Any, Any],
        billing: NamedDependency[Billing],
        period: FromQuery[str | None] = None,
        workspace_id: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        min_position: FromQuery[str | None] = None,
        min_positions: FromQuery[str | None] = None,
    ) -> Response[AnomaliesOut]:
        """`period` is current (default), previous or YYYY-MM; `status` is open,
        acknowledged or cleared. Each flag says what was observed against what
        is usual, how unusual, and why in one sentence; `not_evaluated` lists
        the series with too little history to judge."""
        answer = await billing.anomalies.view(
            request.user,
            parse_period(period),
            parse_identifier(workspace_id, "workspace_id"),
            parse_choice(status, "status", STATUSES),
            min_positions=parse_min_positions(min_position, min_positions),
            request_id=request_id(request),
        )
        billing.metrics.cache.labels("hit" if answer.hit else "miss").inc()
        return Response(
            answer.body,  # type: ignore[arg-type] # pre-encoded AnomaliesOut
            media_type="application/json",
            headers=answer_headers(answer),
        )

    @post(
        "/{anomaly_id:str}/acknowledge",
        summary="Acknowledge a flag with a note (once; again changes nothing)",
        status_code=200,
    )
    async def acknowledge(  # noqa: PLR0913
        self,
        request: Request[Principal, Any, Any],
        anomaly_id: FromPath[str],
        data: JSONBody[AcknowledgeIn],
        billing: NamedDependency[Billing],
        reviews: NamedDependency[AnomalyReviewsApp],
        audit_writer: NamedDependency[AuditWriter],
        clock: NamedDependency[Clock],
    ) -> AcknowledgementOut:
        principal = request.user
        parse_identifier(anomaly_id, "anomaly_id")
        note = data.note.strip()
        if not note or len(note) > MAX_NOTE_LENGTH:
            raise InvalidParameter(f"note: must be 1 to {MAX_NOTE_LENGTH} characters")
        try:
            check_storable_text(note)
        except InvalidValue as e:
            raise InvalidParameter(f"note: {e}") from None
        found = await billing.anomalies.flag(principal.tenant_id, anomaly_id)
        if found is None:
            raise NotFoundException(f"anomaly_id: no anomaly {anomaly_id}")
        period_start, _ = found
        ack, position = await anyio.to_thread.run_sync(
            partial(
                reviews.acknowledge,
                principal.tenant_id,
                anomaly_id,
                period_start,
                note,
                actor_id=principal.subject,
                now=clock(),
            )
        )
        await record_change(
            audit_writer,
            request,
            AuditRecord.AnomalyAcknowledged,
            anomaly_id=anomaly_id,
            note=note,
            position=position,
        )
        return AcknowledgementOut(
            id=anomaly_id,
            status="acknowledged",
            note=ack.note,
            acknowledged_by=ack.actor_id,
            acknowledged_at=ack.created_on,
            already=position is None,
            position=position,
            min_positions=f"anomaly_reviews:{position}" if position else None,
        )

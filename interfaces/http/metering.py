"""Metering endpoints: producers send usage, ops correct and backfill it."""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio
import msgspec
from litestar import Controller, Request, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody

from application.metering.batch import IngestOut, MeteringEventIn
from application.metering.corrections import CorrectionIn, CorrectionOut
from domain.audit import AuditRecord
from interfaces.http.audited import record_change
from interfaces.http.auth import Principal, requires_role
from interfaces.http.bodies import decode_body
from interfaces.http.dependencies import Metering
from interfaces.http.observability import Metrics
from interfaces.http.params import request_id

_correction_decoder = msgspec.json.Decoder(CorrectionIn)


def _documents_events_body(data: JSONBody[list[MeteringEventIn]]) -> None:
    """Never called: it only shows OpenAPI the body's shape.

    The handlers read the raw body themselves, because one bad event must be
    rejected alone (partial acceptance), not fail the whole request.
    """


def _documents_correction_body(data: JSONBody[CorrectionIn]) -> None:
    """Never called: documents the corrections body (parsed by the handler)."""


def _count(metrics: Metrics, response: IngestOut, path: str) -> None:
    counter = metrics.ingested
    for result, n in (
        ("accepted", response.accepted),
        ("duplicate", response.duplicates),
        ("conflict", response.conflicts),
        ("rejected", response.rejected),
    ):
        if n:
            counter.labels(result, path).inc(n)


class MeteringController(Controller):
    path = "/api/metering"
    tags = ["metering"]

    @post(
        "/events",
        guards=[requires_role("metering")],
        status_code=200,
        dependencies={"_body": Provide(_documents_events_body, sync_to_thread=False)},
        summary="Record a batch of metering events (at most 10,000)",
    )
    async def record_events(
        self,
        request: Request[Principal, Any, Any],
        metering: NamedDependency[Metering],
    ) -> IngestOut:
        """Each event is accepted, a duplicate, a conflict or rejected (with why).

        Accepted events are durable before the response is sent; `position` is
        what a read can wait for with `min_position`.
        """
        body = await request.body()
        tenant = request.user.tenant_id
        response = await anyio.to_thread.run_sync(
            partial(metering.ingestor.ingest, tenant, body)
        )
        _count(metering.metrics, response, "http")
        return response

    @post(
        "/backfill",
        guards=[requires_role("ops")],
        status_code=200,
        dependencies={"_body": Provide(_documents_events_body, sync_to_thread=False)},
        summary="Record historical usage older than the acceptance window (audited)",
    )
    async def backfill_events(
        self,
        request: Request[Principal, Any, Any],
        metering: NamedDependency[Metering],
    ) -> IngestOut:
        """Same body and answer as /events; only ops may load old history."""
        body = await request.body()
        principal = request.user
        response = await anyio.to_thread.run_sync(
            partial(metering.ingestor.ingest, principal.tenant_id, body, backfill=True)
        )
        await record_change(
            metering.audit_writer,
            request,
            AuditRecord.BackfillRecorded,
            accepted=response.accepted,
            duplicates=response.duplicates,
            conflicts=response.conflicts,
            rejected=response.rejected,
            position=response.position,
        )
        _count(metering.metrics, response, "backfill")
        return response

    @post(
        "/corrections",
        guards=[requires_role("ops")],
        status_code=200,
        dependencies={
            "_body": Provide(_documents_correction_body, sync_to_thread=False)
        },
        summary="Void or amend an event, or void a range (dry run by default)",
    )
    async def apply_correction(
        self,
        request: Request[Principal, Any, Any],
        metering: NamedDependency[Metering],
    ) -> CorrectionOut:
        """A correction adds events to the history; the original stays."""
        correction = decode_body(_correction_decoder.decode, await request.body())
        principal = request.user
        return await anyio.to_thread.run_sync(
            partial(
                metering.corrections.apply,
                principal.tenant_id,
                principal.subject,
                request_id(request),
                correction,
            )
        )

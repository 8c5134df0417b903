"""Dramatiq actors: the ingest queue and projection work. Thin and idempotent."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
import msgspec

from application.metering.batch import MalformedBatch
from application.projecting.failing import ProjectionFailed
from application.projecting.rebuild import RebuildInProgress
from application.tokens import InvalidToken
from workers.broker import broker
from workers.projector_service import ProjectorService
from workers.runtime import ingestor, verifier, write_side
from workers.webhooks import deliver_webhook  # noqa: F401 - registers the actor

log = logging.getLogger(__name__)


class UnprocessableMessage(Exception):
    """Retrying cannot help (bad token, malformed batch): dead-letter it now."""


@dramatiq.actor(
    queue_name="ingest",
    max_retries=8,
    min_backoff=1_000,
    max_backoff=60_000,
    throws=(UnprocessableMessage,),
    time_limit=120_000,
)
def ingest_events(token: str, events: Any) -> dict[str, Any]:
    """Record a batch for the token's tenant, exactly like POST /api/metering/events.

    `events` is the JSON array (a list, or its JSON text). Send quantities as
    strings to keep every digit: Dramatiq's JSON encoding turns numbers to floats.
    """
    try:
        principal = verifier().verify(token)
    except InvalidToken as e:
        raise UnprocessableMessage(f"token: {e}") from None
    if "metering" not in principal.roles:
        raise UnprocessableMessage("token: the 'metering' role is required")
    body = events.encode() if isinstance(events, str) else msgspec.json.encode(events)
    try:
        response = ingestor().ingest(principal.tenant_id, body)
    except MalformedBatch as e:
        raise UnprocessableMessage(str(e)) from None
    summary = {
        "accepted": response.accepted,
        "duplicates": response.duplicates,
        "conflicts": response.conflicts,
        "rejected": response.rejected,
        "position": response.position,
    }
    log.info(
        "ingested a queued batch", extra={"tenant_id": principal.tenant_id} | summary
    )
    for result in response.results:
        if result.status in ("rejected", "conflict"):
            log.warning(
                "queued event not recorded",
                extra={
                    "tenant_id": principal.tenant_id,
                    "event_id": result.id,
                    "index": result.index,
                    "status": result.status,
                    "error": result.error,
                },
            )
    return summary


@dramatiq.actor(queue_name="projections", max_retries=3, time_limit=300_000)
def advance_projections() -> int:
    """Catch every read model up; a duplicate or late message does no harm."""
    return write_side().projector.advance_all()


@dramatiq.actor(queue_name="projections", max_retries=0, time_limit=6 * 3600_000)
def rebuild_projection(name: str) -> None:
    """Rebuild a read model ops asked for (claimed once, however often sent)."""
    try:
        done = write_side().projector.rebuild_requested(name)
    except RebuildInProgress:
        return
    except ProjectionFailed:
        return  # recorded (status: rebuild_failure) and logged; a retry fails alike
    if done is not None:
        log.info("rebuilt projection", extra={"projection": name, "events": done})


# Registered once the rebuild actor exists, so the daemon can hand requests to it.
broker.add_middleware(ProjectorService(on_rebuild_requested=rebuild_projection.send))

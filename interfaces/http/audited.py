"""Recording what a caller changed, before answering: one audit record, durably."""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio
from litestar import Request

from application.audit.writer import AuditWriter
from application.tokens import Principal
from domain.audit import AuditRecord
from interfaces.http.params import request_id


async def record_change(
    writer: AuditWriter,
    request: Request[Principal, Any, Any],
    event_class: type[AuditRecord.Recorded],
    **fields: Any,
) -> int:
    """Write `event_class` for the caller of `request`; raises AuditUnavailable
    (503) if it cannot be made durable."""
    principal = request.user
    return await anyio.to_thread.run_sync(
        partial(
            writer.write,
            event_class,
            tenant_id=principal.tenant_id,
            actor_id=principal.subject,
            request_id=request_id(request),
            **fields,
        )
    )

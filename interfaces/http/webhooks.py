"""A tenant's webhook endpoint and its delivery log, for its billing admins."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

import anyio
import msgspec
from litestar import Controller, Request, Response, delete, get, put
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody

from application.audit.writer import AuditWriter
from application.notifying.endpoints import WebhookEndpoints
from application.notifying.store import Delivery, Endpoint
from application.tokens import Principal
from domain.audit import AuditRecord
from interfaces.http.audited import record_change
from interfaces.http.auth import requires_role
from interfaces.http.billing import requires_enabled_tenant
from interfaces.http.params import parse_limit

NOT_STORED = {"Cache-Control": "no-store"}


class WebhookIn(msgspec.Struct, forbid_unknown_fields=True):
    url: str  # https://...; http and private addresses only in development


class WebhookOut(msgspec.Struct):
    tenant_id: str
    url: str
    created_at: datetime
    updated_at: datetime
    updated_by: str


class WebhookSecretOut(WebhookOut):
    """The answer to setting the endpoint: the only time the secret is shown."""

    secret: str  # whsec_...: verify each delivery's webhook-signature with it


class DeliveryOut(msgspec.Struct):
    id: str  # the webhook-id header: the same on every attempt
    type: str
    status: str  # pending | delivered | dead | cancelled
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    finished_at: datetime | None
    next_attempt_at: datetime | None  # while pending


class DeliveriesOut(msgspec.Struct):
    tenant_id: str
    deliveries: list[DeliveryOut]  # newest first


def webhook_out(endpoint: Endpoint) -> WebhookOut:
    return WebhookOut(
        endpoint.tenant_id,
        endpoint.url,
        endpoint.created_at,
        endpoint.updated_at,
        endpoint.updated_by,
    )


def delivery_out(d: Delivery) -> DeliveryOut:
    return DeliveryOut(
        d.id,
        d.type,
        d.status,
        d.attempts,
        d.last_status_code,
        d.last_error,
        d.created_at,
        d.delivered_at,
        d.finished_at,
        d.next_attempt_at,
    )


class WebhooksController(Controller):
    path = "/api/billing/webhooks"
    tags = ["billing"]
    guards = [requires_role("admin"), requires_enabled_tenant]

    @get(summary="The tenant's webhook endpoint (never its secret)")
    async def get_webhook(
        self,
        request: Request[Principal, Any, Any],
        webhooks: NamedDependency[WebhookEndpoints],
    ) -> WebhookOut:
        endpoint = await anyio.to_thread.run_sync(webhooks.get, request.user.tenant_id)
        return webhook_out(endpoint)

    @put(summary="Set the webhook endpoint; answers a new signing secret, once")
    async def put_webhook(
        self,
        request: Request[Principal, Any, Any],
        data: JSONBody[WebhookIn],
        webhooks: NamedDependency[WebhookEndpoints],
        audit_writer: NamedDependency[AuditWriter],
    ) -> Response[WebhookSecretOut]:
        """Setting it again (even to the same URL) rotates the secret."""
        principal = request.user
        done = await anyio.to_thread.run_sync(
            partial(
                webhooks.set,
                principal.tenant_id,
                data.url,
                actor_id=principal.subject,
            )
        )
        await record_change(
            audit_writer,
            request,
            AuditRecord.WebhookChanged,
            action="set",
            url=done.endpoint.url,
        )
        out = webhook_out(done.endpoint)
        body = WebhookSecretOut(**msgspec.structs.asdict(out), secret=done.secret)
        return Response(body, headers=NOT_STORED)

    @delete(summary="Remove the webhook endpoint; pending deliveries are cancelled")
    async def delete_webhook(
        self,
        request: Request[Principal, Any, Any],
        webhooks: NamedDependency[WebhookEndpoints],
        audit_writer: NamedDependency[AuditWriter],
    ) -> None:
        removed = await anyio.to_thread.run_sync(
            webhooks.remove, request.user.tenant_id
        )
        await record_change(
            audit_writer,
            request,
            AuditRecord.WebhookChanged,
            action="removed",
            url=removed.url,
        )

    @get("/deliveries", summary="Webhook deliveries, newest first")
    async def list_deliveries(
        self,
        request: Request[Principal, Any, Any],
        webhooks: NamedDependency[WebhookEndpoints],
        status: FromQuery[str | None] = None,
        limit: FromQuery[str | None] = None,
    ) -> DeliveriesOut:
        """`status`: pending, delivered, dead or cancelled; `limit` up to 500."""
        tenant = request.user.tenant_id
        deliveries = await anyio.to_thread.run_sync(
            partial(
                webhooks.list_deliveries,
                tenant,
                status=status or None,
                limit=parse_limit(limit),
            )
        )
        return DeliveriesOut(tenant, [delivery_out(d) for d in deliveries])

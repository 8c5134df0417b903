"""A tenant's webhook endpoint (one per tenant) and its delivery log."""

from __future__ import annotations

from dataclasses import dataclass, field

from application.notifying.addresses import (
    Resolver,
    check_destination,
    system_resolver,
)
from application.notifying.signing import new_secret
from application.notifying.store import STATUSES, Delivery, Endpoint, WebhookStore


class NoWebhook(LookupError):
    """The tenant has no webhook endpoint."""


class InvalidDeliveryQuery(ValueError):
    """A delivery log parameter breaks a rule; the message names it."""


@dataclass(frozen=True)
class EndpointSet:
    """The endpoint just set, and its new signing secret (shown this once)."""

    endpoint: Endpoint
    secret: str = field(repr=False)


class WebhookEndpoints:
    """Set, read and remove a tenant's endpoint; read its deliveries."""

    def __init__(
        self,
        store: WebhookStore,
        *,
        allow_private: bool,
        resolve: Resolver = system_resolver,
    ) -> None:
        self.store = store
        self.allow_private = allow_private
        self.resolve = resolve

    def get(self, tenant_id: str) -> Endpoint:
        endpoint = self.store.get_endpoint(tenant_id)
        if endpoint is None:
            raise NoWebhook("no webhook endpoint is set for this tenant")
        return endpoint

    def set(self, tenant_id: str, url: str, *, actor_id: str) -> EndpointSet:
        """Check `url` (InvalidWebhookUrl names the problem) and set it with a
        new secret: setting it again rotates the secret."""
        url = url.strip()
        check_destination(url, allow_private=self.allow_private, resolve=self.resolve)
        secret = new_secret()
        endpoint = self.store.put_endpoint(tenant_id, url, secret, actor_id)
        return EndpointSet(endpoint, secret)

    def remove(self, tenant_id: str) -> Endpoint:
        """Remove the endpoint; what was still to be sent to it is cancelled."""
        endpoint = self.store.remove_endpoint(tenant_id)
        if endpoint is None:
            raise NoWebhook("no webhook endpoint is set for this tenant")
        return endpoint

    def list_deliveries(
        self, tenant_id: str, *, status: str | None, limit: int
    ) -> list[Delivery]:
        if status is not None and status not in STATUSES:
            raise InvalidDeliveryQuery(f"status: must be one of {', '.join(STATUSES)}")
        return self.store.list_deliveries(tenant_id, status, limit)

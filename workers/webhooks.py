"""Webhook delivery in the workers: the delivery actor and the dispatch loop.

Every worker process runs a dispatch loop (only one dispatches at a time: the
cursor is locked in the database); each queued message is one attempt at one
delivery, retried by queueing the next attempt with its backoff as a delay.
A message delivered twice, late, or after the delivery ended does nothing.
"""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from application.bootstrap import WebhookDelivery, build_webhook_delivery
from workers.broker import broker, settings
from workers.runtime import services

QUEUE = "webhooks"
_lock = threading.Lock()
_delivery: list[WebhookDelivery] = []


def enqueue(delivery_id: str, delay_seconds: float) -> None:
    """Queue one attempt at `delivery_id`, after `delay_seconds`."""
    deliver_webhook.send_with_options(
        args=(delivery_id,), delay=round(delay_seconds * 1000) or None
    )


def delivery() -> WebhookDelivery:
    """Built once per worker process (after Dramatiq forks)."""
    with _lock:
        if not _delivery:
            _delivery.append(build_webhook_delivery(services(), enqueue))
    return _delivery[0]


@dramatiq.actor(
    queue_name=QUEUE,
    max_retries=5,  # the database was unreachable, say; attempts are not lost
    min_backoff=1_000,
    max_backoff=60_000,
    time_limit=round((settings.webhook_timeout_seconds + 60) * 1000),
)
def deliver_webhook(delivery_id: str) -> None:
    """Make the next attempt at one webhook delivery, if it is due."""
    delivery().deliverer.deliver(delivery_id)


class WebhookService(Middleware):
    """Starts the dispatch loop when a worker process boots; stops it on shutdown."""

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        delivery().loop.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        if _delivery:
            _delivery[0].loop.stop()


broker.add_middleware(WebhookService())

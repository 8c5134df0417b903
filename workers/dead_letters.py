"""Why a message was dead-lettered, kept next to Dramatiq's dead-letter queue.

Dramatiq moves a failed message to `<namespace>:<queue>.XQ` but keeps no reason
(not even for messages aborted by `throws`). This middleware records one, so a
failed ingest batch is never a silent mystery: `billing dead-letters` lists them.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

log = logging.getLogger(__name__)


def reasons_key(namespace: str) -> str:
    return f"{namespace}:dead-letter-reasons"


def dead_letter_channel(namespace: str) -> str:
    """Redis pub/sub channel announcing each dead letter (for alerting and tests)."""
    return f"{namespace}:dead-letters"


class DeadLetterReasons(Middleware):
    """Stores `{message_id: {queue, actor, reason, failed_at}}` on nack."""

    def __init__(self, client: Any, namespace: str) -> None:
        self.client = client
        self.key = reasons_key(namespace)
        self.channel = dead_letter_channel(namespace)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.Message,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is not None:
            message.options["billing_failure"] = (
                f"{type(exception).__name__}: {exception}"
            )

    def after_skip_message(
        self, broker: dramatiq.Broker, message: dramatiq.Message
    ) -> None:
        message.options.setdefault("billing_failure", "skipped (message too old)")

    def after_nack(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        record = {
            "queue": message.queue_name,
            "actor": message.actor_name,
            "reason": message.options.get("billing_failure", "unknown"),
            "retries": message.options.get("retries", 0),
            "failed_at": time.time(),
        }
        log.error(
            "message dead-lettered",
            extra={"message_id": message.message_id} | record,
        )
        try:
            self.client.hset(self.key, message.message_id, json.dumps(record))
            self.client.publish(self.channel, message.message_id)
        except Exception as e:  # noqa: BLE001 - the message itself is in the DLQ
            log.error("could not record dead-letter reason: %s", e)

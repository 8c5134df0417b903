"""From notices to deliveries: each notice at most once, whichever worker runs it.

The dispatcher reads the notices after its cursor, creates one pending delivery
per notice that is not suppressed and whose tenant has an endpoint (the
delivery's id is the notice's id), and advances the cursor, all in one
transaction that holds the cursor row: two workers never dispatch the same
notice, and a crash dispatches nothing or everything of a batch. The deliveries
it created are queued after the commit; one whose message is lost (the queue
was down, a worker stopped) is queued again once it is overdue.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import msgspec

from application.notifying.store import PendingNotice, WebhookStore

log = logging.getLogger(__name__)

# Queues one delivery attempt: (delivery id, delay in seconds).
Enqueue = Callable[[str, float], object]
BATCH = 500


def webhook_body(notice: PendingNotice) -> str:
    """`{"type": ..., "data": {...}}`, the data exactly as it was recorded."""
    raw = msgspec.Raw(notice.data.encode())
    return msgspec.json.encode({"type": notice.type, "data": raw}).decode()


class Dispatcher:
    """Creates the deliveries of new notices and queues them."""

    def __init__(
        self, store: WebhookStore, enqueue: Enqueue, *, recover_after_seconds: float
    ) -> None:
        self.store = store
        self.enqueue = enqueue
        self.recover_after_seconds = recover_after_seconds

    def run_once(self) -> int:
        """Dispatch what is new and queue again what is overdue; deliveries queued."""
        return self.dispatch() + self.recover()

    def dispatch(self) -> int:
        """Deliveries created for the notices recorded since the last run."""
        created = 0
        while True:
            batch = self._dispatch_batch()
            if batch is None:
                return created
            read, ids = batch
            self._send(ids)
            created += len(ids)
            if read < BATCH:
                return created

    def _dispatch_batch(self) -> tuple[int, list[str]] | None:
        """(notices read, deliveries created), or None if it is not our turn."""
        with self.store.dispatching() as batch:
            if batch is None:
                return None
            notices = batch.read(BATCH)
            if not notices:
                return 0, []
            ids = batch.create([(n, webhook_body(n)) for n in notices if n.deliverable])
            batch.advance(notices[-1].position)
        return len(notices), ids

    def recover(self) -> int:
        """Queue again the deliveries that have waited too long for an attempt."""
        ids = self.store.overdue(self.recover_after_seconds)
        if ids:
            log.warning(
                "webhook deliveries queued again (a message was lost, or a worker"
                " stopped during an attempt)",
                extra={"deliveries": len(ids)},
            )
        self._send(ids)
        return len(ids)

    def _send(self, ids: list[str]) -> None:
        for delivery_id in ids:
            queue_or_recover_later(self.enqueue, delivery_id, 0.0)


def queue_or_recover_later(enqueue: Enqueue, delivery_id: str, delay: float) -> None:
    """Queue an attempt; if the queue is unreachable, the delivery stays pending
    and the dispatch loop queues it again once it is overdue."""
    try:
        enqueue(delivery_id, delay)
    except Exception as e:  # noqa: BLE001 - recovered once overdue
        log.warning(
            "could not queue a webhook delivery; it will be queued again",
            extra={"delivery_id": delivery_id, "error": type(e).__name__},
        )


class DispatchLoop:
    """A thread that dispatches whenever a projection commits (it may have
    recorded notices) and every `tick_seconds` regardless."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        wake_channel: str,
        tick_seconds: float,
    ) -> None:
        self.dispatcher = dispatcher
        self.wake_channel = wake_channel
        self.tick_seconds = tick_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="webhook-dispatcher", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.tick_seconds + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self.dispatcher.store.listening(self.wake_channel) as wait:
                    while not self._stop.is_set():
                        self.dispatcher.run_once()
                        wait(self.tick_seconds)
            except Exception:
                log.exception("webhook dispatcher failed; restarting it")
                self._stop.wait(2.0)

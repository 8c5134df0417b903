"""One delivery attempt: claim it, sign it, send it, record how it went.

Retried with exponential backoff and full jitter on 5xx, 429, timeouts and
connection errors; any other answer ends the delivery (2xx `delivered`, else
`dead`), as does the last try. Every attempt is kept (time, status code or
error, duration) and logged, never with the secret or the signature.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from application.notifying.addresses import (
    InvalidWebhookUrl,
    Resolver,
    UnresolvableHost,
    check_destination,
    system_resolver,
)
from application.notifying.dispatcher import Enqueue, queue_or_recover_later
from application.notifying.sending import Answer, post
from application.notifying.signing import signed_headers
from application.notifying.store import Claim, WebhookStore

log = logging.getLogger(__name__)

# An attempt holds its delivery this much longer than the request may take, so
# that a second attempt starts only once the first has surely ended.
LEASE_MARGIN_SECONDS = 5.0


@dataclass(frozen=True)
class RetryPolicy:
    """How many tries, and how long to wait between them."""

    max_attempts: int
    backoff_seconds: float  # the first retry waits up to this; doubled each time
    max_backoff_seconds: float
    uniform: Callable[[float, float], float] = field(
        default=random.SystemRandom().uniform, repr=False
    )

    def next_step(self, answer: Answer, attempt: int) -> tuple[str, float | None]:
        """`("delivered", None)`, `("pending", delay)` or `("dead", None)`."""
        if answer.status_code is not None and 200 <= answer.status_code < 300:
            return "delivered", None
        if not retryable(answer) or attempt >= self.max_attempts:
            return "dead", None
        return "pending", self.delay(attempt, answer.retry_after)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Full jitter: uniform between 0 and the capped exponential step; at
        least the receiver's Retry-After (within the cap)."""
        cap = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (attempt - 1))
        wait = self.uniform(0.0, cap)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_backoff_seconds))
        return wait


def retryable(answer: Answer) -> bool:
    """5xx, 429, and no answer at all (timeout, connection, DNS) may heal; a
    refused destination or any other status will not."""
    if answer.refused:
        return False
    if answer.status_code is None:
        return True
    return answer.status_code == 429 or answer.status_code >= 500


class Deliverer:
    """Makes the next attempt of a delivery (the delivery actor calls it)."""

    def __init__(  # noqa: PLR0913 - collaborators and knobs, named
        self,
        store: WebhookStore,
        policy: RetryPolicy,
        enqueue: Enqueue,
        *,
        allow_private: bool,
        timeout_seconds: float,
        resolve: Resolver = system_resolver,
        unix_time: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.policy = policy
        self.enqueue = enqueue
        self.allow_private = allow_private
        self.timeout_seconds = timeout_seconds
        self.resolve = resolve
        self.unix_time = unix_time

    def deliver(self, delivery_id: str) -> str | None:
        """Attempt `delivery_id` if it is due; its status after, or None if there
        was nothing to do (done already, not due, another attempt running)."""
        claim = self.store.claim(
            delivery_id,
            max_attempts=self.policy.max_attempts,
            lease_seconds=self.timeout_seconds + LEASE_MARGIN_SECONDS,
        )
        if claim is None:
            return None
        answer = self._attempt(claim)
        status, retry_in = self.policy.next_step(answer, claim.attempt)
        self.store.record_attempt(
            claim,
            status=status,
            status_code=answer.status_code,
            error=answer.error,
            duration_ms=answer.duration_ms,
            retry_in=retry_in,
        )
        self._log(claim, answer, status, retry_in)
        if retry_in is not None:
            queue_or_recover_later(self.enqueue, claim.id, retry_in)
        return status

    def _attempt(self, claim: Claim) -> Answer:
        started = time.monotonic()
        try:
            destination = check_destination(
                claim.url, allow_private=self.allow_private, resolve=self.resolve
            )
        except UnresolvableHost as e:
            return Answer(None, str(e), _ms(started))
        except InvalidWebhookUrl as e:
            return Answer(None, f"refused: {e}", _ms(started), refused=True)
        body = claim.body.encode()
        headers = signed_headers(
            claim.secret, claim.id, int(self.unix_time()), claim.body
        )
        answer = post(destination, body, headers, self.timeout_seconds)
        code, error = answer.status_code, answer.error
        if code is not None and not 200 <= code < 300:
            error = f"answered HTTP {code}"
        return Answer(code, error, _ms(started), answer.retry_after)

    def _log(
        self, claim: Claim, answer: Answer, status: str, retry_in: float | None
    ) -> None:
        level = logging.WARNING if status == "dead" else logging.INFO
        log.log(
            level,
            "webhook attempt",
            extra={
                "delivery_id": claim.id,
                "tenant_id": claim.tenant_id,
                "type": claim.type,
                "host": urlsplit(claim.url).hostname,
                "attempt": claim.attempt,
                "status_code": answer.status_code,
                "error": answer.error,
                "duration_ms": answer.duration_ms,
                "status": status,
                "retry_in_seconds": None if retry_in is None else round(retry_in, 3),
            },
        )


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)

"""What the webhook tests share: notices, the tables' rows, signature checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import psycopg
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier

from application.notifying.store import ATTEMPTS, DELIVERIES
from application.settings import Settings
from projections.notices import NOTICES
from tests.receiver import Received


def fast(settings: Settings, **changes: Any) -> Settings:
    """Delivery to the test's local receiver, with backoff short enough to wait for."""
    defaults: dict[str, Any] = {
        "webhook_allow_private": True,
        "webhook_backoff_seconds": 0.01,
        "webhook_max_backoff_seconds": 0.05,
        "webhook_max_attempts": 4,
        "webhook_timeout_seconds": 2.0,
    }
    return settings.with_changes(**(defaults | changes))


def record_notice(
    settings: Settings,
    notice_id: str,
    tenant_id: str = "t_acme",
    *,
    type: str = "anomaly.opened",
    data: dict[str, Any] | None = None,
    suppressed: str | None = None,
) -> int:
    """Record a notice as a read model would; its position."""
    data = {"anomaly_id": notice_id, "observed": "4210"} if data is None else data
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        row = conn.execute(
            SQL(
                "INSERT INTO {} (id, tenant_id, type, data, occurred_at, source,"
                " version, suppressed) VALUES (%s, %s, %s, %s, now(), 'test', 1, %s)"
                " RETURNING position"
            ).format(Identifier(settings.db_schema, NOTICES)),
            (
                notice_id,
                tenant_id,
                type,
                msgspec.json.encode(data).decode(),
                suppressed,
            ),
        ).fetchone()
    assert row is not None
    return int(row[0])


def rows(settings: Settings, table: str, where: str = "", *args: Any) -> list[dict]:
    with psycopg.connect(settings.conninfo(), row_factory=dict_row) as conn:
        return conn.execute(
            SQL("SELECT * FROM {} " + where).format(
                Identifier(settings.db_schema, table)
            ),
            args,
        ).fetchall()


def delivery(settings: Settings, delivery_id: str) -> dict[str, Any]:
    found = rows(settings, DELIVERIES, "WHERE id = %s", delivery_id)
    assert len(found) == 1, found
    return found[0]


def attempts(settings: Settings, delivery_id: str) -> list[dict[str, Any]]:
    return rows(
        settings, ATTEMPTS, "WHERE delivery_id = %s ORDER BY attempt", delivery_id
    )


def wait_until_finished(
    settings: Settings, delivery_id: str, timeout: float = 60.0
) -> dict[str, Any]:
    """Block (on the deliveries' NOTIFY, not a sleep) until it is no longer pending."""
    deadline = time.monotonic() + timeout
    channel = f"{settings.db_schema}_webhook_deliveries"
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        conn.execute(SQL("LISTEN {}").format(Identifier(channel)))
        while True:
            found = rows(settings, DELIVERIES, "WHERE id = %s", delivery_id)
            if found and found[0]["status"] != "pending":
                return found[0]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{delivery_id} still pending: {found}")
            for _ in conn.notifies(timeout=remaining, stop_after=1):
                pass


def verified_payload(secret: str, received: Received) -> Any:
    """What a receiver does, in a few lines of hmac (README, Webhooks)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = b".".join(
        [
            received.headers["webhook-id"].encode(),
            received.headers["webhook-timestamp"].encode(),
            received.body,
        ]
    )
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    signatures = [
        s.split(",", 1)[1].encode()
        for s in received.headers["webhook-signature"].split()
        if s.startswith("v1,")
    ]
    assert any(hmac.compare_digest(expected, s) for s in signatures), "bad signature"
    return msgspec.json.decode(received.body)


@dataclass
class Queue:
    """Stands in for the delivery actor's queue: what was queued, in order."""

    sent: list[tuple[str, float]] = field(default_factory=list)

    def __call__(self, delivery_id: str, delay_seconds: float) -> None:
        self.sent.append((delivery_id, delay_seconds))

    def take(self) -> list[str]:
        ids = [delivery_id for delivery_id, _ in self.sent]
        self.sent.clear()
        return ids

"""Every SQL statement of webhooks: endpoints, deliveries, attempts, the cursor.

Times are the database's (`now()`), so every worker schedules on one clock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import Connection, Cursor
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier
from psycopg_pool import ConnectionPool

from application.settings import Settings
from projections.notices import NOTICES

ENDPOINTS = "billing_webhook_endpoints"
DELIVERIES = "billing_webhook_deliveries"
ATTEMPTS = "billing_webhook_attempts"
CURSOR = "billing_webhook_cursor"
STATUSES = ("pending", "delivered", "dead", "cancelled")
# A retry message may arrive a moment before the row says it is due (two clocks).
DUE_SLACK = "interval '1 second'"
ENDPOINT_REMOVED = "the webhook endpoint was removed"
Row = dict[str, Any]

DDL = (
    "CREATE TABLE IF NOT EXISTS {endpoints} (tenant_id text PRIMARY KEY,"
    " url text NOT NULL, secret text NOT NULL, created_at timestamptz NOT NULL,"
    " updated_at timestamptz NOT NULL, updated_by text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {deliveries} (id text PRIMARY KEY,"
    " tenant_id text NOT NULL, type text NOT NULL, body text NOT NULL,"
    " notice_position bigint NOT NULL,"
    " status text NOT NULL DEFAULT 'pending' CHECK (status IN"
    " ('pending', 'delivered', 'dead', 'cancelled')),"
    " attempts integer NOT NULL DEFAULT 0,"
    " next_attempt_at timestamptz NOT NULL DEFAULT now(),"
    " last_status_code integer, last_error text,"
    " created_at timestamptz NOT NULL DEFAULT now(),"
    " delivered_at timestamptz, finished_at timestamptz)",
    "CREATE INDEX IF NOT EXISTS {log_index} ON {deliveries}"
    " (tenant_id, notice_position DESC)",
    "CREATE INDEX IF NOT EXISTS {due_index} ON {deliveries} (next_attempt_at)"
    " WHERE status = 'pending'",
    "CREATE TABLE IF NOT EXISTS {attempts} (delivery_id text NOT NULL"
    " REFERENCES {deliveries} (id) ON DELETE CASCADE, attempt integer NOT NULL,"
    " url text NOT NULL, started_at timestamptz NOT NULL, duration_ms integer,"
    " status_code integer, error text, PRIMARY KEY (delivery_id, attempt))",
    "CREATE TABLE IF NOT EXISTS {cursor} (name text PRIMARY KEY,"
    " position bigint NOT NULL)",
    "INSERT INTO {cursor} VALUES ('notices', 0) ON CONFLICT DO NOTHING",
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    tenant_id: str
    url: str
    created_at: datetime
    updated_at: datetime
    updated_by: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """A delivery as the log shows it."""

    id: str
    type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    finished_at: datetime | None
    next_attempt_at: datetime | None  # while pending


@dataclass(frozen=True, slots=True)
class Claim:
    """One attempt this process may make now, and what it needs for it."""

    id: str
    tenant_id: str
    type: str
    body: str
    attempt: int  # 1 for the first
    url: str
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class PendingNotice:
    """A notice after the dispatch cursor, and whether it is to be delivered."""

    id: str
    tenant_id: str
    type: str
    data: str  # JSON text, as recorded
    position: int
    deliverable: bool  # not suppressed, and its tenant has an endpoint


class DispatchBatch:
    """One dispatch transaction, holding the cursor and the notices' table."""

    def __init__(self, store: WebhookStore, curs: Cursor[Row], position: int) -> None:
        self.store = store
        self.curs = curs
        self.position = position

    def read(self, limit: int) -> list[PendingNotice]:
        """The next notices after the cursor, in the order they were recorded."""
        self.curs.execute(
            SQL(
                "SELECT n.id, n.tenant_id, n.type, n.data::text AS data, n.position,"
                " (n.suppressed IS NULL AND e.tenant_id IS NOT NULL) AS deliverable"
                " FROM {} n LEFT JOIN {} e ON e.tenant_id = n.tenant_id"
                " WHERE n.position > %s ORDER BY n.position LIMIT %s"
            ).format(self.store.table(NOTICES), self.store.table(ENDPOINTS)),
            (self.position, limit),
        )
        return [PendingNotice(**row) for row in self.curs.fetchall()]

    def create(self, deliveries: Sequence[tuple[PendingNotice, str]]) -> list[str]:
        """Create a pending delivery per (notice, body); the ids created."""
        if not deliveries:
            return []
        self.curs.execute(
            SQL(
                "INSERT INTO {} (id, tenant_id, type, body, notice_position)"
                " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[],"
                " %s::text[], %s::bigint[]) ON CONFLICT (id) DO NOTHING RETURNING id"
            ).format(self.store.table(DELIVERIES)),
            [
                [n.id for n, _ in deliveries],
                [n.tenant_id for n, _ in deliveries],
                [n.type for n, _ in deliveries],
                [body for _, body in deliveries],
                [n.position for n, _ in deliveries],
            ],
        )
        return [row["id"] for row in self.curs.fetchall()]

    def advance(self, position: int) -> None:
        self.curs.execute(
            SQL("UPDATE {} SET position = %s WHERE name = 'notices'").format(
                self.store.table(CURSOR)
            ),
            (position,),
        )
        self.position = position


class WebhookStore:
    """The webhook tables, over a small pool of its own."""

    def __init__(self, settings: Settings) -> None:
        self.schema = settings.db_schema
        self.conninfo = settings.conninfo(application_name="billing-webhooks")
        self.finished_channel = f"{self.schema}_webhook_deliveries"
        # Opened on first use: most processes that build it (the CLI, the API
        # until a webhook route is called) never need a connection of it.
        self._pool: ConnectionPool[Connection[Row]] = ConnectionPool(
            self.conninfo,
            min_size=1,
            max_size=2,  # short statements, never held across a request
            kwargs={"row_factory": dict_row},
            timeout=settings.db_pool_timeout_seconds,
            name="webhooks",
            open=False,
        )
        self._opened = False
        self._lock = threading.Lock()

    @property
    def pool(self) -> ConnectionPool[Connection[Row]]:
        with self._lock:
            if not self._opened:
                self._pool.open()
                self._opened = True
        return self._pool

    def table(self, name: str) -> Identifier:
        return Identifier(self.schema, name)

    def close(self) -> None:
        with self._lock:
            if self._opened:
                self._pool.close()
            self._opened = False

    def ensure_tables(self) -> None:
        names = {
            "endpoints": self.table(ENDPOINTS),
            "deliveries": self.table(DELIVERIES),
            "attempts": self.table(ATTEMPTS),
            "cursor": self.table(CURSOR),
            "log_index": Identifier(f"{DELIVERIES}_log"),
            "due_index": Identifier(f"{DELIVERIES}_due"),
        }
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            for statement in DDL:
                conn.execute(SQL(statement).format(**names))

    # Endpoints

    def get_endpoint(self, tenant_id: str) -> Endpoint | None:
        with self.pool.connection() as conn:
            row = conn.execute(
                SQL(
                    "SELECT tenant_id, url, created_at, updated_at, updated_by"
                    " FROM {} WHERE tenant_id = %s"
                ).format(self.table(ENDPOINTS)),
                (tenant_id,),
            ).fetchone()
        return Endpoint(**row) if row else None

    def put_endpoint(
        self, tenant_id: str, url: str, secret: str, actor_id: str
    ) -> Endpoint:
        """Set the tenant's endpoint and secret (replacing both)."""
        with self.pool.connection() as conn:
            row = conn.execute(
                SQL(
                    "INSERT INTO {} AS e VALUES (%s, %s, %s, now(), now(), %s)"
                    " ON CONFLICT (tenant_id) DO UPDATE SET url = excluded.url,"
                    " secret = excluded.secret, updated_at = now(),"
                    " updated_by = excluded.updated_by"
                    " RETURNING tenant_id, url, created_at, updated_at, updated_by"
                ).format(self.table(ENDPOINTS)),
                (tenant_id, url, secret, actor_id),
            ).fetchone()
        assert row is not None
        return Endpoint(**row)

    def remove_endpoint(self, tenant_id: str) -> Endpoint | None:
        """Remove the endpoint and cancel what was still to be sent to it."""
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute(
                SQL(
                    "DELETE FROM {} WHERE tenant_id = %s"
                    " RETURNING tenant_id, url, created_at, updated_at, updated_by"
                ).format(self.table(ENDPOINTS)),
                (tenant_id,),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                SQL(
                    "UPDATE {} SET status = 'cancelled', finished_at = now(),"
                    " last_error = %s WHERE tenant_id = %s AND status = 'pending'"
                ).format(self.table(DELIVERIES)),
                (ENDPOINT_REMOVED, tenant_id),
            )
        return Endpoint(**row)

    # Dispatching

    @contextmanager
    def dispatching(self) -> Iterator[DispatchBatch | None]:
        """A dispatch transaction, or None when another process holds the cursor
        or a transaction recording notices is still open (try again later)."""
        with (
            self.pool.connection() as conn,
            conn.transaction(),
            conn.cursor() as curs,
        ):
            row = curs.execute(
                SQL(
                    "SELECT position FROM {} WHERE name = 'notices'"
                    " FOR UPDATE SKIP LOCKED"
                ).format(self.table(CURSOR))
            ).fetchone()
            if row is None or not self._hold_notices(conn):
                yield None
                return
            yield DispatchBatch(self, curs, int(row["position"]))

    def _hold_notices(self, conn: Connection[Row]) -> bool:
        # Positions come from a sequence, so a transaction still recording a
        # notice may hold a lower position than one already committed. SHARE
        # mode waits for (and, while held, keeps out) every transaction that
        # inserts notices: what we read then has no gap that could still fill,
        # and the cursor can pass it. Briefly, and only if it comes quickly.
        try:
            with conn.transaction():
                conn.execute("SET LOCAL lock_timeout = '100ms'")
                conn.execute(
                    SQL("LOCK TABLE {} IN SHARE MODE").format(self.table(NOTICES))
                )
                conn.execute("SET LOCAL lock_timeout TO DEFAULT")
        except psycopg.errors.LockNotAvailable:
            return False
        return True

    def overdue(self, seconds: float, limit: int = 500) -> list[str]:
        """Pending deliveries due for `seconds` with no attempt (a lost message, a
        worker stopped mid-attempt), marked due now; the ids to send again."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                SQL(
                    "UPDATE {0} SET next_attempt_at = now() WHERE id IN (SELECT id"
                    " FROM {0} WHERE status = 'pending' AND next_attempt_at <="
                    " now() - make_interval(secs => %s) ORDER BY next_attempt_at"
                    " LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id"
                ).format(self.table(DELIVERIES)),
                (seconds, limit),
            ).fetchall()
        return [row["id"] for row in rows]

    # Delivering

    def claim(
        self, delivery_id: str, *, max_attempts: int, lease_seconds: float
    ) -> Claim | None:
        """Start the next attempt of a due, pending delivery (None: nothing to do
        now). The attempt holds the delivery for `lease_seconds`."""
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute(
                SQL(
                    "SELECT d.id, d.tenant_id, d.type, d.body, d.status, d.attempts,"
                    f" d.next_attempt_at <= now() + {DUE_SLACK} AS due,"
                    " e.url, e.secret FROM {} d LEFT JOIN {} e"
                    " ON e.tenant_id = d.tenant_id WHERE d.id = %s"
                    " FOR UPDATE OF d SKIP LOCKED"
                ).format(self.table(DELIVERIES), self.table(ENDPOINTS)),
                (delivery_id,),
            ).fetchone()
            if row is None or row["status"] != "pending" or not row["due"]:
                return None
            if row["url"] is None:
                self._finish(conn, delivery_id, "cancelled", None, ENDPOINT_REMOVED)
                return None
            if row["attempts"] >= max_attempts:
                reason = "no answer recorded for the last attempt (worker stopped)"
                self._finish(conn, delivery_id, "dead", None, reason)
                return None
            return self._start_attempt(conn, row, lease_seconds)

    def _start_attempt(
        self, conn: Connection[Row], row: Row, lease_seconds: float
    ) -> Claim:
        attempt = int(row["attempts"]) + 1
        conn.execute(
            SQL(
                "UPDATE {} SET attempts = %s,"
                " next_attempt_at = now() + make_interval(secs => %s) WHERE id = %s"
            ).format(self.table(DELIVERIES)),
            (attempt, lease_seconds, row["id"]),
        )
        conn.execute(
            SQL(
                "INSERT INTO {} (delivery_id, attempt, url, started_at)"
                " VALUES (%s, %s, %s, clock_timestamp())"
            ).format(self.table(ATTEMPTS)),
            (row["id"], attempt, row["url"]),
        )
        return Claim(
            row["id"],
            row["tenant_id"],
            row["type"],
            row["body"],
            attempt,
            row["url"],
            row["secret"],
        )

    def record_attempt(  # noqa: PLR0913 - one argument per outcome field
        self,
        claim: Claim,
        *,
        status: str,
        status_code: int | None,
        error: str | None,
        duration_ms: int,
        retry_in: float | None = None,
    ) -> None:
        """Record how the attempt went, and where the delivery stands: still
        `pending` (due again in `retry_in` seconds), `delivered` or `dead`."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                SQL(
                    "UPDATE {} SET duration_ms = %s, status_code = %s, error = %s"
                    " WHERE delivery_id = %s AND attempt = %s"
                ).format(self.table(ATTEMPTS)),
                (duration_ms, status_code, error, claim.id, claim.attempt),
            )
            if status == "pending":
                conn.execute(
                    SQL(
                        "UPDATE {} SET next_attempt_at = now() + make_interval(secs"
                        " => %s), last_status_code = %s, last_error = %s"
                        " WHERE id = %s AND status = 'pending' AND attempts = %s"
                    ).format(self.table(DELIVERIES)),
                    (retry_in or 0.0, status_code, error, claim.id, claim.attempt),
                )
            elif status == "delivered":
                # Whichever attempt succeeds first ends it; a late one changes nothing.
                self._finish(conn, claim.id, "delivered", status_code, None)
            else:
                self._finish(conn, claim.id, status, status_code, error, claim.attempt)

    def _finish(  # noqa: PLR0913
        self,
        conn: Connection[Row],
        delivery_id: str,
        status: str,
        status_code: int | None,
        error: str | None,
        attempt: int | None = None,
    ) -> None:
        """Move a pending delivery to its final status (only if `attempt` is still
        the latest, when given) and tell listeners."""
        done = conn.execute(
            SQL(
                "UPDATE {} SET status = %s, finished_at = now(),"
                " delivered_at = CASE WHEN %s::text = 'delivered' THEN now() END,"
                " last_status_code = coalesce(%s, last_status_code),"
                " last_error = %s WHERE id = %s AND status = 'pending'"
                " AND (%s::integer IS NULL OR attempts = %s) RETURNING id"
            ).format(self.table(DELIVERIES)),
            (status, status, status_code, error, delivery_id, attempt, attempt),
        ).fetchone()
        if done:
            conn.execute(
                "SELECT pg_notify(%s, %s)",
                (self.finished_channel, f"{status}:{delivery_id}"),
            )

    # Reading

    def list_deliveries(
        self, tenant_id: str, status: str | None, limit: int
    ) -> list[Delivery]:
        """The tenant's deliveries, newest notice first."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                SQL(
                    "SELECT id, type, status, attempts, last_status_code, last_error,"
                    " created_at, delivered_at, finished_at, CASE WHEN status ="
                    " 'pending' THEN next_attempt_at END AS next_attempt_at"
                    " FROM {} WHERE tenant_id = %s AND (%s::text IS NULL"
                    " OR status = %s) ORDER BY notice_position DESC LIMIT %s"
                ).format(self.table(DELIVERIES)),
                (tenant_id, status, status, limit),
            ).fetchall()
        return [Delivery(**row) for row in rows]

    @contextmanager
    def listening(self, *channels: str) -> Iterator[Callable[[float], bool]]:
        """A wait(timeout) that returns True when any channel was notified."""
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            for channel in channels:
                conn.execute(SQL("LISTEN {}").format(Identifier(channel)))

            def wait(timeout: float) -> bool:
                notified = any(
                    True for _ in conn.notifies(timeout=timeout, stop_after=1)
                )
                if notified:  # drain a burst: one wake-up serves it all
                    for _ in conn.notifies(timeout=0.001):
                        pass
                return notified

            yield wait

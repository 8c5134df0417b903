"""Why a read model is not advancing: its failures, kept where every worker sees them.

One row per projection version that last failed: the upstream and position of
the record it fails on, the error, and how often in a row. Every worker reads
the row before advancing, so retries back off together, and a success deletes
it. A version that failed `stall_after` times at the same position is stalled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.postgres import PostgresDatastore
from psycopg import Cursor
from psycopg.sql import SQL, Identifier

FAILURES = "billing_projection_failures"
MAX_ERROR_CHARS = 300
_SAME = (
    "(f.upstream, f.position) IS NOT DISTINCT FROM"
    " (excluded.upstream, excluded.position)"
)
_UPSERT = (
    "INSERT INTO {} AS f (name, version, upstream, position, error, failures,"
    " first_failed_at, last_failed_at, retry_at) VALUES (%(name)s, %(version)s,"
    " %(upstream)s, %(position)s, %(error)s, 1, now(), now(), now())"
    " ON CONFLICT (name, version) DO UPDATE SET"
    f" failures = CASE WHEN {_SAME} THEN f.failures + 1 ELSE 1 END,"
    f" first_failed_at = CASE WHEN {_SAME} THEN f.first_failed_at ELSE now() END,"
    " upstream = excluded.upstream, position = excluded.position,"
    " error = excluded.error, last_failed_at = now() RETURNING failures"
)
_SECRET = re.compile(r"(password|secret|token)(\s*[=:]\s*)\S+", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a failing projection is retried, and when it counts as stalled."""

    stall_after: int = 3  # consecutive failures at one position
    first_delay: float = 1.0
    longest_delay: float = 60.0

    def delay(self, failures: int) -> float:
        return float(min(self.longest_delay, self.first_delay * 2 ** (failures - 1)))


@dataclass(frozen=True, slots=True)
class Failure:
    """A projection version's latest run of failures at one record."""

    name: str
    version: int
    upstream: str | None  # None: it failed before reaching a record
    position: int | None  # the first unprocessed record, the one that fails
    error: str
    failures: int
    first_failed_at: datetime
    last_failed_at: datetime
    retry_at: datetime
    retry_due: bool  # by the database's clock, the same for every worker


def describe(error: BaseException) -> str:
    """Class and first line of the message, short, with secret-looking values masked."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    text = _SECRET.sub(r"\1\2***", text)
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 1] + "…"
    return text


class ProjectionFailures:
    """Reads and writes the failures table."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore
        self.table = Identifier(datastore.schema, FAILURES)

    def ensure(self, curs: Cursor[Any]) -> None:
        curs.execute(
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (name text NOT NULL,"
                " version integer NOT NULL, upstream text, position bigint,"
                " error text NOT NULL,"
                " failures integer NOT NULL, first_failed_at timestamptz NOT NULL,"
                " last_failed_at timestamptz NOT NULL,"
                " retry_at timestamptz NOT NULL, PRIMARY KEY (name, version))"
            ).format(self.table)
        )

    def get(self, name: str, version: int) -> Failure | None:
        found = self._select(SQL("name = %s AND version = %s"), name, version)
        return found[0] if found else None

    def of(self, name: str) -> dict[int, Failure]:
        """Every failing version of `name`, by version."""
        return {f.version: f for f in self._select(SQL("name = %s"), name)}

    def record(  # noqa: PLR0913 - one argument per column
        self,
        name: str,
        version: int,
        upstream: str | None,
        position: int | None,
        error: str,
        policy: RetryPolicy,
    ) -> Failure:
        """Count one more failure (from 1 again if the position moved on)."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(_UPSERT).format(self.table),
                {
                    "name": name,
                    "version": version,
                    "upstream": upstream,
                    "position": position,
                    "error": error,
                },
            )
            row = curs.fetchone()
            assert row is not None
            curs.execute(
                SQL(
                    "UPDATE {} SET retry_at = now() + make_interval(secs => %s)"
                    " WHERE name = %s AND version = %s"
                ).format(self.table),
                (policy.delay(row["failures"]), name, version),
            )
        failure = self.get(name, version)
        assert failure is not None
        return failure

    def clear(self, name: str, version: int) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("DELETE FROM {} WHERE name = %s AND version = %s").format(
                    self.table
                ),
                (name, version),
            )

    def at_least(self, failures: int) -> list[Failure]:
        """Versions that failed at least `failures` times in a row."""
        return self._select(SQL("failures >= %s"), failures)

    def _select(self, where: SQL, *params: Any) -> list[Failure]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT name, version, upstream, position, error, failures,"
                    " first_failed_at, last_failed_at, retry_at,"
                    " retry_at <= now() AS retry_due FROM {} WHERE {}"
                ).format(self.table, where),
                params,
            )
            return [Failure(**row) for row in curs.fetchall()]

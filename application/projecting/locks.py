"""Advisory locks: one runner per projection across every worker process.

Session locks, so the server frees them if the holder dies; keys are hashed
with the schema, so two deployments sharing a database never block each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from eventsourcing.postgres import PostgresDatastore


class AdvisoryLocks:
    """PostgreSQL session advisory locks named by text keys."""

    def __init__(self, datastore: PostgresDatastore, schema: str) -> None:
        self.datastore = datastore
        self.schema = schema

    @contextmanager
    def hold(self, key: str, *, wait: bool) -> Iterator[bool]:
        """Hold `key` for the block; without `wait`, yields False if it is taken."""
        lock_id = self._id(key)
        with self.datastore.get_connection() as conn:
            if wait:
                conn.execute("SELECT pg_advisory_lock(%s)", (lock_id,))
                held = True
            else:
                row = conn.execute(
                    "SELECT pg_try_advisory_lock(%s) AS held", (lock_id,)
                ).fetchone()
                held = bool(row and row["held"])
            try:
                yield held
            finally:
                if held:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (lock_id,))

    def is_held(self, key: str) -> bool:
        """Whether anyone holds `key` now."""
        lock_id = self._id(key) & 0xFFFFFFFFFFFFFFFF
        with self.datastore.get_connection() as conn:
            row = conn.execute(
                "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory'"
                " AND granted AND objsubid = 1 AND classid = %s::bigint::oid"
                " AND objid = %s::bigint::oid AND database ="
                " (SELECT oid FROM pg_database WHERE datname = current_database())",
                (lock_id >> 32, lock_id & 0xFFFFFFFF),
            ).fetchone()
        return bool(row and row["n"])

    def _id(self, key: str) -> int:
        digest = hashlib.blake2b(f"{self.schema}/{key}".encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big", signed=True)

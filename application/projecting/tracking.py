"""Tracking positions of projection versions, on eventsourcing's tracking recorder.

eventsourcing's PostgresTrackingRecorder refuses a position that does not move
forward (IntegrityError), which is what makes each batch exactly-once when its
rows and its position commit together. We add two columns for operators: when
the last processed event was recorded, and when the row last moved.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg import Cursor
from psycopg.sql import SQL, Identifier

MIGRATION_ROW = "__migration__"


class ProjectionTracking(PostgresTrackingRecorder):
    """One tracking table per projection version, one row per upstream."""

    def __init__(self, datastore: PostgresDatastore, tracking_table_name: str) -> None:
        super().__init__(datastore, tracking_table_name=tracking_table_name)
        self.table = Identifier(datastore.schema, tracking_table_name)
        self.sql_create_statements.append(
            SQL(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS last_event_at timestamptz,"
                " ADD COLUMN IF NOT EXISTS updated_at timestamptz"
            ).format(self.table)
        )
        self.update_meta = SQL(
            "UPDATE {} SET last_event_at = %s, updated_at = now()"
            " WHERE application_name = %s"
        ).format(self.table)

    def record(
        self, cursor: Cursor[Any], upstream: str, position: int, last_event_at: datetime
    ) -> None:
        """Move `upstream`'s position forward in the caller's transaction."""
        self._insert_tracking(cursor, Tracking(upstream, position))
        cursor.execute(self.update_meta, (last_event_at, upstream), prepare=True)

    def last_event_at(self, upstream: str) -> datetime | None:
        """When the last processed event of `upstream` was recorded."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL("SELECT last_event_at FROM {} WHERE application_name = %s").format(
                    self.table
                ),
                (upstream,),
            )
            row = curs.fetchone()
        return row["last_event_at"] if row else None

    def positions(self) -> dict[str, int]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT application_name, notification_id FROM {}"
                    " WHERE application_name <> %s"
                ).format(self.table),
                (MIGRATION_ROW,),
            )
            return {
                r["application_name"]: r["notification_id"] for r in curs.fetchall()
            }

"""The event-store plumbing our applications share, on eventsourcing's PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import InfrastructureFactory, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresFactory
from eventsourcing.utils import Environment, get_topic
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from application.settings import Settings
from application.store.mapper import MsgspecMapper
from application.store.waits import bound_pool, retry_within_pool_wait

_STAGING = "billing_incoming_events"


class BillingRecorder(PostgresApplicationRecorder):
    """eventsourcing's recorder, whose retries never outlast the pool wait (so a
    request fails in seconds while PostgreSQL is unreachable, not minutes)."""

    insert_events = retry_within_pool_wait(PostgresApplicationRecorder.insert_events)
    select_events = retry_within_pool_wait(PostgresApplicationRecorder.select_events)
    select_notifications = retry_within_pool_wait(
        PostgresApplicationRecorder.select_notifications
    )
    max_notification_id = retry_within_pool_wait(
        PostgresApplicationRecorder.max_notification_id
    )


class IdempotentRecorder(BillingRecorder):
    """An application recorder that can append "first events only if new".

    Checking and inserting under eventsourcing's table lock makes "is this id
    new?" and "store it" one atomic step: concurrent batches that share ids
    serialise on the lock, and each learns exactly which ids it stored.
    """

    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        table = (Identifier(self.datastore.schema), Identifier(self.events_table_name))
        self.create_staging_statement = SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} (originator_id uuid,"
            " originator_version bigint, topic text, state bytea) ON COMMIT DELETE ROWS"
        ).format(Identifier(_STAGING))
        self.copy_staging_statement = SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(
            Identifier(_STAGING)
        )
        # One primary-key probe per row, and no join whose cached plan could go
        # stale as the table grows (autovacuum may never analyze it). Under the
        # EXCLUSIVE table lock no other writer runs between probe and insert.
        self.insert_new_statement = SQL(
            "INSERT INTO {}.{} (originator_id, originator_version, topic, state)"
            " SELECT originator_id, originator_version, topic, state FROM {}"
            " ON CONFLICT (originator_id, originator_version) DO NOTHING"
            " RETURNING originator_id, notification_id"
        ).format(*table, Identifier(_STAGING))
        self.select_first_statement = SQL(
            "SELECT originator_id, topic, state, notification_id FROM {}.{}"
            " WHERE originator_id = ANY(%s) AND originator_version = 1"
        ).format(*table)
        self.select_all_statement = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {}.{}"
            " WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        ).format(*table)

    def insert_new_events(
        self, stored_events: Sequence[StoredEvent]
    ) -> dict[UUID, int]:
        """Append the events whose (originator, version) is new; skip the others.

        Returns the notification id of every event actually stored, by originator.
        The rows travel by COPY (a bulk parameter array costs more than the insert).
        """
        if not stored_events:
            return {}
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self.create_staging_statement)
            with curs.copy(self.copy_staging_statement) as copy:
                copy.set_types(["uuid", "int8", "text", "bytea"])
                for e in stored_events:
                    copy.write_row(
                        (e.originator_id, e.originator_version, e.topic, e.state)
                    )
            self._lock_table(curs)
            self._notify_channel(curs)
            with curs.connection.cursor(row_factory=tuple_row) as insert:
                insert.execute(self.insert_new_statement, prepare=True)
                return dict(insert.fetchall())

    def select_first_events(
        self, originator_ids: Sequence[UUID]
    ) -> list[tuple[StoredEvent, int]]:
        """The first event of each given aggregate that exists, with its position."""
        if not originator_ids:
            return []
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.select_first_statement, (list(originator_ids),))
            return [
                (
                    StoredEvent(r["originator_id"], 1, r["topic"], bytes(r["state"])),
                    r["notification_id"],
                )
                for r in curs.fetchall()
            ]

    def select_histories(self, originator_ids: Sequence[UUID]) -> list[StoredEvent]:
        """Every event of the given aggregates, in version order per aggregate."""
        if not originator_ids:
            return []
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.select_all_statement, (list(originator_ids),))
            return [
                StoredEvent(
                    r["originator_id"],
                    r["originator_version"],
                    r["topic"],
                    bytes(r["state"]),
                )
                for r in curs.fetchall()
            ]


class BillingApplication(Application[UUID]):
    """An eventsourcing application configured only from our Settings."""

    recorder_class: ClassVar[type[PostgresApplicationRecorder] | None] = BillingRecorder

    def __init__(self, settings: Settings, *, create_table: bool = False) -> None:
        env = settings.eventsourcing_env(create_table=create_table)
        env["MAPPER_TOPIC"] = get_topic(MsgspecMapper)
        if self.recorder_class is not None:
            env["APPLICATION_RECORDER_TOPIC"] = get_topic(self.recorder_class)
        self.settings = settings
        super().__init__(env=env)

    def construct_env(self, name: str, env: Any = None) -> Environment:
        # Unlike the default, ignore os.environ: Settings is the one source of
        # configuration, so a stray POSTGRES_* variable cannot redirect a store.
        return Environment(name, dict(env or {}))

    def construct_factory(self, env: Environment) -> InfrastructureFactory[Any]:
        # Bound the pool's waits (connect, checkout, reconnect) before it opens.
        factory = super().construct_factory(env)
        if isinstance(factory, PostgresFactory):
            bound_pool(factory.datastore.pool, self.settings)
        return factory

    @property
    def events_table(self) -> str:
        return f"{self.name}_events"

    def head_position(self) -> int:
        """The position of the newest event in this application's history."""
        return self.recorder.max_notification_id() or 0

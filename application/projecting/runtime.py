"""What every part of the projection runtime shares, built once per process."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eventsourcing.postgres import PostgresDatastore
from psycopg import Cursor

from application.projecting.failures import ProjectionFailures, RetryPolicy
from application.projecting.locks import AdvisoryLocks
from application.projecting.progress import progress_channel
from application.projecting.registry import ProjectionRegistry
from application.settings import Settings
from application.store.event_store import BillingApplication
from projections.base import Projection
from projections.notices import create_notices


@dataclass
class Runtime:
    """One schema's read models, their upstreams, and the runtime's own tables
    and connections (which nobody outside the runtime borrows)."""

    settings: Settings
    projections: dict[str, Projection]
    upstreams: dict[str, BillingApplication]
    datastore: PostgresDatastore
    registry: ProjectionRegistry
    failures: ProjectionFailures
    locks: AdvisoryLocks
    retry: RetryPolicy

    @classmethod
    def open(
        cls,
        settings: Settings,
        projections: Mapping[str, Projection],
        upstreams: Mapping[str, BillingApplication],
    ) -> Runtime:
        pg = settings.postgres
        datastore = PostgresDatastore(
            pg.dbname,
            pg.host,
            pg.port,
            pg.user,
            pg.password,
            schema=settings.db_schema,
            pool_size=1,
            # A daemon lane per read model holds its lock, a reader and a writer.
            max_overflow=3 * len(projections) + 4,
            pre_ping=True,
            idle_in_transaction_session_timeout=60,
        )
        return cls(
            settings,
            dict(projections),
            dict(upstreams),
            datastore,
            ProjectionRegistry(datastore),
            ProjectionFailures(datastore),
            AdvisoryLocks(datastore, settings.db_schema),
            RetryPolicy(),
        )

    @property
    def schema(self) -> str:
        return self.settings.db_schema

    @property
    def channel(self) -> str:
        return progress_channel(self.schema)

    def notify(self, curs: Cursor[Any], message: str) -> None:
        """Tell waiters and status readers that something moved (on commit)."""
        curs.execute("SELECT pg_notify(%s, %s)", (self.channel, message))

    def ensure_tables(self) -> None:
        self.registry.ensure(list(self.projections.values()))
        with self.datastore.transaction(commit=True) as curs:
            self.failures.ensure(curs)
            create_notices(curs, self.schema)

    def close(self) -> None:
        self.datastore.close()

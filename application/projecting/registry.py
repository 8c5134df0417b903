"""Which version of each read model is live, which is being built, and the views.

Queries read stable view names (billing_usage_daily, ...); each view selects from
the live version's table. Swapping versions redefines the views in one
transaction, so readers see either the old copy or the new one, never a mix.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.postgres import PostgresDatastore
from psycopg import Cursor
from psycopg.sql import SQL, Identifier

from application.projecting.tracking import ProjectionTracking
from projections.base import REGISTRY, Projection, tracking_view


@dataclass(frozen=True, slots=True)
class Registration:
    name: str
    live_version: int
    building_version: int | None
    rebuild_requested_at: datetime | None
    swapped_at: datetime | None


def tracking_table(projection: Projection, version: int) -> str:
    return f"{projection.name}_v{version}_tracking"


class ProjectionRegistry:
    """Reads and changes the registry table and the live views."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore
        self.schema = datastore.schema
        self.table = Identifier(self.schema, REGISTRY)

    def ensure(self, projections: list[Projection]) -> None:
        """Create the registry and, for new projections, version 1 and its views."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._key(),))
            curs.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY,"
                    " live_version integer NOT NULL, building_version integer,"
                    " rebuild_requested_at timestamptz, swapped_at timestamptz)"
                ).format(self.table)
            )
            for p in projections:
                curs.execute(
                    SQL(
                        "INSERT INTO {} (name, live_version) VALUES (%s, 1)"
                        " ON CONFLICT (name) DO NOTHING"
                    ).format(self.table),
                    (p.name,),
                )
        for p in projections:
            version = self.get(p.name).live_version
            self.create_version(p, version)
            with self.datastore.transaction(commit=True) as curs:
                curs.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))", (self._key(),)
                )
                # Views already in place are left alone: dropping them while
                # another process reads (a second worker, the API starting)
                # would fail its reads or deadlock.
                if not self._views_point_to(curs, p, version):
                    self.point_views(curs, p, version)

    def create_version(
        self, projection: Projection, version: int
    ) -> ProjectionTracking:
        with self.datastore.transaction(commit=True) as curs:
            for statement in projection.create_statements(self.schema, version):
                curs.execute(statement)
        tracking = self.tracking(projection, version)
        tracking.create_table()
        return tracking

    def drop_version(self, projection: Projection, version: int) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for view in projection.tables:
                curs.execute(
                    SQL("DROP TABLE IF EXISTS {}").format(
                        Identifier(self.schema, projection.table_name(view, version))
                    )
                )
            curs.execute(
                SQL("DROP TABLE IF EXISTS {}").format(
                    Identifier(self.schema, tracking_table(projection, version))
                )
            )

    def tracking(self, projection: Projection, version: int) -> ProjectionTracking:
        return ProjectionTracking(self.datastore, tracking_table(projection, version))

    def _view_targets(self, projection: Projection, version: int) -> dict[str, str]:
        targets = {v: projection.table_name(v, version) for v in projection.tables}
        targets[tracking_view(projection)] = tracking_table(projection, version)
        return targets

    def _views_point_to(
        self, curs: Cursor[Any], projection: Projection, version: int
    ) -> bool:
        """Whether every stable view exists and selects from `version`'s table."""
        targets = self._view_targets(projection, version)
        curs.execute(
            "SELECT v.relname AS view, t.relname AS target"
            " FROM pg_class v JOIN pg_namespace n ON n.oid = v.relnamespace"
            " JOIN pg_rewrite r ON r.ev_class = v.oid"
            " JOIN pg_depend d ON d.objid = r.oid"
            " AND d.classid = 'pg_rewrite'::regclass"
            " AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> v.oid"
            " JOIN pg_class t ON t.oid = d.refobjid"
            " WHERE n.nspname = %s AND v.relkind = 'v' AND v.relname = ANY(%s)",
            (self.schema, list(targets)),
        )
        found: dict[str, set[str]] = {}
        for row in curs.fetchall():
            view = row["view"] if isinstance(row, dict) else row[0]
            target = row["target"] if isinstance(row, dict) else row[1]
            found.setdefault(view, set()).add(target)
        return all(found.get(view) == {table} for view, table in targets.items())

    def point_views(
        self, curs: Cursor[Any], projection: Projection, version: int
    ) -> None:
        """Make the stable view names select from `version` (caller's transaction)."""
        for view, table in self._view_targets(projection, version).items():
            curs.execute(
                SQL("DROP VIEW IF EXISTS {}").format(Identifier(self.schema, view))
            )
            curs.execute(
                SQL("CREATE VIEW {} AS SELECT * FROM {}").format(
                    Identifier(self.schema, view), Identifier(self.schema, table)
                )
            )

    def get(self, name: str) -> Registration:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT name, live_version, building_version, rebuild_requested_at,"
                    " swapped_at FROM {} WHERE name = %s"
                ).format(self.table),
                (name,),
            )
            row = curs.fetchone()
        if row is None:
            raise LookupError(f"unknown projection {name!r}")
        return Registration(**row)

    def set_building(self, name: str, version: int | None) -> None:
        self._update(name, SQL("building_version = %s"), version)

    def request_rebuild(self, name: str) -> None:
        self._update(name, SQL("rebuild_requested_at = now()"))

    def claim_rebuild_request(self, name: str) -> bool:
        """Clear a pending request; True for the one caller that cleared it."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "UPDATE {} SET rebuild_requested_at = NULL"
                    " WHERE name = %s AND rebuild_requested_at IS NOT NULL"
                    " RETURNING name"
                ).format(self.table),
                (name,),
            )
            return curs.fetchone() is not None

    def clear_rebuild_request(self, name: str) -> None:
        self._update(name, SQL("rebuild_requested_at = NULL"))

    def requested_rebuilds(self) -> list[str]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT name FROM {} WHERE rebuild_requested_at IS NOT NULL"
                ).format(self.table)
            )
            return [r["name"] for r in curs.fetchall()]

    def swap(self, curs: Cursor[Any], projection: Projection, version: int) -> None:
        """Make `version` live, in the caller's transaction."""
        self.point_views(curs, projection, version)
        curs.execute(
            SQL(
                "UPDATE {} SET live_version = %s, building_version = NULL,"
                " swapped_at = now() WHERE name = %s"
            ).format(self.table),
            (version, projection.name),
        )

    def _update(self, name: str, assignment: SQL, *params: Any) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("UPDATE {} SET {} WHERE name = %s").format(self.table, assignment),
                (*params, name),
            )

    def _key(self) -> str:
        return f"{self.schema}/projection-registry"

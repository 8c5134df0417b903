"""Database bootstrap: the database, its schema, and connections to it."""

from __future__ import annotations

import contextlib

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from application.settings import Settings


def ensure_database(settings: Settings) -> None:
    """Create the database and our schema if they are missing (idempotent)."""
    pg = settings.postgres
    maintenance = settings.with_changes(
        database_url=settings.database_url.rsplit("/", 1)[0] + "/postgres"
    )
    with psycopg.connect(_plain_conninfo(maintenance), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (pg.dbname,)
        ).fetchone()
        if not exists:
            # Another process may create it at the same moment: that is fine.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(
                    sql.SQL("CREATE DATABASE {}").format(sql.Identifier(pg.dbname))
                )
    with connect(settings, search_path=False) as conn:
        # Serialise concurrent bootstraps (api and worker starting together).
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('billing-bootstrap'))")
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                sql.Identifier(settings.db_schema)
            )
        )


def connect(
    settings: Settings, *, autocommit: bool = False, search_path: bool = True
) -> psycopg.Connection[dict[str, object]]:
    """A plain connection (for bootstrap, CLI and tests), rows as dicts."""
    info = settings.conninfo() if search_path else _plain_conninfo(settings)
    return psycopg.connect(info, autocommit=autocommit, row_factory=dict_row)


def _plain_conninfo(settings: Settings) -> str:
    return settings.conninfo().rsplit(" options=", 1)[0]

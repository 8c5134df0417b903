"""What every read model is made of: a projection and its PostgreSQL view.

A projection is a deterministic function of events plus a position: it turns a
batch of events into changes (pure, no I/O). Its view writes those changes and
the tracking position in one transaction. Read models are versioned tables behind
stable view names, so a rebuild can fill a fresh version while the live one
keeps answering, then swap.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

from psycopg import Cursor
from psycopg.sql import SQL, Composed, Identifier

# The runtime's registry of read models: live and building versions per name.
REGISTRY = "billing_projections"


def tracking_view(projection: type[Projection] | Projection | str) -> str:
    """The stable view of a read model's tracking positions (one per upstream);
    the read model or its name."""
    name = projection if isinstance(projection, str) else projection.name
    return f"{name}_tracking"


class Notified(NamedTuple):
    """A domain event with its position in its upstream's notification log."""

    position: int
    event: Any


class Projection(ABC):
    """A read model: its upstreams, its tables, and how events change them."""

    name: ClassVar[str]
    # Upstream applications followed, one tracking position each, in this order.
    upstreams: ClassVar[tuple[str, ...]]
    # Stable view name -> column definitions and constraints of its tables.
    tables: ClassVar[dict[str, str]]
    # Extra index definitions: (view name, index suffix, column list).
    indexes: ClassVar[tuple[tuple[str, str, str], ...]] = ()

    @staticmethod
    def table_name(view: str, version: int) -> str:
        return f"{view}_v{version}"

    def create_statements(self, schema: str, version: int) -> list[Composed]:
        """DDL for one version's tables (idempotent)."""
        statements = [
            SQL("CREATE TABLE IF NOT EXISTS {}.{} ({})").format(
                Identifier(schema),
                Identifier(self.table_name(view, version)),
                SQL(columns),  # our own constant DDL
            )
            for view, columns in self.tables.items()
        ]
        statements += [
            SQL("CREATE INDEX IF NOT EXISTS {} ON {}.{} ({})").format(
                Identifier(f"{self.table_name(view, version)}_{suffix}"),
                Identifier(schema),
                Identifier(self.table_name(view, version)),
                SQL(columns),
            )
            for view, suffix, columns in self.indexes
        ]
        return statements

    @abstractmethod
    def changes(self, batch: Sequence[Notified]) -> Any:
        """What a batch of one upstream's events changes (pure: no I/O, no clock)."""

    @abstractmethod
    def write(
        self, cursor: Cursor[Any], schema: str, version: int, changes: Any
    ) -> None:
        """Write `changes` to one version's tables, in the caller's transaction."""

    def insert_rows(  # noqa: PLR0913 - where, what, and the rows
        self,
        cursor: Cursor[Any],
        schema: str,
        version: int,
        view: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        """Append `rows` to one version of `view` (for one-row-per-event models)."""
        if not rows:
            return
        cursor.executemany(
            SQL("INSERT INTO {} ({}) VALUES ({})").format(
                Identifier(schema, self.table_name(view, version)),
                SQL(", ").join(map(Identifier, columns)),
                SQL(", ").join(SQL("%s") * len(columns)),
            ),
            rows,
        )

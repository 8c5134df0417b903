"""The ledger entries behind one daily row, and one metering event's stored history.

A daily row is the sum of the ledger entries whose usage time falls in its day
(in the tenant's calendar) for its workspace, product area and unit, so listing
those entries explains it exactly. Entries are read by the ledger's index
(tenant, occurred_at) over [local midnight, next local midnight), in one
REPEATABLE READ snapshot, never beyond the position the read model has
processed: "now" is the row the usage API serves, a cut is the row as the
history stood there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec
from psycopg import AsyncConnection
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier

from domain.periods import local_midnight
from domain.tenant_settings import DEFAULT_SETTINGS
from domain.values import InvalidValue, check_identifier, normalise_slug
from projections.base import tracking_view
from projections.history import Cut, InvalidCut, calendar_at
from projections.usage_daily.postgres import (
    CALENDARS,
    LEDGER,
    UsageDailyProjection,
    tenant_span,
)
from projections.usage_daily.query import InvalidUsageQuery


@dataclass(frozen=True, slots=True)
class RowKey:
    """One daily row of a tenant (the tenant always comes from the token)."""

    tenant_id: str
    workspace_id: str
    product_area: str
    unit: str
    usage_date: date

    @classmethod
    def parse(
        cls,
        tenant_id: str,
        *,
        workspace_id: str | None,
        product_area: str | None,
        unit: str | None,
        usage_date: str | None,
    ) -> RowKey:
        return cls(
            tenant_id,
            _required("workspace_id", check_identifier, workspace_id),
            _required("product_area", normalise_slug, product_area),
            _required("unit", normalise_slug, unit),
            _required("usage_date", _date, usage_date),
        )


class Entry(msgspec.Struct):
    """One ledger entry: the signed change one metering event made to the row."""

    event_id: str
    position: int
    recorded_at: datetime
    occurred_at: datetime
    kind: str  # recorded | voided | amended
    quantity_delta: str
    count_delta: int


@dataclass(frozen=True, slots=True)
class Explanation:
    """The row as a whole, and one page of its entries in position order."""

    timezone: str  # of the calendar the day was bucketed in
    position: int  # of metering: the ledger was read up to it
    quantity: str
    source_event_count: int
    entry_total: int  # entries in the row, on every page (0: no such row)
    entries: list[Entry]
    more: bool  # entries follow the last one listed


async def explain_row(
    conn: AsyncConnection[Any],
    key: RowKey,
    cut: Cut | None,
    *,
    after: int,
    limit: int,
) -> Explanation:
    """The row `key` now (no cut) or at `cut`, and up to `limit` of its entries
    after position `after` (a row without entries does not exist)."""
    async with conn.transaction():
        processed, timezone = await _where_now(conn, key.tenant_id)
        if cut is not None:
            _check_reached(cut, processed)
            timezone = (await calendar_at(conn, key.tenant_id, cut)).timezone
        params = _params(key, timezone, cut, processed)
        where = _where(cut)
        async with conn.pipeline():  # the totals and the page in one round trip
            totals = await conn.cursor(row_factory=tuple_row).execute(
                _TOTALS.format(ledger=Identifier(LEDGER), where=where), params
            )
            page = await conn.cursor(row_factory=tuple_row).execute(
                _PAGE.format(ledger=Identifier(LEDGER), where=where),
                params | {"after": after, "limit": limit + 1},
            )
        quantity, count, entry_total = await totals.fetchone() or ("0", 0, 0)
        rows = await page.fetchall()
    entries = [_entry(*r) for r in rows[:limit]]
    return Explanation(
        timezone,
        processed,
        quantity,
        int(count),
        int(entry_total),
        entries,
        len(rows) > limit,
    )


async def stored_history(
    conn: AsyncConnection[Any], events_table: str, originator_id: UUID
) -> list[tuple[int, int, str, bytes]]:
    """(position, version, topic, state) of every stored event of one aggregate,
    in version order (the caller decodes them with its application's mapper)."""
    cur = await conn.cursor(row_factory=tuple_row).execute(
        SQL(
            "SELECT notification_id, originator_version, topic, state FROM {}"
            " WHERE originator_id = %s ORDER BY originator_version"
        ).format(Identifier(events_table)),
        (originator_id,),
    )
    return [(int(p), int(v), str(t), bytes(s)) for p, v, t, s in await cur.fetchall()]


def _required(field: str, check: Any, value: str | None) -> Any:
    if value is None or value == "":
        raise InvalidUsageQuery(f"{field}: required")
    try:
        return check(value)
    except InvalidValue as e:
        raise InvalidUsageQuery(f"{field}: {e}") from None


def _date(value: str) -> date:
    try:
        if len(value) != len("2026-11-24"):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidValue("must be a date, YYYY-MM-DD") from None


async def _where_now(conn: AsyncConnection[Any], tenant_id: str) -> tuple[int, str]:
    """How far the read model has processed metering, and the time zone its
    daily rows of `tenant_id` are bucketed in now."""
    cur = await conn.execute(_WHERE_NOW, {"tenant": tenant_id})
    row = await cur.fetchone()
    assert row is not None
    processed, timezone = row
    return int(processed), str(timezone or DEFAULT_SETTINGS.timezone)


def _check_reached(cut: Cut, processed: int) -> None:
    position = cut.position("metering")
    if position is not None and position > processed:
        raise InvalidCut(f"position: the usage ledger has only reached {processed}")


def _params(
    key: RowKey, timezone: str, cut: Cut | None, processed: int
) -> dict[str, Any]:
    params = {
        "tenant": key.tenant_id,
        "start": local_midnight(key.usage_date, timezone),
        "end": local_midnight(key.usage_date + timedelta(days=1), timezone),
        "workspace": key.workspace_id,
        "area": key.product_area,
        "unit": key.unit,
        "processed": processed,
    }
    return params | (cut.ledger_params() if cut else {})


def _where(cut: Cut | None) -> Composed:
    clauses = [
        tenant_span(
            "occurred_at", workspace_id="workspace", product_area="area", unit="unit"
        ),
        SQL("{} <= %(processed)s").format(Identifier("position")),
    ]
    if cut is not None:
        clauses.append(cut.ledger_clause())
    return SQL(" AND ").join(clauses)


def _entry(  # noqa: PLR0913 - one per column
    position: int,
    event_id: str,
    recorded_at: datetime,
    occurred_at: datetime,
    kind: str,
    quantity_delta: str,
    count_delta: int,
) -> Entry:
    return Entry(
        event_id,
        position,
        recorded_at.astimezone(UTC),
        occurred_at.astimezone(UTC),
        kind,
        quantity_delta,
        count_delta,
    )


_WHERE_NOW = SQL(
    "SELECT (SELECT coalesce(max(notification_id), 0) FROM {tracking}"
    "  WHERE application_name = 'metering'),"
    " (SELECT timezone FROM {calendars} WHERE tenant_id = %(tenant)s)"
).format(
    tracking=Identifier(tracking_view(UsageDailyProjection)),
    calendars=Identifier(CALENDARS),
)
_TOTALS = SQL(
    "SELECT trim_scale(coalesce(sum(quantity_delta), 0))::text,"
    " coalesce(sum(count_delta), 0)::bigint, count(*) FROM {ledger} WHERE {where}"
)
_PAGE = SQL(
    "SELECT position, event_id, recorded_at, occurred_at, kind,"
    " trim_scale(quantity_delta)::text, count_delta FROM {ledger}"
    " WHERE {where} AND position > %(after)s ORDER BY position LIMIT %(limit)s"
)

"""The anomaly flags as the history stood at a cut: what the read model served
when it had processed exactly the cut's positions, derived again from the
histories.

The same rules as `reproject`, by the same function: `evaluate` on the inputs
at the cut (series_history.py, restated by the read model's own `late`) and
the acknowledgements of the anomaly reviews history, then the rows as the
reader returns them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import msgspec
from eventsourcing.utils import get_topic
from psycopg import AsyncConnection
from psycopg.sql import SQL, Identifier

from domain.anomaly_reviews import AnomalyAcknowledgement
from domain.periods import BillingPeriod
from projections.anomalies.detect import BASELINE
from projections.anomalies.postgres import (
    FLAG_COLUMNS,
    Acknowledged,
    AnomalyProjection,
    Flag,
    anomaly_changes,
    evaluate,
    flag_row,
)
from projections.anomalies.reader import FlagRow
from projections.history import Cut, events_table
from projections.series_history import SeriesAt, in_session, series_at, trimmed
from projections.usage_series import SeriesKey, SeriesSnapshot

Unjudged = tuple[str, str, str]


async def anomalies_at(  # noqa: PLR0913 - the question and the point of the history
    conn: AsyncConnection[Any],
    tenant_id: str,
    period: str,
    workspace_id: str | None,
    status: str | None,
    cut: Cut,
    now: datetime,
    *,
    from_ledger: bool = False,
) -> tuple[SeriesSnapshot, list[FlagRow], list[Unjudged]]:
    """The snapshot, flags and series not evaluated that the anomaly reader
    gave for `period` (resolved at `now`) when the read model stood at `cut`
    (series_history.series_at says what `from_ledger` changes)."""
    cut, series = await series_at(
        conn,
        tenant_id,
        cut,
        AnomalyProjection,
        late=anomaly_changes(()).late,
        from_ledger=from_ledger,
    )
    asked = series.period(period, now)
    flags: list[Flag] = []
    unjudged: list[SeriesKey] = []
    if _evaluated(series, asked):
        acks = await acks_at(conn, tenant_id, asked.start, cut)
        flags, unjudged = flags_at(series, asked, acks, workspace_id)
    rows = [
        _row(conn, tenant_id, asked, f)
        for f in flags
        if (workspace_id is None or f.key.workspace_id == workspace_id)
        and (status is None or f.status == status)
    ]
    rows.sort(
        key=lambda r: (r.usage_date, r.workspace_id, r.product_area, r.unit, r.id)
    )
    kept = sorted(
        (k.workspace_id, k.product_area, k.unit)
        for k in unjudged
        if workspace_id is None or k.workspace_id == workspace_id
    )
    return series.snapshot(asked), rows, kept


def _evaluated(series: SeriesAt, period: BillingPeriod) -> bool:
    """Whether the read model has judged `period`: time has reached it."""
    observed = series.observed
    if observed is None:
        return False  # no usage and no tick yet: nothing to say
    return period.start <= series.calendar.period_at(observed).start


def flags_at(
    series: SeriesAt,
    period: BillingPeriod,
    acks: dict[str, Acknowledged],
    workspace_id: str | None = None,
) -> tuple[list[Flag], list[SeriesKey]]:
    """`reproject`'s evaluation of one period: of every workspace series, or
    of one workspace's (a series' flags depend on its own usage, as a batch
    that re-evaluates only the series it changed relies on too)."""
    observed = series.observed
    assert observed is not None
    usage = {
        key: days
        for key, days in series.day_usage(period.start - BASELINE, period.end).items()
        if key.workspace_id and workspace_id in (None, key.workspace_id)
    }
    return evaluate(series.calendar, period, observed, usage, series.first_days, acks)


class _Acknowledged(msgspec.Struct):
    timestamp: datetime
    tenant_id: str
    anomaly_id: str
    period_start: date
    note: str
    actor_id: str


_ACKNOWLEDGED = get_topic(AnomalyAcknowledgement.Acknowledged)
_acks = msgspec.json.Decoder(_Acknowledged)
_ACKS_SQL = SQL(
    "SELECT notification_id, state FROM {} WHERE topic = %s ORDER BY notification_id"
).format(Identifier(events_table("anomaly_reviews")))


async def acks_at(
    conn: AsyncConnection[Any], tenant_id: str, period_start: date, cut: Cut
) -> dict[str, Acknowledged]:
    """AnomalyView.acks at `cut`: the first acknowledgement of each of the
    tenant's flags, of those that belong to the period."""
    cur = await conn.execute(_ACKS_SQL, (_ACKNOWLEDGED,), prepare=True)
    found: dict[str, Acknowledged] = {}
    for position, state in await cur.fetchall():
        a = _acks.decode(state)
        if a.tenant_id != tenant_id or a.anomaly_id in found:
            continue
        if not cut.covers("anomaly_reviews", position, a.timestamp):
            continue
        found[a.anomaly_id] = Acknowledged(
            a.tenant_id, a.anomaly_id, a.period_start, a.note, a.actor_id, a.timestamp
        )
    return {k: a for k, a in found.items() if a.period_start == period_start}


def _row(
    conn: AsyncConnection[Any], tenant_id: str, period: BillingPeriod, flag: Flag
) -> FlagRow:
    """The flag's stored row (flag_row), read back as the reader reads it."""
    r = dict(zip(FLAG_COLUMNS, flag_row(tenant_id, period, flag), strict=True))
    for name in ("observed", "expected", "low", "high"):
        r[name] = trimmed(r[name])
    if r["acknowledged_at"] is not None:
        r["acknowledged_at"] = in_session(conn, r["acknowledged_at"])
    return FlagRow(**{name: r[name] for name in FlagRow.__dataclass_fields__})

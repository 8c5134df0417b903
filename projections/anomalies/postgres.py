"""billing_anomalies in PostgreSQL: its inputs, its flags, re-evaluating them.

Each batch updates the daily series inputs (projections/usage_series.py) and
the acknowledgements, then re-evaluates every (tenant, period) whose flags
those changes may move (the same rule as the forecast, with the 8-week
baseline as the window) and replaces its flags. A flag's status changing is
recorded as a notice (the outbox) in the same transaction.

A series' flags depend on its own usage, the tenant's calendar and
acknowledgements, and on time only through the tenant's date. So a batch of
usage re-evaluates only the series it changed, unless it moved the tenant's
date; a tick re-evaluates only the tenants whose date it moved; a calendar
change or an acknowledgement re-evaluates every series. That keeps the flags
a function of the history (the property tests rebuild and compare) at a
fraction of the cost.

Here usage restates its day when it is recorded after the day could have
settled (detect.SETTLE_DAYS more than the usual day), so a day's "first
report" is what it held when it was judged, and a day filled by late usage
before it settled raises nothing, not even a cleared flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import singledispatch
from typing import Any, NamedTuple

from psycopg import Cursor

from domain.anomaly_reviews import AnomalyAcknowledgement
from domain.periods import BillingPeriod, local_midnight, usage_date
from projections.anomalies.detect import (
    BASELINE,
    SETTLE_DAYS,
    DayScore,
    Episode,
    episodes,
    flag_id,
    score_days,
)
from projections.anomalies.explain import cleared_reason, explanation
from projections.base import Notified, Projection
from projections.notices import Notice, record_notices
from projections.usage_series import (
    LATE,
    DayUsage,
    Dirty,
    SeriesChanges,
    SeriesKey,
    SeriesView,
    TenantCalendar,
    series_change,
    series_tables,
)

NAME = "billing_anomalies"
FLAGS = "billing_anomalies_flags"
UNJUDGED = "billing_anomalies_unjudged"
ACKS = "billing_anomalies_acks"


class Acknowledged(NamedTuple):
    tenant_id: str
    anomaly_id: str
    period_start: date
    note: str
    actor_id: str
    at: datetime


@singledispatch
def _own(event: Any) -> Acknowledged | None:
    return None


@_own.register
def _(event: AnomalyAcknowledgement.Acknowledged) -> Acknowledged:
    return Acknowledged(
        event.tenant_id,
        event.anomaly_id,
        event.period_start,
        event.note,
        event.actor_id,
        event.timestamp,
    )


def anomaly_changes(batch: Sequence[Notified]) -> SeriesChanges:
    # Usage that comes after its day settled restates it (what was judged).
    changes = SeriesChanges(late=LATE + timedelta(days=SETTLE_DAYS))
    for item in batch:
        if not series_change(item.event, item.position, changes):
            own = _own(item.event)
            if own is not None:
                changes.more.append(own)
    return changes


@dataclass(frozen=True, slots=True)
class Flag:
    """One episode of one series, as stored and served."""

    id: str
    key: SeriesKey
    episode: Episode
    status: str  # open | acknowledged | cleared
    explanation: str
    reason: str | None  # why it was cleared
    position: int  # the latest metering event of its days
    ack: Acknowledged | None


class AnomalyView(SeriesView):
    def __init__(self, cursor: Cursor[Any], schema: str, version: int) -> None:
        super().__init__(cursor, schema, version, AnomalyProjection())
        self.notices: list[Notice] = []

    def apply(self, changes: SeriesChanges) -> dict[str, Dirty]:
        """Store the inputs; what each tenant's re-evaluation must cover. A
        series' flags depend on its own usage and, of time, only on the
        tenant's date: a batch that does not move the date re-evaluates the
        series it changed, and a tick that does not, nothing."""
        acks = [c for c in changes.more if isinstance(c, Acknowledged)]
        before = self.local_dates()
        dirty = self.apply_series(changes, also=[a.tenant_id for a in acks])
        after = self.local_dates()
        for tenant, today in after.items():
            if before.get(tenant) != today and tenant in dirty:
                dirty[tenant].everything = True  # a day ended: every series
        for tenant in [t for t, d in dirty.items() if _nothing(d)]:
            del dirty[tenant]
        self.many(
            "INSERT INTO {acks} (tenant_id, anomaly_id, period_start, note, actor_id,"
            " acknowledged_at) VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            acks,
        )
        for a in acks:
            dirty[a.tenant_id].periods.add(a.period_start)
            dirty[a.tenant_id].everything = True
        return dirty

    def forget_answers(self, tenant_id: str) -> None:
        self.run("DELETE FROM {flags} WHERE tenant_id = %s", (tenant_id,))
        self.run("DELETE FROM {unjudged} WHERE tenant_id = %s", (tenant_id,))

    def open_periods(self, tenant_id: str, observed: datetime) -> set[date]:
        return {
            r[0]
            for r in self.all(
                "SELECT DISTINCT period_start FROM {flags} WHERE tenant_id = %s"
                " AND closes_at > %s",
                (tenant_id, observed),
            )
        }

    def acks(self, tenant_id: str, period_start: date) -> dict[str, Acknowledged]:
        return {
            r[1]: Acknowledged(*r)
            for r in self.all(
                "SELECT tenant_id, anomaly_id, period_start, note, actor_id,"
                " acknowledged_at FROM {acks}"
                " WHERE tenant_id = %s AND period_start = %s",
                (tenant_id, period_start),
            )
        }

    def replace(
        self,
        tenant_id: str,
        period: BillingPeriod,
        flags: list[Flag],
        unjudged: list[SeriesKey],
        only: set[SeriesKey] | None,
    ) -> None:
        keys = sorted(only or ())
        params = (
            tenant_id,
            period.start,
            only is None,
            [k.workspace_id for k in keys],
            [k.product_area for k in keys],
            [k.unit for k in keys],
        )
        which = (
            " WHERE tenant_id = %s AND period_start = %s AND (%s OR"
            " (workspace_id, product_area, unit) IN"
            " (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])))"
        )
        before = dict(
            self.all("DELETE FROM {flags}" + which + " RETURNING id, status", params)
        )
        self.run("DELETE FROM {unjudged}" + which, params)
        schema, version = self.where
        insert = AnomalyProjection().insert_rows
        insert(
            self.rows,
            schema,
            version,
            FLAGS,
            FLAG_COLUMNS,
            [flag_row(tenant_id, period, f) for f in flags],
        )
        insert(
            self.rows,
            schema,
            version,
            UNJUDGED,
            ("tenant_id", "period_start", "workspace_id", "product_area", "unit"),
            [(tenant_id, period.start, *k) for k in unjudged],
        )
        for f in flags:
            self.notices += _notices(tenant_id, period, f, before.get(f.id))
        now = {f.id for f in flags}
        for gone, status in sorted(before.items()):
            if gone not in now and status != "cleared":
                # Raised on restated data and restated again: no row says
                # so, but the tenant's systems heard it opened; close it.
                self.notices.append(_gone(tenant_id, period, gone))


FLAG_COLUMNS = (
    "tenant_id",
    "period_start",
    "closes_at",
    "id",
    "workspace_id",
    "product_area",
    "unit",
    "usage_date",
    "last_date",
    "days",
    "kind",
    "direction",
    "observed",
    "expected",
    "low",
    "high",
    "score",
    "status",
    "explanation",
    "reason",
    "opened_position",
    "note",
    "acknowledged_by",
    "acknowledged_at",
)


def flag_row(tenant_id: str, period: BillingPeriod, f: Flag) -> tuple[Any, ...]:
    first, peak = f.episode.first, f.episode.peak
    ack = f.ack
    return (
        tenant_id,
        period.start,
        period.closes_at,
        f.id,
        *f.key,
        first.day,
        f.episode.days[-1].day,
        len(f.episode.days),
        f.episode.kind,
        f.episode.direction,
        peak.observed,
        peak.expected,
        peak.low,
        peak.high,
        peak.score,
        f.status,
        f.explanation,
        f.reason,
        f.position,
        ack.note if ack else None,
        ack.actor_id if ack else None,
        ack.at if ack else None,
    )


def _notices(
    tenant_id: str, period: BillingPeriod, f: Flag, before: str | None
) -> list[Notice]:
    """anomaly.opened when a flag first appears, anomaly.cleared when it is
    cleared (each at most once: the notice id says which flag)."""
    data: dict[str, Any] = {
        "id": f.id,
        "workspace_id": f.key.workspace_id,
        "product_area": f.key.product_area,
        "unit": f.key.unit,
        "usage_date": f.episode.first.day.isoformat(),
        "kind": f.episode.kind,
        "direction": f.episode.direction,
        "observed": str(f.episode.peak.observed),
        "expected": str(f.episode.peak.expected),
        "explanation": f.explanation,
        "period_start": period.start.isoformat(),
    }
    at = local_midnight(f.episode.first.day, period.timezone)
    if f.status == "cleared" and before != "cleared":
        data |= {"status": "cleared", "reason": f.reason}
        return [
            Notice(f"anomaly.cleared/{f.id}", tenant_id, "anomaly.cleared", data, at)
        ]
    if f.status != "cleared" and before is None:
        data |= {"status": f.status}
        return [Notice(f"anomaly.opened/{f.id}", tenant_id, "anomaly.opened", data, at)]
    return []


def _gone(tenant_id: str, period: BillingPeriod, anomaly_id: str) -> Notice:
    return Notice(
        f"anomaly.cleared/{anomaly_id}",
        tenant_id,
        "anomaly.cleared",
        {
            "id": anomaly_id,
            "status": "cleared",
            "reason": "Restated: the usage that raised it was corrected again; it is"
            " no longer unusual.",
            "period_start": period.start.isoformat(),
        },
        period.starts_at,
    )


def evaluate(  # noqa: PLR0913 - the period and every input of its flags
    calendar: TenantCalendar,
    period: BillingPeriod,
    observed: datetime,
    usage: dict[SeriesKey, dict[date, DayUsage]],
    first_days: dict[SeriesKey, date],
    acks: dict[str, Acknowledged],
) -> tuple[list[Flag], list[SeriesKey]]:
    """The flags of one tenant's period, and the series too new to judge."""
    today = usage_date(observed, calendar.timezone)  # in progress
    flags: list[Flag] = []
    unjudged: list[SeriesKey] = []
    for key, days in sorted(usage.items()):
        if key not in first_days:
            continue
        now = {d: u.quantity for d, u in days.items()}
        first_reported = {d: u.quantity - u.restated for d, u in days.items()}
        args = (first_days[key], period.start, period.end, today)
        scores = score_days(now, now, *args)
        if scores is None:
            if any(d >= period.start for d in days):
                unjudged.append(key)
            continue
        found = {
            flag_id((*key,), e.first.day, e.direction): e for e in episodes(scores)
        }
        # The same days as first reported, against the same (today's) weeks
        # before them: what was flagged before late data or corrections.
        restated = any(u.restated for d, u in days.items() if d >= period.start)
        was = (score_days(now, first_reported, *args) or []) if restated else scores
        flagged = {(d.day, e.direction) for e in found.values() for d in e.days}
        for anomaly_id, episode in found.items():
            ack = acks.get(anomaly_id)
            flags.append(
                Flag(
                    anomaly_id,
                    key,
                    episode,
                    "acknowledged" if ack else "open",
                    explanation(key, episode),
                    None,
                    _position(days, episode),
                    ack,
                )
            )
        current = {d.day: d for d in scores}
        for episode in episodes(was):
            anomaly_id = flag_id((*key,), episode.first.day, episode.direction)
            if anomaly_id in found or any(
                (d.day, episode.direction) in flagged for d in episode.days
            ):
                continue  # the episode is still flagged (as it stands now)
            still = tuple(current[d.day] for d in episode.days if d.day in current)
            if still and all(_same_way(d, episode.direction) for d in still):
                # Restated, but not back to usual: the flag stands, on the
                # restated figures (a flag is cleared only by a usual day).
                ack = acks.get(anomaly_id)
                kept = Episode(episode.kind, still)
                flags.append(
                    Flag(
                        anomaly_id,
                        key,
                        kept,
                        "acknowledged" if ack else "open",
                        explanation(key, kept),
                        None,
                        _position(days, kept),
                        ack,
                    )
                )
                continue
            flags.append(
                Flag(
                    anomaly_id,
                    key,
                    episode,
                    "cleared",
                    explanation(key, episode),
                    cleared_reason(key, episode, now),
                    _position(days, episode),
                    acks.get(anomaly_id),
                )
            )
    return flags, unjudged


def _same_way(day: DayScore, direction: str) -> bool:
    return day.weak and day.direction == direction


def _position(days: dict[date, DayUsage], episode: Episode) -> int:
    """The latest metering event the flag rests on: of its series, up to its
    last day (a day with nothing at all has no event of its own)."""
    last = episode.days[-1].day
    return max((u.position for d, u in days.items() if d <= last), default=0)


def _nothing(dirty: Dirty) -> bool:
    return not (dirty.everything or dirty.periods or dirty.days)


def reproject(view: AnomalyView, tenant_id: str, dirty: Dirty) -> None:
    observed = view.observed_until(tenant_id)
    if observed is None:
        return
    calendar = view.calendar(tenant_id)
    current = calendar.period_at(observed)
    # The periods of the days just ended or settled too: a drop on a period's
    # last day is judged after the period is over.
    today = usage_date(observed, calendar.timezone)
    still_open = view.open_periods(tenant_id, observed)
    for back in range(1, SETTLE_DAYS + 2):
        still_open.add(calendar.period_of(today - timedelta(days=back)).start)
    starts = view.periods_to_reproject(calendar, current, dirty, BASELINE, still_open)
    first_days = view.first_days(tenant_id)
    only = None if dirty.everything else dirty.series
    for start in starts:
        period = calendar.period_of(start)
        if period.start != start:
            continue
        usage = view.day_usage(tenant_id, period.start - BASELINE, period.end)
        usage = {
            k: v
            for k, v in usage.items()
            if k.workspace_id and (only is None or k in only)
        }
        flags, unjudged = evaluate(
            calendar, period, observed, usage, first_days, view.acks(tenant_id, start)
        )
        view.replace(tenant_id, period, flags, unjudged, only)


class AnomalyProjection(Projection):
    """Projects usage, calendars, acknowledgements and ticks into anomaly flags."""

    name = NAME
    upstreams = ("tenant_settings", "metering", "anomaly_reviews", "clock")
    tables = series_tables(NAME) | {
        FLAGS: (
            "tenant_id text NOT NULL, period_start date NOT NULL,"
            " closes_at timestamptz NOT NULL, id text NOT NULL,"
            " workspace_id text NOT NULL, product_area text NOT NULL,"
            " unit text NOT NULL, usage_date date NOT NULL, last_date date NOT NULL,"
            " days integer NOT NULL, kind text NOT NULL, direction text NOT NULL,"
            " observed numeric NOT NULL, expected numeric NOT NULL,"
            " low numeric NOT NULL, high numeric NOT NULL, score float8 NOT NULL,"
            " status text NOT NULL, explanation text NOT NULL, reason text,"
            " opened_position bigint NOT NULL, note text, acknowledged_by text,"
            " acknowledged_at timestamptz,"
            " PRIMARY KEY (tenant_id, period_start, id)"
        ),
        UNJUDGED: (
            "tenant_id text NOT NULL, period_start date NOT NULL,"
            " workspace_id text NOT NULL, product_area text NOT NULL,"
            " unit text NOT NULL,"
            " PRIMARY KEY (tenant_id, period_start, workspace_id, product_area, unit)"
        ),
        ACKS: (
            "tenant_id text NOT NULL, anomaly_id text NOT NULL,"
            " period_start date NOT NULL, note text NOT NULL,"
            " actor_id text NOT NULL, acknowledged_at timestamptz NOT NULL,"
            " PRIMARY KEY (tenant_id, anomaly_id)"
        ),
    }
    indexes = ((FLAGS, "tenant_id", "tenant_id, id"),)

    def changes(self, batch: Sequence[Notified]) -> SeriesChanges:
        return anomaly_changes(batch)

    def write(
        self, cursor: Cursor[Any], schema: str, version: int, changes: Any
    ) -> None:
        view = AnomalyView(cursor, schema, version)
        for tenant, dirty in sorted(view.apply(changes).items()):
            reproject(view, tenant, dirty)
        record_notices(cursor, schema, self.name, version, view.notices)

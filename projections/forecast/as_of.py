"""The forecast as the history stood at a cut: what the read model served when
it had processed exactly the cut's positions, derived again from the histories.

The same rules as `reproject`, by the same functions: `estimate_period` on the
inputs at the cut (series_history.py; price book versions and budgets from the
price book history), the own backtests of the closed periods before it made
again the same way, and the rows as the reader returns them.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from eventsourcing.utils import get_topic
from psycopg import AsyncConnection
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from domain.budget import BudgetHistory
from domain.periods import BillingPeriod
from domain.price_book import PriceBookHistory
from domain.pricing import PriceBook, parse_price_book
from domain.values import budget_id, price_book_id
from projections.forecast.changes import PriceVersion, forecast_changes
from projections.forecast.estimate import (
    ALL_WORKSPACES,
    WINDOW,
    PeriodEstimate,
    estimate_period,
)
from projections.forecast.postgres import (
    LINE_COLUMNS,
    LINES,
    PERIOD_COLUMNS,
    TENANTS,
    ForecastProjection,
    line_row,
    period_row,
)
from projections.forecast.reader import LineRow, PeriodRow
from projections.history import Cut, events_table
from projections.series_history import (
    SeriesAt,
    in_session,
    numeric,
    series_at,
    trimmed,
)
from projections.usage_series import SeriesKey, SeriesSnapshot, default_calendar


async def forecast_at(  # noqa: PLR0913 - the question and the point of the history
    conn: AsyncConnection[Any],
    tenant_id: str,
    period: str,
    workspace_id: str | None,
    cut: Cut,
    now: datetime,
    *,
    from_ledger: bool = False,
) -> tuple[SeriesSnapshot, PeriodRow | None, list[LineRow]]:
    """The snapshot and rows the forecast reader gave for `period` (resolved at
    `now`) when the read model stood at `cut` (series_history.series_at says
    what `from_ledger` changes)."""
    cut, series = await series_at(
        conn,
        tenant_id,
        cut,
        ForecastProjection,
        late=forecast_changes(()).late,
        from_ledger=from_ledger,
    )
    prices = await prices_at(conn, tenant_id, cut)
    asked = series.period(period, now)
    kept = await kept_residuals(conn, series, asked)
    estimate = answer_at(series, prices, asked, kept)
    row, lines = rows_of(conn, estimate, workspace_id)
    return series.snapshot(asked), row, lines


# --- the price book history at a cut ---------------------------------------------


@dataclass(frozen=True, slots=True)
class PricesAt:
    """The tenant's price book versions and budgets at a cut, as the read
    model's tables hold them."""

    versions: list[PriceVersion]
    budgets: dict[date, Decimal]  # the latest set per period start

    def book_in_force(self, period_start: date) -> PriceBook | None:
        """ForecastView.book_in_force: the latest effective, then latest set."""
        found = [v for v in self.versions if v.effective_from <= period_start]
        if not found:
            return None
        return parse_price_book(
            max(found, key=lambda v: (v.effective_from, v.position)).book
        )


class _VersionSet(msgspec.Struct):
    timestamp: datetime
    tenant_id: str
    effective_from: date
    book: dict[str, Any]


class _BudgetSet(msgspec.Struct):
    timestamp: datetime
    tenant_id: str
    period_start: date
    amount: Decimal


_VERSION_SET = get_topic(PriceBookHistory.VersionSet)
_BUDGET_SET = get_topic(BudgetHistory.BudgetSet)
_versions = msgspec.json.Decoder(_VersionSet)
_budgets = msgspec.json.Decoder(_BudgetSet)
_PRICES_SQL = SQL(
    "SELECT notification_id, topic, state FROM {} WHERE originator_id = ANY(%s)"
    " ORDER BY notification_id"
).format(Identifier(events_table("price_book")))


async def prices_at(conn: AsyncConnection[Any], tenant_id: str, cut: Cut) -> PricesAt:
    """The versions and budgets of the tenant's price book history at `cut`."""
    ids = [price_book_id(tenant_id), budget_id(tenant_id)]
    cur = await conn.execute(_PRICES_SQL, (ids,), prepare=True)
    versions: list[PriceVersion] = []
    budgets: dict[date, Decimal] = {}
    for position, topic, state in await cur.fetchall():
        if topic == _VERSION_SET:
            v = _versions.decode(state)
            if cut.covers("price_book", position, v.timestamp):
                versions.append(
                    PriceVersion(v.tenant_id, position, v.effective_from, v.book)
                )
        elif topic == _BUDGET_SET:
            b = _budgets.decode(state)
            if cut.covers("price_book", position, b.timestamp):
                budgets[b.period_start] = b.amount
    return PricesAt(versions, budgets)


# --- the answer: reproject's rules for one period --------------------------------


def answer_at(
    series: SeriesAt,
    prices: PricesAt,
    period: BillingPeriod,
    kept: KeptResiduals | None = None,
) -> PeriodEstimate | None:
    """The estimate the read model holds for `period` (None: no row): as
    `reproject` makes it, a past period listing only the lines used in it."""
    observed = series.observed
    known = series.usage or series.configured or prices.versions or prices.budgets
    if observed is None or not known:
        return None  # no usage and no tick yet, or a tenant it never heard of
    current = series.calendar.period_at(observed)
    if period.start > current.start:
        return None  # not started: never projected
    residuals = own_residuals(series, period, kept)
    estimate = _estimate(series, period, residuals, prices)
    if period.start == current.start:
        return estimate
    return _used(estimate)


def own_residuals(
    series: SeriesAt, period: BillingPeriod, kept: KeptResiduals | None = None
) -> dict[SeriesKey, list[float]]:
    """ForecastView.own_residuals: the backtests of the lines of every period
    before `period` that has a row, oldest first (they do not depend on the
    residuals, prices or budget a period is estimated with): those `kept`
    has, else worked out again."""
    found: dict[SeriesKey, list[float]] = defaultdict(list)
    for earlier in _periods_before(series, period):
        if kept is not None and earlier.start in kept:
            for key, residuals in kept[earlier.start].items():
                found[key].extend(residuals)
        else:
            estimate = _used(_estimate(series, earlier, {}, None))
            for line in estimate.lines if estimate else ():
                if line.residuals is not None:
                    found[line.key].extend(line.residuals)
    return found


def _periods_before(series: SeriesAt, period: BillingPeriod) -> Iterator[BillingPeriod]:
    """The tenant's periods from its first usage's up to `period`, oldest first."""
    if not series.first_days:
        return
    calendar = series.calendar
    earlier = calendar.period_of(min(series.first_days.values()))
    while earlier.start < period.start:
        yield earlier
        earlier = calendar.period_of(earlier.end)


# Period start -> each line's backtests, of the closed periods whose stored
# rows are the rows at the cut.
KeptResiduals = dict[date, dict[SeriesKey, list[float]]]

_KEPT_SQL = SQL(
    "SELECT period_start, workspace_id, product_area, unit, residuals FROM {lines}"
    " WHERE tenant_id = %(tenant)s AND period_start < %(before)s"
    " AND residuals IS NOT NULL"
    " AND EXISTS (SELECT 1 FROM {tenants} WHERE tenant_id = %(tenant)s"
    "  AND coalesce(timezone, %(default_tz)s) = %(tz)s"
    "  AND coalesce(anchor_day, %(default_anchor)s) = %(anchor)s"
    "  AND coalesce(grace_hours, %(default_grace)s) = %(grace)s)"
).format(lines=Identifier(LINES), tenants=Identifier(TENANTS))


async def kept_residuals(
    conn: AsyncConnection[Any], series: SeriesAt, period: BillingPeriod
) -> KeptResiduals | None:
    """The backtests the read model stores for the periods before `period`
    that are the same at the cut: read from its own days, which no entry
    after the cut changed up to the period's end, closed at the cut and
    bucketed with the calendar at the cut (the same rows by the rules the
    read model keeps: its rows are the answers to its inputs). None: none is."""
    before = series.unchanged_before
    observed = series.observed
    if before is None or observed is None:
        return None
    same = [
        p.start
        for p in itertools.takewhile(
            lambda p: p.end <= before and p.closes_at <= observed,
            _periods_before(series, period),
        )
    ]
    if not same:
        return None
    calendar = series.calendar
    d = default_calendar(calendar.tenant_id)
    cur = await conn.cursor(row_factory=tuple_row).execute(
        _KEPT_SQL,
        {
            "tenant": calendar.tenant_id,
            "before": max(same) + timedelta(days=1),
            "tz": calendar.timezone,
            "anchor": calendar.anchor_day,
            "grace": calendar.grace_hours,
            "default_tz": d.timezone,
            "default_anchor": d.anchor_day,
            "default_grace": d.grace_hours,
        },
        prepare=True,
    )
    rows = await cur.fetchall()
    if not rows:
        return None  # bucketed with another calendar, or no line backtested
    kept: KeptResiduals = {start: {} for start in same}
    for start, workspace, area, unit, residuals in rows:
        kept[start][SeriesKey(workspace, area, unit)] = residuals
    return kept


def _estimate(
    series: SeriesAt,
    period: BillingPeriod,
    residuals: dict[SeriesKey, list[float]],
    prices: PricesAt | None,
) -> PeriodEstimate:
    observed = series.observed
    assert observed is not None
    return estimate_period(
        series.calendar,
        period,
        observed,
        series.days(period.start - WINDOW, period.end),
        series.first_days,
        residuals,
        prices.book_in_force(period.start) if prices else None,
        prices.budgets.get(period.start) if prices else None,
    )


def _used(estimate: PeriodEstimate) -> PeriodEstimate | None:
    """A past period lists what was used in it; none used, no answer."""
    used = tuple(x for x in estimate.lines if x.forecast.to_date != 0)
    return replace(estimate, lines=used) if used else None


# --- the rows, as the reader returns them ----------------------------------------


def rows_of(
    conn: AsyncConnection[Any],
    estimate: PeriodEstimate | None,
    workspace_id: str | None,
) -> tuple[PeriodRow | None, list[LineRow]]:
    """The stored rows of `estimate` (period_row, line_row) read back as
    ForecastReader.answer reads them."""
    if estimate is None:
        return None, []
    p = dict(zip(PERIOD_COLUMNS, period_row(estimate), strict=True))
    total = None
    if p["charges_to_date"] is not None:
        total = _numerics(p[k] for k in ("charges_to_date", "p10", "p50", "p90"))
    row = PeriodRow(
        p["status"],
        in_session(conn, p["data_through"]),
        p["currency"],
        None if p["budget"] is None else numeric(p["budget"]),
        total,
        p["breach_date"],
        p["method"],
        p["history_days"],
        p["low_data"],
        p["calibration"],
    )
    wanted = ALL_WORKSPACES if workspace_id is None else workspace_id
    lines = [
        dict(zip(LINE_COLUMNS, line_row(estimate, x), strict=True))
        for x in estimate.lines
        if x.key.workspace_id == wanted
    ]
    return row, [_line(x) for x in sorted(lines, key=_by_area_and_unit)]


def _by_area_and_unit(line: dict[str, Any]) -> tuple[str, str]:
    return line["product_area"], line["unit"]


def _line(x: dict[str, Any]) -> LineRow:
    charges = None
    if x["charges_to_date"] is not None:
        charges = _numerics(x[k] for k in ("charges_to_date", "c10", "c50", "c90"))
    quantities = [trimmed(x[k]) for k in ("quantity_to_date", "q10", "q50", "q90")]
    return LineRow(
        x["product_area"],
        x["unit"],
        x["method"],
        x["history_days"],
        x["low_data"],
        x["calibration"],
        x["priced"],
        quantities=(quantities[0], quantities[1], quantities[2], quantities[3]),
        charges=charges,
    )


def _numerics(values: Iterable[Decimal]) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    a, b, c, d = (numeric(v) for v in values)
    return a, b, c, d

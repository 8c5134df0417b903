"""billing_forecast in PostgreSQL: its inputs, its answers, and re-projecting.

Each batch first updates the inputs the read model keeps for itself (usage
per 15-minute slot and per local day, calendars, price book versions,
budgets, the latest tick), then re-projects every (tenant, period) whose
answer those inputs may have changed, and replaces its rows. Which periods
that is, and why a rebuild gives the same rows, is in README.md.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import msgspec
from psycopg import Cursor
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composable, Composed, Identifier

from domain.periods import usage_date
from domain.pricing import PriceBook, parse_price_book
from domain.tenant_settings import DEFAULT_SETTINGS
from projections.base import Notified, Projection
from projections.forecast.changes import ForecastChanges, forecast_changes
from projections.forecast.estimate import (
    WINDOW,
    Line,
    PeriodEstimate,
    SeriesKey,
    TenantCalendar,
    estimate_period,
)

SLOTS = "billing_forecast_slots"
DAYS = "billing_forecast_days"
TENANTS = "billing_forecast_tenants"
PRICES = "billing_forecast_prices"
BUDGETS = "billing_forecast_budgets"
CLOCK = "billing_forecast_clock"
PERIODS = "billing_forecast_periods"
LINES = "billing_forecast_lines"


def default_calendar(tenant_id: str) -> TenantCalendar:
    d = DEFAULT_SETTINGS
    return TenantCalendar(tenant_id, d.timezone, d.period_anchor_day, d.grace_hours)


@dataclass(slots=True)
class _Dirty:
    """What of one tenant a batch may have changed."""

    everything: bool = False  # calendar or prices: every period with data
    periods: set[date] = field(default_factory=set)  # period starts
    days: set[date] = field(default_factory=set)  # local days of changed usage


class ForecastView:
    """One version's tables, written in the projection's transaction."""

    def __init__(self, cursor: Cursor[Any], schema: str, version: int) -> None:
        self.cursor = cursor
        self.rows = cursor.connection.cursor(row_factory=tuple_row)
        self.where = (schema, version)
        self.t = {
            view: Identifier(schema, Projection.table_name(view, version))
            for view in ForecastProjection.tables
        }

    def _sql(self, text: str, **extra: Composable) -> Composed:
        return SQL(text).format(
            **{k.split("_forecast_")[1]: v for k, v in self.t.items()}, **extra
        )

    def _all(
        self, text: str, params: Sequence[Any] | dict[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        self.rows.execute(self._sql(text), params)
        return self.rows.fetchall()

    def _run(self, text: str, params: Sequence[Any] | dict[str, Any] = ()) -> None:
        self.rows.execute(self._sql(text), params)

    def _many(self, text: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = list(rows)
        if batch:
            self.rows.executemany(self._sql(text), batch)

    # --- inputs ---------------------------------------------------------------

    def apply(self, changes: ForecastChanges) -> dict[str, _Dirty]:
        """Store the batch's inputs; what each tenant's re-projection must cover."""
        dirty: dict[str, _Dirty] = defaultdict(_Dirty)
        tenants = set(changes.recorded) | set(changes.calendars)
        tenants |= {p.tenant_id for p in changes.prices}
        tenants |= {b.tenant_id for b in changes.budgets}
        self._many(
            "INSERT INTO {tenants} (tenant_id) VALUES (%s) ON CONFLICT DO NOTHING",
            [(t,) for t in sorted(tenants)],
        )
        for calendar in changes.calendars.values():
            self._set_calendar(calendar, dirty)
        self._many(
            "INSERT INTO {prices} (tenant_id, position, effective_from, book)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [
                (
                    p.tenant_id,
                    p.position,
                    p.effective_from,
                    msgspec.json.encode(p.book).decode(),
                )
                for p in changes.prices
            ],
        )
        for p in changes.prices:
            dirty[p.tenant_id].everything = True
        for b in changes.budgets:
            self._run(
                "INSERT INTO {budgets} (tenant_id, period_start, amount)"
                " VALUES (%s, %s, %s) ON CONFLICT (tenant_id, period_start)"
                " DO UPDATE SET amount = EXCLUDED.amount",
                (b.tenant_id, b.period_start, b.amount),
            )
            dirty[b.tenant_id].periods.add(b.period_start)
        self._add_usage(changes, dirty)
        if changes.tick is not None:
            self._run(
                "INSERT INTO {clock} (id, at) VALUES (true, %s) ON CONFLICT (id)"
                " DO UPDATE SET at = greatest({clock}.at, EXCLUDED.at)",
                (changes.tick,),
            )
            for (tenant,) in self._all("SELECT tenant_id FROM {tenants}"):
                dirty.setdefault(tenant, _Dirty())  # time moved for everyone
        return dirty

    def _set_calendar(self, calendar: TenantCalendar, dirty: dict[str, _Dirty]) -> None:
        old = self.calendar(calendar.tenant_id)
        self._run(
            "UPDATE {tenants} SET timezone = %s, anchor_day = %s, grace_hours = %s"
            " WHERE tenant_id = %s",
            (
                calendar.timezone,
                calendar.anchor_day,
                calendar.grace_hours,
                calendar.tenant_id,
            ),
        )
        if old == calendar:
            return
        tenant = calendar.tenant_id
        if old.timezone != calendar.timezone:
            self._run("DELETE FROM {days} WHERE tenant_id = %s", (tenant,))
            self._run(
                "INSERT INTO {days} (tenant_id, usage_date, workspace_id, product_area,"
                " unit, quantity) SELECT tenant_id, (slot AT TIME ZONE %s)::date,"
                " workspace_id, product_area, unit, sum(quantity) FROM {slots}"
                " WHERE tenant_id = %s GROUP BY 1, 2, 3, 4, 5",
                (calendar.timezone, tenant),
            )
        # Periods themselves may move: every answer of the tenant is made again.
        self._run("DELETE FROM {lines} WHERE tenant_id = %s", (tenant,))
        self._run("DELETE FROM {periods} WHERE tenant_id = %s", (tenant,))
        dirty[tenant].everything = True

    def _add_usage(self, changes: ForecastChanges, dirty: dict[str, _Dirty]) -> None:
        if not changes.slots:
            return
        calendars = {t: self.calendar(t) for t in {k.tenant_id for k in changes.slots}}
        self._many(
            "INSERT INTO {slots} AS s (tenant_id, workspace_id, product_area,"
            " unit, slot, quantity) VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (tenant_id, workspace_id, product_area, unit, slot)"
            " DO UPDATE SET quantity = s.quantity + EXCLUDED.quantity",
            [(*key, quantity) for key, quantity in sorted(changes.slots.items())],
        )
        days: dict[tuple[str, date, str, str, str], Decimal] = defaultdict(Decimal)
        began = {tenant: self.first_days(tenant) for tenant in calendars}
        for key, quantity in changes.slots.items():
            tenant, series = key.tenant_id, SeriesKey(*key[1:4])
            day = usage_date(key.slot, calendars[tenant].timezone)
            days[(tenant, day, *series)] += quantity
            dirty[tenant].days.add(day)
            first = began[tenant].get(series)
            if first is not None and day < first:
                # Before the series' first day: every period whose history
                # starts on that first day now starts earlier.
                dirty[tenant].everything = True
        self._many(
            "INSERT INTO {days} AS d (tenant_id, usage_date, workspace_id,"
            " product_area, unit, quantity) VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (tenant_id, usage_date, workspace_id, product_area, unit)"
            " DO UPDATE SET quantity = d.quantity + EXCLUDED.quantity",
            [(*key, quantity) for key, quantity in sorted(days.items())],
        )
        self._many(
            "UPDATE {tenants} SET last_recorded_at ="
            " greatest(last_recorded_at, %s) WHERE tenant_id = %s",
            [(at, tenant) for tenant, at in sorted(changes.recorded.items())],
        )

    # --- reading the inputs -----------------------------------------------------

    def calendar(self, tenant_id: str) -> TenantCalendar:
        found = self._all(
            "SELECT timezone, anchor_day, grace_hours FROM {tenants}"
            " WHERE tenant_id = %s",
            (tenant_id,),
        )
        if not found or found[0][0] is None:
            return default_calendar(tenant_id)
        return TenantCalendar(tenant_id, *found[0])

    def observed_until(self, tenant_id: str) -> datetime | None:
        """How far time has got for the tenant: the latest tick, or its latest
        recorded usage if that is later."""
        found = self._all(
            "SELECT greatest((SELECT at FROM {clock}), t.last_recorded_at)"
            " FROM {tenants} t WHERE t.tenant_id = %s",
            (tenant_id,),
        )
        return found[0][0] if found else None

    def book_in_force(self, tenant_id: str, period_start: date) -> PriceBook | None:
        found = self._all(
            "SELECT book FROM {prices} WHERE tenant_id = %s AND effective_from <= %s"
            " ORDER BY effective_from DESC, position DESC LIMIT 1",
            (tenant_id, period_start),
        )
        return parse_price_book(found[0][0]) if found else None

    def budget(self, tenant_id: str, period_start: date) -> Decimal | None:
        found = self._all(
            "SELECT amount FROM {budgets} WHERE tenant_id = %s AND period_start = %s",
            (tenant_id, period_start),
        )
        return found[0][0] if found else None

    def days(
        self, tenant_id: str, first: date, end: date
    ) -> dict[SeriesKey, dict[date, Decimal]]:
        found: dict[SeriesKey, dict[date, Decimal]] = defaultdict(dict)
        for workspace, area, unit, day, quantity in self._all(
            "SELECT workspace_id, product_area, unit, usage_date, quantity FROM {days}"
            " WHERE tenant_id = %s AND usage_date >= %s AND usage_date < %s",
            (tenant_id, first, end),
        ):
            found[SeriesKey(workspace, area, unit)][day] = quantity
        return found

    def first_days(self, tenant_id: str) -> dict[SeriesKey, date]:
        """The first day each of the tenant's series has usage on."""
        return {
            SeriesKey(workspace, area, unit): day
            for workspace, area, unit, day in self._all(
                "SELECT workspace_id, product_area, unit, min(usage_date) FROM {days}"
                " WHERE tenant_id = %s GROUP BY 1, 2, 3",
                (tenant_id,),
            )
        }

    def own_residuals(
        self, tenant_id: str, before: date
    ) -> dict[SeriesKey, list[float]]:
        found: dict[SeriesKey, list[float]] = defaultdict(list)
        for workspace, area, unit, residuals in self._all(
            "SELECT workspace_id, product_area, unit, residuals FROM {lines}"
            " WHERE tenant_id = %s AND period_start < %s AND residuals IS NOT NULL"
            " ORDER BY period_start",
            (tenant_id, before),
        ):
            found[SeriesKey(workspace, area, unit)].extend(residuals)
        return found

    def open_periods(self, tenant_id: str) -> set[date]:
        return {
            r[0]
            for r in self._all(
                "SELECT period_start FROM {periods}"
                " WHERE tenant_id = %s AND status = 'open'",
                (tenant_id,),
            )
        }

    def usage_span(self, tenant_id: str) -> tuple[date, date] | None:
        found = self._all(
            "SELECT min(usage_date), max(usage_date) FROM {days} WHERE tenant_id = %s",
            (tenant_id,),
        )
        return (found[0][0], found[0][1]) if found and found[0][0] else None

    # --- the answers --------------------------------------------------------------

    def replace(
        self, tenant_id: str, period_start: date, estimate: PeriodEstimate | None
    ) -> None:
        key = (tenant_id, period_start)
        self._run("DELETE FROM {lines} WHERE tenant_id = %s AND period_start = %s", key)
        self._run(
            "DELETE FROM {periods} WHERE tenant_id = %s AND period_start = %s", key
        )
        if estimate is None:
            return
        insert = ForecastProjection().insert_rows
        insert(self.rows, *self.where, PERIODS, PERIOD_COLUMNS, [period_row(estimate)])
        insert(
            self.rows,
            *self.where,
            LINES,
            LINE_COLUMNS,
            [line_row(estimate, line) for line in estimate.lines],
        )


PERIOD_COLUMNS = (
    "tenant_id",
    "period_start",
    "period_end",
    "timezone",
    "closes_at",
    "status",
    "data_through",
    "currency",
    "budget",
    "charges_to_date",
    "p10",
    "p50",
    "p90",
    "breach_date",
    "method",
    "history_days",
    "low_data",
    "calibration",
    "line_count",
)
LINE_COLUMNS = (
    "tenant_id",
    "period_start",
    "workspace_id",
    "product_area",
    "unit",
    "method",
    "history_days",
    "low_data",
    "calibration",
    "priced",
    "quantity_to_date",
    "q10",
    "q50",
    "q90",
    "charges_to_date",
    "c10",
    "c50",
    "c90",
    "residuals",
)


def period_row(e: PeriodEstimate) -> tuple[Any, ...]:
    total = e.total()
    head = e.headline()
    p = e.period
    # A closed period's answer is its actuals; it says "through its close",
    # whenever late data last restated it (so a rebuild writes the same row).
    through = p.closes_at if e.status == "closed" else e.data_through
    return (
        e.tenant_id,
        p.start,
        p.end,
        p.timezone,
        p.closes_at,
        e.status,
        through,
        e.currency,
        e.budget,
        *(total if total else (None, None, None, None)),
        e.breach_date,
        head.forecast.method if head else None,
        max((x.forecast.history_days for x in e.lines), default=0),
        any(x.forecast.low_data for x in e.lines) or not e.lines,
        head.calibration if head else None,
        len(e.lines),
    )


def line_row(e: PeriodEstimate, line: Line) -> tuple[Any, ...]:
    f = line.forecast
    charges = line.charges or (None, None, None, None)
    return (
        e.tenant_id,
        e.period.start,
        *line.key,
        f.method,
        f.history_days,
        f.low_data,
        line.calibration,
        line.priced,
        f.to_date,
        f.p10,
        f.p50,
        f.p90,
        *charges,
        list(line.residuals) if line.residuals is not None else None,
    )


def reproject(view: ForecastView, tenant_id: str, dirty: _Dirty) -> None:
    """Make again every answer of the tenant that its changed inputs touch."""
    observed = view.observed_until(tenant_id)
    if observed is None:
        return  # no usage and no tick yet: nothing to say
    calendar = view.calendar(tenant_id)
    current = calendar.period_at(observed)
    starts = {current.start} | dirty.periods | view.open_periods(tenant_id)
    for day in dirty.days:
        # The day's period, and the periods whose history window holds it
        # (their forecasts and, once closed, their backtests read it).
        period = calendar.period_of(day)
        while period.start <= day + WINDOW:
            starts.add(period.start)
            period = calendar.period_of(period.end)
    if dirty.everything:
        span = view.usage_span(tenant_id)
        if span:
            period = calendar.period_of(span[0])
            while period.start <= span[1]:
                starts.add(period.start)
                period = calendar.period_of(period.end)
    # Oldest first: a closed period's backtests feed the calibration of later ones.
    for start in sorted(s for s in starts if s <= current.start):
        period = calendar.period_of(start)
        if period.start != start:
            view.replace(tenant_id, start, None)  # a start the calendar no longer has
            continue
        estimate = estimate_period(
            calendar,
            period,
            observed,
            view.days(tenant_id, period.start - WINDOW, period.end),
            view.first_days(tenant_id),
            view.own_residuals(tenant_id, period.start),
            view.book_in_force(tenant_id, period.start),
            view.budget(tenant_id, period.start),
        )
        if period.start != current.start:
            # A past period lists what was used in it; none used, no answer.
            used = tuple(x for x in estimate.lines if x.forecast.to_date != 0)
            view.replace(
                tenant_id, start, replace(estimate, lines=used) if used else None
            )
        else:
            view.replace(tenant_id, start, estimate)


class ForecastProjection(Projection):
    """Projects usage, calendars, price books, budgets and ticks into forecasts."""

    name = "billing_forecast"
    upstreams = ("tenant_settings", "price_book", "metering", "clock")
    tables = {
        SLOTS: (
            "tenant_id text NOT NULL, workspace_id text NOT NULL,"
            " product_area text NOT NULL, unit text NOT NULL,"
            " slot timestamptz NOT NULL, quantity numeric NOT NULL,"
            " PRIMARY KEY (tenant_id, workspace_id, product_area, unit, slot)"
        ),
        DAYS: (
            "tenant_id text NOT NULL, usage_date date NOT NULL,"
            " workspace_id text NOT NULL, product_area text NOT NULL,"
            " unit text NOT NULL, quantity numeric NOT NULL,"
            " PRIMARY KEY (tenant_id, usage_date, workspace_id, product_area, unit)"
        ),
        TENANTS: (
            "tenant_id text PRIMARY KEY, timezone text, anchor_day integer,"
            " grace_hours integer, last_recorded_at timestamptz"
        ),
        PRICES: (
            "tenant_id text NOT NULL, position bigint NOT NULL,"
            " effective_from date NOT NULL, book jsonb NOT NULL,"
            " PRIMARY KEY (tenant_id, position)"
        ),
        BUDGETS: (
            "tenant_id text NOT NULL, period_start date NOT NULL,"
            " amount numeric NOT NULL, PRIMARY KEY (tenant_id, period_start)"
        ),
        CLOCK: "id boolean PRIMARY KEY, at timestamptz NOT NULL",
        PERIODS: (
            "tenant_id text NOT NULL, period_start date NOT NULL,"
            " period_end date NOT NULL, timezone text NOT NULL,"
            " closes_at timestamptz NOT NULL, status text NOT NULL,"
            " data_through timestamptz NOT NULL, currency text, budget numeric,"
            " charges_to_date numeric, p10 numeric, p50 numeric, p90 numeric,"
            " breach_date date, method text, history_days integer NOT NULL,"
            " low_data boolean NOT NULL, calibration text, line_count integer NOT NULL,"
            " PRIMARY KEY (tenant_id, period_start)"
        ),
        LINES: (
            "tenant_id text NOT NULL, period_start date NOT NULL,"
            " workspace_id text NOT NULL, product_area text NOT NULL,"
            " unit text NOT NULL, method text NOT NULL,"
            " history_days integer NOT NULL, low_data boolean NOT NULL,"
            " calibration text NOT NULL, priced boolean NOT NULL,"
            " quantity_to_date numeric NOT NULL, q10 numeric NOT NULL,"
            " q50 numeric NOT NULL, q90 numeric NOT NULL, charges_to_date numeric,"
            " c10 numeric, c50 numeric, c90 numeric, residuals float8[],"
            " PRIMARY KEY (tenant_id, period_start, workspace_id, product_area, unit)"
        ),
    }

    def changes(self, batch: Sequence[Notified]) -> ForecastChanges:
        return forecast_changes(batch)

    def write(
        self, cursor: Cursor[Any], schema: str, version: int, changes: Any
    ) -> None:
        view = ForecastView(cursor, schema, version)
        for tenant, dirty in sorted(view.apply(changes).items()):
            reproject(view, tenant, dirty)

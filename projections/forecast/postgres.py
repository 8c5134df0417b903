"""billing_forecast in PostgreSQL: its inputs, its answers, and re-projecting.

Each batch first updates the inputs the read model keeps for itself (usage
per 15-minute slot and per local day, calendars, price book versions,
budgets, the latest tick), then re-projects every (tenant, period) whose
answer those inputs may have changed, and replaces its rows. Which periods
that is, and why a rebuild gives the same rows, is in README.md.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

import msgspec
from psycopg import Cursor

from domain.pricing import PriceBook, parse_price_book
from projections.base import Notified, Projection
from projections.forecast.changes import BudgetSet, PriceVersion, forecast_changes
from projections.forecast.estimate import (
    WINDOW,
    Line,
    PeriodEstimate,
    estimate_period,
)
from projections.notices import Notice, record_notices
from projections.usage_series import (
    Dirty,
    SeriesChanges,
    SeriesKey,
    SeriesView,
    series_tables,
)

NAME = "billing_forecast"
PRICES = "billing_forecast_prices"
BUDGETS = "billing_forecast_budgets"
PERIODS = "billing_forecast_periods"
LINES = "billing_forecast_lines"
TENANTS = "billing_forecast_tenants"
CLOCK = "billing_forecast_clock"


class ForecastView(SeriesView):
    """One version's tables, written in the projection's transaction."""

    def __init__(self, cursor: Cursor[Any], schema: str, version: int) -> None:
        super().__init__(cursor, schema, version, ForecastProjection())
        self.notices: list[Notice] = []

    def apply(self, changes: SeriesChanges) -> dict[str, Dirty]:
        """Store the batch's inputs; what each tenant's re-projection must cover."""
        prices = [c for c in changes.more if isinstance(c, PriceVersion)]
        budgets = [c for c in changes.more if isinstance(c, BudgetSet)]
        also = [p.tenant_id for p in prices] + [b.tenant_id for b in budgets]
        dirty = self.apply_series(changes, also=also)
        self.many(
            "INSERT INTO {prices} (tenant_id, position, effective_from, book)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [
                (
                    p.tenant_id,
                    p.position,
                    p.effective_from,
                    msgspec.json.encode(p.book).decode(),
                )
                for p in prices
            ],
        )
        for p in prices:
            dirty[p.tenant_id].everything = True
        for b in budgets:
            self.run(
                "INSERT INTO {budgets} (tenant_id, period_start, amount)"
                " VALUES (%s, %s, %s) ON CONFLICT (tenant_id, period_start)"
                " DO UPDATE SET amount = EXCLUDED.amount",
                (b.tenant_id, b.period_start, b.amount),
            )
            dirty[b.tenant_id].periods.add(b.period_start)
        return dirty

    def forget_answers(self, tenant_id: str) -> None:
        self.run("DELETE FROM {lines} WHERE tenant_id = %s", (tenant_id,))
        self.run("DELETE FROM {periods} WHERE tenant_id = %s", (tenant_id,))

    def book_in_force(self, tenant_id: str, period_start: date) -> PriceBook | None:
        found = self.all(
            "SELECT book FROM {prices} WHERE tenant_id = %s AND effective_from <= %s"
            " ORDER BY effective_from DESC, position DESC LIMIT 1",
            (tenant_id, period_start),
        )
        return parse_price_book(found[0][0]) if found else None

    def budget(self, tenant_id: str, period_start: date) -> Decimal | None:
        found = self.all(
            "SELECT amount FROM {budgets} WHERE tenant_id = %s AND period_start = %s",
            (tenant_id, period_start),
        )
        return found[0][0] if found else None

    def own_residuals(
        self, tenant_id: str, before: date
    ) -> dict[SeriesKey, list[float]]:
        found: dict[SeriesKey, list[float]] = defaultdict(list)
        for workspace, area, unit, residuals in self.all(
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
            for r in self.all(
                "SELECT period_start FROM {periods}"
                " WHERE tenant_id = %s AND status = 'open'",
                (tenant_id,),
            )
        }

    def replace(
        self, tenant_id: str, period_start: date, estimate: PeriodEstimate | None
    ) -> None:
        key = (tenant_id, period_start)
        self.run("DELETE FROM {lines} WHERE tenant_id = %s AND period_start = %s", key)
        before = self.all(
            "DELETE FROM {periods} WHERE tenant_id = %s AND period_start = %s"
            " RETURNING charges_to_date, p50",
            key,
        )
        if estimate is None:
            return
        self.notices += budget_notices(estimate, before[0] if before else None)
        insert = ForecastProjection().insert_rows
        insert(self.rows, *self.where, PERIODS, PERIOD_COLUMNS, [period_row(estimate)])
        insert(
            self.rows,
            *self.where,
            LINES,
            LINE_COLUMNS,
            [line_row(estimate, line) for line in estimate.lines],
        )


THRESHOLDS = (50, 75, 100)  # percent of the budget reached by charges to date


def budget_notices(
    estimate: PeriodEstimate, before: tuple[Any, ...] | None
) -> list[Notice]:
    """What crossing the budget's thresholds tells the tenant: charges to date
    reaching 50, 75 and 100 %, and the p50 projection reaching it (each once
    per period: the notice id says which)."""
    total = estimate.total()
    budget = estimate.budget
    if estimate.status != "open" or budget is None or not budget or total is None:
        return []
    old_charges, old_p50 = before if before else (None, None)
    tenant, start = estimate.tenant_id, estimate.period.start.isoformat()
    data = {
        "period_start": start,
        "budget": str(budget),
        "currency": estimate.currency,
        "charges_to_date": str(total[0]),
        "projected_charges": {"p10": str(total[1]), "p50": str(total[2]),
                              "p90": str(total[3])},
    }  # fmt: skip
    found = []
    for percent in THRESHOLDS:
        line = budget * percent / 100
        if total[0] >= line and (old_charges is None or old_charges < line):
            found.append(
                Notice(
                    f"budget.threshold_crossed/{tenant}/{start}/{percent}",
                    tenant,
                    "budget.threshold_crossed",
                    data | {"threshold_percent": percent},
                    estimate.data_through,
                )
            )
    if total[2] >= budget and (old_p50 is None or old_p50 < budget):
        breach = estimate.breach_date
        found.append(
            Notice(
                f"budget.projected_breach/{tenant}/{start}",
                tenant,
                "budget.projected_breach",
                data | {"projected_breach_date": breach and breach.isoformat()},
                estimate.data_through,
            )
        )
    return found


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


def reproject(view: ForecastView, tenant_id: str, dirty: Dirty) -> None:
    """Make again every answer of the tenant that its changed inputs touch."""
    observed = view.observed_until(tenant_id)
    if observed is None:
        return  # no usage and no tick yet: nothing to say
    calendar = view.calendar(tenant_id)
    current = calendar.period_at(observed)
    # Oldest first: a closed period's backtests feed the calibration of later ones.
    starts = view.periods_to_reproject(
        calendar, current, dirty, WINDOW, view.open_periods(tenant_id)
    )
    for start in starts:
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

    name = NAME
    upstreams = ("tenant_settings", "price_book", "metering", "clock")
    tables = series_tables(NAME) | {
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

    def changes(self, batch: Sequence[Notified]) -> SeriesChanges:
        return forecast_changes(batch)

    def write(
        self, cursor: Cursor[Any], schema: str, version: int, changes: Any
    ) -> None:
        view = ForecastView(cursor, schema, version)
        for tenant, dirty in sorted(view.apply(changes).items()):
            reproject(view, tenant, dirty)
        record_notices(cursor, schema, self.name, version, view.notices)

"""Usage reads: one client and many, cached and uncached; CSV export; references.

    .venv/bin/python bench/query.py [--per-day 50] [--requests 400] [--seconds 10]
        [--clients 16] [--workers 2] [--quick] [--keep]

The data set is DESIGN section 10's: one tenant with 90 days of 20 workspaces x
10 product areas (--per-day events per workspace, area and day; 50 gives about
900,000 events), plus two smaller tenants. It is seeded in-process through the
Ingestor's backfill path and projected before `billing serve` starts.

Uncached: a second server points at bench/null_redis.py, a Redis that keeps
nothing, with its in-process cache off (BILLING_LOCAL_CACHE_BYTES=0), so every
request is a real miss and still pays a miss's GET and SET round trips.
References, same run: the same rows and totals aggregated in SQL from the raw
events (billing_usage_ledger, one row per event; given an index on tenant,
workspace and time, and work_mem for an in-memory hash aggregate, as a system
without a read model would be), and GET /healthz for the HTTP floor.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import psycopg
from common import (
    Bench,
    Report,
    ResourceMonitor,
    Server,
    analyze,
    base_arguments,
    latency_text,
    mib,
    percentile,
    private_environment,
    progress,
    ratio_text,
    running_server,
    token,
    uncached_server,
)
from httpload import Load, concurrent_load, fetch, get_request, one_client
from psycopg import sql
from workload import bodies, history

from application.bootstrap import bootstrap
from application.clock import utc_now
from application.metering.ingestor import Ingestor

TENANT = "t_bench"
OTHERS = ("t_other_a", "t_other_b")
USAGE = "/api/billing/usage?period=current"


def arguments() -> argparse.Namespace:
    parser = base_arguments(__doc__.split("\n", 1)[0])
    parser.add_argument("--per-day", type=int, default=50, help="events per series-day")
    parser.add_argument("--requests", type=int, default=400, help="per one-client case")
    parser.add_argument("--seconds", type=float, default=10, help="per concurrent case")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="serve --workers")
    parser.add_argument("--exports", type=int, default=5)
    args = parser.parse_args()
    if args.quick:
        args.per_day, args.requests, args.seconds, args.exports = 1, 20, 1, 2
        args.workers = 1
    return args


# --- the data set -----------------------------------------------------------------


def seed(bench: Bench, per_day: int) -> tuple[int, float, float, str]:
    """Seed and project the data set: (events, seconds seeding, projecting, stats)."""
    ws = bootstrap(bench.settings)
    ingestor = Ingestor(ws.metering, ws.tenants, clock=utc_now, max_events=10_000)
    now = datetime.now(UTC)
    plan = [(TENANT, 20, per_day)] + [(t, 5, max(1, per_day // 5)) for t in OTHERS]
    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            jobs = [
                pool.submit(ingestor.ingest, tenant, body, backfill=True)
                for tenant, workspaces, n in plan
                for body in bodies(_history(tenant, now, workspaces, n), 10_000)
            ]
            events = sum(job.result().accepted for job in jobs)
        seeded = time.perf_counter()
        analyze(bench.settings)
        ws.projector.advance_all()
        projected = time.perf_counter()
        return events, seeded - started, projected - seeded, analyze(bench.settings)
    finally:
        ws.close()


def _history(
    tenant: str, now: datetime, workspaces: int, per_day: int
) -> Iterator[dict[str, Any]]:
    return history(
        f"{tenant}-", now, days=90, workspaces=workspaces, areas=10, per_day=per_day
    )


def current_period() -> tuple[datetime, datetime]:
    """The tenant's current billing period (UTC calendar months, the default)."""
    today = datetime.now(UTC).date()
    start = datetime(today.year, today.month, 1, tzinfo=UTC)
    end = datetime(today.year + today.month // 12, today.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def daily_rows(bench: Bench) -> int:
    start, _ = current_period()
    with psycopg.connect(bench.settings.conninfo()) as conn:
        row = conn.execute(
            "SELECT count(*) FROM billing_usage_daily"
            " WHERE tenant_id = %s AND usage_date >= %s",
            (TENANT, start.date()),
        ).fetchone()
    return int(row[0]) if row else 0


# --- references: SQL over raw events ----------------------------------------------

RAW_ROWS = (
    "SELECT workspace_id, product_area, (occurred_at AT TIME ZONE 'UTC')::date AS day,"
    " unit, sum(quantity_delta), sum(count_delta) FROM billing_usage_ledger {where}"
    " GROUP BY 1, 2, 3, 4 ORDER BY 3, 1, 2, 4"
)
RAW_TOTALS = (
    "SELECT product_area, unit, trim_scale(sum(quantity_delta))::text"
    " FROM billing_usage_ledger {where} GROUP BY 1, 2 ORDER BY 1, 2"
)
RAW_SETUP = "index (tenant, workspace, time), work_mem 64MB"


def give_raw_sql_its_best_chance(bench: Bench) -> None:
    """An index a system without a read model would have for these queries."""
    with psycopg.connect(bench.settings.conninfo(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT live_version FROM billing_projections"
            " WHERE name = 'billing_usage_daily'"
        ).fetchone()
        ledger = sql.Identifier(f"billing_usage_ledger_v{row[0] if row else 1}")
        conn.execute(
            sql.SQL("CREATE INDEX ON {} (tenant_id, workspace_id, occurred_at)").format(
                ledger
            )
        )
        conn.execute(sql.SQL("ANALYZE {}").format(ledger))


def raw_aggregation(
    bench: Bench, workspace: str | None, runs: int
) -> tuple[list[float], list[list[str]]]:
    """Seconds per run of the rows and totals computed from raw events; the totals."""
    start, end = current_period()
    params = {"tenant": TENANT, "start": start, "end": end, "workspace": workspace}
    where = "WHERE tenant_id = %(tenant)s AND occurred_at >= %(start)s"
    where += " AND occurred_at < %(end)s"
    if workspace:
        where += " AND workspace_id = %(workspace)s"
    seconds, totals = [], []
    with psycopg.connect(bench.settings.conninfo()) as conn:
        conn.execute("SET work_mem = '64MB'")  # hash aggregation in memory
        for _ in range(runs):
            began = time.perf_counter()
            conn.execute(RAW_ROWS.format(where=where), params).fetchall()
            totals = conn.execute(RAW_TOTALS.format(where=where), params).fetchall()
            seconds.append(time.perf_counter() - began)
            conn.commit()
    return seconds, [list(t) for t in totals]


# --- measurements over HTTP -------------------------------------------------------


@dataclass
class Results:
    """Everything one run measures."""

    one: dict[str, Load] = field(default_factory=dict)
    many: dict[str, Load] = field(default_factory=dict)
    monitors: dict[str, ResourceMonitor] = field(default_factory=dict)
    exports: list[tuple[float, float, float, int]] = field(default_factory=list)
    raw: dict[str, list[float]] = field(default_factory=dict)
    api_totals: list[list[str]] = field(default_factory=list)
    raw_totals: list[list[str]] = field(default_factory=list)


def one_client_cases(
    args: argparse.Namespace, port: int, bearer: str, case: str
) -> dict[str, Load]:
    """Latency of one client for one workspace and the whole tenant."""
    results = {}
    for scope, path in (
        ("one workspace", f"{USAGE}&workspace_id=ws_00"),
        ("whole tenant", USAGE),
    ):
        request = get_request(path, bearer)
        one_client(port, request, 5)  # warm up (and, when cached, fill the cache)
        results[f"{scope}, {case}"] = one_client(port, request, args.requests)
    return results


def mixed_requests(bearer: str) -> list[bytes]:
    """GET usage of each of the 20 workspaces, in turn."""
    return [get_request(f"{USAGE}&workspace_id=ws_{w:02d}", bearer) for w in range(20)]


def many_clients(
    args: argparse.Namespace, server: Server, requests: list[bytes]
) -> tuple[Load, ResourceMonitor]:
    """A short warm-up, then `--clients` clients for `--seconds`, monitored."""
    port, clients = server.port, args.clients
    concurrent_load(port, requests, clients=clients, seconds=min(1.0, args.seconds))
    with ResourceMonitor(server.service.pid) as monitor:
        load = concurrent_load(port, requests, clients=clients, seconds=args.seconds)
    return load, monitor


def export_case(
    port: int, bearer: str, times: int
) -> list[tuple[float, float, float, int]]:
    """Whole-tenant CSV exports: seconds to headers, to body, to end; bytes."""
    results = []
    headers = {"Authorization": f"Bearer {bearer}"}
    url = f"http://127.0.0.1:{port}/api/billing/usage/export?period=current"
    with httpx.Client(headers=headers, timeout=120) as client:
        for _ in range(times):
            started = time.perf_counter()
            with client.stream("GET", url) as response:
                head = time.perf_counter() - started
                chunks = response.iter_raw()
                size = len(next(chunks, b""))
                first = time.perf_counter() - started
                size += sum(len(c) for c in chunks)
                response.raise_for_status()
            results.append((head, first, time.perf_counter() - started, size))
    return results


def api_totals(port: int, bearer: str) -> list[list[str]]:
    body = msgspec.json.decode(fetch(port, get_request(USAGE, bearer)).body)
    return [[t["product_area"], t["unit"], t["quantity"]] for t in body["totals"]]


def measure_with_cache(
    args: argparse.Namespace, bench: Bench, bearer: str, out: Results
) -> None:
    """Everything measured against a server using the real Redis."""
    with running_server(bench, workers=args.workers) as server:
        port, healthz = server.port, get_request("/healthz")
        out.one["healthz"] = one_client(port, healthz, args.requests)
        out.many["healthz"], _ = many_clients(args, server, [healthz])
        progress("one client, cached")
        out.one |= one_client_cases(args, port, bearer, "cached")
        progress(f"{args.clients} clients, cached")
        requests = mixed_requests(bearer)
        for request in requests:
            fetch(port, request)  # fill the cache
        out.many["cached"], out.monitors["cached"] = many_clients(
            args, server, requests
        )
        out.api_totals = api_totals(port, bearer)
        progress("CSV exports")
        with ResourceMonitor(server.service.pid) as out.monitors["export"]:
            out.exports = export_case(port, bearer, args.exports)


def measure_without_cache(
    args: argparse.Namespace, bench: Bench, bearer: str, out: Results
) -> None:
    """Many clients against a server whose Redis keeps nothing."""
    with uncached_server(bench, workers=args.workers) as server:
        progress("one client, uncached")
        out.one |= one_client_cases(args, server.port, bearer, "uncached")
        progress(f"{args.clients} clients, uncached")
        requests = mixed_requests(bearer)
        out.many["uncached"], out.monitors["uncached"] = many_clients(
            args, server, requests
        )


def measure_sql(args: argparse.Namespace, bench: Bench, out: Results) -> None:
    give_raw_sql_its_best_chance(bench)
    runs = max(5, args.requests // 10)
    out.raw["one workspace"], _ = raw_aggregation(bench, "ws_00", runs)
    out.raw["whole tenant"], out.raw_totals = raw_aggregation(bench, None, runs)


# --- printing ---------------------------------------------------------------------

ONE_CLIENT_TARGETS = {
    "one workspace, uncached": "p95 <= 10 ms",
    "one workspace, cached": "p95 <= 5 ms",
    "whole tenant, uncached": "p95 <= 40 ms",
    "whole tenant, cached": "p95 <= 10 ms",
}


def print_one_client(report: Report, out: Results) -> None:
    for case, target in ONE_CLIENT_TARGETS.items():
        load = out.one[case]
        errors = f", {load.errors} errors" if load.errors else ""
        report.figure(
            f"{case}, 1 client", latency_text(load.latencies) + errors, target
        )
    report.reference(
        "GET /healthz, 1 client", latency_text(out.one["healthz"].latencies)
    )
    for scope, seconds in out.raw.items():
        report.reference(f"raw-event SQL aggregation, {scope}", latency_text(seconds))
    report.note(
        f"raw-event SQL: rows and totals from billing_usage_ledger, {RAW_SETUP}"
    )
    p50 = {case: percentile(load.latencies, 50) for case, load in out.one.items()}
    for scope, seconds in out.raw.items():
        ratio = ratio_text(p50[f"{scope}, uncached"], percentile(seconds, 50))
        report.ratio(f"{scope} uncached p50 / raw SQL p50", ratio)
    cached = ratio_text(p50["one workspace, cached"], p50["healthz"])
    report.ratio("one workspace cached p50 / healthz p50", cached)


def print_many_clients(report: Report, args: argparse.Namespace, out: Results) -> None:
    n, floor = args.clients, out.many["healthz"]
    for case, target in (
        ("uncached", ">= 400 req/s, no errors"),
        ("cached", ">= 1,000 req/s, no errors"),
    ):
        load, monitor = out.many[case], out.monitors[case]
        report.figure(
            f"{n} clients, mixed workspaces, {case}",
            f"{load.rate:,.0f} req/s, {load.errors} errors, {load.cache_text()};"
            f" {latency_text(load.latencies)}",
            target,
        )
        report.figure(
            "  server during it: peak RSS, PG connections",
            f"{mib(monitor.peak_rss)}, {monitor.peak_connections}",
        )
        report.figure("  CPU during it", monitor.cpu_text())
    report.reference(f"GET /healthz, {n} clients", f"{floor.rate:,.0f} req/s")
    for case in ("cached", "uncached"):
        ratio = ratio_text(out.many[case].rate, floor.rate)
        report.ratio(f"{n} clients {case} / healthz", ratio)


def print_exports(report: Report, out: Results) -> None:
    heads, firsts, totals, sizes = zip(*out.exports, strict=True)
    monitor = out.monitors["export"]
    report.figure(
        "CSV export, whole tenant: first byte (headers)",
        latency_text(heads, (50, 100)),
        "<= 50 ms",
    )
    report.figure("CSV export: first body byte", latency_text(firsts, (50, 100)))
    report.figure(
        "CSV export: complete",
        latency_text(totals, (50, 100)) + f", {sizes[0]:,} bytes",
    )
    report.figure(
        "CSV export: server RSS (sum of processes)",
        f"peak {mib(monitor.peak_rss)}, before {mib(monitor.first_rss)}",
    )


def print_check(report: Report, out: Results) -> None:
    same = out.raw_totals == out.api_totals
    text = "yes" if same else f"NO: {out.raw_totals} != {out.api_totals}"
    report.figure("API totals equal raw-event totals", text)


def main() -> None:
    args = arguments()
    report = Report("query: GET /api/billing/usage")
    with private_environment("query", keep=args.keep) as bench:
        progress("seeding")
        events, seeding, projecting, statistics = seed(bench, args.per_day)
        report.setup(
            f"{events:,} events: {TENANT} {args.per_day}/workspace/area/day over"
            f" 90 days x 20 workspaces x 10 areas, and {len(OTHERS)} smaller tenants;"
            f" seeded in {seeding:.0f} s, projected in {projecting:.0f} s;"
            f" {daily_rows(bench):,} daily rows in {TENANT}'s current period;"
            f" {statistics}; serve --workers {args.workers}"
        )
        bearer, out = token(bench.settings, TENANT, "admin"), Results()
        measure_with_cache(args, bench, bearer, out)
        measure_without_cache(args, bench, bearer, out)
        progress("SQL references")
        measure_sql(args, bench, out)
        print_one_client(report, out)
        print_many_clients(report, args, out)
        print_exports(report, out)
        print_check(report, out)


if __name__ == "__main__":
    main()

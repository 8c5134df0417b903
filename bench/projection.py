"""Projection throughput (catch-up, rebuild, in a worker) and lag at steady ingest.

    .venv/bin/python bench/projection.py [--events 1000000] [--lag-rate 5000]
        [--lag-seconds 60] [--lag-batch 500] [--quick] [--keep]

Events are loaded in-process (through the Ingestor, as HTTP would), then
billing_usage_daily is caught up in-process, rebuilt in-process, and rebuilt by
a real `billing worker`. Lag is measured with `billing serve` and `billing
worker` running while one client sends a steady rate over HTTP: from each
ingest response (position P) to the projection's NOTIFY that it reached P.
The reference is a raw read of the notification log in pages of 5,000.
"""

from __future__ import annotations

import argparse
import time
from bisect import bisect_left
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import psycopg
from common import (
    Bench,
    Report,
    ResourceMonitor,
    analyze,
    base_arguments,
    latency_text,
    mib,
    percentile,
    private_environment,
    progress,
    ratio_text,
    running_server,
    running_worker,
    token,
)
from listener import ProgressListener
from psycopg.rows import tuple_row
from workload import bodies, recent_events, summary_decoder

from application.bootstrap import WriteSide, bootstrap
from application.clock import utc_now
from application.metering.ingestor import Ingestor

NAME = "billing_usage_daily"
TENANTS = ("t_bench_a", "t_bench_b", "t_bench_c")


def arguments() -> argparse.Namespace:
    parser = base_arguments(__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--lag-rate", type=int, default=5000, help="events/s")
    parser.add_argument("--lag-seconds", type=float, default=60)
    parser.add_argument("--lag-batch", type=int, default=500, help="events per request")
    parser.add_argument(
        "--no-analyze", action="store_true", help="no ANALYZE after loading"
    )
    args = parser.parse_args()
    if args.quick:
        args.events, args.lag_seconds = (
            min(args.events, 20_000),
            min(args.lag_seconds, 4),
        )
    return args


def load(ws: WriteSide, events: int) -> float:
    """Record `events` events in-process in batches of 10,000; returns seconds."""
    ingestor = Ingestor(ws.metering, ws.tenants, clock=utc_now, max_events=10_000)
    batches = bodies(recent_events("p", events, datetime.now(UTC)), 10_000)
    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        jobs = [
            pool.submit(ingestor.ingest, TENANTS[i % len(TENANTS)], body)
            for i, body in enumerate(batches)
        ]
        accepted = sum(job.result().accepted for job in jobs)
    assert accepted == events, f"only {accepted:,} of {events:,} events were accepted"
    return time.perf_counter() - started


def raw_read(bench: Bench, page: int = 5000) -> tuple[int, float]:
    """Read the whole notification log in pages, as a projection's reader does."""
    started = time.perf_counter()
    rows, after = 0, 0
    with (
        psycopg.connect(bench.settings.conninfo()) as conn,
        conn.cursor(row_factory=tuple_row, binary=True) as cur,
    ):
        while True:
            cur.execute(
                "SELECT notification_id, topic, state FROM metering_events"
                " WHERE notification_id > %s ORDER BY notification_id LIMIT %s",
                (after, page),
                prepare=True,
            )
            page_rows = cur.fetchall()
            if not page_rows:
                return rows, time.perf_counter() - started
            rows, after = rows + len(page_rows), page_rows[-1][0]


def timed(action: Callable[[], int]) -> tuple[int, float]:
    """Call `action()`; return what it returned and the seconds it took."""
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def rebuild_in_worker(bench: Bench, ws: WriteSide) -> tuple[float, float]:
    """Ask the running worker to rebuild; (seconds to swap, seconds to 1st batch)."""
    before = ws.projector.registry.get(NAME).live_version
    with ProgressListener(bench.settings) as listener:
        started = time.perf_counter()
        ws.projector.request_rebuild(NAME)
        while ws.projector.registry.get(NAME).live_version == before:
            time.sleep(0.02)
        swapped = time.perf_counter()
    batches = listener.times(NAME, before + 1)
    first = batches[0] - started if batches else float("nan")
    return swapped - started, first


@dataclass
class Throughput:
    """Seconds (and events) of each step of the throughput run."""

    load: float
    statistics: str
    read: tuple[int, float]
    catch_up: tuple[int, float] = (0, 0.0)
    rebuild: tuple[int, float] = (0, 0.0)
    worker: tuple[float, float] = (0.0, 0.0)


def measure_throughput(args: argparse.Namespace, bench: Bench) -> Throughput:
    """Load, then catch up, rebuild, and rebuild in a worker."""
    ws = bootstrap(bench.settings)
    try:
        progress(f"loading {args.events:,} events in-process")
        loading = load(ws, args.events)
        statistics = "none" if args.no_analyze else analyze(bench.settings)
        out = Throughput(loading, statistics, raw_read(bench))
        progress("catching up in-process")
        out.catch_up = timed(lambda: ws.projector.advance(NAME))
        progress("rebuilding in-process")
        out.rebuild = timed(lambda: ws.projector.rebuild(NAME))
        progress("rebuilding in a worker")
        with running_worker(bench):
            ws.projector.advance_all()  # the other read models: the worker starts idle
            out.worker = rebuild_in_worker(bench, ws)
        return out
    finally:
        ws.close()


def print_throughput(
    args: argparse.Namespace, report: Report, bench: Bench, out: Throughput
) -> None:
    report.setup(
        f"{args.events:,} events over {len(TENANTS)} tenants, loaded in-process"
        f" at {args.events / out.load:,.0f} events/s; planner statistics:"
        f" {out.statistics}; batch {bench.settings.projection_batch_size:,}"
    )
    target = ">= 50,000 events/s"
    (done, catch_up), (rebuilt, rebuild) = out.catch_up, out.rebuild
    in_worker, first = out.worker
    report.figure("catch-up in-process (advance)", _rate(done, catch_up), target)
    report.figure("rebuild in-process", _rate(rebuilt, rebuild), target)
    report.figure(
        "rebuild in `billing worker` (request to swap)",
        _rate(rebuilt, in_worker) + f"; first batch after {first * 1000:.0f} ms",
        target,
    )
    rows, read_seconds = out.read
    report.reference(
        "raw read of metering_events, pages of 5,000", _rate(rows, read_seconds)
    )
    read_rate = rows / read_seconds
    report.ratio("catch-up / raw read", ratio_text(done / catch_up, read_rate))
    report.ratio("rebuild / raw read", ratio_text(rebuilt / rebuild, read_rate))
    report.ratio(
        "rebuild in worker / raw read", ratio_text(rebuilt / in_worker, read_rate)
    )


def _rate(events: int, seconds: float) -> str:
    return f"{events / seconds:,.0f} events/s ({events:,} in {seconds:.1f} s)"


def send_steadily(
    url: str, bearer: str, batches: list[bytes], interval: float
) -> list[tuple[float, int, float]]:
    """POST one batch every `interval` s; (response time, position, latency) each."""
    sent = []
    headers = {"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        start = time.perf_counter()
        for k, body in enumerate(batches):
            pause = start + k * interval - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            begun = time.perf_counter()
            response = client.post("/api/metering/events", content=body)
            response.raise_for_status()
            done = time.perf_counter()
            sent.append(
                (done, summary_decoder.decode(response.content).position, done - begun)
            )
    return sent


def lags(
    sent: list[tuple[float, int, float]], seen: list[tuple[float, int]]
) -> list[float]:
    """Per batch: seconds from its response until the projection reached it."""
    positions = [position for _, position in seen]
    out = []
    for responded, position, _ in sent:
        i = bisect_left(positions, position)
        if i < len(seen):
            out.append(max(0.0, seen[i][0] - responded))
    return out


def notify_round_trips(bench: Bench, listener: ProgressListener, n: int) -> list[float]:
    """Seconds from pg_notify on a channel to this process hearing it: the floor."""
    seconds = []
    with psycopg.connect(bench.settings.conninfo(), autocommit=True) as conn:
        for k in range(1, n + 1):
            started = time.perf_counter()
            conn.execute(
                "SELECT pg_notify(%s, %s)", (listener.channel, f"probe:0:p:{k}")
            )
            listener.wait_for("probe", "p", k, timeout=5)
            seconds.append(time.perf_counter() - started)
    return seconds


@dataclass
class LagRun:
    """What the steady-ingest run saw."""

    count: int
    sent: list[tuple[float, int, float]]  # response time, position, latency
    lags: list[float]
    floor: list[float]
    monitor: ResourceMonitor


def measure_lag(args: argparse.Namespace, bench: Bench) -> LagRun:
    """Steady ingest over HTTP with a worker projecting; what the client saw."""
    count = int(args.lag_rate * args.lag_seconds)
    batches = bodies(recent_events("lag", count, datetime.now(UTC)), args.lag_batch)
    bearer = token(bench.settings, TENANTS[0], "metering")
    with running_worker(bench) as worker, running_server(bench, workers=1) as server:
        progress(f"steady ingest for {args.lag_seconds:g} s")
        with ProgressListener(bench.settings) as listener:
            floor = notify_round_trips(bench, listener, 50)
            with ResourceMonitor(worker.pid, server.service.pid) as monitor:
                interval = args.lag_batch / args.lag_rate
                sent = send_steadily(server.url, bearer, batches, interval)
                listener.wait_for(NAME, "metering", sent[-1][1], timeout=30)
        worker.check_alive()
    measured = lags(sent, listener.positions(NAME, "metering"))
    return LagRun(count, sent, measured, floor, monitor)


def print_lag(args: argparse.Namespace, report: Report, out: LagRun) -> None:
    sent, measured, monitor = out.sent, out.lags, out.monitor
    wall = sent[-1][0] - sent[0][0] + sent[0][2]
    report.setup(
        f"lag: {out.count:,} events at {args.lag_rate:,}/s in batches of"
        f" {args.lag_batch} (one client), serve --workers 1, worker --processes 1"
    )
    report.figure(
        "lag, ingest response to projected", latency_text(measured), "p99 <= 1 s"
    )
    report.figure("ingest rate achieved", f"{out.count / wall:,.0f} events/s")
    report.figure("ingest response latency", latency_text([s[2] for s in sent]))
    report.figure("batches never seen projected", f"{len(sent) - len(measured)}")
    report.figure("peak RSS, worker + server processes", mib(monitor.peak_rss))
    report.figure("CPU during the lag run", monitor.cpu_text())
    report.reference(
        "NOTIFY round trip (pg_notify to listener)", latency_text(out.floor)
    )
    ratio = ratio_text(percentile(measured, 50), percentile(out.floor, 50))
    report.ratio("lag p50 / NOTIFY round trip p50", ratio)


def main() -> None:
    args = arguments()
    report = Report("projection: billing_usage_daily")
    with private_environment("projection", keep=args.keep) as bench:
        print_throughput(args, report, bench, measure_throughput(args, bench))
        print_lag(args, report, measure_lag(args, bench))


if __name__ == "__main__":
    main()

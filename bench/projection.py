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
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import psycopg
from common import (
    Bench,
    Report,
    ResourceMonitor,
    base_arguments,
    latency_text,
    mib,
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
from application.recording import Ingestor

NAME = "billing_usage_daily"
TENANTS = ("t_bench_a", "t_bench_b", "t_bench_c")


def arguments() -> argparse.Namespace:
    parser = base_arguments(__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--lag-rate", type=int, default=5000, help="events/s")
    parser.add_argument("--lag-seconds", type=float, default=60)
    parser.add_argument("--lag-batch", type=int, default=500, help="events per request")
    args = parser.parse_args()
    if args.quick:
        args.events, args.lag_seconds = min(args.events, 20_000), min(args.lag_seconds, 4)
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


def timed(action: object) -> tuple[int, float]:
    """Call `action()`; return what it returned and the seconds it took."""
    started = time.perf_counter()
    result = action()  # type: ignore[operator]
    return result, time.perf_counter() - started


def rebuild_in_worker(bench: Bench, ws: WriteSide) -> tuple[float, float]:
    """Ask the running worker to rebuild; (seconds to swap, seconds to first batch)."""
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


def throughput_figures(args: argparse.Namespace, report: Report, bench: Bench) -> None:
    ws = bootstrap(bench.settings)
    try:
        progress(f"loading {args.events:,} events in-process")
        load_seconds = load(ws, args.events)
        report.setup(
            f"{args.events:,} events over {len(TENANTS)} tenants, loaded in-process"
            f" at {args.events / load_seconds:,.0f} events/s;"
            f" projection batch {bench.settings.projection_batch_size:,}"
        )
        rows, read_seconds = raw_read(bench)
        progress("catching up in-process")
        done, catch_up = timed(lambda: ws.projector.advance(NAME))
        progress("rebuilding in-process")
        rebuilt, rebuild = timed(lambda: ws.projector.rebuild(NAME))
        progress("rebuilding in a worker")
        with running_worker(bench):
            ws.projector.advance_all()  # the others, so the worker starts idle
            in_worker, first = rebuild_in_worker(bench, ws)
    finally:
        ws.close()
    target = ">= 50,000 events/s"
    report.figure("catch-up in-process (advance)", _rate(done, catch_up), target)
    report.figure("rebuild in-process", _rate(rebuilt, rebuild), target)
    report.figure(
        "rebuild in `billing worker` (request to swap)",
        _rate(rebuilt, in_worker) + f"; first batch after {first * 1000:.0f} ms",
        target,
    )
    report.reference("raw read of metering_events, pages of 5,000", _rate(rows, read_seconds))
    read_rate = rows / read_seconds
    report.ratio("catch-up / raw read", ratio_text(done / catch_up, read_rate))
    report.ratio("rebuild / raw read", ratio_text(rebuilt / rebuild, read_rate))


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
            sent.append((done, summary_decoder.decode(response.content).position, done - begun))
    return sent


def lags(sent: list[tuple[float, int, float]], seen: list[tuple[float, int]]) -> list[float]:
    """Per batch: seconds from its response until the projection reached it."""
    positions = [position for _, position in seen]
    out = []
    for responded, position, _ in sent:
        i = bisect_left(positions, position)
        if i < len(seen):
            out.append(max(0.0, seen[i][0] - responded))
    return out


def lag_figures(args: argparse.Namespace, report: Report, bench: Bench) -> None:
    count = int(args.lag_rate * args.lag_seconds)
    batches = bodies(recent_events("lag", count, datetime.now(UTC)), args.lag_batch)
    interval = args.lag_batch / args.lag_rate
    bearer = token(bench.settings, TENANTS[0], "metering")
    with running_worker(bench) as worker, running_server(bench, workers=1) as server:
        progress(f"steady ingest for {args.lag_seconds:g} s")
        with (
            ProgressListener(bench.settings) as listener,
            ResourceMonitor(worker.pid, server.service.pid) as monitor,
        ):
            sent = send_steadily(server.url, bearer, batches, interval)
            listener.wait_for(NAME, "metering", sent[-1][1], timeout=30)
        worker.check_alive()
    seen = listener.positions(NAME, "metering")
    measured = lags(sent, seen)
    wall = sent[-1][0] - sent[0][0] + sent[0][2]
    report.setup(
        f"lag: {count:,} events at {args.lag_rate:,}/s in batches of {args.lag_batch}"
        f" (one client), serve --workers 1, worker --processes 1 --threads 2"
    )
    report.figure("lag, ingest response to projected", latency_text(measured), "p99 <= 1 s")
    report.figure("ingest rate achieved", f"{count / wall:,.0f} events/s")
    report.figure("ingest response latency", latency_text([s[2] for s in sent]))
    report.figure("batches never seen projected", f"{len(sent) - len(measured)}")
    report.figure("peak RSS, worker + server processes", mib(monitor.peak_rss))
    report.figure("CPU during the lag run", monitor.cpu_text())


def main() -> None:
    args = arguments()
    report = Report("projection: billing_usage_daily")
    with private_environment("projection", keep=args.keep) as bench:
        throughput_figures(args, report, bench)
        lag_figures(args, report, bench)


if __name__ == "__main__":
    main()

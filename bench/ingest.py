"""HTTP ingest throughput, against PostgreSQL COPY of the same rows (same run).

    .venv/bin/python bench/ingest.py [--events 1000000] [--batch 1000]
        [--clients 4] [--workers 2] [--quick] [--keep]

Clients POST pre-encoded batches to `billing serve` as fast as it answers. The
reference COPYs the rows the service stored, in transactions of the same size,
into a table shaped and indexed like metering_events.
"""

from __future__ import annotations

import argparse
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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
    token,
)
from psycopg.rows import tuple_row
from workload import bodies, recent_events, summary_decoder

TENANT = "t_bench"
COLUMNS = "originator_id, originator_version, topic, state"


def arguments() -> argparse.Namespace:
    parser = base_arguments(__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000, help="events per request")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--workers", type=int, default=2, help="serve --workers")
    args = parser.parse_args()
    if args.quick:
        args.events = min(args.events, 20_000)
    return args


@dataclass
class Sent:
    """What the clients saw."""

    latencies: list[float] = field(default_factory=list)
    finished: list[tuple[float, int]] = field(default_factory=list)
    accepted: int = 0
    errors: int = 0
    started: float = 0.0
    ended: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def rate(self, since: float = 0.0) -> float:
        """Accepted events per second over the run, or from `since` on."""
        start = max(self.started, since)
        events = sum(n for at, n in self.finished if at > start)
        return events / (self.ended - start)


def send_all(url: str, bearer: str, batches: list[bytes], clients: int) -> Sent:
    """POST every batch, `clients` at a time, each client on its own connection."""
    todo: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    for body in batches:
        todo.put(body)
    sent = Sent(started=time.perf_counter())
    with ThreadPoolExecutor(clients) as pool:
        for future in [
            pool.submit(_client, url, bearer, todo, sent) for _ in range(clients)
        ]:
            future.result()
    sent.ended = time.perf_counter()
    return sent


def _client(url: str, bearer: str, todo: queue.SimpleQueue[bytes], sent: Sent) -> None:
    headers = {"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        while True:
            try:
                body = todo.get_nowait()
            except queue.Empty:
                return
            started = time.perf_counter()
            response = client.post("/api/metering/events", content=body)
            now = time.perf_counter()
            with sent.lock:
                if response.status_code != 200:
                    sent.errors += 1
                    continue
                accepted = summary_decoder.decode(response.content).accepted
                sent.accepted += accepted
                sent.latencies.append(now - started)
                sent.finished.append((now, accepted))


def stored_count(bench: Bench) -> int:
    with psycopg.connect(bench.settings.conninfo()) as conn:
        row = conn.execute("SELECT count(*) FROM metering_events").fetchone()
    return int(row[0]) if row else 0


def copy_reference(bench: Bench, batch: int, chunk: int = 100_000) -> tuple[int, float]:
    """COPY the stored rows into a table like metering_events, `batch` per commit."""
    with psycopg.connect(bench.settings.conninfo()) as conn:
        _create_copy_table(conn)
        done, seconds, after = 0, 0.0, 0
        while rows := _read_chunk(conn, after, chunk):  # read untimed, in chunks
            after = rows[-1][-1]
            started = time.perf_counter()
            for i in range(0, len(rows), batch):
                with (
                    conn.transaction(),
                    conn.cursor().copy(
                        f"COPY copy_reference ({COLUMNS}) FROM STDIN (FORMAT BINARY)"
                    ) as copy,
                ):
                    copy.set_types(["uuid", "int8", "text", "bytea"])
                    for row in rows[i : i + batch]:
                        copy.write_row(row[:4])
            seconds += time.perf_counter() - started
            done += len(rows)
    return done, seconds


def _create_copy_table(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE copy_reference (LIKE metering_events INCLUDING ALL)")
    conn.execute("CREATE SEQUENCE copy_reference_ids")
    conn.execute(
        "ALTER TABLE copy_reference ALTER notification_id"
        " SET DEFAULT nextval('copy_reference_ids')"
    )
    conn.commit()


def _read_chunk(conn: psycopg.Connection, after: int, limit: int) -> list[tuple]:
    with conn.cursor(row_factory=tuple_row, binary=True) as cur:
        cur.execute(
            f"SELECT {COLUMNS}, notification_id FROM metering_events"
            " WHERE notification_id > %s ORDER BY notification_id LIMIT %s",
            (after, limit),
        )
        rows = cur.fetchall()
    conn.commit()
    return rows


def prepare(args: argparse.Namespace) -> list[bytes]:
    """The request bodies of every event, encoded before any timing."""
    run = f"i{int(time.time())}-"
    events = recent_events(run, args.events, datetime.now(UTC))
    return bodies(events, args.batch)


@dataclass
class Measured:
    """The figures of one run."""

    sent: Sent
    monitor: ResourceMonitor
    stored: int
    copy_rate: float


def run(args: argparse.Namespace, report: Report, bench: Bench) -> Measured:
    batches = prepare(args)
    size = sum(map(len, batches)) / args.events
    report.setup(
        f"{args.events:,} events in {len(batches):,} batches of {args.batch:,}"
        f" ({size:.0f} bytes/event), {args.clients} clients,"
        f" serve --workers {args.workers}, schema {bench.settings.db_schema}"
    )
    bearer = token(bench.settings, TENANT, "metering")
    with running_server(bench, workers=args.workers) as server:
        progress(f"sending {len(batches):,} batches")
        with ResourceMonitor(server.service.pid) as monitor:
            sent = send_all(server.url, bearer, batches, args.clients)
    del batches
    stored = stored_count(bench)
    progress("COPY reference")
    copied, copy_seconds = copy_reference(bench, args.batch)
    return Measured(sent, monitor, stored, copied / copy_seconds)


def print_figures(report: Report, args: argparse.Namespace, m: Measured) -> None:
    sent, monitor = m.sent, m.monitor
    rate, seconds = sent.rate(), sent.ended - sent.started
    report.figure(
        "ingest over HTTP, sustained",
        f"{rate:,.0f} events/s ({sent.accepted:,} in {seconds:.1f} s)",
        ">= 20,000 events/s",
    )
    half = sent.rate(sent.started + seconds / 2)
    report.figure("ingest over HTTP, second half of the run", f"{half:,.0f} events/s")
    report.figure(
        f"batch latency ({args.batch:,} events)", latency_text(sent.latencies)
    )
    report.figure(
        "peak RSS of server processes (sum)",
        f"{mib(monitor.peak_rss)} (at start {mib(monitor.first_rss)})",
    )
    report.figure("PostgreSQL connections of the server", f"{monitor.peak_connections}")
    report.figure("CPU during the HTTP run", monitor.cpu_text())
    report.figure(
        "stored / sent, HTTP errors",
        f"{m.stored:,} / {args.events:,}, {sent.errors} errors",
    )
    report.reference(
        f"COPY same rows, {args.batch:,} per commit", f"{m.copy_rate:,.0f} rows/s"
    )
    report.ratio("HTTP ingest / COPY", ratio_text(rate, m.copy_rate))


def main() -> None:
    args = arguments()
    report = Report("ingest: POST /api/metering/events")
    with private_environment("ingest", keep=args.keep) as bench:
        print_figures(report, args, run(args, report, bench))


if __name__ == "__main__":
    main()

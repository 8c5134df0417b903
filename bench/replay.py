"""Auditors' reads: usage as of past instants, replays of past views, bulk verify.

    .venv/bin/python bench/replay.py [--per-day 50] [--requests 100] [--views 200]
        [--workers 2] [--quick] [--keep]

The data set is bench/query.py's (seeded and projected by its `seed`): one
tenant with 90 days of 20 workspaces x 10 product areas (--per-day events per
workspace, area and day; 50 gives about 900,000 events), plus two smaller
tenants. One `billing serve` whose Redis keeps nothing and whose in-process
cache is off (as query.py's "uncached"), one client throughout:

- as-of usage, whole tenant and one workspace: GET /api/audit/usage?as_of=
  &period=current at instants spread over the recording of the current
  period's events (the seed records 90 days in a few minutes, so an instant
  before the seed would find an empty history); reference, the live read of
  the same answer, GET /api/billing/usage, uncached.
- replay: live views (usage whole tenant and one workspace, forecast,
  anomalies) made, their audit event ids found in GET /api/audit/events by
  the X-Request-ID each answer carried (the audit log read model advanced
  in-process until it has them), then GET /api/audit/views/{id}/replay;
  reference, the live read of the same view, uncached. Every replay must say
  `verified`.
- as-of forecast and anomalies, whole tenant, --heavy times at each of the
  as-of usage instants (after the replays, so those start from cold caches).
- `billing audit verify --tenant t_bench --since <before them>` after --views
  views of mixed kinds: the views per second it prints, and its exit status.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import msgspec
import psycopg
import uvloop
from common import (
    Bench,
    Report,
    Server,
    analyze,
    base_arguments,
    latency_text,
    percentile,
    private_environment,
    progress,
    ratio_text,
    token,
    uncached_server,
)
from httpload import Connection, Reply, fetch, get_request, one_client
from query import OTHERS, TENANT, USAGE, current_period, daily_rows, seed

from application.bootstrap import bootstrap

WORKSPACE = "ws_00"
LIVE = {
    "usage, whole tenant": USAGE,
    "usage, one workspace": f"{USAGE}&workspace_id={WORKSPACE}",
    "forecast, whole tenant": "/api/billing/forecast?period=current",
    "anomalies, whole tenant": "/api/billing/anomalies?period=current",
}
VIEW_TYPES = {
    "usage": "UsageViewed",
    "forecast": "ForecastViewed",
    "anomalies": "AnomaliesViewed",
}
AS_OF_TARGETS = {"whole tenant": "p95 <= 250 ms", "one workspace": "p95 <= 50 ms"}
AS_OF_SERIES = {
    "forecast": "/api/audit/forecast?as_of={at}&period=current",
    "anomalies": "/api/audit/anomalies?as_of={at}&period=current",
}
AUDIT_LOG = "billing_audit_log"
USAGE_DAILY = "billing_usage_daily"
SEED_BATCH = 100_000  # events per projection batch while seeding (in-process)


def arguments() -> argparse.Namespace:
    parser = base_arguments(__doc__.split("\n", 1)[0])
    parser.add_argument("--per-day", type=int, default=50, help="events per series-day")
    parser.add_argument("--requests", type=int, default=100, help="per one-client case")
    parser.add_argument("--instants", type=int, default=4, help="as-of instants")
    parser.add_argument(
        "--heavy", type=int, default=5, help="replays of the forecast, anomalies"
    )
    parser.add_argument("--views", type=int, default=200, help="views to verify")
    parser.add_argument("--workers", type=int, default=2, help="serve --workers")
    args = parser.parse_args()
    if args.quick:
        args.per_day, args.requests, args.views, args.workers = 1, 8, 8, 1
        args.heavy = 1
    return args


# --- requests and replies ---------------------------------------------------------


async def _replies(
    port: int, requests: Sequence[bytes]
) -> tuple[list[float], list[Reply]]:
    conn, seconds, replies = Connection(port), [], []
    for request in requests:
        started = time.perf_counter()
        replies.append(await conn.get(request))
        seconds.append(time.perf_counter() - started)
    await conn.close()
    return seconds, replies


def replies(port: int, requests: Sequence[bytes]) -> tuple[list[float], list[Reply]]:
    """One client sending `requests` one after the other: seconds and replies."""
    return uvloop.run(_replies(port, requests))


def ok(reply: Reply, what: str) -> Reply:
    if reply.status != 200:
        raise RuntimeError(f"{what}: HTTP {reply.status}: {reply.body[:500]!r}")
    return reply


def as_of_path(instant: datetime, workspace: str | None) -> str:
    path = f"/api/audit/usage?as_of={quote(instant.isoformat())}&period=current"
    return path + (f"&workspace_id={workspace}" if workspace else "")


# --- the instants -----------------------------------------------------------------


def recording_instants(bench: Bench, count: int) -> list[tuple[float, datetime]]:
    """Instants by which 1/count, 2/count, ... of the current period's ledger
    entries of the tenant had been recorded (the last: all of them)."""
    start, end = current_period()
    fractions = [(i + 1) / count for i in range(count)]
    with psycopg.connect(bench.settings.conninfo()) as conn:
        row = conn.execute(
            "SELECT percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY recorded_at)"
            " FROM billing_usage_ledger WHERE tenant_id = %s"
            " AND occurred_at >= %s AND occurred_at < %s",
            (fractions, TENANT, start, end),
        ).fetchone()
        if row is None or row[0] is None:
            # A month's first hours: the seed has sent nothing into it yet,
            # so the instants spread over the recording of all its usage.
            progress("no usage in the current period yet: instants over all of it")
            row = conn.execute(
                "SELECT percentile_disc(%s::float8[]) WITHIN GROUP"
                " (ORDER BY recorded_at) FROM billing_usage_ledger"
                " WHERE tenant_id = %s",
                (fractions, TENANT),
            ).fetchone()
    assert row is not None, "no usage recorded"
    assert row[0] is not None, "no usage recorded"
    return list(zip(fractions, row[0], strict=True))


# --- the audit log ----------------------------------------------------------------


class AuditEvent(msgspec.Struct):
    id: int
    type: str
    request_id: str


events_decoder = msgspec.json.Decoder(list[AuditEvent])


class Verdict(msgspec.Struct):
    verified: bool
    recorded_sha256: str
    replayed_sha256: str


replay_decoder = msgspec.json.Decoder(Verdict)


class AuditLog:
    """Finds audit event ids by request id, advancing the audit log read model
    in-process (no worker runs) until it has them."""

    def __init__(self, bench: Bench, port: int, bearer: str) -> None:
        self.write_side = bootstrap(bench.settings)
        self.port, self.bearer = port, bearer
        self.after = dict.fromkeys(VIEW_TYPES.values(), 0)
        self.by_request: dict[str, AuditEvent] = {}

    def close(self) -> None:
        self.write_side.close()

    def ids(self, request_ids: Sequence[str], timeout: float = 120) -> list[int]:
        deadline = time.monotonic() + timeout
        while missing := [r for r in request_ids if r not in self.by_request]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(missing)} views not in the audit log")
            self.write_side.projector.advance(AUDIT_LOG)
            self._read_new()
            if missing == [r for r in request_ids if r not in self.by_request]:
                time.sleep(0.05)
        return [self.by_request[r].id for r in request_ids]

    def _read_new(self) -> None:
        for kind in VIEW_TYPES.values():
            self._read(kind)

    def _read(self, kind: str) -> None:
        while True:
            after = self.after[kind]
            path = f"/api/audit/events?type={kind}&limit=1000&after={after}"
            page = events_decoder.decode(
                ok(fetch(self.port, get_request(path, self.bearer)), path).body
            )
            for event in page:
                self.by_request[event.request_id] = event
            if page:
                self.after[kind] = page[-1].id
            if len(page) < 1000:
                return


# --- measurements -----------------------------------------------------------------


@dataclass
class Results:
    live: dict[str, list[float]] = field(default_factory=dict)
    as_of: dict[str, list[float]] = field(default_factory=dict)
    as_of_rows: list[tuple[float, datetime, int, int]] = field(default_factory=list)
    as_of_series: dict[tuple[str, float, datetime], list[float]] = field(
        default_factory=dict
    )
    entries_after: dict[datetime, int] = field(default_factory=dict)
    replay: dict[str, list[float]] = field(default_factory=dict)
    verified: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    verify_line: str = ""
    verify_status: int = 0
    verify_seconds: float = 0.0
    verify_views: dict[str, int] = field(default_factory=dict)
    verify_command: str = ""


def measure_live(args: argparse.Namespace, port: int, admin: str, out: Results) -> None:
    """The live reads, uncached: the references."""
    for kind, path in LIVE.items():
        request = get_request(path, admin)
        ok(fetch(port, request), path)
        one_client(port, request, 3)  # warm up
        load = one_client(port, request, args.requests)
        if load.errors:
            raise RuntimeError(f"{path}: {load.errors} errors")
        out.live[kind] = load.latencies


def measure_as_of(
    args: argparse.Namespace,
    port: int,
    auditor: str,
    instants: list[tuple[float, datetime]],
    out: Results,
) -> None:
    """As-of usage at each instant, whole tenant and one workspace."""
    each = max(2, args.requests // len(instants))
    for scope, workspace in (("whole tenant", None), ("one workspace", WORKSPACE)):
        out.as_of[scope] = []
        for fraction, instant in instants:
            request = get_request(as_of_path(instant, workspace), auditor)
            reply = ok(fetch(port, request), "as-of usage")  # also a warm-up
            seconds, _ = replies(port, [request] * each)
            out.as_of[scope] += seconds
            if workspace is None:
                body = msgspec.json.decode(reply.body)
                count = sum(int(r["source_event_count"]) for r in body["rows"])
                out.as_of_rows.append((fraction, instant, len(body["rows"]), count))


def measure_as_of_series(  # noqa: PLR0913 - the run's context
    args: argparse.Namespace,
    bench: Bench,
    port: int,
    auditor: str,
    instants: list[tuple[float, datetime]],
    out: Results,
) -> None:
    """The forecast and the flags as of each instant, --heavy times each (the
    later the instant, the fewer entries came after it: from the read
    model's own days less those, else from every ledger entry)."""
    with psycopg.connect(bench.settings.conninfo()) as conn:
        for _, instant in instants:
            row = conn.execute(
                "SELECT count(*) FROM billing_usage_ledger WHERE recorded_at > %s",
                (instant,),
            ).fetchone()
            assert row is not None
            out.entries_after[instant] = int(row[0])
    for kind, path in AS_OF_SERIES.items():
        for fraction, instant in instants:
            at = quote(instant.isoformat())
            request = get_request(path.format(at=at), auditor)
            seconds, answers = replies(port, [request] * args.heavy)
            for a in answers:
                ok(a, f"as-of {kind}")
            out.as_of_series[(kind, fraction, instant)] = seconds


def measure_replay(
    args: argparse.Namespace,
    port: int,
    tokens: dict[str, str],
    log: AuditLog,
    out: Results,
) -> None:
    """One live view of each kind, then its replay, `--requests` times (the
    forecast and anomalies, derived again from the histories, fewer)."""
    kinds = list(LIVE)
    requests = [get_request(LIVE[k], tokens["admin"]) for k in kinds]
    _, views = replies(port, requests)
    request_ids = [ok(v, "view").headers[b"x-request-id"].decode() for v in views]
    ids = log.ids(request_ids)
    for kind, audit_id, view in zip(kinds, ids, views, strict=True):
        request = get_request(f"/api/audit/views/{audit_id}/replay", tokens["auditor"])
        usage = kind.startswith("usage")
        if usage:
            ok(fetch(port, request), f"replay of {kind}")  # warm up
        count = args.requests if usage else args.heavy
        seconds, answers = replies(port, [request] * count)
        out.replay[kind] = seconds
        verdicts = [replay_decoder.decode(ok(a, "replay").body) for a in answers]
        sent = hashlib.sha256(view.body).hexdigest()
        out.verified[kind] = (
            sum(v.verified for v in verdicts),
            sum(v.replayed_sha256 == sent == v.recorded_sha256 for v in verdicts),
            len(verdicts),
        )


# Of every ten views verified: eight of usage (live and as of), a forecast and
# the anomalies; "{w}" is a workspace, "{at}" an instant, in turn.
VERIFY_MIX = (
    ("usage, whole tenant", USAGE),
    ("usage, one workspace", f"{USAGE}&workspace_id={{w}}"),
    ("as-of usage, whole tenant", "/api/audit/usage?as_of={at}&period=current"),
    (
        "as-of usage, one workspace",
        "/api/audit/usage?as_of={at}&period=current&workspace_id={w}",
    ),
    ("usage, one workspace", f"{USAGE}&workspace_id={{w}}"),
    ("usage, whole tenant", USAGE),
    ("usage, one workspace", f"{USAGE}&workspace_id={{w}}"),
    (
        "as-of usage, one workspace",
        "/api/audit/usage?as_of={at}&period=current&workspace_id={w}",
    ),
    ("forecast", LIVE["forecast, whole tenant"]),
    ("anomalies", LIVE["anomalies, whole tenant"]),
)


def verify_views(
    tokens: dict[str, str], instants: list[tuple[float, datetime]], count: int
) -> tuple[list[bytes], dict[str, int]]:
    """`count` views of VERIFY_MIX's kinds, and how many of each."""
    requests, made = [], Counter[str]()
    for i in range(count):
        kind, path = VERIFY_MIX[i % len(VERIFY_MIX)]
        at = quote(instants[i % len(instants)][1].isoformat())
        bearer = tokens["auditor" if path.startswith("/api/audit") else "admin"]
        requests.append(get_request(path.format(w=f"ws_{i % 20:02d}", at=at), bearer))
        made[kind] += 1
    return requests, {kind: made[kind] for kind, _ in VERIFY_MIX if made[kind]}


def measure_verify(  # noqa: PLR0913 - what the views and the CLI need
    bench: Bench,
    port: int,
    tokens: dict[str, str],
    instants: list[tuple[float, datetime]],
    log: AuditLog,
    args: argparse.Namespace,
    out: Results,
) -> None:
    """`billing audit verify` over --views views made just before."""
    # --since has whole seconds here: the next one, so nothing earlier counts
    since = (datetime.now(UTC) + timedelta(seconds=1)).replace(microsecond=0)
    time.sleep((since - datetime.now(UTC)).total_seconds() + 0.01)
    requests, out.verify_views = verify_views(tokens, instants, args.views)
    _, views = replies(port, requests)
    log.ids([ok(v, "view").headers[b"x-request-id"].decode() for v in views])
    billing = Path(sys.executable).with_name("billing")
    command = [str(billing), "audit", "verify", "--tenant", TENANT]
    command += ["--since", since.isoformat()]
    out.verify_command = " ".join(command[1:])
    for attempt in range(5):
        started = time.perf_counter()
        result = subprocess.run(
            command, env=bench.env, capture_output=True, text=True, check=False
        )
        out.verify_seconds = time.perf_counter() - started
        if "too many clients" not in result.stderr:
            break
        progress(f"PostgreSQL has too many clients (another run?): retry {attempt + 1}")
        time.sleep(15)
    out.verify_status = result.returncode
    lines = result.stdout.strip().splitlines()
    out.verify_line = lines[-1] if lines else result.stderr.strip()[-500:]
    if result.returncode:
        print(result.stdout[-4000:], result.stderr[-4000:], file=sys.stderr)


# --- printing ---------------------------------------------------------------------


def print_as_of(report: Report, out: Results) -> None:
    for fraction, instant, rows, events in out.as_of_rows:
        report.note(
            f"as of {instant:%Y-%m-%d %H:%M:%S.%f}"[:-3]
            + f" UTC ({fraction:.0%} of the period's entries recorded):"
            f" {rows:,} rows, {events:,} events"
        )
    for scope, target in AS_OF_TARGETS.items():
        seconds = out.as_of[scope]
        report.figure(f"as-of usage, {scope}, 1 client", latency_text(seconds), target)
        live = out.live[f"usage, {scope}"]
        report.reference(f"live usage, {scope}, uncached", latency_text(live))
        for p in (50, 95):
            ratio = ratio_text(percentile(seconds, p), percentile(live, p))
            report.ratio(f"as-of / live, {scope}, p{p}", ratio)


def print_as_of_series(report: Report, out: Results) -> None:
    for (kind, fraction, instant), seconds in out.as_of_series.items():
        after = out.entries_after[instant]
        report.figure(
            f"as-of {kind}, whole tenant, at {fraction:.0%}"
            f" ({after:,} ledger entries after)",
            latency_text(seconds),
        )


def print_replay(report: Report, out: Results) -> None:
    for kind, seconds in out.replay.items():
        live = out.live[kind]
        bound = 2 * percentile(live, 95) + 0.050
        met = "met" if percentile(seconds, 95) <= bound else "NOT met"
        report.figure(
            f"replay, {kind}",
            latency_text(seconds),
            f"p95 <= 2 x live p95 + 50 ms = {bound * 1000:.0f} ms: {met}",
        )
        report.reference(f"live {kind}, uncached", latency_text(live))
        for p in (50, 95):
            ratio = ratio_text(percentile(seconds, p), percentile(live, p))
            report.ratio(f"replay / live, {kind}, p{p}", ratio)
        verified, same, total = out.verified[kind]
        report.figure(f"replays verified, {kind}", f"{verified} of {total}")
        report.figure(f"replayed = the bytes received, {kind}", f"{same} of {total}")


def print_verify(report: Report, out: Results) -> None:
    mix = ", ".join(f"{n} {kind}" for kind, n in out.verify_views.items())
    report.note(f"verify: {sum(out.verify_views.values())} views made ({mix})")
    report.note(f"verify: billing {out.verify_command}")
    report.figure("billing audit verify, last line", out.verify_line)
    report.figure(
        "billing audit verify, exit status and wall time",
        f"{out.verify_status}, {out.verify_seconds:.1f} s (with the CLI's start)",
    )


def main() -> None:
    args = arguments()
    report = Report("replay: as-of usage, view replays, billing audit verify")
    with private_environment("replay", keep=args.keep) as bench:
        # The anomaly read model re-judges every series a batch touches, once
        # per batch: in batches of 5,000 (the default) 900,000 events take
        # about half an hour to project, in batches of 100,000 a few minutes.
        batch = bench.settings.projection_batch_size
        bench.settings = replace(bench.settings, projection_batch_size=SEED_BATCH)
        progress("seeding")
        events, seeding, projecting, statistics = seed(bench, args.per_day)
        progress(f"rebuilding {USAGE_DAILY} in batches of {batch:,}")
        report.setup(rebuild_usage(bench, batch))
        start, _ = current_period()
        report.setup(
            f"{events:,} events: {TENANT} {args.per_day}/workspace/area/day over"
            f" 90 days x 20 workspaces x 10 areas, and {len(OTHERS)} smaller tenants;"
            f" seeded in {seeding:.0f} s, projected in {projecting:.0f} s;"
            f" {daily_rows(bench):,} daily rows in {TENANT}'s current period"
            f" (from {start:%Y-%m-%d}, day {datetime.now(UTC).day});"
            f" {statistics}; uncached serve --workers {args.workers}"
        )
        tokens = {
            role: token(bench.settings, TENANT, role) for role in ("admin", "auditor")
        }
        instants = recording_instants(bench, args.instants)
        out = Results()
        with uncached_server(bench, workers=args.workers) as server:
            run(args, bench, server, tokens, instants, out)
        print_as_of(report, out)
        print_replay(report, out)
        print_as_of_series(report, out)
        print_verify(report, out)


def rebuild_usage(bench: Bench, batch: int) -> str:
    """The usage read model rebuilt in the batches a worker uses (its
    checkpoints, which as-of reads start from, are made at batch ends): how
    long it took and what its checkpoints hold."""
    ws = bootstrap(replace(bench.settings, projection_batch_size=batch))
    try:
        started = time.perf_counter()
        ws.projector.rebuild(USAGE_DAILY)
        seconds = time.perf_counter() - started
    finally:
        ws.close()
    analyze(bench.settings)  # the rebuilt tables too (autovacuum is off here)
    with psycopg.connect(bench.settings.conninfo()) as conn:
        marks = conn.execute(
            "SELECT count(*), coalesce(sum(rows), 0)"
            " FROM billing_usage_checkpoint_marks WHERE tenant_id = %s",
            (TENANT,),
        ).fetchone()
        entries = conn.execute(
            "SELECT count(*) FROM billing_usage_ledger WHERE tenant_id = %s",
            (TENANT,),
        ).fetchone()
    assert marks is not None
    assert entries is not None
    return (
        f"{USAGE_DAILY} rebuilt in batches of {batch:,} in {seconds:.0f} s:"
        f" {marks[0]:,} checkpoints of {TENANT} holding {marks[1]:,} rows"
        f" (its ledger: {entries[0]:,} entries)"
    )


def run(  # noqa: PLR0913 - the run's whole context
    args: argparse.Namespace,
    bench: Bench,
    server: Server,
    tokens: dict[str, str],
    instants: list[tuple[float, datetime]],
    out: Results,
) -> None:
    port = server.port
    progress("live reads, uncached (the references)")
    measure_live(args, port, tokens["admin"], out)
    progress("as-of usage")
    measure_as_of(args, port, tokens["auditor"], instants, out)
    log = AuditLog(bench, port, tokens["auditor"])
    try:
        progress("replays")
        measure_replay(args, port, tokens, log, out)
        progress("as-of forecast and anomalies")
        measure_as_of_series(args, bench, port, tokens["auditor"], instants, out)
        progress(f"billing audit verify over {args.views} views")
        measure_verify(bench, port, tokens, instants, log, args, out)
    finally:
        log.close()


if __name__ == "__main__":
    main()

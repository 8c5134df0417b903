"""Anomaly detection through the real path: accuracy, delay, latency under load, cost.

    .venv/bin/python bench/anomaly_eval.py [--series 12] [--seed 23] [--weeks 13]
        [--late 0.05] [--probes 60] [--load-seconds 60] [--rate 5000]
        [--only backtest|latency|cost] [--quick] [--keep]

Backtest: seeded daily series (a weekly rhythm, a trend of -15% to +30% a
month, lognormal noise of cv 0.05-0.25), each one workspace of a tenant (8
series a tenant), with injected anomalies of known start: spikes (one day,
3x-6x), drops (one day to 1/3 or less, a third of them to zero), level shifts
(2x or 0.5x from a day on), slow ramps (+5% or -5% a day for 2 weeks, then
held), and twice as many series without any. --series is the number of
series of each anomalous kind (spike and drop series hold 3 each). Every day
is 4 events (03, 09, 15 and 21 h UTC; an anomaly scales all four) delivered
every 6 hours through the Ingestor of build_services (backfill, the clock at
the delivery); a share --late of events arrives 3 to 48 hours after it
happened instead. A tick is recorded at each midnight. 8 weeks of history
come first (sent, not judged); over the next --weeks weeks, billing_anomalies
is advanced in-process after every delivery and its flags are read (SQL), so
each flag's first appearance is known to 6 hours.

A flag matches an injected anomaly of its series if its first day is within
the anomaly's days (one day for a spike or a drop, every day from the start
for a shift or a ramp) or up to 2 days after its start, in the same direction.
Per kind: precision (flags on that kind's series that match), recall, F1;
false flags per 100 series-months on the series without anomalies; delay from
the anomaly's first midnight to the first delivery at which a matching flag
exists. Our flags are every flag ever served open (one opened and later
withdrawn counts: a notice went out). Two baselines on the same data, each
day judged at its end on what had arrived by then: the trailing 28-day mean
+- 2 standard deviations, and a static rule (above 2x or below 0.5x the
trailing 28-day mean); each day outside is a flag. Checks (counts): the read
model's daily totals equal what was sent; a rebuild gives the same flags; no
flag is first served as cleared; no two open flags cover the same days; no
spike or drop is served with a score under the strong threshold.

Latency: `billing serve` and `billing worker`, tenants of 25 series with 9
weeks of usage (enough that the current period judges them). A probe POSTs
one spike for a series not probed yet and polls GET /api/billing/anomalies
?min_positions=metering:<its position> until the flag is served. Reference:
probes one by one with no other load. Then one client sends --rate events/s
of ordinary usage of all the series while --probes probes start evenly over
--load-seconds; billing_anomalies' lag behind the flow's batches is measured
from its NOTIFY, with billing_usage_daily's as the reference.
Cost: the demo data set (application/seeding.py, hourly ticks), rebuilding
billing_usage_daily (the reference) and billing_anomalies in-process;
advances after small sends and after a tick.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import statistics
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from decimal import Decimal
from itertools import pairwise
from typing import Any

import httpx
import msgspec
import psycopg
from common import (
    REPO,
    Bench,
    Report,
    analyze,
    base_arguments,
    latency_text,
    percentile,
    private_environment,
    progress,
    ratio_text,
    running_server,
    running_worker,
    token,
)
from forecast_backtest import demo_tenant, live_events, load_demo
from forecast_method import noise, scale, week_shape
from listener import ProgressListener
from projection import lags
from workload import summary_decoder

from application.bootstrap import Services, bootstrap, build_services
from application.clock import SetClock, utc_now
from application.metering.ingestor import Ingestor
from application.seeding import PRODUCT_AREAS, SeedPlan
from projections.anomalies.detect import STRONG

NAME = "billing_anomalies"
USAGE = "billing_usage_daily"
FIRST = date(2025, 1, 6)  # a Monday
WARMUP = timedelta(weeks=8)  # the read model's whole baseline, before judging
AREA, UNIT = "compute", "vcpu_hour"
SERIES_PER_TENANT = 8
# Each day's usage as four events: (hour UTC, share of the day).
PARTS = ((3, 0.22), (9, 0.28), (15, 0.28), (21, 0.22))
DELIVERY = timedelta(hours=6)  # events arrive at 00, 06, 12, 18 h
LATE = (timedelta(hours=3), timedelta(hours=48))  # a late event's delay
MATCH_AFTER = timedelta(days=2)
KINDS = ("spike", "drop", "level_shift", "ramp")
SHIFT_FACTORS = (2.0, 0.5)
RAMP_STEP, RAMP_DAYS = 0.05, 14
TRAILING = 28
METHODS = ("ours", "mean +- 2 sd", "static 2x / 0.5x")
MONTH = 365.25 / 12
LIVE_SENDS = 30
LIVE_TICKS = 10
# Days sent after the judged weeks (not judged), so the last judged day is
# followed by usage as usual rather than by nothing.
TAIL = 3


def arguments() -> argparse.Namespace:
    parser = base_arguments(__doc__.split("\n", 1)[0])
    parser.add_argument("--series", type=int, default=12, help="per anomalous kind")
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--weeks", type=int, default=13, help="judged, after 8")
    parser.add_argument("--late", type=float, default=0.05, help="share of events")
    parser.add_argument("--probes", type=int, default=60, help="under load")
    parser.add_argument("--rate", type=int, default=5000, help="events/s")
    parser.add_argument("--load-seconds", type=float, default=60, help="probed")
    parser.add_argument(
        "--only", choices=("backtest", "latency", "cost"), help="one part alone"
    )
    args = parser.parse_args()
    if args.quick:
        args.series, args.weeks, args.probes, args.load_seconds = 2, 4, 8, 4
    # Days of history before today in the latency part: the read model judges a
    # series in a period only if its usage began 21 days before the period did.
    today = utc_now().date()
    args.history = max(35 if args.quick else 63, today.day - 1 + 28)
    if args.weeks < 4:
        parser.error("--weeks: at least 4")
    args.plan = (
        SeedPlan(tenants=2, workspaces=2, product_areas=2, days=40, events_per_day=4)
        if args.quick
        else SeedPlan()
    )
    return args


def midnight(day: date) -> datetime:
    return datetime.combine(day, day_time(), UTC)


# --- the series and what they send -------------------------------------------------


@dataclass(frozen=True)
class Injected:
    """One anomaly put into a series."""

    kind: str  # spike | drop | level_shift | ramp
    direction: str  # up | down
    start: date
    last: date  # its last day: the start for a spike or drop, else the series' end
    factor: float  # for a ramp, where it ends up

    def matches(self, first_day: date, direction: str) -> bool:
        last = max(self.last, self.start + MATCH_AFTER)
        return direction == self.direction and self.start <= first_day <= last


@dataclass(frozen=True)
class Part:
    """One event of a series: when it happened, how much, when it arrived."""

    day: date
    at: datetime
    quantity: Decimal
    arrives: datetime


@dataclass
class Series:
    """One tenant's workspace: a generated daily series and its events."""

    number: int
    tenant_id: str
    workspace_id: str
    kind: str  # one of KINDS, or "none"
    cv: float
    injected: list[Injected]
    days: list[date]
    parts: list[Part] = field(default_factory=list)

    def sent(self, until: datetime) -> dict[date, Decimal]:
        """Daily totals of what had arrived by `until`."""
        totals: dict[date, Decimal] = defaultdict(Decimal)
        for p in self.parts:
            if p.arrives <= until:
                totals[p.day] += p.quantity
        return dict(totals)


def spread_days(rng: random.Random, first: int, count: int, n: int) -> list[int]:
    """`n` day offsets in [first, first+count), one in each equal stretch."""
    size = count // n
    return [first + k * size + rng.randrange(2, size - 3) for k in range(n)]


def inject(
    rng: random.Random, kind: str, i: int, days: list[date], judged: int
) -> list[Injected]:
    """Where and how much: anomalies only inside the judged weeks."""
    first = len(days) - TAIL - judged
    last = days[-1 - TAIL]
    if kind == "spike":
        return [
            Injected("spike", "up", days[d], days[d], rng.uniform(3, 6))
            for d in spread_days(rng, first, judged, 3)
        ]
    if kind == "drop":
        return [
            Injected(
                "drop",
                "down",
                days[d],
                days[d],
                0.0 if (i + k) % 3 == 0 else rng.uniform(0.05, 1 / 3),
            )
            for k, d in enumerate(spread_days(rng, first, judged, 3))
        ]
    if kind in ("level_shift", "ramp"):
        start = days[rng.randrange(first + 7, max(first + 8, first + judged - 21))]
        up = i % 2 == 0
        if kind == "level_shift":
            factor = SHIFT_FACTORS[0] if up else SHIFT_FACTORS[1]
        else:
            factor = (1 + (RAMP_STEP if up else -RAMP_STEP)) ** RAMP_DAYS
        return [Injected(kind, "up" if up else "down", start, last, factor)]
    return []


def multiplier(injected: list[Injected], day: date) -> float:
    m = 1.0
    for a in injected:
        once = a.kind in ("spike", "drop") and day == a.start
        if once or (a.kind == "level_shift" and day >= a.start):
            m *= a.factor
        elif a.kind == "ramp" and day >= a.start:
            step = RAMP_STEP if a.direction == "up" else -RAMP_STEP
            m *= (1 + step) ** min((day - a.start).days + 1, RAMP_DAYS)
    return m


def delivery_after(instant: datetime) -> datetime:
    """The first delivery at or after `instant`."""
    step = DELIVERY.total_seconds()
    return datetime.fromtimestamp(math.ceil(instant.timestamp() / step) * step, UTC)


def make_series(args: argparse.Namespace) -> list[Series]:
    kinds = [k for k in KINDS for _ in range(args.series)]
    kinds += ["none"] * (2 * args.series)
    judged = 7 * args.weeks
    days = [FIRST + timedelta(days=d) for d in range(WARMUP.days + judged + TAIL)]
    tenants = math.ceil(len(kinds) / SERIES_PER_TENANT)
    out, seen = [], Counter[str]()
    for number, kind in enumerate(kinds):
        i = seen[kind]
        seen[kind] += 1
        rng = random.Random(
            args.seed * 1_000_003 + (*KINDS, "none").index(kind) * 1009 + i
        )
        late = random.Random(args.seed * 7_000_001 + number)  # arrivals only
        base, shape = scale(rng), week_shape(rng, (0.2, 0.9))
        cv, growth = rng.uniform(0.05, 0.25), (1 + rng.uniform(-0.15, 0.3)) ** (1 / 30)
        injected = inject(rng, kind, i, days, judged)
        s = Series(
            number,
            f"t_anom_{number % tenants:02d}",
            f"ws_{number // tenants:02d}",
            kind,
            cv,
            injected,
            days,
        )
        for d, day in enumerate(days):
            total = base * growth**d * shape[day.weekday()] * noise(rng, cv)
            total *= multiplier(injected, day)
            for hour, share in PARTS:
                quantity = Decimal(f"{total * share:.3f}")
                at = midnight(day) + timedelta(hours=hour)
                delay = timedelta(minutes=1)
                if late.random() < args.late:
                    delay = LATE[0] + (LATE[1] - LATE[0]) * late.random()
                if quantity > 0:
                    s.parts.append(Part(day, at, quantity, delivery_after(at + delay)))
        out.append(s)
    return out


def deliveries(series: list[Series]) -> dict[datetime, dict[str, list[bytes]]]:
    """Per delivery instant, per tenant, the body of what arrives then."""
    found: dict[datetime, dict[str, list[dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for s in series:
        for p in s.parts:
            found[p.arrives][s.tenant_id].append(
                {
                    "id": f"{s.workspace_id}-{p.at:%Y%m%dT%H}",
                    "workspace_id": s.workspace_id,
                    "product_area": AREA,
                    "unit": UNIT,
                    "quantity": format(p.quantity, "f"),
                    "timestamp": p.at.isoformat(),
                }
            )
    encode = msgspec.json.Encoder().encode
    return {
        at: {tenant: [encode(events)] for tenant, events in sorted(by.items())}
        for at, by in sorted(found.items())
    }


# --- the backtest through the real path -------------------------------------------


@dataclass(frozen=True)
class Flag:
    """A flag of one method: its series, first day, direction, when first seen."""

    series: int
    first_day: date
    direction: str
    seen: datetime
    kind: str = ""  # ours: as last served (a spike may grow into a level shift)
    fate: str = ""  # ours: open | cleared | withdrawn, at the end


@dataclass
class Backtest:
    series: list[Series]
    judged_from: date
    judged_to: date  # the last day judged
    events: int = 0
    ingest_seconds: float = 0.0
    advances: list[float] = field(default_factory=list)
    flags: dict[str, list[Flag]] = field(default_factory=dict)
    never_open: int = 0  # flags first served as cleared
    overlapping: int = 0  # open flags that overlapped another of the same way
    weak: int = 0  # spikes or drops served open with |score| under STRONG
    same_days: tuple[int, int] = (0, 0)  # series-days equal to what was sent, of
    final: list[tuple[Any, ...]] = field(default_factory=list)  # flag rows
    rebuilt: tuple[int, int] = (0, 0)  # flag rows equal after a rebuild, of
    rebuild: tuple[int, float] = (0, 0.0)
    usage_rebuild: tuple[int, float] = (0, 0.0)

    def is_judged(self, day: date) -> bool:
        return self.judged_from <= day <= self.judged_to


FLAGS_SQL = (
    "SELECT tenant_id, workspace_id, id, usage_date, last_date, direction, kind,"
    " status, score FROM billing_anomalies_flags"
)
FINAL_SQL = (
    "SELECT tenant_id, period_start, id, workspace_id, usage_date, last_date, days,"
    " kind, direction, observed, expected, low, high, score, status, reason,"
    " opened_position FROM billing_anomalies_flags ORDER BY 1, 2, 3"
)
DAYS_SQL = (
    "SELECT tenant_id, workspace_id, usage_date, quantity FROM billing_anomalies_days"
)


class Seen:
    """Every flag the read model served, by (tenant, id): first seen, as last."""

    def __init__(self, by_key: dict[tuple[str, str], Series]) -> None:
        self.by_key = by_key
        self.first: dict[tuple[str, str], tuple[datetime, Series, date, str]] = {}
        self.last: dict[tuple[str, str], tuple[str, str]] = {}  # kind, status
        self.overlapping: set[tuple[str, str]] = set()
        self.weak: set[tuple[str, str]] = set()  # a spike or drop below STRONG

    def read(self, conn: psycopg.Connection[Any], at: datetime) -> None:
        rows = conn.execute(FLAGS_SQL).fetchall()
        conn.commit()
        present = set()
        spans = defaultdict(list)
        for row in rows:
            tenant, workspace, flag_id, first, last, direction, kind, status = row[:8]
            key = (tenant, flag_id)
            present.add(key)
            strong = abs(row[8]) >= STRONG
            if status != "cleared" and kind in ("spike", "drop") and not strong:
                self.weak.add(key)
            if status != "cleared":
                if key not in self.first:
                    series = self.by_key[(tenant, workspace)]
                    self.first[key] = (at, series, first, direction)
                spans[(tenant, workspace, direction)].append((first, last, key))
            self.last[key] = (kind, status)
        for key in self.last.keys() - present:
            self.last[key] = (self.last[key][0], "gone")
        for found in spans.values():
            found.sort()
            for (_, last, key), (first, _, other) in pairwise(found):
                if first <= last:
                    self.overlapping |= {key, other}

    def flags(self) -> list[Flag]:
        out = []
        for key, (at, series, first_day, direction) in self.first.items():
            kind, status = self.last[key]
            fate = {"cleared": "cleared", "gone": "withdrawn"}.get(status, "open")
            out.append(Flag(series.number, first_day, direction, at, kind, fate))
        return out


def send(services: Services, by_tenant: dict[str, list[bytes]]) -> int:
    accepted = 0
    for tenant, bodies in by_tenant.items():
        for body in bodies:
            sent = services.ingestor.ingest(tenant, body, backfill=True)
            assert sent.rejected == sent.conflicts == 0, sent.results
            accepted += sent.accepted
    return accepted


def run_backtest(args: argparse.Namespace, bench: Bench) -> Backtest:
    series = make_series(args)
    judged_from = FIRST + WARMUP
    out = Backtest(series, judged_from, series[0].days[-1 - TAIL])
    start = midnight(judged_from)
    end = midnight(out.judged_to + timedelta(days=1)) + LATE[1] + DELIVERY
    seen = Seen({(s.tenant_id, s.workspace_id): s for s in series})
    ws = bootstrap(bench.settings)
    clock = SetClock(midnight(FIRST))
    services = build_services(bench.settings, write_side=ws, clock=clock)
    try:
        with psycopg.connect(bench.settings.conninfo()) as conn:
            for at, by_tenant in deliveries(series).items():
                if at > end:
                    break
                clock.now = at
                began = time.perf_counter()
                out.events += send(services, by_tenant)
                out.ingest_seconds += time.perf_counter() - began
                if at.hour == 0:
                    ws.clock.record_tick(at)
                if at < start:
                    continue  # the history before the judged weeks: sent, not read
                began = time.perf_counter()
                ws.projector.advance(NAME)
                out.advances.append(time.perf_counter() - began)
                seen.read(conn, at)
                if at.hour == 0 and at.weekday() == 0:
                    progress(f"{at:%Y-%m-%d}: {len(seen.first)} flags so far")
            out.flags = {"ours": seen.flags()}
            out.never_open = len(seen.last.keys() - seen.first.keys())
            out.overlapping = len(seen.overlapping)
            out.weak = len(seen.weak)
            out.same_days = same_days(conn, series, end)
            out.final = conn.execute(FINAL_SQL).fetchall()
            conn.commit()
            progress("rebuilding billing_anomalies, then billing_usage_daily")
            out.rebuild = timed(lambda: ws.projector.rebuild(NAME))
            ws.projector.advance(USAGE)
            out.usage_rebuild = timed(lambda: ws.projector.rebuild(USAGE))
            again = conn.execute(FINAL_SQL).fetchall()
            conn.commit()
            both = set(again) | set(out.final)
            out.rebuilt = (len(set(again) & set(out.final)), len(both))
    finally:
        services.close()  # and the write side
    out.flags |= baselines(out)
    return out


def timed(action: Callable[[], int]) -> tuple[int, float]:
    began = time.perf_counter()
    result = action()
    return result, time.perf_counter() - began


def same_days(
    conn: psycopg.Connection[Any], series: list[Series], end: datetime
) -> tuple[int, int]:
    """Series-days whose total in the read model is what was sent, of all sent."""
    stored = {(t, w, d): q for t, w, d, q in conn.execute(DAYS_SQL).fetchall()}
    conn.commit()
    same = total = 0
    for s in series:
        for day, quantity in s.sent(end).items():
            total += 1
            same += stored.get((s.tenant_id, s.workspace_id, day)) == quantity
    return same, total


# --- the baselines -----------------------------------------------------------------


def known_at_day_end(s: Series, day: date) -> list[float]:
    """The series' daily totals up to `day`, as they had arrived by its end."""
    end = midnight(day + timedelta(days=1))
    first = day - timedelta(days=TRAILING)
    values = [0.0] * (TRAILING + 1)
    for p in s.parts:
        if first <= p.day <= day and p.arrives <= end:
            values[(p.day - first).days] += float(p.quantity)
    return values


def baselines(out: Backtest) -> dict[str, list[Flag]]:
    """Each judged day at its end, on what had arrived: outside the band is a flag."""
    found: dict[str, list[Flag]] = {METHODS[1]: [], METHODS[2]: []}
    for s in out.series:
        for day in s.days:
            if not out.is_judged(day):
                continue
            *window, today = known_at_day_end(s, day)
            mean, sd = statistics.fmean(window), statistics.pstdev(window)
            seen = midnight(day + timedelta(days=1))
            for method, up, down in (
                (METHODS[1], today > mean + 2 * sd, today < mean - 2 * sd),
                (METHODS[2], today > 2 * mean, today < 0.5 * mean),
            ):
                if up or down:
                    direction = "up" if up else "down"
                    found[method].append(Flag(s.number, day, direction, seen))
    return found


# --- the backtest's figures --------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """One method on one kind's series."""

    flags: int
    matched: int  # flags matching an injected anomaly
    anomalies: int
    detected: int
    delays: list[float]  # hours, per detected anomaly

    @property
    def precision(self) -> float:
        return self.matched / self.flags if self.flags else float("nan")

    @property
    def recall(self) -> float:
        return self.detected / self.anomalies if self.anomalies else float("nan")

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        if not self.flags or not p + r:
            return 0.0
        return 2 * p * r / (p + r)


def score(series: list[Series], flags: list[Flag], kind: str) -> Score:
    chosen = {s.number: s for s in series if s.kind == kind}
    mine = [f for f in flags if f.series in chosen]
    matched = 0
    first: dict[tuple[int, int], datetime] = {}
    for f in mine:
        hits = [
            k
            for k, a in enumerate(chosen[f.series].injected)
            if a.matches(f.first_day, f.direction)
        ]
        matched += bool(hits)
        for k in hits:
            key = (f.series, k)
            first[key] = min(first.get(key, f.seen), f.seen)
    anomalies = sum(len(s.injected) for s in chosen.values())
    delays = [
        (at - midnight(chosen[n].injected[k].start)).total_seconds() / 3600
        for (n, k), at in first.items()
    ]
    return Score(len(mine), matched, anomalies, len(first), delays)


def per_100_months(flags: int, series: int, days: int) -> float:
    months = series * days / MONTH
    return 100 * flags / months if months else float("nan")


def judged(out: Backtest, flags: list[Flag]) -> list[Flag]:
    return [f for f in flags if out.is_judged(f.first_day)]


def hours_text(hours: Sequence[float]) -> str:
    if not hours:
        return "n/a (none detected)"
    return (
        f"p50 {percentile(hours, 50):.0f} h  p90 {percentile(hours, 90):.0f} h"
        f"  (n={len(hours)})"
    )


def prf_text(s: Score) -> str:
    return (
        f"P {s.precision:.2f} ({s.matched}/{s.flags})  R {s.recall:.2f}"
        f" ({s.detected}/{s.anomalies})  F1 {s.f1:.2f}"
    )


def print_backtest(args: argparse.Namespace, report: Report, out: Backtest) -> None:
    series, start = out.series, out.judged_from
    days = 7 * args.weeks
    tenants = len({s.tenant_id for s in series})
    kinds = ", ".join(f"{k} {n}" for k, n in Counter(s.kind for s in series).items())
    report.setup(
        f"backtest: {len(series)} series ({kinds})"
        f" in {tenants} tenants, seed {args.seed}; 8 weeks of history from {FIRST},"
        f" then {args.weeks} weeks judged from {start}; {out.events:,} events"
        f" ({args.late:.0%} late by 3-48 h) through the Ingestor at"
        f" {out.events / out.ingest_seconds:,.0f} events/s, delivered every 6 h, a"
        " tick each midnight; billing_anomalies advanced after every delivery"
    )
    flags = {m: judged(out, f) for m, f in out.flags.items()}
    scores = {m: {k: score(series, flags[m], k) for k in KINDS} for m in METHODS}
    for kind in KINDS:
        ours = scores["ours"][kind]
        target = "R >= 0.9" if kind in ("spike", "drop") else ""
        report.figure(f"{kind}, ours", prf_text(ours), target)
        for m in METHODS[1:]:
            report.reference(f"{kind}, {m}", prf_text(scores[m][kind]))
        for m in METHODS[1:]:
            report.ratio(
                f"F1 ours / {m}, {kind}",
                ratio_text(ours.f1, scores[m][kind].f1) + "   [target > 1]",
            )
    quiet = [s for s in series if s.kind == "none"]
    for m in METHODS:
        false = [f for f in flags[m] if series[f.series].kind == "none"]
        rate = per_100_months(len(false), len(quiet), days)
        months = len(quiet) * days / MONTH
        text = f"{rate:.1f} ({len(false)} in {months:.0f} series-months)"
        if m == "ours":
            report.figure("false flags per 100 series-months, ours", text, "<= 1")
            # Every flag ever opened counts above (its notice went out); this
            # says how many of them late data or a restatement took back.
            gone = sum(f.fate != "open" for f in false)
            report.note(
                f"of those, opened then withdrawn or cleared: {gone}"
                f" ({per_100_months(gone, len(quiet), days):.1f} per 100);"
                f" still open at the end: {len(false) - gone}"
                f" ({per_100_months(len(false) - gone, len(quiet), days):.1f})"
            )
        else:
            report.reference(f"false flags per 100 series-months, {m}", text)
    for kind in KINDS:
        report.figure(
            f"detection delay from the first midnight, {kind}",
            hours_text(scores["ours"][kind].delays),
        )
    for kind in KINDS:
        parts = []
        for m in METHODS:
            s = scores[m][kind]
            parts.append(f"{m} {s.matched / s.detected if s.detected else 0:.1f}")
        report.note(f"matching flags per detected {kind}: " + ", ".join(parts))
    print_ours(report, out, flags["ours"])


def print_ours(report: Report, out: Backtest, flags: list[Flag]) -> None:
    series = out.series
    for kind in KINDS:
        as_flagged = Counter(
            f.kind
            for f in flags
            if series[f.series].kind == kind
            and any(
                a.matches(f.first_day, f.direction) for a in series[f.series].injected
            )
        )
        report.note(
            f"{kind}: matching flags by their kind at the end: "
            + (", ".join(f"{k} {n}" for k, n in sorted(as_flagged.items())) or "none")
        )
    fates = Counter(f.fate for f in flags)
    report.note(
        "our flags ever served open: "
        + ", ".join(f"{k} {n}" for k, n in sorted(fates.items()))
        + " at the end (withdrawn: no longer served, e.g. late data filled the day)"
    )
    report.figure(
        "flags served as cleared without ever being open", f"{out.never_open}", "0"
    )
    report.figure(
        "open flags overlapping another one's days", f"{out.overlapping}", "0"
    )
    report.figure(
        f"spikes or drops served open with |score| < {STRONG:g}", f"{out.weak}", "0"
    )
    false = [f for f in flags if series[f.series].kind == "none"]
    fates = Counter(f.fate for f in false)
    kinds = Counter(f"{f.kind} {f.direction}" for f in false)
    report.note(
        "our false flags (series without anomalies), at the end: "
        + (", ".join(f"{k} {n}" for k, n in sorted(fates.items())) or "none")
        + "; as flagged: "
        + (", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "none")
    )
    by_cv = defaultdict(list)
    for s in series:
        if s.kind == "none":
            by_cv["cv < 0.15" if s.cv < 0.15 else "cv >= 0.15"].append(s.number)
    parts = []
    for band, numbers in sorted(by_cv.items()):
        n = sum(f.series in numbers for f in flags)
        parts.append(f"{band}: {n} flags on {len(numbers)} series")
    report.note("our false flags by noise: " + "; ".join(parts))
    report.figure("advance after a delivery (in-process)", latency_text(out.advances))
    same, total = out.same_days
    report.figure("daily totals equal what was sent", f"{same:,} of {total:,}")
    same, total = out.rebuilt
    report.figure(
        "flags after a rebuild equal the ones built live", f"{same:,} of {total:,}"
    )
    digest = hashlib.sha256(repr(out.final).encode()).hexdigest()[:12]
    report.note(
        f"final flags: {len(out.final)} rows, digest {digest} (same seed, same digest)"
    )


# --- cost: the demo data set -------------------------------------------------------


@dataclass
class Cost:
    """The demo data set projected: usage alone, and the anomalies."""

    events: int
    ticks: int
    seeding: float
    batch: int = 0
    usage: tuple[int, float] = (0, 0.0)  # rebuild: events processed, seconds
    anomalies: tuple[int, float] = (0, 0.0)
    live_events: int = 0  # per send
    live_usage: list[float] = field(default_factory=list)  # seconds per advance
    live_anomalies: list[float] = field(default_factory=list)
    ticks_timed: list[float] = field(default_factory=list)
    same_as_usage: tuple[int, int] = (0, 0)
    flags: Counter[str] = field(default_factory=Counter)


SAME_DAYS_SQL = """
SELECT count(*), count(*) FILTER (WHERE a.quantity = u.quantity)
FROM billing_usage_daily u LEFT JOIN billing_anomalies_days a
    USING (tenant_id, usage_date, workspace_id, product_area, unit)
WHERE u.quantity <> 0
"""


def measure_cost(args: argparse.Namespace, bench: Bench) -> Cost:
    ws = bootstrap(bench.settings)
    try:
        progress(f"seeding the demo data set ({args.plan.expected_events:,} events)")
        loaded = load_demo(args.plan, ws)
        out = Cost(loaded.events, loaded.ticks, loaded.seeding)
        out.batch = bench.settings.projection_batch_size
        analyze(bench.settings)
        ws.projector.advance_all()
        progress("rebuilding billing_usage_daily, then billing_anomalies")
        out.usage = timed(lambda: ws.projector.rebuild(USAGE))
        out.anomalies = timed(lambda: ws.projector.rebuild(NAME))
        with psycopg.connect(bench.settings.conninfo()) as conn:
            row = conn.execute(SAME_DAYS_SQL).fetchone()
            out.same_as_usage = (row[1], row[0]) if row else (0, 0)
            kinds = conn.execute(
                "SELECT kind || ' ' || status, count(*) FROM billing_anomalies_flags"
                " GROUP BY 1"
            ).fetchall()
            out.flags = Counter(dict(kinds))
        progress("projecting small sends one at a time")
        ingestor = Ingestor(ws.metering, ws.tenants, clock=utc_now, max_events=10_000)
        tenant = demo_tenant(args.plan)
        for k in range(LIVE_SENDS):
            events = live_events(args.plan, k)
            ingestor.ingest(tenant, msgspec.json.encode(events))
            out.live_events = len(events)
            out.live_usage.append(timed(lambda: ws.projector.advance(USAGE))[1])
            out.live_anomalies.append(timed(lambda: ws.projector.advance(NAME))[1])
        for _ in range(LIVE_TICKS):
            ws.clock.record_tick(utc_now())
            out.ticks_timed.append(timed(lambda: ws.projector.advance(NAME))[1])
        return out
    finally:
        ws.close()


def rate_text(events: int, seconds: float, done: int) -> str:
    return (
        f"{events / seconds:,.0f} metered events/s ({done:,} events in {seconds:.1f} s)"
    )


def print_cost(
    args: argparse.Namespace, report: Report, out: Cost, bt: Backtest | None
) -> None:
    plan = args.plan
    report.setup(
        f"cost: the demo data set, {out.events:,} events ({plan.tenants} tenants x"
        f" {plan.workspaces} workspaces x {plan.product_areas} product areas x"
        f" {plan.days} days) and {out.ticks:,} hourly ticks, loaded in"
        f" {out.seeding:.0f} s; projection batch {out.batch:,}"
    )
    (usage_done, usage), (done, anomalies) = out.usage, out.anomalies
    report.reference(
        "rebuild billing_usage_daily (usage alone)",
        rate_text(out.events, usage, usage_done),
    )
    report.figure("rebuild billing_anomalies", rate_text(out.events, anomalies, done))
    report.ratio("anomalies / usage alone, events/s", ratio_text(usage, anomalies))
    both = usage + anomalies
    report.ratio("usage and anomalies / usage alone, events/s", ratio_text(usage, both))
    report.figure(
        f"advance after a send of {out.live_events}, billing_anomalies",
        latency_text(out.live_anomalies),
    )
    report.reference(
        f"advance after a send of {out.live_events}, billing_usage_daily",
        latency_text(out.live_usage),
    )
    report.ratio(
        "anomalies / usage advance after a send, p50",
        ratio_text(percentile(out.live_anomalies, 50), percentile(out.live_usage, 50)),
    )
    report.figure(
        "advance after a tick, billing_anomalies",
        latency_text(out.ticks_timed) + f"; re-projects all {plan.tenants} tenants",
    )
    same, total = out.same_as_usage
    report.figure(
        "anomaly daily totals = billing_usage_daily", f"{same:,} of {total:,} rows"
    )
    report.note(
        "demo data set flags after the rebuild: "
        + (", ".join(f"{k} {n}" for k, n in sorted(out.flags.items())) or "none")
    )
    if bt is None:
        return
    (bt_done, bt_anomalies), (bt_usage_done, bt_usage) = bt.rebuild, bt.usage_rebuild
    report.reference(
        "backtest history: rebuild billing_anomalies",
        rate_text(bt.events, bt_anomalies, bt_done),
    )
    report.reference(
        "backtest history: rebuild billing_usage_daily",
        rate_text(bt.events, bt_usage, bt_usage_done),
    )
    report.ratio(
        "backtest history: anomalies / usage alone", ratio_text(bt_usage, bt_anomalies)
    )


# --- latency under load -------------------------------------------------------------


LIVE_WORKSPACES = 5
LIVE_AREAS = [(area, unit) for area, unit, _ in PRODUCT_AREAS[:5]]
SPIKE = 20  # a probe sends this many usual days at once
FLOW_BATCH = 500
ANOMALIES_PATH = "/api/billing/anomalies"
GIVE_UP = 30.0  # seconds a probe polls before it counts as not served


@dataclass(frozen=True)
class LiveSeries:
    tenant_id: str
    workspace_id: str
    product_area: str
    unit: str
    usual: float  # a usual weekday's quantity
    shape: tuple[float, ...]


def live_series(args: argparse.Namespace) -> list[LiveSeries]:
    per_tenant = LIVE_WORKSPACES * len(LIVE_AREAS)
    wanted = args.probes + reference_probes(args)
    tenants = max(1, math.ceil(wanted / per_tenant))
    rng = random.Random(args.seed)
    return [
        LiveSeries(
            f"t_live_{t:02d}",
            f"ws_{w:02d}",
            area,
            unit,
            rng.uniform(500, 5000),
            tuple(week_shape(rng, (0.3, 0.9))),
        )
        for t in range(tenants)
        for w in range(LIVE_WORKSPACES)
        for area, unit in LIVE_AREAS
    ]


def reference_probes(args: argparse.Namespace) -> int:
    return max(4, int(args.probes) // 4)  # with no other load


def load_live_history(
    services: Services,
    clock: SetClock,
    series: list[LiveSeries],
    today: date,
    history: int,
) -> int:
    """`history` days of usage, each day sent at its end (none restated)."""
    rng = random.Random(1)
    encode = msgspec.json.Encoder().encode
    sent = 0
    for back in range(history, 0, -1):
        day = today - timedelta(days=back)
        clock.now = midnight(day + timedelta(days=1)) + timedelta(minutes=5)
        by_tenant: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for s in series:
            total = s.usual * s.shape[day.weekday()] * noise(rng, 0.1)
            for hour, share in PARTS:
                at = midnight(day) + timedelta(hours=hour)
                by_tenant[s.tenant_id].append(
                    {
                        "id": f"h-{s.workspace_id}-{s.product_area}-{at:%Y%m%dT%H}",
                        "workspace_id": s.workspace_id,
                        "product_area": s.product_area,
                        "unit": s.unit,
                        "quantity": f"{total * share:.3f}",
                        "timestamp": at.isoformat(),
                    }
                )
        for tenant, events in sorted(by_tenant.items()):
            body = encode(events)
            sent += services.ingestor.ingest(tenant, body, backfill=True).accepted
    return sent


class Flow:
    """One client POSTing ordinary usage at a steady rate, in a thread."""

    def __init__(
        self, url: str, bearers: dict[str, str], series: list[LiveSeries], rate: int
    ) -> None:
        self.url, self.bearers, self.series = url, bearers, series
        self.interval = FLOW_BATCH / rate
        self.sent: list[tuple[float, int, float]] = []  # response, position, latency
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Flow:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _body(self, k: int, at: str) -> tuple[str, bytes]:
        tenants = sorted(self.bearers)
        tenant = tenants[k % len(tenants)]
        mine = [s for s in self.series if s.tenant_id == tenant]
        events = [
            {
                "id": f"flow-{k}-{i}",
                "workspace_id": s.workspace_id,
                "product_area": s.product_area,
                "unit": s.unit,
                "quantity": "0.001",
                "timestamp": at,
            }
            for i in range(FLOW_BATCH)
            for s in (mine[(k * FLOW_BATCH + i) % len(mine)],)
        ]
        return tenant, msgspec.json.encode(events)

    def _run(self) -> None:
        at = (utc_now() - timedelta(seconds=30)).isoformat()
        with httpx.Client(base_url=self.url, timeout=60) as client:
            start = time.perf_counter()
            k = 0
            while not self._stop.is_set():
                tenant, body = self._body(k, at)
                pause = start + k * self.interval - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                began = time.perf_counter()
                response = client.post(
                    "/api/metering/events",
                    content=body,
                    headers={
                        "Authorization": f"Bearer {self.bearers[tenant]}",
                        "Content-Type": "application/json",
                    },
                )
                done = time.perf_counter()
                if response.status_code != 200:
                    self.errors += 1
                else:
                    position = summary_decoder.decode(response.content).position
                    self.sent.append((done, position, done - began))
                k += 1

    def rate(self) -> float:
        if len(self.sent) < 2:
            return 0.0
        first, last = self.sent[0], self.sent[-1]
        return (len(self.sent) - 1) * FLOW_BATCH / (last[0] - first[0])


@dataclass
class Probed:
    """What one spike probe saw."""

    total: float  # from sending the spike to the answer holding its flag
    after: float  # from the ingest answer to the answer holding its flag
    projected: float  # from the ingest answer to billing_anomalies committing it
    polls: int
    served: bool
    unjudged: bool = False  # the answer said its series was not evaluated


class Prober:
    """Sends a spike for a series not probed yet; polls until it is flagged.
    Probes may run at the same time, each in its own thread and connection."""

    def __init__(
        self,
        url: str,
        settings: Any,
        series: list[LiveSeries],
        listener: ProgressListener,
    ) -> None:
        self.url = url
        self.listener = listener
        self.series = iter(series)
        self.metering = {
            t: token(settings, t, "metering") for t in {s.tenant_id for s in series}
        }
        self.admin = {t: token(settings, t, "admin") for t in self.metering}
        self.wrong = 0  # answers at the spike's position without its flag
        self._lock = threading.Lock()

    def probe(self) -> Probed:
        with self._lock:
            s = next(self.series)
        with httpx.Client(base_url=self.url, timeout=60) as client:
            return self._probe(client, s)

    def _probe(self, client: httpx.Client, s: LiveSeries) -> Probed:
        now = utc_now()
        event = {
            "id": f"spike-{s.tenant_id}-{s.workspace_id}-{s.product_area}",
            "workspace_id": s.workspace_id,
            "product_area": s.product_area,
            "unit": s.unit,
            "quantity": f"{s.usual * SPIKE:.3f}",
            "timestamp": (now - timedelta(seconds=1)).isoformat(),
        }
        began = time.perf_counter()
        response = client.post(
            "/api/metering/events",
            content=msgspec.json.encode([event]),
            headers={
                "Authorization": f"Bearer {self.metering[s.tenant_id]}",
                "Content-Type": "application/json",
            },
        )
        response.raise_for_status()
        answered = time.perf_counter()
        position = summary_decoder.decode(response.content).position
        params = {
            "workspace_id": s.workspace_id,
            "min_positions": f"metering:{position}",
        }
        headers = {"Authorization": f"Bearer {self.admin[s.tenant_id]}"}
        polls, nan = 0, float("nan")
        while time.perf_counter() - began < GIVE_UP:
            polls += 1
            reply = client.get(ANOMALIES_PATH, params=params, headers=headers)
            reply.raise_for_status()
            body = reply.json()
            if any(
                a["product_area"] == s.product_area
                and a["direction"] == "up"
                and a["usage_date"] == now.date().isoformat()
                and a["status"] != "cleared"
                for a in body["anomalies"]
            ):
                done = time.perf_counter()
                projected = self.projected(position) - answered
                return Probed(done - began, done - answered, projected, polls, True)
            if body["positions"].get("metering", 0) >= position:
                if any(
                    u["product_area"] == s.product_area for u in body["not_evaluated"]
                ):
                    return Probed(nan, nan, nan, polls, served=False, unjudged=True)
                with self._lock:
                    self.wrong += 1
                time.sleep(0.05)
        return Probed(nan, nan, nan, polls, served=False)

    def projected(self, position: int) -> float:
        """When this process heard billing_anomalies commit `position`."""
        self.listener.wait_for(NAME, "metering", position, timeout=5)
        reached = [
            at for at, p in self.listener.positions(NAME, "metering") if p >= position
        ]
        return min(reached) if reached else float("nan")


@dataclass
class Live:
    series: int
    tenants: int
    history: int
    today: date
    reference: list[Probed] = field(default_factory=list)
    loaded: list[Probed] = field(default_factory=list)
    flow_seconds: float = 0.0
    flow_rate: float = 0.0
    flow_batches: int = 0
    flow_errors: int = 0
    flow_latency: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)  # billing_anomalies
    usage_lags: list[float] = field(default_factory=list)  # billing_usage_daily
    behind: int = 0  # events billing_anomalies was behind when the flow stopped
    wrong: int = 0


def one_by_one(prober: Prober, count: int) -> list[Probed]:
    found = []
    for _ in range(count):
        found.append(prober.probe())
        time.sleep(0.2)
    return found


def paced(prober: Prober, count: int, seconds: float) -> list[Probed]:
    """`count` probes started evenly over `seconds`, whatever the earlier ones
    are doing (each polls in its own thread until served or GIVE_UP)."""
    interval = seconds / count
    with ThreadPoolExecutor(min(count, 1 + int(GIVE_UP / interval))) as pool:
        start = time.perf_counter()
        jobs = []
        for k in range(count):
            pause = start + k * interval - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            jobs.append(pool.submit(prober.probe))
        return [job.result() for job in jobs]


def head_and_position(bench: Bench) -> tuple[int, int]:
    """The metering log's head, and where billing_anomalies is in it."""
    with psycopg.connect(bench.settings.conninfo()) as conn:
        row = conn.execute(
            "SELECT (SELECT max(notification_id) FROM metering_events),"
            " (SELECT notification_id FROM billing_anomalies_tracking"
            "  WHERE application_name = 'metering')"
        ).fetchone()
    return (row[0] or 0, row[1] or 0) if row else (0, 0)


def measure_live(args: argparse.Namespace, bench: Bench) -> Live:
    series = live_series(args)
    today = utc_now().date()
    ws = bootstrap(bench.settings)
    clock = SetClock(midnight(today))
    services = build_services(bench.settings, write_side=ws, clock=clock)
    try:
        progress(f"sending {args.history} days of history for {len(series)} series")
        history = load_live_history(services, clock, series, today, args.history)
        ws.projector.advance_all()  # the worker starts with nothing to catch up
    finally:
        services.close()
    out = Live(len(series), len({s.tenant_id for s in series}), history, today)
    references = reference_probes(args)
    bearers = {
        t: token(bench.settings, t, "metering") for t in {s.tenant_id for s in series}
    }
    with (
        running_worker(bench) as worker,
        running_server(bench, workers=1) as server,
        ProgressListener(bench.settings) as listener,
    ):
        prober = Prober(server.url, bench.settings, series, listener)
        progress(f"{references} probes one by one, no other load")
        out.reference = one_by_one(prober, references)
        progress(
            f"{args.probes} probes over {args.load_seconds:g} s while"
            f" {args.rate:,} events/s flow"
        )
        with Flow(server.url, bearers, series, args.rate) as flow:
            time.sleep(2)  # steady state
            out.loaded = paced(prober, args.probes, args.load_seconds)
        head, position = head_and_position(bench)
        out.behind = head - position
        worker.check_alive()
        if flow.sent:
            progress(f"billing_anomalies is {out.behind:,} events behind; waiting")
            listener.wait_for(NAME, "metering", flow.sent[-1][1], timeout=120)
        out.lags = lags(flow.sent, listener.positions(NAME, "metering"))
        out.usage_lags = lags(flow.sent, listener.positions(USAGE, "metering"))
        out.flow_rate, out.flow_errors = flow.rate(), flow.errors
        out.flow_batches = len(flow.sent)
        out.flow_seconds = flow.sent[-1][0] - flow.sent[0][0] if flow.sent else 0.0
        out.flow_latency = [latency for _, _, latency in flow.sent]
        out.wrong = prober.wrong
    return out


def print_live(args: argparse.Namespace, report: Report, out: Live) -> None:
    report.setup(
        f"latency: `billing serve --workers 1`, `billing worker --processes 1`;"
        f" {out.tenants} tenants x {LIVE_WORKSPACES} workspaces x {len(LIVE_AREAS)}"
        f" product areas = {out.series} series with {args.history} days of history"
        f" ({out.history:,} events); today {out.today} (day"
        f" {out.today.day} of its period); a probe POSTs one event of {SPIKE}x a"
        " usual day for a series not probed yet, then polls GET"
        " /api/billing/anomalies?min_positions=metering:<its position> until the"
        f" flag is served (or {GIVE_UP:g} s); under load, {args.probes} probes start"
        f" evenly over {args.load_seconds:g} s while one client sends ordinary usage"
        " of all the series"
    )
    for name, group, target in (
        (f"while {args.rate:,} events/s flow", out.loaded, "p99 <= 2 s"),
        ("no other load", out.reference, ""),
    ):
        served = [p for p in group if p.served]
        line = latency_text([p.total for p in served], (50, 90, 99))
        if name.startswith("while"):
            report.figure(f"spike sent to flag served, {name}", line, target)
        else:
            report.reference(f"spike sent to flag served, {name}", line)
        report.figure(
            f"  of it after the ingest answer, {name}",
            latency_text([p.after for p in served], (50, 99)),
        )
        report.figure(
            f"  of that, until billing_anomalies committed it, {name}",
            latency_text([p.projected for p in served], (50, 99)),
        )
        first = sum(p.polls == 1 for p in served)
        unjudged = sum(p.unjudged for p in group)
        report.figure(
            f"  flags served, {name}",
            f"{len(served)} of {len(group)} ({first} in the first answer;"
            f" {unjudged} series not evaluated;"
            f" {len(group) - len(served) - unjudged} not within {GIVE_UP:g} s)",
        )
    loaded = [p.total for p in out.loaded if p.served]
    quiet = [p.total for p in out.reference if p.served]
    if loaded and quiet:
        report.ratio(
            "under load / no other load, p50",
            ratio_text(percentile(loaded, 50), percentile(quiet, 50)),
        )
    report.figure(
        "ordinary usage achieved",
        f"{out.flow_rate:,.0f} events/s for {out.flow_seconds:.0f} s in"
        f" {out.flow_batches:,} batches of {FLOW_BATCH} ({out.flow_errors} errors);"
        f" ingest {latency_text(out.flow_latency)}",
    )
    report.figure(
        "billing_anomalies lag behind the flow",
        latency_text(out.lags)
        + f"; {out.flow_batches - len(out.lags)} batches never seen projected",
    )
    report.figure(
        "billing_anomalies behind the head as the flow stopped",
        f"{out.behind:,} events",
    )
    report.reference(
        "billing_usage_daily lag behind the same flow", latency_text(out.usage_lags)
    )
    report.figure("answers at a probe's position without its flag", f"{out.wrong}", "0")


def main() -> None:
    args = arguments()
    report = Report("anomaly detection through the real path, its latency and cost")
    report.note(code_version())
    backtest = None
    if args.only in (None, "backtest"):
        with private_environment("anomaly", keep=args.keep) as bench:
            backtest = run_backtest(args, bench)
            print_backtest(args, report, backtest)
    if args.only in (None, "latency"):
        with private_environment("anomaly_live", keep=args.keep) as bench:
            print_live(args, report, measure_live(args, bench))
    if args.only in (None, "cost"):
        with private_environment("anomaly_cost", keep=args.keep) as bench:
            print_cost(args, report, measure_cost(args, bench), backtest)


def code_version() -> str:
    """The commit, and whether the read model's code differs from it."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    changed = subprocess.run(
        [
            "git",
            "status",
            "--porcelain",
            "--",
            "projections/anomalies",
            "projections/usage_series.py",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    state = (
        "with uncommitted changes to " + " ".join(changed[1::2])
        if changed
        else "as committed"
    )
    return f"code: commit {head or '?'}, the read model {state}"


if __name__ == "__main__":
    main()
